//! The YAML reader: any text either parses into a node tree (then turned into JSON, as
//! workflows' `with:` blocks are) or is refused with diagnostics; it never panics.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use satflow::source::{Ctx, Diagnostics, parse_yaml, reader};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut diags = Diagnostics::default();
    let mut ctx = Ctx {
        path: Path::new("fuzz.yaml"),
        diags: &mut diags,
    };
    if let Some(node) = parse_yaml(text, &mut ctx) {
        let _ = reader::to_json(&node);
    }
    for d in diags.sorted() {
        let _ = d.to_string();
    }
});
