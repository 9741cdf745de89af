//! `crds/` is generated from the Rust types; this fails when someone changes one but not the other.

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/alerttriages.triage.dev.yaml"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = alert_triage_operator::crd::crd_yaml();
    assert!(
        committed == generated,
        "crds/alerttriages.triage.dev.yaml is out of date with src/crd; regenerate it with\n  \
         cargo run -q -- crd > crds/alerttriages.triage.dev.yaml"
    );
}
