//! Evaluating StatusSummary objects over status files: rows per cluster in parallel, then
//! groups or selected rows merged in cluster order (see the parent module for the rules).

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use kube_cel::cel::{Context, Value};
use rayon::prelude::*;
use serde_json::Value as Json;

use super::{ERRORS_LIMIT, Inputs, ObjectLookup, RowError, SummaryResult, object_key, object_name};
use crate::cel::{self, Access, CelExpr, Var, union_access};
use crate::formats::status::{ClusterStatus, ObjectStatus};
use crate::health::{HEALTH_ORDER, Health, severity};
use crate::model::{Cluster, ObjectId, Workload, group_of};
use crate::spec::{AggregateOp, ObjectFacts, StatusSummary, SummaryMode};

/// The result of an expression on a row; errors are messages (shared by memoized rows).
type Outcome = Result<Value, Arc<str>>;

/// How often an expression runs, from what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Only `health`, `applied`, `stale`, `current` (or nothing): once per value tuple.
    Tuple,
    /// Also `cluster`: once per cluster and (`health`, `applied`).
    Cluster,
    /// `status` or `obj`: every row.
    Row,
}

fn tuple_index(h: Health, applied: bool, stale: bool, current: bool) -> usize {
    severity(h) * 8 + usize::from(applied) * 4 + usize::from(stale) * 2 + usize::from(current)
}

fn health_value(h: Health) -> Value {
    Value::String(Arc::new(h.as_str().to_string()))
}

struct Prepared<'a> {
    s: &'a StatusSummary,
    exprs: Vec<Expr<'a>>,
    filter: Option<usize>,
    group: Vec<usize>,
    aggs: Vec<(AggregateOp, Option<usize>)>,
    select: Vec<usize>,
    /// What the row expressions read of `status` and `obj`.
    status_access: Option<Access>,
    obj_access: Option<Access>,
    /// Some target tests `paths` or `objectSelector`, which need the source workload.
    needs_workloads: bool,
}

struct Expr<'a> {
    expr: &'a CelExpr,
    field: String,
    class: Class,
    /// For `Class::Tuple`: the outcome per [`tuple_index`].
    table: Vec<Outcome>,
}

struct Shared<'a> {
    prepared: Vec<Prepared<'a>>,
    /// What any expression reads of `cluster`.
    cluster_access: Option<Access>,
    /// Some expression runs per cluster or per row, so each cluster needs its context.
    needs_cluster_ctx: bool,
    workloads: HashMap<ObjectId, Vec<&'a Workload>>,
    obj: &'a ObjectLookup<'a>,
}

/// A number an aggregate reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn of(v: &Value) -> Result<Num, String> {
        match v {
            Value::Int(i) => Ok(Num::Int(*i)),
            Value::UInt(u) => Ok(i64::try_from(*u).map_or(Num::Float(*u as f64), Num::Int)),
            Value::Float(f) => Ok(Num::Float(*f)),
            other => Err(format!("expected a number, got {}", cel::type_name(other))),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn json(self) -> Json {
        match self {
            Num::Int(i) => Json::from(i),
            Num::Float(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        }
    }

    fn cmp(self, other: Num) -> Ordering {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()).unwrap_or(Ordering::Equal),
        }
    }
}

/// One aggregate column of one group.
#[derive(Debug, Clone, Default)]
struct ColAcc {
    n: u64,
    int_sum: i128,
    float_sum: f64,
    any_float: bool,
    min: Option<Num>,
    max: Option<Num>,
}

impl ColAcc {
    fn add(&mut self, x: Num) {
        self.n += 1;
        match x {
            Num::Int(i) => self.int_sum += i128::from(i),
            Num::Float(f) => {
                self.float_sum += f;
                self.any_float = true;
            }
        }
        if self.min.is_none_or(|m| x.cmp(m) == Ordering::Less) {
            self.min = Some(x);
        }
        if self.max.is_none_or(|m| x.cmp(m) == Ordering::Greater) {
            self.max = Some(x);
        }
    }

    fn merge(&mut self, o: &ColAcc) {
        self.n += o.n;
        self.int_sum += o.int_sum;
        self.float_sum += o.float_sum;
        self.any_float |= o.any_float;
        for x in [o.min, o.max].into_iter().flatten() {
            if self.min.is_none_or(|m| x.cmp(m) == Ordering::Less) {
                self.min = Some(x);
            }
            if self.max.is_none_or(|m| x.cmp(m) == Ordering::Greater) {
                self.max = Some(x);
            }
        }
    }

