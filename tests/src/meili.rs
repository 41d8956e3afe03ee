//! A real Meilisearch server for the search tests: the one at
//! `MEILISEARCH_URL` (with `MEILISEARCH_KEY`), or a `meilisearch` binary on
//! `PATH` started on a free loopback port with its own database directory
//! (stopped when dropped, and restartable on the same port and data, for
//! outage tests). Neither: the tests say SKIP and pass without it.

use super::*;

pub struct MeiliServer {
    pub url: String,
    pub key: String,
    /// `None` for a server the environment gave (it cannot be stopped).
    local: Option<Local>,
}

struct Local {
    port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

/// The master key of servers the tests start.
const MASTER_KEY: &str = "basalt-test-master-key-0123456789";

impl MeiliServer {
    /// A server, or `None` after printing why the live part is skipped.
    pub async fn start(test: &str) -> Option<MeiliServer> {
        if let Ok(url) = std::env::var("MEILISEARCH_URL") {
            return Some(MeiliServer {
                url,
                key: std::env::var("MEILISEARCH_KEY").unwrap_or_default(),
                local: None,
            });
        }
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("meilisearch").is_file())
        });
        if !found {
            // Straight to the terminal: the harness captures eprintln!.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIP {test}: no Meilisearch (set MEILISEARCH_URL, or put a `meilisearch` binary on PATH); the live Meilisearch part did not run"
            );
            return None;
        }
        let port = free_port();
        let server = MeiliServer {
            url: format!("http://127.0.0.1:{port}"),
            key: MASTER_KEY.into(),
            local: Some(Local {
                port,
                dir: tempfile::Builder::new()
                    .prefix("basalt-meili-")
                    .tempdir()
                    .unwrap(),
                child: Mutex::new(None),
            }),
        };
        server.resume().await;
        Some(server)
    }

    /// Starts (again) the local server on its port and data.
    pub async fn resume(&self) {
        let local = self.local.as_ref().expect("a server the test started");
        let mut command = Command::new("meilisearch");
        command
            .args(["--http-addr", &format!("127.0.0.1:{}", local.port)])
            .args(["--master-key", MASTER_KEY, "--no-analytics"])
            .arg("--db-path")
            .arg(local.dir.path().join("data.ms"))
            .arg("--dump-dir")
            .arg(local.dir.path().join("dumps"))
            .current_dir(local.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        *local.child.lock().unwrap() = Some(spawn_owned(command).expect("meilisearch starts"));
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let healthy = http
                .get(format!("{}/health", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if healthy {
                return;
            }
            assert!(Instant::now() < deadline, "Meilisearch did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the local server (an outage).
    pub fn stop(&self) {
        let local = self.local.as_ref().expect("a server the test started");
        if let Some(mut child) = local.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether this server can be stopped and resumed.
    pub fn local(&self) -> bool {
        self.local.is_some()
    }

    /// The settings that point Basalt at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("BASALT_SEARCH_MEILISEARCH_URL", self.url.clone()),
            ("BASALT_SEARCH_MEILISEARCH_KEY", self.key.clone()),
            ("BASALT_SEARCH_TASK_TIMEOUT_SECS", "10".into()),
        ]
    }

    /// `GET`s a path of the Meilisearch API.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(format!("{}{path}", self.url));
        if !self.key.is_empty() {
            request = request.bearer_auth(&self.key);
        }
        request.send().await.unwrap()
    }
}

impl Drop for MeiliServer {
    fn drop(&mut self) {
        if self.local.is_some() {
            self.stop();
        }
    }
}
