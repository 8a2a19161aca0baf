//! The template language (minijinja) of workload objects, customizations and Helm values:
//! one environment, compiled templates, and expanding the string leaves of a value.
//!
//! Every distinct template text of the source is compiled once, before any cluster is
//! rendered; rendering a cluster only evaluates. Strict: an undefined variable is an
//! error. Sandboxed: no loader (no file access), no environment, no network; fuel stops
//! runaway loops and a cap bounds the output.

use std::collections::HashMap;
use std::io;

use minijinja::{Environment, Expression, Template, UndefinedBehavior};
use serde_json::Value;

use crate::yaml::Step;

mod sets;
pub use sets::{MAX_DEPTH, add_template};

/// What one evaluation may spend before it is stopped: minijinja charges a unit per
/// instruction and per 64 bytes of data it creates, so this bounds both time and memory
/// (about 6 MB) while the values grow, not once they are written.
pub const FUEL: u64 = 100_000;
/// Largest text one template may produce.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// Whether a string is a template at all. Strings without `{{` or `{%` are never touched,
/// so `${VAR}` and shell snippets pass through.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// The expression of a string that is exactly one `{{ expression }}`: such a string
/// yields the expression's own value (a number stays a number).
pub fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    let nested = ["{{", "}}", "{%", "%}", "{#", "#}"].iter().any(|m| inner.contains(m));
    (!nested).then(|| inner.trim())
}

pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(64);
    sets::install(&mut env);
    env
}

enum Compiled<'env, 'src> {
    Expression(Expression<'env, 'src>),
    Template(Template<'env, 'src>),
    /// A template with `{% set %}`s, rewritten to check them: kept in [`Templates::owned`]
    /// under this name, as the rewritten text is not the source's.
    Owned(String),
}

/// The compiled templates of a source, keyed by their text.
pub struct Templates<'env, 'src> {
    compiled: HashMap<&'src str, Compiled<'env, 'src>>,
    /// A copy of the environment holding the rewritten templates, made on the first one.
    owned: Option<Environment<'static>>,
}

impl<'env, 'src> Templates<'env, 'src> {
    /// Compile every text; the first syntax error is returned with its text.
    pub fn compile(
        env: &'env Environment<'static>,
        texts: impl IntoIterator<Item = &'src str>,
    ) -> Result<Self, (&'src str, String)> {
        let mut compiled = HashMap::new();
        let mut owned: Option<Environment<'static>> = None;
        for text in texts {
            if compiled.contains_key(text) {
                continue;
            }
            let c = match single_expression(text) {
                Some(expr) => env.compile_expression_owned(expr.to_string()).map(Compiled::Expression),
                None => match sets::checked_sets(text) {
                    None => env.template_from_str(text).map(Compiled::Template),
                    // Compiled as written first, so that a syntax error reads as written.
                    Some(checked) => env.template_from_str(text).and_then(|_| {
                        let name = format!("template {}", compiled.len());
                        let owned = owned.get_or_insert_with(|| env.clone());
                        owned
                            .add_template_owned(name.clone(), checked)
                            .map(|()| Compiled::Owned(name))
                    }),
                },
            }
            .map_err(|e| (text, describe(&e)))?;
            compiled.insert(text, c);
        }
        Ok(Templates { compiled, owned })
    }

    /// Evaluate one template text. Single expressions keep their type.
    pub fn expand(&self, text: &str, context: &minijinja::Value) -> Result<Value, String> {
        match self.compiled.get(text) {
            Some(Compiled::Expression(expr)) => {
                let value = expr.eval(context.clone()).map_err(|e| describe(&e))?;
                if value.is_undefined() {
                    return Err("undefined value".into());
                }
                let json = serde_json::to_value(&value).map_err(|e| e.to_string())?;
                if serde_json::to_vec(&json).map(|v| v.len()).unwrap_or(0) > MAX_OUTPUT_BYTES {
                    return Err(format!("output is larger than {MAX_OUTPUT_BYTES} bytes"));
                }
                Ok(json)
            }
            Some(Compiled::Template(template)) => render_capped(template, context.clone())
                .map(Value::String)
                .map_err(|e| describe(&e)),
            Some(Compiled::Owned(name)) => self
                .owned
                .as_ref()
                .expect("an owned template has its environment")
                .get_template(name)
                .and_then(|template| render_capped(&template, context.clone()))
                .map(Value::String)
                .map_err(|e| describe(&e)),
            None => Err("internal error: template was not compiled".into()),
        }
    }
}

