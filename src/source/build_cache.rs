//! The build cache: what `helm template` and `kustomize build` printed, kept on disk and
//! reused while their inputs do not change, so that a render with nothing new runs no tool.
//!
//! An entry is keyed by the SHA-256 of everything the tool's output depends on: the tool's
//! executable (path, size, modification time), what is run (`helm template` with its release
//! and namespace, or `kustomize build`), the digest of the files it reads (a chart's directory;
//! the whole source for kustomize, whose overlays reach outside their directory) and, for
//! Helm, the values. A changed input is a new key, never a stale hit.
//!
//! The cache is safe to share and to lose: entries are written whole (a temporary file
//! renamed into place), each carries the SHA-256 of its contents and one that does not match
//! is rebuilt, never trusted. It is bounded: past its size limit the least recently used
//! entries go. `STARMAP_BUILD_CACHE` names its directory (default
//! `$XDG_CACHE_HOME/starmap/builds`, else `~/.cache/starmap/builds`) or turns it `off`;
//! `STARMAP_BUILD_CACHE_MAX_MB` sets the limit (default 1024).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// The first line of every entry: the format, then the SHA-256 of the rest.
const HEADER: &str = "starmap-build-cache-v1 sha256:";

/// The default size limit, in MiB.
const DEFAULT_MAX_MB: u64 = 1024;

/// What the cache did during one load, for `-v` and for tests.
#[derive(Debug, Default)]
pub struct Counts {
    pub hits: AtomicUsize,
    pub misses: AtomicUsize,
}

/// The build cache of one process (or none, when it is off or has no home).
#[derive(Debug)]
pub struct BuildCache {
    dir: Option<PathBuf>,
    max_bytes: u64,
    wrote: AtomicBool,
    pub counts: Counts,
}

impl BuildCache {
    /// The cache the environment asks for (see the module's documentation).
    pub fn from_env() -> BuildCache {
        let dir = match std::env::var_os("STARMAP_BUILD_CACHE") {
            Some(v) if v == "off" => None,
            Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
            _ => std::env::var_os("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .filter(|v| !v.is_empty())
                        .map(|h| Path::new(&h).join(".cache"))
                })
                .map(|base| base.join("starmap").join("builds")),
        };
        let max_mb = std::env::var("STARMAP_BUILD_CACHE_MAX_MB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(DEFAULT_MAX_MB);
        BuildCache::at(dir, max_mb.saturating_mul(1 << 20))
    }

    pub fn at(dir: Option<PathBuf>, max_bytes: u64) -> BuildCache {
        BuildCache {
            dir,
            max_bytes,
            wrote: AtomicBool::new(false),
            counts: Counts::default(),
        }
    }

    /// The key of a build: the SHA-256 of its inputs, each length-prefixed so that no two
    /// lists of inputs hash the same.
    pub fn key(parts: &[&[u8]]) -> String {
        let mut h = Sha256::new();
        for part in parts {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        hex::encode(h.finalize())
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(&key[..2]).join(key))
    }

