//! A real PostgreSQL for the tests: one server per test binary, initialised into a temp
//! directory and started on a free port (as the `postgres` user when running as root:
//! `initdb` refuses root), one fresh database per test, stopped by its PID at exit.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Server {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    pid: u32,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static PID: AtomicU32 = AtomicU32::new(0);
static DIR: OnceLock<PathBuf> = OnceLock::new();

/// Where Debian's postgresql-15 keeps its programs (off the PATH); `DOHOST_PG_BIN`
/// overrides.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("DOHOST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found.pop().expect(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `make test-deps`",
    )
}

/// The uid and gid to run PostgreSQL as: `postgres` when we are root, else ourselves.
fn owner() -> Option<(u32, u32)> {
    // SAFETY: plain libc calls; getpwnam's result is read at once, on one thread.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !pw.is_null(),
            "running as root needs a `postgres` user to run PostgreSQL (the postgresql package \
             creates it)"
        );
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn as_owner(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = owner() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

extern "C" fn stop_at_exit() {
    let pid = PID.load(Ordering::SeqCst);
    if pid != 0 {
        // SAFETY: signalling our own child. The keeper thread reaps it once it exits, and
        // then it is gone (exit handlers run while other threads still do).
        unsafe {
            libc::kill(pid as i32, libc::SIGINT); // fast shutdown
            for _ in 0..3000 {
                if libc::kill(pid as i32, 0) != 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
    if let Some(dir) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The test binary's server, started on first use.
pub fn server() -> &'static Server {
    SERVER.get_or_init(start)
}

fn start() -> Server {
    let bin = bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("dohost-pg-")
        .tempdir()
        .unwrap()
        .keep();
    DIR.set(dir.clone()).unwrap();
    if let Some((uid, gid)) = owner() {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    }
    let data = dir.join("data");
    let out = as_owner(Command::new(bin.join("initdb")).args([
        "-D",
        data.to_str().unwrap(),
        "-A",
        "trust",
        "-U",
        "postgres",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]))
    .output()
    .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SAFETY: registering a plain extern "C" function.
    unsafe { libc::atexit(stop_at_exit) };
    let port = super::free_port();
    // Started from a thread that lives as long as the server (it waits on it): the server
    // gets SIGKILL if this process dies without running its exit handlers (pdeathsig
    // follows the thread that forked).
    let (tx, rx) = std::sync::mpsc::channel();
    let (bin2, dir2) = (bin.clone(), dir.clone());
    std::thread::spawn(move || {
        let mut cmd = Command::new(bin2.join("postgres"));
        cmd.args(["-D", data.to_str().unwrap(), "-p", &port.to_string(), "-k"])
            .arg(&dir2)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=400",
                "-c",
                "fsync=on",
                "-c",
                "synchronous_commit=on",
            ])
            .stdout(std::fs::File::create(dir2.join("postgres.log")).unwrap())
            .stderr(std::fs::File::create(dir2.join("postgres.err")).unwrap());
        as_owner(&mut cmd);
        // SAFETY: prctl in the forked child before exec; async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("start postgres");
        tx.send(child.id()).unwrap();
        let _ = child.wait();
    });
    let pid = rx.recv().unwrap();
    PID.store(pid, Ordering::SeqCst);
    let server = Server {
        port,
        bin,
        dir,
        pid,
    };
    server.wait_ready();
    server
}

impl Server {
    fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(self.dir.join("postgres.err")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Runs one SQL command as the superuser.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A new, empty database; answers its URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
