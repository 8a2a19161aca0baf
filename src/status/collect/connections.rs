//! Clients kept from one status round to the next (`starmap run`): building a client parses
//! its certificates, and its first request costs a full TLS handshake with a client
//! certificate; a kept client reuses its open connections (hyper's pool keeps them 90 s) or
//! resumes its TLS session, and remembers what it discovered.
//!
//! A kept client is used only while its context, cluster and user entries are unchanged, the
//! files they name (certificates, keys, token files) have the same size and modification time,
//! and the request budget of [`Options`] is the same; otherwise it is rebuilt. Clients of
//! contexts a round does not read are dropped.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use kube::config::Kubeconfig;
use sha2::{Digest, Sha256};

use super::Options;
use super::client::{Reader, attempt_timeout, context_refs, narrow_to};

/// Clients by kubeconfig context, shared by the tasks of a round and kept across rounds.
/// Cloning shares them.
#[derive(Clone, Default)]
pub struct Connections {
    kept: Arc<Mutex<HashMap<String, Kept>>>,
    built: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("kept", &self.len())
            .field("built", &self.built())
            .finish()
    }
}

struct Kept {
    fingerprint: [u8; 32],
    reader: Arc<Reader>,
}

impl Connections {
    /// How many clients are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many clients were built so far (kept ones reused are not counted again).
    pub fn built(&self) -> usize {
        self.built.load(Ordering::Relaxed)
    }

    /// Requests sent by the kept clients so far, retries included.
    pub fn requests(&self) -> usize {
        self.lock()
            .values()
            .map(|k| k.reader.requests.load(Ordering::Relaxed))
            .sum()
    }

