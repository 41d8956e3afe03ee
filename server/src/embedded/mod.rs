//! The embedded PostgreSQL: finds the machine's server binaries, initializes a
//! cluster in `<data-dir>/postgres` on first run, starts it on a Unix socket in
//! `<data-dir>/run` (no TCP port), restarts it if it dies, and stops it cleanly.

mod binaries;

pub use binaries::Binaries;

use anyhow::{bail, Context};
use basalt_core::config::EmbeddedConfig;
use nix::sys::signal::{self, Signal};
use nix::unistd::{Gid, Pid, Uid};
use std::collections::VecDeque;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// The database role Basalt creates and connects as.
pub const SUPERUSER: &str = "basalt";
/// Only names the socket file (`.s.PGSQL.5432`); no TCP port is opened.
const SOCKET_PORT: u16 = 5432;
/// Unix socket paths are limited to 107 bytes by the kernel.
const MAX_SOCKET_PATH: usize = 107;

/// Who runs the cluster: this process's user, or an unprivileged one when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: Uid,
    gid: Gid,
}

pub struct EmbeddedPostgres {
    /// Held while the cluster runs: a second Basalt on the same data directory
    /// is refused instead of talking to this one's cluster.
    _lock: nix::fcntl::Flock<std::fs::File>,
    socket_dir: PathBuf,
    stop: watch::Sender<bool>,
    supervisor: tokio::task::JoinHandle<()>,
}

impl EmbeddedPostgres {
    /// Initializes (first run) and starts the cluster, waiting until it accepts
    /// connections, then supervises it.
    pub async fn start(
        config: &EmbeddedConfig,
        data_dir: &Path,
        password: &str,
    ) -> anyhow::Result<Self> {
        let binaries = Binaries::find(config)?;
        let run_as = run_as(config)?;
        let data_dir = std::path::absolute(data_dir)?;
        let lock = lock_data_dir(&data_dir)?;
        let cluster_dir = data_dir.join("postgres");
        let socket_dir = data_dir.join("run");
        let socket_path = socket_dir.join(format!(".s.PGSQL.{SOCKET_PORT}"));
        if socket_path.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "the data directory path is too long for PostgreSQL's Unix socket ({} > {MAX_SOCKET_PATH} bytes); use a shorter --data-dir",
                socket_path.as_os_str().len()
            );
        }
        prepare_dir(&socket_dir, run_as)?;
        if let Some(run_as) = run_as {
            check_reachable(&data_dir, run_as)?;
        }
        if !cluster_dir.join("PG_VERSION").exists() {
            initdb(&binaries, &cluster_dir, &socket_dir, password, run_as).await?;
        }
        let (stop, stop_rx) = watch::channel(false);
        let postgres = Postgres {
            binaries,
            cluster_dir: cluster_dir.clone(),
            socket_dir: socket_dir.clone(),
            run_as,
        };
        let child = postgres.spawn()?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let mut child = postgres.forward_output(child, log.clone());
        if let Err(error) = wait_until_accepting(&socket_dir, password, &mut child).await {
            let _ = child.start_kill();
            let tail: Vec<String> = log.lock().expect("log lock").iter().cloned().collect();
            bail!("{error:#}\nPostgreSQL said:\n  {}", tail.join("\n  "));
        }
        tracing::info!(cluster = %cluster_dir.display(), version = %postgres.binaries.version, "embedded PostgreSQL is running");
        let supervisor = tokio::spawn(supervise(postgres, child, stop_rx, log));
        Ok(EmbeddedPostgres {
            _lock: lock,
            socket_dir,
            stop,
            supervisor,
        })
    }

    /// How to connect: the socket directory, as the Basalt superuser.
    pub fn connection_config(&self, password: &str) -> tokio_postgres::Config {
        connection_config(&self.socket_dir, password)
    }

    /// Fast shutdown (SIGINT): rolls back open transactions, checkpoints, exits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.supervisor.await;
    }
}

