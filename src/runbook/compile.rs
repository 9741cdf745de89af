//! A runbook compiled for one alert: its templates filled in from the alert's labels and every
//! regex built, ready for the scanner ([`super::scan`]) and the verdict ([`super::engine`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use aho_corasick::Span;
use aho_corasick::packed;
use memchr::memmem::Finder;
use regex_syntax::hir::{
    Class, ClassBytes, ClassBytesRange, ClassUnicode, ClassUnicodeRange, Hir, HirKind,
};
use serde_json::{Map, Value};

use super::RunbookError;
use super::model::{Field, Runbook};
use super::pattern::{LineRegex, LineSet, Lines};
use super::state::{PodState, StateMatcher};
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

/// Most compiled runbooks kept; beyond that the cache starts again, which costs only time.
const MAX_CACHED: usize = 256;

/// Compiled runbooks by runbook and the values of the alert labels their matchers use, so the
/// triages of one alert share one compilation instead of building every regex again.
///
/// Runbooks are keyed by a version their caller gives besides the id: a runbook resource's uid
/// and generation, so an edited runbook is compiled afresh and never mixed with its old self.
#[derive(Default)]
pub struct CompiledCache {
    entries: Mutex<HashMap<CacheKey, Arc<CompiledRunbook>>>,
}

type CacheKey = (String, String, Vec<(String, Option<String>)>);

impl CompiledCache {
    pub fn get(
        &self,
        version: &str,
        runbook: &Runbook,
        alert: &Alert,
    ) -> Result<Arc<CompiledRunbook>, RunbookError> {
        let key = (
            version.to_string(),
            runbook.id.clone(),
            runbook
                .compile_time_templates()
                .flat_map(template::placeholders)
                .filter_map(template::label_name)
                .map(|l| (l.to_string(), alert.labels.get(l).cloned()))
                .collect(),
        );
        let entries = || self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(compiled) = entries().get(&key) {
            return Ok(compiled.clone());
        }
        let compiled = Arc::new(runbook.compile(alert)?);
        let mut entries = entries();
        if entries.len() >= MAX_CACHED {
            entries.clear();
        }
        entries.insert(key, compiled.clone());
        Ok(compiled)
    }
}

/// Compiles the runbook with a stand-in value for every label its matchers use, which checks
/// all its regexes exactly as a triage would compile them.
pub(super) fn check(rb: &Runbook) -> Result<(), RunbookError> {
    let labels = rb
        .compile_time_templates()
        .flat_map(template::placeholders)
        .filter_map(template::label_name)
        .map(|l| (l.to_string(), "x".to_string()))
        .collect();
    Matchers::new(rb, &labels).map(|_| ())
}

/// A runbook's matching rules with the alert's values filled in and every regex compiled.
pub(super) struct Matchers {
    pub(super) signature: Vec<Finder<'static>>,
    /// What is searched for, in words, for reasons: the filters, or the literals.
    pub(super) description: String,
    pub(super) continuation: Option<LineRegex>,
    pub(super) filters: Vec<(Extractor, String)>,
    pub(super) controller_ids: Option<Extractor>,
    pub(super) http_status: Vec<LineRegex>,
    categories: Vec<Classifier>,
    pub(super) markers: Option<(LineSet, Vec<String>)>,
    pub(super) related: Option<(LineSet, Category)>,
    pub(super) time_fields: Vec<String>,
    pub(super) detail_fields: Vec<String>,
    /// Finds the lines a failure scan must look at: signatures and success markers.
    pub(super) prefilter: Option<Prefilter>,
    /// Finds the lines a related-services scan must look at.
    pub(super) related_prefilter: Option<Prefilter>,
}

struct Classifier {
    category: Category,
    statuses: Vec<u16>,
    patterns: Option<LineSet>,
    /// The rule's `pod`/`events` conditions.
    state: Option<StateMatcher>,
}

