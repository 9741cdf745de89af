//! Tracing setup: plain or JSON lines on stderr, filtered by `RUST_LOG` (default `info`).
//!
//! Every line passes through [`redact`] on its way out: a field may carry text from outside (an
//! API error quoting an object, a pod's message, a log line), and the operator's own log must
//! neither leak a secret nor carry a terminal escape sequence. Plain output is therefore never
//! coloured: the colour codes would be stripped like anyone else's.

use std::borrow::Cow;
use std::io::Write;

use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::cli::LogFormat;
use crate::redact::redact;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let writer = RedactingStderr(format);
    match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(writer))
            .init(),
        LogFormat::Plain => registry
            .with(fmt::layer().with_ansi(false).with_writer(writer))
            .init(),
    }
}

/// Hands out one [`Line`] per event.
struct RedactingStderr(LogFormat);

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            format: self.0,
            buf: Vec::new(),
        }
    }
}

/// Collects one formatted event and writes it, redacted, when the formatter is done with it.
struct Line {
    format: LogFormat,
    buf: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        // Nowhere to report a failed write to stderr.
        let _ = std::io::stderr()
            .lock()
            .write_all(sanitize(self.format, &text).as_bytes());
    }
}

/// `text` (one or more lines) as it may be logged.
fn sanitize(format: LogFormat, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match format {
            LogFormat::Plain => out.push_str(&redact(line)),
            LogFormat::Json => out.push_str(&redact_json(line)),
        }
        out.push('\n');
    }
    out
}

/// Redacts each string of a JSON line on its own, so the JSON stays valid and an escaped
/// control character (`\u001b`) is caught as the character it stands for. The line is
/// re-encoded only when something changed; one that is not JSON is redacted as text.
fn redact_json(line: &str) -> Cow<'_, str> {
    let Ok(mut value) = serde_json::from_str::<Value>(line) else {
        return redact(line);
    };
    if redact_strings(&mut value) {
        Cow::Owned(value.to_string())
    } else {
        Cow::Borrowed(line)
    }
}

/// Whether any string in `value` changed.
fn redact_strings(value: &mut Value) -> bool {
    match value {
        Value::String(s) => match redact(s) {
            Cow::Owned(clean) => {
                *s = clean;
                true
            }
            Cow::Borrowed(_) => false,
        },
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| redact_strings(v) | changed),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |changed, v| redact_strings(v) | changed),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_redacted_and_stripped() {
        let text = "2026-01-01T00:00:00Z  WARN x: reconcile failed error=bad \x1b[31mpassword=hunter2\x1b[0m\n";
        assert_eq!(
            sanitize(LogFormat::Plain, text),
            "2026-01-01T00:00:00Z  WARN x: reconcile failed error=bad password=[REDACTED]\n"
        );
    }

    #[test]
    fn json_lines_stay_json_and_lose_escaped_controls() {
        let line = serde_json::json!({
            "level": "WARN",
            "fields": {"message": "reconcile failed", "error": "\u{1b}[2Jtoken=abc\nnext"},
        })
        .to_string();
        let out = sanitize(LogFormat::Json, &format!("{line}\n"));
        assert!(out.ends_with('\n') && out.lines().count() == 1, "{out}");
        let v: Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(v["fields"]["error"], "token=[REDACTED] next");
        assert_eq!(v["fields"]["message"], "reconcile failed");
        assert!(!out.contains("\\u001b"), "{out}");
    }

    #[test]
    fn clean_json_lines_are_kept_byte_for_byte() {
        let line = r#"{"timestamp":"t","level":"INFO","fields":{"message":"triaged","lines":3}}"#;
        assert!(matches!(redact_json(line), Cow::Borrowed(_)));
    }
}