    fn sum(&self) -> Num {
        match i64::try_from(self.int_sum) {
            Ok(i) if !self.any_float => Num::Int(i),
            _ => Num::Float(self.int_sum as f64 + self.float_sum),
        }
    }

    fn value(&self, op: AggregateOp, count: u64) -> Json {
        match op {
            AggregateOp::Count => Json::from(count),
            AggregateOp::Sum => self.sum().json(),
            AggregateOp::Avg if self.n == 0 => Json::Null,
            AggregateOp::Avg => Num::Float(self.sum().as_f64() / self.n as f64).json(),
            AggregateOp::Min => self.min.map_or(Json::Null, Num::json),
            AggregateOp::Max => self.max.map_or(Json::Null, Num::json),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct GroupAcc {
    count: u64,
    cols: Vec<ColAcc>,
}

impl GroupAcc {
    fn new(columns: usize) -> Self {
        GroupAcc {
            count: 0,
            cols: vec![ColAcc::default(); columns],
        }
    }

    fn merge(&mut self, o: &GroupAcc) {
        self.count += o.count;
        for (a, b) in self.cols.iter_mut().zip(&o.cols) {
            a.merge(b);
        }
    }
}

/// What one cluster contributes to one summary.
#[derive(Default)]
struct Partial {
    objects: usize,
    matched: usize,
    groups: HashMap<Vec<String>, GroupAcc>,
    /// Selected rows, at most `limit` (the first rows overall are the first of each cluster).
    rows: Vec<Vec<Json>>,
    errors: Vec<RowError>,
    error_count: usize,
}

/// What a row gives.
enum RowResult {
    Dropped,
    Group(Vec<String>, Vec<Option<Num>>),
    Selected(Vec<Json>),
    /// The expression (index into `Prepared::exprs`) that failed, and why.
    Failed(usize, Arc<str>),
}

/// Every StatusSummary of `inputs` over the status files of `known` (sorted by cluster).
pub(super) fn run(
    inputs: &Inputs<'_>,
    known: &[(&ClusterStatus, &Cluster)],
    obj: &ObjectLookup<'_>,
) -> Vec<SummaryResult> {
    let mut summaries: Vec<&StatusSummary> = inputs.summaries.iter().collect();
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    let prepared: Vec<Prepared<'_>> = summaries.iter().map(|s| prepare(s)).collect();
    let mut cluster_access = None;
    let mut needs_cluster_ctx = false;
    for p in &prepared {
        for e in &p.exprs {
            cluster_access = union_access(cluster_access, e.expr.access(Var::Cluster));
            needs_cluster_ctx |= e.class != Class::Tuple;
        }
    }
    let mut workloads: HashMap<ObjectId, Vec<&Workload>> = HashMap::new();
    if prepared.iter().any(|p| p.needs_workloads) {
        for w in inputs.workloads {
            workloads.entry(w.id.clone()).or_default().push(w);
        }
    }
    let shared = Shared {
        prepared,
        cluster_access,
        needs_cluster_ctx,
        workloads,
        obj,
    };
    let partials: Vec<Vec<Partial>> = known
        .par_iter()
        .map(|(cs, c)| cluster_partials(&shared, cs, c))
        .collect();
    shared
        .prepared
        .iter()
        .enumerate()
        .map(|(k, p)| finish(inputs, &shared, p, partials.iter().map(|per_cluster| &per_cluster[k])))
        .collect()
}

fn prepare(s: &StatusSummary) -> Prepared<'_> {
    let mut exprs: Vec<Expr<'_>> = Vec::new();
    let filter = s.filter.as_ref().map(|f| push_expr(&mut exprs, f, "filter".into()));
    let group = s
        .group_by
        .iter()
        .enumerate()
        .map(|(i, g)| push_expr(&mut exprs, &g.expr, format!("groupBy[{i}] ({})", g.name)))
        .collect();
    let aggs = s
        .aggregate
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let e = a
                .expr
                .as_ref()
                .map(|e| push_expr(&mut exprs, e, format!("aggregate[{i}] ({})", a.name)));
            (a.op, e)
        })
        .collect();
    let select = s
        .select
        .iter()
        .enumerate()
        .map(|(i, c)| push_expr(&mut exprs, &c.expr, format!("select[{i}] ({})", c.name)))
        .collect();
    let mut status_access = None;
    let mut obj_access = None;
    for e in &exprs {
        status_access = union_access(status_access, e.expr.access(Var::Status));
        obj_access = union_access(obj_access, e.expr.access(Var::Obj));
    }
    let needs_workloads = s
        .targets
        .iter()
        .any(|t| t.test.paths.is_some() || t.test.object_selector.is_some());
    Prepared {
        s,
        exprs,
        filter,
        group,
        aggs,
        select,
        status_access,
        obj_access,
        needs_workloads,
    }
}