impl Classifier {
    fn fits(&self, detail: &str, statuses: &[u16]) -> bool {
        match &self.patterns {
            // A rule of pod state alone is never a log record's category.
            None if self.statuses.is_empty() => self.state.is_none(),
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
    text: Option<LineRegex>,
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
        self.text.as_ref()?.first_group(text).map(Cow::Borrowed)
    }

    pub(super) fn all<'t>(
        &self,
        json: Option<&'t Map<String, Value>>,
        text: &'t str,
    ) -> Vec<Cow<'t, str>> {
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
            .flat_map(|re| re.first_groups(text))
            .map(Cow::Borrowed)
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

/// The runbook's own regexes run on records and on lines a block search picked, except the
/// markers and related patterns when no block search could be built ([`Lines`]).
fn compile(id: &str, what: &str, pattern: &str, lines: Lines) -> Result<LineRegex, RunbookError> {
    LineRegex::new(pattern, lines).map_err(|source| RunbookError::Regex {
        id: id.to_string(),
        what: what.to_string(),
        source: Box::new(source),
    })
}

/// A regex that must capture the value it is used for.
fn compile_capturing(id: &str, what: &str, pattern: &str) -> Result<LineRegex, RunbookError> {
    let re = compile(id, what, pattern, Lines::Few)?;
    if re.groups() < 2 {
        return Err(RunbookError::Invalid {
            id: id.to_string(),
            reason: format!("{what}: {pattern:?} needs a capture group for the value"),
        });
    }
    Ok(re)
}

fn compile_set<P: AsRef<str>>(
    id: &str,
    what: &str,
    patterns: &[P],
    lines: Lines,
) -> Result<LineSet, RunbookError> {
    LineSet::new(patterns, lines).map_err(|source| RunbookError::Regex {
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
                    .filter_map(template::label_name)
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
            .enumerate()
            .map(|(i, r)| {
                let what = format!("categories[{i}].patterns ({})", r.category.as_str());
                let events_what =
                    format!("categories[{i}].events.message ({})", r.category.as_str());
                Ok(Classifier {
                    category: r.category.clone(),
                    statuses: r.http_status.clone(),
                    patterns: (!r.patterns.is_empty())
                        .then(|| compile_set(id, &what, &r.patterns, Lines::Few))
                        .transpose()?,
                    state: StateMatcher::new(r.pod.as_ref(), r.events.as_ref(), |p| {
                        compile(id, &events_what, p, Lines::Few)
                    })?,
                })
            })
            .collect::<Result<_, RunbookError>>()?;
        let marker_patterns: Vec<&str> = rb
            .success_markers
            .iter()
            .map(|m| m.pattern.as_str())
            .collect();
        let related_patterns: Vec<&str> = rb
            .related_services
            .iter()
            .flat_map(|r| r.patterns.iter().map(String::as_str))
            .collect();
        let prefilter = Prefilter::new(&signature, &marker_patterns);
        let related_prefilter = (!related_patterns.is_empty())
            .then(|| Prefilter::new(&[], &related_patterns))
            .flatten();
        // Without a block search the markers and related patterns see every line.
        let seen_by = |p: &Option<Prefilter>| match p {
            Some(_) => Lines::Few,
            None => Lines::Every,
        };
        let markers = if rb.success_markers.is_empty() {
            None
        } else {
            let names = rb.success_markers.iter().map(|m| m.name.clone()).collect();
            let set = compile_set(id, "successMarkers", &marker_patterns, seen_by(&prefilter))?;
            Some((set, names))
        };
        let related = rb
            .related_services
            .as_ref()
            .map(|r| {
                let lines = seen_by(&related_prefilter);
                let set = compile_set(id, "relatedServices.patterns", &related_patterns, lines)?;
                Ok::<_, RunbookError>((set, r.category.clone()))
            })
            .transpose()?;
        Ok(Matchers {
            prefilter,
            related_prefilter,
            signature: signature
                .iter()
                .map(|s| Finder::new(s).into_owned())
                .collect(),
            description,
            continuation: rb
                .signature
                .continuation
                .as_deref()
                .map(|p| compile(id, "signature.continuation", p, Lines::Few))
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
                .enumerate()
                .map(|(i, p)| compile_capturing(id, &format!("httpStatus[{i}]"), p))
                .collect::<Result<_, _>>()?,
            categories,
            markers,
            related,
            time_fields: rb.json.time_fields.clone(),
            detail_fields: rb.json.detail_fields.clone(),
        })
    }

    /// Distinct HTTP statuses in the text, in the order found.
    pub(super) fn statuses(&self, detail: &str) -> Vec<u16> {
        let mut found = Vec::new();
        for group in self
            .http_status
            .iter()
            .flat_map(|re| re.first_groups(detail))
        {
            let status = group
                .parse::<u16>()
                .ok()
                .filter(|s| (100..=599).contains(s));
            if let Some(s) = status
                && !found.contains(&s)
            {
                found.push(s);
            }
        }
        found
    }

    /// Which rules may take a record of a pod in this state: those without `pod`/`events`
    /// conditions, and those whose conditions it meets. With no state known, only the former.
    pub(super) fn eligible(&self, state: Option<&PodState>) -> Vec<bool> {
        self.categories
            .iter()
            .map(|c| match (&c.state, state) {
                (None, _) => true,
                (Some(m), Some(s)) => m.holds(s),
                (Some(_), None) => false,
            })
            .collect()
    }

    /// The rules of pod state alone that the pod meets, each with what it showed.
    pub(super) fn state_matches(&self, state: &PodState) -> Vec<(&Category, String)> {
        self.categories
            .iter()
            .filter(|c| c.patterns.is_none() && c.statuses.is_empty())
            .filter_map(|c| {
                let m = c.state.as_ref()?;
                m.holds(state).then(|| (&c.category, m.describe(state)))
            })
            .collect()
    }

    pub(super) fn classify(&self, detail: &str, statuses: &[u16], eligible: &[bool]) -> Category {
        self.categories
            .iter()
            .zip(eligible)
            .filter(|(_, ok)| **ok)
            .map(|(c, _)| c)
            .find(|c| c.fits(detail, statuses))
            // Validation puts a rule that fits everything last, so this is never reached.
            .map_or(Category::NO_EVIDENCE, |c| c.category.clone())
    }
}

/// A search over many lines at once for the places where a line could match, so the scanner
/// splits, decodes and matches only the lines around them.
///
/// It must never miss a line that the per-line matching would act on, so it is built to match
/// more, not less: the signature literals, and each pattern with its assertions (`^`, `$`,
/// `\b`) dropped, because a line's body starts after its timestamp and the search runs over
/// the raw bytes of many lines. Which lines count is still decided line by line.
///
/// Case-insensitive patterns defeat a literal search (`(?i)worker metering started` has 2^20
/// spellings), so when any part of the search depends on ASCII case, the search is built on
/// ASCII-lowercased patterns and run over an ASCII-lowercased copy of the block: lowercasing
/// keeps every byte offset, costs one pass, and turns the search into plain literals again.
pub(super) struct Prefilter {
    search: Search,
    /// The same literals found in the raw block, without the lowercased copy, when they fit.
    spelled: Option<Spelled>,
    /// A pattern could match the U+FFFD that lossy decoding puts where bytes are not UTF-8,
    /// which is not in the raw bytes: such blocks must be valid UTF-8 to be searched raw.
    pub(super) needs_utf8: bool,
    /// The search is over ASCII-lowercased text.
    folded: bool,
}

impl Prefilter {
    /// `None` when no search can stand in for reading every line (a pattern that matches the
    /// empty string, or one this parser reads differently); the scanner then reads them all.
    fn new(literals: &[String], patterns: &[&str]) -> Option<Prefilter> {
        let mut alternatives: Vec<Hir> = literals
            .iter()
            .map(|l| Hir::literal(l.as_bytes()))
            .collect();
        for pattern in patterns {
            alternatives.push(without_assertions(
                regex_syntax::Parser::new().parse(pattern).ok()?,
            ));
        }
        let hir = Hir::alternation(alternatives);
        // Lowercasing costs a pass over the block: only worth it when case is ignored somewhere.
        let folded = ignores_case(&hir);
        let search = if folded {
            lowercase(hir.clone())
        } else {
            hir.clone()
        };
        // Every alternative holds one of the literals, so none of them matches an empty line.
        let regex = || {
            let regex = regex::bytes::Regex::new(&search.to_string()).ok()?;
            (!regex.is_match(b"")).then_some(Search::Regex(regex))
        };
        let literals = required_literals(&search);
        let spelled = literals
            .as_deref()
            .filter(|_| folded)
            .and_then(Spelled::new);
        let search = match literals.as_deref() {
            Some([literal]) => Search::Literal(Finder::new(literal).into_owned()),
            Some(literals) => match packed::Config::new()
                .match_kind(packed::MatchKind::LeftmostFirst)
                .builder()
                .extend(literals.iter().map(|l| teddy_pattern(l)))
                .build()
            {
                Some(searcher) => Search::Literals(searcher),
                // Without the SIMD Teddy needs, the regex is one pass over the block still.
                None => regex()?,
            },
            None => regex()?,
        };
        Some(Prefilter {
            search,
            spelled,
            needs_utf8: may_match_replacement(&hir),
            folded,
        })
    }

    /// The text the search runs over (the block, or its lowercased copy in `scratch`) and the
    /// number of newlines in the block, counted in the same pass when the block is copied.
    pub(super) fn haystack<'b>(
        &self,
        block: &'b [u8],
        scratch: &'b mut Vec<u8>,
    ) -> (&'b [u8], usize) {
        if !self.folded {
            return raw_haystack(block);
        }
        let newlines = lowercase_counting_newlines(block, scratch);
        (&scratch[..block.len()], newlines)
    }

    /// The search over the raw block by every spelling of the literals, when there is one.
    pub(super) fn spelled(&self) -> Option<&Spelled> {
        self.spelled.as_ref()
    }

    /// The first place at or after `at` where a line could match; offsets are the block's.
    pub(super) fn find_at(&self, haystack: &[u8], at: usize) -> Option<std::ops::Range<usize>> {
        match &self.search {
            Search::Regex(regex) => regex.find_at(haystack, at).map(|m| m.range()),
            Search::Literal(finder) => finder
                .find(&haystack[at..])
                .map(|i| at + i..at + i + finder.needle().len()),
            Search::Literals(searcher) => searcher
                .find_in(haystack, Span::from(at..haystack.len()))
                .map(|m| m.range()),
        }
    }
}

/// The block itself as the haystack, with its newline count: for a search over the raw bytes.
pub(super) fn raw_haystack(block: &[u8]) -> (&[u8], usize) {
    (block, memchr::memchr_iter(b'\n', block).count())
}

/// Case-ignoring literals found in the raw block, so no lowercased copy of it is made: Teddy
/// looks for every ASCII case spelling of a 4-byte window of each literal, and each place it
/// finds is checked against the whole literal, ignoring ASCII case.
///
/// A window is far less telling than its literal: one that turns up on most lines ("ing ")
/// would stop the search on each of them. The window is chosen to span a word boundary where
/// the literal has one, and [`Spelled::find_at`] counts the places where the literal was not,
/// so the scanner can go back to the lowercased copy for a stream where the window is common.
pub(super) struct Spelled {
    searcher: packed::Searcher,
    /// Per Teddy pattern: the literal, and where its window starts in it.
    windows: Vec<(usize, usize)>,
    /// ASCII-lowercased.
    literals: Vec<Vec<u8>>,
}

#[cfg(test)]
impl Spelled {
    /// Each literal's window, lowercased, and how many spellings are searched in all.
    pub(super) fn windows(&self) -> (Vec<&[u8]>, usize) {
        let mut windows: Vec<&[u8]> = Vec::new();
        for &(i, offset) in &self.windows {
            let window = &self.literals[i][offset..offset + WINDOW];
            if windows.last() != Some(&window) {
                windows.push(window);
            }
        }
        (windows, self.windows.len())
    }
}

/// Bytes in a window: Teddy tells candidates apart by their first four bytes.
const WINDOW: usize = 4;

/// Slim Teddy (8 buckets, 32 bytes a step) takes this many patterns; beyond, fat Teddy moves
/// 16 bytes a step, and searching the lowercased copy is faster.
const MAX_SPELLINGS: usize = 32;

impl Spelled {
    /// `None` when the spellings are too many, or without the SIMD Teddy needs.
    fn new(literals: &[Vec<u8>]) -> Option<Spelled> {
        let mut windows = Vec::new();
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for (i, literal) in literals.iter().enumerate() {
            let offset = (0..=literal.len().checked_sub(WINDOW)?)
                .min_by_key(|&o| window_cost(&literal[o..o + WINDOW]))?;
            for spelling in spellings(&literal[offset..offset + WINDOW]) {
                patterns.push(spelling);
                windows.push((i, offset));
            }
        }
        if patterns.len() > MAX_SPELLINGS {
            return None;
        }
        let searcher = packed::Config::new()
            .match_kind(packed::MatchKind::LeftmostFirst)
            .builder()
            .extend(&patterns)
            .build()?;
        Some(Spelled {
            searcher,
            windows,
            literals: literals.to_vec(),
        })
    }

