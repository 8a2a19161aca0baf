//! One cluster's OCI artifact, in the format `flux push artifact` makes: an OCI image manifest
//! with Flux's config media type, one `tar+gzip` layer holding the files of `clusters/<c>/`
//! (paths relative to it), and the annotations `org.opencontainers.image.created`, `.source`
//! and `.revision` (`<branch>@sha1:<deploy commit>`).
//!
//! Everything here is a function of its inputs, byte for byte: entries in the order Go's
//! `filepath.WalkDir` gives (as Flux's tarball), fixed modes (0644 files, 0755 directories),
//! time 0, uid and gid 0, no user or group names; gzip with mtime 0 and a fixed level. The same
//! directory always gives the same layer digest, and the same layer, deploy commit and source
//! the same manifest digest.
//!
//! Also here: `refs/starmap/artifacts/<branch>`'s file, the record of what was pushed.

use std::collections::BTreeMap;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::yaml;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Flux's config media type; neither Flux nor Argo CD reads the config itself.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.flux.config.v1+json";
/// The config blob.
pub const CONFIG: &[u8] = b"{}";
/// The layer media type `flux push artifact` writes. Argo CD's repo server refuses it unless
/// its allow-list is extended.
pub const FLUX_LAYER_MEDIA_TYPE: &str = "application/vnd.cncf.flux.content.v1.tar+gzip";
/// The generic OCI layer type: Argo CD accepts it by default, and Flux takes it as well (it
/// reads the first layer, whatever its type, or the one `layerSelector` names).
pub const OCI_LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
pub const SOURCE_ANNOTATION: &str = "org.opencontainers.image.source";
pub const REVISION_ANNOTATION: &str = "org.opencontainers.image.revision";

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A layer: its bytes and their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub bytes: Vec<u8>,
    pub digest: String,
}

/// The `tar+gzip` layer of a cluster's files: (path relative to the cluster directory,
/// content), in any order.
pub fn layer<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Layer {
    let mut files: Vec<(Vec<&str>, &[u8])> = files.into_iter().map(|(p, c)| (p.split('/').collect(), c)).collect();
    // WalkDir's order: by name at each level, a directory's entries right after it.
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tar = tar::Builder::new(Vec::new());
    let header = |path: &str, dir: bool, size: usize| {
        let mut h = tar::Header::new_ustar();
        // Paths of a cluster directory are short and ASCII (see `files::object_file`).
        let _ = h.set_path(path);
        h.set_mode(if dir { 0o755 } else { 0o644 });
        h.set_size(size as u64);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_cksum();
        h
    };
    let mut written_dirs: Vec<Vec<&str>> = Vec::new();
    let root = header(".", true, 0);
    tar.append(&root, std::io::empty()).expect("writing to a Vec");
    for (parts, content) in &files {
        for depth in 1..parts.len() {
            let dir = &parts[..depth];
            if !written_dirs.iter().any(|d| d.as_slice() == dir) {
                let h = header(&dir.join("/"), true, 0);
                tar.append(&h, std::io::empty()).expect("writing to a Vec");
                written_dirs.push(dir.to_vec());
            }
        }
        let h = header(&parts.join("/"), false, content.len());
        tar.append(&h, *content).expect("writing to a Vec");
    }
    let tarball = tar.into_inner().expect("writing to a Vec");
    let mut gz = GzEncoder::new(Vec::with_capacity(tarball.len() / 4), Compression::new(6));
    gz.write_all(&tarball).expect("writing to a Vec");
    let bytes = gz.finish().expect("writing to a Vec");
    Layer {
        digest: digest(&bytes),
        bytes,
    }
}

/// `<branch>@sha1:<commit>`: how the revision annotation names a deploy commit (as Flux writes
/// git revisions).
pub fn revision(branch: &str, commit: &str) -> String {
    format!("{branch}@sha1:{commit}")
}

/// The deploy commit of a revision annotation (`main@sha1:<sha>`, or a bare sha).
pub fn revision_commit(revision: &str) -> Option<&str> {
    let sha = revision.rsplit_once("@sha1:").map_or(revision, |(_, sha)| sha);
    (sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha)
}

/// What the manifest of one artifact says besides its layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotations {
    /// RFC 3339: the deploy commit's time, so the manifest is a function of the commit.
    pub created: String,
    /// Where the deploy repo is (without credentials).
    pub source: String,
    /// `<branch>@sha1:<deploy commit>`.
    pub revision: String,
}

/// The manifest of an artifact: its bytes (what is pushed, and digested).
pub fn manifest(layer_digest: &str, layer_size: usize, layer_media_type: &str, annotations: &Annotations) -> Vec<u8> {
    let value = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": digest(CONFIG),
            "size": CONFIG.len(),
        },
        "layers": [{
            "mediaType": layer_media_type,
            "digest": layer_digest,
            "size": layer_size,
        }],
        "annotations": {
            CREATED_ANNOTATION: annotations.created,
            REVISION_ANNOTATION: annotations.revision,
            SOURCE_ANNOTATION: annotations.source,
        },
    });
    serde_json::to_vec(&value).expect("a JSON value serializes")
}

