//! Smoke test of the simulated cluster through the real API: CRDs, kwok-run workloads, pod logs
//! served by kwok behind the API server, ReplicaSet replacement, PDB status and eviction,
//! identities, ValidatingAdmissionPolicy.
mod common;

use std::time::Duration;

use common::*;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    authentication::v1::SelfSubjectReview,
    core::v1::{ConfigMap, Pod},
    policy::v1::PodDisruptionBudget,
};
use kube::{
    Api,
    api::{DeleteParams, EvictParams, ListParams, LogParams, PostParams},
};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn crds_install_and_kubectl_get_answers() {
    let c = cluster();
    let crd = c.repo.join("crds/alerttriages.triage.dev.yaml");
    assert!(
        crd.is_file(),
        "{} is missing: the AlertTriage CRD must be generated and committed",
        crd.display()
    );
    c.install_crds();
    let ns = TestNs::new("smoke-crds").await;
    for resource in [
        "alerttriage",
        "alerttriages",
        "triage",
        "alerttriages.triage.dev",
    ] {
        let out = ns.kubectl(&["get", resource]);
        assert!(
            out.status.success(),
            "kubectl get {resource} failed:\n{}",
            show(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("No resources found"),
            "kubectl get {resource}: unexpected answer:\n{}",
            show(&out)
        );
    }
    let resources = c.kubectl_ok(&["api-resources", "--api-group=triage.dev", "--no-headers"]);
    let line = resources
        .lines()
        .find(|l| l.starts_with("alerttriages "))
        .unwrap_or_else(|| panic!("alerttriages not served by the API server:\n{resources}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        fields,
        [
            "alerttriages",
            "triage",
            "triage.dev/v1alpha1",
            "true",
            "AlertTriage"
        ],
        "api-resources line: {line}"
    );
}

#[tokio::test]
async fn deployment_runs_on_kwok_nodes_and_replaces_deleted_pods() {
    let ns = TestNs::new("smoke-deployment").await;
    let w = Workload::new("web", 3).label("tier", "frontend");
    let pods = ns.deploy(&w, T).await;
    assert_eq!(pods.len(), 3);
    for p in &pods {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        assert!(node.starts_with("kwok-node-"), "pod on {node:?}");
        let statuses = p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap();
        assert!(statuses.iter().all(|s| s.ready), "{statuses:?}");
    }

    // The deployment and replicaset controllers report real status.
    let deployments = ns.api::<Deployment>();
    eventually(T, || async {
        let d = deployments.get("web").await?;
        let available = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
        anyhow::ensure!(available == 3, "available replicas: {available}");
        Ok(())
    })
    .await;

    // The disruption controller computes PDB status; eviction honours it.
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": w.labels}},
    }))
    .unwrap();
    let pdbs = ns.api::<PodDisruptionBudget>();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    eventually(T, || async {
        let s = pdbs.get("web").await?.status.unwrap_or_default();
        anyhow::ensure!(
            s.current_healthy == Some(3)
                && s.desired_healthy == Some(2)
                && s.disruptions_allowed == Some(1),
            "pdb status: {s:?}"
        );
        Ok(())
    })
    .await;

    // Delete one pod: the ReplicaSet replaces it and the replacement runs.
    let victim = pods[0].metadata.name.clone().unwrap();
    let victim_uid = pods[0].metadata.uid.clone().unwrap();
    ns.pods()
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let after = eventually(T, || async {
        let pods = ns.running_pods(&w.selector(), 3).await?;
        anyhow::ensure!(
            pods.iter()
                .all(|p| p.metadata.uid.as_deref() != Some(victim_uid.as_str())),
            "deleted pod {victim} still listed"
        );
        Ok(pods)
    })
    .await;
    let replacement = after
        .iter()
        .find(|p| !pods.iter().any(|o| o.metadata.uid == p.metadata.uid))
        .expect("a replacement pod");
    assert!(
        is_running_and_ready(replacement),
        "{}",
        pod_state(replacement)
    );
    let rs_name = &replacement.metadata.owner_references.as_ref().unwrap()[0].name;
    let rs = ns.api::<ReplicaSet>().get(rs_name).await.unwrap();
    assert_eq!(rs.status.unwrap().replicas, 3);

    // Eviction through the Eviction API (what the operator uses) also gets a replacement.
    eventually(T, || async {
        let s = pdbs.get("web").await?.status.unwrap_or_default();
        anyhow::ensure!(s.disruptions_allowed == Some(1), "pdb status: {s:?}");
        Ok(())
    })
    .await;
    let evicted = after[0].metadata.name.clone().unwrap();
    ns.pods()
        .evict(&evicted, &EvictParams::default())
        .await
        .unwrap();
    eventually(T, || async {
        let pods = ns.running_pods(&w.selector(), 3).await?;
        anyhow::ensure!(
            pods.iter()
                .all(|p| p.metadata.name.as_deref() != Some(evicted.as_str())),
            "evicted pod {evicted} still listed"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn pod_logs_are_served_through_the_api() {
    let c = cluster();
    let ns = TestNs::new("smoke-logs").await;
    let w = Workload::new("api", 1).containers(&["app", "sidecar"]);
    let pod = ns.deploy(&w, T).await.remove(0);
    let pod_name = pod.metadata.name.clone().unwrap();

    // 20 lines one second apart, starting on a whole second an hour ago; and a previous
    // instance's log.
    let start = Timestamp::now()
        .checked_sub(SignedDuration::from_hours(1))
        .unwrap()
        .round(jiff::Unit::Second)
        .unwrap();
    let lines: Vec<String> = (0..20).map(|i| format!("line {i:02} status=200")).collect();
    let current = PodLog::lines(&lines).starting_at(start, Duration::from_secs(1));
    let previous = PodLog::lines(["panic: token exchange failed", "exit status 2"])
        .starting_at(start - SignedDuration::from_mins(5), Duration::from_secs(1));
    ns.attach_logs(&pod_name, "app", &current, Some(&previous))
        .await;

    let kubectl = |args: &[&str]| {
        let mut all = vec!["logs", pod_name.as_str(), "-c", "app"];
        all.extend_from_slice(args);
        let out = ns.kubectl(&all);
        assert!(
            out.status.success(),
            "kubectl logs {args:?}:\n{}",
            show(&out)
        );
        stdout(&out)
    };
    let joined = |ls: &[String]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();

    // kubectl (the built binary, admin kubeconfig)
    assert_eq!(kubectl(&[]), joined(&lines));
    assert_eq!(kubectl(&["--tail=3"]), joined(&lines[17..]));
    assert_eq!(kubectl(&["--limit-bytes=10"]), "line 00 st");
    let since_time = (start + SignedDuration::from_secs(15)).to_string();
    assert_eq!(
        kubectl(&[&format!("--since-time={since_time}")]),
        joined(&lines[15..])
    );
    // all lines are an hour old
    assert_eq!(kubectl(&["--since=30m"]), "");
    assert_eq!(kubectl(&["--since=2h"]), joined(&lines));
    assert_eq!(
        kubectl(&["--previous"]),
        "panic: token exchange failed\nexit status 2\n"
    );
    let stamped = kubectl(&["--timestamps", "--tail=1"]);
    assert_eq!(
        stamped,
        format!(
            "{} line 19 status=200\n",
            cri_timestamp(start + SignedDuration::from_secs(19))
        )
    );

    // kube-rs Api::<Pod>::logs
    let pods = ns.pods();
    let lp = |f: &dyn Fn(&mut LogParams)| {
        let mut p = LogParams {
            container: Some("app".into()),
            ..Default::default()
        };
        f(&mut p);
        p
    };
    assert_eq!(
        pods.logs(&pod_name, &lp(&|_| {})).await.unwrap(),
        joined(&lines)
    );
    assert_eq!(
        pods.logs(&pod_name, &lp(&|p| p.tail_lines = Some(2)))
            .await
            .unwrap(),
        joined(&lines[18..])
    );
    assert_eq!(
        pods.logs(&pod_name, &lp(&|p| p.limit_bytes = Some(12)))
            .await
            .unwrap(),
        "line 00 stat"
    );
    assert_eq!(
        pods.logs(
            &pod_name,
            &lp(&|p| p.since_time = Some(start + SignedDuration::from_secs(10)))
        )
        .await
        .unwrap(),
        joined(&lines[10..])
    );
    assert_eq!(
        pods.logs(&pod_name, &lp(&|p| p.since_seconds = Some(7200)))
            .await
            .unwrap(),
        joined(&lines)
    );
    assert_eq!(
        pods.logs(&pod_name, &lp(&|p| p.previous = true))
            .await
            .unwrap(),
        "panic: token exchange failed\nexit status 2\n"
    );
    // tail, then since, as the kubelet does
    assert_eq!(
        pods.logs(
            &pod_name,
            &lp(&|p| {
                p.tail_lines = Some(5);
                p.since_time = Some(start + SignedDuration::from_secs(17));
            })
        )
        .await
        .unwrap(),
        joined(&lines[17..])
    );

    // Arbitrary bytes (not UTF-8), stderr, default timing (spread over the last 10 minutes).
    let raw: Vec<&[u8]> = vec![b"caf\xe9 latin-1", b"\xff\xfe binary", b"plain"];
    let raw_log = PodLog::lines(raw.clone()).stderr();
    ns.attach_logs(&pod_name, "sidecar", &raw_log, None).await;
    let bytes = read_log_bytes(
        &pods,
        &pod_name,
        &LogParams {
            container: Some("sidecar".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(bytes, raw_log.expected_output());
    let out = ns.kubectl(&["logs", &pod_name, "-c", "sidecar"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(out.stdout, raw_log.expected_output());
    // Spread over 10 minutes: the lines are stamped 6m40s and 3m20s before the attach, and at it.
    let recent = ns.kubectl(&["logs", &pod_name, "-c", "sidecar", "--since=5m"]);
    assert_eq!(recent.stdout, b"\xff\xfe binary\nplain\n");
    // The first container's log is untouched by attaching the second's.
    assert_eq!(kubectl(&["--tail=1"]), joined(&lines[19..]));

    // A container without a previous log: an error, not an empty log.
    let out = ns.kubectl(&["logs", &pod_name, "-c", "sidecar", "--previous"]);
    assert!(!out.status.success(), "{}", show(&out));

    // A non-admin user can read logs only once granted pods/log.
    let alice = c.user_kubeconfig("alice");
    let denied = c.kubectl_with(&alice, &["-n", &ns.name, "logs", &pod_name, "-c", "app"]);
    assert!(!denied.status.success(), "{}", show(&denied));
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("forbidden"),
        "{}",
        show(&denied)
    );
    ns.kubectl_ok(&[
        "create",
        "role",
        "log-reader",
        "--verb=get",
        "--resource=pods,pods/log",
    ]);
    ns.kubectl_ok(&[
        "create",
        "rolebinding",
        "log-reader",
        "--role=log-reader",
        "--group=triage-approvers",
    ]);
    let allowed = eventually(T, || async {
        let out = c.kubectl_with(
            &alice,
            &["-n", &ns.name, "logs", &pod_name, "-c", "app", "--tail=1"],
        );
        anyhow::ensure!(out.status.success(), "{}", show(&out));
        Ok(stdout(&out))
    })
    .await;
    assert_eq!(allowed, joined(&lines[19..]));
}

#[tokio::test]
async fn identities_and_impersonation() {
    let c = cluster();
    let ns = TestNs::new("smoke-identities").await;
    for (user, group) in [("alice", "triage-approvers"), ("bob", "triage-viewers")] {
        let client = c.user(user).await;
        let review = Api::<SelfSubjectReview>::all(client.clone())
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .unwrap();
        let info = review.status.unwrap().user_info.unwrap();
        assert_eq!(info.username.as_deref(), Some(user));
        let groups = info.groups.unwrap_or_default();
        assert!(groups.iter().any(|g| g == group), "{user}: {groups:?}");
        assert!(
            !groups.iter().any(|g| g == "system:masters"),
            "{user}: {groups:?}"
        );
        // no RBAC by default
        let err = Api::<Pod>::namespaced(client, &ns.name)
            .list(&ListParams::default())
            .await
            .unwrap_err();
        assert!(format!("{err}").contains("forbidden"), "{user}: {err}");
    }

    let as_carol = c.impersonating("carol", &["triage-approvers"]).await;
    let review = Api::<SelfSubjectReview>::all(as_carol)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    let info = review.status.unwrap().user_info.unwrap();
    assert_eq!(info.username.as_deref(), Some("carol"));
    assert!(
        info.groups
            .unwrap_or_default()
            .iter()
            .any(|g| g == "triage-approvers")
    );
    let out = ns.kubectl(&[
        "auth",
        "can-i",
        "list",
        "pods",
        "--as=bob",
        "--as-group=triage-viewers",
    ]);
    assert_eq!(stdout(&out).trim(), "no", "{}", show(&out));

    // ServiceAccount tokens (TokenRequest) work.
    let sa_client = c.service_account(&ns.name, "default").await;
    let review = Api::<SelfSubjectReview>::all(sa_client)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .unwrap();
    assert_eq!(
        review
            .status
            .unwrap()
            .user_info
            .unwrap()
            .username
            .as_deref(),
        Some(format!("system:serviceaccount:{}:default", ns.name).as_str())
    );
}

#[tokio::test]
async fn validating_admission_policy_is_enforced() {
    let c = cluster();
    let ns = TestNs::new("smoke-vap").await;
    let name = format!("{}-no-forbidden", ns.name);
    let policy = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]
            }]},
            "validations": [{
                "expression": "!has(object.data) || !('forbidden' in object.data)",
                "message": "configmaps may not carry a 'forbidden' key"
            }]
        }
    });
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": ns.name
            }}}
        }
    });
    let _cleanup = (
        c.delete_on_drop("validatingadmissionpolicybinding", &name),
        c.delete_on_drop("validatingadmissionpolicy", &name),
    );
    let manifest = serde_json::to_string(
        &json!({"apiVersion": "v1", "kind": "List", "items": [policy, binding]}),
    )
    .unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest).unwrap();
    c.kubectl_ok(&["apply", "-f", &file.path().to_string_lossy()]);

    let cms = ns.api::<ConfigMap>();
    let bad: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "bad"}, "data": {"forbidden": "x"}}))
            .unwrap();
    let err = eventually(T, || async {
        match cms.create(&PostParams::default(), &bad).await {
            Ok(_) => {
                cms.delete("bad", &DeleteParams::default()).await?;
                anyhow::bail!("policy not enforced yet")
            }
            Err(e) => Ok(e),
        }
    })
    .await;
    assert!(
        format!("{err}").contains("configmaps may not carry a 'forbidden' key"),
        "{err}"
    );
    let good: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "good"}, "data": {"ok": "x"}})).unwrap();
    cms.create(&PostParams::default(), &good).await.unwrap();
}

#[tokio::test]
async fn simulated_crash_loop_sticks() {
    let ns = TestNs::new("smoke-crashloop").await;
    let w = Workload::new("worker", 2);
    let pods = ns.deploy(&w, T).await;
    let name = pods[0].metadata.name.clone().unwrap();
    ns.simulate_crash_loop(&name, "app", 7).await;
    let deployments = ns.api::<Deployment>();
    eventually(T, || async {
        let ready = deployments
            .get("worker")
            .await?
            .status
            .and_then(|s| s.ready_replicas);
        anyhow::ensure!(ready == Some(1), "ready replicas: {ready:?}");
        Ok(())
    })
    .await;
    // kwok does not "heal" it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pod = ns.pods().get(&name).await.unwrap();
    let status = &pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(status.restart_count, 7);
    assert!(!status.ready);
    let waiting = status.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(!is_ready(&pod));
    let out = ns.kubectl_ok(&["get", "pod", &name, "--no-headers"]);
    assert!(out.contains("CrashLoopBackOff"), "{out}");
}
