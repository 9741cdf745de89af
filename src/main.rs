fn main() {
    print!("{}", alert_triage_operator::crd::crd_yaml());
}
