//! Helpers that give YAML nodes a shape: a mapping with known keys, a string, a bool, a number.
//!
//! Every helper reports its own problem (naming the field, the value and what is accepted) and
//! returns `None`, so callers read on and collect every problem in one pass.

use super::Ctx;
use super::yaml::{Kind, Node, Pos, Scalar, ScalarStyle};

/// Reads a mapping key by key; `finish` then reports every key nobody asked for.
pub struct MapReader<'n> {
    pub pos: Pos,
    entries: &'n [(Node, Node)],
    known: Vec<&'static str>,
    /// What this mapping is, for messages: "satflow.yaml", "step `order`", "pocket".
    what: String,
    /// Required keys that are missing while a misspelling of them is present: reported by
    /// `finish` only if that misspelling turns out to be a real key, so one typo is one problem.
    missing: Vec<(&'static str, String, &'n str)>,
    finished: bool,
}

impl<'n> MapReader<'n> {
    /// `None` (after reporting) when `node` is not a mapping.
    pub fn new(node: &'n Node, what: impl Into<String>, ctx: &mut Ctx<'_>) -> Option<Self> {
        let what = what.into();
        match &node.kind {
            Kind::Map(entries) => Some(MapReader {
                pos: node.pos,
                entries,
                known: Vec::new(),
                what,
                missing: Vec::new(),
                finished: false,
            }),
            Kind::Invalid => None,
            _ => {
                ctx.error(
                    node.pos,
                    format!(
                        "{what}: expected a mapping (`key: value` lines), found {}",
                        node.kind_name()
                    ),
                );
                None
            }
        }
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    fn entry(&mut self, key: &'static str) -> Option<&'n (Node, Node)> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.entries
            .iter()
            .find(|(k, _)| k.scalar().is_some_and(|s| s.raw == key))
    }

    /// The value of `key`, or `None` when it is absent or written without a value.
    pub fn get(&mut self, key: &'static str) -> Option<&'n Node> {
        self.entry(key)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null() && v.kind != Kind::Invalid)
    }

    /// Like `get`, but says so when the key is missing. `hint` tells the user what to write.
    pub fn required(
        &mut self,
        key: &'static str,
        hint: &str,
        ctx: &mut Ctx<'_>,
    ) -> Option<&'n Node> {
        match self.entry(key) {
            None => {
                let message = format!("{}: missing required key `{key}`; {hint}", self.what);
                let typo = self.entries.iter().find_map(|(k, _)| {
                    let written = k.scalar()?.raw.as_str();
                    (closest(written, &[key]) == Some(key)).then_some(written)
                });
                match typo {
                    Some(written) => self.missing.push((key, message, written)),
                    None => ctx.error(self.pos, message),
                }
                None
            }
            Some((k, v)) if v.is_null() => {
                ctx.error(
                    k.pos,
                    format!("{}: `{key}` has no value; {hint}", self.what),
                );
                None
            }
            Some((_, v)) if v.kind == Kind::Invalid => None,
            Some((_, v)) => Some(v),
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|(k, v)| k.scalar().is_some_and(|s| s.raw == key) && !v.is_null())
    }

    /// Reports every key that was never asked for, with a suggestion when one is close.
    pub fn finish(mut self, ctx: &mut Ctx<'_>) {
        self.finished = true;
        for (_, message, written) in &self.missing {
            if self.known.contains(written) {
                ctx.error(self.pos, message.clone());
            }
        }
        for (k, _) in self.entries {
            let Some(name) = k.scalar().map(|s| s.raw.as_str()) else {
                continue;
            };
            if self.known.contains(&name) {
                continue;
            }
            let suggestion = did_you_mean(name, &self.known);
            ctx.error(
                k.pos,
                format!(
                    "{}: unknown key `{name}`; {suggestion}accepted keys: {}",
                    self.what,
                    self.known.join(", ")
                ),
            );
        }
    }
}

