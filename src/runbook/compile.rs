//! A runbook compiled for one alert: its templates filled in from the alert's labels and every
//! regex built, ready for the scanner ([`super::scan`]) and the verdict ([`super::engine`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use memchr::memmem::Finder;
use regex::{Captures, Regex, RegexSet};
use serde_json::{Map, Value};

use super::RunbookError;
use super::model::{Field, Runbook};
use super::template;
use crate::crd::{Alert, Category};

/// A runbook ready for one triage: the alert's values filled in and its regexes compiled.
pub struct CompiledRunbook {
    pub(super) runbook: Runbook,
    pub(super) matchers: Matchers,
}

impl Runbook {
    /// Fills in the alert's values and compiles the regexes, once per triage.
    pub fn compile(&self, alert: &Alert) -> Result<CompiledRunbook, RunbookError> {
        Ok(CompiledRunbook {
            matchers: Matchers::new(self, &alert.labels)?,
            runbook: self.clone(),
        })
    }
}

/// Compiles the runbook with a stand-in value for every label its matchers use, which checks
/// all its regexes exactly as a triage would compile them.
pub(super) fn check(rb: &Runbook) -> Result<(), RunbookError> {
    let labels = rb
        .compile_time_templates()
        .flat_map(template::placeholders)
        .filter_map(|p| p.strip_prefix(template::LABELS_PREFIX))
        .map(|l| (l.to_string(), "x".to_string()))
        .collect();
    Matchers::new(rb, &labels).map(|_| ())
}

/// A runbook's matching rules with the alert's values filled in and every regex compiled.
pub(super) struct Matchers {
    pub(super) signature: Vec<Finder<'static>>,
    /// What is searched for, in words, for reasons: the filters, or the literals.
    pub(super) description: String,
    pub(super) continuation: Option<Regex>,
    pub(super) filters: Vec<(Extractor, String)>,
    pub(super) controller_ids: Option<Extractor>,
    pub(super) http_status: Vec<Regex>,
    pub(super) categories: Vec<Classifier>,
    pub(super) markers: Option<(RegexSet, Vec<String>)>,
    pub(super) related: Option<(RegexSet, Category)>,
    pub(super) time_fields: Vec<String>,
    pub(super) detail_fields: Vec<String>,
}

struct Classifier {
    category: Category,
    statuses: Vec<u16>,
    patterns: Option<RegexSet>,
}

impl Classifier {
    fn fits(&self, detail: &str, statuses: &[u16]) -> bool {
        match &self.patterns {
            None if self.statuses.is_empty() => true,
            patterns => {
                statuses.iter().any(|s| self.statuses.contains(s))
                    || patterns.as_ref().is_some_and(|p| p.is_match(detail))
            }
        }
    }
}

/// Reads one field from a JSON object (first key present) or, failing that, from the text with
/// a regex whose first participating group is the value.
pub(super) struct Extractor {
    json: Vec<String>,
    text: Option<Regex>,
}

impl Extractor {
    pub(super) fn first<'t>(
        &self,
        json: Option<&'t Map<String, Value>>,
        text: &'t str,
    ) -> Option<Cow<'t, str>> {
        if let Some(value) = json.and_then(|obj| self.json.iter().find_map(|k| obj.get(k))) {
            return scalar(value);
        }
        let caps = self.text.as_ref()?.captures(text)?;
        first_group(&caps).map(Cow::Borrowed)
    }

    pub(super) fn all<'t>(&self, json: Option<&'t Map<String, Value>>, text: &'t str) -> Vec<Cow<'t, str>> {
        let from_json: Vec<_> = json
            .into_iter()
            .flat_map(|obj| self.json.iter().filter_map(|k| obj.get(k)))
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().filter_map(scalar).collect(),
                v => scalar(v).into_iter().collect::<Vec<_>>(),
            })
            .collect();
        if !from_json.is_empty() {
            return from_json;
        }
        self.text
            .iter()
            .flat_map(|re| re.captures_iter(text))
            .filter_map(|c| first_group(&c).map(Cow::Borrowed))
            .collect()
    }
}

fn scalar(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

fn first_group<'t>(caps: &Captures<'t>) -> Option<&'t str> {
    caps.iter().skip(1).flatten().next().map(|m| m.as_str())
}

fn compile(id: &str, what: &str, pattern: &str) -> Result<Regex, RunbookError> {
    Regex::new(pattern).map_err(|source| RunbookError::Regex {
        id: id.to_string(),
        what: what.to_string(),
        source: Box::new(source),
    })
}

