//! Kustomize and Helm sources: directories that are built by a tool rather than read file
//! by file. A directory holding `kustomization.yaml` (`.yml`, `Kustomization`) is built with
//! `kustomize build`; one holding `Chart.yaml` is rendered with `helm template`, once per
//! distinct set of per-cluster values from `starmap-values.yaml`. Every object a directory
//! yields has the directory as its source path.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;
use serde_json::Value;

use super::build_cache::BuildCache;
use super::tools::{HelmLibrary, Tool};
use super::tree::{Checkout, OnDisk, SourceTree};
use crate::error::{Error, Location, Result};
use crate::model::{Cluster, Workload};
use crate::template::{self, PathSeg, Templates, collect_templates, expand_leaves};
use crate::yaml::{self, Doc, Step};

pub const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];
pub const CHART_FILE: &str = "Chart.yaml";
pub const VALUES_FILE: &str = "starmap-values.yaml";
/// Chart.yaml annotations that set the release name and namespace of `helm template`.
pub const RELEASE_ANNOTATION: &str = "starmap.dev/release-name";
pub const NAMESPACE_ANNOTATION: &str = "starmap.dev/namespace";

/// The directories of a source that are built by a tool; only the outermost count (a
/// kustomize base below an overlay is part of the overlay's directory).
#[derive(Debug, Default)]
pub struct ToolDirs {
    pub kustomize: Vec<String>,
    pub charts: Vec<String>,
}

fn parent(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

impl ToolDirs {
    pub fn find<'a>(paths: impl Iterator<Item = &'a str>) -> ToolDirs {
        let mut found: Vec<(String, bool)> = Vec::new();
        for path in paths {
            let (dir, name) = parent(path);
            if KUSTOMIZATION_FILES.contains(&name) {
                found.push((dir.to_string(), false));
            } else if name == CHART_FILE {
                found.push((dir.to_string(), true));
            }
        }
        found.sort();
        found.dedup_by(|a, b| a.0 == b.0);
        let outermost: Vec<(String, bool)> = found
            .iter()
            .filter(|(d, _)| !found.iter().any(|(other, _)| other != d && is_under(d, other)))
            .cloned()
            .collect();
        let (charts, kustomize): (Vec<_>, Vec<_>) = outermost.into_iter().partition(|(_, chart)| *chart);
        ToolDirs {
            kustomize: kustomize.into_iter().map(|(d, _)| d).collect(),
            charts: charts.into_iter().map(|(d, _)| d).collect(),
        }
    }

    /// Whether a file belongs to a tool-built directory (and is not read by itself).
    pub fn contains(&self, path: &str) -> bool {
        self.kustomize.iter().chain(&self.charts).any(|d| is_under(path, d))
    }

    pub fn is_empty(&self) -> bool {
        self.kustomize.is_empty() && self.charts.is_empty()
    }
}

/// How a directory is named as a source path (`.` for the root).
pub fn dir_path(dir: &str) -> &str {
    if dir.is_empty() { "." } else { dir }
}

/// The tool runs of one load of a source, through the build cache: the source is written
/// out to disk (for a git source) only when some build is not in the cache.
pub struct Builds {
    source: OnDisk,
    checkout: OnceLock<Result<Checkout>>,
    whole_source: OnceLock<Result<String>>,
    pub cache: BuildCache,
}

impl Builds {
    pub fn new(source: OnDisk, cache: BuildCache) -> Builds {
        Builds {
            source,
            checkout: OnceLock::new(),
            whole_source: OnceLock::new(),
            cache,
        }
    }

