//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde-based YAML readers stop at the first error, lose positions once a value is
//! deserialised, and turn `0.015` into a float; satflow needs all problems, each with its line
//! and column, and the exact text of every number. So the document is built from yaml-rust2's
//! parser events into this tree, and meaning is given to it later by hand-written readers.
//! This is the only place that touches the YAML library.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::Ctx;

/// A position in a file, both 1-based, as editors count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };

    fn from_marker(m: &Marker) -> Pos {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos {
            line: m.line().max(1),
            col: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    /// Written bare: `0.015`, `true`, `~` — the only style that can mean null, a bool or a number.
    Plain,
    /// Quoted or a block scalar: always a string.
    Quoted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    /// The text as written in the file (before `${…}` interpolation).
    pub raw: String,
    /// The text after interpolation; equal to `raw` for keys and for text without `${`.
    pub value: String,
    pub style: ScalarStyle,
    /// The values `${…}` put into `value`: secrets, possibly, to hide wherever `value` is shown.
    pub expanded: Vec<String>,
}

impl Scalar {
    pub fn is_null(&self) -> bool {
        self.style == ScalarStyle::Plain
            && matches!(self.raw.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }

    /// Minijinja syntax in the text as written; text that arrives through `${…}` is data and is
    /// never treated as a template.
    pub fn is_template(&self) -> bool {
        self.raw.contains("{{") || self.raw.contains("{%")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
    /// A value that already produced a diagnostic (an undefined `${VAR}`, say): readers skip it
    /// silently so that one mistake is reported once.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub pos: Pos,
    pub kind: Kind,
}

impl Node {
    pub fn scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar(s) if s.is_null())
    }

    /// What kind of value this is, in words, for messages like "expected a list, found a mapping".
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar(s) if s.is_null() => "nothing",
            Kind::Scalar(_) => "a single value",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
            Kind::Invalid => "an invalid value",
        }
    }
}

/// Parses one YAML document. Syntax errors and structural problems (duplicate keys, several
/// documents, non-scalar keys) are reported through `ctx`; `None` means nothing usable was read.
pub fn parse_yaml(text: &str, ctx: &mut Ctx<'_>) -> Option<Node> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(err) = parser.load(&mut builder, true) {
        ctx.error(
            Pos::from_marker(err.marker()),
            format!("YAML syntax error: {}", err.info()),
        );
        return None;
    }
    for problem in builder.problems {
        ctx.error(problem.0, problem.1);
    }
    if builder.over_limit {
        // Only part of the document was built: reading on would report its holes as mistakes.
        return None;
    }
    match builder.documents.len() {
        0 => {
            ctx.error(Pos::START, "the file is empty; expected a YAML mapping");
            None
        }
        _ => builder.documents.into_iter().next(),
    }
}

enum Frame {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<Node>),
}

/// The most nodes a document may have once its aliases are expanded. Real configurations and
/// workflows have a few hundred; a "billion laughs" document (each alias repeating the one
/// before it ten times) reaches millions in a few lines and would take the memory of the machine.
pub const MAX_NODES: usize = 100_000;
/// The deepest nesting of lists and mappings. Real files nest five or six levels; the bound
/// keeps every reader that walks the tree (recursively) far from the end of its stack.
pub const MAX_DEPTH: usize = 64;

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Each anchor's node, with its size and height once expanded.
    anchors: HashMap<usize, (Node, usize, usize)>,
    documents: Vec<Node>,
    problems: Vec<(Pos, String)>,
    /// Nodes built so far, aliases counted at their expanded size.
    nodes: usize,
    /// Set once a limit is passed: the rest of the document is skipped.
    over_limit: bool,
    /// How deep inside a skipped (too deep) collection the parser is.
    skipping: usize,
}

/// The number of nodes in a tree and its height (a scalar is 1 high).
fn measure(node: &Node) -> (usize, usize) {
    match &node.kind {
        Kind::Seq(items) => items.iter().fold((1, 1), |(n, h), item| {
            let (m, d) = measure(item);
            (n + m, h.max(d + 1))
        }),
        Kind::Map(entries) => entries.iter().fold((1, 1), |(n, h), (k, v)| {
            let (mk, dk) = measure(k);
            let (mv, dv) = measure(v);
            (n + mk + mv, h.max(dk.max(dv) + 1))
        }),
        _ => (1, 1),
    }
}

