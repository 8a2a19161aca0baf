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

use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository};
use rayon::prelude::*;

use super::index_file::{self, NewEntry};
use super::objects::{Entry, MODE_BLOB, MODE_TREE, ObjectSet, hash_object};
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
/// Blobs in `objects` are written from memory; others are read from the repository.
pub fn update(repo: &Repository, old: Option<Oid>, new: Oid, objects: &ObjectSet) -> Result<Updated> {
    let Some(root) = repo.workdir().map(Path::to_path_buf) else {
        return Ok(Updated::Files { written: 0, removed: 0 });
    };
    let started = std::time::Instant::now();
    let old_tree = old.map(|c| repo.find_commit(c).map(|c| c.tree_id())).transpose()?;
    let new_tree = repo.find_commit(new)?.tree_id();
    // Files are written as stored; line-ending conversion and other filters are libgit2's.
    let filtered = repo
        .config()
        .and_then(|c| c.get_string("core.autocrlf"))
        .is_ok_and(|v| v != "false")
        || read_tree(repo, objects, new_tree)?
            .is_some_and(|entries| entries.iter().any(|e| e.name == ".gitattributes"));
    if filtered {
        return Ok(Updated::Unsupported);
    }
    let mut steps = Vec::new();
    if !changed_files(repo, objects, "", old_tree, Some(new_tree), &mut steps)? {
        return Ok(Updated::Unsupported);
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        files = steps.len(),
        "work tree: trees compared"
    );

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
    // In path order, as the steps are: each worker then makes directories (and below, writes
    // files) in one part of the tree, which the kernel does faster than scattered ones.
    let absent: Vec<&str> = new_dirs
        .par_iter()
        .filter(|d| {
            !d.is_empty()
                && std::fs::symlink_metadata(root.join(d)).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        })
        .copied()
        .collect();
    let in_the_way = steps.par_iter().find_first(|s| {
        let known_absent = s.old.is_none() && absent.binary_search(&parent(&s.path)).is_ok();
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
    let written: Vec<NewEntry> = steps
        .par_iter()
        .filter_map(|s| s.new.map(|n| (s, n)))
        .map_init(
            // Opened on the first blob this worker must read back (one the repository had
            // before this commit): a full render has none.
            || None::<Repository>,
            |own, (step, (oid, executable))| {
                let path = root.join(&step.path);
                let written = match objects.get(oid) {
                    Some(data) => write_file(&path, data, executable),
                    None => {
                        let own = match own {
                            Some(own) => own,
                            None => own.insert(Repository::open(&git_dir)?),
                        };
                        write_file(&path, own.find_blob(oid)?.content(), executable)
                    }
                };
                let meta = written.map_err(|e| Error::msg(format!("cannot write {}: {e}", path.display())))?;
                Ok(NewEntry {
                    path: step.path.clone(),
                    oid,
                    executable,
                    meta,
                })
            },
        )
        .collect::<Result<_>>()?;

    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "work tree: files written"
    );
    let count = written.len();
    let index_path = git_dir.join("index");
    let fast = index_file::update(&index_path, &removed, written)
        .map_err(|e| Error::msg(format!("cannot write {}: {e}", index_path.display())))?;
    if !fast {
        // An index in a form of its own (see `index_file`): libgit2 updates it, from the
        // files as they now are.
        let mut index = repo.index()?;
        for path in &removed {
            // A path the index did not have is not an error: nothing to remove.
            let _ = index.remove_path(Path::new(path));
        }
        for step in steps.iter().filter(|s| s.new.is_some()) {
            index.add_path(Path::new(&step.path))?;
        }
        index.write()?;
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        fast,
        "work tree: index written"
    );
    Ok(Updated::Files {
        written: count,
        removed: removed.len(),
    })
}

/// What a tree entry is to the work tree.
enum Kind {
    File {
        oid: Oid,
        executable: bool,
    },
    Dir(Oid),
    /// A symlink or a submodule: libgit2's checkout handles those.
    Other,
}

fn kind(entry: &Entry) -> Kind {
    match entry.mode {
        MODE_BLOB => Kind::File {
            oid: entry.oid,
            executable: false,
        },
        0o100755 => Kind::File {
            oid: entry.oid,
            executable: true,
        },
        MODE_TREE => Kind::Dir(entry.oid),
        _ => Kind::Other,
    }
}

/// The entries of a tree: from the commit's new objects when it is one of them, else from
/// the repository. `None`: a name that is not UTF-8 (libgit2's checkout handles it).
fn read_tree(repo: &Repository, objects: &ObjectSet, oid: Oid) -> Result<Option<Vec<Entry>>> {
    if let Some(entries) = objects.tree_entries(oid) {
        return Ok(Some(entries));
    }
    let tree = repo.find_tree(oid)?;
    Ok(tree
        .iter()
        .map(|e| {
            Some(Entry {
                name: e.name().ok()?.to_string(),
                mode: e.filemode() as u32,
                oid: e.id(),
            })
        })
        .collect())
}

/// Add to `steps` the files that differ between the trees `old` and `new` (either absent),
/// found at `prefix`. Subtrees with the same id are not read, so a render that changed one
/// cluster reads a handful of trees. `Ok(false)`: the change has entries left to libgit2.
fn changed_files(
    repo: &Repository,
    objects: &ObjectSet,
    prefix: &str,
    old: Option<Oid>,
    new: Option<Oid>,
    steps: &mut Vec<Step>,
) -> Result<bool> {
    if old == new {
        return Ok(true);
    }
    let read = |oid: Option<Oid>| match oid {
        Some(oid) => read_tree(repo, objects, oid),
        None => Ok(Some(Vec::new())),
    };
    let (Some(old), Some(new)) = (read(old)?, read(new)?) else {
        return Ok(false);
    };
    let mut old: std::collections::HashMap<String, Entry> = old.into_iter().map(|e| (e.name.clone(), e)).collect();
    let mut pairs: Vec<(Option<Entry>, Option<Entry>)> =
        new.into_iter().map(|e| (old.remove(&e.name), Some(e))).collect();
    pairs.extend(old.into_values().map(|e| (Some(e), None)));
    // By name: the files of a directory come out together (see `absent` in `update`).
    fn name(pair: &(Option<Entry>, Option<Entry>)) -> &str {
        pair.1.as_ref().or(pair.0.as_ref()).map_or("", |e| e.name.as_str())
    }
    pairs.sort_unstable_by(|a, b| name(a).cmp(name(b)));
    for pair in &pairs {
        let (before, after) = pair;
        if before.is_some() && before == after {
            continue;
        }
        let path = if prefix.is_empty() {
            name(pair).to_string()
        } else {
            format!("{prefix}/{}", name(pair))
        };
        let (mut old_file, mut old_dir, mut new_file, mut new_dir) = (None, None, None, None);
        for (entry, file, dir) in [
            (before, &mut old_file, &mut old_dir),
            (after, &mut new_file, &mut new_dir),
        ] {
            match entry.as_ref().map(kind) {
                None => {}
                Some(Kind::File { oid, executable }) => *file = Some((oid, executable)),
                Some(Kind::Dir(oid)) => *dir = Some(oid),
                Some(Kind::Other) => return Ok(false),
            }
        }
        // A file that becomes a directory, or the reverse: libgit2's checkout.
        if (old_file.is_some() && new_dir.is_some()) || (old_dir.is_some() && new_file.is_some()) {
            return Ok(false);
        }
        if old_file.is_some() || new_file.is_some() {
            steps.push(Step {
                path: path.clone(),
                old: old_file.map(|(oid, _)| oid),
                new: new_file,
            });
        }
        if (old_dir.is_some() || new_dir.is_some()) && !changed_files(repo, objects, &path, old_dir, new_dir, steps)? {
            return Ok(false);
        }
    }
    Ok(true)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitstore::{Entry, tests_git};

    /// The tree of `files` (paths with `/`), its objects added to `objects`.
    fn tree_of(objects: &mut ObjectSet, files: &[(&str, &str)]) -> Oid {
        let mut entries = Vec::new();
        let mut dirs: std::collections::BTreeMap<&str, Vec<(&str, &str)>> = Default::default();
        for (path, text) in files {
            match path.split_once('/') {
                Some((dir, rest)) => dirs.entry(dir).or_default().push((rest, text)),
                None => entries.push(Entry::blob(
                    *path,
                    objects.add(ObjectType::Blob, text.as_bytes().to_vec()),
                )),
            }
        }
        for (dir, files) in dirs {
            entries.push(Entry::tree(dir, tree_of(objects, &files)));
        }
        objects.add_tree(entries)
    }

    /// A commit of `files` on `parent`, its objects stored; the set is returned.
    fn commit(repo: &Repository, files: &[(&str, &str)], parent: Option<Oid>) -> (Oid, ObjectSet) {
        let mut objects = ObjectSet::default();
        let tree = tree_of(&mut objects, files);
        objects.write(repo).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        let parents: Vec<_> = parent.map(|p| repo.find_commit(p).unwrap()).into_iter().collect();
        let parents: Vec<_> = parents.iter().collect();
        let tree = repo.find_tree(tree).unwrap();
        let id = repo.commit(Some("HEAD"), &sig, &sig, "c", &tree, &parents).unwrap();
        (id, objects)
    }

    #[test]
    fn files_come_from_memory_or_from_the_repository() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repository::init(tmp.path()).unwrap();
        let (first, _) = commit(&repo, &[("a.yaml", "a: 1\n"), ("b.yaml", "b: 1\n")], None);
        // Nothing in memory: every blob is read back from the repository.
        let done = update(&repo, None, first, &ObjectSet::default()).unwrap();
        assert_eq!(done, Updated::Files { written: 2, removed: 0 });
        assert_eq!(std::fs::read_to_string(tmp.path().join("a.yaml")).unwrap(), "a: 1\n");
        // The commit's own objects in memory.
        let (second, objects) = commit(&repo, &[("a.yaml", "a: 2\n")], Some(first));
        let done = update(&repo, Some(first), second, &objects).unwrap();
        assert_eq!(done, Updated::Files { written: 1, removed: 1 });
        assert_eq!(std::fs::read_to_string(tmp.path().join("a.yaml")).unwrap(), "a: 2\n");
        assert!(!tmp.path().join("b.yaml").exists());
        assert_eq!(
            tests_git(tmp.path(), &["status", "--porcelain"]),
            "",
            "index and files match the commit"
        );
    }

    /// The files of the work tree (`.git` aside), with their text.
    fn files(root: &Path) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = walkdir::WalkDir::new(root)
            .into_iter()
            .filter_entry(|e| e.file_name() != ".git")
            .map(Result::unwrap)
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                let path = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
                (path, std::fs::read_to_string(e.path()).unwrap())
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn nested_changes_and_type_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let repo = Repository::init(root).unwrap();
        let one = [
            ("a.yaml", "a\n"),
            ("d/e/two.yaml", "2\n"),
            ("d/one.yaml", "1\n"),
            ("keep/same.yaml", "same\n"),
        ];
        let two = [
            ("a.yaml", "changed\n"),
            ("d/one.yaml", "1\n"),
            ("keep/same.yaml", "same\n"),
            ("new/deep/er.yaml", "new\n"),
        ];
        let expect = |files: &[(&str, &str)]| -> Vec<(String, String)> {
            files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect()
        };
        let (first, objects) = commit(&repo, &one, None);
        update(&repo, None, first, &objects).unwrap();
        let (second, objects) = commit(&repo, &two, Some(first));
        let done = update(&repo, Some(first), second, &objects).unwrap();
        assert_eq!(done, Updated::Files { written: 2, removed: 1 });
        assert_eq!(files(root), expect(&two));
        assert!(!root.join("d/e").exists(), "an emptied directory is removed");
        // And back, every blob read from the repository.
        let (third, _) = commit(&repo, &one, Some(second));
        update(&repo, Some(second), third, &ObjectSet::default()).unwrap();
        assert_eq!(files(root), expect(&one));
        assert!(!root.join("new").exists());
        assert_eq!(tests_git(root, &["status", "--porcelain"]), "");

        // A file that becomes a directory, and a directory that becomes a file: left to
        // libgit2's checkout, nothing touched here.
        let mut tip = third;
        for changed in [[("a.yaml/x.yaml", "x\n")], [("d", "a file\n")]] {
            let (next, objects) = commit(&repo, &changed, Some(tip));
            assert_eq!(
                update(&repo, Some(third), next, &objects).unwrap(),
                Updated::Unsupported
            );
            assert_eq!(files(root), expect(&one));
            tip = next;
        }
    }
}
