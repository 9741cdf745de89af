//! An operator with exactly the chart's identity: its ServiceAccount, RBAC and admission
//! policies as `helm template` renders them, the process run outside the cluster with that
//! ServiceAccount's token and the Deployment's environment. Attack tests use it so that what
//! they show holds for an installed operator, not for one running as cluster admin.

use std::path::PathBuf;

use serde_json::Value;
use tempfile::TempDir;

use super::helm::{apply_ok, cleanup, deployment_env, documents, of_kind, render, set_list};
use super::operator::Operator;
use super::{DeleteOnDrop, TestNs, eventually};

/// The chart's objects for one release watching one test namespace. The release lives in a
/// namespace of its own: the remediation policy never lets the operator evict in its own
/// namespace, and the watched one carries the opt-in label.
pub struct Charted {
    pub release: TestNs,
    pub fullname: String,
    docs: Vec<Value>,
    kubeconfig: PathBuf,
    _dir: TempDir,
    _cleanup: Vec<DeleteOnDrop>,
}

/// The label a namespace needs before the operator may evict there (remediation policy).
const OPT_IN: &str = "triage.dev/remediation=enabled";

impl Charted {
    /// Installs the chart's ServiceAccount, Roles, ClusterRoles and policies for an operator
    /// watching `ns` (namespaced mode, the chart's defaults otherwise, plus `sets`), binds the
    /// chart's approver ClusterRole to `approver` in `ns`, and waits until the approval policy
    /// is in force.
    pub async fn install(ns: &TestNs, approver: &str, sets: &[&str]) -> Charted {
        let release = TestNs::new(&format!("{}-op", ns.name.trim_start_matches("t-"))).await;
        let fullname: String = format!("{}-alert-triage-operator", release.name)
            .chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string();
        let mut all_sets = vec![
            set_list("watchNamespaces", &[&ns.name]),
            // Judge a replacement after a second, as every test operator does.
            "operator.verifySettle=1s".to_string(),
        ];
        all_sets.extend(sets.iter().map(|s| s.to_string()));
        let docs = documents(&render(&release.name, &release.name, &all_sets));
        let objects = of_kind(
            &docs,
            &[
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "ClusterRole",
                "ClusterRoleBinding",
                "ValidatingAdmissionPolicy",
                "ValidatingAdmissionPolicyBinding",
            ],
        );
        let cleanup = cleanup(&objects);
        apply_ok(&objects, &[]);
        ns.cluster
            .kubectl_ok(&["label", "namespace", &ns.name, OPT_IN, "--overwrite"]);
        ns.kubectl_ok(&[
            "create",
            "rolebinding",
            &format!("chart-approver-{approver}"),
            &format!("--clusterrole={fullname}-approver"),
            &format!("--user={approver}"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("operator.kubeconfig");
        ns.cluster
            .service_account_kubeconfig(&release.name, &fullname, &kubeconfig)
            .await;
        let charted = Charted {
            release,
            fullname,
            docs,
            kubeconfig,
            _dir: dir,
            _cleanup: cleanup,
        };
        charted.wait_for_the_approval_policy(ns).await;
        charted
    }

    /// Policies take effect a moment after they are created: a server-side dry run of an
    /// approval in someone else's name is refused once this one is.
    async fn wait_for_the_approval_policy(&self, ns: &TestNs) {
        let forged = serde_json::json!({
            "apiVersion": "triage.dev/v1alpha1",
            "kind": "AlertTriage",
            "metadata": {"name": "policy-probe", "namespace": ns.name},
            "spec": {
                "alert": {"name": "probe"},
                "approval": {"proposal": "delete-pod-000000000000", "approvedBy": "nobody"}
            }
        })
        .to_string();
        let file = self._dir.path().join("probe.json");
        std::fs::write(&file, forged).unwrap();
        let file = file.to_string_lossy().into_owned();
        eventually(std::time::Duration::from_secs(30), || async {
            let out = ns
                .cluster
                .kubectl(&["create", "--dry-run=server", "-f", &file]);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if !out.status.success() && stderr.contains(&format!("{}-approval", self.fullname)) {
                Ok(())
            } else {
                Err(format!("the approval policy is not in force yet: {stderr}"))
            }
        })
        .await;
    }

    /// Runs the operator as the chart's ServiceAccount with the chart's environment, plus
    /// `extra` flags and `env` (which win over the chart's).
    pub fn start(&self, ns: &TestNs, pod: &str, extra: &[&str], env: &[(&str, &str)]) -> Operator {
        let kubeconfig = self.kubeconfig.to_string_lossy().into_owned();
        let mut args = vec!["run", "--kubeconfig", &kubeconfig];
        args.extend_from_slice(extra);
        let mut all = deployment_env(&self.docs, pod, &self.release.name);
        all.retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
        let mut all: Vec<(&str, &str)> =
            all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(env);
        Operator::start_raw(ns, &format!("{}-{pod}", ns.name), &args, &all)
    }

    /// Where this release's operator keeps its ledger: (namespace, ConfigMap name).
    pub fn ledger(&self) -> (String, String) {
        (
            self.release.name.clone(),
            format!("{}-ledger", self.fullname),
        )
    }
}
