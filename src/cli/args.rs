//! Flags, parsed once into plain structs (ripgrep's habit).

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "starmap",
    version,
    about = "Render one set of Kubernetes workloads, customized per cluster, into a GitOps deploy repo",
    long_about = "starmap reads workloads, placements and customizations from a source repo, with a \
                  cluster inventory, and writes one directory per cluster into a deploy repo that \
                  Argo CD or Flux sync.\n\nExit codes: 0 success, 1 error, 2 only from \
                  `plan --detailed-exitcode` meaning \"there are changes\"."
)]
pub struct Cli {
    /// More logs on stderr (-v info, -vv debug, -vvv trace, with the libraries' debug logs). STARMAP_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Time one run of kustomize or helm may take before it is stopped.
    #[arg(long, global = true, env = "STARMAP_TOOL_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub tool_timeout: std::time::Duration,
    /// Time a git fetch, clone or push may wait to connect, and then for each answer.
    #[arg(long, global = true, env = "STARMAP_GIT_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub git_timeout: std::time::Duration,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    /// The same data as `json`, as YAML.
    Yaml,
    /// For a pull-request comment (plan only).
    Markdown,
    /// One self-contained page (status show only).
    Html,
}

impl OutputFormat {
    /// `json` or `yaml`: data for machines rather than text for people.
    pub fn is_data(self) -> bool {
        matches!(self, OutputFormat::Json | OutputFormat::Yaml)
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Render every cluster and commit the result to the deploy repo (and push).
    #[command(after_help = "Examples:\n  \
        starmap render --source ./fixtures --deploy /tmp/deploy\n  \
        starmap render --source https://git.example.com/platform/fleet.git@main \\\n      \
        --deploy https://git.example.com/platform/deploy.git --push\n  \
        starmap render --source . --inventory ../inventory --deploy ../deploy --dry-run")]
    Render(RenderArgs),
    /// Render without committing: per cluster, objects added, changed, removed.
    #[command(after_help = "Examples:\n  \
        starmap plan --source . --deploy ../deploy\n  \
        starmap plan --source . --deploy ../deploy --diff\n  \
        starmap plan --source . --deploy https://git.example.com/deploy.git -o markdown > comment.md\n  \
        starmap plan --source . --deploy ../deploy --detailed-exitcode   # exit 2 when there are changes")]
    Plan(PlanArgs),
    /// Why each object is or is not on a cluster, and what customized it there.
    #[command(after_help = "Examples:\n  \
        starmap explain --source ./fixtures --cluster store-0042\n  \
        starmap explain --source ./fixtures --cluster store-0042 --object Deployment/pos/pos-backend\n  \
        starmap explain --source ./fixtures --cluster lab-1 --object Namespace/pos -o json")]
    Explain(ExplainArgs),
    /// Print one cluster's rendered objects as a YAML stream, touching no repo.
    #[command(after_help = "Examples:\n  \
        starmap build --source ./fixtures --cluster store-0042\n  \
        starmap build --source ./fixtures --cluster store-0042 --object Deployment/pos/pos-backend\n  \
        starmap build --source . --cluster store-0042 | kubectl diff -f -")]
    Build(BuildArgs),
    /// Check specs and render every cluster in memory, writing nothing.
    #[command(after_help = "Examples:\n  \
        starmap validate --source ./fixtures\n  \
        starmap validate --source . --inventory ./inventory -o json\n  \
        starmap validate --source . --schemas ./k8s-json-schema/v1.30.10-standalone-strict --schemas ./crds")]
    Validate(ValidateArgs),
    /// Status of the fleet: collect it from the clusters, summarize it, show it.
    #[command(subcommand)]
    Status(StatusCommand),
    /// The controller: render on every source change (polled, or at once on a webhook), collect
    /// status on a timer, serve /metrics, /healthz, /readyz; exit 0 on SIGTERM.
    #[command(after_help = "Examples:\n  \
        starmap run --source ./fixtures --deploy /tmp/deploy --listen 127.0.0.1:8080\n  \
        starmap run --source https://git.example.com/platform/fleet.git@main \\\n      \
        --deploy https://git.example.com/platform/deploy.git --push --webhook-secret-file ./secret\n  \
        starmap run --config /etc/starmap/run.yaml --leader-elect   # several replicas, one works")]
    Run(super::run::RunArgs),
    /// Print a shell completion script for bash, zsh or fish.
    #[command(after_help = "Examples:\n  \
        source <(starmap completion bash)\n  \
        starmap completion zsh > \"${fpath[1]}/_starmap\"\n  \
        starmap completion fish > ~/.config/fish/completions/starmap.fish")]
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the manual page (roff), for `man`.
    #[command(after_help = "Examples:\n  \
        starmap man > /usr/local/share/man/man1/starmap.1 && man starmap")]
    Man,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Subcommand)]
