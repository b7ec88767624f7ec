//! Every shell command in README.md runs as written, in order, in a
//! scratch directory, against a real server: a README command that cannot
//! work as printed fails here.
//!
//! Conventions the README follows (and this test reads):
//! - a line `#   text` under a command is what the command prints, `…`
//!   standing for what varies; `(exit code N)` there is the code it ends
//!   with (0 otherwise);
//! - placeholders: `rpk_…` is the key the tenant-creating `curl` printed,
//!   `PORT` the port of the fake provider, and the server's
//!   `127.0.0.1:7878` becomes a free port.
//!
//! A few commands are not run, each for a reason listed in
//! [`NOT_RUN`]; the test fails if the README gains or loses one of them,
//! so nothing is skipped silently.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reprise_providers::PaymentProvider;

use crate::support::{Harness, cache_dir, completed_output, guest, readme_snippet, repo_root};

/// Commands the test does not run, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "./scripts/demo",
        "builds and runs everything this suite covers",
    ),
    ("./scripts/test", "is this suite"),
    ("./scripts/build-guests", "ran before the suite"),
    ("reprise bench", "minutes of load; BENCHMARKS.md runs it"),
    (
        "cargo run -p reprise-providers &",
        "the test starts the same provider in-process",
    ),
    (
        "createdb reprise",
        "needs a PostgreSQL server; `postgres::three_nodes_*` tests run three nodes on one",
    ),
    (
        "reprise serve --database postgres://localhost/reprise --data ./node-1 --listen 127.0.0.1:7881 --admin-key-file admin.key &",
        "as createdb",
    ),
    (
        "reprise serve --database postgres://localhost/reprise --data ./node-2 --listen 127.0.0.1:7882 --admin-key-file admin.key &",
        "as createdb",
    ),
    (
        "reprise serve --database postgres://localhost/reprise --data ./node-3 --listen 127.0.0.1:7883 --admin-key-file admin.key &",
        "as createdb",
    ),
];

/// One command of a shell block, with what the README says it prints.
#[derive(Debug)]
struct ReadmeCommand {
    /// Continuation lines joined.
    text: String,
    /// Where it starts in README.md (1-based), for failure messages.
    line: usize,
    /// The `#   ` lines under it, joined.
    prints: String,
}

impl ReadmeCommand {
    fn exit_code(&self) -> i32 {
        self.prints
            .split("(exit code ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }

    /// The printed text without the exit-code note, as fragments that must
    /// appear in order.
    fn fragments(&self) -> Vec<String> {
        let text = match self.prints.split_once("(exit code ") {
            Some((before, _)) => before,
            None => &self.prints,
        };
        text.split('…')
            .map(normalize)
            .filter(|fragment| !fragment.is_empty())
            .collect()
    }
}

/// Whitespace runs as one space: a table's padding is not the point.
fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The commands of every ```sh block, in order.
fn shell_commands(readme: &str) -> Vec<ReadmeCommand> {
    let mut commands: Vec<ReadmeCommand> = Vec::new();
    let mut in_shell = false;
    let mut pending: Option<ReadmeCommand> = None;
    for (index, line) in readme.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_shell = !in_shell && trimmed == "```sh";
            continue;
        }
        if !in_shell || trimmed.is_empty() {
            continue;
        }
        if let Some(command) = pending.as_mut() {
            command.text.push(' ');
            command.text.push_str(trimmed.trim_end_matches('\\').trim());
            if !trimmed.ends_with('\\') {
                commands.extend(pending.take());
            }
            continue;
        }
        if let Some(printed) = line.strip_prefix("#   ") {
            let last = commands
                .last_mut()
                .expect("an output line follows a command");
            last.prints.push(' ');
            last.prints.push_str(printed);
            continue;
        }
        if trimmed.starts_with('#') {
            continue;
        }
        let command = ReadmeCommand {
            text: trimmed.trim_end_matches('\\').trim().to_string(),
            line: index + 1,
            prints: String::new(),
        };
        if trimmed.ends_with('\\') {
            pending = Some(command);
        } else {
            commands.push(command);
        }
    }
    commands
}

