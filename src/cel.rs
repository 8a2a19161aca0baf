//! CEL for StatusSummary: compiling an expression once, knowing which variables (and which
//! fields of them) it reads, and converting values between JSON and CEL.
//!
//! What an expression reads decides how often it runs (see `status::summary`): one that reads
//! only `cluster` runs once per cluster, one that reads only `health`, `applied`, `stale`
//! and `current` once per value tuple, and only one that reads `status` or `obj` once per
//! row. Where an expression reads a variable only through field selections
//! (`status.readyReplicas`, `has(obj.spec.paused)`), only those fields are converted to CEL,
//! which is most of the cost of a row: `cel` deep-copies every variable it is given.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

use kube_cel::KubeCelExt;
use kube_cel::cel::common::ast::{EntryExpr, Expr, IdedExpr};
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value};
use serde_json::Value as Json;

/// A variable of a summary expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// `name`, `labels`, `properties` of the cluster (from the inventory).
    Cluster,
    /// The rendered object, from the deploy repo.
    Obj,
    /// The live `.status` (an empty map when there is none).
    Status,
    /// The object's health, a string (`Healthy`, ...).
    Health,
    /// The cluster runs the deploy commit that holds this version of the object.
    Applied,
    /// The cluster's status is from an earlier round (the last attempt failed).
    Stale,
    /// The cluster runs what the deploy commit holds for it.
    Current,
}

pub const VARS: [Var; 7] = [
    Var::Cluster,
    Var::Obj,
    Var::Status,
    Var::Health,
    Var::Applied,
    Var::Stale,
    Var::Current,
];

impl Var {
    pub fn name(self) -> &'static str {
        match self {
            Var::Cluster => "cluster",
            Var::Obj => "obj",
            Var::Status => "status",
            Var::Health => "health",
            Var::Applied => "applied",
            Var::Stale => "stale",
            Var::Current => "current",
        }
    }

    fn parse(name: &str) -> Option<Var> {
        VARS.iter().copied().find(|v| v.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of variables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vars(u8);

impl Vars {
    pub fn has(self, v: Var) -> bool {
        self.0 & v.bit() != 0
    }

    pub fn insert(&mut self, v: Var) {
        self.0 |= v.bit();
    }

    pub fn union(self, other: Vars) -> Vars {
        Vars(self.0 | other.0)
    }

    /// Whether every variable of `self` is one of `allowed`.
    pub fn only(self, allowed: &[Var]) -> bool {
        let mask = allowed.iter().fold(0, |m, v| m | v.bit());
        self.0 & !mask == 0
    }
}

/// Which parts of a variable an expression reads: all of it, or only some fields (a tree of
/// field names, each read whole or further down).
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    Whole,
    Fields(BTreeMap<String, Access>),
}

impl Access {
    fn path(fields: &[String]) -> Access {
        match fields.split_first() {
            None => Access::Whole,
            Some((first, rest)) => Access::Fields(BTreeMap::from([(first.clone(), Access::path(rest))])),
        }
    }

    /// What either reads.
    pub fn union(self, other: Access) -> Access {
        match (self, other) {
            (Access::Fields(mut a), Access::Fields(b)) => {
                for (k, v) in b {
                    let merged = match a.remove(&k) {
                        Some(old) => old.union(v),
                        None => v,
                    };
                    a.insert(k, merged);
                }
                Access::Fields(a)
            }
            _ => Access::Whole,
        }
    }
}

/// Union of two optional accesses (`None`: not read at all).
pub fn union_access(a: Option<Access>, b: Option<&Access>) -> Option<Access> {
    match (a, b) {
        (None, None) => None,
        (Some(a), None) => Some(a),
        (None, Some(b)) => Some(b.clone()),
        (Some(a), Some(b)) => Some(a.union(b.clone())),
    }
}

/// A compiled CEL expression and what it reads.
#[derive(Clone)]
pub struct CelExpr {
    source: Arc<str>,
    program: Arc<Program>,
    vars: Vars,
    access: [Option<Access>; 7],
}

impl fmt::Debug for CelExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CelExpr").field("source", &self.source).finish()
    }
}

