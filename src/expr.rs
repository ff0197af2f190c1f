//! `if:` conditions and templated `with:` values (minijinja), and the names they may use.
//!
//! `check` compiles every expression and template here and refuses variables that cannot exist
//! when the step runs: unknown roots, steps that do not exist or run later, outputs an action
//! never produces. Evaluation happens in the engine; this module only knows the language.

use minijinja::Environment;

/// The variables a workflow's expressions may use.
pub const ROOTS: [&str; 4] = ["event", "steps", "run", "workflow"];

/// The shared minijinja environment: strict about undefined values, so a typo in a name fails
/// the step instead of silently rendering as empty.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

/// A JSON context (`event`, `steps`, `run`, `workflow`) as minijinja sees it. Converted by
/// hand: serde_json keeps numbers as exact text (for money), which minijinja's serde bridge
/// would turn into maps. Whole numbers become integers; others floats, which expressions
/// compare and templates print well (exact amounts stay exact in the database, not here).
pub fn context(ctx: &serde_json::Value) -> minijinja::Value {
    use serde_json::Value as J;
    match ctx {
        J::Null => minijinja::Value::from(()),
        J::Bool(b) => minijinja::Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => minijinja::Value::from(i),
            (None, Some(u), _) => minijinja::Value::from(u),
            (None, None, Some(f)) => minijinja::Value::from(f),
            _ => minijinja::Value::from(n.to_string()),
        },
        J::String(s) => minijinja::Value::from(s.as_str()),
        J::Array(items) => items.iter().map(context).collect::<Vec<_>>().into(),
        J::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), context(v)))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into(),
    }
}

/// Evaluates a condition (`if:`, `active:`), bare or wrapped in `{{ }}`.
pub fn eval_condition(
    env: &Environment<'_>,
    text: &str,
    ctx: &serde_json::Value,
) -> Result<bool, String> {
    let source =
        condition_source(text).ok_or_else(|| format!("\"{text}\" is not one expression"))?;
    let expr = env
        .compile_expression(source)
        .map_err(|e| format!("\"{source}\" does not compile: {}", error_text(&e)))?;
    expr.eval(context(ctx))
        .map(|v| v.is_true())
        .map_err(|e| format!("\"{source}\" cannot be evaluated: {}", error_text(&e)))
}

/// Renders a template with the context.
pub fn render(
    env: &Environment<'_>,
    text: &str,
    ctx: &serde_json::Value,
) -> Result<String, String> {
    env.render_str(text, context(ctx))
        .map_err(|e| format!("cannot render \"{text}\": {}", error_text(&e)))
}

/// What an expression may refer to at one step: the steps before it and what each outputs.
pub struct Scope<'a> {
    /// `(id, outputs)` of the steps that run before this one; empty outputs mean "unknown" (a
    /// step that has problems of its own) and are not checked.
    pub earlier: &'a [(String, &'static [&'static str])],
    /// Every step id of the workflow, to tell "runs later" from "does not exist".
    pub all_ids: &'a [String],
}

/// The expression inside `{{ … }}`, or the text itself when written bare.
/// `None` when the text mixes templates and plain text, which a condition cannot be.
pub fn condition_source(text: &str) -> Option<&str> {
    let t = text.trim();
    if let Some(inner) = t.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
        return (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim());
    }
    (!t.contains("{{") && !t.contains("{%")).then_some(t)
}

/// Compiles a condition (`if:`, `active:`) and checks its variables.
pub fn check_condition(env: &Environment<'_>, text: &str, scope: &Scope<'_>) -> Result<(), String> {
    let Some(source) = condition_source(text) else {
        return Err(format!(
            "\"{text}\" mixes text and `{{{{ }}}}`; a condition is one expression, e.g. \"{{{{ steps.price.price < 60000 }}}}\""
        ));
    };
    if source.is_empty() {
        return Err(
            "the condition is empty; write an expression such as \"{{ steps.order.created }}\""
                .into(),
        );
    }
    let expr = env
        .compile_expression(source)
        .map_err(|e| format!("\"{source}\" does not compile: {}", error_text(&e)))?;
    check_variables(expr.undeclared_variables(true), scope)
}

