//! Every value a template keeps with `{% set %}` is checked as it is stored.
//!
//! A minijinja namespace is the one value that changes after it is made, and nothing stops
//! a template from storing a namespace in itself (`{% set ns.me = ns %}`, or through a list,
//! a second namespace or a `loop`). Printing, comparing or serializing such a value recurses
//! until the thread's stack overflows, and the process dies: no error, no message. Values
//! can also be nested level by level in a loop (`{% set ns.x = [ns.x] %}`, about 11,000
//! levels within the fuel) until the same happens in a smaller stack.
//!
//! So before a template is compiled, every `{% set target = value %}` becomes
//! `{% set target = (value)|__starmap_set(into_namespace) %}` (and a block set's filter
//! chain gets the filter last). The filter refuses a namespace or a loop stored into a
//! namespace (a cycle needs one), and any value nested deeper than [`MAX_DEPTH`]. The graph
//! is acyclic before each store, so the walk ends; lists and maps never change once made, so
//! their depth is remembered per evaluation (a loop appending to a list stays linear).

use std::cell::RefCell;
use std::collections::HashMap;

use minijinja::machinery::{Token, tokenize};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{ObjectRepr, Value};
use minijinja::{Environment, Error, ErrorKind};

/// The filter every `{% set %}` value goes through.
const FILTER: &str = "__starmap_set";
/// Deepest value a template may keep: far more than a Kubernetes object needs (a YAML
/// document is read to 128 levels), far less than the 8 MiB stack of a render thread holds.
pub const MAX_DEPTH: usize = 256;
/// Most values one store walks that are not remembered lists or maps (say a `range()`).
const MAX_WALK: usize = 1_000_000;

pub fn install(env: &mut Environment<'_>) {
    env.add_filter(FILTER, checked_set);
}

/// Add a template to `env` under `name`, its `{% set %}`s checked. The text as written is
/// compiled first, so a syntax error reads as the user wrote it.
pub fn add_template(env: &mut Environment<'static>, name: String, text: String) -> Result<(), Error> {
    let checked = checked_sets(&text);
    env.add_template_owned(name.clone(), text)?;
    if let Some(checked) = checked {
        env.add_template_owned(name, checked)?;
    }
    Ok(())
}

/// The text with each `{% set %}` value passed through [`FILTER`]; `None` when there is no
/// `set` to check, or the text does not tokenize (compiling it says why).
pub fn checked_sets(text: &str) -> Option<String> {
    if !text.contains("set") {
        return None;
    }
    let tokens = tokenize(text, false, SyntaxConfig::default())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let mut inserts: Vec<(usize, String)> = Vec::new();
    let mut i = 0;
    while i + 1 < tokens.len() {
        if !(matches!(tokens[i].0, Token::BlockStart) && matches!(tokens[i + 1].0, Token::Ident("set"))) {
            i += 1;
            continue;
        }
        // The target runs to `=` (a set), `|` (a block set's filters) or the block's end.
        let mut j = i + 2;
        let mut dotted = false;
        while j < tokens.len() && !matches!(tokens[j].0, Token::Assign | Token::Pipe | Token::BlockEnd) {
            dotted |= matches!(tokens[j].0, Token::Dot);
            j += 1;
        }
        let Some(end) = (j..tokens.len()).find(|&k| matches!(tokens[k].0, Token::BlockEnd)) else {
            break;
        };
        let check = format!("|{FILTER}({dotted})");
        match tokens[j].0 {
            Token::Assign => {
                inserts.push((tokens[j].1.end_offset as usize, "(".into()));
                inserts.push((tokens[end].1.start_offset as usize, ")".into()));
                inserts.push((tokens[end].1.start_offset as usize, check));
            }
            // A block set captures text, and its filters may add values (`batch(2, ns)`).
            Token::Pipe => inserts.push((tokens[end].1.start_offset as usize, check)),
            _ => {}
        }
        i = end + 1;
    }
    if inserts.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len() + inserts.len() * 24);
    let mut at = 0;
    for (offset, insert) in inserts {
        out.push_str(&text[at..offset]);
        out.push(' ');
        out.push_str(&insert);
        out.push(' ');
        at = offset;
    }
    out.push_str(&text[at..]);
    Some(out)
}

