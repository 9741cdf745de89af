//! Removes secrets from log text before it reaches status, Events or the operator's own logs.
//!
//! Log lines are untrusted and may carry credentials a service printed by mistake. Every rule
//! keeps the key or scheme that names the secret (so a reader still sees *what* was there) and
//! replaces only the value. Rules look for shapes that secrets have (a `key=value` pair whose key
//! names a credential, an `Authorization` header, a JWT, an IAM API key), never for ordinary
//! words, so text like "ApiKey based rate limit" survives.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

const MARK: &str = "[REDACTED]";

/// A pair's value: an escaped-JSON string, a JSON string, a single-quoted string or a bare word.
/// An already redacted value is taken whole, so redacting twice changes nothing.
const VALUE: &str =
    r#"(\[REDACTED\]|\\"(?:[^"\\]|\\[^"])*\\"|"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&"'}\])]+)"#;

/// IBM Cloud IAM API keys are 44 characters from the URL-safe base64 alphabet.
const IAM_KEY_LEN: usize = 44;

struct Rule {
    re: Regex,
    replace: fn(&Captures) -> String,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |pattern: &str, replace: fn(&Captures) -> String| Rule {
        re: Regex::new(pattern).expect("redaction patterns are valid"),
        replace,
    };
    vec![
        // PEM blocks may be logged with escaped newlines, so the block runs to its END line or,
        // when that was cut off, to the end of the text.
        rule(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
            |_| format!("-----BEGIN PRIVATE KEY-----{MARK}"),
        ),
        // scheme://user:password@host keeps the user, which helps tell accounts apart.
        rule(
            r#"\b([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@"'<>]+):[^\s/@"'<>]+@"#,
            |c| format!("{}:{MARK}@", &c[1]),
        ),
        rule(
            r#"(?i)\b((?:proxy-)?authorization(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?)(?:(bearer|basic|digest|token|apikey|negotiate)\s+)?[^\s"'\\,;]+"#,
            |c| match c.get(2) {
                Some(scheme) => format!("{}{} {MARK}", &c[1], scheme.as_str()),
                None => format!("{}{MARK}", &c[1]),
            },
        ),
        // A short word after "bearer" is prose ("bearer token expired"), not a credential.
        rule(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]{16,}=*", |c| {
            format!("{} {MARK}", &c[1])
        }),
        // key=value, key: value, "key":"value" and the same inside an escaped JSON string, for
        // keys that only ever name a credential. A key right after `/` is a URL path
        // (`.../identity/token": dial tcp`), not a pair.
        rule(
            &format!(
                r#"(?i)(^|[^\w/])((?:x-api-key|api[_-]?key|client[_-]?secret|secret[_-]?key|password|passwd|passphrase|(?:access|refresh|id|iam|auth|session)[_-]?token|private[_-]?key)(?:\\?["'])?\s*[:=]\s*){VALUE}"#
            ),
            replace_value,
        ),
        // Words that are also prose ("failed to get token: connection refused") count only in
        // the forms logs use for fields: `token=x` or a quoted JSON key.
        rule(
            &format!(
                r#"(?i)(^|[^\w/])((?:token|secret|credentials?)(?:\s*=\s*|\\?["']\s*:\s*)){VALUE}"#
            ),
            replace_value,
        ),
        rule(r"\beyJ[A-Za-z0-9_-]{10,}(?:\.[A-Za-z0-9_-]*){0,2}", |_| {
            MARK.to_string()
        }),
        // Unlabelled IAM keys: only a 44-character run mixing upper case, lower case and
        // digits, so Kubernetes names (lower case) and hex digests (no upper case) are kept.
        rule(r"[A-Za-z0-9_-]{44,}", |c| {
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

/// Keeps the text before the key and the key itself, and the value's quoting.
fn replace_value(c: &Captures) -> String {
    let value = &c[3];
    let quote = if value.starts_with("\\\"") {
        "\\\""
    } else if value.starts_with('"') {
        "\""
    } else if value.starts_with('\'') {
        "'"
    } else {
        ""
    };
    format!("{}{}{quote}{MARK}{quote}", &c[1], &c[2])
}

/// `s` with every recognisable secret replaced by `[REDACTED]`; borrowed when nothing matched.
pub fn redact(s: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(s);
    for rule in RULES.iter() {
        let replaced = match rule.re.replace_all(&out, rule.replace) {
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

    #[test]
    fn secrets_are_redacted() {
        let cases = [
            ("apikey=AbCdEf123456", "apikey=[REDACTED]"),
            ("api_key: s3cr3t-value more", "api_key: [REDACTED] more"),
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
                r#""Authorization":"tok123""#,
                r#""Authorization":"[REDACTED]""#,
            ),
            (
                "sent bearer 0123456789abcdefghijKLMN== to iam",
                "sent bearer [REDACTED] to iam",
            ),
            (
                "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature_x",
                "token [REDACTED]",
            ),
            (
                "https://admin:hunter2@db.example.com/x",
                "https://admin:[REDACTED]@db.example.com/x",
            ),
            ("password=hunter2&user=bob", "password=[REDACTED]&user=bob"),
            ("passwd='pa ss' ok", "passwd='[REDACTED]' ok"),
            ("client_secret=abc; next", "client_secret=[REDACTED]; next"),
            ("secret=topsecret", "secret=[REDACTED]"),
            (r#"{"token": "abc"}"#, r#"{"token": "[REDACTED]"}"#),
            ("password: hunter2", "password: [REDACTED]"),
            ("token=abc123", "token=[REDACTED]"),
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
                "key AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEf used",
                "key [REDACTED] used",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\\nMIIE\\n-----END RSA PRIVATE KEY----- after",
                "-----BEGIN PRIVATE KEY-----[REDACTED] after",
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
            r#"Post "https://iam.cloud.ibm.com/identity/token": context deadline exceeded"#,
            "bearer token expired",
            "the secret is safe",
            "tokens: 5",
            "Worker metering started",
            "",
        ];
        for input in cases {
            assert!(
                matches!(redact(input), Cow::Borrowed(_)),
                "changed: {input}"
            );
        }
    }

    #[test]
    fn redacting_twice_changes_nothing() {
        let once = redact("apikey=abc Authorization: Bearer xyz password=p").into_owned();
        assert_eq!(redact(&once), once);
    }
}
