//! The durable engine, through the real binary: the daemon, triggers, the outbox's retries and
//! dead letters, two daemons on one database, and SIGKILL at random moments.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::helpers::{Backend, TestApp, eventually, listening, on_both_backends, terminate};
use super::sink::{Reply, Sink};

/// A manual workflow of `n` http.post steps to `/1` … `/n` of the sink.
fn chain(app: &TestApp, name: &str, sink: &Sink, n: usize, on: &str) {
    let mut yaml = format!("name: {name}\n{on}steps:\n");
    for i in 1..=n {
        yaml.push_str(&format!(
            "  - id: s{i}\n    uses: http.post\n    with:\n      url: {}\n      json: {{ run: \"{{{{ run.id }}}}\", step: {i} }}\n",
            sink.url(&format!("/{i}"))
        ));
    }
    app.write(&format!("workflows/{name}.yaml"), &yaml);
}

async fn healthy(app: &TestApp) {
    let url = format!("http://{}/healthz", app.started().await);
    let start = std::time::Instant::now();
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status() == 200
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the daemon did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_daemon_runs_a_triggered_workflow_reports_health_and_stops_on_sigterm(
    backend: Backend,
) {
    let sink = Sink::start().await;
    let Some(app) = TestApp::engine_on(backend) else {
        return;
    };
    chain(&app, "hook", &sink, 2, "");
    app.write(
        "workflows/hook.yaml",
        &(std::fs::read_to_string(app.path().join("workflows/hook.yaml")).unwrap()
            + "  - id: tell\n    uses: email\n    if: \"{{ steps.s2.status == 200 }}\"\n    with: { subject: \"hook {{ run.id }} done\", body: \"{{ steps.s1.body.ok }}\" }\n"),
    );
    let mut daemon = app.spawn(&["run", "-c", "satflow.yaml"], "daemon.log");
    healthy(&app).await;

    let run = app.satflow(&["trigger", "hook", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("queued run 1 of workflow hook"),
        "{run:?}"
    );
    eventually(Duration::from_secs(15), "the run to succeed", || {
        app.runs()
            .first()
            .is_some_and(|r| r["status"] == "succeeded")
    })
    .await;
    let keys: Vec<String> = sink.received().iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys, ["run/1/step/s1", "run/1/step/s2"]);
    eventually(Duration::from_secs(5), "the email", || {
        app.emails().len() == 1
    })
    .await;
    assert!(
        app.emails()[0].contains("Subject: hook 1 done"),
        "{:?}",
        app.emails()
    );

    let metrics = reqwest::get(format!("http://{}/metrics", app.listen()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("satflow_runs_total{outcome=\"succeeded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("satflow_outbox_handler_seconds_bucket{kind=\"http\""),
        "{metrics}"
    );
    let status = app.satflow(&["status", "--json", "-c", "satflow.yaml"]);
    assert_eq!(status.code, 0, "{status:?}");
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["runs"][0]["status"], "succeeded");
    assert_eq!(status["outbox"]["pending"], 0);
    let show = app.satflow(&["runs", "show", "1", "-c", "satflow.yaml"]);
    assert!(show.stdout.contains("run 1 of hook (manual"), "{show:?}");
    assert!(show.stdout.contains("tell"), "{show:?}");
    let missing = app.satflow(&["runs", "show", "99", "-c", "satflow.yaml"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stderr.contains("there is no run 99"), "{missing:?}");

    assert_eq!(terminate(&mut daemon), 0);
    let log = std::fs::read_to_string(app.path().join("daemon.log")).unwrap();
    assert!(log.contains("stopped"), "{log}");
}

async fn the_outbox_retries_honours_retry_after_reconciles_and_dead_letters(backend: Backend) {
    let sink = Sink::start().await;
    let Some(app) = TestApp::engine_on(backend) else {
        return;
    };
    chain(&app, "flaky", &sink, 3, "");
    sink.script([
        // s1: a 503, then a 429 asking for 1 s, then through.
        Reply::Status(503),
        Reply::RetryAfter(429, 1),
        Reply::Ok,
        // s2: no answer in time (the outcome is unknown), then through.
        Reply::Slow(Duration::from_secs(2)),
        Reply::Ok,
        // s3: refused for good.
        Reply::Status(400),
    ]);
    let run = app.satflow(&["trigger", "flaky", "--wait", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 2, "a failed run exits 2: {run:?}");
    assert!(run.stdout.contains("failed"), "{run:?}");

    let items: BTreeMap<String, serde_json::Value> = app
        .outbox()
        .into_iter()
        .map(|i| (i["idempotency_key"].as_str().unwrap().to_string(), i))
        .collect();
    let outcomes = |key: &str| -> Vec<String> {
        items[key]["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                format!(
                    "{}:{}",
                    a["outcome"].as_str().unwrap_or("-"),
                    a["http_status"]
                )
            })
            .collect()
    };
    assert_eq!(
        outcomes("run/1/step/s1"),
        ["retry:503", "retry:429", "done:null"]
    );
    assert_eq!(items["run/1/step/s1"]["status"], "done");
    assert_eq!(outcomes("run/1/step/s2"), ["unknown:null", "done:null"]);
    assert_eq!(outcomes("run/1/step/s3"), ["dead:400"]);
    assert_eq!(items["run/1/step/s3"]["status"], "dead");

    let received = sink.received();
    let s1: Vec<_> = received.iter().filter(|r| r.path == "/1").collect();
    assert!(
        s1[2].at - s1[1].at >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured ({:?})",
        s1[2].at - s1[1].at
    );
    let s2: Vec<_> = received.iter().filter(|r| r.path == "/2").collect();
    assert_eq!(s2.len(), 2, "the unknown outcome is sent again");
    assert_eq!(s2[0].key, s2[1].key, "with the same idempotency key");

    let runs = app.runs();
    assert_eq!(runs[0]["status"], "failed");
    assert!(
        runs[0]["error"].as_str().unwrap().contains("400"),
        "{runs:?}"
    );

    // The dead item and the failed run each raise one alert, delivered by the daemon.
    let mut daemon = app.spawn(&["run", "-c", "satflow.yaml"], "daemon.log");
    healthy(&app).await;
    eventually(Duration::from_secs(10), "two alert emails", || {
        app.emails().len() == 2
    })
    .await;
    let mail = app.emails().join("\n");
    assert!(mail.contains("gave up on http"), "{mail}");
    assert!(mail.contains("workflow flaky failed"), "{mail}");

    // `outbox retry` gives the dead item another chance and the run resumes from it.
    let retry = app.satflow(&[
        "outbox",
        "retry",
        &items["run/1/step/s3"]["id"].to_string(),
        "-c",
        "satflow.yaml",
    ]);
    assert_eq!(retry.code, 0, "{retry:?}");
    eventually(
        Duration::from_secs(10),
        "the run to succeed after the retry",
        || app.runs()[0]["status"] == "succeeded",
    )
    .await;
    assert_eq!(terminate(&mut daemon), 0);
}

async fn two_daemons_on_one_database_run_each_fire_once(backend: Backend) {
    let sink = Sink::start().await;
    let Some(app) = TestApp::engine_on(backend) else {
        return;
    };
    chain(
        &app,
        "tick",
        &sink,
        1,
        "on:\n  schedule: { cron: \"* * * * * *\", catch_up: skip }\n",
    );
    // Both bind port 0, so each gets a port of its own.
    let second = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    app.write("second.yaml", &second);
    let mut a = app.spawn(&["run", "-c", "satflow.yaml"], "a.log");
    let mut b = app.spawn(&["run", "-c", "second.yaml"], "b.log");
    // Both up, then several fires played out while both compete for them.
    listening(&app.path().join("a.log")).await;
    listening(&app.path().join("b.log")).await;
    eventually(Duration::from_secs(20), "three fires sent", || {
        sink.received().len() >= 3
    })
    .await;
    assert_eq!(terminate(&mut a), 0);
    let code = terminate(&mut b);
    assert_eq!(
        code,
        0,
        "{}",
        std::fs::read_to_string(app.path().join("b.log")).unwrap()
    );
    let runs = app.runs();
    assert!(runs.len() >= 3, "{runs:?}");
    // The database keeps one run per fire by itself (a unique key); what can go wrong is a
    // fire's effect sent twice, or sent for a run that is not there. The sink saw each
    // finished run's effect exactly once, and nothing else.
    let mut keys: Vec<String> = sink.received().iter().map(|r| r.key.clone()).collect();
    keys.sort();
    let mut expected: Vec<String> = runs
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .map(|r| format!("run/{}/step/s1", r["id"]))
        .collect();
    expected.sort();
    let distinct: BTreeSet<&String> = keys.iter().collect();
    assert_eq!(
        distinct.len(),
        keys.len(),
        "an effect was sent twice: {keys:?}"
    );
    assert!(
        expected.iter().all(|k| keys.contains(k)),
        "a finished run's effect never arrived: {keys:?} {runs:?}"
    );
    assert!(
        keys.iter().all(|k| runs
            .iter()
            .any(|r| format!("run/{}/step/s1", r["id"]) == *k)),
        "an effect of no run arrived: {keys:?} {runs:?}"
    );
}

async fn sigkill_at_random_moments_loses_no_effect_and_repeats_no_finished_step(backend: Backend) {
    const RUNS: usize = 30;
    const STEPS: usize = 3;
    const KILLS: usize = 50;
    let sink = Sink::start().await;
    sink.set_delay(Duration::from_millis(250));
    let Some(app) = TestApp::engine_on(backend) else {
        return;
    };
    chain(&app, "chain", &sink, STEPS, "");
    for _ in 0..RUNS {
        let run = app.satflow(&["trigger", "chain", "-c", "satflow.yaml"]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    for _ in 0..KILLS {
        let mut daemon = app.spawn(&["run", "-c", "satflow.yaml"], "daemon.log");
        // xorshift: a kill somewhere between 50 and 650 ms after the start.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(50 + seed % 600)).await;
        daemon.kill().unwrap();
        daemon.wait().unwrap();
    }
    let mut daemon = app.spawn(&["run", "-c", "satflow.yaml"], "daemon.log");
    healthy(&app).await;
    eventually(Duration::from_secs(90), "every run to succeed", || {
        let runs = app.runs();
        runs.len() == RUNS && runs.iter().all(|r| r["status"] == "succeeded")
    })
    .await;
    assert_eq!(terminate(&mut daemon), 0);

    for run in app.runs() {
        let steps = run["steps"].as_array().unwrap();
        assert_eq!(steps.len(), STEPS, "{run}");
        assert!(steps.iter().all(|s| s["status"] == "succeeded"), "{run}");
    }
    let received = sink.received();
    let mut by_key: BTreeMap<String, Vec<std::time::Instant>> = BTreeMap::new();
    for r in &received {
        // Each delivery carries what its key says: a resend is the same request.
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            r.key,
            format!(
                "run/{}/step/s{}",
                body["run"].as_str().unwrap(),
                body["step"]
            )
        );
        by_key.entry(r.key.clone()).or_default().push(r.at);
    }
    assert_eq!(
        by_key.len(),
        RUNS * STEPS,
        "every expected effect arrived, and nothing else"
    );
    for run in 1..=RUNS {
        for step in 1..STEPS {
            let this = &by_key[&format!("run/{run}/step/s{step}")];
            let next = &by_key[&format!("run/{run}/step/s{}", step + 1)];
            let next_first = next.iter().min().unwrap();
            assert!(
                this.iter().all(|t| t < next_first),
                "run {run}: step s{step} was sent again after step s{} started",
                step + 1
            );
        }
    }
    println!(
        "{} deliveries for {} effects ({} repeated with the same key) over {KILLS} kills",
        received.len(),
        RUNS * STEPS,
        received.len() - RUNS * STEPS
    );
}

async fn emails_go_over_smtp_and_a_dead_alert_does_not_alert_again(backend: Backend) {
    let smtp = super::smtp::SmtpSink::start().await;
    let Some(app) = TestApp::engine_on(backend) else {
        return;
    };
    let config = std::fs::read_to_string(app.path().join("satflow.yaml")).unwrap();
    let closed = super::helpers::closed_port();
    app.write(
        "satflow.yaml",
        &config.replace(
            "dir: mail",
            &format!("smtp_url: \"smtp://127.0.0.1:{}\"", smtp.port),
        ),
    );
    app.write(
        "workflows/note.yaml",
        "steps:\n  - uses: email\n    with: { subject: \"note {{ run.id }}\", body: \"hello from {{ workflow.name }}\" }\n",
    );
    let run = app.satflow(&["trigger", "note", "--wait", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut daemon = app.spawn(&["run", "-c", "satflow.yaml"], "daemon.log");
    healthy(&app).await;
    eventually(
        Duration::from_secs(10),
        "the email at the SMTP server",
        || smtp.messages().len() == 1,
    )
    .await;
    let message = &smtp.messages()[0];
    assert!(message.contains("Subject: note 1"), "{message}");
    assert!(message.contains("hello from note"), "{message}");
    assert!(message.contains("Message-ID: <"), "{message}");
    let mime = super::smtp::Mime::parse(message);
    mime.assert_readable();
    assert_eq!(
        mime.structure(),
        "multipart/alternative[text/plain,text/html]"
    );
    assert!(mime.text("text/html").unwrap().contains("hello from note"));
    assert_eq!(terminate(&mut daemon), 0);

    // Now the mail server is gone: the email dies, its dead-letter alert dies, and that is all.
    app.write(
        "satflow.yaml",
        &config.replace(
            "dir: mail",
            &format!("smtp_url: \"smtp://127.0.0.1:{closed}\""),
        ),
    );
    let run = app.satflow(&["trigger", "note", "-c", "satflow.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut daemon = app.spawn(&["run", "-c", "satflow.yaml"], "daemon.log");
    healthy(&app).await;
    eventually(
        Duration::from_secs(20),
        "the email and its alert to die",
        || {
            let items = app.outbox();
            items.len() == 3 && items.iter().filter(|i| i["status"] == "dead").count() == 2
        },
    )
    .await;
    // An item's dead-letter alert is queued in the transaction that declares it dead, so with
    // both dead any alert about the alert would be there; stopped, the daemon adds nothing.
    assert_eq!(terminate(&mut daemon), 0);
    let items = app.outbox();
    assert_eq!(items.len(), 3, "no alert about the dead alert: {items:#?}");
    assert!(
        items
            .iter()
            .any(|i| i["idempotency_key"] == "alert/dead_letter/run/2/step/step_1"),
        "{items:#?}"
    );
}

on_both_backends!(
    the_daemon_runs_a_triggered_workflow_reports_health_and_stops_on_sigterm,
    the_outbox_retries_honours_retry_after_reconciles_and_dead_letters,
    two_daemons_on_one_database_run_each_fire_once,
    sigkill_at_random_moments_loses_no_effect_and_repeats_no_finished_step,
    emails_go_over_smtp_and_a_dead_alert_does_not_alert_again,
);
