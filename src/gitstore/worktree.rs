//! Bringing a deploy repo's work tree from one commit to the next by writing only the files
//! that changed, in parallel, with no per-file probing: libgit2's checkout wrote a
//! 10,000-cluster tree one file at a time, probing each path for symlinks, and needed a scan
//! of the whole work tree to know that it was clean.
//!
//! Safety is per file instead of per tree: every path about to be written or removed must
//! hold what the previous commit had there (or nothing, for a new file); if any does not
//! (a local edit, an untracked file in the way), nothing is touched and the caller warns.
//! Edits elsewhere in the work tree are left as they are. Trees with symlinks, submodules,
//! type changes or `.gitattributes`, and repos with `core.autocrlf`, go to libgit2's
//! checkout, which handles them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use git2::{Delta, ObjectType, Oid, Repository};
use rayon::prelude::*;

use super::objects::hash_object;
use crate::error::{Error, Result};

/// What [`update`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Updated {
    /// Files written and removed.
    Files { written: usize, removed: usize },
    /// A path to change holds something else than the previous commit: nothing touched.
    LocalChanges(String),
    /// The change has entries this writer leaves to libgit2 (symlinks, submodules, type
    /// changes): nothing touched.
    Unsupported,
}

/// One file to write or remove.
struct Step {
    path: String,
    /// What the previous commit had there (must still be there).
    old: Option<Oid>,
    /// What to write (`None`: remove) and whether it is executable.
    new: Option<(Oid, bool)>,
}

/// Update the work tree of `repo` (on the branch that moved from `old` to `new`) and its
/// index, for the files that differ between the two commits' trees.
pub fn update(repo: &Repository, old: Option<Oid>, new: Oid) -> Result<Updated> {
    let Some(root) = repo.workdir().map(Path::to_path_buf) else {
        return Ok(Updated::Files { written: 0, removed: 0 });
    };
    let old_tree = old.map(|c| repo.find_commit(c).and_then(|c| c.tree())).transpose()?;
    let new_tree = repo.find_commit(new)?.tree()?;
    // Files are written as stored; line-ending conversion and other filters are libgit2's.
    let filtered = repo
        .config()
        .and_then(|c| c.get_string("core.autocrlf"))
        .is_ok_and(|v| v != "false")
        || new_tree.get_name(".gitattributes").is_some();
    if filtered {
        return Ok(Updated::Unsupported);
    }
    let diff = repo.diff_tree_to_tree(old_tree.as_ref(), Some(&new_tree), None)?;
    let mut steps = Vec::with_capacity(diff.deltas().len());
    for delta in diff.deltas() {
        let file_mode = |m: git2::FileMode| match m {
            git2::FileMode::Blob => Some(false),
            git2::FileMode::BlobExecutable => Some(true),
            _ => None,
        };
        let path = |f: git2::DiffFile<'_>| f.path().and_then(Path::to_str).map(String::from);
        let step = match delta.status() {
            Delta::Added => file_mode(delta.new_file().mode()).and_then(|x| {
                Some(Step {
                    path: path(delta.new_file())?,
                    old: None,
                    new: Some((delta.new_file().id(), x)),
                })
            }),
            Delta::Deleted => file_mode(delta.old_file().mode()).and_then(|_| {
                Some(Step {
                    path: path(delta.old_file())?,
                    old: Some(delta.old_file().id()),
                    new: None,
                })
            }),
            Delta::Modified => file_mode(delta.old_file().mode())
                .and(file_mode(delta.new_file().mode()))
                .and_then(|x| {
                    Some(Step {
                        path: path(delta.new_file())?,
                        old: Some(delta.old_file().id()),
                        new: Some((delta.new_file().id(), x)),
                    })
                }),
            _ => None,
        };
        match step {
            Some(step) => steps.push(step),
            None => return Ok(Updated::Unsupported),
        }
    }
    drop(diff);
    let started = std::time::Instant::now();

    // Every path must hold what the previous commit had there, before anything is written.
    // A new file in a directory that does not exist yet is known to be absent: one look at
    // the directory instead of one per file (a new cluster brings a new directory).
    let mut new_dirs: Vec<&str> = steps
        .iter()
        .filter(|s| s.new.is_some())
        .map(|s| parent(&s.path))
        .collect();
    new_dirs.dedup();
    new_dirs.sort_unstable();
    new_dirs.dedup();
    let absent: HashSet<&str> = new_dirs
        .par_iter()
        .filter(|d| {
            !d.is_empty()
                && std::fs::symlink_metadata(root.join(d)).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        })
        .copied()
        .collect();
    let in_the_way = steps.par_iter().find_first(|s| {
        let known_absent = s.old.is_none() && absent.contains(parent(&s.path));
        !known_absent && !holds(&root.join(&s.path), s.old)
    });
    if let Some(step) = in_the_way {
        return Ok(Updated::LocalChanges(step.path.clone()));
    }
    // Removals first: a directory that becomes a file (or the reverse) needs the old one gone.
    let mut removed = Vec::new();
    for step in steps.iter().filter(|s| s.new.is_none()) {
        let path = root.join(&step.path);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::msg(format!("cannot remove {}: {e}", path.display()))),
        }
        removed.push(step.path.as_str());
    }
    remove_empty_dirs(&root, &removed);
    // In parallel: a full render makes one directory per cluster and workload (90,000 at
    // 10,000 clusters). `create_dir_all` takes a parent made meanwhile by another thread as
    // made.
    absent.par_iter().try_for_each(|dir| {
        let path = root.join(dir);
        std::fs::create_dir_all(&path).map_err(|e| Error::msg(format!("cannot create {}: {e}", path.display())))
    })?;

    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "work tree: paths checked"
    );
    let git_dir = repo.path().to_path_buf();
    let written: Vec<(String, Oid, bool, std::fs::Metadata)> = steps
        .par_iter()
        .filter_map(|s| s.new.map(|n| (s, n)))
        .map_init(
            || Repository::open(&git_dir),
            |own, (step, (oid, executable))| {
                let own = own.as_ref().map_err(|e| Error::msg(format!("git: {}", e.message())))?;
                let blob = own.find_blob(oid)?;
                let path = root.join(&step.path);
                let meta = write_file(&path, blob.content(), executable)
                    .map_err(|e| Error::msg(format!("cannot write {}: {e}", path.display())))?;
                Ok((step.path.clone(), oid, executable, meta))
            },
        )
        .collect::<Result<_>>()?;

    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "work tree: files written"
    );
    let mut index = repo.index()?;
    for path in &removed {
        // A path the index did not have is not an error: nothing to remove.
        let _ = index.remove_path(Path::new(path));
    }
    for (path, oid, executable, meta) in &written {
        index.add(&index_entry(path, *oid, *executable, meta))?;
    }
    index.write()?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "work tree: index written"
    );
    Ok(Updated::Files {
        written: written.len(),
        removed: removed.len(),
    })
}