/// Compiles an `on.if` condition: one expression over `event` only (nothing has run yet), e.g.
/// `{{ event.payout_kind == 'lightning' }}`.
pub fn check_event_condition(env: &Environment<'_>, text: &str) -> Result<(), String> {
    let scope = Scope {
        earlier: &[],
        all_ids: &[],
    };
    // The form and the syntax first (empty, mixed text, does not compile), then the roots.
    let source = match condition_source(text) {
        Some(source) if !source.is_empty() => source,
        _ => return check_condition(env, text, &scope),
    };
    let expr = env
        .compile_expression(source)
        .map_err(|e| format!("\"{source}\" does not compile: {}", error_text(&e)))?;
    let mut vars: Vec<String> = expr.undeclared_variables(false).into_iter().collect();
    crate::sorting::sort(&mut vars);
    match vars.into_iter().find(|v| v != "event") {
        Some(root) => Err(format!(
            "`{root}` is not known when an event arrives; an `on.if` sees only `event` (e.g. \"{{{{ event.payout_kind == 'lightning' }}}}\", event.currency, event.cost)"
        )),
        None => Ok(()),
    }
}

/// Compiles a template (an email body, a templated parameter) and checks its variables.
pub fn check_template(env: &Environment<'_>, text: &str, scope: &Scope<'_>) -> Result<(), String> {
    check_template_with(env, text, scope, &[])
}

/// As `check_template`, for a template that also sees the variables `extra`.
pub fn check_template_with(
    env: &Environment<'_>,
    text: &str,
    scope: &Scope<'_>,
    extra: &[&str],
) -> Result<(), String> {
    if let Some(tag) = loading_tag(text) {
        return Err(format!(
            "`{{% {tag} %}}` loads another template, and satflow has no template files to load from: it could only fail when the step runs; write the text out here (or use `template: NAME` in the step)"
        ));
    }
    let template = env
        .template_from_str(text)
        .map_err(|e| format!("template does not compile: {}", error_text(&e)))?;
    let vars = template
        .undeclared_variables(true)
        .into_iter()
        .filter(|v| !extra.contains(&v.split('.').next().unwrap_or_default()));
    check_variables(vars, scope)
}

/// The first tag that loads another template (`include`, `import`, `from`, `extends`), if any:
/// templates are compiled from strings, with no loader, so such a tag can only fail at run time.
pub fn loading_tag(text: &str) -> Option<&'static str> {
    let mut rest = text;
    while let Some(start) = rest.find("{%") {
        rest = &rest[start + 2..];
        let inner = rest.trim_start_matches(['-', '+']).trim_start();
        let word: String = inner
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        for tag in ["include", "import", "from", "extends"] {
            if word == tag {
                return Some(tag);
            }
        }
    }
    None
}

fn error_text(err: &minijinja::Error) -> String {
    match err.detail() {
        Some(detail) => format!("{} ({detail})", err.kind()),
        None => err.kind().to_string(),
    }
}

