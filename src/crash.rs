//! Crash points for the tests that stop the operator at an exact step: of a remediation, to
//! check that a fresh one finishes it without acting twice, or while gathering, to read a state
//! that otherwise lasts under a second. They exist only in builds with the
//! `crash-points` feature (the test command enables it): a release binary has none, so no
//! environment variable can make a production leader stop halfway.

/// With `ATO_PAUSE_AT=<step>` the operator stops at `step` and waits to be killed.
#[cfg(feature = "crash-points")]
pub async fn point(step: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT
        .get_or_init(|| std::env::var("ATO_PAUSE_AT").ok())
        .as_deref()
        == Some(step)
    {
        tracing::warn!(step, "paused for a crash test (ATO_PAUSE_AT)");
        std::future::pending::<()>().await;
    }
}

#[cfg(not(feature = "crash-points"))]
pub async fn point(_step: &str) {}
