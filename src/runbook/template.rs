//! `{placeholder}` templates in runbook text.
//!
//! `{labels.<name>|<fallback>}` stands for the alert's label, or `<fallback>` (no spaces or
//! braces) when the alert lacks it or it is empty.
//!
//! Filling is a single pass, so a value that itself contains `{...}` (an alert label, a log
//! excerpt) is never expanded again. A value that is not known renders as a visible
//! `<name: why>` marker instead of disappearing, so a person reading the steps sees the gap.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

pub(super) const LABELS_PREFIX: &str = "labels.";

/// Variables a verdict template may use besides `{labels.<name>}`.
pub(super) const VARIABLES: &[&str] = &[
    "alert",
    "runbook",
    "title",
    "now",
    "signature",
    "category",
    "count",
    "failures",
    "pods",
    "failingPods",
    "failingPodNames",
    "pod",
    "httpStatus",
    "firstFailure",
    "lastFailure",
    "controllerId",
    "controllerIds",
    "account",
    "resourceGroup",
    "envSource",
    "successes",
    "intermittent",
    "intermittency",
    "relatedServices",
];

/// Variables that are per category: the verdict's by default, another's as `{count:<name>}`.
pub(super) const PER_CATEGORY: &[&str] = &["count", "firstFailure", "lastFailure"];

static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\{(labels\.[^{}\s]+|[A-Za-z][A-Za-z0-9]*(?::[A-Za-z][A-Za-z0-9-]*)?)\}")
        .expect("placeholder pattern is valid")
});

/// `count:RateLimited` as (`count`, `RateLimited`), for the per-category variables.
pub(super) fn per_category(placeholder: &str) -> Option<(&str, &str)> {
    placeholder
        .split_once(':')
        .filter(|(v, _)| PER_CATEGORY.contains(v))
}

pub(super) fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    PLACEHOLDER
        .captures_iter(text)
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
}

/// The label a `labels.<name>` or `labels.<name>|<fallback>` placeholder names; `None` for
/// other placeholders.
pub(super) fn label_name(placeholder: &str) -> Option<&str> {
    label_parts(placeholder).map(|(name, _)| name)
}

/// The label's name and the fallback, if any, of a `labels.` placeholder.
pub(super) fn label_parts(placeholder: &str) -> Option<(&str, Option<&str>)> {
    let body = placeholder.strip_prefix(LABELS_PREFIX)?;
    Some(match body.split_once('|') {
        Some((name, fallback)) => (name, Some(fallback)),
        None => (body, None),
    })
}

/// Whether the placeholder names something a verdict fills; `{count:<name>}` only for a
/// category in `categories`.
pub(super) fn is_known<'c>(name: &str, mut categories: impl Iterator<Item = &'c str>) -> bool {
    match per_category(name) {
        Some((_, category)) => categories.any(|c| c == category),
        None => name.starts_with(LABELS_PREFIX) || VARIABLES.contains(&name),
    }
}

/// `text` with each placeholder replaced by `value(name)`.
pub(super) fn render(text: &str, value: impl Fn(&str) -> String) -> String {
    PLACEHOLDER
        .replace_all(text, |c: &regex::Captures| value(&c[1]))
        .into_owned()
}

/// `text` filled from alert labels only; `None` when a label it names is missing.
pub(super) fn fill_labels(text: &str, labels: &BTreeMap<String, String>) -> Option<String> {
    let all_present = placeholders(text).all(|p| {
        label_parts(p).is_some_and(|(l, fallback)| fallback.is_some() || labels.contains_key(l))
    });
    all_present.then(|| render(text, |p| label(labels, p)))
}

/// The value of a `labels.<name>` placeholder, or a visible marker when the alert lacks it.
pub(super) fn label(labels: &BTreeMap<String, String>, placeholder: &str) -> String {
    let (name, fallback) = label_parts(placeholder).unwrap_or((placeholder, None));
    match (labels.get(name), fallback) {
        (Some(v), Some(f)) if v.is_empty() => f.to_string(),
        (Some(v), _) => v.clone(),
        (None, Some(f)) => f.to_string(),
        (None, None) => format!("<{name}: not in the alert's labels>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_once_and_marks_gaps() {
        let labels = BTreeMap::from([
            ("region".to_string(), "us-south".to_string()),
            ("evil".to_string(), "{labels.region}".to_string()),
        ]);
        let text = "{labels.region} {labels.evil} {labels.zone} {count} {not a placeholder}";
        let out = render(text, |p| {
            if p.starts_with(LABELS_PREFIX) {
                label(&labels, p)
            } else {
                "7".into()
            }
        });
        assert_eq!(
            out,
            "us-south {labels.region} <zone: not in the alert's labels> 7 {not a placeholder}"
        );
        assert_eq!(
            fill_labels("app={labels.region}", &labels).as_deref(),
            Some("app=us-south")
        );
        assert_eq!(fill_labels("{labels.zone}", &labels), None);
        assert_eq!(
            fill_labels("{labels.zone|eu-de}/{labels.region|x}", &labels).as_deref(),
            Some("eu-de/us-south")
        );
        let empty = BTreeMap::from([("zone".to_string(), String::new())]);
        assert_eq!(label(&empty, "labels.zone|eu-de"), "eu-de");
        assert_eq!(label(&empty, "labels.zone"), "");
        assert_eq!(
            label_parts("labels.team|platform"),
            Some(("team", Some("platform")))
        );
        assert_eq!(label_name("count"), None);
        assert_eq!(
            placeholders("{a} {labels.x/y} {b c}").collect::<Vec<_>>(),
            ["a", "labels.x/y"]
        );
    }
}
