//! The local cluster the tests run on, and clients for its identities.

use super::*;

// ------------------------------------------------------------------------------------------------
// The cluster

/// The process-wide cluster handle. Get it with [`cluster()`].
#[derive(Debug)]
pub struct Cluster {
    /// Admin (system:masters) kubeconfig.
    pub kubeconfig: PathBuf,
    /// `<name>.kubeconfig` per non-admin user (alice: triage-approvers, bob: triage-viewers).
    pub users_dir: PathBuf,
    /// Where pod-log files for kwok are written (`<namespace>/<pod>/<container>.log`).
    pub podlogs_dir: PathBuf,
    /// The kubectl binary built by scripts/tools.sh (or `kubectl` from PATH).
    pub kubectl: PathBuf,
    /// The repository root.
    pub repo: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The cluster every test of this process uses, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

fn script_env(repo: &Path) -> HashMap<String, String> {
    let out = Command::new("bash")
        .arg(repo.join("scripts/cluster.sh"))
        .arg("env")
        .output()
        .expect("could not run bash scripts/cluster.sh env");
    assert!(
        out.status.success(),
        "scripts/cluster.sh env failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Cluster {
    fn start() -> Cluster {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let env = script_env(&repo);
        let from_env = |k: &str| PathBuf::from(&env[k]);
        let kubectl = {
            let built = from_env("ATO_BIN").join("kubectl");
            std::env::var_os("ATO_TEST_KUBECTL")
                .map(PathBuf::from)
                .unwrap_or(if built.exists() {
                    built
                } else {
                    "kubectl".into()
                })
        };
        if let Some(kubeconfig) = std::env::var_os("ATO_TEST_KUBECONFIG") {
            let kubeconfig = PathBuf::from(kubeconfig);
            assert!(
                kubeconfig.is_file(),
                "ATO_TEST_KUBECONFIG={} is not a file",
                kubeconfig.display()
            );
            let dir = kubeconfig.parent().unwrap_or(Path::new(".")).to_path_buf();
            let dir_from = |var: &str, default: &str| {
                std::env::var_os(var)
                    .map(PathBuf::from)
                    .unwrap_or_else(|| dir.join(default))
            };
            return Cluster {
                users_dir: dir_from("ATO_TEST_USERS_DIR", "users"),
                podlogs_dir: dir_from("ATO_TEST_PODLOGS_DIR", "podlogs"),
                kubeconfig,
                kubectl,
                repo,
            };
        }
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(repo.join("scripts/cluster.sh"))
            .arg("up")
            .current_dir(&repo)
            .output()
            .expect("could not run bash scripts/cluster.sh up");
        if !out.status.success() {
            panic!(
                "\n\n========== THE TEST CLUSTER COULD NOT START ==========\n\
                 `scripts/cluster.sh up` exited with {} after {:.1?}.\n\
                 ----- stdout -----\n{}\n----- stderr -----\n{}\n\
                 ======================================================\n",
                out.status,
                started.elapsed(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Cluster {
            kubeconfig: from_env("ATO_KUBECONFIG"),
            users_dir: from_env("ATO_USERS_DIR"),
            podlogs_dir: from_env("ATO_PODLOGS_DIR"),
            kubectl,
            repo,
        }
    }

    /// A client with cluster-admin rights (system:masters).
    pub async fn admin(&self) -> Client {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// The kubeconfig of a non-admin user: `alice` (group triage-approvers) or `bob`
    /// (group triage-viewers). More: `scripts/cluster.sh user NAME GROUP...`.
    pub fn user_kubeconfig(&self, name: &str) -> PathBuf {
        let path = self.users_dir.join(format!("{name}.kubeconfig"));
        assert!(
            path.is_file(),
            "no kubeconfig for user {name:?} at {} (create one with scripts/cluster.sh user {name} GROUP...)",
            path.display()
        );
        path
    }

    /// A client authenticated as a non-admin user (client certificate). Users have no RBAC
    /// rights until a test grants them some.
    pub async fn user(&self, name: &str) -> Client {
        client_from_kubeconfig(&self.user_kubeconfig(name)).await
    }

    /// An admin client impersonating `user` with `groups` (as `kubectl --as --as-group`).
    pub async fn impersonating(&self, user: &str, groups: &[&str]) -> Client {
        let mut config = config_from_kubeconfig(&self.kubeconfig).await;
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        Client::try_from(config).expect("building an impersonating client")
    }

    /// A client authenticated as a ServiceAccount, with a fresh bound token (TokenRequest API).
    pub async fn service_account(&self, namespace: &str, name: &str) -> Client {
        let token = self.service_account_token(namespace, name).await;
        let mut config = config_from_kubeconfig(&self.kubeconfig).await;
        config.auth_info = AuthInfo {
            token: Some(token.into()),
            ..Default::default()
        };
        Client::try_from(config).expect("building a service-account client")
    }

    /// Writes a kubeconfig to `path` that authenticates as a ServiceAccount (fresh bound token),
    /// for running a process such as the operator binary as that identity.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str, path: &Path) {
        let token = self.service_account_token(namespace, name).await;
        let text = std::fs::read_to_string(&self.kubeconfig).expect("reading the admin kubeconfig");
        let mut kubeconfig: serde_yaml::Value =
            serde_yaml::from_str(&text).expect("the admin kubeconfig is YAML");
        let users = kubeconfig["users"]
            .as_sequence_mut()
            .expect("the admin kubeconfig has users");
        for user in users {
            user["user"] = serde_yaml::to_value(json!({ "token": token })).unwrap();
        }
        std::fs::write(path, serde_yaml::to_string(&kubeconfig).unwrap())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let admin = self.admin().await;
        let sas: Api<ServiceAccount> = Api::namespaced(admin, namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        sas.create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| panic!("TokenRequest for serviceaccount {namespace}/{name}: {e}"))
            .status
            .and_then(|s| s.token)
            .expect("TokenRequest without a token")
    }

    /// Runs kubectl with the admin kubeconfig. Never panics; check `status` yourself.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(&self.kubeconfig, args)
    }

    /// Runs kubectl with the given kubeconfig (e.g. [`Cluster::user_kubeconfig`]).
    pub fn kubectl_with(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", self.kubectl.display()))
    }

    /// Runs kubectl as admin and panics with its output unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed:\n{}",
            args.join(" "),
            show(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Installs the project's CRDs from `crds/` (server-side apply; once per process) and waits
    /// until they are established.
    pub fn install_crds(&self) {
        static DONE: OnceLock<()> = OnceLock::new();
        DONE.get_or_init(|| {
            let dir = self.repo.join("crds");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            assert!(!files.is_empty(), "no CRDs (*.yaml) in {}", dir.display());
            for f in &files {
                let f = f.to_string_lossy();
                self.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "-f", &f]);
                self.kubectl_ok(&[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=30s",
                    "-f",
                    &f,
                ]);
            }
        });
    }
}

/// Runs `kubectl delete <kind> <name> --ignore-not-found --wait=false` (admin) when dropped:
/// cleanup for cluster-scoped objects a test creates.
pub struct DeleteOnDrop {
    pub kind: String,
    pub name: String,
}

impl Cluster {
    pub fn delete_on_drop(&'static self, kind: &str, name: &str) -> DeleteOnDrop {
        DeleteOnDrop {
            kind: kind.to_string(),
            name: name.to_string(),
        }
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let _ = cluster().kubectl(&[
            "delete",
            &self.kind,
            &self.name,
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

/// Formats a finished command's status and output for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn config_from_kubeconfig(path: &Path) -> Config {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("reading kubeconfig {}: {e}", path.display()));
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("loading kubeconfig {}: {e}", path.display()))
}

/// A client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Client {
    Client::try_from(config_from_kubeconfig(path).await)
        .unwrap_or_else(|e| panic!("building a client from {}: {e}", path.display()))
}
