//! contrib/systemd/satflow.service is a unit systemd accepts: `systemd-analyze verify` on it,
//! with ExecStart pointed at the binary under test (verify checks that the program exists).
//! Skipped, with a printed line, where systemd-analyze is not installed.

use std::path::Path;
use std::process::Command;

#[test]
fn the_service_unit_verifies() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd/satflow.service"),
    )
    .unwrap();
    for key in [
        "DynamicUser=yes",
        "StateDirectory=satflow",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "MemoryDenyWriteExecute=yes",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
        "Restart=on-failure",
        "ExecReload=",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(key)),
            "the unit lacks {key}"
        );
    }
    // Stopping must outlast the daemon's default shutdown grace.
    let stop: u64 = unit
        .lines()
        .find_map(|l| l.strip_prefix("TimeoutStopSec="))
        .and_then(|v| v.trim_end_matches('s').parse().ok())
        .expect("TimeoutStopSec=<seconds>s");
    let grace = satflow::config::EngineConfig::default()
        .shutdown_grace
        .as_secs();
    assert!(
        stop > grace,
        "TimeoutStopSec={stop}s is not above the {grace} s grace"
    );

    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: systemd-analyze is not installed, the unit was not verified");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_satflow");
    let local = unit.replace("/usr/local/bin/satflow", bin);
    let path = dir.path().join("satflow.service");
    std::fs::write(&path, local).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Warnings about the machine (no network-online.target unit in a container, …) are not the
    // unit's; anything naming satflow.service is.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("satflow.service"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify refused the unit ({}): {stderr}",
        out.status
    );
}