pub enum StatusCommand {
    /// The health and message the health rules give each object in the files (live
    /// objects with `.status`, e.g. from `kubectl get -o yaml`); for debugging offline.
    #[command(after_help = "Examples:\n  \
        kubectl get deploy -A -o yaml > live.yaml && starmap status health live.yaml\n  \
        starmap status health pod.yaml hpa.yaml -o json")]
    Health(HealthArgs),
    /// Read the live state of what the deploy repo places on each cluster and commit it
    /// (status/clusters/, status/summaries/); one commit per round, none when only times changed.
    #[command(after_help = "Examples:\n  \
        starmap status collect --source ./fixtures --deploy ../deploy --kubeconfig ~/.kube/fleet\n  \
        starmap status collect --source . --deploy https://git.example.com/deploy.git --push --concurrency 32\n  \
        starmap status collect --source . --deploy ../deploy --argocd-hub hub   # read Argo CD Applications only")]
    Collect(CollectArgs),
    /// Recompute the summaries from the status files in the deploy repo (offline) and commit them.
    #[command(after_help = "Examples:\n  \
        starmap status summarize --source ./fixtures --deploy ../deploy\n  \
        starmap status summarize --source . --deploy ../deploy --dry-run -o json")]
    Summarize(SummarizeArgs),
    /// A table of the fleet's status from the deploy repo: placements by health, worst clusters.
    #[command(after_help = "Examples:\n  \
        starmap status show --deploy ../deploy\n  \
        starmap status show --deploy ../deploy -o json | jq '.placements[] | select(.degraded > 0)'")]
    Show(ShowArgs),
}

#[derive(Args)]
pub struct DeployArgs {
    /// Deploy repo: a local path or a URL (cloned into a cache).
    #[arg(long, short = 'd', env = "STARMAP_DEPLOY")]
    pub deploy: String,
    #[arg(long, short = 'b', env = "STARMAP_BRANCH", default_value = "main")]
    pub branch: String,
}

#[derive(Args)]
pub struct CollectArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub deploy: DeployArgs,
    /// Kubeconfig with one context per cluster (named like the cluster, or the Cluster's
    /// spec.kubeconfigContext). Default: KUBECONFIG, else ~/.kube/config.
    #[arg(long, env = "STARMAP_KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Read Argo CD Applications from this hub context instead of the clusters.
    #[arg(long, value_name = "CONTEXT")]
    pub argocd_hub: Option<String>,
    /// Only these clusters (repeatable); the others keep their status files.
    #[arg(long = "cluster", short = 'c', value_name = "NAME")]
    pub clusters: Vec<String>,
    /// Clusters read at once.
    #[arg(long, default_value_t = starmap::status::collect::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Time allowed per cluster, retries included (e.g. 20s, 1m).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Retries of a request that failed transiently.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Push the branch to origin (fetch, rebuild and retry if someone else pushed).
    #[arg(long)]
    pub push: bool,
    /// Collect and report, but commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct SummarizeArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub deploy: DeployArgs,
    #[arg(long)]
    pub push: bool,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub deploy: DeployArgs,
    /// The branch status is committed to. Default: the `statusBranch` the last render recorded
    /// in `.starmap/render.yaml` (from `status.branch` in starmap.yaml), else starmap-status.
    #[arg(long, env = "STARMAP_STATUS_BRANCH")]
    pub status_branch: Option<String>,
    /// Worst clusters listed per placement.
    #[arg(long, default_value_t = 5)]
    pub worst: usize,
    /// `-o html`: one self-contained page (the dashboard's overview, with every cluster's
    /// section), for a CI artifact or a static site.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// `-o html`: group the cluster map by this label (default `region` when clusters have it).
    #[arg(long)]
    pub group: Option<String>,
    /// `-o html`: only clusters with this label, `KEY=VALUE`.
    #[arg(long)]
    pub label: Option<String>,
}