fn connection_config(socket_dir: &Path, password: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(SOCKET_PORT)
        .user(SUPERUSER)
        .password(password)
        .dbname("postgres")
        .application_name("basalt")
        // The superuser is named basalt, like Basalt's own schema: without
        // this, "$user" in the default search_path would put the app's
        // unqualified tables into that schema instead of public.
        .options("-c search_path=public")
        .ssl_mode(tokio_postgres::config::SslMode::Disable)
        .connect_timeout(Duration::from_secs(5));
    config
}

struct Postgres {
    binaries: Binaries,
    cluster_dir: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<RunAs>,
}

impl Postgres {
    fn spawn(&self) -> anyhow::Result<Child> {
        let mut command = self.command(&self.binaries.postgres);
        command
            .arg("-D")
            .arg(&self.cluster_dir)
            .arg("-k")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(SOCKET_PORT.to_string())
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "unix_socket_permissions=0700",
                // The server's log is copied into Basalt's: keep row values
                // and statement text out of it. Client errors (ERROR, which
                // quote values: `invalid input syntax … "value"`) reach
                // Basalt as answers and are not logged here; the DETAIL of
                // the rest (`Failing row contains (…)`) is left out.
                "-c",
                "log_min_messages=log",
                "-c",
                "log_min_error_statement=panic",
                "-c",
                "log_error_verbosity=terse",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
            .spawn()
            .with_context(|| format!("cannot run {}", self.binaries.postgres.display()))
    }

    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("LC_ALL", "C")
            .env("PATH", "/usr/bin:/bin");
        if let Some(run_as) = self.run_as {
            command.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
        }
        // If Basalt dies without stopping the cluster, the kernel tells PostgreSQL
        // to shut down fast, so no orphan keeps the data directory locked.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(std::io::Error::from)
            });
        }
        command.kill_on_drop(false);
        command
    }

    /// Copies the server's output into Basalt's log and keeps the last lines for errors.
    fn forward_output(&self, mut child: Child, log: Arc<Mutex<VecDeque<String>>>) -> Child {
        let streams = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ];
        for stream in streams.into_iter().flatten() {
            let log = log.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(target: "postgres", "{line}");
                    let mut log = log.lock().expect("log lock");
                    if log.len() == 20 {
                        log.pop_front();
                    }
                    log.push_back(line);
                }
            });
        }
        child
    }
}

/// Restarts the cluster when it exits unexpectedly (backing off up to 30 s);
/// stops it on request.
async fn supervise(
    postgres: Postgres,
    mut child: Child,
    mut stop: watch::Receiver<bool>,
    log: Arc<Mutex<VecDeque<String>>>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        tokio::select! {
            status = child.wait() => {
                if *stop.borrow() {
                    return;
                }
                tracing::error!(status = ?status, "embedded PostgreSQL exited unexpectedly; restarting in {backoff:?}");
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_millis(500);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                match postgres.spawn() {
                    Ok(new_child) => child = postgres.forward_output(new_child, log.clone()),
                    Err(error) => {
                        tracing::error!("cannot restart the embedded PostgreSQL: {error:#}");
                        // Wait with a child that has exited; the loop tries again.
                        continue;
                    }
                }
            }
            _ = stop.changed() => {
                if let Some(pid) = child.id() {
                    let _ = signal::kill(Pid::from_raw(pid as i32), Signal::SIGINT);
                }
                match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
                    Ok(_) => tracing::info!("embedded PostgreSQL stopped"),
                    Err(_) => {
                        tracing::error!("embedded PostgreSQL did not stop within 60 s; killing it");
                        let _ = child.kill().await;
                    }
                }
                return;
            }
        }
    }
}

fn lock_data_dir(data_dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    let path = data_dir.join("basalt.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!(
            "another Basalt process is using the data directory {} (its embedded PostgreSQL is running).\n  \
             fix: stop that process first, or give this one another --data-dir",
            data_dir.display()
        )
    })
}

