//! Throwaway PostgreSQL clusters on loopback ports (and their TLS certificates), fresh databases, and what the migrations are named.

use super::*;

/// The unprivileged user that runs PostgreSQL when tests run as root.
pub(crate) fn postgres_user() -> Option<nix::unistd::User> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    Some(
        nix::unistd::User::from_name("postgres").unwrap().expect(
            "tests run as root need the `postgres` system user (apt-get install postgresql)",
        ),
    )
}

pub(crate) fn as_postgres_user(command: &mut Command) {
    if let Some(user) = postgres_user() {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
}

pub(crate) fn give_to_postgres_user(path: &Path) {
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
pub(crate) fn make_certificates(dir: &Path) -> PathBuf {
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

pub(crate) fn remove_at_exit(path: &Path) {
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
