//! Test support: real PostgreSQL servers and real `basalt` processes.
//!
//! - [`PgServer::shared`] starts one throwaway cluster per test binary (initdb
//!   into a temp dir, a free loopback port); [`PgServer::fresh_database`] gives
//!   each test its own new database, so tests are isolated and run in parallel.
//! - [`PgServer::start`] starts a dedicated cluster a test may stop and restart.
//! - [`Basalt`] spawns the real `basalt` binary and talks to it over HTTP.
//!
//! Every child process is spawned from one long-lived thread with a parent-death
//! signal, so nothing outlives a crashed test run.

pub mod client;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The HS256 secret test servers use unless a test wants a generated one.
pub const TEST_JWT_SECRET: &str = "basalt-test-secret-0123456789abcdef-0123456789";

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from a thread that lives as long as the process, with
/// SIGKILL as its parent-death signal.
pub fn spawn_owned(mut command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnRequest>();
        std::thread::spawn(move || {
            for (mut command, reply) in receiver {
                unsafe {
                    command.pre_exec(|| {
                        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                            .map_err(std::io::Error::from)
                    });
                }
                let _ = reply.send(command.spawn());
            }
        });
        Mutex::new(sender)
    });
    let (reply, answer) = mpsc::channel();
    command.stdin(Stdio::null());
    sender.lock().unwrap().send((command, reply)).unwrap();
    answer.recv().unwrap()
}

/// A free TCP port on 127.0.0.1 (released just before use).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The unprivileged user that runs PostgreSQL when tests run as root.
fn postgres_user() -> Option<nix::unistd::User> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    Some(
        nix::unistd::User::from_name("postgres").unwrap().expect(
            "tests run as root need the `postgres` system user (apt-get install postgresql)",
        ),
    )
}

fn as_postgres_user(command: &mut Command) {
    if let Some(user) = postgres_user() {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
}

fn give_to_postgres_user(path: &Path) {
    if let Some(user) = postgres_user() {
        nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
    }
}

/// Directory of PostgreSQL's server binaries.
pub fn pg_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("BASALT_TEST_PG_BIN") {
        return dir.into();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|dir| dir.join("initdb").exists())
        .expect("PostgreSQL server binaries are not installed: apt-get install -y postgresql")
}

/// A PostgreSQL cluster on a loopback port, owned by the test run.
pub struct PgServer {
    pub port: u16,
    dir: tempfile::TempDir,
    settings: Vec<String>,
    child: Mutex<Option<Child>>,
    databases: AtomicUsize,
}

