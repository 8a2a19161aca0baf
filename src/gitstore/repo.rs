//! The deploy repository: opening or creating it (a local path, or a URL cloned into a
//! cache), reading the branch tip, committing with a compare-and-swap on the branch, and
//! pushing with fetch-rebuild-retry when someone else pushed first.

use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

use super::objects::ObjectSet;
use super::remote::{self as git, RepoSpec};
use crate::error::{Error, Result};
use crate::retry;

pub struct DeployRepo {
    pub repo: Repository,
    pub branch: String,
    /// The repository as the user named it.
    pub display: String,
    /// Whether `origin` is the truth (a URL deploy repo, or `--push`).
    pub remote: bool,
    /// Set when the repo was created by this run (a fresh `git init`): the directory it
    /// was created in, and whether that directory existed (empty) before.
    created: Option<(PathBuf, bool)>,
}

/// What a commit is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tip {
    pub commit: Oid,
    pub tree: Oid,
}

impl DeployRepo {
    /// Open `spec` for writing `branch`. A local path that does not exist is created with
    /// `git init`; a URL is cloned (bare) into the cache and fetched.
    pub fn open(spec: &str, branch: &str, push: bool, create: bool) -> Result<DeployRepo> {
        let parsed = RepoSpec::parse(spec);
        let spec = parsed.shown.as_str();
        if parsed.reference.is_some() {
            return Err(Error::msg(format!(
                "--deploy {spec}: give the branch with --branch, not @REF"
            )));
        }
        if parsed.is_url {
            let repo = git::open_cache_clone(&parsed.location, "deploy")?;
            return Ok(DeployRepo {
                repo,
                branch: branch.into(),
                display: spec.into(),
                remote: true,
                created: None,
            });
        }
        let path = PathBuf::from(&parsed.location);
        let (repo, created) = match Repository::open(&path) {
            Ok(repo) => (repo, None),
            Err(_) if create && is_missing_or_empty(&path) => {
                let existed = path.exists();
                let mut options = git2::RepositoryInitOptions::new();
                options.initial_head(branch).mkpath(true);
                (Repository::init_opts(&path, &options)?, Some((path.clone(), existed)))
            }
            Err(_) if !create && is_missing_or_empty(&path) => {
                return Err(Error::msg(format!(
                    "--deploy {spec}: no repository there yet (render creates it)"
                )));
            }
            Err(e) => {
                return Err(Error::msg(format!(
                    "--deploy {spec}: not a git repository ({})",
                    e.message()
                )));
            }
        };
        if push && repo.find_remote("origin").is_err() {
            return Err(Error::msg(format!(
                "--push: the deploy repo {spec} has no remote `origin`"
            )));
        }
        Ok(DeployRepo {
            repo,
            branch: branch.into(),
            display: spec.into(),
            remote: push,
            created,
        })
    }

    /// The same repository, writing another branch (status rounds write theirs). The handle is
    /// a new one: objects either writes are visible to the other.
    pub fn on_branch(&self, branch: &str) -> Result<DeployRepo> {
        Ok(DeployRepo {
            repo: Repository::open(self.repo.path())?,
            branch: branch.into(),
            display: self.display.clone(),
            remote: self.remote,
            created: None,
        })
    }

    /// Undo the `git init` of this run (after a failed first render), so that bad input
    /// leaves no trace: the directory is removed, or emptied if it existed before.
    pub fn discard_if_created(&self) {
        if let Some((path, existed)) = &self.created {
            let removed = if *existed {
                std::fs::remove_dir_all(path.join(".git"))
            } else {
                std::fs::remove_dir_all(path)
            };
            if let Err(e) = removed {
                tracing::warn!(
                    "could not remove the deploy repo created by this run at {}: {e}",
                    path.display()
                );
            }
        }
    }

