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