    /// What [`Prefilter::find_at`] finds over the lowercased copy, found in the raw `block`.
    /// `misses` counts the windows found where their literal was not.
    pub(super) fn find_at(
        &self,
        block: &[u8],
        mut at: usize,
        misses: &mut usize,
    ) -> Option<std::ops::Range<usize>> {
        loop {
            let m = self.searcher.find_in(block, Span::from(at..block.len()))?;
            let (i, offset) = self.windows[m.pattern().as_usize()];
            let literal = &self.literals[i];
            let whole = m
                .start()
                .checked_sub(offset)
                .and_then(|start| Some(start..start.checked_add(literal.len())?))
                .filter(|range| {
                    block
                        .get(range.clone())
                        .is_some_and(|bytes| bytes.eq_ignore_ascii_case(literal))
                });
            if let Some(whole) = whole {
                return Some(m.start()..whole.end);
            }
            *misses += 1;
            at = m.start() + 1;
        }
    }
}

/// Lower for a window more likely to be rare: one that spans a word boundary (the end of one
/// word and the start of the next are a rarer pair than the letters of a common word or its
/// ending, "ing "), then of rarer bytes, then with fewer spellings.
fn window_cost(window: &[u8]) -> (bool, usize, usize) {
    let inner_boundary = window[1..window.len() - 1]
        .iter()
        .any(|b| !b.is_ascii_alphanumeric());
    let commonness = window.iter().map(byte_commonness).sum();
    let letters = window.iter().filter(|b| b.is_ascii_alphabetic()).count();
    (!inner_boundary, commonness, letters)
}

/// Every ASCII case spelling of `window`: 2 to the power of its letters.
fn spellings(window: &[u8]) -> Vec<Vec<u8>> {
    let mut all = vec![Vec::with_capacity(window.len())];
    for &b in window {
        let cases: &[u8] = if b.is_ascii_alphabetic() {
            &[b.to_ascii_lowercase(), b.to_ascii_uppercase()]
        } else {
            &[b]
        };
        all = all
            .into_iter()
            .flat_map(|prefix| {
                cases.iter().map(move |&c| {
                    let mut s = prefix.clone();
                    s.push(c);
                    s
                })
            })
            .collect();
    }
    all
}

/// Writes the ASCII-lowercased `block` to the start of `out` (grown when shorter, never
/// shrunk) and returns how many newlines it holds: one pass over the block where copying and
/// counting apart took two. The newlines are counted per byte lane of 32-byte steps, so the
/// loop stays in vector registers; a lane's count fits a byte for 255 steps, then is added up.
fn lowercase_counting_newlines(block: &[u8], out: &mut Vec<u8>) -> usize {
    const LANES: usize = 32;
    const STEPS: usize = u8::MAX as usize;
    if out.len() < block.len() {
        out.resize(block.len(), 0);
    }
    let out = &mut out[..block.len()];
    let mut newlines = 0;
    for (src, dst) in block
        .chunks(LANES * STEPS)
        .zip(out.chunks_mut(LANES * STEPS))
    {
        let (src_steps, src_rest) = src.as_chunks::<LANES>();
        let (dst_steps, dst_rest) = dst.as_chunks_mut::<LANES>();
        let mut lanes = [0u8; LANES];
        for (s, d) in src_steps.iter().zip(dst_steps) {
            for i in 0..LANES {
                d[i] = s[i].to_ascii_lowercase();
                lanes[i] += u8::from(s[i] == b'\n');
            }
        }
        for (s, d) in src_rest.iter().zip(dst_rest) {
            *d = s.to_ascii_lowercase();
            newlines += usize::from(*s == b'\n');
        }
        newlines += lanes.iter().map(|&n| usize::from(n)).sum::<usize>();
    }
    newlines
}

/// How a [`Prefilter`] searches: one regex, or, when every alternative must contain a literal
/// of some length, a search for those literals (far fewer false starts than a regex's prefix
/// literals such as "work" or "erro" on ordinary log lines). Several literals are searched in
/// one pass over the block (Teddy), not one pass each.
enum Search {
    Regex(regex::bytes::Regex),
    Literal(Finder<'static>),
    Literals(packed::Searcher),
}

/// Bytes of a literal Teddy is given at least (or all of a shorter one): enough to keep its
/// candidates about as rare as the whole literal's.
const TEDDY_KEEP: usize = 16;

/// The part of a literal Teddy searches for. Teddy finds candidates by their first four bytes
/// and checks each one, so a literal starting with common text ("error…") would stop it on
/// every line that says "error": it is searched from where its first bytes are least common.
fn teddy_pattern(literal: &[u8]) -> &[u8] {
    let keep = literal.len().min(TEDDY_KEEP);
    let start = (0..=literal.len() - keep)
        .min_by_key(|&i| {
            literal[i..]
                .iter()
                .take(4)
                .map(byte_commonness)
                .sum::<usize>()
        })
        .unwrap_or(0);
    &literal[start..]
}

/// How common a byte is in text, higher for more common.
fn byte_commonness(b: &u8) -> usize {
    // Letters by how often they appear in English text, rarest first; logs are no different
    // enough to matter, and a poor guess costs only speed.
    const LETTERS: &[u8] = b"zqjxkvbpygfwmucldrhsnioate";
    match b.to_ascii_lowercase() {
        b' ' => 30,
        b'0'..=b'9' => 20,
        c => LETTERS.iter().position(|&l| l == c).map_or(10, |i| i + 1),
    }
}

/// Literals shorter than this find too many ordinary lines to be worth searching alone.
const MIN_LITERAL: usize = 6;

/// One literal each alternative of `hir` cannot match without (its longest run of literal
/// bytes), or `None` when some alternative has none long enough.
fn required_literals(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    let alternatives: Vec<&Hir> = match hir.kind() {
        HirKind::Alternation(subs) => subs.iter().collect(),
        _ => vec![hir],
    };
    let mut literals = Vec::new();
    for alternative in alternatives {
        if let HirKind::Alternation(_) = alternative.kind() {
            literals.extend(required_literals(alternative)?);
            continue;
        }
        let parts: Vec<&Hir> = match alternative.kind() {
            HirKind::Concat(subs) => subs.iter().collect(),
            _ => vec![alternative],
        };
        let mut best: Vec<u8> = Vec::new();
        let mut run: Vec<u8> = Vec::new();
        for part in parts {
            match part.kind() {
                HirKind::Literal(lit) => run.extend_from_slice(&lit.0),
                _ => {
                    if run.len() > best.len() {
                        best = std::mem::take(&mut run);
                    }
                    run.clear();
                }
            }
        }
        if run.len() > best.len() {
            best = run;
        }
        if best.len() < MIN_LITERAL {
            return None;
        }
        literals.push(best);
    }
    // Literals that begin alike ("worker metering started", "worker metering stopped") are
    // searched by what they share: one pattern fewer to tell apart in every candidate.
    literals.sort();
    let mut shared: Vec<Vec<u8>> = Vec::new();
    for literal in literals {
        if let Some(last) = shared.last_mut() {
            let common = last
                .iter()
                .zip(&literal)
                .take_while(|(a, b)| a == b)
                .count();
            if common >= MIN_LITERAL {
                last.truncate(common);
                continue;
            }
        }
        shared.push(literal);
    }
    Some(shared)
}

/// Whether some class accepts a letter in both cases, as `(?i)` makes them.
fn ignores_case(hir: &Hir) -> bool {
    let both =
        |has: &dyn Fn(u8) -> bool| (b'a'..=b'z').any(|c| has(c) && has(c.to_ascii_uppercase()));
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => both(&|c| {
            class
                .ranges()
                .iter()
                .any(|r| (r.start()..=r.end()).contains(&char::from(c)))
        }),
        HirKind::Class(Class::Bytes(class)) => both(&|c| {
            class
                .ranges()
                .iter()
                .any(|r| (r.start()..=r.end()).contains(&c))
        }),
        HirKind::Empty | HirKind::Look(_) | HirKind::Literal(_) => false,
        HirKind::Repetition(rep) => ignores_case(&rep.sub),
        HirKind::Capture(cap) => ignores_case(&cap.sub),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => subs.iter().any(ignores_case),
    }
}

/// The same search for ASCII-lowercased text: every literal byte and class member that is an
/// ASCII capital becomes its small letter. It matches the lowercased form of anything the
/// original matches, at the same offsets (and possibly more, which a prefilter may).
fn lowercase(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Literal(lit) => Hir::literal(lit.0.to_ascii_lowercase()),
        HirKind::Class(Class::Unicode(mut class)) => {
            let capitals = ClassUnicode::new([ClassUnicodeRange::new('A', 'Z')]);
            let mut upper = class.clone();
            upper.intersect(&capitals);
            let smalls = upper.ranges().iter().map(|r| {
                let small = |c: char| c.to_ascii_lowercase();
                ClassUnicodeRange::new(small(r.start()), small(r.end()))
            });
            class.difference(&capitals);
            class.union(&ClassUnicode::new(smalls));
            Hir::class(Class::Unicode(class))
        }
        HirKind::Class(Class::Bytes(mut class)) => {
            let capitals = ClassBytes::new([ClassBytesRange::new(b'A', b'Z')]);
            let mut upper = class.clone();
            upper.intersect(&capitals);
            let smalls = upper.ranges().iter().map(|r| {
                ClassBytesRange::new(r.start().to_ascii_lowercase(), r.end().to_ascii_lowercase())
            });
            class.difference(&capitals);
            class.union(&ClassBytes::new(smalls));
            Hir::class(Class::Bytes(class))
        }
        HirKind::Empty => Hir::empty(),
        HirKind::Look(look) => Hir::look(look),
        HirKind::Repetition(mut rep) => {
            rep.sub = Box::new(lowercase(*rep.sub));
            Hir::repetition(rep)
        }
        HirKind::Capture(mut cap) => {
            cap.sub = Box::new(lowercase(*cap.sub));
            Hir::capture(cap)
        }
        HirKind::Concat(subs) => Hir::concat(subs.into_iter().map(lowercase).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.into_iter().map(lowercase).collect()),
    }
}