/// The directory part of a path in the tree (`""` at the top).
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Whether `path` holds the blob `expected` (`None`: holds nothing).
fn holds(path: &Path, expected: Option<Oid>) -> bool {
    match (std::fs::symlink_metadata(path), expected) {
        (Err(e), None) => e.kind() == std::io::ErrorKind::NotFound,
        (Ok(meta), Some(oid)) if meta.is_file() => {
            std::fs::read(path).is_ok_and(|data| hash_object(ObjectType::Blob, &data) == oid)
        }
        _ => false,
    }
}

/// Write a file whose directory exists.
fn write_file(path: &Path, data: &[u8], executable: bool) -> std::io::Result<std::fs::Metadata> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if executable { 0o777 } else { 0o666 })
        .open(path)?;
    file.write_all(data)?;
    file.metadata()
}

/// Remove the directories left empty by removed files, deepest first, up to the root.
fn remove_empty_dirs(root: &Path, removed: &[&str]) {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for path in removed {
        let mut dir = Path::new(path).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            dirs.push(d.to_path_buf());
            dir = d.parent();
        }
    }
    dirs.sort_by(|a, b| {
        b.components()
            .count()
            .cmp(&a.components().count())
            .then_with(|| a.cmp(b))
    });
    dirs.dedup();
    for dir in dirs {
        // Fails, as it should, when the directory still holds something.
        let _ = std::fs::remove_dir(root.join(dir));
    }
}

/// The index entry git would write for a file just checked out (its stat data, so that
/// `git status` need not read it again).
fn index_entry(path: &str, oid: Oid, executable: bool, meta: &std::fs::Metadata) -> git2::IndexEntry {
    use std::os::unix::fs::MetadataExt;
    let time = |secs: i64, nanos: i64| git2::IndexTime::new(secs as i32, nanos as u32);
    git2::IndexEntry {
        ctime: time(meta.ctime(), meta.ctime_nsec()),
        mtime: time(meta.mtime(), meta.mtime_nsec()),
        dev: meta.dev() as u32,
        ino: meta.ino() as u32,
        mode: if executable { 0o100755 } else { 0o100644 },
        uid: meta.uid(),
        gid: meta.gid(),
        file_size: meta.size() as u32,
        id: oid,
        flags: path.len().min(0xfff) as u16,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}
