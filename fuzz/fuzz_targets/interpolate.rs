//! `${…}` interpolation over a parsed file, as `satflow.yaml` is loaded: values from a fixed
//! environment. Inputs that mention `file:` are skipped: they would read the machine's files
//! (a `${file:/dev/zero}` is a known issue handled on its own, not something to fuzz into).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use satflow::source::{Diagnostics, Env, load_file};

struct FixedEnv;

impl Env for FixedEnv {
    fn var(&self, name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cret-value".into()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("${SECRET}".into()),
            "NEWLINE" => Some("a\nb: c".into()),
            _ => None,
        }
    }
}

fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("satflow-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("satflow.yaml")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("file:") {
        return;
    }
    std::fs::write(file(), text).unwrap();
    let mut diags = Diagnostics::default();
    let _ = load_file(file(), &FixedEnv, &mut diags);
    for d in diags.sorted() {
        // A value from `${SECRET}` never shows in a message.
        assert!(!d.message.contains("s3cret-value"), "{d}");
    }
});
