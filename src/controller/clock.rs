//! Time as the API server tells it. Every time the controller writes or compares (proposal
//! expiry, ledger entries for budgets and cooldowns, the verification deadline, the log
//! window) is the API server's, so a replica whose own clock is off by minutes decides exactly
//! like one whose clock is right, and replicas with different clocks agree.
//!
//! The offset is read from the `Date` header of a cheap request (`/version`) and kept for a
//! while; the header has a resolution of one second, so decisions are exact to about a second.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use kube::Client;
use tracing::{info, warn};

/// How long a measured offset is trusted before it is measured again.
const FRESH: Duration = Duration::from_secs(60);

pub struct ServerClock {
    client: Client,
    offset: Mutex<Option<(Instant, SignedDuration)>>,
}

impl ServerClock {
    pub fn new(client: Client) -> Self {
        ServerClock {
            client,
            offset: Mutex::new(None),
        }
    }

    /// The API server's current time, as well as it is known.
    pub async fn now(&self) -> Timestamp {
        let cached = *self.offset.lock().unwrap_or_else(|e| e.into_inner());
        let offset = match cached {
            Some((at, offset)) if at.elapsed() < FRESH => offset,
            _ => match self.measure().await {
                Ok(offset) => {
                    if cached
                        .is_none_or(|(_, old)| (old - offset).abs() > SignedDuration::from_secs(2))
                    {
                        info!(
                            offset_ms = i64::try_from(offset.as_millis()).unwrap_or(i64::MAX),
                            "API server clock offset"
                        );
                    }
                    *self.offset.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((Instant::now(), offset));
                    offset
                }
                Err(e) => {
                    // Keep the last known offset (or none) rather than fail a reconcile on it.
                    warn!(error = %e, "could not read the API server's time; using the last offset");
                    cached.map_or(SignedDuration::ZERO, |(_, o)| o)
                }
            },
        };
        Timestamp::now() + offset
    }

    async fn measure(&self) -> Result<SignedDuration, String> {
        let request = http::Request::get("/version")
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        let before = Timestamp::now();
        let response = self
            .client
            .send(request.map(kube::client::Body::from))
            .await
            .map_err(|e| e.to_string())?;
        let after = Timestamp::now();
        let date = response
            .headers()
            .get(http::header::DATE)
            .and_then(|v| v.to_str().ok())
            .ok_or("the API server sent no Date header")?;
        let server = parse_http_date(date)?;
        Ok(offset(server, before, after))
    }
}

/// The offset of the server's clock from ours, given the server's `Date` (whole seconds,
/// truncated) and our clock just before and after the request.
fn offset(server: Timestamp, before: Timestamp, after: Timestamp) -> SignedDuration {
    let midpoint = before + after.duration_since(before) / 2;
    // The header drops the fraction of its second: on average it is half a second behind.
    (server + SignedDuration::from_millis(500)).duration_since(midpoint)
}

/// An HTTP `Date` (RFC 9110 IMF-fixdate, e.g. `Sat, 21 Nov 2026 15:27:25 GMT`).
fn parse_http_date(s: &str) -> Result<Timestamp, String> {
    jiff::fmt::rfc2822::parse(s)
        .map(|z| z.timestamp())
        .map_err(|e| format!("the API server's Date header {s:?} is not a date: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sat, 21 Nov 2026 15:27:25 GMT").unwrap(),
            "2026-11-21T15:27:25Z".parse::<Timestamp>().unwrap()
        );
        assert!(parse_http_date("yesterday").is_err());
    }

    #[test]
    fn the_offset_is_measured_from_the_middle_of_the_request() {
        let before: Timestamp = "2026-11-21T15:00:00Z".parse().unwrap();
        let after = before + SignedDuration::from_millis(200);
        // The server is five minutes ahead of us.
        let server: Timestamp = "2026-11-21T15:05:00Z".parse().unwrap();
        let o = offset(server, before, after);
        assert_eq!(
            o,
            SignedDuration::from_secs(300) + SignedDuration::from_millis(400)
        );
        let behind: Timestamp = "2026-11-21T14:55:00Z".parse().unwrap();
        assert!(offset(behind, before, after) < SignedDuration::from_secs(-299));
    }
}
