//! Remote repositories: how a repo location is spelled, where clones are cached,
//! credentials, and fetching. Shared by source reading and the deploy repo.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A repository location with an optional ref: `PATH`, `URL`, `PATH@REF`, `URL@REF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    /// As typed, credentials included: for the git client only.
    pub location: String,
    /// Without credentials (`redact::Url`): for every message, file and commit.
    pub shown: String,
    pub reference: Option<String>,
    pub is_url: bool,
}

impl RepoSpec {
    /// A path that exists is taken whole (even with an `@` in it). Otherwise the part after
    /// the last `@` is a ref when it could be one: refs never contain `:`, while the `@` in
    /// `git@host:org/repo` is followed by one, and the `@` of a URL's userinfo
    /// (`https://user:token@host/repo.git@v1`) comes before its path.
    pub fn parse(spec: &str) -> RepoSpec {
        if Path::new(spec).exists() {
            return RepoSpec {
                location: spec.into(),
                shown: spec.into(),
                reference: None,
                is_url: false,
            };
        }
        // Where a ref's `@` may be: after the authority of a `scheme://` URL.
        let after_authority = match spec.find("://") {
            Some(i) => i + 3 + spec[i + 3..].find('/').unwrap_or(spec.len() - i - 3),
            None => 0,
        };
        let (location, reference) = match spec[after_authority..].rfind('@').map(|i| i + after_authority) {
            Some(at) if at > 0 && at + 1 < spec.len() && !spec[at + 1..].contains(':') => {
                (spec[..at].to_string(), Some(spec[at + 1..].to_string()))
            }
            _ => (spec.to_string(), None),
        };
        let is_url = is_url(&location);
        RepoSpec {
            shown: crate::redact::shown(&location),
            location,
            reference,
            is_url,
        }
    }
}

/// `scheme://...` or scp-like `user@host:path`.
pub fn is_url(s: &str) -> bool {
    if s.contains("://") {
        return true;
    }
    match (s.find('@'), s.find(':'), s.find('/')) {
        (Some(at), Some(colon), slash) => at < colon && slash.is_none_or(|sl| colon < sl),
        _ => false,
    }
}

/// Where clones of remote repos are kept: `$STARMAP_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/starmap`, else `~/.cache/starmap`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STARMAP_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("starmap");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("starmap")
}

/// A stable directory name for a URL in the cache.
pub fn cache_key(url: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(url.as_bytes());
    let tail: String = url
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo")
        .trim_end_matches(".git")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(40)
        .collect();
    format!("{tail}-{}", &hex::encode(digest)[..16])
}

/// The credentials typed into remote URLs, by the URL without them.
type UrlCredentials = std::collections::HashMap<String, (String, Option<String>)>;
static URL_CREDENTIALS: std::sync::LazyLock<std::sync::Mutex<UrlCredentials>> =
    std::sync::LazyLock::new(Default::default);

/// Credentials for remotes: those typed into the URL, `GIT_USERNAME`/`GIT_PASSWORD` (or
/// `GIT_TOKEN`) from the environment, an ssh agent, then git's own credential helpers.
pub fn remote_callbacks<'a>() -> git2::RemoteCallbacks<'a> {
    let mut callbacks = git2::RemoteCallbacks::new();
    let mut tries = 0;
    callbacks.credentials(move |url, username, allowed| {
        tries += 1;
        if tries > 4 {
            return Err(git2::Error::from_str("authentication failed"));
        }
        if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) {
            // Credentials typed into the URL itself (`https://user:token@host/…`).
            let typed = URL_CREDENTIALS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(url)
                .cloned();
            if let Some((user, password)) = typed.or_else(|| crate::redact::Url::new(url).userinfo()) {
                let (user, password) = match password {
                    Some(p) => (user, p),
                    // A lone token as the user name (GitHub's form).
                    None => ("x-access-token".to_string(), user),
                };
                return git2::Cred::userpass_plaintext(&user, &password);
            }
            let user = std::env::var("GIT_USERNAME").ok();
            let secret = std::env::var("GIT_PASSWORD")
                .or_else(|_| std::env::var("GIT_TOKEN"))
                .ok();
            if let Some(secret) = secret {
                let user = user.or(username.map(String::from)).unwrap_or_else(|| "git".into());
                return git2::Cred::userpass_plaintext(&user, &secret);
            }
            if let Ok(config) = git2::Config::open_default()
                && let Ok(cred) = git2::Cred::credential_helper(&config, url, username)
            {
                return Ok(cred);
            }
        }
        if allowed.contains(git2::CredentialType::SSH_KEY) {
            return git2::Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        if allowed.contains(git2::CredentialType::DEFAULT) {
            return git2::Cred::default();
        }
        Err(git2::Error::from_str("no credentials available"))
    });
    callbacks
}

