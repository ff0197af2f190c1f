//! Reading a step's `with:`: the helpers every action's reader shares (literal or template
//! parameters, references to names defined in satflow.yaml, conditions, bounded decimals).
//!
//! Refusals name the field, the value, and what would be accepted; their wording is compared by
//! the check corpus tests, so it changes only on purpose.

use rust_decimal::Decimal;

use crate::config::{Names, list_names};
use crate::expr::{self, Scope};
use crate::source::reader::{boolean, describe, scalar, string};
use crate::source::{Ctx, Kind, MapReader, Node, Pos};

use super::{Action, Condition, Param};

/// Reads a step's `with:` for the action `uses`.
pub struct ActionReader<'a, 'c> {
    pub ctx: &'a mut Ctx<'c>,
    pub names: &'a Names,
    pub env: &'a minijinja::Environment<'static>,
    pub scope: Scope<'a>,
    /// The field path of `with`, e.g. `steps[1].with`.
    pub prefix: String,
}

impl ActionReader<'_, '_> {
    /// `with_node` is `None` when the step has no `with:`. `uses_pos` locates refusals that
    /// concern the action as a whole.
    pub fn read(
        &mut self,
        uses: &str,
        uses_pos: Pos,
        with_node: Option<&Node>,
        uses_field: &str,
    ) -> Option<Action> {
        let empty = Node {
            pos: uses_pos,
            kind: Kind::Map(Vec::new()),
        };
        let node = with_node.unwrap_or(&empty);
        let what = self.prefix.clone();
        let mut m = MapReader::new(node, what, self.ctx)?;
        let needs_pocket = uses.starts_with("pocket.");
        if needs_pocket && !self.names.has_pocket {
            self.ctx.error(
                uses_pos,
                format!("{uses_field}: {uses} talks to Pocket, but satflow.yaml has no `pocket` section; add pocket: {{ client_id: ${{POCKET_CLIENT_ID}} }}"),
            );
        }
        if uses == "email" && !self.names.has_email {
            self.ctx.error(
                uses_pos,
                format!("{uses_field}: email needs the `email` section of satflow.yaml (smtp_url or dir, from, to); add it"),
            );
        }
        let action = super::read_action(uses, self, &mut m);
        m.finish(self.ctx);
        action
    }

    pub fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }

    /// A literal parsed by `parse`, or a template compiled and checked now, parsed at run time.
    pub fn param<T, E: std::fmt::Display>(
        &mut self,
        node: &Node,
        key: &str,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> Option<Param<T>> {
        let field = self.field(key);
        let s = scalar(node, &field, self.ctx)?;
        if s.is_template() {
            return match expr::check_template(self.env, &s.value, &self.scope) {
                Ok(()) => Some(Param::Template(s.value.clone())),
                Err(e) => {
                    self.ctx.error(node.pos, format!("{field}: {e}"));
                    None
                }
            };
        }
        match parse(&s.value) {
            Ok(v) => Some(Param::Value(v)),
            Err(e) => {
                self.ctx.error(node.pos, format!("{field}: {e}"));
                None
            }
        }
    }

    /// A name defined in satflow.yaml (a wallet, node or provider); never a template.
    pub fn reference(
        &mut self,
        node: &Node,
        key: &str,
        section: &str,
        defined: &mut dyn Iterator<Item = &String>,
    ) -> Option<String> {
        let field = self.field(key);
        let name = string(node, &field, self.ctx)?;
        let defined: Vec<&String> = defined.collect();
        if defined.iter().any(|d| **d == name) {
            return Some(name);
        }
        self.ctx.error(
            node.pos,
            format!(
                "{field}: {} is not defined under `{section}:` in satflow.yaml; defined: {}",
                describe(&name),
                list_names(defined.into_iter())
            ),
        );
        None
    }

    pub fn condition(&mut self, node: &Node, key: &str) -> Option<Condition> {
        let field = self.field(key);
        let s = scalar(node, &field, self.ctx)?;
        if s.style == crate::source::ScalarStyle::Plain && !s.is_template() {
            return boolean(node, &field, self.ctx).map(Condition::Fixed);
        }
        match expr::check_condition(self.env, &s.value, &self.scope) {
            Ok(()) => Some(Condition::Expression(s.value.clone())),
            Err(e) => {
                self.ctx.error(node.pos, format!("{field}: {e}"));
                None
            }
        }
    }

    pub fn decimal(
        &mut self,
        node: &Node,
        key: &str,
        min: Decimal,
        max: Decimal,
        accepted: &str,
    ) -> Option<Decimal> {
        let field = self.field(key);
        let text = string(node, &field, self.ctx)?;
        match Decimal::from_str_exact(text.trim()) {
            Ok(d) if d >= min && d <= max => Some(d),
            _ => {
                self.ctx.error(
                    node.pos,
                    format!(
                        "{field}: {} is not a number in range; accepted: {accepted}",
                        describe(&text)
                    ),
                );
                None
            }
        }
    }

    pub fn template_text(&mut self, node: &Node, key: &str) -> Option<String> {
        let field = self.field(key);
        let text = string(node, &field, self.ctx)?;
        match expr::check_template(self.env, &text, &self.scope) {
            Ok(()) => Some(text),
            Err(e) => {
                self.ctx.error(node.pos, format!("{field}: {e}"));
                None
            }
        }
    }
}