impl Builder {
    fn refuse(&mut self, pos: Pos, message: String) {
        if !self.over_limit {
            self.over_limit = true;
            self.problems.push((pos, message));
        }
    }

    fn finish_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let (size, height) = measure(&node);
            self.anchors.insert(anchor, (node.clone(), size, height));
        }
        match self.stack.last_mut() {
            Some(Frame::Seq(_, _, items)) | Some(Frame::Map(_, _, items)) => items.push(node),
            None => {
                if self.documents.len() == 1 {
                    self.problems.push((
                        node.pos,
                        "a second YAML document (after `---`) is not allowed; put one workflow or config in each file".into(),
                    ));
                }
                self.documents.push(node);
            }
        }
    }

    fn close_map(&mut self, pos: Pos, anchor: usize, flat: Vec<Node>) {
        let mut entries: Vec<(Node, Node)> = Vec::with_capacity(flat.len() / 2);
        let mut it = flat.into_iter();
        while let (Some(key), Some(value)) = (it.next(), it.next()) {
            match &key.kind {
                Kind::Scalar(k) => {
                    if let Some((first, _)) = entries
                        .iter()
                        .find(|(e, _)| e.scalar().is_some_and(|s| s.raw == k.raw))
                    {
                        self.problems.push((
                            key.pos,
                            format!(
                                "duplicate key `{}` (first written at line {}); remove one of them",
                                k.raw, first.pos.line
                            ),
                        ));
                        continue;
                    }
                }
                _ => {
                    self.problems.push((
                        key.pos,
                        format!("a key must be a plain name, found {}", key.kind_name()),
                    ));
                    continue;
                }
            }
            entries.push((key, value));
        }
        // yaml-rust2 marks a block mapping after its first key; a flow mapping at its `{`.
        // The earlier of the two is where the user sees the mapping begin.
        let pos = entries.first().map_or(pos, |(k, _)| pos.min(k.pos));
        self.finish_node(
            Node {
                pos,
                kind: Kind::Map(entries),
            },
            anchor,
        );
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(&mark);
        if self.skipping > 0 {
            match ev {
                Event::SequenceStart(..) | Event::MappingStart(..) => self.skipping += 1,
                Event::SequenceEnd | Event::MappingEnd => self.skipping -= 1,
                _ => {}
            }
            return;
        }
        if self.over_limit {
            // One refusal is enough; the tree is not returned, so nothing more is built.
            return;
        }
        match ev {
            Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
                self.refuse(
                    pos,
                    format!("lists and mappings are nested more than {MAX_DEPTH} levels deep here; satflow files need a handful — flatten this value"),
                );
                self.skipping = 1;
                return;
            }
            Event::Scalar(..) => self.nodes += 1,
            Event::SequenceStart(..) | Event::MappingStart(..) => self.nodes += 1,
            _ => {}
        }
        if self.nodes > MAX_NODES {
            self.refuse(
                pos,
                format!("the document has more than {MAX_NODES} values; satflow files have a few hundred — is this the right file?"),
            );
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let style = match style {
                    TScalarStyle::Plain => ScalarStyle::Plain,
                    _ => ScalarStyle::Quoted,
                };
                let node = Node {
                    pos,
                    kind: Kind::Scalar(Scalar {
                        value: text.clone(),
                        raw: text,
                        style,
                        expanded: Vec::new(),
                    }),
                };
                self.finish_node(node, anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(pos, anchor, Vec::new())),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map(pos, anchor, Vec::new())),
            Event::SequenceEnd => {
                if let Some(Frame::Seq(start, anchor, items)) = self.stack.pop() {
                    self.finish_node(
                        Node {
                            pos: start,
                            kind: Kind::Seq(items),
                        },
                        anchor,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(start, anchor, items)) = self.stack.pop() {
                    self.close_map(start, anchor, items);
                }
            }
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some((_, size, _)) if self.nodes + size > MAX_NODES => {
                        self.refuse(
                            pos,
                            format!("aliases (`*name`) expand this document beyond {MAX_NODES} values, as an \"alias bomb\" does; write the values out, or use fewer aliases"),
                        );
                        return;
                    }
                    Some((_, _, height)) if self.stack.len() + height > MAX_DEPTH => {
                        self.refuse(
                            pos,
                            format!("this alias nests lists and mappings more than {MAX_DEPTH} levels deep; flatten the anchored value"),
                        );
                        return;
                    }
                    Some((found, size, _)) => {
                        self.nodes += size;
                        Node {
                            pos,
                            kind: found.kind.clone(),
                        }
                    }
                    None => {
                        self.problems
                            .push((pos, "this alias refers to an unknown anchor".into()));
                        Node {
                            pos,
                            kind: Kind::Invalid,
                        }
                    }
                };
                self.finish_node(node, 0);
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Diagnostics;
    use std::path::Path;

    fn parse(text: &str) -> (Option<Node>, Vec<String>) {
        let mut diags = Diagnostics::default();
        let mut ctx = Ctx {
            path: Path::new("t.yaml"),
            diags: &mut diags,
        };
        let node = parse_yaml(text, &mut ctx);
        (node, diags.sorted().iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn positions_are_one_based_and_point_at_the_value() {
        let (node, problems) = parse("name: x\nsteps:\n  - uses: email\n");
        assert!(problems.is_empty(), "{problems:?}");
        let Kind::Map(entries) = node.unwrap().kind else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0.pos, Pos { line: 1, col: 1 });
        assert_eq!(entries[0].1.pos, Pos { line: 1, col: 7 });
        let Kind::Seq(steps) = &entries[1].1.kind else {
            panic!("not a seq")
        };
        let Kind::Map(step) = &steps[0].kind else {
            panic!("not a map")
        };
        assert_eq!(step[0].0.pos, Pos { line: 3, col: 5 });
        assert_eq!(step[0].1.pos, Pos { line: 3, col: 11 });
        // A block mapping begins at its first key, a flow mapping at its brace.
        assert_eq!(steps[0].pos, Pos { line: 3, col: 5 });
        let (node, _) = parse("a:\n  x: 1\nb: { y: 2 }\n");
        let Kind::Map(entries) = node.unwrap().kind else {
            panic!()
        };
        assert_eq!(entries[0].1.pos, Pos { line: 2, col: 3 });
        assert_eq!(entries[1].1.pos, Pos { line: 3, col: 4 });
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        let (node, _) = parse("fee_rate: 0.0150\n");
        let Kind::Map(entries) = node.unwrap().kind else {
            panic!()
        };
        let s = entries[0].1.scalar().unwrap();
        assert_eq!(s.raw, "0.0150");
        assert_eq!(s.style, ScalarStyle::Plain);
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_are_reported_with_positions() {
        let (_, problems) = parse("a: 1\nb: 2\na: 3\n");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("t.yaml:3:1: duplicate key `a` (first written at line 1)"));

        let (node, problems) = parse("a: [1, 2\nb: 3\n");
        assert!(node.is_none());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("YAML syntax error"), "{problems:?}");
    }

    #[test]
    fn aliases_are_resolved_and_extra_documents_refused() {
        let (node, problems) = parse("a: &x {k: v}\nb: *x\n");
        assert!(problems.is_empty());
        let Kind::Map(entries) = node.unwrap().kind else {
            panic!()
        };
        assert_eq!(entries[0].1.kind, entries[1].1.kind);

        let (_, problems) = parse("a: 1\n---\nb: 2\n");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("second YAML document"));
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused_quickly() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for pair in names.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            bomb.push_str(&format!(
                "{next}: &{next} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        // Expanded, this would be ten billion values: the test finishing at all is the point.
        let (node, problems) = parse(&bomb);
        assert!(node.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("alias bomb"), "{problems:?}");

        let deep = format!("a: {}1{}\n", "[".repeat(200), "]".repeat(200));
        let (node, problems) = parse(&deep);
        assert!(node.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("t.yaml:1:"), "{problems:?}");
        assert!(problems[0].contains("more than 64 levels"), "{problems:?}");

        let (node, problems) = parse("a: &x [1, [2, [3]]]\nb: [*x, *x]\n");
        assert!(node.is_some() && problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn the_fuzzers_alias_bomb_is_refused() {
        // fuzz/regressions/yaml/alias-bomb: it exhausted memory before aliases were bounded.
        let (node, problems) = parse(include_str!("../../fuzz/regressions/yaml/alias-bomb"));
        assert!(node.is_none());
        assert!(
            problems.iter().any(|p| p.contains("alias bomb")),
            "{problems:?}"
        );
    }
}