    pub fn local_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    fn remote_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }

    /// Bring the remote branch into the cache (no-op for local repos).
    pub fn fetch(&self) -> Result<()> {
        if self.remote {
            let spec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
            git::fetch(&self.repo, &[&spec])?;
        }
        Ok(())
    }

    /// The commit new work is based on: the remote branch when origin is the truth, the
    /// local branch otherwise. `None` for a branch that does not exist yet.
    pub fn tip(&self) -> Result<Option<Tip>> {
        let name = if self.remote {
            self.remote_ref()
        } else {
            self.local_ref()
        };
        match self.repo.find_reference(&name) {
            Ok(r) => {
                let commit = r.peel_to_commit()?;
                Ok(Some(Tip {
                    commit: commit.id(),
                    tree: commit.tree_id(),
                }))
            }
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Write a commit object for `tree` on `parent` (the tree's objects must be stored). A
    /// message that holds a credential this process knows is refused (`redact`).
    pub fn commit_object(&self, tree: Oid, parent: Option<Oid>, message: &str) -> Result<Oid> {
        if crate::redact::holds_secret(message.as_bytes()) {
            return Err(Error::msg(
                "internal error: a credential reached a commit message; nothing was committed (please report this)",
            ));
        }
        let tree = self.repo.find_tree(tree)?;
        let author = signature(&self.repo, "AUTHOR")?;
        let committer = signature(&self.repo, "COMMITTER")?;
        let parents: Vec<git2::Commit<'_>> = parent
            .map(|p| self.repo.find_commit(p))
            .transpose()?
            .into_iter()
            .collect();
        let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        Ok(self
            .repo
            .commit(None, &author, &committer, message, &tree, &parent_refs)?)
    }

    /// Move the local branch from `expected` to `new`, failing if it moved meanwhile
    /// (compare-and-swap). For a remote deploy repo the local branch is only a cache of
    /// what we are about to push, so it is set outright.
    pub fn advance(&self, expected: Option<Oid>, new: Oid, message: &str) -> Result<bool> {
        let name = self.local_ref();
        let log = format!("starmap: {}", message.lines().next().unwrap_or(""));
        let result = if self.remote {
            self.repo.reference(&name, new, true, &log).map(|_| ())
        } else {
            match expected {
                Some(old) => self.repo.reference_matching(&name, new, true, old, &log).map(|_| ()),
                None => self.repo.reference(&name, new, false, &log).map(|_| ()),
            }
        };
        match result {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.code(),
                    git2::ErrorCode::Modified | git2::ErrorCode::Exists | git2::ErrorCode::Locked
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Push the local branch to origin. `Ok(false)` when the remote rejected it because
    /// its branch moved (someone else pushed): the caller fetches, rebuilds and retries.
    pub fn push(&self) -> Result<bool> {
        let mut remote = self.repo.find_remote("origin")?;
        if let Some(path) = remote.url().ok().and_then(local_remote_path) {
            return self.push_local(&path);
        }
        let mut rejected: Option<String> = None;
        let mut callbacks = git::remote_callbacks();
        callbacks.push_update_reference(|_, status| {
            if let Some(status) = status {
                rejected = Some(status.to_string());
            }
            Ok(())
        });
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(callbacks);
        let refspec = format!("{0}:{0}", self.local_ref());
        before_push_test_hook();
        match remote.push(&[&refspec], Some(&mut options)) {
            Ok(()) => {}
            // libgit2's local and smart transports report a moved branch in two ways.
            Err(e) if is_non_fast_forward(&e) => return Ok(false),
            Err(e) => return Err(Error::msg(format!("push to {} failed: {}", self.display, e.message()))),
        }
        drop(options);
        match rejected {
            None => Ok(true),
            Some(status)
                if status.contains("fast-forward") || status.contains("fetch first") || status.contains("stale") =>
            {
                Ok(false)
            }
            Some(status) => Err(Error::msg(format!("push to {} was rejected: {status}", self.display))),
        }
    }

    /// Push a ref that is not a branch (`refs/starmap/...`) to origin, replacing what is there:
    /// such refs are records that a later writer may overwrite.
    pub fn push_ref(&self, name: &str) -> Result<()> {
        let mut remote = self.repo.find_remote("origin")?;
        let mut options = git2::PushOptions::new();
        options.remote_callbacks(git::remote_callbacks());
        remote
            .push(&[&format!("+{name}:{name}")], Some(&mut options))
            .map_err(|e| Error::msg(format!("push of {name} to {} failed: {}", self.display, e.message())))
    }

    /// For a local repo with a work tree on this branch: bring the files up to date, so a
    /// user who renders into `./deploy` sees the result. Only the files that changed are
    /// written, and only if each holds what the previous commit had (uncommitted edits are
    /// never overwritten); the commit is what counts.
    /// `objects` are the commit's new objects, still in memory: files are written from them
    /// rather than read back from the pack. Only for a repo that [`Self::has_work_tree`].
    fn update_work_tree(&self, old_commit: Option<Oid>, new_commit: Oid, objects: &ObjectSet) -> Result<()> {
        match super::worktree::update(&self.repo, old_commit, new_commit, objects)? {
            super::worktree::Updated::Files { written, removed } => {
                tracing::debug!(written, removed, "work tree updated");
                Ok(())
            }
            super::worktree::Updated::LocalChanges(path) => {
                tracing::warn!(
                    "the deploy repo's work tree has local changes ({path}); it was not updated (the commit is on branch {})",
                    self.branch
                );
                Ok(())
            }
            super::worktree::Updated::Unsupported => self.checkout_with_libgit2(new_commit),
        }
    }

    /// Whether the branch is checked out in a work tree of this (local) repository.
    fn has_work_tree(&self) -> bool {
        if self.remote || self.repo.is_bare() {
            return false;
        }
        let head = self
            .repo
            .find_reference("HEAD")
            .ok()
            .and_then(|h| h.symbolic_target().ok().flatten().map(String::from));
        head == Some(self.local_ref())
    }

    /// libgit2's checkout, for trees with symlinks or submodules: only a clean work tree is
    /// touched.
    fn checkout_with_libgit2(&self, new_commit: Oid) -> Result<()> {
        let mut status = git2::StatusOptions::new();
        status.include_untracked(false).show(git2::StatusShow::Workdir);
        let dirty = self
            .repo
            .statuses(Some(&mut status))
            .map(|s| !s.is_empty())
            .unwrap_or(true);
        // The index still holds the previous commit, so "clean" compares against it.
        if dirty {
            tracing::warn!(
                "the deploy repo's work tree has local changes; it was not updated (the commit is on branch {})",
                self.branch
            );
            return Ok(());
        }
        let commit = self.repo.find_commit(new_commit)?;
        let mut checkout = git2::build::CheckoutBuilder::new();
        checkout.force();
        self.repo.checkout_tree(commit.as_object(), Some(&mut checkout))?;
        let mut index = self.repo.index()?;
        index.read_tree(&commit.tree()?)?;
        index.write()?;
        Ok(())
    }
}

/// A commit one attempt proposes: the root tree, the objects it needs, the message.
pub struct Proposal {
    pub root: Oid,
    pub objects: ObjectSet,
    pub message: String,
}

/// How an attempt lost to another writer.
enum Race {
    /// The local branch moved between reading the tip and moving it.
    Commit,
    /// The remote rejected the push: someone else pushed first.
    Push,
}

/// What [`DeployRepo::commit_retrying`] did.
pub struct Committed<T> {
    /// What the last attempt's `build` returned besides its proposal.
    pub value: T,
    /// The new commit; `None` when the last attempt proposed none.
    pub commit: Option<Oid>,
    pub pushed: bool,
    /// Objects newly stored by the commit that landed.
    pub objects_written: usize,
}

impl DeployRepo {
    /// Build on the branch tip and commit, as render and status both do: `build` proposes a
    /// commit on the tip it is given (or none: nothing to do, or a dry run); its objects are
    /// stored, the branch moves by compare-and-swap and is pushed if asked. When another writer
    /// moved the branch first, everything starts again on the new tip, after a jittered wait,
    /// at most [`retry::COMMIT_ATTEMPTS`] times. `what` names the writer in logs and in the
    /// error of a branch that kept moving (`writing status`; empty for render).
    pub fn commit_retrying<T>(
        &self,
        push: bool,
        what: &str,
        mut build: impl FnMut(Option<Tip>) -> Result<(T, Option<Proposal>)>,
    ) -> Result<Committed<T>> {
        let mut delays = retry::commit_race();
        let mut attempt = 1;
        loop {
            self.fetch()?;
            let tip = self.tip()?;
            let (value, proposal) = build(tip)?;
            let Some(Proposal { root, objects, message }) = proposal else {
                return Ok(Committed {
                    value,
                    commit: None,
                    pushed: false,
                    objects_written: 0,
                });
            };
            let started = std::time::Instant::now();
            let objects_written = objects.write(&self.repo)?;
            tracing::debug!(
                objects_written,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "objects stored"
            );
            // Kept only to write the work tree from: a push builds a pack of its own.
            let work_tree = self.has_work_tree().then_some(objects);
            let commit = self.commit_object(root, tip.map(|t| t.commit), &message)?;
            let pushed_first = || -> Result<bool> { Ok(push && !self.push()?) };
            let raced = if !self.advance(tip.map(|t| t.commit), commit, &message)? {
                Some(Race::Commit)
            } else if pushed_first()? {
                Some(Race::Push)
            } else {
                None
            };
            let Some(race) = raced else {
                // The commit is the result: a work tree that cannot follow (a full disk) is
                // worth a warning, not a failure after the branch moved.
                if let Some(objects) = &work_tree
                    && let Err(e) = self.update_work_tree(tip.map(|t| t.commit), commit, objects)
                {
                    tracing::warn!(
                        "committed {commit} on branch {}, but the work tree was not updated: {e} (`git reset --hard` in it brings it up to date)",
                        self.branch
                    );
                }
                return Ok(Committed {
                    value,
                    commit: Some(commit),
                    pushed: push,
                    objects_written,
                });
            };
            let Some(delay) = delays.next() else {
                let what = if what.is_empty() {
                    String::new()
                } else {
                    format!(" {what}")
                };
                return Err(Error::msg(match race {
                    Race::Commit => format!(
                        "the branch {} kept moving; gave up{what} after {attempt} attempts",
                        self.branch
                    ),
                    Race::Push => format!(
                        "push to {} rejected {attempt} times (the branch keeps moving); nothing was lost, try again",
                        self.display
                    ),
                }));
            };
            let why = match race {
                Race::Commit => "branch moved while committing",
                Race::Push => "push rejected (someone else pushed)",
            };
            tracing::info!(attempt, "{why}; building again on the new tip");
            std::thread::sleep(delay);
            attempt += 1;
        }
    }
}

impl DeployRepo {
    /// Push to an origin that is a repository on this machine, with a real compare-and-swap.
    ///
    /// libgit2's local transport checks "fast-forward" against the refs it read when it
    /// connected, then overwrites the remote ref unconditionally: two writers pushing at the
    /// same moment can both pass the check and one commit is lost (seen in
    /// `tests/status_commits.rs`: 3 of 200 commits). `git receive-pack` behind SSH or HTTP
    /// locks the ref and checks its old value; this does the same for a local path: copy the
    /// new objects into the remote's object database as one pack, then move its ref only if
    /// it still points at the commit we built on.
    fn push_local(&self, path: &Path) -> Result<bool> {
        let remote = Repository::open_bare(path)
            .map_err(|e| Error::msg(format!("push to {}: {}", self.display, e.message())))?;
        let new = self.repo.refname_to_id(&self.local_ref())?;
        let based_on = self.repo.refname_to_id(&self.remote_ref()).ok();
        before_push_test_hook();
        let mut walk = self.repo.revwalk()?;
        walk.push(new)?;
        if let Some(old) = based_on {
            walk.hide(old)?;
        }
        let mut pack = self.repo.packbuilder()?;
        pack.insert_walk(&mut walk)?;
        let mut buf = git2::Buf::new();
        pack.write_buf(&mut buf)?;
        let odb = remote.odb()?;
        let mut writer = odb.packwriter()?;
        std::io::Write::write_all(&mut writer, &buf)
            .map_err(|e| Error::msg(format!("push to {}: writing objects: {e}", self.display)))?;
        writer.commit()?;
        let log = "starmap: push";
        let moved = match based_on {
            Some(old) => remote.reference_matching(&self.local_ref(), new, true, old, log),
            None => remote.reference(&self.local_ref(), new, false, log),
        };
        match moved {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.code(),
                    git2::ErrorCode::Modified | git2::ErrorCode::Exists | git2::ErrorCode::Locked
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(Error::msg(format!("push to {} failed: {}", self.display, e.message()))),
        }
        // What a fetch would now say the remote branch is.
        self.repo.reference(&self.remote_ref(), new, true, log)?;
        Ok(true)
    }
}

/// The path of a remote URL that names a repository on this machine (a path or `file://`).
fn local_remote_path(url: &str) -> Option<PathBuf> {
    if let Some(path) = url.strip_prefix("file://") {
        return Some(PathBuf::from(path));
    }
    (!git::is_url(url)).then(|| PathBuf::from(url))
}

/// Test seam: a command run just before each push, so a test can make a second writer
/// push in between (a real push to a real bare repository). Debug builds only: a release
/// binary never runs a shell command named by its environment.
pub const TEST_HOOK_BEFORE_PUSH: &str = "STARMAP_TEST_HOOK_BEFORE_PUSH";

#[cfg(debug_assertions)]
fn before_push_test_hook() {
    if let Some(hook) = std::env::var_os(TEST_HOOK_BEFORE_PUSH) {
        let status = std::process::Command::new("sh").arg("-c").arg(&hook).status();
        tracing::debug!(?status, "ran {TEST_HOOK_BEFORE_PUSH}");
    }
}

#[cfg(not(debug_assertions))]
fn before_push_test_hook() {}

fn is_non_fast_forward(e: &git2::Error) -> bool {
    e.code() == git2::ErrorCode::NotFastForward
        || e.message().contains("fast-forward")
        || e.message().contains("fetch first")
}

fn is_missing_or_empty(path: &Path) -> bool {
    match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(_) => !path.exists(),
    }
}

/// `GIT_AUTHOR_NAME`/`GIT_AUTHOR_EMAIL` (and `GIT_COMMITTER_*`), else the repo's git
/// config, else `starmap <starmap@localhost>`; at `GIT_AUTHOR_DATE`/`GIT_COMMITTER_DATE` when
/// set (as git reads them: `@<seconds> [+hhmm]`, `<seconds> +hhmm`, or RFC 3339), else now. A
/// fixed date makes a render's commit, and so its artifacts' manifests, reproducible.
fn signature(repo: &Repository, role: &str) -> Result<git2::Signature<'static>> {
    let name = std::env::var(format!("GIT_{role}_NAME")).ok();
    let email = std::env::var(format!("GIT_{role}_EMAIL")).ok();
    let (name, email) = match (name, email) {
        (Some(name), Some(email)) => (name, email),
        (name, email) => match repo.signature() {
            Ok(sig) => (
                sig.name().unwrap_or("starmap").to_string(),
                sig.email().unwrap_or("starmap@localhost").to_string(),
            ),
            Err(_) => (
                name.unwrap_or_else(|| "starmap".into()),
                email.unwrap_or_else(|| "starmap@localhost".into()),
            ),
        },
    };
    let date = std::env::var(format!("GIT_{role}_DATE")).ok();
    match date.as_deref().map(parse_git_date) {
        None => Ok(git2::Signature::now(&name, &email)?),
        Some(Some(time)) => Ok(git2::Signature::new(&name, &email, &time)?),
        Some(None) => Err(Error::msg(format!(
            "GIT_{role}_DATE {:?} is not a date (use @<seconds> +0000 or RFC 3339)",
            date.unwrap_or_default()
        ))),
    }
}

/// A date as git reads `GIT_*_DATE`: `@<seconds> [+hhmm]`, `<seconds> +hhmm`, or RFC 3339.
fn parse_git_date(text: &str) -> Option<git2::Time> {
    let text = text.trim();
    let mut parts = text.trim_start_matches('@').split_whitespace();
    if let Some(Ok(secs)) = parts.next().map(str::parse::<i64>) {
        let offset = match parts.next() {
            None => 0,
            Some(tz) => {
                let (sign, digits) = tz.split_at(1);
                let n: i32 = digits.parse().ok().filter(|_| digits.len() == 4)?;
                let minutes = n / 100 * 60 + n % 100;
                match sign {
                    "+" => minutes,
                    "-" => -minutes,
                    _ => return None,
                }
            }
        };
        return Some(git2::Time::new(secs, offset));
    }
    crate::time::parse_rfc3339(text).map(|secs| git2::Time::new(secs, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_dates_read_as_git_reads_them() {
        let t = |s: &str| parse_git_date(s).map(|t| (t.seconds(), t.offset_minutes()));
        assert_eq!(t("@1700000000 +0000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000 -0130"), Some((1_700_000_000, -90)));
        assert_eq!(t("@1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("2023-11-14T22:13:20Z"), Some((1_700_000_000, 0)));
        assert_eq!(t("yesterday"), None);
        assert_eq!(t("1700000000 +12"), None);
    }
}
