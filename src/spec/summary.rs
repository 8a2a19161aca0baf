//! `StatusSummary` (api.md section 5): a query over the status files of one placement's
//! objects: the serde types, and the compiled form (CEL checked and compiled once) that the
//! model holds. Whether the placement exists is checked at load (`source::load`); evaluation
//! lives in `summary`.

use serde::{Deserialize, Serialize};

use super::{CompiledObjectTest, ObjectTest, SpecMeta};
use crate::cel::CelExpr;
use crate::error::Location;
use crate::yaml::Step;

/// Rows (groups or selected objects) a summary keeps when `limit` is left out.
pub const DEFAULT_SUMMARY_LIMIT: usize = 100;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusSummaryDoc {
    pub api_version: String,
    pub kind: String,
    pub metadata: SpecMeta,
    pub spec: StatusSummarySpec,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusSummarySpec {
    /// The objects this placement puts on its clusters.
    pub placement: String,
    /// Optional ObjectTests (ORed) narrowing those objects; left out: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<ObjectTest>,
    /// CEL; must give a bool. A row for which it is false is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// CEL per group column; the values are compared as strings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<NamedExpr>,
    /// Aggregates over the rows of each group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregate: Vec<Aggregate>,
    /// Instead of `aggregate`: one row per (cluster, object) with these columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub select: Vec<NamedExpr>,
    /// Most groups (aggregate) or rows (select) kept; default [`DEFAULT_SUMMARY_LIMIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// A named CEL expression: a `groupBy` or `select` column.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamedExpr {
    pub name: String,
    pub expr: String,
}

/// One aggregate column: `COUNT` takes no `expr`; the others need a numeric one.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Aggregate {
    pub name: String,
    pub op: AggregateOp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
pub enum AggregateOp {
    #[serde(rename = "COUNT")]
    Count,
    #[serde(rename = "SUM")]
    Sum,
    #[serde(rename = "AVG")]
    Avg,
    #[serde(rename = "MIN")]
    Min,
    #[serde(rename = "MAX")]
    Max,
}

impl AggregateOp {
    pub fn as_str(self) -> &'static str {
        match self {
            AggregateOp::Count => "COUNT",
            AggregateOp::Sum => "SUM",
            AggregateOp::Avg => "AVG",
            AggregateOp::Min => "MIN",
            AggregateOp::Max => "MAX",
        }
    }
}

impl std::fmt::Display for AggregateOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated StatusSummary, as `source::load` puts it in the model (sorted by name).
#[derive(Debug, Clone)]
pub struct StatusSummary {
    pub name: String,
    pub spec: StatusSummarySpec,
    pub targets: Vec<CompiledObjectTest>,
    pub filter: Option<CelExpr>,
    pub group_by: Vec<Column>,
    pub aggregate: Vec<AggregateColumn>,
    pub select: Vec<Column>,
    pub limit: usize,
    pub location: Location,
}

/// A `groupBy` or `select` column.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub expr: CelExpr,
}

#[derive(Debug, Clone)]
pub struct AggregateColumn {
    pub name: String,
    pub op: AggregateOp,
    /// `None` for COUNT only.
    pub expr: Option<CelExpr>,
}

/// Names a select row always has before its own columns.
pub const SELECT_IDENTITY_COLUMNS: [&str; 4] = ["cluster", "kind", "namespace", "name"];

