//! Push webhooks from GitHub and GitLab: who sent it, is it authentic, does it ask for a
//! render. Pure functions of the headers and body, so every verdict is unit-tested.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// What to do with a webhook request.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A push: render now.
    Push,
    /// GitHub's `ping` on creating the hook: answer, do nothing.
    Ping,
    /// An authentic event of another kind.
    Ignored(String),
    /// A secret is configured and the request does not prove it knows it.
    Unauthorized(&'static str),
    /// Neither a GitHub nor a GitLab event.
    BadRequest(&'static str),
}

impl Verdict {
    /// The `result` label of `starmap_webhook_requests_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Push => "accepted",
            Verdict::Ping => "ping",
            Verdict::Ignored(_) => "ignored",
            Verdict::Unauthorized(_) => "unauthorized",
            Verdict::BadRequest(_) => "bad_request",
        }
    }
}

/// Judge a request. With `secret`, GitHub requests must carry `X-Hub-Signature-256` (the
/// HMAC-SHA256 of the body) and GitLab requests `X-Gitlab-Token` equal to the secret; both
/// are compared in constant time. Authenticity is checked before the event kind, so an
/// unauthenticated caller learns nothing.
pub fn judge(headers: &HeaderMap, body: &[u8], secret: Option<&[u8]>) -> Verdict {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(event) = header("x-github-event") {
        if let Some(secret) = secret {
            let Some(signature) = header("x-hub-signature-256") else {
                return Verdict::Unauthorized("missing X-Hub-Signature-256");
            };
            if !github_signature_ok(secret, body, signature) {
                return Verdict::Unauthorized("X-Hub-Signature-256 does not match the body");
            }
        }
        return match event {
            "push" => Verdict::Push,
            "ping" => Verdict::Ping,
            other => Verdict::Ignored(other.to_string()),
        };
    }
    if let Some(event) = header("x-gitlab-event") {
        if let Some(secret) = secret {
            let Some(token) = headers.get("x-gitlab-token") else {
                return Verdict::Unauthorized("missing X-Gitlab-Token");
            };
            if !bool::from(token.as_bytes().ct_eq(secret)) {
                return Verdict::Unauthorized("X-Gitlab-Token does not match");
            }
        }
        return match event {
            "Push Hook" => Verdict::Push,
            other => Verdict::Ignored(other.to_string()),
        };
    }
    Verdict::BadRequest("not a GitHub (X-GitHub-Event) or GitLab (X-Gitlab-Event) webhook")
}

/// `sha256=<hex>` over the body with the secret as the HMAC key.
fn github_signature_ok(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(expected) = signature.strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The `X-Hub-Signature-256` value GitHub sends for `body` (for tests and clients).
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const BODY: &[u8] = br#"{"ref":"refs/heads/main"}"#;

    #[test]
    fn github_push_with_the_right_signature_renders() {
        let sig = github_signature(b"s3cret", BODY);
        let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]);
        assert_eq!(judge(&h, BODY, Some(b"s3cret")), Verdict::Push);
    }

    #[test]
    fn github_signature_of_another_body_or_secret_is_refused() {
        let sig = github_signature(b"s3cret", b"other body");
        let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]);
        assert!(matches!(judge(&h, BODY, Some(b"s3cret")), Verdict::Unauthorized(_)));
        let sig = github_signature(b"wrong", BODY);
        let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]);
        assert!(matches!(judge(&h, BODY, Some(b"s3cret")), Verdict::Unauthorized(_)));
        for bad in ["", "sha256=", "sha256=zz", "sha1=00"] {
            let h = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", bad)]);
            assert!(matches!(judge(&h, BODY, Some(b"s3cret")), Verdict::Unauthorized(_)));
        }
        let h = headers(&[("X-GitHub-Event", "push")]);
        assert_eq!(
            judge(&h, BODY, Some(b"s3cret")),
            Verdict::Unauthorized("missing X-Hub-Signature-256")
        );
    }

    #[test]
    fn an_unsigned_ping_is_refused_when_a_secret_is_set() {
        let h = headers(&[("X-GitHub-Event", "ping")]);
        assert!(matches!(judge(&h, BODY, Some(b"s3cret")), Verdict::Unauthorized(_)));
        assert_eq!(judge(&h, BODY, None), Verdict::Ping);
    }

    #[test]
    fn gitlab_token_must_match() {
        let h = headers(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "s3cret")]);
        assert_eq!(judge(&h, BODY, Some(b"s3cret")), Verdict::Push);
        let h = headers(&[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "s3cre")]);
        assert!(matches!(judge(&h, BODY, Some(b"s3cret")), Verdict::Unauthorized(_)));
        let h = headers(&[("X-Gitlab-Event", "Push Hook")]);
        assert!(matches!(judge(&h, BODY, Some(b"s3cret")), Verdict::Unauthorized(_)));
        let h = headers(&[("X-Gitlab-Event", "Merge Request Hook"), ("X-Gitlab-Token", "s3cret")]);
        assert_eq!(
            judge(&h, BODY, Some(b"s3cret")),
            Verdict::Ignored("Merge Request Hook".into())
        );
    }

    #[test]
    fn without_a_secret_any_push_is_accepted_and_other_callers_are_bad_requests() {
        let h = headers(&[("X-GitHub-Event", "push")]);
        assert_eq!(judge(&h, BODY, None), Verdict::Push);
        let h = headers(&[("X-GitHub-Event", "issues")]);
        assert_eq!(judge(&h, BODY, None), Verdict::Ignored("issues".into()));
        assert!(matches!(judge(&HeaderMap::new(), BODY, None), Verdict::BadRequest(_)));
    }
}
