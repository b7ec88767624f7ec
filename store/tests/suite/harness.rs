//! Where each test's database comes from.
//!
//! SQLite: a file in a temporary directory. PostgreSQL: a database created
//! for the test (`reprise_test_<pid>_<n>_<time>`) and dropped after it, so
//! tests run in parallel, on the server `REPRISE_TEST_DATABASE_URL` names
//! or, if it is unset, on a throwaway cluster started once per test binary
//! from the installed server binaries (`initdb`, `pg_ctl`): trust
//! authentication, a free port on 127.0.0.1, its unix socket in its own
//! temporary directory. A watchdog process stops the cluster and deletes
//! its directory when this test binary exits, however it exits.

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use reprise_store::{PostgresStore, SqliteStore, Store};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One test's database. Several stores may be opened on it (as several
/// processes sharing one database would).
pub struct TestDatabase {
    place: Place,
}

enum Place {
    Sqlite {
        dir: tempfile::TempDir,
    },
    Postgres {
        server: &'static Server,
        name: String,
    },
}

impl TestDatabase {
    /// Opens a store on this database (migrating it the first time).
    pub async fn open(&self) -> Arc<dyn Store> {
        match &self.place {
            Place::Sqlite { dir } => {
                let path = dir.path().join("store.sqlite");
                let store = SqliteStore::open(&path).await.unwrap_or_else(|error| {
                    panic!("opening SQLite at {}: {error}", path.display())
                });
                Arc::new(store)
            }
            Place::Postgres { server, name } => {
                let store = PostgresStore::connect_with(server.admin.clone().database(name))
                    .await
                    .unwrap_or_else(|error| {
                        panic!("opening database {name} on {}: {error}", server.described)
                    });
                Arc::new(store)
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self.place {
            Place::Sqlite { .. } => Backend::Sqlite,
            Place::Postgres { .. } => Backend::Postgres,
        }
    }

    /// A URL naming this database (`postgres://…`), or the SQLite file's
    /// path.
    pub fn url(&self) -> String {
        match &self.place {
            Place::Sqlite { dir } => dir.path().join("store.sqlite").display().to_string(),
            Place::Postgres { server, name } => {
                let (head, query) = match server.url.split_once('?') {
                    Some((head, query)) => (head, format!("?{query}")),
                    None => (server.url.as_str(), String::new()),
                };
                let (scheme, rest) = head.split_once("://").unwrap_or(("postgres", head));
                let authority = rest
                    .split_once('/')
                    .map_or(rest, |(authority, _)| authority);
                format!("{scheme}://{authority}/{name}{query}")
            }
        }
    }

    /// Cuts every connection to this database, as a server restart does
    /// (SQLite has none to cut).
    pub async fn cut_connections(&self) {
        if let Place::Postgres { server, name } = &self.place {
            server
                .execute(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                ))
                .await;
        }
    }

    pub async fn create(backend: Backend) -> TestDatabase {
        let place = match backend {
            Backend::Sqlite => Place::Sqlite {
                dir: tempfile::tempdir().expect("a temporary directory for SQLite"),
            },
            Backend::Postgres => {
                let server = postgres_server();
                let name = fresh_database_name();
                server.execute(&format!("CREATE DATABASE {name}")).await;
                Place::Postgres { server, name }
            }
        };
        TestDatabase { place }
    }

    pub async fn remove(&self) {
        if let Place::Postgres { server, name } = &self.place {
            // FORCE: stores the test leaked may still hold connections.
            server
                .execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// Runs one case on a fresh database of `backend`, then removes the
/// database, also when the case panics (its panic is then re-raised).
pub async fn run<Case, Body>(backend: Backend, case: Case)
where
    Case: FnOnce(Arc<TestDatabase>) -> Body,
    Body: Future<Output = ()>,
{
    let database = Arc::new(TestDatabase::create(backend).await);
    let outcome = CatchUnwind(Box::pin(case(database.clone()))).await;
    database.remove().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A future that turns a panic while polling its inner future into `Err`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(context))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn fresh_database_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!(
        "reprise_test_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A PostgreSQL server tests create their databases on.
pub struct Server {
    /// Connects as a user that may create databases.
    admin: PgConnectOptions,
    /// For messages (never the URL itself: it may hold a password).
    described: String,
    /// The server's URL, for tests of `open_url`.
    url: String,
}

impl Server {
    async fn execute(&self, statement: &str) {
        let mut admin = PgConnection::connect_with(&self.admin)
            .await
            .unwrap_or_else(|error| {
                panic!("cannot reach PostgreSQL ({}): {error}", self.described)
            });
        sqlx::query(statement)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("`{statement}` on {}: {error}", self.described));
        let _ = admin.close().await;
    }
}

/// The server every PostgreSQL test of this binary uses, found or started
/// once; every test fails with the reason if there is none.
fn postgres_server() -> &'static Server {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    match SERVER.get_or_init(find_or_start_server) {
        Ok(server) => server,
        Err(reason) => panic!(
            "the store tests need a PostgreSQL server and have none: {reason}\n\
             Set REPRISE_TEST_DATABASE_URL=postgres://USER@HOST:PORT/DB (a user that may \
             CREATE DATABASE), or install the server binaries (scripts/setup installs \
             Debian's postgresql)."
        ),
    }
}

fn find_or_start_server() -> Result<Server, String> {
    if let Ok(url) = std::env::var("REPRISE_TEST_DATABASE_URL") {
        let admin = PgConnectOptions::from_str(&url).map_err(|error| {
            format!("REPRISE_TEST_DATABASE_URL is not a PostgreSQL URL: {error}")
        })?;
        let described = format!(
            "the server of REPRISE_TEST_DATABASE_URL ({}:{})",
            admin.get_host(),
            admin.get_port()
        );
        return Ok(Server {
            admin,
            described,
            url,
        });
    }
    start_cluster()
}

/// Waits for the server to accept connections (`pg_ctl -w` waits too; this
/// bounds it).
const CLUSTER_START_SECONDS_MAX: u32 = 60;

fn start_cluster() -> Result<Server, String> {
    let binaries = server_binaries()?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "reprise-store-tests-pg-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir(&dir).map_err(|error| format!("creating {}: {error}", dir.display()))?;
    let started = start_cluster_in(&binaries, &dir);
    if started.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    started
}

fn start_cluster_in(binaries: &Path, dir: &Path) -> Result<Server, String> {
    let cluster = Cluster::init(binaries, dir)?;
    cluster.start()?;
    spawn_watchdog(&cluster.run_as, &cluster.pg_ctl, &cluster.data, dir)?;
    let admin = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(cluster.port)
        .username("postgres")
        .database("postgres");
    Ok(Server {
        admin,
        url: cluster.url(),
        described: format!(
            "the throwaway cluster at 127.0.0.1:{} (log: {})",
            cluster.port,
            cluster.log.display()
        ),
    })
}

/// A cluster made by `initdb` in a directory of its own, started and
/// stopped with `pg_ctl`.
struct Cluster {
    run_as: Vec<String>,
    pg_ctl: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    settings: String,
}

impl Cluster {
    fn init(binaries: &Path, dir: &Path) -> Result<Cluster, String> {
        // initdb refuses to run as root: the cluster then belongs to `postgres`.
        let is_root = std::fs::metadata(dir)
            .map_err(|error| format!("reading {}: {error}", dir.display()))?
            .uid()
            == 0;
        let run_as: Vec<String> = if is_root {
            let chowned = Command::new("chown")
                .arg("postgres:")
                .arg(dir)
                .output()
                .map_err(|error| format!("running chown: {error}"))?;
            if !chowned.status.success() {
                return Err(format!(
                    "running as root, the cluster must belong to the `postgres` user, but \
                     `chown postgres: {}` failed: {}",
                    dir.display(),
                    String::from_utf8_lossy(&chowned.stderr).trim()
                ));
            }
            ["runuser", "-u", "postgres", "--"]
                .map(String::from)
                .to_vec()
        } else {
            Vec::new()
        };
        let data = dir.join("data");
        let initdb = binaries.join("initdb");
        run_logged(
            &run_as,
            &initdb,
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let port = free_port()?;
        let log = dir.join("server.log");
        let settings = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='{}' \
             -c max_connections=200",
            dir.display()
        );
        Ok(Cluster {
            run_as,
            pg_ctl: binaries.join("pg_ctl"),
            data,
            log,
            port,
            settings,
        })
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) -> Result<(), String> {
        let wait = CLUSTER_START_SECONDS_MAX.to_string();
        let start = run_logged(
            &self.run_as,
            &self.pg_ctl,
            &[
                "-D".as_ref(),
                self.data.as_os_str(),
                "-l".as_ref(),
                self.log.as_os_str(),
                "-w".as_ref(),
                "-t".as_ref(),
                wait.as_ref(),
                "-o".as_ref(),
                self.settings.as_ref(),
                "start".as_ref(),
            ],
        );
        start.map_err(|error| {
            let server_log = std::fs::read_to_string(&self.log).unwrap_or_default();
            format!("{error}\nserver log:\n{server_log}")
        })
    }

    /// A fast shutdown: sessions are cut, committed data stays.
    fn stop(&self) -> Result<(), String> {
        run_logged(
            &self.run_as,
            &self.pg_ctl,
            &[
                "-D".as_ref(),
                self.data.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        )
    }
}

/// A cluster of a test's own, which the test may stop and start again (a
/// database restart under load). Stopped and deleted when dropped, or by
/// its watchdog when the test process dies.
pub struct PrivateCluster {
    cluster: Cluster,
    dir: PathBuf,
}

impl PrivateCluster {
    pub fn start() -> PrivateCluster {
        let started = (|| {
            let binaries = server_binaries()?;
            let dir = std::env::temp_dir().join(format!("reprise-pg-{}", fresh_database_name()));
            std::fs::create_dir(&dir)
                .map_err(|error| format!("creating {}: {error}", dir.display()))?;
            let cluster = Cluster::init(&binaries, &dir)?;
            cluster.start()?;
            spawn_watchdog(&cluster.run_as, &cluster.pg_ctl, &cluster.data, &dir)?;
            Ok::<_, String>(PrivateCluster { cluster, dir })
        })();
        started.unwrap_or_else(|reason| panic!("starting a private PostgreSQL cluster: {reason}"))
    }

    /// Its `postgres` database, as the `postgres` superuser.
    pub fn url(&self) -> String {
        self.cluster.url()
    }

    pub fn stop(&self) {
        self.cluster
            .stop()
            .unwrap_or_else(|reason| panic!("stopping the private cluster: {reason}"));
    }

    pub fn start_again(&self) {
        self.cluster
            .start()
            .unwrap_or_else(|reason| panic!("starting the private cluster again: {reason}"));
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Stops the cluster (immediate shutdown: nothing in it is kept) and
/// deletes its directory once this process has exited. Its own process
/// group, so a Ctrl-C that stops the tests does not stop it first.
fn spawn_watchdog(run_as: &[String], pg_ctl: &Path, data: &Path, dir: &Path) -> Result<(), String> {
    const SCRIPT: &str = r#"
        tests=$1; data=$2; dir=$3; shift 3
        while kill -0 "$tests" 2>/dev/null; do sleep 1; done
        "$@" -D "$data" -m immediate -w stop >/dev/null 2>&1
        rm -rf "$dir"
    "#;
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("reprise-store-tests-pg-watchdog")
        .arg(std::process::id().to_string())
        .arg(data)
        .arg(dir)
        .args(run_as)
        .arg(pg_ctl)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(|_| ())
        .map_err(|error| format!("starting the cluster's watchdog: {error}"))
}

fn run_logged(run_as: &[String], program: &Path, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let mut command = match run_as.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
        None => Command::new(program),
    };
    command.args(args).stdin(Stdio::null());
    let output = command
        .output()
        .map_err(|error| format!("running {}: {error}", program.display()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{} failed ({}):\n{}{}",
        program.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// The directory holding `initdb` and `pg_ctl`: `pg_config --bindir`, else
/// the newest /usr/lib/postgresql/<version>/bin (Debian's layout).
fn server_binaries() -> Result<PathBuf, String> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_server(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        "REPRISE_TEST_DATABASE_URL is unset and no PostgreSQL server binaries were found \
         (no initdb in `pg_config --bindir` nor in /usr/lib/postgresql/*/bin)"
            .to_string()
    })
}

/// A port nothing listens on now (the kernel's pick; released at once, so
/// the cluster can bind it a moment later).
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|error| format!("finding a free port: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| format!("finding a free port: {error}"))
}
