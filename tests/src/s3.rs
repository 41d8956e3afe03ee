//! A real S3-compatible server (s3s-fs) shared by a test binary, with a fresh bucket per test.

use super::*;

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

pub(crate) fn dirs_cache() -> PathBuf {
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