/// Render a whole template, stopped as soon as its output passes [`MAX_OUTPUT_BYTES`] (the
/// values it builds on the way are bounded by the fuel, which minijinja charges per byte too).
pub fn render_capped(template: &Template<'_, '_>, context: minijinja::Value) -> Result<String, minijinja::Error> {
    let mut out = CappedWriter::default();
    sets::forget();
    let rendered = template.render_captured_to(context, &mut out);
    sets::forget();
    match rendered {
        Ok(_) => String::from_utf8(out.buf)
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::BadSerialization, e.to_string())),
        Err(_) if out.overflow => Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("output is larger than {MAX_OUTPUT_BYTES} bytes"),
        )),
        Err(e) => Err(e),
    }
}

/// minijinja's message without its "(in <string>:1)" suffix: we say where ourselves.
fn describe(e: &minijinja::Error) -> String {
    let mut text = match e.detail() {
        // "undefined value: `x.y` is undefined" says it twice.
        Some(detail) if e.kind() == minijinja::ErrorKind::UndefinedError => detail.to_string(),
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(i) = text.find(" (in ") {
        text.truncate(i);
    }
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        text = format!(
            "{text} (the template used up its budget of {FUEL} steps, a step per instruction and per 64 bytes it \
             builds; is it looping, or building a huge string?)"
        );
    }
    text
}

