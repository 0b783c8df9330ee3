//! A PostgreSQL 15 server for the PostgreSQL rows: initialised into a temp directory,
//! started on a free loopback port (as the `postgres` user when run as root: `initdb`
//! refuses root), stopped with `pg_ctl stop -m fast` at the end.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, ensure};

pub struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
}

/// Debian keeps the server's programs off the PATH.
fn bin_dir() -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (`make bench-deps` installs postgresql-15)")?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .context("no /usr/lib/postgresql/*/bin/initdb: install postgresql-15")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program args…`, through `runuser -u postgres --` when we are root.
fn command(program: PathBuf) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) -> Result<()> {
    let out = c.output().with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl Postgres {
    pub fn start() -> Result<Postgres> {
        let bin = bin_dir()?;
        let dir = std::env::temp_dir().join(format!("dohost-bench-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.arg("postgres:postgres").arg(&dir);
                    c
                },
                "chown",
            )?;
        }
        let data = dir.join("data");
        let mut init = command(bin.join("initdb"));
        init.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run(init, "initdb")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        // Defaults but for the address: fsync and synchronous_commit stay on, as a user's
        // server would have them.
        let mut start = command(bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("postgres.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
                dir.display()
            ))
            .args(["-w", "start"]);
        run(start, "pg_ctl start")?;
        Ok(Postgres { bin, dir, port })
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A new, empty database `name` on this server; its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        let mut create = command(self.bin.join("createdb"));
        create.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            name,
        ]);
        run(create, "createdb")?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    pub fn stop(self) -> Result<()> {
        let mut stop = command(self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]);
        run(stop, "pg_ctl stop")?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}
