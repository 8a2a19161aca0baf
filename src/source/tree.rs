//! The files of a source, from a directory or a git tree.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Location, Result};
use crate::gitstore::remote::{self as git, RepoSpec};

/// One file of a source.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Relative to the source root, `/`-separated.
    pub path: String,
    pub text: String,
}

/// Every YAML and JSON file of a source, sorted by path.
#[derive(Debug, Clone, Default)]
pub struct SourceTree {
    /// The source as the user named it (for messages and the commit trailer).
    pub display: String,
    /// The commit read, when the source is a git repository (`-dirty` when a work tree
    /// with local changes was read).
    pub commit: Option<String>,
    /// Prefix for paths in error messages (empty for the main source).
    pub path_prefix: String,
    pub files: Vec<SourceFile>,
    /// On-disk root, when the source is a directory (kustomize and helm need files).
    pub root: Option<PathBuf>,
    /// The repository and commit, when the source was read from git.
    pub git: Option<(PathBuf, git2::Oid)>,
    /// Files that could not be taken (too large, not UTF-8), by path: an error where the file
    /// is used, nothing where `ignore:` leaves it out.
    pub unreadable: Vec<(String, Error)>,
}

/// The largest source file starmap reads: 16 MiB (etcd stores objects of at most 1.5 MiB; the
/// largest CRD bundles are a few MiB).
pub const MAX_SOURCE_FILE: u64 = 16 << 20;

/// A file of `size` bytes at `path`, its bytes read by `read` only when it is not too large.
fn take(path: &str, size: u64, read: impl FnOnce() -> Result<Vec<u8>>) -> Result<SourceFile> {
    if size > MAX_SOURCE_FILE {
        return Err(Error::at(
            Location::new(path, 0),
            format!(
                "file is {:.1} MiB; a source file may be at most {} MiB (split it, or leave it out with `ignore:` in starmap.yaml)",
                size as f64 / (1u64 << 20) as f64,
                MAX_SOURCE_FILE >> 20
            ),
        ));
    }
    Ok(SourceFile {
        text: decode(read()?, path)?,
        path: path.into(),
    })
}

/// The files of a source on disk: the directory itself, or a git tree written out.
pub enum Checkout {
    Dir(PathBuf),
    Temp(tempfile::TempDir),
}

impl Checkout {
    pub fn path(&self) -> &Path {
        match self {
            Checkout::Dir(p) => p,
            Checkout::Temp(t) => t.path(),
        }
    }
}

/// A source's place on disk (a directory) or in git (a commit to write out), owned so that
/// it outlives the loading of the source: charts are rendered once the clusters are known.
#[derive(Debug, Clone)]
pub struct OnDisk {
    display: String,
    root: Option<PathBuf>,
    git: Option<(PathBuf, git2::Oid)>,
}

impl OnDisk {
    /// All files of the source on disk, for tools that read them (kustomize, helm).
    pub fn checkout(&self) -> Result<Checkout> {
        if let Some(root) = &self.root {
            return Ok(Checkout::Dir(root.clone()));
        }
        let Some((repo_path, commit)) = &self.git else {
            return Err(Error::msg(format!(
                "{}: kustomize and Helm sources need a directory or git repository",
                self.display
            )));
        };
        let dir = tempfile::tempdir().map_err(|e| Error::msg(format!("cannot create a temporary directory: {e}")))?;
        let repo = git2::Repository::open(repo_path)?;
        let tree = repo.find_commit(*commit)?.tree()?;
        let mut failure = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |parent, entry| {
            let path = dir.path().join(parent).join(entry.name().unwrap_or(""));
            let result = match entry.filemode() {
                0o040000 => std::fs::create_dir_all(&path),
                0o100644 | 0o100755 => match repo.find_blob(entry.id()) {
                    Ok(blob) => std::fs::write(&path, blob.content()),
                    Err(e) => Err(std::io::Error::other(e.message().to_string())),
                },
                // Symlinks were checked when the tree was read; submodules are not followed.
                _ => Ok(()),
            };
            match result {
                Ok(()) => git2::TreeWalkResult::Ok,
                Err(e) => {
                    failure = Some(Error::msg(format!("cannot write {}: {e}", path.display())));
                    git2::TreeWalkResult::Abort
                }
            }
        })
        .ok();
        match failure {
            Some(e) => Err(e),
            None => Ok(Checkout::Temp(dir)),
        }
    }

    /// A digest of the files below `dir` (relative to the source root, `""` for all): the
    /// git tree's id for a git source (free), the contents' SHA-256 for a directory.
    pub fn digest(&self, dir: &str) -> Result<String> {
        if let Some(root) = &self.root {
            let path = root.join(dir);
            return super::build_cache::dir_digest(&path)
                .map(|d| format!("dir:{d}"))
                .map_err(|e| Error::msg(format!("cannot read {}: {e}", path.display())));
        }
        let Some((repo_path, commit)) = &self.git else {
            return Err(Error::msg(format!(
                "{}: kustomize and Helm sources need a directory or git repository",
                self.display
            )));
        };
        let repo = git2::Repository::open(repo_path)?;
        let tree = repo.find_commit(*commit)?.tree()?;
        let id = if dir.is_empty() {
            tree.id()
        } else {
            tree.get_path(Path::new(dir))?.id()
        };
        Ok(format!("git:{id}"))
    }
}

