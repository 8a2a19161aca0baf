//! Reading the kubeconfig as kubectl does (`--kubeconfig`, else the `KUBECONFIG` list merged,
//! else `~/.kube/config`; relative file references resolved against the file's directory),
//! with room for a fleet. kube's own reader parses with serde-saphyr's default budget of
//! 250,000 YAML nodes, which a kubeconfig of about 7,800 contexts (each with its own cluster
//! and user) already breaches; here the budget grows with the file, while the limits on
//! aliases, which guard against expansion bombs, stay the defaults.

use std::path::{Path, PathBuf};

use kube::config::Kubeconfig;

use super::client::error_chain;
use crate::error::{Error, Result};

/// The kubeconfig of `path`, or of `KUBECONFIG`/`~/.kube/config` when `None`.
pub(crate) fn load(path: Option<&Path>) -> Result<Kubeconfig> {
    let paths: Vec<PathBuf> = match path {
        Some(p) => vec![p.to_path_buf()],
        None => match std::env::var_os("KUBECONFIG") {
            Some(list) if std::env::split_paths(&list).any(|p| !p.as_os_str().is_empty()) => {
                std::env::split_paths(&list)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            }
            _ => match std::env::home_dir() {
                Some(home) => vec![home.join(".kube").join("config")],
                None => {
                    return Err(Error::msg(
                        "cannot read kubeconfig: no KUBECONFIG and no home directory",
                    ));
                }
            },
        },
    };
    let mut merged: Option<Kubeconfig> = None;
    for path in &paths {
        let read =
            read_file(path).map_err(|e| Error::msg(format!("cannot read kubeconfig {}: {e}", path.display())))?;
        merged = Some(match merged {
            None => read,
            Some(m) => m.merge(read).map_err(|e| {
                Error::msg(format!(
                    "cannot read kubeconfig {}: {}",
                    path.display(),
                    error_chain(&e)
                ))
            })?,
        });
    }
    Ok(merged.unwrap_or_default())
}

/// One file, its documents merged.
fn read_file(path: &Path) -> std::result::Result<Kubeconfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let docs: Vec<Kubeconfig> = serde_saphyr::from_multiple_with_options(&text, options(text.len()))
        .map_err(|e| super::client::one_line(&format!("failed to parse kubeconfig YAML: {e}")))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut merged: Option<Kubeconfig> = None;
    for mut doc in docs {
        absolute_paths(&mut doc, dir);
        merged = Some(match merged {
            None => doc,
            Some(m) => m.merge(doc).map_err(|e| error_chain(&e))?,
        });
    }
    Ok(merged.unwrap_or_default())
}

/// serde-saphyr's defaults, with the size limits scaled to a file of `len` bytes: a YAML node
/// or event takes at least a byte or two of text.
fn options(len: usize) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = budget.max_reader_input_bytes.map(|max| max.max(len + 1));
    budget.max_nodes = budget.max_nodes.max(len);
    budget.max_events = budget.max_events.max(len.saturating_mul(2));
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(len);
    serde_saphyr::options! { budget: Some(budget) }
}

/// Relative file references (certificates, keys, token files, an exec command with a path
/// separator) made absolute against the kubeconfig's directory, as kubectl and kube do.
fn absolute_paths(config: &mut Kubeconfig, dir: &Path) {
    let absolute = |file: &mut Option<String>| {
        if let Some(f) = file
            && Path::new(f.as_str()).is_relative()
            && let Some(abs) = dir.join(f.as_str()).to_str()
        {
            *f = abs.to_string();
        }
    };
    for cluster in config.clusters.iter_mut().filter_map(|c| c.cluster.as_mut()) {
        absolute(&mut cluster.certificate_authority);
    }
    for user in config.auth_infos.iter_mut().filter_map(|a| a.auth_info.as_mut()) {
        absolute(&mut user.client_certificate);
        absolute(&mut user.client_key);
        absolute(&mut user.token_file);
        if let Some(exec) = &mut user.exec
            && exec
                .command
                .as_deref()
                .is_some_and(|c| c.contains(std::path::MAIN_SEPARATOR))
        {
            absolute(&mut exec.command);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn a_fleet_sized_kubeconfig_reads() {
        // 10,000 contexts, each with its own cluster and user: past kube's default budget.
        let mut text = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
        for i in 0..10_000 {
            let _ = write!(
                text,
                "- name: c{i}\n  cluster:\n    server: https://10.0.{}.{}:6443\n    certificate-authority: ca.crt\n",
                i / 250,
                i % 250
            );
        }
        text += "users:\n";
        for i in 0..10_000 {
            let _ = write!(
                text,
                "- name: u{i}\n  user:\n    client-certificate: /abs/u{i}.crt\n    client-key: keys/u{i}.key\n"
            );
        }
        text += "contexts:\n";
        for i in 0..10_000 {
            let _ = write!(text, "- name: c{i}\n  context:\n    cluster: c{i}\n    user: u{i}\n");
        }
        assert!(
            Kubeconfig::from_yaml(&text).is_err(),
            "kube's reader takes it: the budget note above is outdated"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.yaml");
        std::fs::write(&path, &text).unwrap();
        let config = load(Some(&path)).unwrap();
        assert_eq!(config.contexts.len(), 10_000);
        let ca = config.clusters[9_999]
            .cluster
            .as_ref()
            .unwrap()
            .certificate_authority
            .clone();
        assert_eq!(ca, Some(dir.path().join("ca.crt").to_str().unwrap().to_string()));
        let user = config.auth_infos[3].auth_info.as_ref().unwrap();
        assert_eq!(user.client_certificate.as_deref(), Some("/abs/u3.crt"));
        assert_eq!(
            user.client_key,
            Some(dir.path().join("keys/u3.key").to_str().unwrap().to_string())
        );
    }

    #[test]
    fn an_alias_bomb_is_still_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            let _ = writeln!(
                text,
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.yaml");
        std::fs::write(&path, &text).unwrap();
        let err = load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot read kubeconfig {}: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_names_itself() {
        let err = load(Some(Path::new("/nonexistent/kubeconfig")))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read kubeconfig /nonexistent/kubeconfig: "),
            "{err}"
        );
    }
}
