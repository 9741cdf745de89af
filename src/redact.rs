//! Removes secrets from log text before it reaches status, Events or the operator's own logs.
//!
//! Log lines are untrusted: they may carry credentials a service printed by mistake, and bytes
//! meant for a terminal. [`redact`] first drops control characters and ANSI escape sequences
//! (so nothing stored can move a reader's cursor, recolour a terminal or hide text), then runs
//! the rule table [`RULES`], then the patterns an operator added at start ([`install`]).
//!
//! Every rule keeps the key, scheme or vendor prefix that names the secret (so a reader still
//! sees *what* was there) and replaces only the value. Rules look for shapes that secrets have (a
//! `key=value` pair whose key names a credential, an `Authorization` header, a vendor's token
//! prefix, a JWT), never for ordinary words, so text like "ApiKey based rate limit" or "failed to
//! get token: connection refused" survives. Redacting twice changes nothing.
//!
//! Cost: the scanner redacts only the few sample lines it keeps, never every line it reads.
//! Rust's regex engine runs in linear time, so no input can make a rule (or a user's pattern)
//! backtrack without end.

use std::borrow::Cow;
use std::sync::{LazyLock, OnceLock};

use regex::{Captures, Regex};

const MARK: &str = "[REDACTED]";

/// A pair's value: an escaped-JSON string, a JSON string, a single-quoted string or a bare word.
/// A bare word takes an earlier rule's mark whole (`AKIA[REDACTED]`), so redacting twice, or a
/// pair around a vendor token, changes nothing more.
const VALUE: &str =
    r#"(\\"(?:[^"\\]|\\[^"])*\\"|"(?:[^"\\]|\\.)*"|'[^']*'|(?:\[REDACTED\]|[^\s,;&"'}\])])+)"#;

/// Words that make a key name a secret, with any prefix or suffix (`DB_PASSWORD`, `x-api-key`,
/// `aws_secret_access_key`, `sessionToken`).
const SECRET_WORDS: &str = r"password|passwd|passphrase|pwd|secret|token|api[ _-]?key|access[_-]?key|private[_-]?key|credential|session|cookie";

/// Of [`SECRET_WORDS`], those that are also ordinary prose ("failed to get token: connection
/// refused", "secret: ..."): a bare one before `: ` is taken for prose, not a field.
const PROSE_WORDS: [&str; 5] = ["token", "secret", "session", "cookie", "credential"];

/// IBM Cloud IAM API keys are 44 characters from the URL-safe base64 alphabet.
const IAM_KEY_LEN: usize = 44;

/// One curated rule: what it is for (its name, listed in the tests with an example each), the
/// shape it finds, and what the match becomes.
pub struct Rule {
    pub name: &'static str,
    re: Regex,
    replace: fn(&Captures) -> String,
}