fn push_expr<'a>(exprs: &mut Vec<Expr<'a>>, expr: &'a CelExpr, field: String) -> usize {
    let vars = expr.vars();
    let class = if vars.has(Var::Status) || vars.has(Var::Obj) {
        Class::Row
    } else if vars.has(Var::Cluster) {
        Class::Cluster
    } else {
        Class::Tuple
    };
    let table = if class == Class::Tuple {
        tuple_table(expr)
    } else {
        Vec::new()
    };
    exprs.push(Expr {
        expr,
        field,
        class,
        table,
    });
    exprs.len() - 1
}

/// The outcome of an expression that reads only `health`, `applied`, `stale`, `current`,
/// for every tuple of them (48 evaluations, whatever the size of the fleet).
fn tuple_table(expr: &CelExpr) -> Vec<Outcome> {
    let mut table = vec![Ok(Value::Null); HEALTH_ORDER.len() * 8];
    for h in HEALTH_ORDER {
        for applied in [false, true] {
            for stale in [false, true] {
                for current in [false, true] {
                    let mut ctx = cel::root().new_inner_scope();
                    ctx.add_variable_from_value(Var::Health.name(), health_value(h));
                    ctx.add_variable_from_value(Var::Applied.name(), applied);
                    ctx.add_variable_from_value(Var::Stale.name(), stale);
                    ctx.add_variable_from_value(Var::Current.name(), current);
                    table[tuple_index(h, applied, stale, current)] = expr.execute(&ctx).map_err(Arc::from);
                }
            }
        }
    }
    table
}

/// `cluster` as CEL: name, labels, properties, only the parts the expressions read.
fn cluster_value(c: &Cluster, access: &Access) -> Value {
    let part = |k: &str| match access {
        Access::Whole => Some(&Access::Whole),
        Access::Fields(m) => m.get(k),
    };
    let mut entries = Vec::new();
    if part("name").is_some() {
        entries.push(("name", Value::String(Arc::new(c.name.clone()))));
    }
    if let Some(a) = part("labels") {
        entries.push(("labels", cel::strings_to_cel(&c.labels, a)));
    }
    if let Some(a) = part("properties") {
        entries.push(("properties", cel::object_to_cel(&c.spec.properties, a)));
    }
    cel::cel_map(entries)
}

