//! The `reprise` binary: exit codes and messages for bad input, resuming a
//! finished run, exporting and replaying histories.

use std::process::{Command, Output};

use crate::support::{cache_dir, guest};

fn reprise(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reprise"))
        .args(args)
        .env("REPRISE_LOG", "warn")
        .env("REPRISE_CACHE_DIR", cache_dir())
        .output()
        .expect("run reprise")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn bad_input_gets_exit_code_2_and_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("db.sqlite");
    let hello = guest("hello");

    let missing = reprise(&["run", "nope.wasm", "--db", path(&db)]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("could not read nope.wasm"),
        "{}",
        text(&missing.stderr)
    );

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").expect("wat")).expect("write");
    let refused = reprise(&["run", path(&core), "--db", path(&db)]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("core WebAssembly module"),
        "{}",
        text(&refused.stderr)
    );

    let forbidden = dir.path().join("forbidden.wasm");
    let component =
        wat::parse_str(r#"(component (import "acme:db/query" (instance)))"#).expect("wat");
    std::fs::write(&forbidden, component).expect("write");
    let refused = reprise(&["run", path(&forbidden), "--db", path(&db)]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("acme:db/query"),
        "{}",
        text(&refused.stderr)
    );

    let bad_json = reprise(&["run", path(&hello), "--input", "{name:", "--db", path(&db)]);
    assert_eq!(bad_json.status.code(), Some(2));
    assert!(
        text(&bad_json.stderr).contains("not valid JSON"),
        "{}",
        text(&bad_json.stderr)
    );
}

#[test]
fn a_finished_run_prints_its_recorded_result_and_histories_replay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("db.sqlite");
    // Not there yet: `run` creates the directory it is given.
    let activity_dir = dir.path().join("not-yet").join("activity");
    let (hello, activities) = (guest("hello"), guest("hello-activities"));
    let run = |id: &str| {
        reprise(&[
            "run",
            path(&hello),
            "--activities",
            path(&activities),
            "--input",
            r#"{"name":"CLI","sleep_ms":1}"#,
            "--id",
            id,
            "--db",
            path(&db),
            "--activity-dir",
            path(&activity_dir),
        ])
    };
    let first = run("cli-1");
    assert!(first.status.success(), "{}", text(&first.stderr));
    let ledger = std::fs::read_to_string(activity_dir.join("ledger.jsonl")).expect("ledger");
    let second = run("cli-1");
    assert!(second.status.success());
    assert_eq!(
        text(&first.stdout),
        text(&second.stdout),
        "the recorded result, not a new run"
    );
    assert_eq!(
        std::fs::read_to_string(activity_dir.join("ledger.jsonl")).expect("ledger"),
        ledger
    );

    let exported = reprise(&["history", "cli-1", "--json", "--db", path(&db)]);
    assert!(exported.status.success());
    let file = dir.path().join("cli-1.json");
    std::fs::write(&file, &exported.stdout).expect("write history");
    let timeline = reprise(&["history", "cli-1", "--db", path(&db)]);
    assert!(text(&timeline.stdout).contains("ActivityScheduled"));
    let status = reprise(&["status", "cli-1", "--db", path(&db)]);
    assert_eq!(status.status.code(), Some(0));
    let summary = text(&status.stdout);
    assert!(summary.contains("status        completed"), "{summary}");
    assert!(summary.contains("attempts      3 (0 failed)"), "{summary}");
    let missing = reprise(&["status", "nobody", "--db", path(&db)]);
    assert_eq!(missing.status.code(), Some(2), "an unknown id");

    let same = reprise(&[
        "replay",
        "--module",
        path(&hello),
        "--history",
        path(&file),
        "--db",
        path(&db),
    ]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stdout));
    assert!(text(&same.stdout).contains("reproduces the whole history"));
    let changed = guest("hello-v2");
    let other = reprise(&[
        "replay",
        "--module",
        path(&changed),
        "--history",
        "cli-1",
        "--db",
        path(&db),
    ]);
    assert_eq!(other.status.code(), Some(3));
    assert!(
        text(&other.stdout).contains("INCOMPATIBLE"),
        "{}",
        text(&other.stdout)
    );
    assert!(
        text(&other.stdout).contains("nondeterminism at seq 5"),
        "{}",
        text(&other.stdout)
    );
}

#[test]
fn signal_cancel_and_terminate_name_unknown_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("db.sqlite");
    for args in [
        vec!["signal", "nobody", "approve", "--payload", "1"],
        vec!["cancel", "nobody"],
        vec!["terminate", "nobody"],
    ] {
        let mut args = args.clone();
        args.extend(["--db", path(&db)]);
        let output = reprise(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            text(&output.stderr).contains("no execution with workflow id `nobody`"),
            "{}",
            text(&output.stderr)
        );
    }
    let bad = reprise(&[
        "signal",
        "nobody",
        "approve",
        "--payload",
        "{oops",
        "--db",
        path(&db),
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("not valid JSON"));
}