impl PartialEq for CelExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl CelExpr {
    /// Parse `source`; an error is one line: the column and what the parser expected, or
    /// the name of a variable that does not exist.
    pub fn compile(source: &str) -> Result<CelExpr, String> {
        let program = Program::compile(source).map_err(|e| match e.errors.first() {
            Some(first) => format!("invalid CEL at column {}: {}", first.pos.1, first.msg),
            None => "invalid CEL".to_string(),
        })?;
        let mut refs = Refs::default();
        refs.walk(program.expression(), &mut Vec::new());
        if let Some(unknown) = refs.unknown.first() {
            let names: Vec<&str> = VARS.iter().map(|v| v.name()).collect();
            return Err(format!(
                "unknown variable `{unknown}` (the variables are {})",
                names.join(", ")
            ));
        }
        Ok(CelExpr {
            source: source.into(),
            program: Arc::new(program),
            vars: refs.vars,
            access: refs.access,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The variables it reads.
    pub fn vars(&self) -> Vars {
        self.vars
    }

    /// Which parts of `var` it reads; `None` when it does not read it.
    pub fn access(&self, var: Var) -> Option<&Access> {
        self.access[var as usize].as_ref()
    }

    /// Run it in `ctx`; an error is its message.
    pub fn execute(&self, ctx: &Context<'_>) -> Result<Value, String> {
        self.program.execute(ctx).map_err(|e| e.to_string())
    }
}

/// Walks an expression for the free variables it names, and the field paths it reads them
/// through.
#[derive(Default)]
struct Refs {
    vars: Vars,
    access: [Option<Access>; 7],
    unknown: Vec<String>,
}

impl Refs {
    fn read(&mut self, var: Var, access: Access) {
        self.vars.insert(var);
        let slot = &mut self.access[var as usize];
        *slot = Some(match slot.take() {
            Some(old) => old.union(access),
            None => access,
        });
    }

    fn ident(&mut self, name: &str, bound: &[String], fields: &[String]) {
        if name.starts_with('@') || bound.iter().any(|b| b == name) {
            return;
        }
        match Var::parse(name) {
            Some(var) => self.read(var, Access::path(fields)),
            None => {
                if !self.unknown.iter().any(|u| u == name) {
                    self.unknown.push(name.to_string());
                }
            }
        }
    }

    fn walk(&mut self, e: &IdedExpr, bound: &mut Vec<String>) {
        match &e.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            Expr::Ident(name) => self.ident(name, bound, &[]),
            Expr::Select(_) => {
                // A chain of field selections down to a variable reads only that path.
                let mut fields = Vec::new();
                let mut node = e;
                while let Expr::Select(s) = &node.expr {
                    fields.push(s.field.clone());
                    node = &s.operand;
                }
                fields.reverse();
                match &node.expr {
                    Expr::Ident(name) => self.ident(name, bound, &fields),
                    _ => self.walk(node, bound),
                }
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    match &target.expr {
                        // `optional.of(x)`: a namespace, not a variable.
                        Expr::Ident(name) if Var::parse(name).is_none() && !bound.contains(name) => {}
                        _ => self.walk(target, bound),
                    }
                }
                for arg in &call.args {
                    self.walk(arg, bound);
                }
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range, bound);
                let depth = bound.len();
                bound.push(c.iter_var.clone());
                bound.extend(c.iter_var2.clone());
                bound.push(c.accu_var.clone());
                for part in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                    self.walk(part, bound);
                }
                bound.truncate(depth);
            }
            Expr::List(list) => {
                for item in &list.elements {
                    self.walk(item, bound);
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    self.entry(&entry.expr, bound);
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    self.entry(&entry.expr, bound);
                }
            }
        }
    }

    fn entry(&mut self, entry: &EntryExpr, bound: &mut Vec<String>) {
        match entry {
            EntryExpr::StructField(f) => self.walk(&f.value, bound),
            EntryExpr::MapEntry(m) => {
                self.walk(&m.key, bound);
                self.walk(&m.value, bound);
            }
        }
    }
}