/// The scope of a cluster: `cluster`, `stale`, `current`.
fn cluster_context(shared: &Shared<'_>, c: &Cluster, stale: bool, current: bool) -> Context<'static> {
    let mut ctx = cel::root().new_inner_scope();
    if let Some(access) = &shared.cluster_access {
        ctx.add_variable_from_value(Var::Cluster.name(), cluster_value(c, access));
    }
    ctx.add_variable_from_value(Var::Stale.name(), stale);
    ctx.add_variable_from_value(Var::Current.name(), current);
    ctx
}

fn cluster_partials(shared: &Shared<'_>, cs: &ClusterStatus, c: &Cluster) -> Vec<Partial> {
    let mut order: Vec<&ObjectStatus> = cs.objects.iter().collect();
    order.sort_by(|a, b| object_key(a).cmp(&object_key(b)));
    let cctx = shared
        .needs_cluster_ctx
        .then(|| cluster_context(shared, c, cs.stale, cs.current));
    shared
        .prepared
        .iter()
        .map(|p| summarize_cluster(shared, p, cs, cctx.as_ref(), &order))
        .collect()
}

fn summarize_cluster(
    shared: &Shared<'_>,
    p: &Prepared<'_>,
    cs: &ClusterStatus,
    cctx: Option<&Context<'static>>,
    order: &[&ObjectStatus],
) -> Partial {
    let mut part = Partial::default();
    let mut memo: Vec<[Option<Outcome>; 12]> = vec![Default::default(); p.exprs.len()];
    for &o in order {
        if !o.placements.contains(&p.s.spec.placement) || !targets_match(shared, p, o) {
            continue;
        }
        part.objects += 1;
        let mut row = Row {
            shared,
            p,
            cs,
            o,
            cctx,
            ctx: None,
            added: Default::default(),
            memo: &mut memo,
        };
        match row.evaluate() {
            RowResult::Dropped => {}
            RowResult::Group(keys, nums) => {
                part.matched += 1;
                let acc = part.groups.entry(keys).or_insert_with(|| GroupAcc::new(p.aggs.len()));
                acc.count += 1;
                for (col, n) in acc.cols.iter_mut().zip(nums) {
                    if let Some(n) = n {
                        col.add(n);
                    }
                }
            }
            RowResult::Selected(values) => {
                part.matched += 1;
                if part.rows.len() < p.s.limit {
                    let mut row = Vec::with_capacity(4 + values.len());
                    row.push(Json::String(cs.cluster.clone()));
                    row.push(Json::String(o.kind.clone()));
                    row.push(o.namespace.clone().map_or(Json::Null, Json::String));
                    row.push(Json::String(o.name.clone()));
                    row.extend(values);
                    part.rows.push(row);
                }
            }
            RowResult::Failed(e, message) => {
                part.error_count += 1;
                if part.errors.len() < ERRORS_LIMIT {
                    let x = &p.exprs[e];
                    part.errors.push(RowError {
                        cluster: cs.cluster.clone(),
                        object: object_name(o),
                        field: x.field.clone(),
                        expression: x.expr.source().to_string(),
                        message: message.to_string(),
                    });
                }
            }
        }
    }
    part
}

fn targets_match(shared: &Shared<'_>, p: &Prepared<'_>, o: &ObjectStatus) -> bool {
    let targets = &p.s.targets;
    if targets.is_empty() {
        return true;
    }
    let group = group_of(&o.api_version);
    let status_facts = ObjectFacts {
        source_path: "",
        group,
        kind: &o.kind,
        namespace: o.namespace.as_deref(),
        name: &o.name,
        labels: None,
    };
    if !p.needs_workloads {
        return targets.iter().any(|t| t.matches(&status_facts));
    }
    let id = ObjectId {
        group: group.to_string(),
        kind: o.kind.clone(),
        namespace: o.namespace.clone(),
        name: o.name.clone(),
    };
    let workloads = shared.workloads.get(&id).map(Vec::as_slice).unwrap_or(&[]);
    targets.iter().any(|t| {
        if t.test.paths.is_none() && t.test.object_selector.is_none() {
            return t.matches(&status_facts);
        }
        workloads.iter().any(|w| {
            t.matches(&ObjectFacts {
                source_path: &w.source.path,
                group,
                kind: &w.id.kind,
                namespace: w.id.namespace.as_deref(),
                name: &w.id.name,
                labels: w.object.pointer("/metadata/labels").and_then(Json::as_object),
            })
        })
    })
}

/// One row being evaluated: its scope is built lazily, variable by variable, so that `obj`
/// is looked up only when an expression that reads it runs.
struct Row<'r, 'c> {
    shared: &'r Shared<'r>,
    p: &'r Prepared<'r>,
    cs: &'r ClusterStatus,
    o: &'r ObjectStatus,
    cctx: Option<&'c Context<'static>>,
    ctx: Option<Context<'c>>,
    added: [bool; 4],
    memo: &'r mut Vec<[Option<Outcome>; 12]>,
}

const ROW_VARS: [Var; 4] = [Var::Status, Var::Obj, Var::Health, Var::Applied];

impl Row<'_, '_> {
    fn evaluate(&mut self) -> RowResult {
        let p = self.p;
        if let Some(f) = p.filter {
            match self.eval(f) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => return RowResult::Dropped,
                Ok(other) => {
                    let m = format!("the filter gave a {}, not a bool", cel::type_name(&other));
                    return RowResult::Failed(f, m.into());
                }
                Err(m) => return RowResult::Failed(f, m),
            }
        }
        match p.s.mode() {
            SummaryMode::Aggregate => {
                let mut keys = Vec::with_capacity(p.group.len());
                for &g in &p.group {
                    match self.eval(g).map_err(|m| m.to_string()).and_then(|v| group_key(&v)) {
                        Ok(k) => keys.push(k),
                        Err(m) => return RowResult::Failed(g, m.into()),
                    }
                }
                let mut nums = Vec::with_capacity(p.aggs.len());
                for &(_, e) in &p.aggs {
                    match e {
                        None => nums.push(None),
                        Some(e) => match self.eval(e).map_err(|m| m.to_string()).and_then(|v| Num::of(&v)) {
                            Ok(n) => nums.push(Some(n)),
                            Err(m) => return RowResult::Failed(e, m.into()),
                        },
                    }
                }
                RowResult::Group(keys, nums)
            }
            SummaryMode::Select => {
                let mut values = Vec::with_capacity(p.select.len());
                for &e in &p.select {
                    match self.eval(e) {
                        Ok(v) => values.push(cel::to_json(&v)),
                        Err(m) => return RowResult::Failed(e, m),
                    }
                }
                RowResult::Selected(values)
            }
        }
    }

    fn eval(&mut self, e: usize) -> Outcome {
        let x = &self.p.exprs[e];
        let (health, applied) = (self.o.health, self.o.applied);
        match x.class {
            Class::Tuple => x.table[tuple_index(health, applied, self.cs.stale, self.cs.current)].clone(),
            Class::Cluster => {
                let slot = severity(health) * 2 + usize::from(applied);
                if let Some(done) = &self.memo[e][slot] {
                    return done.clone();
                }
                let Some(cctx) = self.cctx else {
                    return Err("internal: no cluster scope".into());
                };
                let mut ctx = cctx.new_inner_scope();
                ctx.add_variable_from_value(Var::Health.name(), health_value(health));
                ctx.add_variable_from_value(Var::Applied.name(), applied);
                let outcome = x.expr.execute(&ctx).map_err(Arc::from);
                self.memo[e][slot] = Some(outcome.clone());
                outcome
            }
            Class::Row => {
                let Some(cctx) = self.cctx else {
                    return Err("internal: no cluster scope".into());
                };
                let ctx = self.ctx.get_or_insert_with(|| cctx.new_inner_scope());
                for (i, var) in ROW_VARS.iter().enumerate() {
                    if self.added[i] || !x.expr.vars().has(*var) {
                        continue;
                    }
                    self.added[i] = true;
                    let value = match var {
                        Var::Status => match (&self.o.status, &self.p.status_access) {
                            (Some(s), Some(a)) => cel::to_cel_pruned(s, a),
                            _ => cel::cel_map([]),
                        },
                        Var::Obj => match (self.shared.obj)(&self.cs.cluster, self.o) {
                            Some(v) => match &self.p.obj_access {
                                Some(a) => cel::to_cel_pruned(&v, a),
                                None => cel::to_cel(&v),
                            },
                            None => Value::Null,
                        },
                        Var::Health => health_value(health),
                        _ => Value::Bool(applied),
                    };
                    ctx.add_variable_from_value(var.name(), value);
                }
                x.expr.execute(ctx).map_err(Arc::from)
            }
        }
    }
}