/// The scratch directory a reader would be in: the checkout's guests under
/// `build/`, `reprise` on the PATH.
struct Reader {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    server: Option<Child>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(server) = self.server.as_mut() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

impl Reader {
    fn new() -> Reader {
        let dir = tempfile::tempdir().expect("scratch dir");
        std::os::unix::fs::symlink(repo_root().join("build"), dir.path().join("build"))
            .expect("link build/");
        let bin = dir.path().join(".bin");
        std::fs::create_dir(&bin).expect("bin dir");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_reprise"), bin.join("reprise"))
            .expect("link reprise");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let env = BTreeMap::from([
            ("PATH".to_string(), path),
            ("REPRISE_LOG".to_string(), "warn".to_string()),
            (
                "REPRISE_CACHE_DIR".to_string(),
                cache_dir().display().to_string(),
            ),
        ]);
        Reader {
            dir,
            env,
            server: None,
        }
    }

    fn shell(&self, script: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .args(["-c", script])
            .current_dir(self.dir.path())
            .env_clear()
            .envs(&self.env)
            .env("HOME", self.dir.path());
        command
    }

    /// Runs an `export` line and keeps what it set, as a shell session
    /// would.
    fn export(&mut self, line: &str) {
        let output = self
            .shell(&format!("{line}\nenv -0"))
            .output()
            .expect("run export");
        assert!(output.status.success(), "{line}");
        for pair in output.stdout.split(|byte| *byte == 0) {
            let pair = String::from_utf8_lossy(pair);
            if let Some((name, value)) = pair.split_once('=')
                && name.starts_with("REPRISE_")
            {
                self.env.insert(name.to_string(), value.to_string());
            }
        }
    }