    fn checkout(&self) -> Result<&Checkout> {
        self.checkout
            .get_or_init(|| self.source.checkout())
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The digest of the whole source (computed once).
    fn whole_source(&self) -> Result<&str> {
        self.whole_source
            .get_or_init(|| self.source.digest(""))
            .as_deref()
            .map_err(Clone::clone)
    }

    /// The tool's output for `key`: from the cache, or by running `build` on the source on
    /// disk (and then kept). `key: None` always runs it.
    fn output(&self, key: Option<String>, build: impl FnOnce(&Checkout) -> Result<String>) -> Result<String> {
        if let Some(found) = key.as_deref().and_then(|k| self.cache.get(k)) {
            return Ok(found);
        }
        self.build(key, build)
    }

    /// Runs `build` on the source on disk and keeps its output under `key`, without looking
    /// in the cache first (the caller did).
    fn build(&self, key: Option<String>, build: impl FnOnce(&Checkout) -> Result<String>) -> Result<String> {
        let output = build(self.checkout()?)?;
        if let Some(key) = key {
            self.cache.put(&key, &output);
        }
        Ok(output)
    }

    /// After the last build: keep the cache within its limit; say what it saved.
    pub fn finish(&self) {
        let counts = &self.cache.counts;
        let (hits, misses) = (
            counts.hits.load(std::sync::atomic::Ordering::Relaxed),
            counts.misses.load(std::sync::atomic::Ordering::Relaxed),
        );
        if hits + misses > 0 {
            tracing::info!("build cache: {hits} tool runs reused, {misses} run");
        }
        self.cache.trim();
    }
}

/// Whether kustomize may fetch something over the network for this source (a remote base or
/// resource): its output then depends on more than the source, so it is not cached.
fn kustomize_reaches_out(tree: &SourceTree) -> bool {
    tree.files.iter().any(|f| {
        KUSTOMIZATION_FILES.contains(&parent(&f.path).1) && (f.text.contains("://") || f.text.contains("github.com/"))
    })
}

/// Build every kustomize directory (in parallel) into documents: (source path, documents).
/// A build is keyed by the whole source (an overlay reaches outside its directory).
pub fn build_kustomize(tree: &SourceTree, builds: &Builds, dirs: &[String]) -> Result<Vec<(String, Vec<Doc>)>> {
    let cacheable = !dirs.is_empty() && !kustomize_reaches_out(tree);
    let built: Vec<Result<(String, Vec<Doc>)>> = dirs
        .par_iter()
        .map(|dir| {
            let shown = tree.display_path(dir_path(dir));
            let tool = Tool::kustomize(&shown)?;
            let key = if cacheable {
                let identity = tool.identity();
                let source = builds.whole_source()?;
                Some(BuildCache::key(&[
                    b"kustomize build",
                    identity.as_bytes(),
                    source.as_bytes(),
                    dir.as_bytes(),
                ]))
            } else {
                None
            };
            let output = builds.output(key, |checkout| tool.kustomize_build(&checkout.path().join(dir), &shown))?;
            let docs = yaml::parse_documents(&output, &format!("{shown} (kustomize build output)"))?;
            Ok((dir_path(dir).to_string(), docs))
        })
        .collect();
    built.into_iter().collect()
}

/// A chart and what starmap needs to render it.
pub struct Chart {
    pub dir: String,
    pub shown: String,
    pub release: String,
    pub namespace: String,
    /// `starmap-values.yaml`, with its path for messages.
    pub values: Option<(Doc, String)>,
    /// The files its output depends on, for the build cache: its directory, or the whole
    /// source (`""`) when a `file://` dependency reaches outside it.
    pub inputs: String,
}

impl Chart {
    pub fn read(tree: &SourceTree, dir: &str) -> Result<Chart> {
        let join = |name: &str| {
            if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            }
        };
        let chart_path = join(CHART_FILE);
        let shown = tree.display_path(&chart_path);
        let text = tree.file(&chart_path).map(|f| f.text.as_str()).unwrap_or("");
        let doc = yaml::parse_documents(text, &shown)?.into_iter().next();
        let meta = doc.as_ref().map(|d| &d.value);
        let chart_name = meta.and_then(|m| m.get("name")).and_then(Value::as_str);
        let Some(chart_name) = chart_name else {
            return Err(Error::at(Location::new(&shown, 1), "Chart.yaml has no `name`"));
        };
        let annotation = |key: &str| {
            meta.and_then(|m| m.pointer(&format!("/annotations/{}", key.replace('/', "~1"))))
                .and_then(Value::as_str)
        };
        let values_path = join(VALUES_FILE);
        let values = match tree.file(&values_path) {
            Some(f) => {
                let values_shown = tree.display_path(&values_path);
                let doc = yaml::parse_documents(&f.text, &values_shown)?.into_iter().next();
                doc.map(|d| (d, values_shown))
            }
            None => None,
        };
        Ok(Chart {
            dir: dir.to_string(),
            shown: tree.display_path(dir_path(dir)),
            release: annotation(RELEASE_ANNOTATION).unwrap_or(chart_name).to_string(),
            namespace: annotation(NAMESPACE_ANNOTATION).unwrap_or("default").to_string(),
            values,
            inputs: if text.contains("file://") {
                String::new()
            } else {
                dir.to_string()
            },
        })
    }

