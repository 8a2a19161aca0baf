//! Name rules. Cluster names become directory names in the deploy repo, so they are
//! checked as RFC 1123 labels: nothing like `../x` or `a/b` can escape `clusters/`.

/// RFC 1123 label: lowercase letters, digits and '-', starting and ending alphanumeric,
/// at most 63 characters.
pub fn validate_cluster_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!(
            "cluster name {name:?} must be 1 to 63 characters (an RFC 1123 label)"
        ));
    }
    if !is_label(name) {
        return Err(format!(
            "cluster name {name:?} is not an RFC 1123 label (lowercase letters, digits and '-', \
             starting and ending with a letter or digit); it becomes a directory name"
        ));
    }
    Ok(())
}

/// The longest file name most file systems (ext4, XFS, APFS, NTFS) and git checkouts take.
pub const MAX_FILE_NAME: usize = 255;

/// The longest name of a Placement, Customization or StatusSummary: RFC 1123 allows 253, but
/// `<name>.yaml` must fit in [`MAX_FILE_NAME`] bytes.
pub const MAX_SPEC_NAME: usize = MAX_FILE_NAME - ".yaml".len();

/// Placement and Customization names: RFC 1123 subdomains (they name files too).
pub fn validate_object_name(kind: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_SPEC_NAME {
        return Err(format!(
            "{kind} name {}... is {} characters; at most {MAX_SPEC_NAME} (it names a file, <name>.yaml)",
            head(name, 40),
            name.len()
        ));
    }
    let ok = !name.is_empty() && name.split('.').all(is_label);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} name {name:?} is not an RFC 1123 subdomain (lowercase letters, digits, '-' and '.')"
        ))
    }
}

/// The name and namespace of a Kubernetes object starmap writes: at most 253 characters
/// (the API server's limit for every name) and 63 for a namespace (an RFC 1123 label), so
/// that an object no cluster would accept is refused before anything is written.
/// `Err((field, why))` names the field at fault: `name` or `namespace`.
pub fn validate_k8s_name(name: &str, namespace: Option<&str>) -> Result<(), (&'static str, String)> {
    if name.len() > 253 {
        return Err((
            "name",
            format!(
                "metadata.name {}... is {} characters; Kubernetes allows at most 253",
                head(name, 40),
                name.len()
            ),
        ));
    }
    if name.contains(['/', '\0']) || name == "." || name == ".." {
        return Err(("name", format!("metadata.name {name:?} is not a valid object name")));
    }
    if let Some(ns) = namespace
        && !is_label(ns)
    {
        return Err((
            "namespace",
            format!(
                "metadata.namespace {:?} is not an RFC 1123 label (lowercase letters, digits and '-', at most 63 characters)",
                head(ns, 80)
            ),
        ));
    }
    Ok(())
}

/// The first `max` bytes of `s` or fewer, cut at a character boundary: enough of a long
/// name to recognise it in an error. (`str::floor_char_boundary` needs Rust 1.91.)
fn head(s: &str, max: usize) -> &str {
    let end = (0..=max.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..end]
}

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names() {
        for ok in ["a", "store-0042", "x1", &"a".repeat(63)] {
            assert!(validate_cluster_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "a/b", "..", "../x", "-a", "a-", "a.b", "a_b", &"a".repeat(64)] {
            assert!(validate_cluster_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn object_names() {
        assert!(validate_object_name("Placement", "nginx.edge-1").is_ok());
        assert!(validate_object_name("Placement", "a/b").is_err());
        assert!(validate_object_name("Placement", "..").is_err());
        let long = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(60)
        );
        assert_eq!(long.len(), 252);
        assert!(
            validate_object_name("Placement", &long)
                .unwrap_err()
                .contains("at most 250")
        );
        assert!(validate_object_name("Placement", &long[..250]).is_ok());
    }

    #[test]
    fn kubernetes_names() {
        assert!(validate_k8s_name("system:metrics-server", Some("kube-system")).is_ok());
        assert!(validate_k8s_name(&"x".repeat(253), None).is_ok());
        assert!(
            validate_k8s_name(&"x".repeat(254), None)
                .unwrap_err()
                .1
                .contains("at most 253")
        );
        assert!(validate_k8s_name("a/b", None).is_err());
        assert!(validate_k8s_name("..", None).is_err());
        assert_eq!(validate_k8s_name("a", Some("Default")).unwrap_err().0, "namespace");
        assert!(validate_k8s_name("a", Some(&"n".repeat(64))).is_err());
        // Multi-byte characters are cut at a character boundary in the message.
        assert!(validate_k8s_name(&"é".repeat(200), None).is_err());
    }
}
