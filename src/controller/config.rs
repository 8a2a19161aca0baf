//! `starmap run --config FILE`: the controller's settings as YAML, keys = the long flag
//! names in camelCase, flat. Unknown keys are errors at their line (as in starmap.yaml).
//! Values stay as written here; the CLI merges them under its flags and parses durations.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Error, Location, Result};
use crate::yaml::{Doc, from_doc, parse_documents};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileSettings {
    pub source: Option<String>,
    pub inventory: Option<String>,
    pub deploy: Option<String>,
    pub branch: Option<String>,
    pub push: Option<bool>,
    /// Durations as flags take them: `30s`, `1m`, `1m30s`, `500ms`, or whole seconds.
    #[serde(default, deserialize_with = "duration_text")]
    pub interval: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub status_interval: Option<String>,
    pub listen: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub argocd_hub: Option<String>,
    pub concurrency: Option<usize>,
    #[serde(default, deserialize_with = "duration_text")]
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub webhook_secret_file: Option<PathBuf>,
    pub leader_elect: Option<bool>,
    pub lease_name: Option<String>,
    pub lease_namespace: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub lease_duration: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub round_timeout: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub tool_timeout: Option<String>,
    #[serde(default, deserialize_with = "duration_text")]
    pub git_timeout: Option<String>,
}

/// A duration as written: a string, or a whole number of seconds (`statusInterval: 0`).
fn duration_text<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    use serde::de::Error as _;
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) if n.is_u64() => Ok(Some(n.to_string())),
        serde_json::Value::Null => Ok(None),
        other => Err(D::Error::custom(format!(
            "expected a duration like 30s or 1m, found {other}"
        ))),
    }
}

/// A read config file: its settings, and enough of the document to say where a key is.
pub struct ConfigFile {
    pub path: String,
    pub settings: FileSettings,
    doc: Option<Doc>,
}

impl ConfigFile {
    pub fn load(path: &std::path::Path) -> Result<ConfigFile> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::msg(format!("{shown}: {e}")))?;
        let mut docs = parse_documents(&text, &shown)?;
        if docs.len() > 1 {
            return Err(Error::at(
                Location::new(&shown, docs[1].line()),
                "the controller's config file holds one document",
            ));
        }
        let Some(doc) = docs.pop() else {
            return Ok(ConfigFile {
                path: shown,
                settings: FileSettings::default(),
                doc: None,
            });
        };
        if doc.value.is_null() {
            return Ok(ConfigFile {
                path: shown,
                settings: FileSettings::default(),
                doc: None,
            });
        }
        let settings = from_doc(&doc, &shown)?;
        Ok(ConfigFile {
            path: shown,
            settings,
            doc: Some(doc),
        })
    }

    /// An error about the value of `key` (camelCase), at its line.
    pub fn error_at(&self, key: &str, message: impl std::fmt::Display) -> Error {
        let line = self.doc.as_ref().and_then(|d| d.lines.key_line(&[], key)).unwrap_or(0);
        Error::at(Location::new(&self.path, line), format!("{key}: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ConfigFile> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.yaml");
        std::fs::write(&path, text).unwrap();
        ConfigFile::load(&path)
    }

    #[test]
    fn reads_every_key() {
        let c = load(
            "source: ./src\ninventory: inv\ndeploy: /tmp/d\nbranch: prod\npush: true\ninterval: 10s\n\
             statusInterval: 0\nlisten: 0.0.0.0:9000\nkubeconfig: /k\nargocdHub: hub\nconcurrency: 4\n\
             timeout: 5s\nretries: 1\nwebhookSecretFile: /s\nleaderElect: true\nleaseName: l\n\
             leaseNamespace: ns\nleaseDuration: 10s\n",
        )
        .unwrap();
        let s = &c.settings;
        assert_eq!(s.source.as_deref(), Some("./src"));
        assert_eq!(s.status_interval.as_deref(), Some("0"));
        assert_eq!(s.concurrency, Some(4));
        assert_eq!(s.leader_elect, Some(true));
        assert_eq!(s.lease_duration.as_deref(), Some("10s"));
        assert_eq!(
            c.error_at("timeout", "bad").to_string(),
            format!("{}:12: timeout: bad", c.path)
        );
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let err = load("source: .\n\nintervall: 10s\n").err().unwrap().to_string();
        assert!(err.contains("run.yaml:3"), "{err}");
        assert!(err.contains("intervall"), "{err}");
    }

    #[test]
    fn empty_file_is_no_settings() {
        assert_eq!(load("").unwrap().settings, FileSettings::default());
        assert_eq!(load("# nothing\n").unwrap().settings, FileSettings::default());
    }
}
