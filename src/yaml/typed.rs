//! Typed deserialization of a parsed document, with errors that point at the line of the
//! offending field (serde_path_to_error gives the path, the LineTree gives its line).

use serde::de::DeserializeOwned;

use super::parse::{Doc, Step};
use crate::error::{Error, Location, Result};

pub fn from_doc<T: DeserializeOwned>(doc: &Doc, path: &str) -> Result<T> {
    from_value_at(&doc.value, doc, &[], path)
}

/// Deserialize `value`, which sits at `at` inside `doc`.
pub fn from_value_at<T: DeserializeOwned>(
    value: &serde_json::Value,
    doc: &Doc,
    at: &[Step<'_>],
    path: &str,
) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let segments: Vec<Step<'_>> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.as_str())),
                _ => None,
            })
            .collect();
        let mut full: Vec<Step<'_>> = at.to_vec();
        full.extend(segments.iter().cloned());
        let message = e.inner().to_string();
        // For an unknown field, point at the field itself.
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next());
        // serde_path_to_error's path ends with the unknown key itself: look it up in
        // its parent mapping.
        let line = unknown
            .and_then(|field| {
                let parent = match full.last() {
                    Some(Step::Key(k)) if *k == field => &full[..full.len() - 1],
                    _ => &full[..],
                };
                doc.lines.key_line(parent, field)
            })
            .unwrap_or_else(|| doc.lines.line_at(&full));
        let shown_path = e.path().to_string();
        let message = if shown_path.is_empty() || shown_path == "." {
            message
        } else {
            format!("{shown_path}: {message}")
        };
        Error::at(Location::new(path, line), message)
    })
}