/// `20s`, `1m`, `1m30s`, `500ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    starmap::time::parse_duration(s)
}

#[derive(Args)]
pub struct HealthArgs {
    /// YAML or JSON files with one or more objects (`kind: List` is read as its items).
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Args, Clone)]
pub struct SourceArgs {
    /// Source repo: a directory, a git repo path or URL, optionally with @REF (branch, tag, commit).
    #[arg(long, short = 's', env = "STARMAP_SOURCE", default_value = ".")]
    pub source: String,
    /// Cluster inventory besides the source: a file, directory or git repo (@REF allowed).
    #[arg(long, short = 'i', env = "STARMAP_INVENTORY")]
    pub inventory: Option<String>,
}

#[derive(Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Deploy repo: a local path (created with git init if missing) or a URL (cloned into a cache).
    #[arg(long, short = 'd', env = "STARMAP_DEPLOY")]
    pub deploy: String,
    /// Branch of the deploy repo to commit to.
    #[arg(long, short = 'b', env = "STARMAP_BRANCH", default_value = "main")]
    pub branch: String,
    /// Push the branch to the deploy repo's origin (fetch, rebuild and retry if someone else pushed).
    #[arg(long)]
    pub push: bool,
    /// Do everything but store the commit, move the branch and push.
    #[arg(long)]
    pub dry_run: bool,
    /// Render every cluster even when its inputs did not change.
    #[arg(long)]
    pub no_cache: bool,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Deploy repo to compare with (omitted or missing: everything is new).
    #[arg(long, short = 'd', env = "STARMAP_DEPLOY")]
    pub deploy: Option<String>,
    #[arg(long, short = 'b', env = "STARMAP_BRANCH", default_value = "main")]
    pub branch: String,
    /// Print a unified diff of every changed file.
    #[arg(long)]
    pub diff: bool,
    /// Exit 2 when there are changes, 0 when there are none (1 stays "error").
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Only these clusters (repeatable; globs such as `store-00*`): the report and the exit
    /// code concern their directories alone, not the fleet-wide files.
    #[arg(long = "cluster", short = 'c', value_name = "NAME")]
    pub clusters: Vec<String>,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The cluster to explain (repeatable; globs such as `store-00*`). `-o json` gives one
    /// object for one cluster named exactly, else a list, as `kubectl get` does.
    #[arg(long = "cluster", short = 'c', value_name = "NAME", required = true)]
    pub clusters: Vec<String>,
    /// Only this object: KIND/NAME or KIND/NAMESPACE/NAME.
    #[arg(long)]
    pub object: Option<String>,
    /// Deploy repo to read rollout progress from (which waves are open, why one waits).
    #[arg(long, short = 'd', env = "STARMAP_DEPLOY")]
    pub deploy: Option<String>,
    #[arg(long, short = 'b', env = "STARMAP_BRANCH", default_value = "main")]
    pub branch: String,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The cluster whose objects to print.
    #[arg(long, short = 'c')]
    pub cluster: String,
    /// Only this object: KIND/NAME or KIND/NAMESPACE/NAME.
    #[arg(long)]
    pub object: Option<String>,
}

#[derive(Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Also validate every rendered object (and the generated Argo CD/Flux objects) against
    /// the schemas in DIR: Kubernetes JSON schema files (`<kind>-<group>-<version>.json`,
    /// "standalone-strict") and CustomResourceDefinition YAML files. Repeatable. Kinds with
    /// no schema are reported as unchecked.
    #[arg(long, value_name = "DIR")]
    pub schemas: Vec<std::path::PathBuf>,
    /// The branch clusters follow, for the generated Argo CD/Flux objects (default: main).
    #[arg(long, short = 'b', env = "STARMAP_BRANCH", default_value = "main")]
    pub branch: String,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}
