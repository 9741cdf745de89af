//! A real Alertmanager process (built by `scripts/tools.sh alertmanager`), configured by the
//! test, on a free port; killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::{alertmanager_bin, eventually, free_port, http_request};

pub struct Alertmanager {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: TempDir,
}

/// Gossip between replicas: this one's cluster port and the other replicas'.
pub struct Gossip<'a> {
    pub port: u16,
    pub peers: &'a [u16],
}

impl Alertmanager {
    /// Starts Alertmanager with `config` (its YAML), alone or as a replica gossiping with
    /// `gossip.peers`.
    pub fn start(config: &str, gossip: Option<Gossip<'_>>) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let config_file = dir.path().join("alertmanager.yml");
        std::fs::write(&config_file, config).unwrap();
        let port = free_port();
        let log = dir.path().join("alertmanager.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(alertmanager_bin());
        cmd.arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        match gossip {
            Some(Gossip { port: c, peers }) => {
                cmd.arg(format!("--cluster.listen-address=127.0.0.1:{c}"))
                    .arg(format!("--cluster.advertise-address=127.0.0.1:{c}"))
                    // Short, so every replica delivers and the receiver's dedup is what holds.
                    .arg("--cluster.peer-timeout=1s");
                for p in peers {
                    cmd.arg(format!("--cluster.peer=127.0.0.1:{p}"));
                }
            }
            None => {
                cmd.arg("--cluster.listen-address=");
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting alertmanager");
        Alertmanager {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// Waits until `/-/ready` answers 200; the log says why when it never does.
    pub async fn wait_ready(&self) {
        eventually(Duration::from_secs(30), || async {
            let address = format!("127.0.0.1:{}", self.port);
            match http_request(&address, "GET", "/-/ready", &[], b"").await {
                Ok((200, _)) => Ok(()),
                other => Err(format!(
                    "{other:?}; log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )),
            }
        })
        .await
    }

    /// Posts alerts to Alertmanager's API, as Prometheus does.
    pub async fn post(&self, alerts: &Value) {
        let body = alerts.to_string();
        let (code, text) = http_request(
            &format!("127.0.0.1:{}", self.port),
            "POST",
            "/api/v2/alerts",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await
        .expect("posting to alertmanager");
        assert_eq!(code, 200, "{text}");
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
