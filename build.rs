//! Links the release binary for a small resident set and a small file.
//!
//! `scripts/idle-code.order` (written by `scripts/idle-code-order.sh`) lists, as patterns of
//! their symbols, the functions `satflow run` executes while it waits. The kernel maps 64 KiB
//! of the page cache around each code page touched, so that half megabyte of code, scattered
//! over the binary, kept about 4.6 MB of it resident. The linker script written here puts those
//! functions' sections (each function has its own) in one output section ahead of `.text`; the
//! rest of the layout stays the linker's own (`INSERT BEFORE`, which rust-lld and GNU ld read;
//! gold and mold do not, so a build that picks one of them links without it). A pattern nothing
//! matches places nothing: a stale list costs memory, never correctness.
//!
//! With rust-lld, identical functions are folded into one (`--icf=all`): generic code that
//! several crates instantiate for the same types is otherwise kept once per crate. Rust makes
//! no promise that two functions have different addresses, and lld folds only code, never
//! data, so no `static` loses its address.
//!
//! Debug builds, and targets other than Linux, link as they always did. It must never change
//! what the program does.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=scripts/idle-code.order");
    println!("cargo:rerun-if-env-changed=SATFLOW_IDLE_CODE_ORDER");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    if os != "linux" || profile != "release" {
        return;
    }
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let linker = std::env::var("RUSTC_LINKER").ok();
    let picked = flags.contains("fuse-ld") || flags.contains("linker-flavor");
    let gold_or_mold = linker
        .as_deref()
        .is_some_and(|l| l.contains("gold") || l.contains("mold"));
    // scripts/idle-code-order.sh measures a binary linked without the list: valgrind reads the
    // symbols of `.text` only, and would not see the functions already placed ahead of it.
    let measuring = std::env::var("SATFLOW_IDLE_CODE_ORDER").as_deref() == Ok("off");
    if !picked && !gold_or_mold && !measuring {
        place_idle_code_first();
    }
    if !picked && linker.is_none() && rust_lld_is_the_default() {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
}

fn place_idle_code_first() {
    let (Ok(root), Ok(out)) = (
        std::env::var("CARGO_MANIFEST_DIR"),
        std::env::var("OUT_DIR"),
    ) else {
        return;
    };
    let Ok(order) = std::fs::read_to_string(Path::new(&root).join("scripts/idle-code.order"))
    else {
        return;
    };
    let mut script = String::from("SECTIONS\n{\n  .text.idle : {\n");
    let mut patterns = 0;
    for line in order.lines().map(str::trim) {
        // Only what a section name can hold; anything else (a comment, a damaged line) is left
        // out rather than handed to the linker's parser.
        if line.is_empty()
            || !line
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.$*".contains(&b))
        {
            continue;
        }
        // Cold functions (`#[cold]`, a lock's contended path, a buffer's growth) sit in
        // `.text.unlikely.` sections.
        let _ = writeln!(script, "    *(.text.{line} .text.unlikely.{line})");
        patterns += 1;
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    if patterns == 0 {
        return;
    }
    let path = Path::new(&out).join("idle-code.ld");
    if std::fs::write(&path, script).is_ok() {
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", path.display());
    }
}

/// rust-lld is Rust's default linker on x86_64 Linux from Rust 1.90 on.
fn rust_lld_is_the_default() -> bool {
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let mut numbers = version
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.')
        .map(|n| n.parse::<u32>().ok());
    matches!(
        (numbers.next(), numbers.next()),
        (Some(Some(1)), Some(Some(minor))) if minor >= 90
    )
}
