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
    /// More logs on stderr (-v info, -vv debug, -vvv trace). STARMAP_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
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
    /// For a pull-request comment (plan only).
    Markdown,
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
    /// Check specs and render every cluster in memory, writing nothing.
    #[command(after_help = "Examples:\n  \
        starmap validate --source ./fixtures\n  \
        starmap validate --source . --inventory ./inventory -o json\n  \
        starmap validate --source . --schemas ./k8s-json-schema/v1.30.10-standalone-strict --schemas ./crds")]
    Validate(ValidateArgs),
    /// Status of the fleet's objects (more status commands come with status collection).
    #[command(subcommand)]
    Status(StatusCommand),
}

#[derive(Subcommand)]
pub enum StatusCommand {
    /// The health and message the health rules give each object in the files (live
    /// objects with `.status`, e.g. from `kubectl get -o yaml`); for debugging offline.
    #[command(after_help = "Examples:\n  \
        kubectl get deploy -A -o yaml > live.yaml && starmap status health live.yaml\n  \
        starmap status health pod.yaml hpa.yaml -o json")]
    Health(HealthArgs),
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
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The cluster to explain.
    #[arg(long, short = 'c')]
    pub cluster: String,
    /// Only this object: KIND/NAME or KIND/NAMESPACE/NAME.
    #[arg(long)]
    pub object: Option<String>,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
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
