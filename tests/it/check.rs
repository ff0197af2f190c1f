//! `satflow check` against the corpus of broken files in `tests/corpus/`.
//!
//! Each corpus file is one broken workflow (`workflows/`) or configuration (`config/`); its
//! header says what `check` must report:
//!   `# expect: LINE:COL word | other words` — a problem at exactly that position whose message
//!     contains every `|`-separated part (one line per expected problem);
//!   `# never: TEXT` — TEXT must not appear anywhere in the output (secrets);
//!   `# env: NAME=VALUE` — set for the run.
//! Every reported problem must be expected: stray problems fail the case too.

use std::path::Path;

use super::helpers::{TestApp, corpus_dir};

struct Case {
    expects: Vec<(usize, usize, Vec<String>)>,
    never: Vec<String>,
    env: Vec<(String, String)>,
}

fn read_case(path: &Path) -> (String, Case) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut case = Case {
        expects: Vec::new(),
        never: Vec::new(),
        env: Vec::new(),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# expect: ") {
            let (pos, words) = rest.split_once(' ').unwrap_or((rest, ""));
            let (l, c) = pos.split_once(':').expect("LINE:COL");
            let words = words
                .split('|')
                .map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty())
                .collect();
            case.expects
                .push((l.parse().expect("line"), c.parse().expect("col"), words));
        } else if let Some(rest) = line.strip_prefix("# never: ") {
            case.never.push(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("# env: ") {
            let (k, v) = rest.split_once('=').expect("NAME=VALUE");
            case.env.push((k.trim().into(), v.trim().into()));
        }
    }
    assert!(
        !case.expects.is_empty(),
        "{} has no `# expect:` line",
        path.display()
    );
    (text, case)
}