fn run_as(config: &EmbeddedConfig) -> anyhow::Result<Option<RunAs>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match nix::unistd::User::from_name(&config.os_user)? {
        Some(user) if !user.uid.is_root() => Ok(Some(RunAs {
            uid: user.uid,
            gid: user.gid,
        })),
        _ => bail!(
            "Basalt runs as root, and PostgreSQL refuses to run as root, but the system user `{user}` \
             that would run the embedded cluster does not exist.\n  fix: create it (`useradd --system --no-create-home {user}`), \
             name another unprivileged user with BASALT_EMBEDDED_OS_USER, run Basalt as a non-root user, \
             or point DATABASE_URL at an existing PostgreSQL",
            user = config.os_user
        ),
    }
}

/// Creates a directory owned by the cluster's user with mode 0700.
fn prepare_dir(dir: &Path, run_as: Option<RunAs>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Some(run_as) = run_as {
        nix::unistd::chown(dir, Some(run_as.uid), Some(run_as.gid))
            .with_context(|| format!("cannot hand {} to the cluster's user", dir.display()))?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// The cluster's user must be able to pass through every parent of the data dir.
fn check_reachable(data_dir: &Path, run_as: RunAs) -> anyhow::Result<()> {
    for ancestor in data_dir.ancestors().skip(1) {
        let Ok(metadata) = std::fs::metadata(ancestor) else {
            continue;
        };
        let mode = metadata.permissions().mode();
        use std::os::unix::fs::MetadataExt;
        let passable = mode & 0o001 != 0
            || (metadata.uid() == run_as.uid.as_raw() && mode & 0o100 != 0)
            || (metadata.gid() == run_as.gid.as_raw() && mode & 0o010 != 0);
        if !passable {
            bail!(
                "the embedded PostgreSQL runs as an unprivileged user (uid {}), which cannot enter {} (mode {:o}).\n  \
                 fix: choose a --data-dir outside it (for example /var/lib/basalt), or `chmod o+x {}`",
                run_as.uid,
                ancestor.display(),
                mode & 0o777,
                ancestor.display()
            );
        }
    }
    Ok(())
}

async fn initdb(
    binaries: &Binaries,
    cluster_dir: &Path,
    socket_dir: &Path,
    password: &str,
    run_as: Option<RunAs>,
) -> anyhow::Result<()> {
    tracing::info!(cluster = %cluster_dir.display(), "initializing the embedded PostgreSQL cluster (first run)");
    if cluster_dir.exists() {
        // A half-finished initdb leaves a directory without PG_VERSION: start over.
        std::fs::remove_dir_all(cluster_dir)?;
    }
    prepare_dir(cluster_dir, run_as)?;
    let password_file = socket_dir.join("initdb-password");
    std::fs::write(&password_file, password)?;
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))?;
    if let Some(run_as) = run_as {
        nix::unistd::chown(&password_file, Some(run_as.uid), Some(run_as.gid))?;
    }
    let postgres = Postgres {
        binaries: binaries.clone(),
        cluster_dir: cluster_dir.to_owned(),
        socket_dir: socket_dir.to_owned(),
        run_as,
    };
    let output = postgres
        .command(&binaries.initdb)
        .arg("-D")
        .arg(cluster_dir)
        .arg("-U")
        .arg(SUPERUSER)
        .arg(format!("--pwfile={}", password_file.display()))
        .args(["--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"])
        .output()
        .await
        .with_context(|| format!("cannot run {}", binaries.initdb.display()))?;
    let _ = std::fs::remove_file(&password_file);
    if !output.status.success() {
        bail!(
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

async fn wait_until_accepting(
    socket_dir: &Path,
    password: &str,
    child: &mut Child,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let config = connection_config(socket_dir, password);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the embedded PostgreSQL exited during start-up ({status})");
        }
        match config.connect(tokio_postgres::NoTls).await {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() > deadline => {
                bail!("the embedded PostgreSQL did not accept connections within 60 s: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