/// The built-in rules, applied in this order (earlier rules see the text first, so a header's
/// whole value goes before the generic pair rule could take only its first word).
pub static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |name: &'static str, pattern: &str, replace: fn(&Captures) -> String| Rule {
        name,
        re: Regex::new(pattern).expect("redaction patterns are valid"),
        replace,
    };
    vec![
        // PEM and PGP blocks may be logged with escaped newlines, so the block runs to its END
        // line or, when that was cut off, to the end of the text.
        rule(
            "private-key-block",
            r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$)",
            |c| format!("-----BEGIN {0}-----{MARK}-----END {0}-----", &c[1]),
        ),
        // scheme://user:password@host and scheme://:password@host; the user is kept, it helps
        // tell accounts apart.
        rule(
            "url-userinfo",
            r#"\b([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@"'<>]*):[^\s/@"'<>]+@"#,
            |c| format!("{}:{MARK}@", &c[1]),
        ),
        rule(
            "authorization-header",
            r#"(?i)\b((?:proxy-)?authorization(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?)(?:(bearer|basic|digest|token|apikey|negotiate)\s+)?[^\s"'\\,;]+"#,
            |c| match c.get(2) {
                Some(scheme) => format!("{}{} {MARK}", &c[1], scheme.as_str()),
                None => format!("{}{MARK}", &c[1]),
            },
        ),
        // A short word after "bearer" is prose ("bearer token expired"), not a credential.
        rule(
            "bearer-token",
            r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{16,}=*",
            |c| format!("{} {MARK}", &c[1]),
        ),
        // Every cookie in the header is a session's credential, so the whole value goes.
        rule(
            "cookie-header",
            r#"(?i)(^|[^\w.-])((?:set-)?cookie(?:\\?["'])?\s*:\s*(?:\\?["'])?)[^"'\\\r\n]+"#,
            |c| format!("{}{}{MARK}", &c[1], &c[2]),
        ),
        rule(
            "aws-access-key-id",
            r"\b(AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
            |c| format!("{}{MARK}", &c[1]),
        ),
        rule(
            "github-token",
            r"\b(gh[pousr]_|github_pat_)[A-Za-z0-9_]{20,255}",
            |c| format!("{}{MARK}", &c[1]),
        ),
        rule(
            "gitlab-token",
            r"\b(gl(?:pat|dt|rt|ptt|cbt|oas)-)[A-Za-z0-9_-]{20,}",
            |c| format!("{}{MARK}", &c[1]),
        ),
        rule("slack-token", r"\b(xox[abeprs]-)[A-Za-z0-9-]{10,}", |c| {
            format!("{}{MARK}", &c[1])
        }),
        // `--password hunter2`; `--password=hunter2` is a pair. A value that is the next flag
        // is left alone.
        rule(
            "secret-flag",
            &format!(
                r#"(?i)(^|\s)(--[\w.-]*(?:{SECRET_WORDS})[\w.-]*\s+)(\[REDACTED\]|"(?:[^"\\]|\\.)*"|'[^']*'|[^\s"'-]\S*)"#
            ),
            |c| format!("{}{}{MARK}", &c[1], &c[2]),
        ),
        // key=value, key: value, key:value, "key":"value" and the same inside an escaped JSON
        // string. A key right after `/` is a URL path (`.../identity/token": dial tcp`).
        rule(
            "secret-pair",
            &format!(
                r#"(?i)(^|[^\w./-])([\w.-]*?)({SECRET_WORDS})([\w.-]*)((\\?["'])?\s*[:=](\s*)){VALUE}"#
            ),
            replace_pair,
        ),
        rule(
            "jwt",
            r"\beyJ[A-Za-z0-9_-]{10,}(?:\.[A-Za-z0-9_-]*){0,2}",
            |_| MARK.to_string(),
        ),
        // Unlabelled IAM keys: only a 44-character run mixing upper case, lower case and
        // digits, so Kubernetes names (lower case) and hex digests (no upper case) are kept.
        rule("iam-api-key", r"[A-Za-z0-9_-]{44,}", |c| {
            let run = &c[0];
            let mixed = run.bytes().any(|b| b.is_ascii_uppercase())
                && run.bytes().any(|b| b.is_ascii_lowercase())
                && run.bytes().any(|b| b.is_ascii_digit());
            if run.len() == IAM_KEY_LEN && mixed {
                MARK.to_string()
            } else {
                run.to_string()
            }
        }),
    ]
});

/// Decides whether a `key<sep>value` is a field holding a secret, and keeps the text before
/// the value and the value's quoting.
///
/// `key=value`, a quoted key and `key:value` (no space) are fields. `key: value` is often prose
/// ("failed to get token: connection refused", "ErrorMeteringTokenExchangeFailure: ..."), so
/// there the key must end with the secret word or a separated suffix (`token_id`, not
/// `TokenExchangeFailure`), and a prose word must carry a prefix or suffix (`DB_TOKEN`).
fn replace_pair(c: &Captures) -> String {
    let (prefix, word, suffix, sep) = (&c[2], &c[3], &c[4], &c[5]);
    let prose_form = c.get(6).is_none() && !sep.contains('=') && !c[7].is_empty();
    if prose_form {
        let separated = suffix.is_empty() || suffix.starts_with(['_', '-', '.']);
        let bare_prose_word = prefix.is_empty()
            && suffix.is_empty()
            && PROSE_WORDS.iter().any(|w| w.eq_ignore_ascii_case(word));
        if !separated || bare_prose_word {
            return c[0].to_string();
        }
    }
    let value = &c[8];
    let quote = if value.starts_with("\\\"") {
        "\\\""
    } else if value.starts_with('"') {
        "\""
    } else if value.starts_with('\'') {
        "'"
    } else {
        ""
    };
    format!("{}{prefix}{word}{suffix}{sep}{quote}{MARK}{quote}", &c[1])
}