/// `refs/starmap/artifacts/<branch>`: what was pushed, per cluster, to which repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    /// `oci.repository` the artifacts were pushed to; another one starts a new record.
    pub repository: String,
    pub tag: String,
    /// The deploy commit whose every artifact is pushed and tagged; absent while some are
    /// missing (a push failed or was interrupted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<String>,
    pub clusters: BTreeMap<String, PublishedArtifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedArtifact {
    /// The layer digest (as the render commit's index records it).
    pub layer: String,
    /// The digest of the manifest the tag points to.
    pub manifest: String,
    /// `<branch>@sha1:<deploy commit>` of that manifest.
    pub revision: String,
}

/// The one file of a published record's tree.
pub const PUBLISHED_FILE: &str = "artifacts.yaml";

impl Published {
    pub fn to_yaml(&self) -> String {
        yaml::to_yaml_string(&serde_json::to_value(self).unwrap_or_default())
    }

    pub fn parse(text: &str, path: &str) -> Result<Published> {
        super::read_one(text, path, "record of published artifacts")
            .map_err(|e: Error| e.context("the record of published artifacts"))
    }

    /// The cluster whose artifact has this manifest digest, and the revision it carries.
    pub fn by_manifest(&self, manifest: &str) -> Option<(&str, &PublishedArtifact)> {
        self.clusters
            .iter()
            .find(|(_, a)| a.manifest == manifest)
            .map(|(c, a)| (c.as_str(), a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("shop/deployment.apps_web.yaml", b"kind: Deployment\n".as_slice()),
            ("kustomization.yaml", b"resources: []\n".as_slice()),
            ("_cluster/namespace_shop.yaml", b"kind: Namespace\n".as_slice()),
            ("shop/service_web.yaml", b"kind: Service\n".as_slice()),
        ]
    }

    #[test]
    fn the_same_files_give_the_same_layer_in_any_order() {
        let a = layer(sample());
        let mut reversed = sample();
        reversed.reverse();
        assert_eq!(a, layer(reversed));
        assert!(a.digest.starts_with("sha256:") && a.digest.len() == 71);
        let mut other = sample();
        other[0].1 = b"kind: Deployment\nspec: {}\n";
        assert_ne!(a.digest, layer(other).digest);
    }

    #[test]
    fn the_layer_is_a_tarball_in_walkdir_order_with_fixed_modes_and_times() {
        let l = layer(sample());
        let gz = flate2::read::GzDecoder::new(l.bytes.as_slice());
        assert_eq!(gz.header().map(|h| h.mtime()), Some(0));
        let mut archive = tar::Archive::new(gz);
        let entries: Vec<(String, u32, u64, bool)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.entry_type().is_dir(),
                )
            })
            .collect();
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                ".",
                "_cluster",
                "_cluster/namespace_shop.yaml",
                "kustomization.yaml",
                "shop",
                "shop/deployment.apps_web.yaml",
                "shop/service_web.yaml"
            ]
        );
        for (name, mode, mtime, dir) in &entries {
            assert_eq!(*mode, if *dir { 0o755 } else { 0o644 }, "{name}");
            assert_eq!(*mtime, 0, "{name}");
        }
    }

    #[test]
    fn manifests_are_functions_of_their_inputs() {
        let l = layer(sample());
        let a = Annotations {
            created: "2026-01-01T00:00:00Z".into(),
            source: "https://git.example.com/fleet.git".into(),
            revision: revision("main", &"a".repeat(40)),
        };
        let m = manifest(&l.digest, l.bytes.len(), OCI_LAYER_MEDIA_TYPE, &a);
        assert_eq!(m, manifest(&l.digest, l.bytes.len(), OCI_LAYER_MEDIA_TYPE, &a));
        let v: serde_json::Value = serde_json::from_slice(&m).unwrap();
        assert_eq!(v["layers"][0]["digest"], l.digest.as_str());
        assert_eq!(
            v["annotations"][REVISION_ANNOTATION],
            format!("main@sha1:{}", "a".repeat(40))
        );
        assert_eq!(v["config"]["digest"], digest(b"{}"));
    }

    #[test]
    fn revisions_name_commits() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(revision_commit(&revision("main", sha)), Some(sha));
        assert_eq!(revision_commit(sha), Some(sha));
        assert_eq!(revision_commit("latest@sha256:abcd"), None);
    }

    #[test]
    fn the_record_round_trips() {
        let mut p = Published {
            repository: "127.0.0.1:5000/fleet".into(),
            tag: "latest".into(),
            complete: Some("c".repeat(40)),
            clusters: BTreeMap::new(),
        };
        p.clusters.insert(
            "store-1".into(),
            PublishedArtifact {
                layer: "sha256:aa".into(),
                manifest: "sha256:bb".into(),
                revision: "main@sha1:cc".into(),
            },
        );
        assert_eq!(Published::parse(&p.to_yaml(), "x").unwrap(), p);
        assert_eq!(p.by_manifest("sha256:bb").map(|(c, _)| c), Some("store-1"));
    }
}