    /// Starts `reprise serve …` and waits until it answers.
    fn serve(&mut self, line: &str, address: &str) {
        let mut server = self
            .shell(&format!("exec {line}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("start reprise serve");
        let started = Instant::now();
        while std::net::TcpStream::connect(address).is_err() {
            if let Ok(Some(status)) = server.try_wait() {
                panic!("`{line}` exited at once: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "`{line}` never listened on {address}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.server = Some(server);
    }
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_readme_command_works_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let commands = shell_commands(&readme);
    assert!(commands.len() > 20, "the README's commands: {commands:#?}");
    let provider = PaymentProvider::start(0).await.expect("provider");
    let address = free_address();
    let mut reader = Reader::new();
    let mut tenant_key: Option<String> = None;
    let mut not_run = Vec::new();
    let mut ran = 0;

    for command in &commands {
        let text = command
            .text
            .replace("127.0.0.1:7878", &address)
            .replace("http://127.0.0.1:PORT", &provider.url());
        let text = match &tenant_key {
            Some(key) => text.replace("rpk_…", key),
            None => text,
        };
        let at = format!("README.md:{}: `{}`", command.line, command.text);
        if let Some((skipped, _)) = NOT_RUN
            .iter()
            .find(|(skipped, _)| text.split(" #").next().unwrap_or("").trim() == *skipped)
        {
            not_run.push(*skipped);
            continue;
        }
        assert!(!text.contains('…'), "{at}: a placeholder with no value yet");
        if text.starts_with("export ") {
            reader.export(&text);
            continue;
        }
        if text.starts_with("reprise serve ") {
            reader.serve(&text, &address);
            continue;
        }
        ran += 1;
        let shell = reader.shell(&text);
        let output = tokio::task::spawn_blocking(move || {
            let mut shell = shell;
            shell.output()
        })
        .await
        .expect("join")
        .expect("run the command");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(command.exit_code()),
            "{at}\nstdout: {stdout}\nstderr: {stderr}"
        );
        let printed = normalize(&stdout);
        let mut from = 0;
        for fragment in command.fragments() {
            match printed[from..].find(&fragment) {
                Some(offset) => from += offset + fragment.len(),
                None => panic!(
                    "{at}: the README says it prints `{fragment}` (after what came before), but it printed:\n{stdout}"
                ),
            }
        }
        if text.starts_with("curl ") && text.contains("/v1/admin/tenants") {
            let answer: serde_json::Value =
                serde_json::from_str(&stdout).expect("the tenant as JSON");
            tenant_key = answer["api_key"].as_str().map(str::to_string);
            assert!(tenant_key.is_some(), "{at}: no api_key in {stdout}");
        }
    }
    assert!(ran >= 20, "{ran} commands ran");
    let expected: Vec<&str> = NOT_RUN.iter().map(|(command, _)| *command).collect();
    not_run.sort_unstable();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort_unstable();
    assert_eq!(
        not_run, expected_sorted,
        "the commands not run are exactly the listed ones"
    );
    assert!(
        Path::new(&reader.dir.path().join("order-42.json")).is_file(),
        "`history --json > order-42.json` wrote the file"
    );
}

#[test]
fn the_reader_of_the_readme_reads_blocks_outputs_and_exit_codes() {
    let readme = "text\n```sh\n# a comment\nreprise run a \\\n    --id x   # why\n#   x (exit code 3)\necho hi\n```\n```rust\nnot shell\n```\n";
    let commands = shell_commands(readme);
    assert_eq!(commands.len(), 2, "{commands:#?}");
    assert_eq!(commands[0].text, "reprise run a --id x   # why");
    assert_eq!(commands[0].line, 4);
    assert_eq!(commands[0].exit_code(), 3);
    assert_eq!(commands[0].fragments(), vec!["x".to_string()]);
    assert_eq!(commands[1].text, "echo hi");
    assert_eq!(commands[1].exit_code(), 0);
}

// --- "Write your first workflow", in every language -------------------

/// Runs the README's first workflow, built into `component` from one
/// language's snippet: it greets through the `greet` activity with the
/// retry and timeout the snippet gives, sleeps on a durable timer, and its
/// code reproduces its own history.
pub async fn the_first_workflow_runs(component: &Path, id: &str) {
    use reprise::journal::Event;

    let harness = Harness::default().await;
    let bytes = std::fs::read(component).expect("the built component");
    let module = harness
        .runtime
        .deploy_workflow(&bytes)
        .await
        .expect("deploy");
    harness.runtime.register_type("greeter", &module.digest);
    let (record, created) = harness
        .runtime
        .start(
            "greeter",
            &module.digest,
            Some(id.to_string()),
            r#"{"name":"Ada"}"#,
        )
        .await
        .expect("start");
    assert!(created);
    let outcome = tokio::time::timeout(
        Duration::from_secs(120),
        harness.runtime.drive(record.clone()),
    )
    .await
    .expect("the workflow finished within 120 s")
    .expect("drive");
    assert_eq!(
        completed_output(&outcome),
        serde_json::json!({ "greeting": "Hello, Ada!" })
    );
    let events = harness.events(&record).await;
    let options = events
        .iter()
        .find_map(|event| match event {
            Event::ActivityScheduled { name, options, .. } if name == "greet" => {
                Some(options.clone())
            }
            _ => None,
        })
        .expect("greet scheduled");
    assert_eq!(options.retry.maximum_attempts, 3);
    assert_eq!(options.retry.initial_interval_ms, 200);
    assert_eq!(options.start_to_close_timeout_ms, Some(10_000));
    assert!(
        events
            .iter()
            .any(|event| matches!(event, Event::TimerFired { .. })),
        "a durable timer fired: {events:?}"
    );
    let loaded = harness.engine.load_file(component).expect("load");
    let verdict = harness
        .runtime
        .verify_replay(&loaded, record.clone(), harness.history(&record).await)
        .await
        .expect("the code reproduces its history");
    assert_eq!(verdict, reprise::ReplayVerdict::Reproduced);
}

/// The Rust snippet is `examples/first-workflow` byte for byte (that crate
/// is built by `scripts/build-guests` like every Rust example), and runs.
#[tokio::test]
async fn the_readme_rust_workflow_is_the_example_and_runs() {
    let example = repo_root().join("examples/first-workflow/src/lib.rs");
    let source = std::fs::read_to_string(&example).expect("examples/first-workflow/src/lib.rs");
    assert!(
        readme_snippet("rust-first-workflow") == source,
        "README.md's first Rust workflow differs from {}: make them the same",
        example.display()
    );
    the_first_workflow_runs(&guest("first-workflow"), "readme-rust").await;
}
