//! `kubectl triage` against the local cluster: what `list` puts first, what `why` says, and
//! `approve` going through the chart's admission policy as the caller (alice may approve, bob
//! may not), with clear errors when there is nothing to approve.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::helm::{apply_ok, cleanup, documents, of_kind, render, set_list};
use common::operator::{
    Operator, create_triage, give_app_logs, triage_resource, wait_for_phase, wait_for_triage,
};
use common::scenario::{metering_triage, network_failure};
use common::{PodLog, TestNs, Workload, eventually, show};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

const PLUGIN: &str = env!("CARGO_BIN_EXE_kubectl-triage");
const DEPLOY: Duration = Duration::from_secs(90);
const VERDICT: Duration = Duration::from_secs(60);

/// Runs the plugin binary with `kubeconfig` and nothing on stdin (no terminal to ask on).
fn plugin(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(PLUGIN)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl-triage")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "kubectl-triage failed:\n{}",
        show(&out)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn fails(out: Output, says: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure:\n{}", show(&out));
    for part in says {
        assert!(stderr.contains(part), "{part:?} not in:\n{}", show(&out));
    }
}

/// Three `app=web` pods; the middle one shows network failures, so a triage proposes deleting it.
async fn web_with_one_failing_pod(ns: &TestNs) -> Vec<k8s_openapi::api::core::v1::Pod> {
    let web = ns.deploy(&Workload::new("web", 3), DEPLOY).await;
    let healthy = vec!["Worker metering started".to_string()];
    give_app_logs(ns, &web, vec![healthy.clone(), network_failure(), healthy]).await;
    web
}

/// The chart's approval policy, its binding (this namespace only) and the approver ClusterRole.
fn install_approval_policy(ns: &TestNs) -> Vec<common::DeleteOnDrop> {
    let docs = documents(&render(
        &ns.name,
        &ns.name,
        &[set_list("watchNamespaces", &[&ns.name])],
    ));
    let fullname = format!("{}-alert-triage-operator", ns.name);
    let policy: Vec<&Value> = of_kind(
        &docs,
        &[
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ClusterRole",
        ],
    )
    .into_iter()
    .filter(|d| {
        d["kind"] != "ClusterRole" || d["metadata"]["name"] == format!("{fullname}-approver")
    })
    .collect();
    let guard = cleanup(&policy);
    apply_ok(&policy, &[]);
    // alice: the approver ClusterRole. bob: may read and patch AlertTriages, not approve.
    ns.kubectl_ok(&[
        "create",
        "rolebinding",
        "alice-approves",
        &format!("--clusterrole={fullname}-approver"),
        "--user=alice",
    ]);
    ns.kubectl_ok(&[
        "create",
        "role",
        "triage-editor",
        "--verb=get,list,patch",
        "--resource=alerttriages.triage.dev",
    ]);
    ns.kubectl_ok(&[
        "create",
        "rolebinding",
        "bob-edits",
        "--role=triage-editor",
        "--user=bob",
    ]);
    guard
}

/// Waits until the API server enforces the policy: a dry run of bob's approval is refused.
async fn wait_for_policy(ns: &TestNs) {
    let bob = ns.cluster.user("bob").await;
    eventually(Duration::from_secs(30), || {
        let api: Api<DynamicObject> =
            Api::namespaced_with(bob.clone(), &ns.name, &triage_resource());
        async move {
            let patch = json!({"spec": {"approval": {"proposal": "p", "approvedBy": "bob"}}});
            let params = PatchParams {
                dry_run: true,
                ..PatchParams::default()
            };
            match api.patch("net", &params, &Patch::Merge(&patch)).await {
                Err(kube::Error::Api(s)) if s.message.contains("ValidatingAdmissionPolicy") => {
                    Ok(())
                }
                other => Err(format!("not refused by the policy yet: {other:?}")),
            }
        }
    })
    .await
}

async fn approval_of(ns: &TestNs, name: &str) -> Value {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ns.client.clone(), &ns.name, &triage_resource());
    serde_json::to_value(api.get(name).await.unwrap()).unwrap()["spec"]["approval"].clone()
}