    /// The client of `context`: the kept one if nothing it was built from changed, else a new
    /// one, kept for the next round.
    pub(crate) async fn reader(
        &self,
        kubeconfig: &IndexedKubeconfig,
        context: &str,
        options: &Options,
    ) -> Result<Arc<Reader>, String> {
        let narrowed = kubeconfig
            .narrow(context)
            .ok_or_else(|| format!("no context {context:?} in the kubeconfig"))?;
        let fingerprint = fingerprint(&narrowed, options);
        if let Some(kept) = self.lock().get(context)
            && kept.fingerprint == fingerprint
        {
            return Ok(kept.reader.clone());
        }
        let reader = Arc::new(Reader::connect(narrowed, context, options).await?);
        self.built.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            context.to_string(),
            Kept {
                fingerprint,
                reader: reader.clone(),
            },
        );
        Ok(reader)
    }

    /// Drops the clients of every context but `contexts`.
    pub(crate) fn retain<'a>(&self, contexts: impl IntoIterator<Item = &'a str>) {
        let keep: HashSet<&str> = contexts.into_iter().collect();
        self.lock().retain(|context, _| keep.contains(context.as_str()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A kubeconfig with its contexts, clusters and users looked up by name (a fleet's kubeconfig
/// has thousands of each). The first entry of a name wins, as when kube merges kubeconfigs.
pub(crate) struct IndexedKubeconfig {
    pub config: Kubeconfig,
    contexts: HashMap<String, usize>,
    clusters: HashMap<String, usize>,
    users: HashMap<String, usize>,
}

impl IndexedKubeconfig {
    pub fn new(config: Kubeconfig) -> Self {
        fn index<'a>(names: impl Iterator<Item = &'a String>) -> HashMap<String, usize> {
            let mut map = HashMap::new();
            for (i, name) in names.enumerate() {
                map.entry(name.clone()).or_insert(i);
            }
            map
        }
        IndexedKubeconfig {
            contexts: index(config.contexts.iter().map(|c| &c.name)),
            clusters: index(config.clusters.iter().map(|c| &c.name)),
            users: index(config.auth_infos.iter().map(|a| &a.name)),
            config,
        }
    }

    /// A kubeconfig with only `context`, its cluster and its user.
    pub fn narrow(&self, context: &str) -> Option<Kubeconfig> {
        let ctx = &self.config.contexts[*self.contexts.get(context)?];
        let (cluster, user) = context_refs(ctx);
        let cluster = cluster
            .and_then(|c| self.clusters.get(c))
            .map(|&i| &self.config.clusters[i]);
        let user = user
            .and_then(|u| self.users.get(u))
            .map(|&i| &self.config.auth_infos[i]);
        Some(narrow_to(&self.config, ctx, cluster, user))
    }
}

/// What a client is built from: the narrowed kubeconfig, the size and modification time of the
/// files it names, and the request budget.
fn fingerprint(narrowed: &Kubeconfig, options: &Options) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(serde_json::to_vec(narrowed).unwrap_or_default());
    let mut files: Vec<&str> = vec![];
    for c in narrowed.clusters.iter().filter_map(|c| c.cluster.as_ref()) {
        files.extend(c.certificate_authority.as_deref());
    }
    for a in narrowed.auth_infos.iter().filter_map(|a| a.auth_info.as_ref()) {
        files.extend(a.client_certificate.as_deref());
        files.extend(a.client_key.as_deref());
        files.extend(a.token_file.as_deref());
    }
    for file in files {
        let meta = std::fs::metadata(file).ok();
        let modified = meta.as_ref().and_then(|m| m.modified().ok());
        let since = modified.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
        hash.update(format!("{file}\0{:?}\0{:?}\0", meta.map(|m| m.len()), since));
    }
    hash.update(format!(
        "{:?} {} {:?}",
        attempt_timeout(options),
        options.retries,
        options.backoff
    ));
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(text: &str) -> IndexedKubeconfig {
        IndexedKubeconfig::new(Kubeconfig::from_yaml(text).expect("a kubeconfig"))
    }

    const TWO: &str = "
apiVersion: v1
kind: Config
clusters:
- {name: a, cluster: {server: 'https://a:6443'}}
- {name: b, cluster: {server: 'https://b:6443'}}
- {name: a, cluster: {server: 'https://shadowed:6443'}}
users:
- {name: u, user: {token: t1}}
contexts:
- {name: ca, context: {cluster: a, user: u}}
- {name: cb, context: {cluster: b, user: u}}
";

    #[test]
    fn narrowing_keeps_the_first_entry_of_each_name() {
        let k = kubeconfig(TWO);
        let a = k.narrow("ca").unwrap();
        assert_eq!(a.contexts.len(), 1);
        assert_eq!(a.clusters.len(), 1);
        assert_eq!(
            a.clusters[0].cluster.as_ref().unwrap().server.as_deref(),
            Some("https://a:6443")
        );
        assert_eq!(a.auth_infos[0].name, "u");
        assert!(k.narrow("nope").is_none());
    }

    #[test]
    fn a_changed_credential_or_budget_changes_the_fingerprint() {
        let options = Options::default();
        let before = fingerprint(&kubeconfig(TWO).narrow("ca").unwrap(), &options);
        assert_eq!(before, fingerprint(&kubeconfig(TWO).narrow("ca").unwrap(), &options));
        let rotated = TWO.replace("token: t1", "token: t2");
        assert_ne!(
            before,
            fingerprint(&kubeconfig(&rotated).narrow("ca").unwrap(), &options)
        );
        let other = Options {
            retries: 5,
            ..Options::default()
        };
        assert_ne!(before, fingerprint(&kubeconfig(TWO).narrow("ca").unwrap(), &other));
    }

    #[test]
    fn a_rewritten_certificate_file_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("client.crt");
        std::fs::write(&cert, "one").unwrap();
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: a, cluster: {{server: 'https://a:6443'}}}}]\n\
             users: [{{name: u, user: {{client-certificate: {}, client-key: {}}}}}]\n\
             contexts: [{{name: ca, context: {{cluster: a, user: u}}}}]\n",
            cert.display(),
            cert.display()
        );
        let options = Options::default();
        let before = fingerprint(&kubeconfig(&text).narrow("ca").unwrap(), &options);
        std::fs::write(&cert, "rotated").unwrap();
        assert_ne!(before, fingerprint(&kubeconfig(&text).narrow("ca").unwrap(), &options));
    }
}
