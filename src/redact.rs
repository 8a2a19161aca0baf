//! Credentials never reach git, output or logs (api.md section 7). Every value a user typed may
//! be one: a token in a URL's userinfo (`https://ci:TOKEN@git.example.com/fleet.git`), a
//! password in the environment or a docker `config.json`, a webhook secret.
//!
//! Two mechanisms, both by type rather than by remembering:
//!
//! - [`Url`]: a location as typed (used, with its credentials, for git and the registry) and
//!   as shown (without userinfo, for everything anyone can read). Repo specs, deploy URLs and
//!   OCI repositories are parsed into it, so a display string never carries a credential.
//! - [`remember`] and [`scrub`]: every credential the process learns is remembered, and the
//!   chokepoints through which text leaves the process scrub it out: error messages, log
//!   lines, the CLI's stdout, HTTP responses, and, as a last guard, every git object before it
//!   is stored (`gitstore` refuses to write one that holds a credential).

use std::borrow::Cow;
use std::fmt;
use std::sync::RwLock;

/// What a credential is replaced with.
pub const MASK: &str = "***";

/// The credentials this process knows, longest first.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remember a credential: [`scrub`] hides it from then on. Values shorter than 4 characters
/// are not remembered (masking every `a` would garble all output, and such a secret protects
/// nothing).
pub fn remember(secret: &str) {
    if secret.len() < 4 {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_string());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Remember the credentials of a URL's userinfo (`user:password@`, or a lone token).
fn remember_userinfo(userinfo: &str) {
    match userinfo.split_once(':') {
        Some((user, password)) => {
            remember(password);
            remember(&percent_decode(password));
            // A user name that is itself a token (`https://TOKEN@github.com/…`) is long.
            if user.len() >= 20 {
                remember(user);
            }
        }
        None => {
            remember(userinfo);
            remember(&percent_decode(userinfo));
        }
    }
}

/// Whether `text` holds a credential this process knows.
pub fn holds_secret(text: &[u8]) -> bool {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    secrets.iter().any(|s| contains(text, s.as_bytes()))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// `text` with every remembered credential replaced by [`MASK`] and the userinfo of every
/// `scheme://user:password@host` URL dropped.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let mut out: Cow<'_, str> = Cow::Borrowed(text);
    {
        let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), MASK));
            }
        }
    }
    if out.contains("://") {
        let stripped = strip_userinfo(&out, true);
        if stripped != out {
            out = Cow::Owned(stripped);
        }
    }
    out
}

/// The userinfo of every `scheme://…@host` in `text`, dropped (`masked`: replaced by `***@`,
/// so a reader sees something was there).
fn strip_userinfo(text: &str, masked: bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ')' | '>' | ','))
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(i) => {
                if masked && authority[..i] != *MASK {
                    out.push_str(MASK);
                    out.push('@');
                }
                out.push_str(&authority[i + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A location a user typed (a URL, a path, `git@host:path`), which may carry credentials in
/// its userinfo. [`fmt::Display`] and [`Url::shown`] give it without them; only
/// [`Url::expose`] gives it whole, for the git or registry client that needs them.
#[derive(Clone, PartialEq, Eq)]
pub struct Url {
    raw: String,
    shown: String,
}

impl Url {
    /// Parse a location, remembering the credentials of its userinfo.
    pub fn new(raw: &str) -> Url {
        if let Some((scheme, rest)) = raw.split_once("://") {
            let end = rest.find('/').unwrap_or(rest.len());
            if let Some(i) = rest[..end].rfind('@') {
                remember_userinfo(&rest[..i]);
                return Url {
                    raw: raw.to_string(),
                    shown: format!("{scheme}://{}", &rest[i + 1..]),
                };
            }
        }
        Url {
            raw: raw.to_string(),
            shown: raw.to_string(),
        }
    }

    /// Without credentials: for messages, files, commits, generated objects.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// As typed, credentials included: only for the clients that connect with it.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// Whether it carries credentials.
    pub fn has_credentials(&self) -> bool {
        self.raw != self.shown
    }

    /// `user:password` (or a lone token) of a URL, if it has userinfo.
    pub fn userinfo(&self) -> Option<(String, Option<String>)> {
        let (_, rest) = self.raw.split_once("://")?;
        let end = rest.find('/').unwrap_or(rest.len());
        let i = rest[..end].rfind('@')?;
        let info = &rest[..i];
        Some(match info.split_once(':') {
            Some((u, p)) => (percent_decode(u), Some(percent_decode(p))),
            None => (percent_decode(info), None),
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Url({:?})", self.shown)
    }
}

/// A location as it may be shown: `https://user:token@host/x` → `https://host/x`.
pub fn shown(location: &str) -> String {
    Url::new(location).shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_credentials() {
        let u = Url::new("https://ci-bot:t0ken-abc-123@git.example.com/fleet.git");
        assert_eq!(u.shown(), "https://git.example.com/fleet.git");
        assert_eq!(u.to_string(), "https://git.example.com/fleet.git");
        assert_eq!(format!("{u:?}"), "Url(\"https://git.example.com/fleet.git\")");
        assert_eq!(u.expose(), "https://ci-bot:t0ken-abc-123@git.example.com/fleet.git");
        assert!(u.has_credentials());
        assert_eq!(u.userinfo(), Some(("ci-bot".into(), Some("t0ken-abc-123".into()))));
        // A path, an scp-like location and a URL without userinfo are shown as typed.
        for plain in ["/srv/deploy", "git@github.com:org/repo.git", "https://host/a@b"] {
            assert_eq!(Url::new(plain).shown(), plain);
        }
    }

    #[test]
    fn scrub_hides_remembered_secrets_and_any_userinfo() {
        let _ = Url::new("https://u:S3cr3t-remembered@h.example/x");
        let text = "cannot fetch https://u:S3cr3t-remembered@h.example/x: failed; token S3cr3t-remembered again";
        assert_eq!(
            scrub(text),
            "cannot fetch https://***@h.example/x: failed; token *** again"
        );
        // Userinfo of a URL never seen before is dropped too.
        assert_eq!(
            scrub("see \"https://a:b@c.example/d\""),
            "see \"https://***@c.example/d\""
        );
        assert_eq!(scrub("no secrets here"), "no secrets here");
        remember("abc");
        assert_eq!(scrub("abcdef"), "abcdef", "too short to remember");
        assert!(holds_secret(b"xx S3cr3t-remembered yy"));
        assert!(!holds_secret(b"nothing"));
    }

    #[test]
    fn percent_encoded_passwords_are_remembered_both_ways() {
        let _ = Url::new("https://u:p%40ss-w0rd-xyz@h.example/x");
        assert_eq!(scrub("p@ss-w0rd-xyz"), MASK);
        assert_eq!(scrub("p%40ss-w0rd-xyz"), MASK);
    }
}