/// The context every evaluation starts from: the standard and Kubernetes functions.
/// Built once (it takes ~20 µs); evaluations add their variables in child scopes.
pub fn root() -> &'static Context<'static> {
    static ROOT: OnceLock<Context<'static>> = OnceLock::new();
    ROOT.get_or_init(|| Context::default().with_all())
}

/// A JSON value as a CEL value: integers that fit are `int`, other numbers `double`.
pub fn to_cel(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Json::Object(m) => {
            let map: HashMap<Key, Value> = m
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// Only the parts of `v` that `access` reads. Identical to [`to_cel`] for every expression
/// whose reads `access` describes.
pub fn to_cel_pruned(v: &Json, access: &Access) -> Value {
    match (access, v) {
        (Access::Fields(fields), Json::Object(m)) => {
            let map: HashMap<Key, Value> = fields
                .iter()
                .filter_map(|(k, sub)| {
                    m.get(k)
                        .map(|v| (Key::String(Arc::new(k.clone())), to_cel_pruned(v, sub)))
                })
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
        _ => to_cel(v),
    }
}

/// A JSON mapping as a CEL map, only the parts `access` reads.
pub fn object_to_cel(m: &serde_json::Map<String, Json>, access: &Access) -> Value {
    let map: HashMap<Key, Value> = match access {
        Access::Whole => m
            .iter()
            .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
            .collect(),
        Access::Fields(fields) => fields
            .iter()
            .filter_map(|(k, sub)| {
                m.get(k)
                    .map(|v| (Key::String(Arc::new(k.clone())), to_cel_pruned(v, sub)))
            })
            .collect(),
    };
    Value::Map(Map { map: Arc::new(map) })
}

/// A string map (labels) as a CEL map, only the keys `access` reads.
pub fn strings_to_cel(m: &BTreeMap<String, String>, access: &Access) -> Value {
    let entry = |k: &String, v: &String| (Key::String(Arc::new(k.clone())), Value::String(Arc::new(v.clone())));
    let map: HashMap<Key, Value> = match access {
        Access::Whole => m.iter().map(|(k, v)| entry(k, v)).collect(),
        Access::Fields(fields) => fields
            .keys()
            .filter_map(|k| m.get_key_value(k).map(|(k, v)| entry(k, v)))
            .collect(),
    };
    Value::Map(Map { map: Arc::new(map) })
}

/// A CEL map of string keys, built from entries.
pub fn cel_map(entries: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let map: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_string())), v))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

/// A CEL value as JSON, with map keys sorted (CEL maps have no order). NaN and infinities
/// become null; timestamps RFC 3339 strings; durations seconds (`"90s"`).
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::UInt(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.to_string()),
        Value::Bytes(b) => Json::String(String::from_utf8_lossy(b).into_owned()),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(m) => {
            let mut entries: Vec<(String, &Value)> = m.map.iter().map(|(k, v)| (key_string(k), v)).collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(entries.into_iter().map(|(k, v)| (k, to_json(v))).collect())
        }
        Value::Timestamp(t) => Json::String(t.to_rfc3339()),
        Value::Duration(d) => {
            let ms = d.num_milliseconds();
            if ms % 1000 == 0 {
                Json::String(format!("{}s", ms / 1000))
            } else {
                Json::String(format!("{}s", ms as f64 / 1000.0))
            }
        }
        other => Json::String(format!("{other:?}")),
    }
}

fn key_string(k: &Key) -> String {
    match k {
        Key::String(s) => s.to_string(),
        Key::Int(i) => i.to_string(),
        Key::Uint(u) => u.to_string(),
        Key::Bool(b) => b.to_string(),
    }
}