    /// Each cluster's values, grouped: (values, clusters that have exactly these values).
    fn value_sets(&self, clusters: &[Cluster]) -> Result<Vec<(Value, Vec<usize>)>> {
        let Some((doc, shown)) = &self.values else {
            return Ok(vec![(Value::Object(Default::default()), (0..clusters.len()).collect())]);
        };
        let mut texts = Vec::new();
        collect_templates(&doc.value, &mut Vec::new(), &mut |text, _| texts.push(text));
        let env = template::environment();
        let templates = Templates::compile(&env, texts.iter().copied())
            .map_err(|(text, e)| Error::at(Location::new(shown, doc.line()), format!("template {text:?}: {e}")))?;
        let mut groups: BTreeMap<String, (Value, Vec<usize>)> = BTreeMap::new();
        for (i, cluster) in clusters.iter().enumerate() {
            let ctx = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({
                "cluster": cluster.template_context(),
            })));
            let mut values = doc.value.clone();
            let mut path = Vec::new();
            expand_leaves(&mut values, &templates, &ctx, &mut path).map_err(|(path, text, e)| {
                let steps: Vec<Step<'_>> = path.iter().map(PathSeg::step).collect();
                Error::at(
                    Location::new(shown, doc.lines.line_at(&steps)),
                    format!("template {text:?}: {e}"),
                )
                .with_cluster(&cluster.name)
            })?;
            let key = serde_json::to_string(&values).unwrap_or_default();
            groups.entry(key).or_insert_with(|| (values, Vec::new())).1.push(i);
        }
        Ok(groups.into_values().collect())
    }

    /// Render the chart once per distinct set of values; each object is restricted to the
    /// clusters that have those values.
    /// Each set's output comes from the build cache when the chart, the values, the release,
    /// the namespace and helm itself are those of an earlier run.
    pub fn render(&self, builds: &Builds, clusters: &[Cluster]) -> Result<Vec<Workload>> {
        let sets = self.value_sets(clusters)?;
        let tool = Tool::helm(&self.shown)?;
        let library = HelmLibrary::from_env();
        let identity = library.as_ref().map_or_else(|| tool.identity(), HelmLibrary::identity);
        let inputs = builds.source.digest(&self.inputs)?;
        let keyed: Vec<(String, String)> = sets
            .iter()
            .map(|(values, _)| {
                let values = serde_json::to_string(values).unwrap_or_default();
                let key = BuildCache::key(&[
                    b"helm template",
                    identity.as_bytes(),
                    inputs.as_bytes(),
                    self.release.as_bytes(),
                    self.namespace.as_bytes(),
                    values.as_bytes(),
                ]);
                (values, key)
            })
            .collect();
        let mut outputs: Vec<Option<String>> = keyed.par_iter().map(|(_, key)| builds.cache.get(key)).collect();
        // With Helm's library, one process renders every set the cache lacks.
        let missing: Vec<usize> = (0..keyed.len()).filter(|&i| outputs[i].is_none()).collect();
        if let Some(library) = &library
            && !missing.is_empty()
        {
            let values: Vec<&str> = missing.iter().map(|&i| keyed[i].0.as_str()).collect();
            let dir = builds.checkout()?.path().join(&self.dir);
            let rendered = library.render_many(&dir, &self.release, &self.namespace, &values, &self.shown)?;
            for (&i, output) in missing.iter().zip(rendered) {
                if let Some(output) = output {
                    builds.cache.put(&keyed[i].1, &output);
                    outputs[i] = Some(output);
                }
            }
        }
        let rendered: Vec<Result<Vec<Workload>>> = sets
            .par_iter()
            .zip(keyed.par_iter())
            .zip(outputs.into_par_iter())
            .map(|(((_, members), (values, key)), output)| {
                let output = match output {
                    Some(output) => output,
                    None => builds.build(Some(key.clone()), |checkout| {
                        let mut file =
                            tempfile::NamedTempFile::new().map_err(|e| Error::msg(format!("temporary file: {e}")))?;
                        std::io::Write::write_all(&mut file, values.as_bytes())
                            .map_err(|e| Error::msg(format!("temporary file: {e}")))?;
                        tool.helm_template(
                            &checkout.path().join(&self.dir),
                            &self.release,
                            &self.namespace,
                            file.path(),
                            &self.shown,
                        )
                    })?,
                };
                let docs = yaml::parse_documents(&output, &format!("{} (helm template output)", self.shown))?;
                let mut mask = vec![false; clusters.len()];
                for &m in members {
                    mask[m] = true;
                }
                let mask = Arc::new(mask);
                docs.into_iter()
                    .filter(|d| !d.value.is_null())
                    .map(|doc| {
                        let mut w = super::load::workload(doc.value, doc.lines, dir_path(&self.dir), 0)?;
                        w.only_clusters = Some(mask.clone());
                        Ok(w)
                    })
                    .collect()
            })
            .collect();
        Ok(rendered
            .into_iter()
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_outermost_tool_directories_count() {
        let paths = [
            "apps/base/podinfo/kustomization.yaml",
            "apps/production/kustomization.yaml",
            "overlay/kustomization.yaml",
            "overlay/base/kustomization.yaml",
            "charts/web/Chart.yaml",
            "charts/web/templates/deploy.yaml",
            "plain/x.yaml",
        ];
        let dirs = ToolDirs::find(paths.iter().copied());
        assert_eq!(dirs.kustomize, ["apps/base/podinfo", "apps/production", "overlay"]);
        assert_eq!(dirs.charts, ["charts/web"]);
        assert!(dirs.contains("overlay/base/deploy.yaml"));
        assert!(dirs.contains("charts/web/templates/deploy.yaml"));
        assert!(!dirs.contains("plain/x.yaml"));
        assert!(!dirs.contains("overlay2/x.yaml"));
    }
}
