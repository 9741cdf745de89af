//! `kubectl triage`: kubectl finds this binary on PATH by its name. The logic is in
//! `alert_triage_operator::plugin`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use alert_triage_operator::plugin::{self, Cli};
use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match plugin::main(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