/// YAML and JSON documents, and template overrides in `templates/`.
fn wanted(path: &str) -> bool {
    path.ends_with(".yaml")
        || path.ends_with(".yml")
        || path.ends_with(".json")
        || path == "Kustomization"
        || path.ends_with("/Kustomization")
        || (path.starts_with(crate::config::TEMPLATES_DIR) && path.ends_with(".j2"))
}

impl SourceTree {
    /// Open `spec` (`PATH`, `URL`, `PATH@REF`, `URL@REF`). A plain file is a source of one
    /// file (for `--inventory clusters.yaml`).
    pub fn open(spec: &str) -> Result<SourceTree> {
        // Shown without the credentials a URL may carry, in messages and in the deploy repo.
        let shown = crate::redact::shown(spec);
        let repo_spec = RepoSpec::parse(spec);
        let mut tree = if repo_spec.is_url {
            read_remote(&repo_spec)?
        } else if let Some(reference) = &repo_spec.reference {
            let repo = git2::Repository::open(&repo_spec.location)
                .map_err(|e| Error::msg(format!("{}: not a git repository ({})", repo_spec.shown, e.message())))?;
            read_git(&repo, reference)?
        } else {
            let path = Path::new(&repo_spec.location);
            if path.is_file() {
                read_single_file(path)?
            } else if path.is_dir() {
                match git2::Repository::open_bare(path) {
                    Ok(repo) => read_git(&repo, "HEAD")?,
                    Err(_) => read_dir(path)?,
                }
            } else {
                return Err(Error::msg(format!("{shown}: no such file, directory or repository")));
            }
        };
        tree.display = shown;
        tree.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(tree)
    }

    /// Where the source's files are on disk, or can be written out from, for the tools.
    pub fn on_disk(&self) -> OnDisk {
        OnDisk {
            display: self.display.clone(),
            root: self.root.clone(),
            git: self.git.clone(),
        }
    }

    pub fn file(&self, path: &str) -> Option<&SourceFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// How a file is named in messages.
    pub fn display_path(&self, path: &str) -> String {
        format!("{}{}", self.path_prefix, path)
    }
}

fn decode(bytes: Vec<u8>, shown_as: &str) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..offset].iter().filter(|b| **b == b'\n').count() as u32 + 1;
        Error::at(
            Location::new(shown_as, line),
            format!("file is not valid UTF-8 (invalid byte at offset {offset})"),
        )
    })
}