    /// The output stored under `key`, if there is a sound entry. A damaged entry is removed
    /// (and so rebuilt); a read that fails for another reason is a miss.
    pub fn get(&self, key: &str) -> Option<String> {
        let path = self.path(key)?;
        let found = std::fs::read(&path).ok().and_then(|bytes| {
            let text = String::from_utf8(bytes).ok()?;
            let (first, body) = text.split_once('\n')?;
            let sum = first.strip_prefix(HEADER)?;
            (sum == hex::encode(Sha256::digest(body.as_bytes()))).then(|| body.to_string())
        });
        match &found {
            Some(_) => {
                self.counts.hits.fetch_add(1, Ordering::Relaxed);
                // Recently used: the eviction goes by modification time.
                if let Ok(f) = std::fs::File::options().append(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
            }
            None => {
                self.counts.misses.fetch_add(1, Ordering::Relaxed);
                if path.exists() {
                    tracing::warn!("build cache: {} is damaged; building again", path.display());
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        found
    }

    /// Keep `output` under `key`. A cache that cannot be written only costs the next render
    /// its speed: the failure is logged, not returned.
    pub fn put(&self, key: &str, output: &str) {
        let Some(path) = self.path(key) else { return };
        let write = || -> std::io::Result<()> {
            let dir = path.parent().expect("an entry path has a parent");
            std::fs::create_dir_all(dir)?;
            let mut file = tempfile::NamedTempFile::new_in(dir)?;
            let sum = hex::encode(Sha256::digest(output.as_bytes()));
            file.write_all(format!("{HEADER}{sum}\n").as_bytes())?;
            file.write_all(output.as_bytes())?;
            file.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        match write() {
            Ok(()) => self.wrote.store(true, Ordering::Relaxed),
            Err(e) => tracing::warn!("build cache: cannot write {}: {e}", path.display()),
        }
    }

    /// Past the size limit, remove the least recently used entries until the cache is at
    /// three quarters of it. Only after this process wrote something: a render that only
    /// reads the cache does not walk it.
    pub fn trim(&self) {
        let Some(dir) = &self.dir else { return };
        if !self.wrote.load(Ordering::Relaxed) {
            return;
        }
        let mut entries: Vec<(SystemTime, u64, PathBuf)> = walkdir::WalkDir::new(dir)
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                meta.is_file().then(|| {
                    (
                        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                        meta.len(),
                        e.into_path(),
                    )
                })
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        if total <= self.max_bytes {
            return;
        }
        entries.sort();
        let target = self.max_bytes / 4 * 3;
        for (_, len, path) in entries {
            if total <= target {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// The digest of every file below `dir` on disk (paths, executable bits and contents, in
/// path order; symlinks followed, as the tools follow them; `.git` left out).
pub fn dir_digest(dir: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut h = Sha256::new();
    let walk = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git");
    for entry in walk {
        let entry = entry.map_err(std::io::Error::other)?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        let exec = entry.metadata().map_err(std::io::Error::other)?.permissions().mode() & 0o111 != 0;
        let bytes = std::fs::read(entry.path())?;
        for part in [rel.as_os_str().as_encoded_bytes(), &[exec as u8], &bytes] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    Ok(hex::encode(h.finalize()))
}

/// Who a tool is, for the key: its executable's path, size and modification time, so that
/// an upgraded tool misses the entries of the old one.
pub fn tool_identity(program: &Path) -> String {
    let resolved = if program.components().count() > 1 {
        Some(program.to_path_buf())
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(program))
                .find(|p| p.is_file())
        })
    };
    let Some(path) = resolved else {
        return program.display().to_string();
    };
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let stamp = std::fs::metadata(&path)
        .map(|m| {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{} {modified}", m.len())
        })
        .unwrap_or_default();
    format!("{} {stamp}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, max_bytes: u64) -> BuildCache {
        BuildCache::at(Some(dir.to_path_buf()), max_bytes)
    }

    #[test]
    fn a_stored_output_comes_back_and_counts_as_a_hit() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path(), 1 << 20);
        let key = BuildCache::key(&[b"helm", b"values"]);
        assert_eq!(c.get(&key), None);
        c.put(&key, "kind: ConfigMap\n");
        assert_eq!(c.get(&key).as_deref(), Some("kind: ConfigMap\n"));
        assert_eq!(c.counts.hits.load(Ordering::Relaxed), 1);
        assert_eq!(c.counts.misses.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn keys_differ_when_inputs_only_move_between_parts() {
        assert_ne!(BuildCache::key(&[b"ab", b"c"]), BuildCache::key(&[b"a", b"bc"]));
    }

    #[test]
    fn a_damaged_entry_is_a_miss_and_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path(), 1 << 20);
        let key = BuildCache::key(&[b"x"]);
        c.put(&key, "kind: ConfigMap\nmetadata: {name: a}\n");
        let path = c.path(&key).unwrap();
        let text = std::fs::read_to_string(&path).unwrap().replace("name: a", "name: b");
        std::fs::write(&path, text).unwrap();
        assert_eq!(c.get(&key), None);
        assert!(!path.exists());
        std::fs::write(&path, "not an entry").unwrap();
        assert_eq!(c.get(&key), None);
    }

    #[test]
    fn past_its_limit_the_least_recently_used_entries_go() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cache(tmp.path(), 4000);
        let keys: Vec<String> = (0..8).map(|i| BuildCache::key(&[format!("{i}").as_bytes()])).collect();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for (i, key) in keys.iter().enumerate() {
            c.put(key, &"x".repeat(900));
            let f = std::fs::File::options()
                .append(true)
                .open(c.path(key).unwrap())
                .unwrap();
            f.set_modified(old + std::time::Duration::from_secs(i as u64)).unwrap();
        }
        c.trim();
        let kept: Vec<bool> = keys.iter().map(|k| c.path(k).unwrap().exists()).collect();
        // 8 entries of ~990 bytes against 4000: trimmed to at most 3000, the newest kept.
        assert_eq!(kept, [false, false, false, false, false, true, true, true]);
    }

    #[test]
    fn a_directory_digest_follows_contents_names_and_modes() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("templates")).unwrap();
        std::fs::write(tmp.path().join("templates/a.yaml"), "a").unwrap();
        let first = dir_digest(tmp.path()).unwrap();
        assert_eq!(dir_digest(tmp.path()).unwrap(), first);
        std::fs::write(tmp.path().join("templates/a.yaml"), "b").unwrap();
        let second = dir_digest(tmp.path()).unwrap();
        assert_ne!(second, first);
        std::fs::rename(tmp.path().join("templates/a.yaml"), tmp.path().join("templates/c.yaml")).unwrap();
        let third = dir_digest(tmp.path()).unwrap();
        assert_ne!(third, second);
        let file = tmp.path().join("templates/c.yaml");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(dir_digest(tmp.path()).unwrap(), third);
    }
}
