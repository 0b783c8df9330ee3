//! The real `dohost` binary as a child process: started on an OS-chosen port, its address
//! read from its log, the rest of its log kept for the test to read.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct HostProcess {
    pub child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
    /// The thread reading the log, which ends when the process does.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl HostProcess {
    /// Starts `dohost run` on `guests` with the store behind `data` (see `storage_args`).
    pub fn spawn(data: &Path, guests: &[&str], flags: &[&str]) -> HostProcess {
        Self::spawn_on("127.0.0.1:0", data, guests, flags)
    }

    /// Like `spawn`, listening on `listen`.
    pub fn spawn_on(listen: &str, data: &Path, guests: &[&str], flags: &[&str]) -> HostProcess {
        let (mut host, ready) = Self::start(listen, data, guests, flags);
        host.addr = ready
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the host did not log its address: {}", host.log()));
        host
    }

    /// Starts `dohost run` with what its start-up must refuse: its whole log, once it has
    /// exited with a failure (within a minute; the test fails if it serves instead).
    pub async fn refused(data: &Path, guests: &[&str], flags: &[&str]) -> String {
        let (mut host, _ready) = Self::start("127.0.0.1:0", data, guests, flags);
        let status = host.exited().await;
        if let Some(reader) = host.reader.take() {
            reader.join().unwrap();
        }
        assert!(!status.success(), "the host started: {}", host.log());
        host.log()
    }

    /// Spawns the process and its log reader; the receiver gets the address once logged.
    fn start(
        listen: &str,
        data: &Path,
        guests: &[&str],
        flags: &[&str],
    ) -> (HostProcess, std::sync::mpsc::Receiver<String>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dohost"))
            .args(["run", "--listen", listen, "--data"])
            .arg(data)
            .args(super::storage_args(data))
            // Tests run hosts side by side: no admin listener on the one default port,
            // unless the test asks for one.
            .args(if flags.contains(&"--admin") {
                &[][..]
            } else {
                &["--admin", "off"][..]
            })
            .args(flags)
            .args(guests.iter().map(|g| super::guest(g)))
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        // Read the log on a thread: the address line, then keep draining so the host
        // never blocks on a full pipe.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                // Kept before the address is handed over, so the log the test reads next
                // holds the start-up line itself.
                let addr = line.find("address=").map(|i| {
                    let rest = &line[i + "address=".len()..];
                    rest.split_whitespace().next().unwrap_or("").to_string()
                });
                kept.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let host = HostProcess {
            child,
            addr: String::new(),
            log,
            reader: Some(reader),
        };
        (host, rx)
    }

    /// Everything the host logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits (at most a minute) for the process to exit on its own.
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        for _ in 0..600 {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.child.kill().unwrap();
        panic!(
            "the host did not exit within a minute; log:\n{}",
            self.log()
        );
    }

    pub fn kill(self) {
        // Dropping kills it.
    }
}

/// A test that fails must not leave its host running: it would hold the test's output
/// pipe open (and CI waiting) after the test binary ended.
impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `dohost ARGS` expecting it to fail; answers what it printed on stderr.
pub fn dohost_refused<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "dohost succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `dohost ARGS` to its end; its stdout, once it succeeded (the test fails with its
/// stderr otherwise).
pub fn run_dohost<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(env!("CARGO_BIN_EXE_dohost"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