fn read_single_file(path: &Path) -> Result<SourceTree> {
    let shown = path.display().to_string();
    let size = std::fs::metadata(path)
        .map_err(|e| Error::msg(format!("{shown}: {e}")))?
        .len();
    let file = take(&shown, size, || {
        std::fs::read(path).map_err(|e| Error::msg(format!("{shown}: {e}")))
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = path.parent().map(|p| p.display().to_string()).unwrap_or_default();
    Ok(SourceTree {
        path_prefix: if parent.is_empty() {
            String::new()
        } else {
            format!("{parent}/")
        },
        files: vec![SourceFile { path: name, ..file }],
        ..Default::default()
    })
}

/// A directory on disk. Symlinks to files inside the root are read; a symlink that points
/// outside the root (or nowhere) is an error, so a source cannot smuggle in other files.
fn read_dir(root: &Path) -> Result<SourceTree> {
    let canonical_root = root
        .canonicalize()
        .map_err(|e| Error::msg(format!("{}: {e}", root.display())))?;
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git");
    for entry in walker {
        let entry = entry.map_err(|e| Error::msg(format!("{}: {e}", root.display())))?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let Some(rel) = rel.to_str() else {
            return Err(Error::msg(format!(
                "{}: file name is not UTF-8",
                entry.path().display()
            )));
        };
        let rel = rel.replace('\\', "/");
        let file_type = entry.file_type();
        if file_type.is_dir() {
            continue;
        }
        if file_type.is_symlink() {
            let target = entry
                .path()
                .canonicalize()
                .map_err(|_| Error::at(Location::new(&rel, 0), "symlink points to nothing"))?;
            if !target.starts_with(&canonical_root) {
                return Err(Error::at(
                    Location::new(&rel, 0),
                    format!("symlink points outside the source ({})", target.display()),
                ));
            }
            if target.is_dir() {
                tracing::warn!(path = %rel, "skipping symlink to a directory (its target is read where it is)");
                continue;
            }
        }
        if !wanted(&rel) {
            continue;
        }
        // Through a symlink, the size of what it points to.
        let size = std::fs::metadata(entry.path())
            .map_err(|e| Error::msg(format!("{rel}: {e}")))?
            .len();
        let read = || std::fs::read(entry.path()).map_err(|e| Error::msg(format!("{rel}: {e}")));
        match take(&rel, size, read) {
            Ok(file) => files.push(file),
            Err(e) => unreadable.push((rel, e)),
        }
    }
    Ok(SourceTree {
        commit: work_tree_commit(&canonical_root),
        root: Some(canonical_root),
        files,
        unreadable,
        ..Default::default()
    })
}

/// When a directory source sits in a git work tree, the commit checked out there, with
/// `-dirty` when files under the directory differ from it.
fn work_tree_commit(dir: &Path) -> Option<String> {
    let repo = git2::Repository::discover(dir).ok()?;
    let head = repo.head().ok()?.peel_to_commit().ok()?.id().to_string();
    let workdir = repo.workdir()?.canonicalize().ok()?;
    let rel = dir.strip_prefix(&workdir).ok()?;
    let mut options = git2::StatusOptions::new();
    options.include_untracked(true).recurse_untracked_dirs(true);
    if !rel.as_os_str().is_empty() {
        options.pathspec(rel);
    }
    let dirty = repo.statuses(Some(&mut options)).map(|s| !s.is_empty()).unwrap_or(true);
    Some(if dirty { format!("{head}-dirty") } else { head })
}

fn read_remote(spec: &RepoSpec) -> Result<SourceTree> {
    let repo = git::open_cache_clone(&spec.location, "sources")?;
    git::fetch(&repo, &["+refs/heads/*:refs/remotes/origin/*"])?;
    let reference = match &spec.reference {
        Some(r) => r.clone(),
        None => git::remote_default_branch(&repo).unwrap_or_else(|| "main".into()),
    };
    // A branch name means the remote's branch; tags and commit ids resolve as they are.
    let candidates = [format!("refs/remotes/origin/{reference}"), reference.clone()];
    for candidate in &candidates {
        if repo.revparse_single(candidate).is_ok() {
            return read_git(&repo, candidate);
        }
    }
    Err(Error::msg(format!(
        "{}: no branch, tag or commit {reference:?}",
        spec.shown
    )))
}

/// Read a commit's tree straight from the object database (no work tree needed).
fn read_git(repo: &git2::Repository, reference: &str) -> Result<SourceTree> {
    let commit = repo
        .revparse_single(reference)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| Error::msg(format!("no commit {reference:?}: {}", e.message())))?;
    let tree = commit.tree()?;
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    let mut failure: Option<Error> = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        let path = format!("{dir}{}", entry.name().unwrap_or(""));
        match read_git_entry(repo, &tree, &path, entry) {
            Ok(Some(Ok(file))) => files.push(file),
            Ok(Some(Err(e))) => unreadable.push((path, e)),
            Ok(None) => {}
            Err(e) => {
                failure = Some(e);
                return git2::TreeWalkResult::Abort;
            }
        }
        git2::TreeWalkResult::Ok
    })
    .or_else(|e| if failure.is_some() { Ok(()) } else { Err(e) })?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(SourceTree {
        commit: Some(commit.id().to_string()),
        files,
        unreadable,
        git: Some((repo.path().to_path_buf(), commit.id())),
        ..Default::default()
    })
}

fn read_git_entry(
    repo: &git2::Repository,
    root: &git2::Tree<'_>,
    path: &str,
    entry: &git2::TreeEntry<'_>,
) -> Result<Option<Result<SourceFile>>> {
    // The size from the object's header: a huge blob is never loaded.
    let blob_file = |id: git2::Oid| -> Result<Result<SourceFile>> {
        let (size, _) = repo.odb()?.read_header(id)?;
        Ok(take(path, size as u64, || Ok(repo.find_blob(id)?.content().to_vec())))
    };
    match entry.filemode() {
        0o100644 | 0o100755 if wanted(path) => Ok(Some(blob_file(entry.id())?)),
        0o120000 => {
            let blob = repo.find_blob(entry.id())?;
            let target = String::from_utf8_lossy(blob.content()).into_owned();
            let Some(resolved) = resolve_inside(path, &target) else {
                return Err(Error::at(
                    Location::new(path, 0),
                    format!("symlink points outside the source ({target})"),
                ));
            };
            let Ok(target_entry) = root.get_path(Path::new(&resolved)) else {
                return Err(Error::at(
                    Location::new(path, 0),
                    format!("symlink points to nothing ({target})"),
                ));
            };
            if target_entry.kind() != Some(git2::ObjectType::Blob) || !wanted(path) {
                return Ok(None);
            }
            Ok(Some(blob_file(target_entry.id())?))
        }
        _ => Ok(None),
    }
}

/// Resolve a symlink target relative to the link's directory; `None` if it leaves the root.
fn resolve_inside(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for component in Path::new(target).components() {
        match component {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets_must_stay_inside() {
        assert_eq!(
            resolve_inside("a/b/link.yaml", "../c.yaml").as_deref(),
            Some("a/c.yaml")
        );
        assert_eq!(resolve_inside("link.yaml", "../outside.yaml"), None);
        assert_eq!(resolve_inside("a/link.yaml", "/etc/passwd"), None);
    }
}
