//! `crds/` is generated from the Rust types; this fails when someone changes one but not the other.

#[test]
fn committed_crds_match_the_rust_types() {
    for (name, generated) in alert_triage_operator::crd_files() {
        let path = format!("{}/crds/{name}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "crds/{name} is out of date with src/crd; regenerate all of them with\n  \
             cargo run -q -- crd --dir crds"
        );
    }
}