/// A groupBy value as its group key.
fn group_key(v: &Value) -> Result<String, String> {
    match v {
        Value::Null => Err("the group value is null".into()),
        Value::String(s) => Ok(s.to_string()),
        Value::Int(i) => Ok(i.to_string()),
        Value::UInt(u) => Ok(u.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => match cel::to_json(other) {
            Json::String(s) => Ok(s),
            j => Ok(j.to_string()),
        },
    }
}

/// Group keys in order: column by column, numbers numerically and before other values.
fn compare_keys(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(m), Ok(n)) => m.partial_cmp(&n).unwrap_or(Ordering::Equal).then_with(|| x.cmp(y)),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn finish<'p>(
    inputs: &Inputs<'_>,
    shared: &Shared<'_>,
    p: &Prepared<'_>,
    partials: impl Iterator<Item = &'p Partial>,
) -> SummaryResult {
    let s = p.s;
    let mut objects = 0;
    let mut matched = 0;
    let mut errors = Vec::new();
    let mut error_count = 0;
    let mut groups: HashMap<Vec<String>, GroupAcc> = HashMap::new();
    let mut rows = Vec::new();
    for part in partials {
        objects += part.objects;
        matched += part.matched;
        error_count += part.error_count;
        for e in &part.errors {
            if errors.len() < ERRORS_LIMIT {
                errors.push(e.clone());
            }
        }
        for (k, acc) in &part.groups {
            match groups.get_mut(k) {
                Some(g) => g.merge(acc),
                None => {
                    groups.insert(k.clone(), acc.clone());
                }
            }
        }
        for r in &part.rows {
            if rows.len() < s.limit {
                rows.push(r.clone());
            }
        }
    }
    let truncated;
    match s.mode() {
        SummaryMode::Aggregate => {
            for key in zero_row_groups(inputs, shared, p) {
                groups.entry(key).or_insert_with(|| GroupAcc::new(p.aggs.len()));
            }
            let mut sorted: Vec<(Vec<String>, GroupAcc)> = groups.into_iter().collect();
            sorted.sort_by(|a, b| compare_keys(&a.0, &b.0));
            truncated = sorted.len().saturating_sub(s.limit);
            sorted.truncate(s.limit);
            rows = sorted
                .into_iter()
                .map(|(keys, acc)| {
                    let mut row: Vec<Json> = keys.into_iter().map(Json::String).collect();
                    for ((op, _), col) in p.aggs.iter().zip(&acc.cols) {
                        row.push(col.value(*op, acc.count));
                    }
                    row
                })
                .collect();
        }
        SummaryMode::Select => truncated = matched.saturating_sub(rows.len()),
    }
    SummaryResult {
        name: s.name.clone(),
        placement: s.spec.placement.clone(),
        mode: s.mode(),
        columns: s.columns(),
        rows,
        objects,
        matched,
        truncated,
        errors,
        error_count,
    }
}