thread_local! {
    /// Depths of the lists and maps already walked in this evaluation, each kept alive so
    /// that its address is not reused while it is remembered.
    static KNOWN: RefCell<HashMap<usize, (usize, Value)>> = RefCell::new(HashMap::new());
}

/// Forget the depths remembered by the last evaluation on this thread (called around each).
pub fn forget() {
    KNOWN.with(|k| k.borrow_mut().clear());
}

fn checked_set(value: Value, into_namespace: bool) -> Result<Value, Error> {
    let mut walked = 0;
    KNOWN.with(|known| depth(&value, into_namespace, 0, &mut known.borrow_mut(), &mut walked))?;
    Ok(value)
}

/// Height of `value` (0 for a scalar), refusing what [`checked_set`] refuses. Also returns
/// whether it holds something that may still change (a namespace or a loop), whose depth
/// cannot be remembered.
fn depth(
    value: &Value,
    into_namespace: bool,
    above: usize,
    known: &mut HashMap<usize, (usize, Value)>,
    walked: &mut usize,
) -> Result<(usize, bool), Error> {
    if above > MAX_DEPTH {
        return depth_error();
    }
    let Some(object) = value.as_object() else {
        return Ok((0, false));
    };
    *walked += 1;
    if *walked > MAX_WALK {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("a value set in a template may hold at most {MAX_WALK} lists, maps and items"),
        ));
    }
    // Both types are private to minijinja; their names are checked by the tests below.
    let type_name = object.type_name();
    let changes = type_name.ends_with("::Namespace") || type_name.ends_with("::Loop");
    if changes && into_namespace {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "a namespace attribute may not hold a namespace or a loop (it could end up holding itself)",
        ));
    }
    let address = object
        .downcast_ref::<Vec<Value>>()
        .map(|v| v as *const _ as usize)
        .or_else(|| {
            object
                .downcast_ref::<indexmap::IndexMap<Value, Value>>()
                .map(|m| m as *const _ as usize)
        });
    if let Some((height, _)) = address.and_then(|a| known.get(&a)) {
        if above + height > MAX_DEPTH {
            return depth_error();
        }
        return Ok((*height, false));
    }
    let mut height = 0;
    let mut holds_changing = changes;
    let mut visit = |child: &Value| -> Result<(), Error> {
        let (h, c) = depth(child, into_namespace, above + 1, known, walked)?;
        height = height.max(h + 1);
        holds_changing |= c;
        Ok(())
    };
    if object.repr() == ObjectRepr::Map {
        if let Some(pairs) = object.try_iter_pairs() {
            for (key, item) in pairs {
                visit(&key)?;
                visit(&item)?;
            }
        }
    } else if matches!(object.repr(), ObjectRepr::Seq | ObjectRepr::Iterable)
        && let Some(items) = object.try_iter()
    {
        for item in items {
            visit(&item)?;
        }
    }
    if let Some(address) = address
        && !holds_changing
    {
        known.insert(address, (height, value.clone()));
    }
    Ok((height, holds_changing))
}

fn depth_error<T>() -> Result<T, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("a value set in a template may nest at most {MAX_DEPTH} levels"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path of the overridable Flux and Argo CD templates (src/gitops.rs).
    #[test]
    fn named_templates_are_checked_and_report_errors_as_written() {
        let mut env = crate::template::environment();
        add_template(
            &mut env,
            "loop.yaml".into(),
            "{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}".into(),
        )
        .unwrap();
        let e = env.get_template("loop.yaml").unwrap().render(()).unwrap_err();
        assert!(e.to_string().contains("may not hold a namespace"), "{e}");
        let e = add_template(&mut env, "bad.yaml".into(), "{% set ns.a = %}".into()).unwrap_err();
        assert!(!e.to_string().contains(FILTER), "{e}");
    }

    #[test]
    fn rewriting_keeps_everything_but_adds_the_check() {
        assert_eq!(checked_sets("no statements {{ offset }}"), None);
        assert_eq!(
            checked_sets("{%- set ns.a = 1, 2 -%}{% set b %}x{% endset %}{% set c | upper %}y{% endset %}").unwrap(),
            "{%- set ns.a = (  1, 2  )  |__starmap_set(true) -%}{% set b %}x{% endset %}{% set c | upper  |__starmap_set(false) %}y{% endset %}"
        );
    }
}
