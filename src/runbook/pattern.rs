//! The runbook's own regexes (categories, markers, continuation, fields, HTTP statuses), which
//! run on single lines and records, not on whole logs.
//!
//! They are built as the `regex` crate builds `Regex` and `RegexSet` (same syntax, match
//! semantics, size limits and error messages), with one difference: when a block search
//! ([`super::compile::Prefilter`]) has already picked the lines they see, they are built without
//! a literal prefilter of their own. Such a prefilter buys nothing on one short line, and it
//! is the dearest part of compiling a runbook: for a `(?i)` pattern it is an Aho-Corasick
//! automaton over every case variant of its literals. Without it the same lazy DFA answers.

use regex_automata::meta;
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternSet};

/// Which lines a regex is run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lines {
    /// Every line of a log: a literal prefilter pays for itself.
    Every,
    /// Few: those a block search picked, or failure records.
    Few,
}

fn config(lines: Lines) -> meta::Config {
    // The `regex` crate's defaults.
    meta::Config::new()
        .nfa_size_limit(Some(10 * (1 << 20)))
        .hybrid_cache_capacity(2 * (1 << 20))
        .utf8_empty(true)
        .auto_prefilter(lines == Lines::Every)
}

fn builder(config: meta::Config) -> meta::Builder {
    let mut b = meta::Builder::new();
    b.configure(config).syntax(syntax::Config::new().utf8(true));
    b
}

/// A regex over one line or record.
#[derive(Debug)]
pub(super) struct LineRegex(meta::Regex);

impl LineRegex {
    /// The error is the one `regex::Regex::new` gives for the pattern, so messages read the
    /// same wherever a pattern is refused.
    pub(super) fn new(pattern: &str, lines: Lines) -> Result<Self, regex::Error> {
        builder(config(lines).match_kind(MatchKind::LeftmostFirst))
            .build(pattern)
            .map(LineRegex)
            .map_err(regex_error)
    }

    pub(super) fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }

    /// Capture groups, the whole match (group 0) included.
    pub(super) fn groups(&self) -> usize {
        self.0
            .group_info()
            .group_len(regex_automata::PatternID::ZERO)
    }

    /// The first participating capture group of the first match.
    pub(super) fn first_group<'t>(&self, text: &'t str) -> Option<&'t str> {
        let mut caps = self.0.create_captures();
        self.0.captures(text, &mut caps);
        first_group(&caps, text)
    }

    /// The first participating capture group of every match, in order.
    pub(super) fn first_groups<'t>(&self, text: &'t str) -> impl Iterator<Item = &'t str> {
        self.0
            .captures_iter(text)
            .filter_map(move |caps| first_group(&caps, text))
    }
}

fn first_group<'t>(
    caps: &regex_automata::util::captures::Captures,
    text: &'t str,
) -> Option<&'t str> {
    caps.iter()
        .skip(1)
        .flatten()
        .next()
        .map(|span| &text[span.range()])
}

/// Several regexes over one line, each answering on its own.
#[derive(Debug)]
pub(super) struct LineSet(meta::Regex);

impl LineSet {
    pub(super) fn new<P: AsRef<str>>(patterns: &[P], lines: Lines) -> Result<Self, regex::Error> {
        builder(
            config(lines)
                .match_kind(MatchKind::All)
                .which_captures(WhichCaptures::None),
        )
        .build_many(patterns)
        .map(LineSet)
        .map_err(regex_error)
    }

    pub(super) fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }

    /// The indexes of the patterns that match, in order.
    pub(super) fn matches(&self, text: &str) -> Vec<usize> {
        let mut set = PatternSet::new(self.0.pattern_len());
        self.0
            .which_overlapping_matches(&Input::new(text), &mut set);
        set.iter().map(|p| p.as_usize()).collect()
    }
}

/// The error `regex::Regex::new` gives for the same failure, so a refused pattern reads the
/// same wherever it is refused.
fn regex_error(err: meta::BuildError) -> regex::Error {
    match (err.size_limit(), err.syntax_error()) {
        (Some(limit), _) => regex::Error::CompiledTooBig(limit),
        (None, Some(syntax)) => regex::Error::Syntax(syntax.to_string()),
        (None, None) => regex::Error::Syntax(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each agrees with the `regex` crate on what matches, what is captured and what is
    /// refused, with and without its prefilter.
    #[test]
    fn line_regexes_answer_as_the_regex_crate_does() {
        let texts = [
            "",
            "Worker METERING started",
            "status 429 then 500",
            "ünïcödé 401 \u{fffd}",
            r#"{"code": 403, "msg": "denied"}"#,
        ];
        for lines in [Lines::Every, Lines::Few] {
            for pattern in [
                r"(?i)worker metering started",
                r"\b(\d{3})\b",
                r"(?:code\D{0,4}(\d{3}))|(?:status (\d{3}))",
                r"^$",
                r"\w+",
            ] {
                let ours = LineRegex::new(pattern, lines).unwrap();
                let theirs = regex::Regex::new(pattern).unwrap();
                assert_eq!(ours.groups(), theirs.captures_len(), "{pattern}");
                for text in texts {
                    assert_eq!(
                        ours.is_match(text),
                        theirs.is_match(text),
                        "{pattern} {text}"
                    );
                    fn first<'t>(c: regex::Captures<'t>) -> Option<&'t str> {
                        c.iter().skip(1).flatten().next().map(|m| m.as_str())
                    }
                    assert_eq!(
                        ours.first_group(text),
                        theirs.captures(text).and_then(first),
                        "{pattern} {text}"
                    );
                    let all: Vec<&str> = theirs.captures_iter(text).filter_map(first).collect();
                    assert_eq!(ours.first_groups(text).collect::<Vec<_>>(), all);
                }
            }
            let patterns: Vec<String> = ["(?i)started", r"\d{3}", "^$", "nothing"]
                .map(String::from)
                .to_vec();
            let ours = LineSet::new(&patterns, lines).unwrap();
            let theirs = regex::RegexSet::new(&patterns).unwrap();
            for text in texts {
                assert_eq!(ours.is_match(text), theirs.is_match(text), "{text}");
                assert_eq!(
                    ours.matches(text),
                    theirs.matches(text).iter().collect::<Vec<_>>(),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn a_refused_pattern_gets_the_regex_crates_message() {
        for pattern in ["(unclosed", r"\p{NotAClass}", "a{99999999}"] {
            let ours = LineRegex::new(pattern, Lines::Few).unwrap_err();
            let theirs = regex::Regex::new(pattern).unwrap_err();
            assert_eq!(ours.to_string(), theirs.to_string(), "{pattern}");
            let patterns = vec!["fine".to_string(), pattern.to_string()];
            let ours = LineSet::new(&patterns, Lines::Few).unwrap_err();
            let theirs = regex::RegexSet::new(&patterns).unwrap_err();
            assert_eq!(ours.to_string(), theirs.to_string(), "{pattern}");
        }
    }
}