impl PgServer {
    /// The cluster shared by every test of this binary.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            let server = PgServer::start();
            remove_at_exit(server.dir.path());
            server
        })
    }

    /// A dedicated cluster: initdb, then start.
    pub fn start() -> PgServer {
        PgServer::start_with(|_| Vec::new())
    }

    /// A dedicated cluster that accepts TLS with a certificate for 127.0.0.1
    /// issued by a throwaway CA; returns the CA certificate's path too.
    pub fn start_with_tls() -> (PgServer, PathBuf) {
        let mut ca = PathBuf::new();
        let server = PgServer::start_with(|dir| {
            ca = make_certificates(dir);
            vec![
                "ssl=on".into(),
                format!("ssl_cert_file={}", dir.join("server.crt").display()),
                format!("ssl_key_file={}", dir.join("server.key").display()),
            ]
        });
        (server, ca)
    }

    fn start_with(settings: impl FnOnce(&Path) -> Vec<String>) -> PgServer {
        let dir = tempfile::Builder::new()
            .prefix("basalt-pg-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        give_to_postgres_user(dir.path());
        let data = dir.path().join("data");
        let mut initdb = Command::new(pg_bin_dir().join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_postgres_user(&mut initdb);
        let output = initdb.output().expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let settings = settings(dir.path());
        let server = PgServer {
            port: free_port(),
            settings,
            dir,
            child: Mutex::new(None),
            databases: AtomicUsize::new(0),
        };
        server.resume();
        server
    }

    /// Starts (or restarts) the postmaster and waits until it accepts connections.
    pub fn resume(&self) {
        let mut command = Command::new(pg_bin_dir().join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=400",
            ])
            .args(["-c", "full_page_writes=off", "-c", "synchronous_commit=off"])
            .args(
                self.settings
                    .iter()
                    .flat_map(|setting| ["-c", setting.as_str()]),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.path().join("postgres.log")).unwrap());
        as_postgres_user(&mut command);
        *self.child.lock().unwrap() = Some(spawn_owned(command).expect("postgres starts"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The port opens slightly before the server accepts sessions.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let output = Command::new(pg_bin_dir().join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .output()
                .unwrap();
            if output.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL is not ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown; waits until the server has exited.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database for one test.
    pub async fn fresh_database(&self) -> String {
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            self.databases.fetch_add(1, Ordering::SeqCst)
        );
        let client = self.connect("postgres").await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        self.url(&name)
    }

    pub async fn connect(&self, database: &str) -> tokio_postgres::Client {
        connect(&self.url(database)).await
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client whose connection task runs on the current runtime.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("connect to {url}: {error}"));
    tokio::spawn(connection);
    client
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made with the
/// `openssl` command; the server key is readable by the cluster's user only.
fn make_certificates(dir: &Path) -> PathBuf {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=basalt test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    give_to_postgres_user(&key);
    give_to_postgres_user(&dir.join("server.crt"));
    dir.join("ca.crt")
}

fn remove_at_exit(path: &Path) {
    static PATHS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    extern "C" fn cleanup() {
        if let Ok(paths) = PATHS.lock() {
            for path in paths.iter() {
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }
    let mut paths = PATHS.lock().unwrap();
    if paths.is_empty() {
        unsafe { libc::atexit(cleanup) };
    }
    paths.push(path.to_owned());
}

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

enum Database {
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
}

/// The API keys `basalt keys` prints.
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

    pub fn keys(&self) -> Keys {
        let output = self.run(&["keys"]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        parse_keys(&String::from_utf8_lossy(&output.stdout))
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

/// A real SMTP server (aiosmtpd, from Debian's python3-aiosmtpd) on a loopback
/// port, storing what it receives in a maildir. Stopped when dropped.
pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

/// One received email, decoded.
#[derive(Debug, Clone)]
pub struct ReceivedEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl ReceivedEmail {
    /// The first link to Basalt's verify endpoint in the text body.
    pub fn verify_link(&self) -> String {
        let start = self
            .text
            .find("http")
            .unwrap_or_else(|| panic!("no link in {self:?}"));
        self.text[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        let server = SmtpServer {
            port: free_port(),
            dir: tempfile::Builder::new()
                .prefix("basalt-smtp-")
                .tempdir()
                .unwrap(),
            child: Mutex::new(None),
        };
        server.resume();
        server
    }

    fn python() -> &'static str {
        let system = "/usr/bin/python3";
        let has_module = |python: &str| {
            Command::new(python)
                .args(["-c", "import aiosmtpd"])
                .output()
                .is_ok_and(|output| output.status.success())
        };
        if has_module(system) {
            system
        } else if has_module("python3") {
            "python3"
        } else {
            panic!("aiosmtpd is missing: apt-get install python3-aiosmtpd")
        }
    }

    pub fn resume(&self) {
        // aiosmtpd's maildir handler, refusing (550) recipients that contain
        // `+reject@`, so tests can see a permanent failure.
        let handler = [
            "from aiosmtpd.handlers import Mailbox",
            "class Handler(Mailbox):",
            "    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):",
            "        if '+reject@' in address:",
            "            return '550 5.1.1 no such user'",
            "        envelope.rcpt_tos.append(address)",
            "        return '250 OK'",
        ];
        std::fs::write(
            self.dir.path().join("basalt_test_smtp.py"),
            handler.join("\n") + "\n",
        )
        .unwrap();
        let mut command = Command::new(Self::python());
        command
            .env("PYTHONPATH", self.dir.path())
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{}", self.port),
            ])
            .args(["-c", "basalt_test_smtp.Handler"])
            .arg(self.dir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        *self.child.lock().unwrap() = Some(spawn_owned(command).expect("aiosmtpd starts"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the SMTP server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The settings that point Basalt at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("BASALT_SMTP_HOST", "127.0.0.1".to_owned()),
            ("BASALT_SMTP_PORT", self.port.to_string()),
            ("BASALT_SMTP_TLS", "none".to_owned()),
            (
                "BASALT_SMTP_SENDER",
                "Basalt Test <no-reply@basalt.test>".to_owned(),
            ),
        ]
    }

    /// Every message received so far.
    pub fn messages(&self) -> Vec<ReceivedEmail> {
        let new = self.dir.path().join("mail/new");
        let Ok(entries) = std::fs::read_dir(&new) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
        files.sort_by_key(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok());
        files
            .iter()
            .map(|path| {
                let raw = std::fs::read(path).unwrap();
                let parsed = mailparse::parse_mail(&raw).unwrap();
                let header = |name: &str| {
                    mailparse::MailHeaderMap::get_first_value(parsed.headers.as_slice(), name)
                        .unwrap_or_default()
                };
                let part = |mime: &str| {
                    parsed
                        .subparts
                        .iter()
                        .find(|part| part.ctype.mimetype == mime)
                        .map(|part| part.get_body().unwrap())
                        .unwrap_or_default()
                };
                ReceivedEmail {
                    to: header("To"),
                    subject: header("Subject"),
                    text: part("text/plain"),
                    html: part("text/html"),
                }
            })
            .collect()
    }

    /// Waits for a message to `to` beyond the first `skip` ones sent to it.
    pub async fn wait_for(&self, to: &str, skip: usize, limit: Duration) -> ReceivedEmail {
        let deadline = Instant::now() + limit;
        loop {
            let mine: Vec<ReceivedEmail> = self
                .messages()
                .into_iter()
                .filter(|m| m.to.contains(to))
                .collect();
            if let Some(message) = mine.get(skip) {
                return message.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no email #{skip} to {to} arrived"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Basalt's migrations as `basalt migrate` names them (`V1__basalt_schema`),
/// oldest first, read from the top-level `migrations/` folder.
pub fn migration_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut names: Vec<(u32, String)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_str()?.strip_suffix(".sql")?.to_owned();
            let version = name.strip_prefix('V')?.split("__").next()?.parse().ok()?;
            Some((version, name))
        })
        .collect();
    names.sort();
    names.into_iter().map(|(_, name)| name).collect()
}

/// A real S3-compatible server (s3s-fs, installed by `scripts/test`) on a
/// loopback port, shared by the tests of one binary; each test takes its own
/// bucket.
pub struct S3Server {
    pub endpoint: String,
    root: tempfile::TempDir,
    _child: Child,
    buckets: AtomicUsize,
}

pub const S3_ACCESS_KEY: &str = "basalt-test-access";
pub const S3_SECRET_KEY: &str = "basalt-test-secret-key";

/// Where `scripts/test` installs s3s-fs, unless it is on PATH.
pub fn s3s_fs_bin() -> PathBuf {
    if let Ok(path) = std::env::var("S3S_FS_BIN") {
        return PathBuf::from(path);
    }
    let cached = dirs_cache().join("s3s-fs/bin/s3s-fs");
    if cached.exists() {
        return cached;
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let candidate = Path::new(dir).join("s3s-fs");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("s3s-fs is missing: run scripts/test, which installs it");
}

fn dirs_cache() -> PathBuf {
    std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache")
        })
        .join("basalt-test-tools")
}

impl S3Server {
    pub fn shared() -> &'static S3Server {
        static SHARED: OnceLock<S3Server> = OnceLock::new();
        SHARED.get_or_init(|| {
            let root = tempfile::Builder::new()
                .prefix("basalt-s3-")
                .tempdir()
                .unwrap();
            remove_at_exit(root.path());
            let port = free_port();
            let mut command = Command::new(s3s_fs_bin());
            command
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
                .arg(root.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let child = spawn_owned(command).expect("s3s-fs starts");
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "s3s-fs did not listen"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            S3Server {
                endpoint: format!("http://127.0.0.1:{port}"),
                root,
                _child: child,
                buckets: AtomicUsize::new(0),
            }
        })
    }

    /// A new, empty bucket of the store.
    pub fn fresh_bucket(&self) -> String {
        let name = format!(
            "test-{}-{}",
            std::process::id(),
            self.buckets.fetch_add(1, Ordering::SeqCst)
        );
        std::fs::create_dir_all(self.root.path().join(&name)).unwrap();
        name
    }

    /// Where the store keeps a bucket's files (to look behind Basalt's back).
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.path().join(bucket)
    }

    /// The settings that point Basalt at `bucket`.
    pub fn env(&self, bucket: &str) -> Vec<(&'static str, String)> {
        vec![
            ("BASALT_STORAGE_BACKEND", "s3".into()),
            ("BASALT_S3_ENDPOINT", self.endpoint.clone()),
            ("BASALT_S3_REGION", "us-east-1".into()),
            ("BASALT_S3_BUCKET", bucket.into()),
            ("BASALT_S3_ACCESS_KEY_ID", S3_ACCESS_KEY.into()),
            ("BASALT_S3_SECRET_ACCESS_KEY", S3_SECRET_KEY.into()),
            ("BASALT_S3_FORCE_PATH_STYLE", "true".into()),
        ]
    }
}