/// Runs every case of one corpus folder; `place` puts the case into the app and returns the
/// path (relative to the app) that problems will be reported against.
fn run_corpus(folder: &str, place: impl Fn(&TestApp, &str, &str) -> String) -> usize {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir().join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for file in &files {
        let (text, case) = read_case(file);
        let mut app = TestApp::with_base();
        for (k, v) in &case.env {
            app.set_env(k, v);
        }
        let name = file.file_name().unwrap().to_str().unwrap();
        let reported_path = place(&app, name, &text);
        let run = app.satflow(&["check", "-c", "satflow.yaml"]);
        let output = format!("{}{}", run.stdout, run.stderr);
        let mut problems: Vec<&str> = run.problems();
        let mut why = Vec::new();
        if run.code != 1 {
            why.push(format!("exit code {} instead of 1", run.code));
        }
        for (line, col, words) in &case.expects {
            let prefix = format!("{reported_path}:{line}:{col}: ");
            match problems.iter().position(|p| {
                p.starts_with(&prefix) && words.iter().all(|w| p.contains(w.as_str()))
            }) {
                Some(i) => {
                    problems.remove(i);
                }
                None => why.push(format!("no problem at {line}:{col} containing {words:?}")),
            }
        }
        for stray in &problems {
            why.push(format!("unexpected problem: {stray}"));
        }
        for secret in &case.never {
            if output.contains(secret.as_str()) {
                why.push(format!("the output shows {secret:?}"));
            }
        }
        if !why.is_empty() {
            failures.push(format!(
                "{folder}/{name}:\n  {}\n  output:\n{output}",
                why.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    files.len()
}

#[test]
fn every_broken_workflow_is_reported_at_its_position() {
    let cases = run_corpus("workflows", |app, name, text| {
        app.write(&format!("workflows/{name}"), text);
        format!("workflows/{name}")
    });
    assert!(cases >= 20, "only {cases} workflow cases");
}

#[test]
fn every_broken_config_is_reported_at_its_position() {
    let cases = run_corpus("config", |app, _, text| {
        // Config cases stand alone: no workflows that would refer to names they lack.
        std::fs::remove_file(app.path().join("workflows/aaa-good.yaml")).unwrap();
        app.write("satflow.yaml", text);
        "satflow.yaml".into()
    });
    assert!(cases >= 15, "only {cases} config cases");
}

#[test]
fn the_base_setup_and_the_demo_pass() {
    let app = TestApp::with_base();
    let run = app.satflow(&["check", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with("ok: satflow.yaml and 1 workflow"),
        "{run:?}"
    );

    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo/satflow.yaml");
    let run = app.satflow(&["check", "-c", demo.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("5 workflows"), "{run:?}");
}

#[test]
fn problems_in_several_files_are_all_reported_in_one_run() {
    let app = TestApp::with_base();
    app.write("workflows/one.yaml", "steps:\n  - uses: pocket.ordr\n");
    app.write(
        "workflows/two.yaml",
        "on: { event: exchange.settled }\nsteps:\n  - uses: email\n    with: { template: nope }\n",
    );
    let run = app.satflow(&["check", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 1);
    let problems = run.problems();
    assert_eq!(problems.len(), 2, "{run:?}");
    assert!(
        problems[0].starts_with("workflows/one.yaml:2:11: "),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("workflows/two.yaml:4:23: "),
        "{problems:?}"
    );
    assert!(run.stdout.contains("2 problems in 2 files"), "{run:?}");
}

#[test]
fn a_missing_config_file_says_how_to_get_one() {
    let app = TestApp::empty();
    let run = app.satflow(&["check"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("satflow.yaml:1:1: there is no configuration file here"),
        "{run:?}"
    );
}

/// Runs `satflow ARGS` in the app's folder, failing (instead of hanging) after 30 s: the
/// special files below used to block `check` for ever.
fn satflow_within_30s(app: &TestApp, args: &[&str]) -> super::helpers::Run {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_satflow"))
        .args(args)
        .current_dir(app.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run satflow");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("satflow {args:?} hung for 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    super::helpers::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
}

#[cfg(unix)]
#[test]
fn a_fifo_as_the_config_or_a_secret_file_is_refused_not_waited_on() {
    let app = TestApp::empty();
    mkfifo(&app.path().join("satflow.yaml"));
    let run = satflow_within_30s(&app, &["check", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.problems(),
        ["satflow.yaml:1:1: cannot read this file: it is a FIFO (named pipe), not a regular file"],
        "{run:?}"
    );

    let app = TestApp::with_base();
    std::fs::remove_file(app.path().join("workflows/aaa-good.yaml")).unwrap();
    app.write(
        "satflow.yaml",
        "database: sqlite://corpus.db\npocket:\n  client_id: corpus-client\n  webhook_secret: ${file:hook.secret}\nalerts: []\n",
    );
    mkfifo(&app.path().join("hook.secret"));
    let run = satflow_within_30s(&app, &["check", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 1, "{run:?}");
    let problems = run.problems();
    assert_eq!(problems.len(), 1, "{run:?}");
    assert!(
        problems[0].starts_with(
            "satflow.yaml:4:19: pocket.webhook_secret: cannot read `${file:hook.secret}`"
        ) && problems[0].contains("it is a FIFO (named pipe)"),
        "{run:?}"
    );
}

#[cfg(unix)]
#[test]
fn workflow_entries_that_are_not_regular_files_are_each_refused() {
    let app = TestApp::with_base();
    let wf = app.path().join("workflows");
    std::fs::create_dir(wf.join("folder.yaml")).unwrap();
    std::os::unix::fs::symlink(wf.join("gone.yaml"), wf.join("dangling.yaml")).unwrap();
    std::os::unix::fs::symlink(wf.join("loop-b.yaml"), wf.join("loop-a.yaml")).unwrap();
    std::os::unix::fs::symlink(wf.join("loop-a.yaml"), wf.join("loop-b.yaml")).unwrap();
    mkfifo(&wf.join("pipe.yml"));
    // Not named like a workflow: left alone.
    std::fs::create_dir(wf.join("notes")).unwrap();
    let run = satflow_within_30s(&app, &["check", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 1, "{run:?}");
    let problems = run.problems();
    assert_eq!(problems.len(), 5, "{run:?}");
    for (name, what) in [
        ("dangling.yaml", "a symlink to"),
        ("folder.yaml", "is a directory, not a file"),
        ("loop-a.yaml", "a symlink to"),
        ("loop-b.yaml", "a symlink to"),
        ("pipe.yml", "is a FIFO (named pipe)"),
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("satflow.yaml:4:12: workflows: ")
                    && p.contains(&format!("workflows/{name} "))
                    && p.contains(what)),
            "no problem for {name} ({what}): {run:?}"
        );
    }

    // The same entries listed by name, each at its own line.
    app.write(
        "satflow.yaml",
        &std::fs::read_to_string(corpus_dir().join("base/satflow.yaml"))
            .unwrap()
            .replace(
                "workflows: workflows\n",
                "workflows:\n  - workflows/aaa-good.yaml\n  - workflows/folder.yaml\n  - workflows/dangling.yaml\n",
            ),
    );
    let run = satflow_within_30s(&app, &["check", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 1, "{run:?}");
    let problems = run.problems();
    assert_eq!(problems.len(), 2, "{run:?}");
    assert!(
        problems[0]
            .starts_with("satflow.yaml:6:5: workflows: workflows/folder.yaml is a directory"),
        "{run:?}"
    );
    assert!(
        problems[1]
            .starts_with("satflow.yaml:7:5: workflows: workflows/dangling.yaml is a symlink to"),
        "{run:?}"
    );
}

#[test]
fn files_that_start_with_a_byte_order_mark_are_read_normally() {
    let app = TestApp::with_base();
    for file in ["satflow.yaml", "workflows/aaa-good.yaml"] {
        let text = std::fs::read_to_string(app.path().join(file)).unwrap();
        app.write(file, &format!("\u{feff}{text}"));
    }
    let run = satflow_within_30s(&app, &["check", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.starts_with("ok: satflow.yaml and 1 workflow"),
        "{run:?}"
    );
}
