//! Git's index file (`.git/index`, git's `index-format.txt`), written in one pass after the
//! work tree changed: the entries it had, less the removed and rewritten paths, merged in
//! order with the files just written. libgit2's `Index::add` inserts entries one at a time
//! (a second of a 10,000-cluster checkout, on one core).
//!
//! Only the plain form is written here: version 2 or 3 with no extended flags, no conflicts
//! and no mandatory extension (split or sparse index). Any other index, or a change that
//! would put a file where the index has a directory, is left to libgit2 ([`update`] says so).
//! Optional extensions (the cache tree, the untracked cache, resolve-undo) are dropped: git
//! rebuilds them when it needs them.

use std::io::Write;
use std::path::Path;

use git2::Oid;
use rayon::prelude::*;
use sha1::{Digest, Sha1};

/// A file written to the work tree, as its index entry records it.
pub struct NewEntry {
    pub path: String,
    pub oid: Oid,
    pub executable: bool,
    /// The file's stat data, so that `git status` need not read it again.
    pub meta: std::fs::Metadata,
}

/// Bring the index at `index_path` up to date: drop `removed`, add or replace `added`.
/// `Ok(false)`: the index has a form this writer leaves to libgit2, nothing was written.
pub fn update(index_path: &Path, removed: &[&str], added: Vec<NewEntry>) -> std::io::Result<bool> {
    // As git does: `index.lock` is taken before the index is read, so that no other writer's
    // change lands in between, then renamed over the index.
    let lock = index_path.with_file_name("index.lock");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                std::io::Error::other(format!(
                    "{} exists: another git process is using this repository (remove the file if none is)",
                    lock.display()
                ))
            } else {
                e
            }
        })?;
    let written = match merged_index(index_path, removed, &added) {
        Ok(Some(out)) => file
            .write_all(&out)
            .and_then(|()| std::fs::rename(&lock, index_path))
            .map(|()| true),
        Ok(None) => Ok(false),
        Err(e) => Err(e),
    };
    if !matches!(written, Ok(true)) {
        let _ = std::fs::remove_file(&lock);
    }
    written
}

/// The bytes of the updated index, or `None` for an index this writer leaves to libgit2.
fn merged_index(index_path: &Path, removed: &[&str], added: &[NewEntry]) -> std::io::Result<Option<Vec<u8>>> {
    let data = match std::fs::read(index_path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let Some(existing) = (if data.is_empty() {
        Some(Vec::new())
    } else {
        parse(&data)
    }) else {
        return Ok(None);
    };
    let new: Vec<(&[u8], Vec<u8>)> = added.par_iter().map(|e| (e.path.as_bytes(), entry_bytes(e))).collect();
    let mut merged: Vec<(&[u8], &[u8])> = Vec::with_capacity(existing.len() + new.len());
    if !existing.is_empty() {
        let gone: std::collections::HashSet<&[u8]> = removed
            .iter()
            .map(|p| p.as_bytes())
            .chain(added.iter().map(|e| e.path.as_bytes()))
            .collect();
        merged.extend(
            existing
                .iter()
                .filter(|e| !gone.contains(e.path))
                .map(|e| (e.path, e.bytes)),
        );
    }
    merged.extend(new.iter().map(|(path, bytes)| (*path, bytes.as_slice())));
    // Git's order: the paths' bytes.
    merged.par_sort_unstable_by(|a, b| a.0.cmp(b.0));
    if has_file_directory_clash(&merged, &new) {
        return Ok(None);
    }

    let size: usize = merged.iter().map(|(_, b)| b.len()).sum();
    let mut out = Vec::with_capacity(12 + size + 20);
    out.extend_from_slice(b"DIRC");
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&(merged.len() as u32).to_be_bytes());
    for (_, bytes) in &merged {
        out.extend_from_slice(bytes);
    }
    let checksum = Sha1::digest(&out);
    out.extend_from_slice(&checksum);
    Ok(Some(out))
}

/// An entry of the index as it is, kept byte for byte.
struct Existing<'a> {
    path: &'a [u8],
    bytes: &'a [u8],
}

/// The fixed part of an entry: ten 32-bit stat fields, the object id, the flags.
const FIXED: usize = 40 + 20 + 2;