/// ANSI escape sequences (CSI, OSC, two-byte escapes, the 8-bit CSI), control characters, and
/// the Unicode controls that reorder or hide text (bidi overrides, zero-width marks).
static CONTROLS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\x1b\[[0-?]*[ -/]*[@-~]",
        r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?",
        r"|\x1b[ -/]*[0-~]?",
        r"|\x{9b}[0-?]*[ -/]*[@-~]",
        r"|[\x00-\x1f\x7f-\x9f\x{200b}-\x{200f}\x{202a}-\x{202e}\x{2060}-\x{2069}\x{feff}]",
    ))
    .expect("the control pattern is valid")
});

/// `s` without terminal escape sequences and control characters. Whitespace controls (tab,
/// newline, ...) become a space so words stay apart; everything else goes.
pub fn strip_controls(s: &str) -> Cow<'_, str> {
    CONTROLS.replace_all(s, |c: &Captures| match c[0].as_bytes() {
        [b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'] => " ",
        _ => "",
    })
}

/// Patterns the operator's user added at start (`--redact-pattern`).
static EXTRA: OnceLock<Vec<Regex>> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("redaction pattern {pattern:?} is not a valid regular expression: {source}")]
    Invalid {
        pattern: String,
        source: regex::Error,
    },
    #[error(
        "redaction pattern {0:?} matches the empty string, so it would redact between every character"
    )]
    MatchesEmpty(String),
    #[error("a redaction pattern is empty (a blank line in ATO_REDACT_PATTERNS?)")]
    Empty,
    #[error("extra redaction patterns were already installed")]
    AlreadyInstalled,
}

/// Parses a user's pattern: a valid regex that cannot match nothing.
pub fn parse_pattern(pattern: &str) -> Result<Regex, PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    let re = Regex::new(pattern).map_err(|source| PatternError::Invalid {
        pattern: pattern.to_string(),
        source,
    })?;
    if re.is_match("") {
        return Err(PatternError::MatchesEmpty(pattern.to_string()));
    }
    Ok(re)
}

/// Adds the user's patterns to every later [`redact`] call; once per process, before anything
/// is redacted for real (the controller's start).
pub fn install(patterns: Vec<Regex>) -> Result<(), PatternError> {
    EXTRA
        .set(patterns)
        .map_err(|_| PatternError::AlreadyInstalled)
}

/// `s` without control characters and escape sequences, with every recognisable secret replaced
/// by `[REDACTED]`; borrowed when nothing changed.
pub fn redact(s: &str) -> Cow<'_, str> {
    redact_with(s, EXTRA.get().map_or(&[], Vec::as_slice))
}

