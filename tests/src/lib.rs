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
//!
//! By job: `postgres.rs` (clusters, databases, TLS certificates),
//! `process.rs` (`basalt` processes), `smtp.rs` (a real SMTP server), `meili.rs` (a real Meilisearch server, or a SKIP), `fault.rs` (a proxy that injects failures in front of a real server), `search.rs` (helpers of the search suites), `s3.rs`
//! (a real S3-compatible server), `client.rs` (the one HTTP client of the
//! suites), `scenario.rs` (request scenarios loaded from TOML); this file
//! spawns children and finds free ports.

pub mod client;
mod fault;
mod meili;
mod postgres;
mod process;
mod s3;
pub mod scenario;
pub mod search;
mod smtp;

pub use fault::*;
pub use meili::*;
pub use postgres::*;
pub use process::*;
pub use s3::*;
pub use smtp::*;

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