#[tokio::test]
async fn list_why_and_approve_as_yourself_through_the_admission_policy() {
    let ns = TestNs::new("plugin").await;
    ns.cluster.install_crds();
    let _policy = install_approval_policy(&ns);
    let admin = ns.cluster.kubeconfig.clone();
    let alice = ns.cluster.user_kubeconfig("alice");
    let bob = ns.cluster.user_kubeconfig("bob");
    let _op = Operator::start(&ns, &[]);

    let web = web_with_one_failing_pod(&ns).await;
    let failing = web[1].metadata.name.clone().unwrap();
    // Created first, so without the ordering it would be listed first.
    create_triage(
        &ns,
        json!({"metadata": {"name": "quiet"}, "spec": {
            "alert": {"name": "ClusterSquadOrchestratorCallbackActionTimeErrors",
                      "labels": {"operation": "DeleteClientID", "reason_code": "ErrorUnclassified"}},
            "target": {"selector": {"matchLabels": {"app": "web"}}}}}),
    )
    .await;
    wait_for_phase(&ns, "quiet", &["NoAction"], VERDICT).await;
    create_triage(&ns, metering_triage("net", "web")).await;
    let t = wait_for_phase(&ns, "net", &["AwaitingApproval"], VERDICT).await;
    let proposal = t["status"]["proposal"]["id"].as_str().unwrap().to_string();

    // list: the proposal first, saying what to approve.
    let list = ok(plugin(&admin, &["list", "-n", &ns.name]));
    let rows: Vec<&str> = list.lines().collect();
    assert!(rows[0].starts_with("NAME "), "{list}");
    assert!(rows[1].starts_with("net "), "{list}");
    assert!(
        rows[1].contains(&format!("approve: delete pod {failing} (expires in ")),
        "{list}"
    );
    assert!(rows[2].starts_with("quiet "), "{list}");
    // -A adds the namespace; kubectl finds the plugin on PATH and it honours KUBECONFIG.
    let path = format!(
        "{}:{}",
        Path::new(PLUGIN).parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(&ns.cluster.kubectl)
        .args(["triage", "list", "-A"])
        .env("PATH", path)
        .env("KUBECONFIG", &admin)
        .output()
        .expect("kubectl");
    let all = ok(out);
    assert!(all.starts_with("NAMESPACE "), "{all}");
    assert!(
        all.lines()
            .any(|l| l.split_whitespace().take(2).eq([ns.name.as_str(), "net"])),
        "{all}"
    );

    // why: the verdict, the evidence, the steps and how to approve.
    let why = ok(plugin(&admin, &["why", "net", "-n", &ns.name]));
    for part in [
        "Phase:     AwaitingApproval\n",
        "Runbook:   metering-token-exchange\n",
        "Verdict:   NetworkFailure (SinglePod",
        "Action:    DeletePod",
        &format!("  {failing}: Running"),
        "matches NetworkFailure=5",
        "\nNext steps:\n  1. ",
        &format!("Proposal {proposal}: delete pod {failing}"),
        &format!("approve it: kubectl triage approve net -n {}", ns.name),
        "Conditions:\n",
    ] {
        assert!(why.contains(part), "{part:?} not in\n{why}");
    }

    wait_for_policy(&ns).await;
    // bob may patch AlertTriages but not approve: the policy refuses him, by his own name.
    fails(
        plugin(&bob, &["approve", "net", "-n", &ns.name, "--yes"]),
        &[
            "bob may not approve",
            "\"bob\" may not approve AlertTriages",
            "\"approve\" verb",
        ],
    );
    assert!(approval_of(&ns, "net").await.is_null());
    // Without --yes and without a terminal to ask on, nothing is approved.
    fails(
        plugin(&alice, &["approve", "net", "-n", &ns.name]),
        &["no terminal to ask on; pass --yes"],
    );
    assert!(approval_of(&ns, "net").await.is_null());
    // On a terminal it asks; anything but y/yes approves nothing. `script` (util-linux) gives
    // the plugin a terminal and types the answer.
    let command = format!(
        "{PLUGIN} --kubeconfig {} approve net -n {}",
        alice.display(),
        ns.name
    );
    let mut asked = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    use std::io::Write as _;
    asked.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let asked = ok(asked.wait_with_output().unwrap());
    assert!(
        asked.contains(&format!(
            "Approve proposal {proposal} (DeletePod pod {failing}) as alice? [y/N]"
        )),
        "{asked}"
    );
    assert!(asked.contains("Not approved; nothing changed."), "{asked}");
    assert!(approval_of(&ns, "net").await.is_null());
    fails(
        plugin(&alice, &["approve", "quiet", "-n", &ns.name, "--yes"]),
        &["quiet has no proposal to approve (phase NoAction)"],
    );
    fails(
        plugin(&alice, &["approve", "nope", "-n", &ns.name, "--yes"]),
        &[&format!("no AlertTriage \"nope\" in namespace {}", ns.name)],
    );
    fails(
        plugin(&alice, &["why", "net", "-A"]),
        &["only applies to `list`"],
    );

    // alice approves as herself; the approval names her, and the operator carries it out.
    // The replacement's log, so verification can read it.
    let _logs = ns.serve_logs_to_new_pods(
        "app=web",
        &web,
        "app",
        PodLog::lines(vec!["Worker metering started".to_string()]),
        Duration::from_secs(90),
    );
    let approved = ok(plugin(&alice, &["approve", "net", "-n", &ns.name, "--yes"]));
    assert!(
        approved.contains(&format!("Approved proposal {proposal} as alice.")),
        "{approved}"
    );
    assert!(
        approved.contains(&format!("delete pod {failing}")),
        "{approved}"
    );
    assert_eq!(
        approval_of(&ns, "net").await,
        json!({"proposal": proposal, "approvedBy": "alice"})
    );
    let t = wait_for_phase(&ns, "net", &["Remediated"], Duration::from_secs(90)).await;
    assert_eq!(t["status"]["remediation"]["approvedBy"], "alice");
    assert_eq!(
        t["status"]["remediation"]["podUID"],
        web[1].metadata.uid.as_deref().unwrap()
    );
}

#[tokio::test]
async fn context_and_namespace_come_from_the_kubeconfig_unless_given() {
    let ns = TestNs::new("plugin-context").await;
    ns.cluster.install_crds();
    create_triage(&ns, metering_triage("waiting", "nothing-here")).await;
    let text = std::fs::read_to_string(&ns.cluster.kubeconfig).unwrap();
    let mut kubeconfig: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let real = kubeconfig["current-context"].as_str().unwrap().to_string();
    // A second context: the real one's cluster and user, with this test's namespace.
    let contexts = kubeconfig["contexts"].as_sequence_mut().unwrap();
    let mut here = contexts
        .iter()
        .find(|c| c["name"].as_str() == Some(&real))
        .unwrap()
        .clone();
    here["name"] = "here".into();
    here["context"]["namespace"] = ns.name.as_str().into();
    contexts.push(here);
    kubeconfig["current-context"] = "nowhere".into();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig).unwrap()).unwrap();

    fails(plugin(&path, &["list"]), &["nowhere"]);
    // The context's namespace is the default; -n overrides it.
    let listed = ok(plugin(&path, &["--context", "here", "list"]));
    assert!(
        listed
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("waiting ")),
        "{listed}"
    );
    let other = ok(plugin(
        &path,
        &["--context", &real, "list", "-n", "default"],
    ));
    assert!(!other.contains("waiting"), "{other}");
    let why = ok(plugin(&path, &["--context", "here", "why", "waiting"]));
    assert!(
        why.starts_with(&format!("AlertTriage {}/waiting\n", ns.name)),
        "{why}"
    );
}

