//! A real PostgreSQL server for the tests of the PostgreSQL ledger: Debian's `postgresql`
//! package (`.ci/run` installs it when missing), one server per test process in a directory
//! of its own, on 127.0.0.1 and a free port, and one database per test (`new_database`). Tests
//! run it with `fsync=off`; `FARGATE_CONNECT_PG_FSYNC=on` (benchmarks) keeps PostgreSQL's
//! default durability.
//!
//! The server runs under a small shell that waits on its stdin: when the test process exits,
//! however it exits, the pipe closes and the shell stops the server (a fast shutdown) and
//! removes its directory. PostgreSQL refuses to run as root; as root, it runs as the
//! `postgres` user the package created.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

pub struct Postgres {
    pub port: u16,
    _child: Mutex<Child>,
}

/// The shared server, started on first use.
pub fn postgres() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(start)
}

/// The directory of `initdb` and `postgres`: `$FARGATE_CONNECT_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), else the `PATH`.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("FARGATE_CONNECT_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn tool(bin: &Option<PathBuf>, name: &str) -> PathBuf {
    bin.as_ref().map(|b| b.join(name)).unwrap_or_else(|| PathBuf::from(name))
}

/// `true` when this process runs as root (PostgreSQL must then run as `postgres`).
fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// `command`, as the `postgres` user when we are root.
fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

fn start() -> Postgres {
    let bin = bin_dir();
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("fargate-connect-pg-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("the server's directory");
    if root {
        let status = Command::new("chown").args(["postgres:postgres"]).arg(&dir).status().expect("chown");
        assert!(status.success(), "chown postgres {}", dir.display());
    }
    let data = dir.join("data");
    let out = as_server_user(&tool(&bin, "initdb"), root)
        .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--no-sync", "-D"])
        .arg(&data)
        .output()
        .unwrap_or_else(|e| {
            panic!("PostgreSQL's initdb is needed for the PostgreSQL ledger tests (Debian: apt-get install postgresql): {e}")
        });
    assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    // Tests need no durability across a power cut; a benchmark does
    // (`FARGATE_CONNECT_PG_FSYNC=on`, as bench_ack sets it).
    let fsync = if std::env::var("FARGATE_CONNECT_PG_FSYNC").is_ok_and(|v| v == "on") { "on" } else { "off" };
    // The shell starts the server, then waits for its stdin to close (this process ending).
    let script = r#"
        "$0" -D "$1" -p "$2" -k "$3" -c listen_addresses=127.0.0.1 -c fsync="$4" -c max_connections=200 &
        pid=$!
        cat >/dev/null
        kill -INT "$pid"
        wait "$pid"
        rm -rf "$3"
    "#;
    let mut command = as_server_user(Path::new("sh"), root);
    let mut child = command
        .arg("-c")
        .arg(script)
        .arg(tool(&bin, "postgres"))
        .arg(&data)
        .arg(port.to_string())
        .arg(&dir)
        .arg(fsync)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start PostgreSQL");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let verbose = std::env::var_os("FARGATE_CONNECT_PG_LOG").is_some();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if verbose {
                eprintln!("postgres: {line}");
            }
            if line.contains("ready to accept connections") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("PostgreSQL did not start within 60 s");
    Postgres { port, _child: Mutex::new(child) }
}

impl Postgres {
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

/// A new, empty database on the shared server, for one test (or for the replicas of one test).
pub async fn new_database() -> String {
    use sqlx::Connection;
    let pg = postgres();
    let name = format!("fc_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&pg.url("postgres")).await.expect("connect to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create the test's database");
    let _ = admin.close().await;
    pg.url(&name)
}
