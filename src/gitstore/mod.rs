//! Git as a store of files, with no knowledge of what the files mean: object ids computed in
//! memory, trees and overlays, packs written in one go, a branch tip moved by compare-and-swap,
//! fetch and push with credentials, and the clone cache of remote repos.
//!
//! Render (`deploy`) and status (`status::store`) both write through it, so they share the
//! same guarantees: objects are stored before a branch moves; a branch moves only if it is
//! where the writer read it.

mod deflate;
mod index_file;
pub mod objects;
mod present;
pub mod remote;
pub mod repo;
pub mod tree;
pub mod worktree;

pub use objects::{Data, Entry, MODE_BLOB, MODE_TREE, ObjectSet, SharedFiles, hash_object, tree_bytes};
pub use remote::{RepoSpec, is_url};
pub use repo::{Committed, DeployRepo, Proposal, Tip};
pub use tree::{Change, entries_at, entry_at, list_blobs, overlay};

/// The default of `--git-timeout`.
pub const DEFAULT_NETWORK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a fetch, clone or push may wait to connect, and then for each answer of the
/// server (libgit2's HTTP and SSH transports; process-wide, the CLI sets it once). A remote
/// that accepts and never answers fails after this, instead of hanging a render or a round.
pub fn set_network_timeout(timeout: std::time::Duration) -> crate::error::Result<()> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX).max(1);
    // SAFETY: libgit2 global options, set before any git operation starts (the CLI calls this
    // first thing); they are plain integers.
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms)?;
        git2::opts::set_server_timeout_in_milliseconds(ms)?;
    }
    Ok(())
}

/// Objects read from a repository are not hashed again to check their ids, as git's own
/// reads do not (`git fsck` does; zlib's checksum still catches a damaged object). libgit2
/// hashes every object it reads by default, with SHA-1's collision detection: a render that
/// holds back a rollout wave reads every held object from the tip, and that second hash was
/// 7 % of its time. Process-wide; the CLI sets it first thing.
pub fn trust_stored_object_ids() {
    git2::opts::strict_hash_verification(false);
}

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

/// `git` run in `dir`, for the tests of this module's parts: its output, once it succeeded.
#[cfg(test)]
pub(crate) fn tests_git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
