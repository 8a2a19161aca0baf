//! `StatusSummary` (api.md section 5): a query over the status files of one placement's
//! objects, as serde types. Validation (names, the placement, CEL) happens at load
//! (`source::load`); evaluation lives in `status::summary`.

use serde::{Deserialize, Serialize};

use super::{ObjectTest, SpecMeta};

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
