//! `starmap run`: flags, merged over the `--config` file, then the controller on a tokio
//! runtime. Precedence: flag > environment variable > config file > default.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory};

use super::args::{Cli, SourceArgs, parse_duration};
use starmap::controller::config::ConfigFile;
use starmap::controller::leader::{LeaseSettings, default_identity};
use starmap::controller::{self, DEFAULT_GRACE, Settings};
use starmap::gitstore;
use starmap::pipeline::{CollectSettings, RenderTarget};
use starmap::source::tools;
use starmap::{Error, Result};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Deploy repo: a local path (created with git init if missing) or a URL (cloned into a cache).
    #[arg(long, short = 'd', env = "STARMAP_DEPLOY")]
    pub deploy: Option<String>,
    /// Branch of the deploy repo to commit to.
    #[arg(long, short = 'b', env = "STARMAP_BRANCH", default_value = "main")]
    pub branch: String,
    /// Push every commit to the deploy repo's origin (fetch, rebuild and retry if someone else pushed).
    #[arg(long)]
    pub push: bool,
    /// How often to load the source (fetching a git URL) and render; a webhook renders at once.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub interval: Duration,
    /// How often to collect status from the clusters; 0 turns status collection off.
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub status_interval: Duration,
    /// Address of the HTTP server: /metrics, /healthz, /readyz, /webhook.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Kubeconfig with one context per cluster, for status. Default: KUBECONFIG, else ~/.kube/config.
    #[arg(long, env = "STARMAP_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Read status from this Argo CD hub context instead of the clusters.
    #[arg(long, value_name = "CONTEXT")]
    pub argocd_hub: Option<String>,
    /// Clusters read at once in a status round.
    #[arg(long, default_value_t = starmap::status::collect::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Time allowed per cluster in a status round, retries included.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Retries of a status request that failed transiently.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// File holding the webhook secret (GitHub: X-Hub-Signature-256; GitLab: X-Gitlab-Token).
    /// Or set STARMAP_WEBHOOK_SECRET. Without either, webhooks are not authenticated.
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Work only while holding a Lease (in KUBECONFIG's cluster, else the pod's own): run
    /// several replicas, one works; the others relay webhooks to it through the Lease.
    #[arg(long)]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, default_value = "starmap")]
    pub lease_name: String,
    /// Namespace of the Lease. Default: POD_NAMESPACE, else `default`.
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// How long a Lease holds without renewal (whole seconds, at least 2s); every replica
    /// reads the Lease every quarter of it.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// A round running longer than this makes /healthz fail (for a liveness probe); the round
    /// goes on. Raise it for status rounds of big fleets with many unreachable clusters.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub round_timeout: Duration,
    /// YAML file of these settings, keys in camelCase (e.g. statusInterval); flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run_cmd(a: RunArgs) -> Result<ExitCode> {
    // The parsed struct cannot tell a default from a given value; the matches can.
    let matches = Cli::command()
        .try_get_matches()
        .map_err(|e| Error::msg(format!("reading the flags: {e}")))?;
    let explicit = matches.subcommand_matches("run").map(explicit_ids).unwrap_or_default();
    let file = a.config.as_deref().map(ConfigFile::load).transpose()?;
    let settings = resolve(a, &explicit, file.as_ref(), &|name| std::env::var(name).ok())?;
    // The global timeouts were set from their flags; the file sets those not given.
    if let Some(file) = &file {
        let f = &file.settings;
        for (id, key, text) in [
            ("tool_timeout", "toolTimeout", &f.tool_timeout),
            ("git_timeout", "gitTimeout", &f.git_timeout),
        ] {
            if let Some(text) = text.as_deref().filter(|_| !explicit.contains(id)) {
                let d = parse_duration(text).map_err(|e| file.error_at(key, e))?;
                match id {
                    "tool_timeout" => tools::set_timeout(d),
                    _ => gitstore::set_network_timeout(d)?,
                }
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(crate::cli::THREAD_STACK)
        .enable_all()
        .build()
        .map_err(|e| Error::msg(format!("cannot start the async runtime: {e}")))?;
    let result = runtime.block_on(controller::run(settings));
    // A round abandoned after the grace period must not hold the exit.
    runtime.shutdown_background();
    result.map(|()| ExitCode::SUCCESS)
}

/// Ids of the arguments given as flags or environment variables (not defaults).
fn explicit_ids(matches: &ArgMatches) -> HashSet<String> {
    matches
        .ids()
        .filter(|id| {
            matches!(
                matches.value_source(id.as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .map(|id| id.to_string())
        .collect()
}

/// Flags over the config file over defaults; `env` reads STARMAP_WEBHOOK_SECRET and POD_NAMESPACE.
fn resolve(
    a: RunArgs,
    explicit: &HashSet<String>,
    file: Option<&ConfigFile>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings> {
    let f = file.map(|c| c.settings.clone()).unwrap_or_default();
    let given = |id: &str| explicit.contains(id);
    let at = |key: &str, msg: String| match file {
        Some(c) => c.error_at(key, msg),
        None => Error::msg(msg),
    };
    let duration = |id: &str, key: &str, flag: Duration, text: Option<String>| -> Result<Duration> {
        match text {
            Some(t) if !given(id) => parse_duration(&t).map_err(|e| at(key, e)),
            _ => Ok(flag),
        }
    };
    let pick = |id: &str, flag: String, from_file: Option<String>| match from_file {
        Some(v) if !given(id) => v,
        _ => flag,
    };

    let interval = duration("interval", "interval", a.interval, f.interval)?;
    if interval.is_zero() {
        return Err(at("interval", "--interval must be more than 0".into()));
    }
    let status_interval = duration(
        "status_interval",
        "statusInterval",
        a.status_interval,
        f.status_interval,
    )?;
    let listen = match f.listen {
        Some(text) if !given("listen") => text.parse().map_err(|_| {
            at(
                "listen",
                format!("{text:?} is not an address (use e.g. 127.0.0.1:8080 or 0.0.0.0:8080)"),
            )
        })?,
        _ => a.listen,
    };
    let concurrency = match f.concurrency {
        Some(n) if !given("concurrency") => n,
        _ => a.concurrency,
    };
    if concurrency == 0 {
        return Err(at("concurrency", "--concurrency must be at least 1".into()));
    }
    let retries = match f.retries {
        Some(n) if !given("retries") => n,
        _ => a.retries,
    };
    let deploy = a.deploy.or(f.deploy).ok_or_else(|| {
        Error::msg("--deploy is required (a flag, STARMAP_DEPLOY, or `deploy:` in the --config file)")
    })?;
    let target = RenderTarget {
        deploy,
        branch: pick("branch", a.branch, f.branch),
        push: a.push || (!given("push") && f.push.unwrap_or(false)),
        dry_run: false,
        no_cache: false,
    };
    let collect = CollectSettings {
        kubeconfig: a.kubeconfig.or(f.kubeconfig),
        argocd_hub: a.argocd_hub.or(f.argocd_hub),
        clusters: Vec::new(),
        concurrency,
        timeout: duration("timeout", "timeout", a.timeout, f.timeout)?,
        retries,
        connections: Default::default(),
    };
    let webhook_secret = match (
        a.webhook_secret_file,
        env("STARMAP_WEBHOOK_SECRET"),
        f.webhook_secret_file,
    ) {
        (Some(path), _, _) => Some(read_secret(&path)?),
        (None, Some(secret), _) => Some(non_empty(secret.trim().as_bytes().to_vec(), "STARMAP_WEBHOOK_SECRET")?),
        (None, None, Some(path)) => Some(read_secret(&path)?),
        (None, None, None) => None,
    };
    if let Some(secret) = &webhook_secret {
        starmap::redact::remember(&String::from_utf8_lossy(secret));
    }
    let leader_elect = a.leader_elect || (!given("leader_elect") && f.leader_elect.unwrap_or(false));
    let lease = if leader_elect {
        let duration = duration("lease_duration", "leaseDuration", a.lease_duration, f.lease_duration)?;
        if duration.subsec_nanos() != 0 || duration.as_secs() < 2 {
            return Err(at(
                "leaseDuration",
                "--lease-duration must be whole seconds, at least 2s".into(),
            ));
        }
        Some(LeaseSettings {
            name: pick("lease_name", a.lease_name, f.lease_name),
            namespace: a
                .lease_namespace
                .or(f.lease_namespace)
                .or_else(|| env("POD_NAMESPACE").filter(|n| !n.is_empty()))
                .unwrap_or_else(|| "default".into()),
            duration,
            identity: default_identity(),
        })
    } else {
        None
    };
    Ok(Settings {
        source: pick("source", a.source.source, f.source),
        inventory: a.source.inventory.or(f.inventory),
        target,
        interval,
        status_interval,
        collect,
        listen,
        webhook_secret,
        lease,
        grace: DEFAULT_GRACE,
        round_timeout: duration("round_timeout", "roundTimeout", a.round_timeout, f.round_timeout)?,
    })
}

fn read_secret(path: &std::path::Path) -> Result<Vec<u8>> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| Error::msg(format!("webhook secret file {shown}: {e}")))?;
    // Secret files usually end with a newline that is not part of the secret.
    let trimmed = bytes.trim_ascii_end().to_vec();
    non_empty(trimmed, &format!("webhook secret file {shown}"))
}

fn non_empty(secret: Vec<u8>, what: &str) -> Result<Vec<u8>> {
    if secret.is_empty() {
        return Err(Error::msg(format!("{what} is empty")));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{FromArgMatches, Parser};

    use crate::cli::args::Command;

    fn settings(argv: &[&str], config: Option<&str>, env: &[(&str, &str)]) -> Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let mut full = vec!["starmap", "run"];
        full.extend_from_slice(argv);
        let path = dir.path().join("run.yaml");
        let shown = path.display().to_string();
        if let Some(text) = config {
            std::fs::write(&path, text).unwrap();
            full.extend_from_slice(&["--config", &shown]);
        }
        let matches = Cli::command().try_get_matches_from(&full).unwrap();
        let explicit = explicit_ids(matches.subcommand_matches("run").unwrap());
        let Command::Run(a) = Cli::from_arg_matches(&matches).unwrap().command else {
            panic!("not run")
        };
        let file = a.config.as_deref().map(ConfigFile::load).transpose()?;
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        resolve(a, &explicit, file.as_ref(), &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults() {
        // The parser is the real one: make sure it is consistent.
        Cli::command().debug_assert();
        let s = settings(&["--deploy", "/d"], None, &[]).unwrap();
        assert_eq!(s.source, ".");
        assert_eq!(s.target.branch, "main");
        assert_eq!(s.interval, Duration::from_secs(30));
        assert_eq!(s.status_interval, Duration::from_secs(60));
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.collect.concurrency, 64);
        assert!(s.lease.is_none() && s.webhook_secret.is_none() && !s.target.push);
        let _ = Cli::try_parse_from(["starmap", "run", "--deploy", "/d"]).unwrap();
    }

    #[test]
    fn file_under_flags() {
        let file = "source: ./src\ndeploy: /from-file\ninterval: 10s\nstatusInterval: 0\nbranch: prod\n\
                    push: true\nconcurrency: 3\nleaderElect: true\nleaseDuration: 4s\nlisten: 0.0.0.0:9000\n";
        let s = settings(&["--interval", "5s", "--branch", "main"], Some(file), &[]).unwrap();
        assert_eq!(s.source, "./src");
        assert_eq!(s.target.deploy, "/from-file");
        assert_eq!(s.interval, Duration::from_secs(5), "the flag wins");
        assert_eq!(s.target.branch, "main", "the flag wins even when it equals the default");
        assert_eq!(s.status_interval, Duration::ZERO);
        assert!(s.target.push);
        assert_eq!(s.collect.concurrency, 3);
        assert_eq!(s.listen.to_string(), "0.0.0.0:9000");
        let lease = s.lease.unwrap();
        assert_eq!(lease.duration, Duration::from_secs(4));
        assert_eq!(lease.namespace, "default");
        assert_eq!(lease.name, "starmap");
    }

    #[test]
    fn lease_namespace_flag_then_file_then_pod_namespace() {
        let env = [("POD_NAMESPACE", "from-env")];
        let s = settings(&["-d", "/d", "--leader-elect"], None, &env).unwrap();
        assert_eq!(s.lease.unwrap().namespace, "from-env");
        let s = settings(&["-d", "/d", "--leader-elect"], Some("leaseNamespace: file\n"), &env).unwrap();
        assert_eq!(s.lease.unwrap().namespace, "file");
        let s = settings(
            &["-d", "/d", "--leader-elect", "--lease-namespace", "flag"],
            Some("leaseNamespace: file\n"),
            &env,
        )
        .unwrap();
        assert_eq!(s.lease.unwrap().namespace, "flag");
    }

    #[test]
    fn webhook_secret_from_flag_env_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let path = secret.to_str().unwrap();
        let s = settings(&["-d", "/d", "--webhook-secret-file", path], None, &[]).unwrap();
        assert_eq!(s.webhook_secret.as_deref(), Some(&b"s3cret"[..]));
        let s = settings(&["-d", "/d"], None, &[("STARMAP_WEBHOOK_SECRET", "env")]).unwrap();
        assert_eq!(s.webhook_secret.as_deref(), Some(&b"env"[..]));
        let s = settings(&["-d", "/d"], Some(&format!("webhookSecretFile: {path}\n")), &[]).unwrap();
        assert_eq!(s.webhook_secret.as_deref(), Some(&b"s3cret"[..]));
        std::fs::write(&secret, "\n").unwrap();
        let err = settings(&["-d", "/d", "--webhook-secret-file", path], None, &[])
            .err()
            .unwrap();
        assert!(err.to_string().ends_with("is empty"), "{err}");
    }

    #[test]
    fn bad_values_in_the_file_name_their_line() {
        let err = settings(&["-d", "/d"], Some("source: .\ninterval: soon\n"), &[])
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(
            text.contains("run.yaml:2: interval:") && text.contains("not a duration"),
            "{text}"
        );
        let err = settings(&["-d", "/d"], Some("listen: everywhere\n"), &[])
            .err()
            .unwrap();
        assert!(err.to_string().contains("run.yaml:1: listen:"), "{err}");
        let err = settings(&["-d", "/d"], Some("leaderElect: true\nleaseDuration: 1500ms\n"), &[])
            .err()
            .unwrap();
        assert!(err.to_string().contains("run.yaml:2: leaseDuration:"), "{err}");
        let err = settings(&[], None, &[]).err().unwrap();
        assert!(err.to_string().contains("--deploy is required"), "{err}");
        let err = settings(&["-d", "/d", "--interval", "0"], None, &[]).err().unwrap();
        assert!(err.to_string().contains("--interval must be more than 0"), "{err}");
    }
}
