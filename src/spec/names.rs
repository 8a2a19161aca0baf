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

/// Placement and Customization names: RFC 1123 subdomains (they name files too).
pub fn validate_object_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.len() <= 253 && name.split('.').all(is_label);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kind} name {name:?} is not an RFC 1123 subdomain (lowercase letters, digits, '-' and '.')"
        ))
    }
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
    }
}