/// Why a spec does not compile: the field (path inside the document) and the message.
pub type SpecError = (Vec<Step<'static>>, String);

impl StatusSummary {
    /// Checks and compiles a spec: every rule but "the placement exists" (which needs the
    /// model, and is checked by `source::load`). Errors name the field to blame.
    pub fn compile(name: &str, spec: &StatusSummarySpec, location: Location) -> Result<StatusSummary, SpecError> {
        let at = |steps: &[Step<'static>]| {
            let mut path = vec![Step::Key("spec")];
            path.extend_from_slice(steps);
            path
        };
        let cel = |steps: &[Step<'static>], field: String, source: &str| {
            CelExpr::compile(source).map_err(|e| (at(steps), format!("{field}: {e}")))
        };
        if spec.placement.is_empty() {
            return Err((at(&[Step::Key("placement")]), "spec.placement is required".into()));
        }
        let targets = spec
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.compile().map_err(|e| {
                    (
                        at(&[Step::Key("targets"), Step::Index(i)]),
                        format!("spec.targets[{i}]: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let filter = match &spec.filter {
            Some(f) => Some(cel(&[Step::Key("filter")], "spec.filter".into(), f)?),
            None => None,
        };
        if !spec.aggregate.is_empty() && !spec.select.is_empty() {
            return Err((
                at(&[Step::Key("select")]),
                "spec.aggregate and spec.select exclude each other: aggregate rows into groups, or select them".into(),
            ));
        }
        if spec.aggregate.is_empty() && spec.select.is_empty() {
            return Err((at(&[]), "spec needs `aggregate` (groups) or `select` (rows)".into()));
        }
        if !spec.select.is_empty() && !spec.group_by.is_empty() {
            return Err((
                at(&[Step::Key("groupBy")]),
                "spec.groupBy goes with spec.aggregate, not with spec.select".into(),
            ));
        }
        // Names are the columns of one table: unique, and not those a select row always has.
        let mut names: Vec<(&str, Vec<Step<'static>>, String)> = Vec::new();
        let mut group_by = Vec::new();
        for (i, g) in spec.group_by.iter().enumerate() {
            let steps = [Step::Key("groupBy"), Step::Index(i)];
            names.push((&g.name, at(&steps), format!("spec.groupBy[{i}].name")));
            let expr_at = [Step::Key("groupBy"), Step::Index(i), Step::Key("expr")];
            group_by.push(Column {
                name: g.name.clone(),
                expr: cel(&expr_at, format!("spec.groupBy[{i}].expr"), &g.expr)?,
            });
        }
        let mut aggregate = Vec::new();
        for (i, a) in spec.aggregate.iter().enumerate() {
            let steps = [Step::Key("aggregate"), Step::Index(i)];
            names.push((&a.name, at(&steps), format!("spec.aggregate[{i}].name")));
            let expr = match (a.op, &a.expr) {
                (AggregateOp::Count, None) => None,
                (AggregateOp::Count, Some(_)) => {
                    return Err((
                        at(&[Step::Key("aggregate"), Step::Index(i), Step::Key("expr")]),
                        format!("spec.aggregate[{i}]: COUNT counts rows and takes no expr"),
                    ));
                }
                (op, None) => {
                    return Err((
                        at(&steps),
                        format!("spec.aggregate[{i}]: {op} needs an expr (a number per row)"),
                    ));
                }
                (_, Some(e)) => Some(cel(
                    &[Step::Key("aggregate"), Step::Index(i), Step::Key("expr")],
                    format!("spec.aggregate[{i}].expr"),
                    e,
                )?),
            };
            aggregate.push(AggregateColumn {
                name: a.name.clone(),
                op: a.op,
                expr,
            });
        }
        let mut select = Vec::new();
        for (i, s) in spec.select.iter().enumerate() {
            let steps = [Step::Key("select"), Step::Index(i)];
            if SELECT_IDENTITY_COLUMNS.contains(&s.name.as_str()) {
                return Err((
                    at(&[Step::Key("select"), Step::Index(i), Step::Key("name")]),
                    format!(
                        "spec.select[{i}].name: {:?} is a column every row has ({})",
                        s.name,
                        SELECT_IDENTITY_COLUMNS.join(", ")
                    ),
                ));
            }
            names.push((&s.name, at(&steps), format!("spec.select[{i}].name")));
            select.push(Column {
                name: s.name.clone(),
                expr: cel(
                    &[Step::Key("select"), Step::Index(i), Step::Key("expr")],
                    format!("spec.select[{i}].expr"),
                    &s.expr,
                )?,
            });
        }
        for (i, (n, steps, field)) in names.iter().enumerate() {
            if n.is_empty() {
                return Err((steps.clone(), format!("{field} must not be empty")));
            }
            if names[..i].iter().any(|(m, _, _)| m == n) {
                return Err((steps.clone(), format!("{field}: duplicate column name {n:?}")));
            }
        }
        let limit = match spec.limit {
            None => DEFAULT_SUMMARY_LIMIT,
            Some(0) => return Err((at(&[Step::Key("limit")]), "spec.limit must be at least 1".into())),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        Ok(StatusSummary {
            name: name.to_string(),
            spec: spec.clone(),
            targets,
            filter,
            group_by,
            aggregate,
            select,
            limit,
            location,
        })
    }

    /// Aggregate (groups) or select (rows).
    pub fn mode(&self) -> SummaryMode {
        if self.select.is_empty() {
            SummaryMode::Aggregate
        } else {
            SummaryMode::Select
        }
    }

    /// The columns of its table, in order.
    pub fn columns(&self) -> Vec<String> {
        match self.mode() {
            SummaryMode::Aggregate => self
                .group_by
                .iter()
                .map(|c| c.name.clone())
                .chain(self.aggregate.iter().map(|a| a.name.clone()))
                .collect(),
            SummaryMode::Select => SELECT_IDENTITY_COLUMNS
                .iter()
                .map(|s| s.to_string())
                .chain(self.select.iter().map(|c| c.name.clone()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SummaryMode {
    Aggregate,
    Select,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_example_parses_and_typos_do_not() {
        let spec: StatusSummarySpec = serde_json::from_value(serde_json::json!({
            "placement": "nginx-edge",
            "targets": [{"kinds": ["Deployment"]}],
            "filter": "health != \"Missing\"",
            "groupBy": [{"name": "region", "expr": "cluster.labels.region"}],
            "aggregate": [{"name": "clusters", "op": "COUNT"},
                          {"name": "ready", "op": "SUM", "expr": "status.readyReplicas"}],
            "select": [],
            "limit": 100
        }))
        .unwrap();
        assert_eq!(spec.aggregate[1].op, AggregateOp::Sum);
        assert_eq!(spec.limit, Some(100));
        let typo = serde_json::from_value::<StatusSummarySpec>(serde_json::json!({
            "placement": "p", "groupby": []
        }));
        assert!(typo.unwrap_err().to_string().contains("groupby"));
        let lower = serde_json::from_value::<Aggregate>(serde_json::json!({"name": "n", "op": "count"}));
        assert!(lower.is_err(), "ops are upper case, as in the contract");
    }
}