#[derive(Default)]
struct CappedWriter {
    buf: Vec<u8>,
    overflow: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT_BYTES {
            self.overflow = true;
            return Err(io::Error::other("template output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A path into a value, owned (the value is being changed while we walk it).
#[derive(Debug, Clone)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

impl PathSeg {
    pub fn step(&self) -> Step<'_> {
        match self {
            PathSeg::Key(k) => Step::Key(k),
            PathSeg::Index(i) => Step::Index(*i),
        }
    }
}

/// Where a template failed, its text, and why.
pub type LeafError = (Vec<PathSeg>, String, String);

/// Expand every template string leaf of `value` in place.
pub fn expand_leaves(
    value: &mut Value,
    templates: &Templates<'_, '_>,
    context: &minijinja::Value,
    path: &mut Vec<PathSeg>,
) -> Result<(), LeafError> {
    match value {
        Value::String(s) if is_template(s) => {
            *value = templates.expand(s, context).map_err(|e| (path.clone(), s.clone(), e))?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(PathSeg::Index(i));
                expand_leaves(item, templates, context, path)?;
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                path.push(PathSeg::Key(k.clone()));
                expand_leaves(v, templates, context, path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// Call `f` with every template string leaf and its path.
pub fn collect_templates<'v>(value: &'v Value, path: &mut Vec<Step<'v>>, f: &mut impl FnMut(&'v str, &[Step<'v>])) {
    match value {
        Value::String(s) if is_template(s) => f(s, path),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Index(i));
                collect_templates(item, path, f);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                path.push(Step::Key(k));
                collect_templates(v, path, f);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expand(text: &str, ctx: Value) -> Result<Value, String> {
        let env = environment();
        let t = Templates::compile(&env, [text]).map_err(|(_, e)| e)?;
        t.expand(text, &minijinja::Value::from(minijinja::value::Serde(&ctx)))
    }

    #[test]
    fn single_expressions_keep_their_type() {
        let ctx = json!({"p": {"replicas": 3, "m": {"a": 1}, "s": "x"}});
        assert_eq!(expand("{{ p.replicas }}", ctx.clone()).unwrap(), json!(3));
        assert_eq!(expand("  {{- p.m -}} ", ctx.clone()).unwrap(), json!({"a": 1}));
        assert_eq!(expand("n={{ p.replicas }}", ctx.clone()).unwrap(), json!("n=3"));
        assert_eq!(expand("{{ p.s }}{{ p.s }}", ctx).unwrap(), json!("xx"));
    }

    #[test]
    fn undefined_is_an_error() {
        let e = expand("{{ p.missing }}", json!({"p": {}})).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
        let e = expand("a {{ p.missing }}", json!({"p": {}})).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
    }

    #[test]
    fn runaway_templates_stop() {
        let e = expand(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            json!({}),
        )
        .unwrap_err();
        assert!(e.contains("fuel"), "{e}");
        let e = expand("{{ 'x' * 500000 }}{{ 'x' * 600000 }} tail", json!({})).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    /// Values that double are stopped while they grow (minijinja charges fuel per byte), long
    /// before they reach the output cap or the machine's memory: each of these would build
    /// 2^40 bytes or more.
    #[test]
    fn doubling_strings_stop_while_they_grow() {
        for text in [
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
            "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}{{ d('ab', 60) }}",
            "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}{{ d('ab', 40) }}",
            "{{ ('x' * 100000000)|length }}",
            "{{ ('ab'|indent(100000000))|length }}",
            "{{ (range(100000)|join('x' * 64))|length }}",
        ] {
            let started = std::time::Instant::now();
            let e = expand(text, json!({})).unwrap_err();
            assert!(e.contains("budget") || e.contains("recursion limit"), "{text}: {e}");
            assert!(started.elapsed() < std::time::Duration::from_secs(2), "{text}");
        }
        // The same constructs at a sane size are fine.
        let ok = "{% set ns = namespace(s='ab') %}{% for i in range(10) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
        assert_eq!(expand(ok, json!({})).unwrap(), json!("2048"));
    }

    /// A namespace stored in itself, by any path, would recurse without end when printed
    /// (the process died of a stack overflow); values nested level by level in a loop are
    /// stopped too.
    #[test]
    fn sets_cannot_build_cycles_or_towers() {
        for text in [
            "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}",
            "{% set ns = namespace() %}{% set ns.l = [1, {'a': ns}] %}{{ ns == ns }}",
            "{% set a = namespace() %}{% set b = namespace(a=a) %}{% set a.b = b %}{{ a|tojson }}",
            "{% set ns = namespace() %}{% for x in [1, 2, ns] %}{% set ns.l = loop %}{% endfor %}{{ ns|tojson }}",
            "{% set ns = namespace() %}{% set ns.a | batch(3, ns) %}ab{% endset %}{{ ns }}",
            "{% set ns = namespace() %}{%- set ns.me = ns -%}{{ ns }}",
            "{% set ns = namespace() %}{% set ns.a, ns.b = 1, ns %}{{ ns }}",
            // The fuzzer's find (fuzz/regressions/templates/namespace-holding-itself).
            "{% set ns = namespace(s='ab') %}{% set ns.s5= ns%}{% for i in range(03) %}{% set ns.s5= ns.s ~ ns>=(86) %}{% endfor %}",
        ] {
            let e = expand(text, json!({})).unwrap_err();
            assert!(e.contains("may not hold a namespace or a loop"), "{text}: {e}");
        }
        let tower =
            "{% set ns = namespace(x=[]) %}{% for i in range(10000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}";
        let e = expand(tower, json!({})).unwrap_err();
        assert!(e.contains(&format!("nest at most {MAX_DEPTH} levels")), "{e}");
        let e = expand(
            "{% set x = [] %}{% set x = [[[x]]] %}{% for i in range(300) %}{% set x = [x] %}{% endfor %}",
            json!({}),
        );
        assert!(e.is_ok(), "a set inside a loop does not carry over: {e:?}");
    }

    /// What templates do with `set` every day still works, and a loop that appends stays
    /// linear (each list's depth is remembered).
    #[test]
    fn everyday_sets_still_work() {
        let ctx = json!({"items": [{"n": "a"}, {"n": "b"}], "deep": {"a": {"b": {"c": [1, [2, [3]]]}}}});
        for (text, want) in [
            (
                "{% set ns = namespace(found=false) %}{% for i in items %}{% if i.n == 'b' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}!",
                "True!",
            ),
            (
                "{% set ns = namespace(l=[]) %}{% for i in items %}{% set ns.l = ns.l + [i.n] %}{% endfor %}{{ ns.l|join(',') }}!",
                "a,b!",
            ),
            (
                "{% set ns = namespace(d=deep) %}{% set ns.e = deep.a %}{{ ns.d.a.b.c[1][1][0] }}{{ ns.e.b.c[0] }}",
                "31",
            ),
            (
                "{% set ns = namespace() %}{% set alias = ns %}{% set both = [ns, ns] %}{% set alias.x = 2 %}{{ both[1].x }}!",
                "2!",
            ),
            (
                "{%- set ns = namespace() -%}\n{%- set ns.a = 1 if true else 2 -%} {{ ns.a }}",
                "1",
            ),
            ("{% set a, b = 1, 2 %}{{ a + b }}!", "3!"),
            (
                "{% set ns = namespace() %}{% set ns.t %}text{% endset %}{% set ns.u | upper %}up{% endset %}{{ ns.t }}{{ ns.u }}",
                "textUP",
            ),
            (
                "{% set r = range(3) %}{% set ns = namespace(r=r) %}{% set ns.s = r %}{{ ns.s|list }}",
                "[0, 1, 2]",
            ),
            (
                "{# set in a comment #}{% raw %}{% set x = 1 %}{% endraw %}",
                "{% set x = 1 %}",
            ),
        ] {
            assert_eq!(expand(text, ctx.clone()).unwrap(), json!(want), "{text}");
        }
        let started = std::time::Instant::now();
        let append = "{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = ns.l + [[i]] %}{% endfor %}{{ ns.l|length }}";
        assert_eq!(expand(append, json!({})).unwrap(), json!("1000"));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    /// A broken `set` is reported as written, not as rewritten.
    #[test]
    fn set_syntax_errors_read_as_written() {
        let e = expand("{% set ns.a = %}", json!({})).unwrap_err();
        assert!(e.starts_with("syntax error"), "{e}");
        assert!(!e.contains("__starmap_set"), "{e}");
    }

    /// The two minijinja types the check refuses are private to it, and found by name: this
    /// fails if a new minijinja renames them.
    #[test]
    fn namespace_and_loop_type_names() {
        let env = environment();
        let ns = env.render_str("{{ namespace() }}", ()).unwrap();
        assert_eq!(ns, "{}");
        let names = env
            .compile_expression("namespace()")
            .unwrap()
            .eval(())
            .unwrap()
            .as_object()
            .map(|o| o.type_name())
            .unwrap();
        assert!(names.ends_with("::Namespace"), "{names}");
        // Nothing but the loop itself is in reach here: only its type name can refuse it.
        let e = expand(
            "{% set ns = namespace() %}{% for x in [1] %}{% set ns.l = loop %}{% endfor %}",
            json!({}),
        )
        .unwrap_err();
        assert!(e.contains("may not hold a namespace or a loop"), "{e}");
    }

    #[test]
    fn no_file_access() {
        assert!(expand("{% include '/etc/passwd' %}", json!({})).is_err());
    }

    #[test]
    fn detection() {
        assert!(!is_template("echo ${STORE_ID} $(date)"));
        assert_eq!(single_expression("{{ a }}"), Some("a"));
        assert_eq!(single_expression("{{ a }} {{ b }}"), None);
    }
}