/// The entries of an index in the form [`update`] writes, or `None` for any other form
/// (or a damaged file: libgit2 then says what is wrong with it).
fn parse(data: &[u8]) -> Option<Vec<Existing<'_>>> {
    let (body, checksum) = data.split_at_checked(data.len().checked_sub(20)?)?;
    if body.get(..4)? != b"DIRC" || Sha1::digest(body).as_slice() != checksum {
        return None;
    }
    let version = u32::from_be_bytes(body.get(4..8)?.try_into().ok()?);
    if version != 2 && version != 3 {
        return None;
    }
    let count = u32::from_be_bytes(body.get(8..12)?.try_into().ok()?) as usize;
    let mut entries = Vec::with_capacity(count);
    let mut at = 12;
    for _ in 0..count {
        let fixed = body.get(at..at + FIXED)?;
        let flags = u16::from_be_bytes([fixed[FIXED - 2], fixed[FIXED - 1]]);
        // Extended flags (intent-to-add, skip-worktree) or a stage (a conflict).
        if flags & 0x4000 != 0 || flags & 0x3000 != 0 {
            return None;
        }
        let name = body.get(at + FIXED..)?;
        let len = name.iter().position(|&b| b == 0)?;
        let size = entry_size(len);
        entries.push(Existing {
            path: &name[..len],
            bytes: body.get(at..at + size)?,
        });
        at += size;
    }
    // Extensions: a lowercase first letter marks one a reader must understand.
    while at < body.len() {
        let signature = body.get(at..at + 4)?;
        if !signature[0].is_ascii_uppercase() {
            return None;
        }
        let size = u32::from_be_bytes(body.get(at + 4..at + 8)?.try_into().ok()?) as usize;
        at = at.checked_add(8 + size)?;
    }
    (at == body.len()).then_some(entries)
}

/// An entry's length on disk: the fixed part and the path, padded with 1 to 8 NULs to a
/// multiple of 8.
fn entry_size(path_len: usize) -> usize {
    (FIXED + path_len + 8) & !7
}

/// A version 2 entry for a file just written.
fn entry_bytes(entry: &NewEntry) -> Vec<u8> {
    use std::os::unix::fs::MetadataExt;
    let meta = &entry.meta;
    let path = entry.path.as_bytes();
    let mut out = Vec::with_capacity(entry_size(path.len()));
    // Git keeps the low 32 bits of each (seconds wrap in 2106).
    for field in [
        meta.ctime() as u32,
        meta.ctime_nsec() as u32,
        meta.mtime() as u32,
        meta.mtime_nsec() as u32,
        meta.dev() as u32,
        meta.ino() as u32,
        if entry.executable { 0o100755 } else { 0o100644 },
        meta.uid(),
        meta.gid(),
        meta.size() as u32,
    ] {
        out.extend_from_slice(&field.to_be_bytes());
    }
    out.extend_from_slice(entry.oid.as_bytes());
    out.extend_from_slice(&(path.len().min(0xfff) as u16).to_be_bytes());
    out.extend_from_slice(path);
    out.resize(entry_size(path.len()), 0);
    out
}