fn check_variables(
    vars: impl IntoIterator<Item = String>,
    scope: &Scope<'_>,
) -> Result<(), String> {
    let mut vars: Vec<String> = vars.into_iter().collect();
    crate::sorting::sort(&mut vars);
    for var in vars {
        let mut parts = var.split('.');
        let root = parts.next().unwrap_or_default();
        if !ROOTS.contains(&root) {
            return Err(format!(
                "unknown variable `{root}`; in scope: {}",
                ROOTS.join(", ")
            ));
        }
        if root != "steps" {
            continue;
        }
        let Some(id) = parts.next() else {
            continue;
        };
        let Some((_, outputs)) = scope.earlier.iter().find(|(e, _)| e == id) else {
            let earlier: Vec<&str> = scope.earlier.iter().map(|(e, _)| e.as_str()).collect();
            let earlier = if earlier.is_empty() {
                "none".to_string()
            } else {
                earlier.join(", ")
            };
            return Err(if scope.all_ids.iter().any(|a| a == id) {
                format!(
                    "`steps.{id}` is not available here: step `{id}` runs later; steps before this one: {earlier}"
                )
            } else {
                format!(
                    "`steps.{id}`: there is no step with id `{id}`; steps before this one: {earlier}"
                )
            });
        };
        if let Some(field) = parts.next()
            && !outputs.is_empty()
            && !outputs.contains(&field)
        {
            return Err(format!(
                "`steps.{id}.{field}`: step `{id}` has no output `{field}`; its outputs: {}",
                outputs.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_with_price<'a>(
        earlier: &'a [(String, &'static [&'static str])],
        all: &'a [String],
    ) -> Scope<'a> {
        Scope {
            earlier,
            all_ids: all,
        }
    }

    #[test]
    fn json_contexts_keep_numbers_as_numbers() {
        let env = environment();
        let ctx = serde_json::json!({"steps": {"p": {"status": 200, "price": 59999.5, "ok": true, "list": [1, 2]}}});
        assert!(
            eval_condition(
                &env,
                "steps.p.status == 200 and steps.p.price < 60000",
                &ctx
            )
            .unwrap()
        );
        assert!(eval_condition(&env, "steps.p.ok", &ctx).unwrap());
        assert_eq!(
            render(
                &env,
                "{{ steps.p.list | length }} {{ steps.p.price }}",
                &ctx
            )
            .unwrap(),
            "2 59999.5"
        );
    }

    #[test]
    fn conditions_may_be_wrapped_or_bare() {
        assert_eq!(condition_source("{{ a < 1 }}"), Some("a < 1"));
        assert_eq!(condition_source("a < 1"), Some("a < 1"));
        assert_eq!(condition_source("price {{ a }}"), None);
    }

    #[test]
    fn checks_roots_steps_and_outputs() {
        let env = environment();
        let earlier = vec![("price".to_string(), &["price", "currency"][..])];
        let all = vec!["price".to_string(), "order".to_string(), "mail".to_string()];
        let scope = scope_with_price(&earlier, &all);
        assert!(check_condition(&env, "{{ steps.price.price < 60000 }}", &scope).is_ok());
        assert!(
            check_condition(
                &env,
                "event.name == 'exchange.executed' and run.id > 0",
                &scope
            )
            .is_ok()
        );
        let err = check_condition(&env, "{{ steps.price.prize < 1 }}", &scope).unwrap_err();
        assert!(
            err.contains("no output `prize`") && err.contains("price, currency"),
            "{err}"
        );
        let err = check_condition(&env, "{{ steps.order.created }}", &scope).unwrap_err();
        assert!(err.contains("runs later"), "{err}");
        let err = check_condition(&env, "{{ steps.nope.x }}", &scope).unwrap_err();
        assert!(err.contains("no step with id `nope`"), "{err}");
        let err = check_condition(&env, "{{ prices.eur }}", &scope).unwrap_err();
        assert!(err.contains("unknown variable `prices`"), "{err}");
        let err = check_condition(&env, "{{ steps.price.price < }}", &scope).unwrap_err();
        assert!(err.contains("does not compile"), "{err}");
    }

    #[test]
    fn templates_are_compiled_and_checked() {
        let env = environment();
        let earlier = vec![];
        let all = vec![];
        let scope = scope_with_price(&earlier, &all);
        assert!(check_template(&env, "Order for {{ workflow.name }}", &scope).is_ok());
        assert!(
            check_template(&env, "{% if x %}", &scope)
                .unwrap_err()
                .contains("does not compile")
        );
        // Names set inside the template are not variables from outside.
        assert!(
            check_template(
                &env,
                "{% for s in event.items %}{{ s }}{% endfor %}",
                &scope
            )
            .is_ok()
        );
    }

    #[test]
    fn templates_that_load_other_templates_are_refused() {
        let env = environment();
        let scope = scope_with_price(&[], &[]);
        for text in [
            "{% include 'x.txt' %}",
            "a {%- import 'm' as m %}",
            "{% from 'm' import f %}",
            "{%extends \"base\" %}",
        ] {
            let err = check_template(&env, text, &scope).unwrap_err();
            assert!(err.contains("loads another template"), "{text}: {err}");
        }
        assert_eq!(loading_tag("{% if included %}x{% endif %}"), None);
    }
}
