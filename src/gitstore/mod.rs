//! Git as a store of files, with no knowledge of what the files mean: object ids computed in
//! memory, trees and overlays, packs written in one go, a branch tip moved by compare-and-swap,
//! fetch and push with credentials, and the clone cache of remote repos.
//!
//! Render (`deploy`) and status (`status::store`) both write through it, so they share the
//! same guarantees: objects are stored before a branch moves; a branch moves only if it is
//! where the writer read it.

pub mod objects;
pub mod remote;
pub mod repo;
pub mod tree;

pub use objects::{Entry, MODE_BLOB, MODE_TREE, ObjectSet, hash_object, tree_bytes};
pub use remote::{RepoSpec, is_url};
pub use repo::{Committed, DeployRepo, Proposal, Tip};
pub use tree::{Change, entries_at, entry_at, list_blobs, overlay};

/// libgit2's errors, said as a user reads them.
impl From<git2::Error> for crate::error::Error {
    fn from(e: git2::Error) -> Self {
        crate::error::Error::msg(format!("git: {}", e.message()))
    }
}

/// The text of a blob (lossy UTF-8).
pub fn blob_text(repo: &git2::Repository, oid: git2::Oid) -> crate::error::Result<String> {
    let blob = repo.find_blob(oid)?;
    Ok(String::from_utf8_lossy(blob.content()).into_owned())
}
