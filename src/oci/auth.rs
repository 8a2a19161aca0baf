//! Registry credentials from the standard places: `STARMAP_OCI_USERNAME` and
//! `STARMAP_OCI_PASSWORD`, else a docker `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`). Credential helpers (`credsStore`, `credHelpers`) are not run: a
//! `docker login` that stored its secret in one is said to be unsupported, once.

use std::path::PathBuf;

use base64::Engine;
use serde_json::Value;

use crate::error::{Error, Result};

/// (username, password) for `registry` (`host[:port]`), if any are configured.
pub fn credentials(registry: &str) -> Result<Option<(String, String)>> {
    let user = std::env::var("STARMAP_OCI_USERNAME").ok().filter(|u| !u.is_empty());
    let password = std::env::var("STARMAP_OCI_PASSWORD").ok().filter(|p| !p.is_empty());
    match (user, password) {
        (Some(u), Some(p)) => return Ok(Some((u, p))),
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::msg(
                "STARMAP_OCI_USERNAME and STARMAP_OCI_PASSWORD go together: set both, or neither",
            ));
        }
        (None, None) => {}
    }
    let Some(path) = docker_config() else {
        return Ok(None);
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let config: Value = serde_json::from_str(&text)
        .map_err(|e| Error::msg(format!("{}: not a docker config.json: {e}", path.display())))?;
    from_docker_config(&config, registry).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
}

fn docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
}

/// The entry of `auths` for `registry`: `auth` (base64 of `user:password`), or `username` and
/// `password`. Keys may be written with a scheme and a path (`https://host/v1/`).
fn from_docker_config(config: &Value, registry: &str) -> std::result::Result<Option<(String, String)>, String> {
    let host = |key: &str| -> String {
        let key = key.split_once("://").map_or(key, |(_, rest)| rest);
        key.split('/').next().unwrap_or_default().to_string()
    };
    let entry = config
        .get("auths")
        .and_then(Value::as_object)
        .and_then(|auths| auths.iter().find(|(k, _)| host(k) == registry).map(|(_, v)| v));
    let Some(entry) = entry else {
        let helper = config
            .get("credHelpers")
            .and_then(|h| h.get(registry))
            .or_else(|| config.get("credsStore"));
        if let Some(helper) = helper.and_then(Value::as_str) {
            tracing::warn!(
                "docker config: the credentials of {registry} are in the credential helper {helper:?}, which starmap does not run; set STARMAP_OCI_USERNAME and STARMAP_OCI_PASSWORD"
            );
        }
        return Ok(None);
    };
    if let Some(encoded) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| format!("auths.{registry}.auth is not base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| format!("auths.{registry}.auth is not UTF-8"))?;
        let (user, password) = text
            .split_once(':')
            .ok_or_else(|| format!("auths.{registry}.auth is not base64 of user:password"))?;
        return Ok(Some((user.to_string(), password.to_string())));
    }
    let field = |k: &str| entry.get(k).and_then(Value::as_str).map(String::from);
    Ok(field("username").zip(field("password")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_auth_and_username_password_entries() {
        let config = json!({"auths": {
            "https://registry.example.com/v1/": {"auth": base64::engine::general_purpose::STANDARD.encode("ci:s3cret")},
            "127.0.0.1:5000": {"username": "u", "password": "p"},
        }});
        assert_eq!(
            from_docker_config(&config, "registry.example.com"),
            Ok(Some(("ci".into(), "s3cret".into())))
        );
        assert_eq!(
            from_docker_config(&config, "127.0.0.1:5000"),
            Ok(Some(("u".into(), "p".into())))
        );
        assert_eq!(from_docker_config(&config, "other.example.com"), Ok(None));
        let bad = json!({"auths": {"r.example.com": {"auth": "!!"}}});
        let e = from_docker_config(&bad, "r.example.com").unwrap_err();
        assert!(!e.contains("!!"), "the secret is not repeated: {e}");
    }
}