#[tokio::test]
async fn an_expired_proposal_cannot_be_approved() {
    let ns = TestNs::new("plugin-expired").await;
    let _op = Operator::start(&ns, &["--proposal-ttl", "2s"]);
    web_with_one_failing_pod(&ns).await;
    create_triage(&ns, metering_triage("late", "web")).await;
    let t = wait_for_triage(&ns, "late", VERDICT, |t| {
        let expired = t["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "ProposalExpired"));
        if expired {
            Ok(t.clone())
        } else {
            Err(format!("{}", t["status"]))
        }
    })
    .await;
    let id = t["status"]["proposal"]["id"].as_str().unwrap();
    fails(
        plugin(
            &ns.cluster.kubeconfig,
            &["approve", "late", "-n", &ns.name, "--yes"],
        ),
        &[&format!("proposal {id} of late expired at ")],
    );
}

#[test]
fn the_krew_manifest_describes_the_packaged_binary() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    // The script packages whatever binary it is given; a small stand-in keeps this quick.
    let binary = dir.path().join("built");
    std::fs::write(&binary, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out_dir = dir.path().join("dist");
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/krew/package.sh"))
        .arg(&binary)
        .arg("https://example.invalid/releases/v1/")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let archive = out_dir.join("kubectl-triage-linux-amd64.tar.gz");
    let text = std::fs::read_to_string(out_dir.join("triage.yaml")).unwrap();
    assert!(!text.contains('@'), "a placeholder is left:\n{text}");
    let manifest: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "triage");
    let spec = &manifest["spec"];
    assert_eq!(
        spec["version"].as_str(),
        Some(format!("v{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let platform = &spec["platforms"][0];
    assert_eq!(
        platform["uri"],
        "https://example.invalid/releases/v1/kubectl-triage-linux-amd64.tar.gz"
    );
    let sha = format!(
        "{:x}",
        sha2::Sha256::digest(std::fs::read(&archive).unwrap())
    );
    assert_eq!(platform["sha256"].as_str(), Some(sha.as_str()));
    assert_eq!(platform["bin"], "kubectl-triage");
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&archive)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&listing.stdout), "kubectl-triage\n");
}
