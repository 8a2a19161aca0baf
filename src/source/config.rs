//! `starmap.yaml` at the source root: settings of the source repo.

use serde::Deserialize;

use super::tree::SourceTree;
use crate::error::{Error, Location, Result};
use crate::yaml::from_doc;
use crate::yaml::parse_documents;

pub const CONFIG_FILE: &str = "starmap.yaml";

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// gitignore-style globs of source paths that are not read.
    #[serde(default)]
    pub ignore: Vec<String>,
}

impl Config {
    pub fn load(tree: &SourceTree) -> Result<Config> {
        let Some(file) = tree.file(CONFIG_FILE) else {
            return Ok(Config::default());
        };
        let shown = tree.display_path(CONFIG_FILE);
        let docs = parse_documents(&file.text, &shown)?;
        match docs.as_slice() {
            [] => Ok(Config::default()),
            [doc] => from_doc(doc, &shown),
            [_, second, ..] => Err(Error::at(
                Location::new(&shown, second.line()),
                "starmap.yaml holds one document",
            )),
        }
    }
}
