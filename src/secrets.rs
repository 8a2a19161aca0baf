//! Which objects carry secrets, and in what form (api.md §7). Everyone who can read the deploy
//! repo reads every byte of it, forever: a Secret goes there encrypted with SOPS (written
//! exactly as it came, so that Flux can still check its MAC and decrypt it), or not at all
//! unless `starmap.yaml` says `secrets: {allowPlaintext: true}`.

use serde_json::Value;

/// Encrypted with SOPS: a top-level `sops:` mapping (any kind; Flux decrypts any object).
/// SOPS signs every value, encrypted or not, so such an object must not change at all.
pub fn is_sops_encrypted(object: &Value) -> bool {
    object.get("sops").is_some_and(Value::is_object)
}

/// A core `v1` Secret with a non-empty `data` or `stringData` that is not SOPS-encrypted:
/// the field that holds the plaintext.
pub fn plaintext_field(object: &Value) -> Option<&'static str> {
    if object.get("kind").and_then(Value::as_str) != Some("Secret")
        || object.get("apiVersion").and_then(Value::as_str) != Some("v1")
        || is_sops_encrypted(object)
    {
        return None;
    }
    ["data", "stringData"]
        .into_iter()
        .find(|field| match object.get(*field) {
            Some(Value::Object(m)) => !m.is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        })
}

/// What to do with a plaintext Secret instead, for the error that refuses one.
pub const PLAINTEXT_HINT: &str = "encrypt it with SOPS (`sops --encrypt --encrypted-regex '^(data|stringData)$' \
     --in-place FILE`, and set flux.decryption in starmap.yaml), or create it on the cluster (External \
     Secrets, Sealed Secrets, an Argo CD vault plugin); `secrets: {allowPlaintext: true}` in starmap.yaml \
     commits it anyway";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plaintext_secrets_are_found_by_their_data() {
        let secret = |extra: Value| {
            let mut o = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}});
            o.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            o
        };
        assert_eq!(plaintext_field(&secret(json!({"data": {"k": "dg=="}}))), Some("data"));
        assert_eq!(
            plaintext_field(&secret(json!({"stringData": {"k": "v"}}))),
            Some("stringData")
        );
        assert_eq!(
            plaintext_field(&secret(json!({"data": {}, "stringData": {"k": "v"}}))),
            Some("stringData")
        );
        // Nothing in it: a Secret an operator fills, a service account token.
        assert_eq!(plaintext_field(&secret(json!({}))), None);
        assert_eq!(plaintext_field(&secret(json!({"data": {}}))), None);
        assert_eq!(plaintext_field(&secret(json!({"data": null}))), None);
        // Not a mapping is not empty either (the API server will refuse it, git still has it).
        assert_eq!(plaintext_field(&secret(json!({"data": "x"}))), Some("data"));
        let sops = secret(json!({"data": {"k": "ENC[AES256_GCM,data:x,type:str]"}, "sops": {"mac": "ENC[x]"}}));
        assert_eq!(plaintext_field(&sops), None);
        assert!(is_sops_encrypted(&sops));
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
        assert_eq!(plaintext_field(&cm), None);
        assert!(!is_sops_encrypted(&json!({"sops": "not a mapping"})));
    }
}
