//! Real `basalt` processes: the builder, the running server, its keys and logs.

use super::*;

/// The `basalt` binary built by `cargo build --bins` (or `BASALT_BIN`).
pub fn basalt_bin() -> PathBuf {
    if let Ok(path) = std::env::var("BASALT_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("basalt");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first",
        path.display()
    );
    path
}

/// A `basalt` command with a clean environment: only what the test sets.
pub fn basalt_command(env: &[(String, String)]) -> Command {
    let mut command = Command::new(basalt_bin());
    command.env_clear();
    for name in ["PATH", "HOME"] {
        if let Ok(value) = std::env::var(name) {
            command.env(name, value);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// How to start a Basalt server.
pub struct BasaltBuilder {
    env: Vec<(String, String)>,
    database: Database,
    data_dir: Option<PathBuf>,
    wait_ready: bool,
}

pub(crate) enum Database {
    /// A fresh database on the shared cluster.
    Fresh,
    Url(String),
    Embedded,
}

impl BasaltBuilder {
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.into()));
        self
    }

    pub fn database_url(mut self, url: impl Into<String>) -> Self {
        self.database = Database::Url(url.into());
        self
    }

    /// Runs on the embedded PostgreSQL in `data_dir` (no DATABASE_URL).
    pub fn embedded(mut self, data_dir: &Path) -> Self {
        self.database = Database::Embedded;
        self.data_dir = Some(data_dir.to_owned());
        self
    }

    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub async fn start(self) -> Basalt {
        let work = tempfile::Builder::new()
            .prefix("basalt-test-")
            .tempdir()
            .unwrap();
        // An embedded cluster's unprivileged user must be able to enter it.
        std::fs::set_permissions(
            work.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .unwrap();
        let port = free_port();
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| work.path().join("data"));
        let mut env = vec![
            ("BASALT_HTTP".to_owned(), format!("127.0.0.1:{port}")),
            ("BASALT_DATA_DIR".to_owned(), data_dir.display().to_string()),
            ("BASALT_LOG_FORMAT".to_owned(), "json".to_owned()),
            ("BASALT_JWT_SECRET".to_owned(), TEST_JWT_SECRET.to_owned()),
            ("BASALT_RATE_LIMIT_ENABLED".to_owned(), "false".to_owned()),
            ("BASALT_SERVER_WORKERS".to_owned(), "2".to_owned()),
        ];
        match &self.database {
            Database::Fresh => env.push((
                "DATABASE_URL".into(),
                PgServer::shared().fresh_database().await,
            )),
            Database::Url(url) => env.push(("DATABASE_URL".into(), url.clone())),
            Database::Embedded => {}
        }
        for (name, value) in self.env {
            env.retain(|(n, _)| *n != name);
            env.push((name, value));
        }
        let log_path = work.path().join("basalt.log");
        let mut command = basalt_command(&env);
        let log = std::fs::File::create(&log_path).unwrap();
        command
            .arg("serve")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = spawn_owned(command).expect("basalt starts");
        let mut basalt = Basalt {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            env,
            log_path,
            _work: work,
            keys: std::sync::OnceLock::new(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        if self.wait_ready {
            basalt.wait_ready(Duration::from_secs(90)).await;
        }
        basalt
    }
}

/// A running `basalt serve`, killed when dropped.
pub struct Basalt {
    child: Child,
    base: String,
    pub port: u16,
    env: Vec<(String, String)>,
    log_path: PathBuf,
    _work: tempfile::TempDir,
    pub http: reqwest::Client,
    keys: std::sync::OnceLock<Keys>,
}

/// The API keys `basalt keys` prints.
#[derive(Clone)]
pub struct Keys {
    pub anon: String,
    pub service_role: String,
}

impl Basalt {
    pub fn builder() -> BasaltBuilder {
        BasaltBuilder {
            env: Vec::new(),
            database: Database::Fresh,
            data_dir: None,
            wait_ready: true,
        }
    }

    /// A server on a fresh database of the shared cluster.
    pub async fn start() -> Basalt {
        Basalt::builder().start().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.env
            .iter()
            .find(|(name, _)| name == "BASALT_DATA_DIR")
            .map(|(_, value)| PathBuf::from(value))
            .expect("set at start")
    }

    pub fn database_url(&self) -> Option<&str> {
        self.env
            .iter()
            .find(|(name, _)| name == "DATABASE_URL")
            .map(|(_, value)| value.as_str())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until `/health/ready` answers 200.
    pub async fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "basalt exited ({status}) before it was ready:\n{}",
                    self.logs()
                );
            }
            if let Ok(response) = self.http.get(self.url("/health/ready")).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "basalt was not ready in time:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `basalt <args>` with this server's environment.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        basalt_command(&self.env).args(args).output().unwrap()
    }

    /// The keys of this server (asked of `basalt keys` once).
    pub fn keys(&self) -> Keys {
        self.keys
            .get_or_init(|| {
                let output = self.run(&["keys"]);
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                parse_keys(&String::from_utf8_lossy(&output.stdout))
            })
            .clone()
    }

    pub fn signal(&self, signal: Signal) {
        signal::kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the process to exit, at most `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "basalt did not exit in time:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A request with the service_role key.
    pub async fn admin_sql(&self, query: &str) -> reqwest::Response {
        self.http
            .post(self.url("/admin/v1/sql"))
            .header("apikey", self.keys().service_role)
            .json(&serde_json::json!({ "query": query }))
            .send()
            .await
            .unwrap()
    }
}

pub fn parse_keys(text: &str) -> Keys {
    let find = |role: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{role}: ")))
            .unwrap_or_else(|| panic!("no {role} key in {text}"))
            .to_owned()
    };
    Keys {
        anon: find("anon"),
        service_role: find("service_role"),
    }
}

impl Drop for Basalt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
