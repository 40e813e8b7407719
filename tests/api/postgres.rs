//! A real PostgreSQL for the cluster tests, from Debian's packages (`apt-get
//! install postgresql`): `initdb` into a temporary directory, then `postgres` on
//! a unix socket in that directory only (`listen_addresses=''`), so nothing
//! outside this test binary can reach it and no port can collide.
//!
//! One server per test binary ([`shared`]), one database per test
//! ([`TestPostgres::database_with_sql`]). A test that stops and restarts the server itself
//! starts its own ([`TestPostgres::start`]).
//!
//! `initdb` refuses to run as root: as uid 0 every PostgreSQL program runs
//! through `runuser -u postgres --` (the user Debian's package creates) in a
//! directory owned by it. A watchdog shell stops the server when the test
//! process is gone, since a `static` is never dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long the server may take to accept connections.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// The socket's port number (it only names the socket file in our directory).
const PORT: u16 = 5432;

/// A PostgreSQL server in a directory of its own.
pub(crate) struct TestPostgres {
    /// Holds the data directory (`data/`) and the socket.
    pub dir: PathBuf,
    bin: PathBuf,
    watchdog: Option<Child>,
}

/// The server this test binary shares.
pub(crate) fn shared() -> &'static TestPostgres {
    static SERVER: OnceLock<TestPostgres> = OnceLock::new();
    SERVER.get_or_init(TestPostgres::start)
}

/// Whether this process runs as root (`/proc/self` belongs to the effective
/// user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The newest `/usr/lib/postgresql/*/bin` that has `initdb`.
fn binaries() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "the cluster tests need PostgreSQL's server programs in /usr/lib/postgresql/*/bin: \
             apt-get install -y postgresql"
        )
    })
}

/// `program` from `bin`, as the `postgres` user when we are root.
fn command(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

impl TestPostgres {
    /// A fresh server: `initdb`, then `postgres` under a watchdog; returns once
    /// it accepts connections.
    pub(crate) fn start() -> TestPostgres {
        let bin = binaries();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "postgres-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown of {} failed", dir.display());
        }
        let output = command(&bin, "initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("data"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = TestPostgres {
            dir,
            bin,
            watchdog: None,
        };
        server.run();
        server
    }

    /// Starts `postgres` on the data directory, under a shell that stops it
    /// (fast shutdown) and deletes the data when this test process has gone,
    /// and waits until it accepts connections.
    fn run(&mut self) {
        let script = format!(
            "\"$0\" -D \"$1\" -k \"$2\" -p {PORT} -c listen_addresses='' -c fsync=off \
             -c max_connections=200 >\"$2/postgres.log\" 2>&1 & pg=$!; \
             trap 'kill -INT $pg; wait $pg; exit 0' TERM; \
             while [ -d /proc/{watched} ] && kill -0 $pg 2>/dev/null; do sleep 1; done; \
             kill -INT $pg 2>/dev/null; wait $pg; \
             [ -d /proc/{watched} ] || rm -rf \"$1\"",
            watched = std::process::id()
        );
        let mut shell = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", "sh", "-c"]);
            command
        } else {
            let mut command = Command::new("sh");
            command.arg("-c");
            command
        };
        let child = shell
            .arg(script)
            .arg(self.bin.join("postgres"))
            .arg(self.dir.join("data"))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.watchdog = Some(child);
        self.wait_until_ready();
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            let ready = command(&self.bin, "pg_isready")
                .args(["-q", "-h"])
                .arg(&self.dir)
                .args(["-p", &PORT.to_string(), "-U", "postgres"])
                .status()
                .unwrap();
            if ready.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not accept connections within {READY_DEADLINE:?}; see {}",
                self.dir.join("postgres.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `sql` as the superuser in database `database`.
    pub(crate) fn psql(&self, database: &str, sql: &str) -> String {
        self.sql(database).run(sql)
    }

    /// `psql` on `database` of this server, as a handle a test can keep.
    pub(crate) fn sql(&self, database: &str) -> Sql {
        Sql {
            dir: self.dir.clone(),
            bin: self.bin.clone(),
            database: database.to_owned(),
        }
    }

    /// A new, empty database of its own for one test: its URL, and a handle
    /// that runs SQL in it.
    pub(crate) fn database_with_sql(&self) -> (String, Sql) {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        (self.url(&name), self.sql(&name))
    }

    /// The URL of `database` over this server's socket.
    pub(crate) fn url(&self, database: &str) -> String {
        format!(
            "postgresql://postgres@/{database}?host={}&port={PORT}",
            self.dir.display()
        )
    }

    /// Stops the server (fast shutdown) and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        let output = command(&self.bin, "pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-D"])
            .arg(self.dir.join("data"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if let Some(mut watchdog) = self.watchdog.take() {
            watchdog.wait().unwrap();
        }
    }

    /// Starts the stopped server again on the same data.
    pub(crate) fn restart(&mut self) {
        self.run();
    }
}

/// Runs SQL as the superuser in one database of a test server, through `psql`.
#[derive(Clone)]
pub(crate) struct Sql {
    dir: PathBuf,
    bin: PathBuf,
    database: String,
}

impl Sql {
    fn command(&self, sql: &str) -> Command {
        let mut command = command(&self.bin, "psql");
        command
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &PORT.to_string(),
                "-U",
                "postgres",
                "-d",
                &self.database,
                "-c",
                sql,
            ]);
        command
    }

    /// Runs `sql`; its output (unaligned tuples only), or psql's error.
    pub(crate) fn try_run(&self, sql: &str) -> Result<String, String> {
        let output = self.command(sql).output().unwrap();
        if output.status.success() {
            Ok(String::from_utf8(output.stdout).unwrap())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// Runs `sql`, which must succeed; its output.
    pub(crate) fn run(&self, sql: &str) -> String {
        self.try_run(sql)
            .unwrap_or_else(|error| panic!("psql `{sql}` failed: {error}"))
    }

    /// Has PostgreSQL log every statement of this database's sessions that
    /// start from now on, each step (parse, bind, execute) on a line of its
    /// own, in the server's log ([`Sql::server_log`]).
    pub(crate) fn log_every_statement(&self) {
        self.run(&format!(
            "ALTER DATABASE {} SET log_min_duration_statement = 0",
            self.database
        ));
    }

    /// The PostgreSQL server's log so far (every database's).
    pub(crate) fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap()
    }

    /// Starts `sql` in a `psql` of its own and returns at once.
    pub(crate) fn spawn(&self, sql: &str) -> Child {
        self.command(sql)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if self.watchdog.is_some() {
            self.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