fn without_assertions(hir: Hir) -> Hir {
    match hir.into_kind() {
        HirKind::Look(_) | HirKind::Empty => Hir::empty(),
        HirKind::Literal(lit) => Hir::literal(lit.0),
        HirKind::Class(class) => Hir::class(class),
        HirKind::Repetition(mut rep) => {
            rep.sub = Box::new(without_assertions(*rep.sub));
            Hir::repetition(rep)
        }
        HirKind::Capture(cap) => without_assertions(*cap.sub),
        HirKind::Concat(subs) => Hir::concat(subs.into_iter().map(without_assertions).collect()),
        HirKind::Alternation(subs) => {
            Hir::alternation(subs.into_iter().map(without_assertions).collect())
        }
    }
}

fn may_match_replacement(hir: &Hir) -> bool {
    const REPLACEMENT: char = char::REPLACEMENT_CHARACTER;
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => false,
        HirKind::Literal(lit) => String::from_utf8_lossy(&lit.0).contains(REPLACEMENT),
        HirKind::Class(Class::Unicode(class)) => class
            .ranges()
            .iter()
            .any(|r| (r.start()..=r.end()).contains(&REPLACEMENT)),
        HirKind::Class(Class::Bytes(_)) => true,
        HirKind::Repetition(rep) => may_match_replacement(&rep.sub),
        HirKind::Capture(cap) => may_match_replacement(&cap.sub),
        HirKind::Concat(subs) | HirKind::Alternation(subs) => {
            subs.iter().any(may_match_replacement)
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::runbook::Catalog;

    /// A built-in runbook compiled for an alert with these labels (the scanner's tests use it too).
    pub(in crate::runbook) fn compiled(id: &str, labels: &[(&str, &str)]) -> CompiledRunbook {
        let alert = Alert {
            name: "test".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts_at: None,
        };
        Catalog::builtin()
            .select(Some(id), &alert)
            .unwrap()
            .compile(&alert)
            .unwrap()
    }

    /// The block search is what makes scanning fast; losing it would only show as slowness.
    #[test]
    fn builtin_runbooks_are_searched_by_block() {
        let metering = compiled("metering-token-exchange", &[]);
        let prefilter = metering.matchers.prefilter.as_ref().unwrap();
        assert!(!prefilter.needs_utf8);
        // The success markers ignore case: searched as lowercase literals.
        assert!(prefilter.folded);
        for line in [
            "x ErrorMeteringTokenExchangeFailure y",
            "2026-11-21T04:00:00Z WORKER metering Started",
            "openshift licence usage submitted",
        ] {
            assert!(hits(prefilter, line), "{line}");
        }
        assert!(!hits(prefilter, "GET /healthz 200 worker metering"));
        // A case-sensitive literal stays one: "errormeteringtokenexchangefailure" is no failure,
        // but the prefilter may let it through; the line's own match decides.
        assert!(hits(prefilter, "errormeteringtokenexchangefailure"));
        // `.*` in the related patterns could match what lossy decoding made of bad bytes.
        assert!(
            metering
                .matchers
                .related_prefilter
                .as_ref()
                .unwrap()
                .needs_utf8
        );
        let orchestrator = compiled(
            "orchestrator-callback-errors",
            &[
                ("operation", "DeleteClientID"),
                ("reason_code", "ErrorUnclassified"),
            ],
        );
        assert!(!orchestrator.matchers.prefilter.as_ref().unwrap().folded);
        // One pass for all of the literals where the SIMD for it exists; the regex elsewhere.
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert!(matches!(prefilter.search, Search::Literals(_)));
        }
        assert!(matches!(
            orchestrator.matchers.prefilter.as_ref().unwrap().search,
            Search::Literal(_)
        ));
        let markers = metering
            .runbook
            .success_markers
            .iter()
            .map(|m| regex_syntax::Parser::new().parse(&m.pattern).unwrap())
            .chain([Hir::literal(*b"ErrorMeteringTokenExchangeFailure")]);
        let hir = lowercase(without_assertions(Hir::alternation(markers.collect())));
        // Ignoring case, `k` is also the Kelvin sign and `s` the long s: the literal runs stop
        // there ("worker metering started" is searched as "er metering ").
        assert_eq!(
            required_literals(&hir).unwrap(),
            [
                &b"er metering "[..],
                b"errormeteringtokenexchangefailure",
                b"hift licen",
            ]
        );
        assert!(orchestrator.matchers.related_prefilter.is_none());
    }

    fn hits(prefilter: &Prefilter, text: &str) -> bool {
        let mut scratch = Vec::new();
        let (haystack, _) = prefilter.haystack(text.as_bytes(), &mut scratch);
        prefilter.find_at(haystack, 0).is_some()
    }

    /// Lowercased, a search finds the lowercased form of everything it found, at the same
    /// offsets; it never loses a match (finding more is allowed of a prefilter).
    #[test]
    fn lowercased_searches_keep_every_match() {
        let patterns = [
            r"(?i)\bworker metering started\b",
            r"(?i)licen[cs]es? usage",
            "ErrorMetering[A-Z][a-z]+",
            "[^a-z]+x",
            r"(?i)k\d+",
            "(?-u:[\\x41-\\x5a])z",
            "Straße|STRASSE",
        ];
        let texts = [
            "Worker Metering STARTED now",
            "OpenShift LICENSES usage submitted",
            "ErrorMeteringToken",
            "ABC1x",
            "\u{212A}42 and K7",
            "Qz",
            "Straße STRASSE",
        ];
        for pattern in patterns {
            let hir = regex_syntax::ParserBuilder::new()
                .utf8(false)
                .build()
                .parse(pattern)
                .unwrap();
            let original = regex::bytes::Regex::new(&hir.to_string()).unwrap();
            let lowered = regex::bytes::Regex::new(&lowercase(hir).to_string()).unwrap();
            for text in texts {
                let folded = text.to_ascii_lowercase();
                for m in original.find_iter(text.as_bytes()) {
                    let found = lowered.find_at(folded.as_bytes(), m.start()).unwrap();
                    assert_eq!(found.start(), m.start(), "{pattern} on {text}");
                }
            }
        }
    }

    #[test]
    fn compiled_runbooks_are_shared_by_the_labels_they_use() {
        let runbook = Catalog::builtin()
            .select(Some("orchestrator-callback-errors"), &Alert::default())
            .unwrap();
        let alert = |operation: &str, region: &str| Alert {
            name: "a".into(),
            labels: [
                ("operation", operation),
                ("reason_code", "ErrorUnclassified"),
                ("region", region),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            starts_at: None,
        };
        let cache = CompiledCache::default();
        let first = cache
            .get("builtin", runbook, &alert("DeleteClientID", "us-south"))
            .unwrap();
        let other_region = cache
            .get("builtin", runbook, &alert("DeleteClientID", "eu-de"))
            .unwrap();
        assert!(
            Arc::ptr_eq(&first, &other_region),
            "region is not in the matchers"
        );
        let other_operation = cache
            .get("builtin", runbook, &alert("CreateClientID", "us-south"))
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &other_operation));
        let edited = cache
            .get("uid:2", runbook, &alert("DeleteClientID", "us-south"))
            .unwrap();
        assert!(
            !Arc::ptr_eq(&first, &edited),
            "another version of the runbook is compiled afresh"
        );
        let missing = Alert::default();
        assert!(
            cache.get("builtin", runbook, &missing).is_err(),
            "a missing label is an error, every time"
        );
        assert!(cache.get("builtin", runbook, &missing).is_err());
    }

    /// Each way of searching finds markers in any case, and the signature only as written
    /// (or more: the line's own match decides).
    #[test]
    fn every_search_finds_what_its_lines_need() {
        let signature = ["ErrorMeteringTokenExchangeFailure".to_string()];
        let literals = Prefilter::new(&signature, &[r"(?i)\bworker metering started\b"]).unwrap();
        let literal = Prefilter::new(&signature, &[]).unwrap();
        // "ok" is too short to search for alone: the regex serves this set.
        let regex = Prefilter::new(&signature, &[r"(?i)\bok\b"]).unwrap();
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert!(matches!(literals.search, Search::Literals(_)));
        }
        assert!(matches!(literal.search, Search::Literal(_)));
        assert!(matches!(regex.search, Search::Regex(_)));
        for p in [&literals, &literal, &regex] {
            assert!(hits(p, "a ErrorMeteringTokenExchangeFailure b"));
            assert!(!hits(p, "nothing here"));
        }
        assert!(hits(
            &literals,
            "2026-11-21T04:00:00Z WoRkEr MeTeRiNg StArTeD"
        ));
        assert!(hits(&regex, "all OK"));
        assert!(!hits(&literal, "errormeteringtokenexchangefailure"));
        // The hit is where the literal Teddy searches for is, which may start inside the
        // signature: the scanner looks at the whole line around it.
        let mut scratch = Vec::new();
        let text = b"x\nErrorMeteringTokenExchangeFailure\n";
        let (haystack, _) = literals.haystack(text, &mut scratch);
        let hit = literals.find_at(haystack, 0).unwrap();
        assert!((2..2 + signature[0].len()).contains(&hit.start), "{hit:?}");
    }

    /// The lines each search stops at, as the scanner walks a block.
    fn lines_hit(
        text: &[u8],
        find: &mut dyn FnMut(usize) -> Option<std::ops::Range<usize>>,
    ) -> Vec<usize> {
        let mut lines = Vec::new();
        let mut at = 0;
        while let Some(hit) = find(at) {
            let line = memchr::memchr_iter(b'\n', &text[..hit.start]).count();
            lines.push(line);
            at =
                memchr::memchr(b'\n', &text[hit.start..]).map_or(text.len(), |i| hit.start + i + 1);
        }
        lines
    }

    #[test]
    fn spellings_find_the_lines_the_lowercased_copy_finds() {
        let c = compiled("metering-token-exchange", &[("service", "armada-cluster")]);
        let prefilter = c.matchers.prefilter.as_ref().unwrap();
        let spelled = prefilter.spelled().expect("the metering literals fit");
        // Each window spans a word boundary where its literal has one.
        let (windows, spellings) = spelled.windows();
        assert_eq!(windows, [&b"er m"[..], b"xcha", b"ft l"]);
        assert_eq!(spellings, 8 + 16 + 8);

        let lines = [
            "2026-11-21T04:00:00Z wOrKeR METERING started",
            "ErrorMeteringTokenExchangeFailure (401)",
            "errormeteringtokenEXCHANGEfailure",
            "x ErrorMeteringTokenExchangeFailur",
            "user mode: XCHAnge, soft limit, shift LICEN",
            "OPENSHIFT LICENCES USAGE SUBMITTED",
            "Straße ER METERING , ERMETERING",
            "\u{212A}er metering started",
            "hift licen",
            "rrormeteringtokenexchangefailure",
        ];
        let mut text = Vec::new();
        for (i, line) in lines.iter().cycle().take(40).enumerate() {
            text.extend_from_slice(format!("{i} {line}\n").as_bytes());
        }
        // Literals at the very start and end of the block, and a window with no room before it.
        for block in [
            &text[..],
            b"ErrorMeteringTokenExchangeFailure",
            b"xchangefailure\n",
            b"er mete",
        ] {
            let mut scratch = Vec::new();
            let (haystack, _) = prefilter.haystack(block, &mut scratch);
            let lowercased = lines_hit(block, &mut |at| prefilter.find_at(haystack, at));
            let mut misses = 0;
            let spelled_lines = lines_hit(block, &mut |at| spelled.find_at(block, at, &mut misses));
            let whole: Vec<usize> = block
                .split(|&b| b == b'\n')
                .enumerate()
                .filter(|(_, l)| {
                    let l = l.to_ascii_lowercase();
                    [
                        &b"er metering "[..],
                        b"errormeteringtokenexchangefailure",
                        b"hift licen",
                    ]
                    .iter()
                    .any(|lit| memchr::memmem::find(&l, lit).is_some())
                })
                .map(|(i, _)| i)
                .collect();
            assert_eq!(spelled_lines, whole, "{:?}", String::from_utf8_lossy(block));
            assert!(
                whole.iter().all(|l| lowercased.contains(l)),
                "the lowercased search finds them too"
            );
        }
        // "user mode", "soft limit" and "XCHAnge" hold windows, not literals.
        let mut misses = 0;
        let block = b"user mode, soft limit, XCHAnge\n";
        assert_eq!(spelled.find_at(block, 0, &mut misses), None);
        assert_eq!(misses, 3);
    }

    #[test]
    fn too_many_spellings_keep_the_lowercased_copy() {
        let literals: Vec<Vec<u8>> = ["abcdefgh", "ijklmnop", "qrstuvwx"]
            .iter()
            .map(|l| l.as_bytes().to_vec())
            .collect();
        assert!(Spelled::new(&literals).is_none(), "48 spellings");
        assert!(Spelled::new(&literals[..2]).is_some());
        assert_eq!(spellings(b"a-1B").len(), 4);
        assert!(spellings(b"a-1B").contains(&b"A-1b".to_vec()));
    }

    /// The one-pass copy and count equal lowercasing and counting apart, whatever the length,
    /// however many newlines (each lane's byte count full), and over a longer earlier block.
    #[test]
    fn lowercasing_counts_the_newlines_it_copies() {
        let mut scratch = Vec::new();
        let mixed: Vec<u8> = (0..100_000u32)
            .map(|i| match i % 7 {
                0 => b'\n',
                1 => b'A' + (i % 26) as u8,
                2 => 0xC3,
                _ => (i % 256) as u8,
            })
            .collect();
        let newlines = vec![b'\n'; 3 * 32 * 255 + 17];
        for block in [
            &mixed[..],
            &newlines[..],
            &mixed[..31],
            &mixed[..8200],
            b"",
            b"AbC\n",
        ] {
            let counted = lowercase_counting_newlines(block, &mut scratch);
            assert_eq!(counted, memchr::memchr_iter(b'\n', block).count());
            assert_eq!(scratch[..block.len()], block.to_ascii_lowercase());
        }
    }

    #[test]
    fn teddy_searches_a_literal_from_its_least_common_start() {
        assert_eq!(
            teddy_pattern(b"errormeteringtokenexchangefailure"),
            b"gtokenexchangefailure"
        );
        // Short literals are kept whole: a shorter one would find more lines.
        assert_eq!(teddy_pattern(b"er metering "), b"er metering ");
        assert_eq!(teddy_pattern(b"hift licen"), b"hift licen");
        assert_eq!(teddy_pattern(b"x"), b"x");
    }

    #[test]
    fn a_pattern_that_matches_nothing_in_particular_reads_every_line() {
        assert!(Prefilter::new(&[], &["x*"]).is_none());
        assert!(Prefilter::new(&[], &[r"^\b$"]).is_none());
        let p = Prefilter::new(&["lit".to_string()], &[r"(?i)^\bab\b"]).unwrap();
        assert!(
            hits(&p, "xxabxx"),
            "assertions are dropped, so more lines match"
        );
        assert!(hits(&p, "AB"));
    }
}
