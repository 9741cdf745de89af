//! Runbooks as data: the model ([`Runbook`]), the catalog of built-in runbooks ([`Catalog`]),
//! the streaming log scanner ([`LogScanner`]) and the verdict engine
//! ([`CompiledRunbook::assess`]). Everything here is pure: the controller and `replay` push
//! bytes in and get a [`Verdict`] out through the same code.

mod catalog;
mod compile;
mod engine;
mod model;
mod pattern;
mod resource;
mod scan;
mod state;
mod success;
mod template;
mod window;

pub use catalog::{Catalog, SelectError};
pub use compile::{CompiledCache, CompiledRunbook};
pub use engine::{AssessInput, Containers, EnvInfo, PodInput, RelatedInput, Restart, Verdict};
pub use model::{EnvInfoSpec, Runbook, is_runbook_id};
pub use resource::{
    ClusterRunbook, ClusterRunbookSpec, Runbook as RunbookResource, RunbookSpec, RunbookStatus,
};
pub use scan::{LogScanner, MAX_LINE_BYTES, StreamFindings, leading_time};
pub use state::{PodEvent, PodState};
pub use success::SuccessTimes;
pub use window::WindowCut;

/// A runbook that cannot be loaded or compiled.
#[derive(Debug, thiserror::Error)]
pub enum RunbookError {
    #[error("runbook document {index}: {source}")]
    Parse {
        index: usize,
        source: serde_yaml::Error,
    },
    #[error("runbook {id}: {what}: {source}")]
    Regex {
        id: String,
        what: String,
        source: Box<regex::Error>,
    },
    /// A Runbook's or ClusterRunbook's spec that does not fit the model: the field path and
    /// what is wrong, without a position in text its author never wrote.
    #[error("spec: {0}")]
    Spec(String),
    #[error("runbook {id}: {reason}")]
    Invalid { id: String, reason: String },
    #[error("runbook {id} is defined more than once")]
    Duplicate { id: String },
    #[error(
        "runbook {id} needs the alert label `{label}` for {purpose}, and the alert has no such label"
    )]
    MissingLabel {
        id: String,
        label: String,
        purpose: String,
    },
}