/// CEL's name of a value's type, for messages.
pub fn type_name(v: &Value) -> String {
    v.type_of().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(source: &str, vars: &[(&str, Value)]) -> Result<Value, String> {
        let e = CelExpr::compile(source)?;
        let mut ctx = root().new_inner_scope();
        for (name, v) in vars {
            ctx.add_variable_from_value(*name, v.clone());
        }
        e.execute(&ctx)
    }

    #[test]
    fn finds_variables_and_field_paths() {
        let e = CelExpr::compile("status.readyReplicas > 0 && cluster.labels.region == 'eu'").unwrap();
        assert!(e.vars().has(Var::Status) && e.vars().has(Var::Cluster));
        assert!(!e.vars().has(Var::Obj) && !e.vars().has(Var::Health));
        assert!(e.vars().only(&[Var::Status, Var::Cluster]));
        assert!(!e.vars().only(&[Var::Cluster]));
        assert_eq!(
            e.access(Var::Status),
            Some(&Access::Fields(BTreeMap::from([(
                "readyReplicas".into(),
                Access::Whole
            )])))
        );
        let labels = Access::Fields(BTreeMap::from([("region".into(), Access::Whole)]));
        assert_eq!(
            e.access(Var::Cluster),
            Some(&Access::Fields(BTreeMap::from([("labels".into(), labels)])))
        );
        // A variable used other than through fields is read whole.
        let whole = CelExpr::compile("size(status) > 0 && status.x == 1").unwrap();
        assert_eq!(whole.access(Var::Status), Some(&Access::Whole));
        // Indexing reads the indexed value whole.
        let index = CelExpr::compile("status.conditions[0].type == 'Ready'").unwrap();
        assert_eq!(
            index.access(Var::Status),
            Some(&Access::Fields(BTreeMap::from([("conditions".into(), Access::Whole)])))
        );
    }

    #[test]
    fn comprehension_variables_are_not_free() {
        let e = CelExpr::compile("status.conditions.exists(c, c.type == 'Ready' && c.status == 'True')").unwrap();
        assert!(e.vars().only(&[Var::Status]));
        // Shadowing a summary variable inside a macro is not a read of it.
        let shadow = CelExpr::compile("[1, 2].all(health, health > 0)").unwrap();
        assert_eq!(shadow.vars(), Vars::default());
        // Namespaced functions are not variables.
        assert!(CelExpr::compile("optional.of(1).hasValue()").is_ok());
    }

    #[test]
    fn errors_are_one_line() {
        let e = CelExpr::compile("status.ready ==").unwrap_err();
        assert!(e.starts_with("invalid CEL at column 16:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = CelExpr::compile("clster.labels.region").unwrap_err();
        assert!(e.contains("unknown variable `clster`"), "{e}");
    }

    #[test]
    fn pruning_keeps_what_is_read() {
        let status = json!({"readyReplicas": 2, "replicas": 3, "conditions": [{"type": "Ready"}]});
        let e =
            CelExpr::compile("has(status.readyReplicas) && !has(status.nope) && status.readyReplicas == 2").unwrap();
        let pruned = to_cel_pruned(&status, e.access(Var::Status).unwrap());
        assert_eq!(to_json(&pruned), json!({"readyReplicas": 2}));
        assert_eq!(eval(e.source(), &[("status", pruned)]), Ok(Value::Bool(true)));
        assert_eq!(eval(e.source(), &[("status", to_cel(&status))]), Ok(Value::Bool(true)));
    }

    #[test]
    fn json_round_trip_and_kubernetes_functions() {
        let v = json!({"b": [1, 2.5, "x", true, null], "a": {"n": -3}, "big": 18446744073709551615u64});
        assert_eq!(
            to_json(&to_cel(&v)),
            json!({"a": {"n": -3}, "b": [1, 2.5, "x", true, null], "big": 18446744073709551615u64})
        );
        // kube-cel's functions are registered.
        assert_eq!(
            eval("quantity('1Gi').isGreaterThan(quantity('512Mi'))", &[]),
            Ok(Value::Bool(true))
        );
        assert!(
            eval("status.nope", &[("status", to_cel(&json!({})))])
                .unwrap_err()
                .contains("nope")
        );
    }
}