impl Drop for MapReader<'_> {
    fn drop(&mut self) {
        // A reader dropped without `finish` would hide unknown keys: catch that in tests.
        debug_assert!(
            self.finished || std::thread::panicking(),
            "MapReader for {} dropped without finish()",
            self.what
        );
    }
}

/// A single value (not a list or mapping); reports otherwise.
pub fn scalar<'n>(node: &'n Node, field: &str, ctx: &mut Ctx<'_>) -> Option<&'n Scalar> {
    match &node.kind {
        Kind::Scalar(s) => Some(s),
        Kind::Invalid => None,
        _ => {
            ctx.error(
                node.pos,
                format!(
                    "{field}: expected a single value, found {}",
                    node.kind_name()
                ),
            );
            None
        }
    }
}

/// A text value, as it stands after interpolation.
pub fn string(node: &Node, field: &str, ctx: &mut Ctx<'_>) -> Option<String> {
    scalar(node, field, ctx).map(|s| s.value.clone())
}

/// `true` or `false`, unquoted.
pub fn boolean(node: &Node, field: &str, ctx: &mut Ctx<'_>) -> Option<bool> {
    let s = scalar(node, field, ctx)?;
    match (s.style, s.value.as_str()) {
        (ScalarStyle::Plain, "true" | "True" | "TRUE") => Some(true),
        (ScalarStyle::Plain, "false" | "False" | "FALSE") => Some(false),
        _ => {
            ctx.error(
                node.pos,
                format!(
                    "{field}: {} is not a boolean; write true or false (unquoted)",
                    describe(&s.value)
                ),
            );
            None
        }
    }
}

/// A whole number, unquoted or quoted, with optional `_` separators (`100_000`).
pub fn unsigned(node: &Node, field: &str, ctx: &mut Ctx<'_>) -> Option<u64> {
    let s = scalar(node, field, ctx)?;
    let digits: String = s.value.chars().filter(|c| *c != '_').collect();
    match digits.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            ctx.error(
                node.pos,
                format!(
                    "{field}: {} is not a whole number; write digits only, e.g. 100000",
                    describe(&s.value)
                ),
            );
            None
        }
    }
}

/// A YAML value as JSON: unquoted `true`/`false`/`null`/numbers keep their type, everything
/// else is a string (numbers from their text, never re-rounded).
pub fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        Kind::Scalar(s) if s.style == ScalarStyle::Plain => {
            if s.is_null() {
                return Value::Null;
            }
            match s.value.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                text => match serde_json::from_str::<serde_json::Number>(text) {
                    Ok(n) => Value::Number(n),
                    Err(_) => Value::String(s.value.clone()),
                },
            }
        }
        Kind::Scalar(s) => Value::String(s.value.clone()),
        Kind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .filter_map(|(k, v)| Some((k.scalar()?.raw.clone(), to_json(v))))
                .collect(),
        ),
        Kind::Invalid => Value::Null,
    }
}

/// One item or a list of items (`event: exchange.executed` or `event: [a, b]`).
pub fn list_or_one(node: &Node) -> Vec<&Node> {
    match &node.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    }
}

/// A value quoted for a message, shortened when long.
pub fn describe(value: &str) -> String {
    const MAX: usize = 60;
    if value.chars().count() > MAX {
        let cut: String = value.chars().take(MAX).collect();
        format!("\"{cut}…\"")
    } else {
        format!("\"{value}\"")
    }
}

/// "did you mean `x`? " when a candidate is close to `word`, else nothing.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    closest(word, candidates)
        .map(|s| format!("did you mean `{s}`? "))
        .unwrap_or_default()
}

/// The candidate closest to `word`, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(closest("wiht", &["id", "uses", "with", "if"]), Some("with"));
        assert_eq!(
            closest("timezone", &["cron", "time_zone"]),
            Some("time_zone")
        );
        assert_eq!(closest("banana", &["id", "uses", "with", "if"]), None);
    }

    #[test]
    fn describe_shortens_long_values() {
        assert_eq!(describe("abc"), "\"abc\"");
        assert!(describe(&"x".repeat(100)).ends_with("…\""));
    }
}