/// Open (or create) a bare cache clone of `url` with remote `origin`.
///
/// Credentials typed into the URL stay in memory: the clone's `origin` is the URL without them
/// (nothing on disk holds them), and [`remote_callbacks`] answers the server's challenge with
/// them.
pub fn open_cache_clone(url: &str, kind: &str) -> Result<git2::Repository> {
    let typed = crate::redact::Url::new(url);
    if let Some(userinfo) = typed.userinfo() {
        URL_CREDENTIALS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(typed.shown().to_string(), userinfo);
    }
    let url = typed.shown();
    let dir = cache_dir().join(kind).join(cache_key(url));
    let repo = match git2::Repository::open_bare(&dir) {
        Ok(repo) => repo,
        Err(_) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::msg(format!("cannot create cache {}: {e}", dir.display())))?;
            let repo = git2::Repository::init_bare(&dir)?;
            repo.remote("origin", url)?;
            repo
        }
    };
    if repo.find_remote("origin")?.url().ok() != Some(url) {
        repo.remote_set_url("origin", url)?;
    }
    Ok(repo)
}

/// Fetch `refspecs` from `origin`, pruning, with credentials.
pub fn fetch(repo: &git2::Repository, refspecs: &[&str]) -> Result<()> {
    let mut remote = repo.find_remote("origin")?;
    let mut options = git2::FetchOptions::new();
    options.remote_callbacks(remote_callbacks());
    options.prune(git2::FetchPrune::On);
    options.download_tags(git2::AutotagOption::All);
    remote.fetch(refspecs, Some(&mut options), None).map_err(|e| {
        Error::msg(format!(
            "cannot fetch {}: {}",
            crate::redact::shown(remote.url().unwrap_or("origin")),
            e.message()
        ))
    })
}

/// The default branch a remote advertises (`HEAD` → `refs/heads/main`), if it says.
pub fn remote_default_branch(repo: &git2::Repository) -> Option<String> {
    let mut remote = repo.find_remote("origin").ok()?;
    remote
        .connect_auth(git2::Direction::Fetch, Some(remote_callbacks()), None)
        .ok()?;
    let branch = remote.default_branch().ok()?;
    let name = branch.as_str().ok()?.strip_prefix("refs/heads/")?.to_string();
    let _ = remote.disconnect();
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_userinfo_and_a_ref() {
        let s = RepoSpec::parse("https://ci-bot:TOKEN-1234@git.example.com/fleet.git@v1");
        assert_eq!(
            (s.location.as_str(), s.shown.as_str(), s.reference.as_deref(), s.is_url),
            (
                "https://ci-bot:TOKEN-1234@git.example.com/fleet.git",
                "https://git.example.com/fleet.git",
                Some("v1"),
                true
            )
        );
        let s = RepoSpec::parse("https://ci-bot:TOKEN-1234@git.example.com/fleet.git");
        assert_eq!(
            (s.location.as_str(), s.reference.as_deref()),
            ("https://ci-bot:TOKEN-1234@git.example.com/fleet.git", None),
            "the userinfo's @ is no ref"
        );
        let s = RepoSpec::parse("https://TOKEN-ONLY-12345@git.example.com/fleet.git@main");
        assert_eq!(
            (s.shown.as_str(), s.reference.as_deref()),
            ("https://git.example.com/fleet.git", Some("main"))
        );
    }

    #[test]
    fn repo_specs() {
        let s = RepoSpec::parse("https://example.com/org/repo.git@v1.2");
        assert_eq!(
            (s.location.as_str(), s.reference.as_deref(), s.is_url),
            ("https://example.com/org/repo.git", Some("v1.2"), true)
        );
        let s = RepoSpec::parse("git@github.com:org/repo.git");
        assert_eq!(
            (s.location.as_str(), s.reference, s.is_url),
            ("git@github.com:org/repo.git", None, true)
        );
        let s = RepoSpec::parse("git@github.com:org/repo.git@feature/x");
        assert_eq!(s.reference.as_deref(), Some("feature/x"));
        let s = RepoSpec::parse("/no/such/dir@main");
        assert_eq!(
            (s.location.as_str(), s.reference.as_deref(), s.is_url),
            ("/no/such/dir", Some("main"), false)
        );
    }
}