fn redact_with<'a>(s: &'a str, extra: &[Regex]) -> Cow<'a, str> {
    let mut out = strip_controls(s);
    let rules = RULES.iter().map(|r| (&r.re, r.replace));
    let extra = extra.iter().map(|re| {
        (
            re,
            (|_: &Captures| MARK.to_string()) as fn(&Captures) -> String,
        )
    });
    for (re, replace) in rules.chain(extra) {
        let replaced = match re.replace_all(&out, replace) {
            Cow::Owned(text) if text != *out => Some(text),
            _ => None,
        };
        if let Some(text) = replaced {
            out = Cow::Owned(text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rule, with text it must change (and the result) and look-alike text it must keep.
    /// A rule added to [`RULES`] without a row here fails `every_rule_has_examples`.
    const EXAMPLES: &[(&str, &str, &str, &str)] = &[
        (
            "private-key-block",
            "key: -----BEGIN RSA PRIVATE KEY-----\\nMIIEow\\n-----END RSA PRIVATE KEY----- after",
            "key: -----BEGIN RSA PRIVATE KEY-----[REDACTED]-----END RSA PRIVATE KEY----- after",
            "-----BEGIN CERTIFICATE-----\\nMIIC\\n-----END CERTIFICATE-----",
        ),
        (
            "url-userinfo",
            "redis://:hunter2@cache:6379/0",
            "redis://:[REDACTED]@cache:6379/0",
            "ssh://git@github.com/org/repo and http://cache:6379/0",
        ),
        (
            "authorization-header",
            "Authorization: Basic dXNlcjpwYXNz",
            "Authorization: Basic [REDACTED]",
            "authorization failed for user bob",
        ),
        (
            "bearer-token",
            "sent bearer 0123456789abcdefghijKLMN== to iam",
            "sent bearer [REDACTED] to iam",
            "bearer token expired",
        ),
        (
            "cookie-header",
            "Set-Cookie: sid=31d4d96e407aad42; Path=/; HttpOnly",
            "Set-Cookie: [REDACTED]",
            "the cookie jar is empty",
        ),
        (
            "aws-access-key-id",
            "using key AKIAIOSFODNN7EXAMPLE for s3",
            "using key AKIA[REDACTED] for s3",
            "AKIA is how AWS key ids start; AKIASHORT",
        ),
        (
            "github-token",
            "clone with ghp_16C7e42F292c6912E7710c838347Ae178B4a done",
            "clone with ghp_[REDACTED] done",
            "ghp_short and gh_pages_branch",
        ),
        (
            "gitlab-token",
            "PRIVATE-TOKEN glpat-xxxxxxxxxxxxxxxxxxxx",
            "PRIVATE-TOKEN glpat-[REDACTED]",
            "glpat-short",
        ),
        (
            "slack-token",
            "posting with xoxb-123456789012-abcdefABCDEF",
            "posting with xoxb-[REDACTED]",
            "xoxo-hugs and xoxb-",
        ),
        (
            "secret-flag",
            "exec: app --db-password hunter2 --verbose",
            "exec: app --db-password [REDACTED] --verbose",
            "app --token --debug --password",
        ),
        (
            "secret-pair",
            "env DB_PASSWORD=hunter2 pwd=s3cr3t api key: k1",
            "env DB_PASSWORD=[REDACTED] pwd=[REDACTED] api key: [REDACTED]",
            "failed to get token: connection refused",
        ),
        (
            "jwt",
            "id eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature_x end",
            "id [REDACTED] end",
            "eyJ alone, and eyebrows",
        ),
        (
            "iam-api-key",
            "key AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEf used",
            "key [REDACTED] used",
            "sha256:3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea",
        ),
    ];

    fn rule(name: &str) -> &'static Rule {
        RULES
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no rule {name}"))
    }

    #[test]
    fn every_rule_has_examples() {
        for r in RULES.iter() {
            assert!(
                EXAMPLES.iter().any(|(name, ..)| *name == r.name),
                "rule {} has no example",
                r.name
            );
        }
    }

    #[test]
    fn each_rule_redacts_its_example_and_keeps_its_look_alike() {
        for (name, positive, want, negative) in EXAMPLES {
            let r = rule(name);
            let alone = r.re.replace_all(positive, r.replace);
            assert_ne!(alone, *positive, "{name} alone left {positive:?} alone");
            assert_eq!(redact(positive), *want, "{name}: {positive:?}");
            assert!(
                matches!(redact(negative), Cow::Borrowed(_)),
                "{name} changed {negative:?} into {:?}",
                redact(negative)
            );
        }
    }

    /// The formats the tenancy review found kept verbatim, and the generic forms.
    #[test]
    fn secrets_are_redacted() {
        let cases = [
            ("apikey=AbCdEf123456", "apikey=[REDACTED]"),
            ("api_key: s3cr3t-value more", "api_key: [REDACTED] more"),
            ("api-key=k", "api-key=[REDACTED]"),
            ("api key: X1", "api key: [REDACTED]"),
            (
                r#"{"apikey":"abc def","x":1}"#,
                r#"{"apikey":"[REDACTED]","x":1}"#,
            ),
            (r#"{"apiKey": "k1"}"#, r#"{"apiKey": "[REDACTED]"}"#),
            ("X-Api-Key: 0123456789abcdef", "X-Api-Key: [REDACTED]"),
            (
                "Authorization: Bearer abc.def.ghi",
                "Authorization: Bearer [REDACTED]",
            ),
            (
                "authorization=Basic dXNlcjpwYXNz",
                "authorization=Basic [REDACTED]",
            ),
            (
                "Authorization: token ghp_16C7e42F292c6912E7710c838347Ae178B4a",
                "Authorization: token [REDACTED]",
            ),
            (
                r#""Authorization":"tok123""#,
                r#""Authorization":"[REDACTED]""#,
            ),
            (
                "https://admin:hunter2@db.example.com/x",
                "https://admin:[REDACTED]@db.example.com/x",
            ),
            ("redis://:p4ss@redis:6379", "redis://:[REDACTED]@redis:6379"),
            ("password=hunter2&user=bob", "password=[REDACTED]&user=bob"),
            ("passwd='pa ss' ok", "passwd='[REDACTED]' ok"),
            ("pwd=X", "pwd=[REDACTED]"),
            ("--password X", "--password [REDACTED]"),
            ("--password=X", "--password=[REDACTED]"),
            ("DB_PASSWORD=hunter2", "DB_PASSWORD=[REDACTED]"),
            ("DB_PASSWORD: hunter2", "DB_PASSWORD: [REDACTED]"),
            (
                "postgres_password_file=x",
                "postgres_password_file=[REDACTED]",
            ),
            ("client_secret=abc; next", "client_secret=[REDACTED]; next"),
            (
                "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws_secret_access_key=[REDACTED]",
            ),
            (
                "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
                "AWS_ACCESS_KEY_ID=[REDACTED]",
            ),
            ("key id AKIAIOSFODNN7EXAMPLE", "key id AKIA[REDACTED]"),
            ("secret=topsecret", "secret=[REDACTED]"),
            (r#"{"token": "abc"}"#, r#"{"token": "[REDACTED]"}"#),
            (
                "{Token:abc Password:xyz}",
                "{Token:[REDACTED] Password:[REDACTED]}",
            ),
            ("password: hunter2", "password: [REDACTED]"),
            ("token=abc123", "token=[REDACTED]"),
            ("SESSION_TOKEN: t0k", "SESSION_TOKEN: [REDACTED]"),
            ("sessionid=abc", "sessionid=[REDACTED]"),
            ("private_key=abc", "private_key=[REDACTED]"),
            ("credentials=u:p", "credentials=[REDACTED]"),
            ("Cookie: a=1; sid=2", "Cookie: [REDACTED]"),
            (
                r#"{"Cookie":"sid=2","x":1}"#,
                r#"{"Cookie":"[REDACTED]","x":1}"#,
            ),
            ("session_cookie=abc", "session_cookie=[REDACTED]"),
            (
                r#"{"access_token":"zzz"}"#,
                r#"{"access_token":"[REDACTED]"}"#,
            ),
            (
                r#"{"refresh_token":null}"#,
                r#"{"refresh_token":[REDACTED]}"#,
            ),
            (
                r#"Wrapped Errors: ["{\"apikey\":\"leak\"}"]"#,
                r#"Wrapped Errors: ["{\"apikey\":\"[REDACTED]\"}"]"#,
            ),
            (
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
                "github_pat_[REDACTED]",
            ),
            ("xoxp-1234-5678-abcdefgh", "xoxp-[REDACTED]"),
            ("xapp xoxa-2-abcdefghijkl", "xapp xoxa-[REDACTED]"),
            (
                "-----BEGIN PGP PRIVATE KEY BLOCK-----\\n\\nlQOYBF\\n-----END PGP PRIVATE KEY BLOCK-----",
                "-----BEGIN PGP PRIVATE KEY BLOCK-----[REDACTED]-----END PGP PRIVATE KEY BLOCK-----",
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjE (cut",
                "-----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]-----END OPENSSH PRIVATE KEY-----",
            ),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----MIIF-----END ENCRYPTED PRIVATE KEY-----",
                "-----BEGIN ENCRYPTED PRIVATE KEY-----[REDACTED]-----END ENCRYPTED PRIVATE KEY-----",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "input: {input}");
        }
    }

    #[test]
    fn ordinary_text_is_kept() {
        let cases = [
            r#"Failed to decode response (429): \"ApiKey based rate limit for calls to /token\""#,
            "ErrorMeteringTokenExchangeFailure: Failed to prepare OpenShift license metering  IAM token exchange failure",
            "The IAM token exchange request failed. (429)",
            "POST https://iam.cloud.ibm.com/identity/token: dial tcp: i/o timeout",
            "callbackName:DeleteClientID reasonCode:ErrorUnclassified controllerID:bsd1234f0sop9a2b4cdg",
            "403 BXNIM0515E: You are not authorized to manage this Client ID.",
            "pod armada-cluster-metering-worker-7d9f8b6c5d-x2x9z-abcdef-0123456789 restarted",
            "sha256:3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea",
            "password reset requested by user",
            "failed to get token: connection refused",
            "secret: not a field, just prose",
            "session: started",
            r#"Post "https://iam.cloud.ibm.com/identity/token": context deadline exceeded"#,
            "bearer token expired",
            "the secret is safe",
            "tokens: 5",
            "TokenExchangeFailure: upstream said no",
            "Worker metering started",
            "",
        ];
        for input in cases {
            assert!(
                matches!(redact(input), Cow::Borrowed(_)),
                "changed: {input} into {}",
                redact(input)
            );
        }
    }

    #[test]
    fn redacting_twice_changes_nothing() {
        for (_, positive, ..) in EXAMPLES {
            let once = redact(positive).into_owned();
            assert_eq!(redact(&once), once, "{positive:?}");
        }
        let once = redact("apikey=abc Authorization: Bearer xyz password=p").into_owned();
        assert_eq!(redact(&once), once);
    }

    #[test]
    fn control_characters_and_escape_sequences_are_stripped() {
        let cases = [
            ("\x1b[31mred\x1b[0m text", "red text"),
            ("a\tb\r\nc", "a b  c"),
            ("bell\x07 and nul\x00", "bell and nul"),
            ("title\x1b]0;pwned\x07 after", "title after"),
            ("link \x1b]8;;http://x\x1b\\here\x1b]8;;\x1b\\", "link here"),
            ("8-bit \u{9b}2J csi", "8-bit  csi"),
            ("c1 \u{85}next", "c1 next"),
            ("bidi \u{202e}txt.exe\u{202c}", "bidi txt.exe"),
            ("zero\u{200b}width", "zerowidth"),
            ("lone escape \x1b", "lone escape "),
            ("keep ünïcödé and 日本", "keep ünïcödé and 日本"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input:?}");
        }
    }

    #[test]
    fn escapes_cannot_hide_a_secret() {
        assert_eq!(
            redact("pass\x1b[0mword=hunter2"),
            "password=[REDACTED]",
            "stripping comes before the rules"
        );
        assert_eq!(redact("AKIA\x00IOSFODNN7EXAMPLE"), "AKIA[REDACTED]");
    }

    #[test]
    fn extra_patterns_apply_after_the_rules() {
        let extra = [parse_pattern(r"CUST-[0-9]{6}").unwrap()];
        assert_eq!(
            redact_with("customer CUST-123456 and password=x", &extra),
            "customer [REDACTED] and password=[REDACTED]"
        );
        assert!(matches!(
            redact_with("nothing here", &extra),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn bad_extra_patterns_are_refused_with_the_reason() {
        let err = parse_pattern("(unclosed").unwrap_err().to_string();
        assert!(
            err.contains("\"(unclosed\" is not a valid regular expression"),
            "{err}"
        );
        assert!(err.contains("unclosed group"), "{err}");
        let err = parse_pattern("x*").unwrap_err().to_string();
        assert!(err.contains("matches the empty string"), "{err}");
        let err = parse_pattern("").unwrap_err().to_string();
        assert!(err.contains("blank line in ATO_REDACT_PATTERNS"), "{err}");
    }
}
