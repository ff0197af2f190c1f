//! The command line never destroys and never pollutes: `demo` keeps out of folders it did not
//! write, problems go to stderr (stdout holds results alone), a closed stdout ends a command
//! quietly, and a URL that carries a token is never shown whole.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::helpers::{TestApp, terminate};

#[test]
fn with_a_missing_config_every_command_prints_the_problem_on_stderr_only() {
    let app = TestApp::empty();
    for args in [
        &["report", "--csv"][..],
        &["report", "--json"],
        &["status", "--json"],
        &["status"],
        &["runs", "--json"],
        &["outbox", "--json"],
        &["exchanges", "--json"],
        &["addresses", "cold", "--json"],
        &["withdrawals"],
        &["plan"],
        &["plan", "--json"],
        &["trigger", "weekly-dca"],
        &["order", "setup", "weekly-dca", "--message-only"],
        &["run"],
        &["sandbox"],
    ] {
        let run = app.satflow(args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert_eq!(run.stdout, "", "{args:?} wrote into stdout: {run:?}");
        assert!(
            run.stderr
                .contains("satflow.yaml:1:1: there is no configuration file here"),
            "{args:?}: {run:?}"
        );
        // The same hint everywhere: the three ways to give a configuration.
        for way in ["-c PATH", "$SATFLOW_CONFIG", "satflow init"] {
            assert!(run.stderr.contains(way), "{args:?} lacks {way}: {run:?}");
        }
    }
    // `check` is asked for the problems: they are its result.
    let run = app.satflow(&["check"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("there is no configuration file here"),
        "{run:?}"
    );
}

/// Starts `satflow ARGS`, reads one line of its stdout and closes the pipe, as `| head -1` does.
fn first_line_then_close(
    app: &TestApp,
    args: &[&str],
) -> (String, std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_satflow"))
        .args(args)
        .current_dir(app.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "satflow {args:?} did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (line, status, stderr)
}

#[test]
fn a_reader_that_stops_early_ends_the_command_quietly() {
    let app = TestApp::empty();
    app.write(
        "satflow.yaml",
        "alerts: []\nwallets:\n  cold: { xpub: zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs }\n",
    );
    // Four schedules of 1000 fires: far more than a pipe holds, so the writer meets the close.
    for i in 0..4 {
        app.write(
            &format!("workflows/w{i}.yaml"),
            "on:\n  schedule: { cron: \"*/5 * * * *\" }\nsteps:\n  - uses: price.quote\n    with: { currency: chf }\n",
        );
    }
    for args in [
        &["plan", "--count", "1000"][..],
        &["plan", "--count", "1000", "--json"],
    ] {
        let (line, status, stderr) = first_line_then_close(&app, args);
        assert!(!line.is_empty(), "{args:?}: no first line; {stderr}");
        assert_ne!(status.code(), Some(101), "{args:?}: {stderr}");
        assert!(
            matches!(status.code(), Some(0) | Some(141)),
            "{args:?}: {status:?} {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
    }
    // Commands that print with println! end the same way (3000 addresses: over 200 KB).
    let (line, status, stderr) =
        first_line_then_close(&app, &["addresses", "cold", "--count", "3000"]);
    assert!(line.starts_with("wallet cold"), "{line} {stderr}");
    assert_eq!(status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Every file under `dir` with its contents (symlinks as their target).
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                out.insert(format!("{name}/"), String::new());
                stack.push(path);
            } else if kind.is_symlink() {
                out.insert(
                    name,
                    format!("-> {}", std::fs::read_link(&path).unwrap().display()),
                );
            } else {
                out.insert(name, std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    out
}

#[test]
fn demo_never_touches_a_folder_it_did_not_write_and_never_deletes_your_files() {
    let app = TestApp::empty();
    // A user's own setup, as in the report: config, workflows, hub key.
    app.write("mine/satflow.yaml", "database: sqlite://mine.db\n");
    app.write("mine/workflows/my-dca.yaml", "name: my-dca\n");
    app.write("mine/hub-merchant.key", "my real merchant key\n");
    app.write("mine/notes.txt", "mine\n");
    let before = snapshot(&app.path().join("mine"));
    let run = app.satflow(&["demo", "--dir", "mine"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("was not written by `satflow demo`"),
        "{run:?}"
    );
    assert_eq!(
        snapshot(&app.path().join("mine")),
        before,
        "the folder changed"
    );
    // --force adds next to the user's files, never over them.
    let run = app.satflow(&["demo", "--dir", "mine", "--force"]);
    assert_eq!(run.code, 1, "{run:?}");
    for name in ["satflow.yaml", "hub-merchant.key", "workflows/"] {
        assert!(run.stderr.contains(name), "{name} not named: {run:?}");
    }
    assert_eq!(
        snapshot(&app.path().join("mine")),
        before,
        "the folder changed"
    );
    // A file is not a folder.
    app.write("a-file", "x");
    let run = app.satflow(&["demo", "--dir", "a-file"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        std::fs::read_to_string(app.path().join("a-file")).unwrap(),
        "x"
    );

    // With --force in a folder of unrelated files, the demo plays and they survive; a second
    // demo there replaces what the first wrote, and still only that.
    app.write("shared/notes.txt", "keep me\n");
    app.write("shared/mail/mine.eml", "Subject: my own mail\n\nhello\n");
    let run = app.satflow(&["demo", "--dir", "shared", "--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    let first = snapshot(&app.path().join("shared"));
    assert!(first.contains_key(".satflow-demo"));
    assert!(first.contains_key("satflow.yaml"));
    let run = app.satflow(&["demo", "--dir", "shared"]);
    assert_eq!(run.code, 0, "{run:?}");
    let second = snapshot(&app.path().join("shared"));
    assert_eq!(second["notes.txt"], "keep me\n");
    assert_eq!(second["mail/mine.eml"], "Subject: my own mail\n\nhello\n");
    let count = |s: &BTreeMap<String, String>| s.keys().filter(|k| k.ends_with(".eml")).count();
    assert_eq!(
        count(&first),
        count(&second),
        "the first demo's emails were not replaced"
    );
    // A file of the user's dropped into the demo's folder later is not the demo's either.
    app.write("shared/workflows/later.yaml", "name: later\n");
    let run = app.satflow(&["demo", "--dir", "shared"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        std::fs::read_to_string(app.path().join("shared/workflows/later.yaml")).unwrap(),
        "name: later\n"
    );
    assert_eq!(
        std::fs::read_to_string(app.path().join("shared/notes.txt")).unwrap(),
        "keep me\n"
    );
}

/// A receiver that answers every request 500, echoing the request line; it keeps what it saw.
fn failing_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log.lock().unwrap().push(request_line.trim().to_string());
            let answer = format!("no thanks: {}", request_line.trim());
            let _ = write!(
                stream,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (port, seen)
}

#[test]
fn a_token_in_an_http_post_url_appears_in_no_output_log_or_email() {
    const TOKEN: &str = "tok3n-Query-5ecret";
    const PATH_SECRET: &str = "pathSecret42";
    let (port, seen) = failing_receiver();
    let app = TestApp::engine();
    app.write("hook.token", &format!("{TOKEN}\n"));
    app.write("hook.path", PATH_SECRET);
    app.write(
        "workflows/hook.yaml",
        &format!(
            "name: hook\nsteps:\n  - uses: http.post\n    with:\n      url: \"http://127.0.0.1:{port}/hook/${{file:../hook.path}}?token=${{file:../hook.token}}\"\n      json: {{ text: hello }}\n"
        ),
    );
    let check = app.satflow(&["check"]);
    assert_eq!(check.code, 0, "{check:?}");
    let mut daemon = app.spawn(&["run"], "daemon.log");
    let queued = app.satflow(&["trigger", "hook"]);
    assert_eq!(queued.code, 0, "{queued:?}");
    // Four attempts, then the item is dead, the run failed and both alerts are written.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let dead = app
            .outbox()
            .iter()
            .any(|i| i["kind"] == "http" && i["status"] == "dead");
        if dead && app.emails().len() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the item never died: {:?}",
            app.outbox()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    terminate(&mut daemon);
    // It was really sent, token and all.
    let requests = seen.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.contains(TOKEN) && r.contains(PATH_SECRET)),
        "{requests:?}"
    );
    let outbox = app.satflow(&["outbox", "--json"]);
    let runs = app.satflow(&["runs", "--json"]);
    let shown_runs = app.satflow(&["runs", "show", "1"]);
    let status = app.satflow(&["status", "--json"]);
    let log = std::fs::read_to_string(app.path().join("daemon.log")).unwrap();
    let emails = app.emails().join("\n");
    let doc: serde_json::Value = serde_json::from_str(&outbox.stdout).unwrap();
    let item = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "http")
        .unwrap();
    assert_eq!(
        item["url"],
        format!("http://127.0.0.1:{port}/hook/***?token=***")
    );
    assert!(
        item["last_error"]
            .as_str()
            .unwrap()
            .contains("answered 500"),
        "{item}"
    );
    assert!(runs.stdout.contains("answered 500"), "{runs:?}");
    for (what, text) in [
        ("outbox --json", &outbox.stdout),
        ("runs --json", &runs.stdout),
        ("runs show", &shown_runs.stdout),
        ("status --json", &status.stdout),
        ("the daemon's log", &log),
        ("the alert emails", &emails),
    ] {
        assert!(!text.contains(TOKEN), "{what} shows the token:\n{text}");
        assert!(
            !text.contains(PATH_SECRET),
            "{what} shows the path secret:\n{text}"
        );
    }
}