/// Whether a new entry is a file where the merged index has a directory, or sits under a
/// path the merged index has as a file (the existing entries are taken as consistent).
fn has_file_directory_clash(merged: &[(&[u8], &[u8])], new: &[(&[u8], Vec<u8>)]) -> bool {
    let find = |path: &[u8]| merged.binary_search_by(|(p, _)| (*p).cmp(path));
    new.par_iter().any(|(path, _)| {
        let mut dir = path.to_vec();
        dir.push(b'/');
        let first_under = find(&dir).unwrap_or_else(|at| at);
        let holds_files = merged.get(first_under).is_some_and(|(p, _)| p.starts_with(&dir));
        let under_a_file = path
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .any(|(at, _)| find(&path[..at]).is_ok());
        holds_files || under_a_file
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitstore::tests_git as git;

    fn written(root: &Path, path: &str, content: &str) -> NewEntry {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        // Stored, so that `git fsck` finds what the index names.
        let oid = git(root, &["hash-object", "-w", path]);
        NewEntry {
            path: path.into(),
            oid: Oid::from_str(oid.trim()).unwrap(),
            executable: false,
            meta: std::fs::metadata(&file).unwrap(),
        }
    }

    #[test]
    fn git_reads_what_it_writes_merged_in_order_with_stat_data() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        git(root, &["init", "-q", "-b", "main"]);
        for (path, content) in [("a/one.yaml", "1\n"), ("a-b.yaml", "x\n"), ("z.yaml", "z\n")] {
            written(root, path, content);
        }
        git(root, &["add", "-A"]);
        git(
            root,
            &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"],
        );
        // The cache tree extension git wrote is dropped, the rest kept.
        std::fs::remove_file(root.join("z.yaml")).unwrap();
        let added = vec![
            written(root, "a/one.yaml", "2\n"),
            written(root, "a.yaml", "new\n"),
            written(root, "a/b/deep.yaml", "deep\n"),
        ];
        assert!(update(&root.join(".git/index"), &["z.yaml"], added).unwrap());
        assert_eq!(
            git(root, &["ls-files", "-s"]),
            format!(
                "100644 {} 0\ta-b.yaml\n100644 {} 0\ta.yaml\n100644 {} 0\ta/b/deep.yaml\n100644 {} 0\ta/one.yaml\n",
                crate::gitstore::hash_object(git2::ObjectType::Blob, b"x\n"),
                crate::gitstore::hash_object(git2::ObjectType::Blob, b"new\n"),
                crate::gitstore::hash_object(git2::ObjectType::Blob, b"deep\n"),
                crate::gitstore::hash_object(git2::ObjectType::Blob, b"2\n"),
            )
        );
        // Against the files: nothing changed, by their stat data alone (`diff-files` does
        // not read a file whose stat data differ, it lists it; `status` would refresh the
        // index first). Staged against HEAD: what changed.
        assert_eq!(git(root, &["diff-files", "--name-only"]), "");
        assert_eq!(
            git(root, &["status", "--porcelain"]),
            "A  a.yaml\nA  a/b/deep.yaml\nM  a/one.yaml\nD  z.yaml\n"
        );
        git(root, &["fsck", "--no-progress"]);
    }

    #[test]
    fn a_missing_index_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        git(root, &["init", "-q", "-b", "main"]);
        let added = vec![written(root, "b.yaml", "b\n"), written(root, "a.yaml", "a\n")];
        assert!(update(&root.join(".git/index"), &[], added).unwrap());
        assert_eq!(git(root, &["ls-files"]), "a.yaml\nb.yaml\n");
        assert_eq!(git(root, &["diff-files", "--name-only"]), "");
    }

    #[test]
    fn other_forms_are_left_to_libgit2() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        git(root, &["init", "-q", "-b", "main"]);
        written(root, "a.yaml", "a\n");
        git(root, &["add", "-A"]);
        let index = root.join(".git/index");
        let before = std::fs::read(&index).unwrap();
        // A file where the index has one under it as a directory.
        let clash = |root: &Path| vec![written(root, "a.yaml/x", "x\n")];
        std::fs::remove_file(root.join("a.yaml")).unwrap();
        assert!(!update(&index, &[], clash(root)).unwrap());
        assert_eq!(std::fs::read(&index).unwrap(), before, "nothing written");
        assert!(!root.join(".git/index.lock").exists(), "the lock is let go");
        // Version 4 (prefix-compressed paths).
        git(root, &["update-index", "--index-version", "4"]);
        let v4 = std::fs::read(&index).unwrap();
        assert!(!update(&index, &[], vec![written(root, "b.yaml", "b\n")]).unwrap());
        assert_eq!(std::fs::read(&index).unwrap(), v4);
        // Intent to add (an extended flag).
        git(root, &["update-index", "--index-version", "3"]);
        written(root, "c.yaml", "c\n");
        git(root, &["add", "-N", "c.yaml"]);
        assert!(!update(&index, &[], vec![written(root, "d.yaml", "d\n")]).unwrap());
        // A damaged file.
        std::fs::write(&index, b"DIRC and then nothing that adds up").unwrap();
        assert!(!update(&index, &[], vec![written(root, "d.yaml", "d\n")]).unwrap());
    }

    #[test]
    fn a_held_lock_is_an_error_and_nothing_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        git(root, &["init", "-q", "-b", "main"]);
        std::fs::write(root.join(".git/index.lock"), b"").unwrap();
        let err = update(&root.join(".git/index"), &[], vec![written(root, "a.yaml", "a\n")]).unwrap_err();
        assert!(err.to_string().contains("another git process"), "{err}");
        assert!(!root.join(".git/index").exists());
        assert!(
            root.join(".git/index.lock").exists(),
            "another process's lock is not ours to remove"
        );
    }
}
