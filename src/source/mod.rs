//! Reading the files users write: YAML with positions, `${…}` interpolation, and diagnostics.
//!
//! Everything a user types reaches satflow through this module, so that every refusal can point
//! at `path:line:col`. It parses and reports; it must never decide what a value means (that is
//! the job of `config` and `workflow`) and never stop at the first problem.

pub mod files;
mod interpolate;
pub mod reader;
pub mod redact;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use interpolate::{Env, ProcessEnv};
pub use reader::MapReader;
pub use yaml::{Kind, Node, Pos, Scalar, ScalarStyle, parse_yaml};

/// One problem found in a user's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.pos.line,
            self.pos.col,
            self.message
        )
    }
}

/// All problems found so far, in every file. Collecting instead of returning early is what lets
/// `satflow check` report every problem in one go.
#[derive(Debug, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
    /// Values that came from `${…}` (possibly secrets, IBANs), and the reference to show instead.
    redactions: Vec<(String, String)>,
}

impl Diagnostics {
    pub fn push(&mut self, path: &Path, pos: Pos, message: impl Into<String>) {
        let mut message = message.into();
        for (value, reference) in &self.redactions {
            message = message.replace(value.as_str(), reference);
        }
        self.items.push(Diagnostic {
            path: path.to_path_buf(),
            pos,
            message,
        });
    }

    /// From now on, messages show `reference` (`${MY_IBAN}`) wherever `value` would appear.
    /// Values shorter than 4 characters are left alone: they cannot be secret, and replacing
    /// them would garble unrelated text.
    pub fn redact(&mut self, value: String, reference: String) {
        if value.chars().count() >= 4 && !self.redactions.iter().any(|(v, _)| *v == value) {
            self.redactions.push((value, reference));
            // Longest first, so a value containing another is replaced whole.
            crate::sorting::sort_by_key(&mut self.redactions, |(v, _)| std::cmp::Reverse(v.len()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Problems in reading order: by file, then line, then column.
    pub fn sorted(mut self) -> Vec<Diagnostic> {
        crate::sorting::sort_by(&mut self.items, |a, b| {
            (&a.path, a.pos.line, a.pos.col).cmp(&(&b.path, b.pos.line, b.pos.col))
        });
        self.items.dedup();
        self.items
    }
}

/// A file being read, with the sink its problems go to.
pub struct Ctx<'a> {
    pub path: &'a Path,
    pub diags: &'a mut Diagnostics,
}

impl Ctx<'_> {
    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(self.path, pos, message);
    }
}

/// Reads a YAML file and interpolates `${…}` in its values; problems go to `diags`.
/// Returns `None` when the file cannot be read or is not YAML at all.
pub fn load_file(path: &Path, env: &dyn Env, diags: &mut Diagnostics) -> Option<Node> {
    let text = match files::read_text(path) {
        Ok(text) => text,
        Err(err) => {
            diags.push(path, Pos::START, format!("cannot read this file: {err}"));
            return None;
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut ctx = Ctx { path, diags };
    let mut node = parse_yaml(&text, &mut ctx)?;
    interpolate::interpolate_tree(&mut node, base, env, &mut ctx);
    Some(node)
}

/// Joins `relative` onto `base` and removes `.` and `..` lexically, so that messages show
/// `workflows/dca.yaml` rather than `examples/demo/../../workflows/dca.yaml`.
pub fn resolve_path(base: &Path, relative: &Path) -> PathBuf {
    use std::path::Component;
    let joined = base.join(relative);
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                let popped = matches!(out.components().next_back(), Some(Component::Normal(_)));
                if popped {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_path_removes_dots_lexically() {
        let p = resolve_path(Path::new("examples/demo"), Path::new("../../workflows"));
        assert_eq!(p, PathBuf::from("workflows"));
        let p = resolve_path(Path::new("."), Path::new("../x/./y.yaml"));
        assert_eq!(p, PathBuf::from("../x/y.yaml"));
        let p = resolve_path(Path::new("/etc/satflow"), Path::new("/var/lib/db"));
        assert_eq!(p, PathBuf::from("/var/lib/db"));
    }
}
