//! `satflow plan`: fire times in the workflow's zone and in UTC, right across DST changes,
//! month ends and leap days (2027 changes: Europe on 28 March / 31 October, New York on
//! 14 March / 7 November).

use serde_json::Value;

use super::helpers::TestApp;

/// Plans one workflow with `cron` in `zone` and returns its (local, utc) fire times.
fn plan(cron: &str, zone: &str, from: &str, count: usize) -> Vec<(String, String)> {
    let app = TestApp::with_base();
    std::fs::remove_file(app.path().join("workflows/aaa-good.yaml")).unwrap();
    app.write(
        "workflows/w.yaml",
        &format!(
            "name: w\non:\n  schedule: {{ cron: \"{cron}\", timezone: {zone} }}\nsteps:\n  - uses: pocket.refresh\n"
        ),
    );
    let run = app.satflow(&[
        "plan",
        "-c",
        "satflow.yaml",
        "--json",
        "--from",
        from,
        "--count",
        &count.to_string(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let doc: Value = serde_json::from_str(&run.stdout).expect("one JSON document");
    let schedule = &doc["schedules"][0];
    assert_eq!(schedule["timezone"], zone);
    schedule["fires"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["local"].as_str().unwrap().to_string(),
                f["utc"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(l, u)| (l.to_string(), u.to_string()))
        .collect()
}

#[test]
fn zurich_daily_fire_keeps_its_local_hour_across_both_changes() {
    let spring = plan("0 9 * * *", "Europe/Zurich", "2027-03-27T00:00:00Z", 2);
    assert_eq!(
        spring,
        pairs(&[
            ("2027-03-27T09:00:00+01:00", "2027-03-27T08:00:00Z"),
            ("2027-03-28T09:00:00+02:00", "2027-03-28T07:00:00Z"),
        ])
    );
    let autumn = plan("0 9 * * *", "Europe/Zurich", "2027-10-30T00:00:00Z", 2);
    assert_eq!(
        autumn,
        pairs(&[
            ("2027-10-30T09:00:00+02:00", "2027-10-30T07:00:00Z"),
            ("2027-10-31T09:00:00+01:00", "2027-10-31T08:00:00Z"),
        ])
    );
}

#[test]
fn zurich_fire_inside_the_skipped_hour_runs_right_after_it_and_once_in_the_repeated_hour() {
    // 02:30 does not exist on 28 March: the fire moves to 03:00 local, the first minute after.
    let spring = plan("30 2 * * *", "Europe/Zurich", "2027-03-27T00:00:00Z", 3);
    assert_eq!(
        spring,
        pairs(&[
            ("2027-03-27T02:30:00+01:00", "2027-03-27T01:30:00Z"),
            ("2027-03-28T03:00:00+02:00", "2027-03-28T01:00:00Z"),
            ("2027-03-29T02:30:00+02:00", "2027-03-29T00:30:00Z"),
        ])
    );
    // 02:30 happens twice on 31 October: one fire, at the first.
    let autumn = plan("30 2 * * *", "Europe/Zurich", "2027-10-30T00:00:00Z", 3);
    assert_eq!(
        autumn,
        pairs(&[
            ("2027-10-30T02:30:00+02:00", "2027-10-30T00:30:00Z"),
            ("2027-10-31T02:30:00+02:00", "2027-10-31T00:30:00Z"),
            ("2027-11-01T02:30:00+01:00", "2027-11-01T01:30:00Z"),
        ])
    );
}

#[test]
fn new_york_changes_are_handled_the_same_way() {
    let spring = plan("30 2 * * *", "America/New_York", "2027-03-13T00:00:00Z", 3);
    assert_eq!(
        spring,
        pairs(&[
            ("2027-03-13T02:30:00-05:00", "2027-03-13T07:30:00Z"),
            ("2027-03-14T03:00:00-04:00", "2027-03-14T07:00:00Z"),
            ("2027-03-15T02:30:00-04:00", "2027-03-15T06:30:00Z"),
        ])
    );
    let autumn = plan("30 1 * * *", "America/New_York", "2027-11-06T00:00:00Z", 3);
    assert_eq!(
        autumn,
        pairs(&[
            ("2027-11-06T01:30:00-04:00", "2027-11-06T05:30:00Z"),
            ("2027-11-07T01:30:00-04:00", "2027-11-07T05:30:00Z"),
            ("2027-11-08T01:30:00-05:00", "2027-11-08T06:30:00Z"),
        ])
    );
}

#[test]
fn an_hourly_schedule_fires_every_real_hour_through_the_repeated_hour() {
    // 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST: four fires, one real hour apart.
    let fires = plan("0 * * * *", "America/New_York", "2027-11-07T03:30:00Z", 4);
    assert_eq!(
        fires,
        pairs(&[
            ("2027-11-07T00:00:00-04:00", "2027-11-07T04:00:00Z"),
            ("2027-11-07T01:00:00-04:00", "2027-11-07T05:00:00Z"),
            ("2027-11-07T01:00:00-05:00", "2027-11-07T06:00:00Z"),
            ("2027-11-07T02:00:00-05:00", "2027-11-07T07:00:00Z"),
        ])
    );
}

#[test]
fn the_31st_fires_only_in_months_that_have_one() {
    let fires = plan("0 12 31 * *", "Europe/Zurich", "2027-01-01T00:00:00Z", 7);
    let days: Vec<&str> = fires.iter().map(|(l, _)| &l[..10]).collect();
    assert_eq!(
        days,
        [
            "2027-01-31",
            "2027-03-31",
            "2027-05-31",
            "2027-07-31",
            "2027-08-31",
            "2027-10-31",
            "2027-12-31"
        ]
    );
    // 31 October is the autumn change: noon is already winter time.
    assert_eq!(fires[5].1, "2027-10-31T11:00:00Z");
}

#[test]
fn a_leap_day_schedule_fires_every_four_years() {
    let fires = plan("0 12 29 2 *", "America/New_York", "2027-01-01T00:00:00Z", 3);
    assert_eq!(
        fires,
        pairs(&[
            ("2028-02-29T12:00:00-05:00", "2028-02-29T17:00:00Z"),
            ("2032-02-29T12:00:00-05:00", "2032-02-29T17:00:00Z"),
            ("2036-02-29T12:00:00-05:00", "2036-02-29T17:00:00Z"),
        ])
    );
}

#[test]
fn text_output_lists_every_workflow_and_bad_from_is_refused() {
    let app = TestApp::with_base();
    app.write(
        "workflows/events.yaml",
        "on: { event: [exchange.executed, exchange.settled] }\nsteps:\n  - uses: pocket.refresh\n",
    );
    let run = app.satflow(&[
        "plan",
        "-c",
        "satflow.yaml",
        "--from",
        "2027-03-26",
        "--count",
        "2",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(
            "good (workflows/aaa-good.yaml): cron \"0 9 * * MON\" in Europe/Zurich, catch_up once"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("2027-03-29T09:00:00+02:00   2027-03-29T07:00:00Z"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("events (workflows/events.yaml): on exchange.executed, exchange.settled"),
        "{}",
        run.stdout
    );

    let run = app.satflow(&["plan", "-c", "satflow.yaml", "--from", "next monday"]);
    assert_eq!(
        run.code, 2,
        "clap refuses bad arguments with its own code: {run:?}"
    );
    assert!(run.stderr.contains("RFC 3339"), "{run:?}");
}
