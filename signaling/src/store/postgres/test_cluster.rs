//! A private, throwaway PostgreSQL server for the tests of one test binary, and a fresh
//! database on it per test ([`fresh_database`]). The server is the Debian package's
//! (`postgresql`: `initdb` and `postgres` in /usr/lib/postgresql/<version>/bin, or on PATH),
//! started once, on loopback on a free port, with its data in a temporary folder; it runs as
//! the `postgres` OS user when the tests run as root (PostgreSQL refuses root). It dies with
//! the test process (the parent-death signal of a thread that lives as long as the process),
//! and the next run removes the folders of runs that are gone.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What the tests need and where to get it, said when it is missing.
const MISSING: &str = "PostgreSQL's server programs (initdb, postgres) were not found in \
     /usr/lib/postgresql/<version>/bin or on PATH: install the Debian package `postgresql` \
     (scripts/install-deps.sh --test does)";

/// The running server: its port.
struct Cluster {
    port: u16,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);

/// The URL of a new, empty database on this test binary's server (started at the first
/// call). Panics with what is wrong when the server cannot start.
pub(crate) async fn fresh_database() -> String {
    let cluster = match CLUSTER.get_or_init(start) {
        Ok(c) => c,
        Err(e) => panic!("the test PostgreSQL server did not start: {e}"),
    };
    let name = format!("t{}", NEXT_DATABASE.fetch_add(1, Ordering::Relaxed));
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL server: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
    let _ = sqlx::Connection::close(conn).await;
    format!("postgres://postgres@127.0.0.1:{}/{name}", cluster.port)
}

/// Starts the server from a thread that lives until the process ends (the parent-death
/// signal is tied to the thread that spawned the child, and test threads end early).
fn start() -> Result<Cluster, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("test-postgres".into())
        .spawn(move || {
            let _ = tx.send(start_here());
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| format!("spawning the server thread: {e}"))?;
    rx.recv()
        .map_err(|_| "the server thread ended early".to_string())?
}

fn start_here() -> Result<Cluster, String> {
    let bin = server_bin_dir().ok_or_else(|| MISSING.to_string())?;
    let owner = server_user()?;
    // One folder of runs per user: another user's is not ours to write or clean.
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let root = std::env::temp_dir().join(format!("earshot-pg-tests-{uid}"));
    std::fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    remove_stale_runs(&root);
    let dir = root.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| format!("handing {} to the postgres user: {e}", dir.display()))?;
    }
    let data = dir.join("data");
    let out = as_owner(Command::new(bin.join("initdb")), owner)
        .current_dir(&dir)
        .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
        .args(["--locale=C", "-D"])
        .arg(&data)
        .output()
        .map_err(|e| format!("running initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("server.log"))
        .map_err(|e| format!("creating the server log: {e}"))?;
    if let Some((uid, gid)) = owner {
        let _ = std::os::unix::fs::chown(dir.join("server.log"), Some(uid), Some(gid));
    }
    let mut cmd = as_owner(Command::new(bin.join("postgres")), owner);
    cmd.current_dir(&dir)
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(&dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
        .args(["-c", "max_connections=400"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            // Immediate shutdown when the thread that started it (alive as long as the
            // test process) goes.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("starting postgres: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            return Err(format!("postgres exited ({status}): {log}"));
        }
        if ready(&data) {
            return Ok(Cluster { port });
        }
        if Instant::now() > deadline {
            return Err("postgres did not get ready within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the server accepts connections (the last line of `postmaster.pid` says so).
fn ready(data: &Path) -> bool {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .is_ok_and(|s| s.lines().any(|l| l.trim() == "ready"))
}

/// The folder of `initdb` and `postgres`: the newest Debian version's, else PATH's.
fn server_bin_dir() -> Option<PathBuf> {
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
    })
}

/// The `postgres` OS user's ids when running as root (the server refuses root), else `None`.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions; getpwnam's result is read before any other
    // call to the password database in this thread.
    unsafe {
        if libc::geteuid() != 0 {
            return Ok(None);
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        if pw.is_null() {
            return Err(format!(
                "running as root needs the `postgres` OS user to run the server as: {MISSING}"
            ));
        }
        Ok(Some(((*pw).pw_uid, (*pw).pw_gid)))
    }
}

fn as_owner(mut cmd: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// Removes the folders of earlier test processes that are gone.
fn remove_stale_runs(root: &Path) {
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let gone = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
