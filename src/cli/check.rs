//! `validate --schemas`: every rendered object, and every generated Argo CD/Flux object,
//! checked against JSON schemas. Kinds without a schema are counted as unchecked, never
//! passed silently.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;
use starmap::desired::Rendered;
use starmap::schema::{SchemaSet, Verdict};
use starmap::{Result, yaml};

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaReport {
    pub checked: usize,
    pub invalid: Vec<Invalid>,
    pub unchecked: Vec<Unchecked>,
}

#[derive(Debug, Serialize)]
pub struct Invalid {
    pub cluster: String,
    pub object: String,
    /// Where it comes from: the source path, or the generated file.
    pub source: String,
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unchecked {
    pub api_version: String,
    pub kind: String,
    pub objects: usize,
}

/// One object to check: (cluster, source, object).
type Item = (String, String, Value);

pub fn against_schemas(
    rendered: &[Rendered],
    fleet_files: &[(String, String)],
    schemas: &SchemaSet,
) -> Result<SchemaReport> {
    let mut items: Vec<Item> = Vec::new();
    for Rendered { cluster: r, sync } in rendered {
        for o in &r.objects {
            let doc = yaml::parse_documents(&o.content, &o.file)?;
            items.extend(doc.into_iter().map(|d| (r.name.clone(), o.source.clone(), d.value)));
        }
        // `kustomization.yaml` files configure kustomize; they are not applied objects.
        for (name, content) in sync.flux.iter().filter(|(n, _)| n != "kustomization.yaml") {
            let path = format!("flux/{}/{name}", r.name);
            items.extend(
                yaml::parse_documents(content, &path)?
                    .into_iter()
                    .map(|d| (r.name.clone(), path.clone(), d.value)),
            );
        }
        if let Some(app) = &sync.application {
            let path = format!("argocd/applications/{}.yaml", r.name);
            items.extend(
                yaml::parse_documents(app, &path)?
                    .into_iter()
                    .map(|d| (r.name.clone(), path.clone(), d.value)),
            );
        }
    }
    for (name, content) in fleet_files.iter().filter(|(n, _)| n != "kustomization.yaml") {
        let path = format!("argocd/{name}");
        items.extend(
            yaml::parse_documents(content, &path)?
                .into_iter()
                .map(|d| ("(fleet)".to_string(), path.clone(), d.value)),
        );
    }
    let verdicts: Vec<Verdict> = items.par_iter().map(|(_, _, v)| schemas.validate(v)).collect();
    let mut report = SchemaReport::default();
    let mut unchecked: BTreeMap<(String, String), usize> = BTreeMap::new();
    for ((cluster, source, object), verdict) in items.into_iter().zip(verdicts) {
        let text = |k: &str| object.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        match verdict {
            Verdict::Valid => report.checked += 1,
            Verdict::Invalid(errors) => {
                report.checked += 1;
                let id = starmap::model::ObjectId::of(&object)
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| text("kind"));
                report.invalid.push(Invalid {
                    cluster,
                    object: id,
                    source,
                    errors,
                });
            }
            Verdict::Unchecked => *unchecked.entry((text("apiVersion"), text("kind"))).or_default() += 1,
        }
    }
    report.unchecked = unchecked
        .into_iter()
        .map(|((api_version, kind), objects)| Unchecked {
            api_version,
            kind,
            objects,
        })
        .collect();
    Ok(report)
}