/// A regex that must capture the value it is used for.
fn compile_capturing(id: &str, what: &str, pattern: &str) -> Result<Regex, RunbookError> {
    let re = compile(id, what, pattern)?;
    if re.captures_len() < 2 {
        return Err(RunbookError::Invalid {
            id: id.to_string(),
            reason: format!("{what}: {pattern:?} needs a capture group for the value"),
        });
    }
    Ok(re)
}

fn compile_set(id: &str, what: &str, patterns: &[String]) -> Result<RegexSet, RunbookError> {
    RegexSet::new(patterns).map_err(|source| RunbookError::Regex {
        id: id.to_string(),
        what: what.to_string(),
        source: Box::new(source),
    })
}

impl Matchers {
    pub(super) fn new(
        rb: &Runbook,
        labels: &BTreeMap<String, String>,
    ) -> Result<Self, RunbookError> {
        let id = rb.id.as_str();
        let fill = |text: &str, what: &str| {
            template::fill_labels(text, labels).ok_or_else(|| RunbookError::MissingLabel {
                id: id.to_string(),
                label: template::placeholders(text)
                    .filter_map(|p| p.strip_prefix(template::LABELS_PREFIX))
                    .find(|l| !labels.contains_key(*l))
                    .unwrap_or_default()
                    .to_string(),
                purpose: what.to_string(),
            })
        };
        let extractor = |field: &Field, what: &str| -> Result<Extractor, RunbookError> {
            Ok(Extractor {
                json: field.json.clone(),
                text: field
                    .text
                    .as_deref()
                    .map(|p| compile_capturing(id, what, p))
                    .transpose()?,
            })
        };

        let signature = rb
            .signature
            .contains
            .iter()
            .map(|s| fill(s, "signature.contains"))
            .collect::<Result<Vec<_>, _>>()?;
        let mut filters = Vec::new();
        let mut described = Vec::new();
        for f in &rb.signature.filters {
            let value = fill(&f.equals, &format!("signature.where {}", f.field))?;
            described.push(format!("{}={value}", f.field));
            let field = Field {
                json: f.json.clone(),
                text: f.text.clone(),
            };
            filters.push((
                extractor(&field, &format!("signature.where {}", f.field))?,
                value,
            ));
        }
        let description = if described.is_empty() {
            signature.join(" or ")
        } else {
            described.join(", ")
        };

        let categories = rb
            .categories
            .iter()
            .map(|r| {
                let what = format!("categories {} patterns", r.category.as_str());
                Ok(Classifier {
                    category: r.category,
                    statuses: r.http_status.clone(),
                    patterns: (!r.patterns.is_empty())
                        .then(|| compile_set(id, &what, &r.patterns))
                        .transpose()?,
                })
            })
            .collect::<Result<_, RunbookError>>()?;
        let markers = if rb.success_markers.is_empty() {
            None
        } else {
            let patterns: Vec<String> = rb
                .success_markers
                .iter()
                .map(|m| m.pattern.clone())
                .collect();
            let names = rb.success_markers.iter().map(|m| m.name.clone()).collect();
            Some((compile_set(id, "successMarkers", &patterns)?, names))
        };

        Ok(Matchers {
            signature: signature
                .iter()
                .map(|s| Finder::new(s).into_owned())
                .collect(),
            description,
            continuation: rb
                .signature
                .continuation
                .as_deref()
                .map(|p| compile(id, "signature.continuation", p))
                .transpose()?,
            filters,
            controller_ids: rb
                .controller_ids
                .as_ref()
                .map(|f| extractor(f, "controllerIds"))
                .transpose()?,
            http_status: rb
                .http_status
                .iter()
                .map(|p| compile_capturing(id, "httpStatus", p))
                .collect::<Result<_, _>>()?,
            categories,
            markers,
            related: rb
                .related_services
                .as_ref()
                .map(|r| {
                    Ok::<_, RunbookError>((
                        compile_set(id, "relatedServices.patterns", &r.patterns)?,
                        r.category,
                    ))
                })
                .transpose()?,
            time_fields: rb.json.time_fields.clone(),
            detail_fields: rb.json.detail_fields.clone(),
        })
    }

    /// Distinct HTTP statuses in the text, in the order found.
    pub(super) fn statuses(&self, detail: &str) -> Vec<u16> {
        let mut found = Vec::new();
        for caps in self
            .http_status
            .iter()
            .flat_map(|re| re.captures_iter(detail))
        {
            let status = first_group(&caps)
                .and_then(|g| g.parse::<u16>().ok())
                .filter(|s| (100..=599).contains(s));
            if let Some(s) = status
                && !found.contains(&s)
            {
                found.push(s);
            }
        }
        found
    }

    pub(super) fn classify(&self, detail: &str, statuses: &[u16]) -> Category {
        self.categories
            .iter()
            .find(|c| c.fits(detail, statuses))
            .map_or(Category::Unclassified, |c| c.category)
    }
}
