//! SIGHUP on `satflow run`: a broken setup is refused with its problems logged and the running
//! workflows kept; a good one is applied (the schedules are the new ones).

use std::time::Duration;

use crate::helpers::{TestApp, eventually, terminate};

/// Fires every second and mails a note: a run per second to count.
fn ticking(name: &str) -> String {
    format!(
        "name: {name}\non:\n  schedule: {{ cron: \"* * * * * *\", catch_up: skip }}\nsteps:\n  \
         - id: note\n    uses: email\n    with: {{ subject: \"{name}\", body: \"tick\" }}\n"
    )
}

fn hangup(child: &std::process::Child) {
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped yet.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "kill -HUP failed");
}

fn log(app: &TestApp) -> String {
    std::fs::read_to_string(app.path().join("daemon.log")).unwrap_or_default()
}

fn runs_of(app: &TestApp, workflow: &str) -> usize {
    app.runs()
        .iter()
        .filter(|r| r["workflow"] == workflow)
        .count()
}

/// The address of the last "satflow is running" line (each reload binds again; port 0 here).
fn last_address(app: &TestApp) -> Option<String> {
    let log = log(app);
    let line = log.lines().rfind(|l| l.contains("satflow is running"))?;
    let addr = line.split_once("addr=")?.1.split_whitespace().next()?;
    Some(
        addr.trim_matches(|c: char| !c.is_ascii_digit() && c != '.' && c != ':')
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refuses_a_broken_setup_and_applies_a_good_one() {
    let app = TestApp::engine();
    app.write("workflows/alpha.yaml", &ticking("alpha"));
    let mut daemon = app.spawn(&["run", "-c", "satflow.yaml"], "daemon.log");
    app.started().await;
    eventually(Duration::from_secs(20), "alpha to fire", || {
        runs_of(&app, "alpha") >= 1
    })
    .await;

    // A broken change: an action that does not exist, and a broken satflow.yaml key.
    app.write(
        "workflows/beta.yaml",
        "name: beta\non:\n  schedule: { cron: \"* * * * * *\" }\nsteps:\n  - id: x\n    uses: no.such.action\n",
    );
    hangup(&daemon);
    eventually(Duration::from_secs(20), "the reload to be refused", || {
        log(&app).contains("reload refused")
    })
    .await;
    let text = log(&app);
    assert!(
        text.lines()
            .any(|l| l.contains("reload refused") && l.contains("beta.yaml")),
        "the refusal names the broken file: {text}"
    );
    assert!(!text.contains("reloaded"), "{text}");
    // Still the same daemon, still firing alpha.
    let addr = last_address(&app).expect("an address");
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let before = runs_of(&app, "alpha");
    eventually(Duration::from_secs(20), "alpha to keep firing", || {
        runs_of(&app, "alpha") > before
    })
    .await;
    assert_eq!(runs_of(&app, "beta"), 0);
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "a refused reload must not stop the daemon"
    );

    // A good change: alpha gone, beta fixed.
    std::fs::remove_file(app.path().join("workflows/alpha.yaml")).unwrap();
    app.write("workflows/beta.yaml", &ticking("beta"));
    hangup(&daemon);
    eventually(Duration::from_secs(30), "the reload to be applied", || {
        log(&app).contains("reloaded")
    })
    .await;
    eventually(Duration::from_secs(20), "beta to fire", || {
        runs_of(&app, "beta") >= 1
    })
    .await;
    let addr = last_address(&app).expect("an address");
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // alpha is no longer scheduled: its count stops growing (a fire recorded just before the
    // stop may still finish, so the count is read after a settle).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alpha = runs_of(&app, "alpha");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        runs_of(&app, "alpha"),
        alpha,
        "alpha still fires after it was removed"
    );
    assert!(runs_of(&app, "beta") >= 2, "beta keeps firing");
    assert_eq!(terminate(&mut daemon), 0, "{}", log(&app));
}
