//! `${NAME}`, `${NAME:-default}` and `${file:PATH}` in values, so secrets can live in the
//! environment or in files instead of in satflow.yaml.
//!
//! Interpolated text is data: it is never parsed as a template, and an error about an
//! interpolated value never prints what the variable or file contained.

use std::path::Path;

use super::yaml::{Kind, Node};
use super::{Ctx, resolve_path};

/// Where `${NAME}` looks values up; tests pass their own.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

/// Interpolates every scalar value in the tree (keys are left alone). A value that cannot be
/// interpolated is reported, named by its path in the file, and becomes `Kind::Invalid`.
/// Every expanded value is registered for redaction, so no later message shows it.
pub fn interpolate_tree(node: &mut Node, base: &Path, env: &dyn Env, ctx: &mut Ctx<'_>) {
    walk(node, String::new(), base, env, ctx);
}

fn walk(node: &mut Node, path: String, base: &Path, env: &dyn Env, ctx: &mut Ctx<'_>) {
    match &mut node.kind {
        Kind::Scalar(s) => {
            if s.raw.contains('$') {
                match interpolate(&s.raw, base, env) {
                    Ok((value, expansions)) => {
                        s.value = value;
                        for (reference, value) in expansions {
                            s.expanded.push(value.clone());
                            ctx.diags.redact(value, reference);
                        }
                    }
                    Err(message) => {
                        let field = if path.is_empty() {
                            String::new()
                        } else {
                            format!("{path}: ")
                        };
                        ctx.error(node.pos, format!("{field}{message}"));
                        node.kind = Kind::Invalid;
                    }
                }
            }
        }
        Kind::Seq(items) => {
            for (i, n) in items.iter_mut().enumerate() {
                walk(n, format!("{path}[{i}]"), base, env, ctx);
            }
        }
        Kind::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let key = k.scalar().map(|s| s.raw.as_str()).unwrap_or("?");
                let path = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                walk(v, path, base, env, ctx);
            }
        }
        Kind::Invalid => {}
    }
}

/// Expands one string. `$${` is a literal `${`; a `$` not followed by `{` is kept as is.
/// Returns the text and each expansion as `(reference as written, value)`.
pub fn interpolate(
    raw: &str,
    base: &Path,
    env: &dyn Env,
) -> Result<(String, Vec<(String, String)>), String> {
    let mut out = String::with_capacity(raw.len());
    let mut expansions = Vec::new();
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
            continue;
        }
        let Some(inner_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = inner_start.find('}') else {
            return Err(format!(
                "unterminated `${{` in `{raw}`; write `${{NAME}}` or `${{file:PATH}}`, or `$${{` for a literal `${{`"
            ));
        };
        let inner = &inner_start[..end];
        let value = expand(inner, base, env)?;
        out.push_str(&value);
        expansions.push((format!("${{{inner}}}"), value));
        rest = &inner_start[end + 1..];
    }
    out.push_str(rest);
    Ok((out, expansions))
}

fn expand(inner: &str, base: &Path, env: &dyn Env) -> Result<String, String> {
    if let Some(path) = inner.strip_prefix("file:") {
        let path = path.trim();
        if path.is_empty() {
            return Err("`${file:}` names no file; write `${file:PATH}`".into());
        }
        let full = resolve_path(base, Path::new(path));
        return super::files::read_text(&full)
            .map(|text| text.trim().to_string())
            .map_err(|err| {
                format!(
                    "cannot read `${{file:{path}}}` ({}): {err}; check the path (relative to this file's folder) and its permissions",
                    full.display()
                )
            });
    }
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`${{{inner}}}` is not a valid reference; write `${{NAME}}` (letters, digits, `_`), `${{NAME:-default}}` or `${{file:PATH}}`"
        ));
    }
    match (env.var(name), default) {
        (Some(value), _) => Ok(value),
        (None, Some(default)) => Ok(default.to_string()),
        (None, None) => Err(format!(
            "environment variable {name} is not set (used as `${{{name}}}`); export it, or write `${{{name}:-default}}`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: [(&str, &str); 2] = [("A", "alpha"), ("EMPTY", "")];

    fn interpolate(raw: &str, base: &Path, env: &dyn Env) -> Result<String, String> {
        super::interpolate(raw, base, env).map(|(text, _)| text)
    }

    #[test]
    fn expands_variables_defaults_and_escapes() {
        let base = Path::new(".");
        assert_eq!(interpolate("x${A}y", base, &ENV).unwrap(), "xalphay");
        assert_eq!(interpolate("${EMPTY}", base, &ENV).unwrap(), "");
        assert_eq!(interpolate("${B:-dflt}", base, &ENV).unwrap(), "dflt");
        assert_eq!(
            interpolate("$${A} costs $5", base, &ENV).unwrap(),
            "${A} costs $5"
        );
    }

    #[test]
    fn refuses_undefined_names_bad_syntax_and_missing_files() {
        let base = Path::new(".");
        let err = interpolate("${NOPE}", base, &ENV).unwrap_err();
        assert!(
            err.contains("environment variable NOPE is not set"),
            "{err}"
        );
        assert!(
            interpolate("${A", base, &ENV)
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(
            interpolate("${1A}", base, &ENV)
                .unwrap_err()
                .contains("not a valid reference")
        );
        let err = interpolate("${file:does/not/exist}", base, &ENV).unwrap_err();
        assert!(
            err.contains("cannot read `${file:does/not/exist}`"),
            "{err}"
        );
    }

    #[test]
    fn reads_files_relative_to_the_base_and_trims_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
        assert_eq!(
            interpolate("${file:secret}", dir.path(), &ENV).unwrap(),
            "s3cret"
        );
    }
}
