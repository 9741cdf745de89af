//! Durations as people write them (`30m`, `1h30m`), read from flags and specs and printed back.

use std::time::Duration;

/// Parses a Go-style duration such as `30m` or `1h30m`; negative durations are refused.
pub fn parse(s: &str) -> Result<Duration, String> {
    let d: kube::core::Duration = s
        .parse()
        .map_err(|e| format!("{s:?} is not a duration like 30m or 1h: {e}"))?;
    if d.is_negative() {
        return Err(format!("{s:?} must not be negative"));
    }
    Ok(d.into())
}

/// Prints a duration the way `parse` reads it, in whole seconds (`1h30m`, `90s` as `1m30s`).
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse("soon").is_err());
        assert!(parse("-5m").is_err());
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(format(Duration::from_secs(3600)), "1h");
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(0)), "0s");
    }

    #[test]
    fn what_is_printed_parses_back() {
        for secs in [1, 59, 60, 61, 3599, 3600, 86_399] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