/// The groups every destination cluster of the placement makes, when each groupBy
/// expression reads only `cluster`; with no groupBy, the one group.
fn zero_row_groups(inputs: &Inputs<'_>, shared: &Shared<'_>, p: &Prepared<'_>) -> BTreeSet<Vec<String>> {
    if p.group.is_empty() {
        return BTreeSet::from([Vec::new()]);
    }
    let cluster_only = p.group.iter().all(|&g| p.exprs[g].expr.vars().only(&[Var::Cluster]));
    let Some(placement) = inputs.placements.iter().find(|x| x.name == p.s.spec.placement) else {
        return BTreeSet::new();
    };
    if !cluster_only {
        return BTreeSet::new();
    }
    let destinations: Vec<&Cluster> = inputs.clusters.iter().filter(|c| placement.selects(c)).collect();
    let keys: Vec<Option<Vec<String>>> = destinations
        .par_iter()
        .map(|c| {
            let ctx = cluster_context(shared, c, false, false);
            p.group
                .iter()
                .map(|&g| p.exprs[g].expr.execute(&ctx).ok().and_then(|v| group_key(&v).ok()))
                .collect()
        })
        .collect();
    keys.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_numbers_numerically_first() {
        let mut keys = [
            vec!["b".to_string()],
            vec!["10".to_string()],
            vec!["9".to_string()],
            vec!["a".to_string()],
            vec!["2.5".to_string()],
        ];
        keys.sort_by(|a, b| compare_keys(a, b));
        let flat: Vec<&str> = keys.iter().map(|k| k[0].as_str()).collect();
        assert_eq!(flat, ["2.5", "9", "10", "a", "b"]);
    }

    #[test]
    fn sums_stay_ints_until_a_double_or_overflow() {
        let mut a = ColAcc::default();
        a.add(Num::Int(i64::MAX));
        assert_eq!(a.value(AggregateOp::Sum, 1), Json::from(i64::MAX));
        a.add(Num::Int(1));
        assert!(a.value(AggregateOp::Sum, 2).is_f64(), "overflow gives a double");
        let mut b = ColAcc::default();
        b.add(Num::Int(2));
        b.add(Num::Float(0.5));
        assert_eq!(b.value(AggregateOp::Sum, 2), Json::from(2.5));
        assert_eq!(b.value(AggregateOp::Min, 2), Json::from(0.5));
        assert_eq!(b.value(AggregateOp::Max, 2), Json::from(2));
        assert_eq!(b.value(AggregateOp::Avg, 2), Json::from(1.25));
        let empty = ColAcc::default();
        assert_eq!(empty.value(AggregateOp::Sum, 0), Json::from(0));
        assert_eq!(empty.value(AggregateOp::Avg, 0), Json::Null);
        assert_eq!(empty.value(AggregateOp::Min, 0), Json::Null);
        let mut merged = ColAcc::default();
        merged.merge(&b);
        merged.merge(&a);
        assert_eq!(merged.min, Some(Num::Float(0.5)));
        assert_eq!(merged.max, Some(Num::Int(i64::MAX)));
    }

    #[test]
    fn group_keys_are_strings() {
        assert_eq!(group_key(&Value::Int(3)), Ok("3".into()));
        assert_eq!(group_key(&Value::Float(2.5)), Ok("2.5".into()));
        assert_eq!(group_key(&Value::Bool(true)), Ok("true".into()));
        assert!(group_key(&Value::Null).is_err());
        assert_eq!(tuple_index(Health::Unknown, true, true, true), 47);
        assert_eq!(tuple_index(Health::Healthy, false, false, false), 0);
    }
}
