//! Kubernetes label selectors (over cluster labels and object labels) and ObjectTests
//! (which workload objects a placement or customization means).

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Kubernetes' LabelSelector: `matchLabels` and `matchExpressions`, ANDed. `{}` matches all.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// Label lookup, so selectors work over cluster label maps and object label maps alike.
pub trait Labels {
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for serde_json::Map<String, serde_json::Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| v.as_str())
    }
}

/// No labels at all (an object without `metadata.labels`).
pub struct NoLabels;

impl Labels for NoLabels {
    fn label(&self, _: &str) -> Option<&str> {
        None
    }
}

impl LabelSelector {
    /// The Kubernetes rules: `In`/`NotIn` need values, `Exists`/`DoesNotExist` take none.
    pub fn validate(&self) -> Result<(), String> {
        for (i, r) in self.match_expressions.iter().enumerate() {
            let needs_values = matches!(r.operator, Operator::In | Operator::NotIn);
            if needs_values && r.values.is_empty() {
                return Err(format!(
                    "matchExpressions[{i}] (key {:?}): operator {:?} needs at least one value",
                    r.key, r.operator
                ));
            }
            if !needs_values && !r.values.is_empty() {
                return Err(format!(
                    "matchExpressions[{i}] (key {:?}): operator {:?} takes no values",
                    r.key, r.operator
                ));
            }
        }
        Ok(())
    }

    pub fn matches(&self, labels: &impl Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.label(k) == Some(v.as_str()))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl Requirement {
    fn matches(&self, labels: &impl Labels) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            // As in Kubernetes: a missing key satisfies NotIn.
            Operator::NotIn => value.is_none_or(|v| self.values.iter().all(|x| x != v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// Selects workload objects. Fields are ANDed; a field left out matches all; a test with
/// no field at all is invalid (so that a typo never places everything).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObjectTest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
}

/// What an ObjectTest looks at, extracted once per workload object.
pub struct ObjectFacts<'a> {
    pub source_path: &'a str,
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub labels: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// An ObjectTest with its globs compiled.
#[derive(Debug, Clone)]
pub struct CompiledObjectTest {
    pub test: ObjectTest,
    paths: Option<GlobSet>,
    names: Option<GlobSet>,
}

impl ObjectTest {
    pub fn compile(&self) -> Result<CompiledObjectTest, String> {
        let empty = self.paths.is_none()
            && self.api_groups.is_none()
            && self.kinds.is_none()
            && self.namespaces.is_none()
            && self.names.is_none()
            && self.object_selector.is_none();
        if empty {
            return Err("an object test needs at least one field (paths, apiGroups, kinds, \
                        namespaces, names or objectSelector); `{}` would match every object"
                .into());
        }
        if let Some(sel) = &self.object_selector {
            sel.validate().map_err(|e| format!("objectSelector: {e}"))?;
        }
        // In paths `*` stays within one directory and `**` crosses them, as in gitignore.
        let paths = self
            .paths
            .as_ref()
            .map(|p| glob_set(p, true).map_err(|e| format!("paths: {e}")))
            .transpose()?;
        let names = self
            .names
            .as_ref()
            .map(|n| glob_set(n, false).map_err(|e| format!("names: {e}")))
            .transpose()?;
        Ok(CompiledObjectTest {
            test: self.clone(),
            paths,
            names,
        })
    }
}

fn glob_set(patterns: &[String], literal_separator: bool) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let glob: Glob = GlobBuilder::new(p)
            .literal_separator(literal_separator)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("invalid glob {p:?}: {e}"))?;
        set.add(glob);
    }
    set.build().map_err(|e| e.to_string())
}

impl CompiledObjectTest {
    pub fn matches(&self, o: &ObjectFacts<'_>) -> bool {
        let t = &self.test;
        if let Some(paths) = &self.paths
            && !paths.is_match(o.source_path)
        {
            return false;
        }
        if let Some(groups) = &t.api_groups
            && !groups.iter().any(|g| g == o.group)
        {
            return false;
        }
        if let Some(kinds) = &t.kinds
            && !kinds.iter().any(|k| k == o.kind)
        {
            return false;
        }
        if let Some(namespaces) = &t.namespaces {
            // A cluster-scoped object matches only where `namespaces` is left out.
            match o.namespace {
                Some(ns) if namespaces.iter().any(|n| n == ns) => {}
                _ => return false,
            }
        }
        if let Some(names) = &self.names
            && !names.is_match(o.name)
        {
            return false;
        }
        if let Some(sel) = &t.object_selector {
            let ok = match o.labels {
                Some(labels) => sel.matches(labels),
                None => sel.matches(&NoLabels),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![Requirement {
                key: key.into(),
                operator,
                values: values.iter().map(|s| s.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn every_operator_as_in_kubernetes() {
        let east = labels(&[("region", "us-east"), ("tier", "edge")]);
        let bare = labels(&[]);
        assert!(req("region", Operator::In, &["us-east", "eu"]).matches(&east));
        assert!(!req("region", Operator::In, &["eu"]).matches(&east));
        assert!(!req("region", Operator::In, &["us-east"]).matches(&bare));
        assert!(req("region", Operator::NotIn, &["eu"]).matches(&east));
        assert!(!req("region", Operator::NotIn, &["us-east"]).matches(&east));
        assert!(
            req("region", Operator::NotIn, &["us-east"]).matches(&bare),
            "missing key satisfies NotIn"
        );
        assert!(req("tier", Operator::Exists, &[]).matches(&east));
        assert!(!req("tier", Operator::Exists, &[]).matches(&bare));
        assert!(req("tier", Operator::DoesNotExist, &[]).matches(&bare));
        assert!(!req("tier", Operator::DoesNotExist, &[]).matches(&east));
        assert!(LabelSelector::default().matches(&bare), "{{}} matches everything");
    }

    #[test]
    fn operator_value_rules() {
        assert!(req("a", Operator::In, &[]).validate().is_err());
        assert!(req("a", Operator::Exists, &["x"]).validate().is_err());
        assert!(req("a", Operator::DoesNotExist, &[]).validate().is_ok());
    }

    #[test]
    fn empty_object_test_is_rejected() {
        assert!(ObjectTest::default().compile().is_err());
    }

    #[test]
    fn path_globs_keep_star_within_a_directory() {
        let t = ObjectTest {
            paths: Some(vec!["workloads/*.yaml".into(), "apps/**".into()]),
            ..Default::default()
        }
        .compile()
        .unwrap();
        let facts = |p| ObjectFacts {
            source_path: p,
            group: "",
            kind: "ConfigMap",
            namespace: None,
            name: "x",
            labels: None,
        };
        assert!(t.matches(&facts("workloads/a.yaml")));
        assert!(!t.matches(&facts("workloads/sub/a.yaml")));
        assert!(t.matches(&facts("apps/x/y/z.yml")));
    }

    #[test]
    fn namespaces_never_match_cluster_scoped_objects() {
        let t = ObjectTest {
            namespaces: Some(vec!["web".into()]),
            ..Default::default()
        }
        .compile()
        .unwrap();
        let mut facts = ObjectFacts {
            source_path: "a.yaml",
            group: "",
            kind: "Namespace",
            namespace: None,
            name: "web",
            labels: None,
        };
        assert!(!t.matches(&facts));
        facts.namespace = Some("web");
        assert!(t.matches(&facts));
    }
}
