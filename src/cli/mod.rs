//! Command-line interface: flags (clap), one function per command, output formats.

/// Print a line to stdout, scrubbed of credentials (`output::write_out`): how commands print.
macro_rules! outln {
    () => {
        $crate::cli::output::write_out("", true)
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(&format!($($arg)*), true)
    };
}

/// Print to stdout without a newline, scrubbed of credentials.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(&format!($($arg)*), false)
    };
}

mod args;
mod check;
mod output;
mod progress;
mod run;
mod status;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command, LogFormat, OutputFormat, SourceArgs};
use starmap::deploy;
use starmap::desired::Sources;
use starmap::gitops::SyncObjects;
use starmap::gitstore::DeployRepo;
use starmap::plan::Plan;
use starmap::render::{self, Renderer};
use starmap::schema::SchemaSet;
use starmap::{Model, Result, pipeline};

/// Stack of every thread starmap starts (rayon's and tokio's): the main thread's default.
pub const THREAD_STACK: usize = 8 << 20;

pub fn run() -> Result<ExitCode> {
    // Bad flags exit 1 like any other bad input: exit code 2 means only "plan found
    // changes" (contract section 4), while clap's own default for usage errors is 2.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            let _ = e.print();
            return Ok(ExitCode::from(1));
        }
    };
    // Credentials starmap may be handed through the environment: scrubbed from all output.
    for var in [
        "GIT_TOKEN",
        "GIT_PASSWORD",
        "STARMAP_OCI_PASSWORD",
        "STARMAP_WEBHOOK_SECRET",
    ] {
        if let Ok(secret) = std::env::var(var) {
            starmap::redact::remember(&secret);
        }
    }
    init_logging(cli.verbose, cli.log_format);
    let text_output = match &cli.command {
        Command::Render(a) => a.output == OutputFormat::Text,
        Command::Plan(a) => a.output == OutputFormat::Text,
        Command::Validate(a) => a.output == OutputFormat::Text,
        Command::Status(args::StatusCommand::Collect(a)) => a.output == OutputFormat::Text,
        _ => false,
    };
    progress::install_if_interactive(text_output, cli.verbose);
    // Parsing recurses once per level of nesting (at most 128, `yaml`), on rayon's threads:
    // give them the main thread's 8 MiB rather than 2 MiB, which a debug build can exhaust.
    let _ = rayon::ThreadPoolBuilder::new().stack_size(THREAD_STACK).build_global();
    starmap::source::tools::set_timeout(cli.tool_timeout);
    starmap::gitstore::set_network_timeout(cli.git_timeout)?;
    starmap::gitstore::trust_stored_object_ids();
    match cli.command {
        Command::Render(a) => render_cmd(a),
        Command::Plan(a) => plan_cmd(a),
        Command::Explain(a) => explain_cmd(a),
        Command::Build(a) => build_cmd(a),
        Command::Validate(a) => validate_cmd(a),
        Command::Status(args::StatusCommand::Health(a)) => health_cmd(a),
        Command::Status(args::StatusCommand::Collect(a)) => status::collect_cmd(a),
        Command::Status(args::StatusCommand::Summarize(a)) => status::summarize_cmd(a),
        Command::Status(args::StatusCommand::Show(a)) => status::show_cmd(a),
        Command::Run(a) => run::run_cmd(a),
        Command::Completion { shell } => completion_cmd(shell),
        Command::Man => man_cmd(),
    }
}

fn init_logging(verbose: u8, format: LogFormat) {
    // starmap's own logs get louder first; its libraries' only from -vvv.
    let default = match verbose {
        0 => "warn",
        1 => "warn,starmap=info",
        2 => "info,starmap=debug",
        _ => "debug,starmap=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("STARMAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| output::Scrubbed(std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.without_time().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Load and validate the source and inventory, then plan.
fn load(args: &SourceArgs) -> Result<(Model, Plan)> {
    pipeline::load(&args.source, args.inventory.as_deref())
}

fn render_cmd(a: args::RenderArgs) -> Result<ExitCode> {
    let (model, plan) = load(&a.source)?;
    for w in &plan.warnings {
        tracing::warn!("{w}");
    }
    let target = pipeline::RenderTarget {
        deploy: a.deploy.clone(),
        branch: a.branch.clone(),
        push: a.push,
        dry_run: a.dry_run,
        no_cache: a.no_cache,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(crate::cli::THREAD_STACK)
        .enable_all()
        .build()
        .map_err(|e| starmap::Error::msg(format!("cannot start the async runtime: {e}")))?;
    let done = pipeline::render(&model, &plan, &target, runtime.handle())?;
    drop(runtime);
    output::render_result(
        &model,
        &done.display,
        &done.branch,
        &done.outcome,
        done.published.as_ref(),
        a.dry_run,
        a.output,
    );
    if done.remote && !a.push && done.outcome.commit.is_some() && !a.output.is_data() {
        outln!(
            "note: committed in the local cache only; add --push to send it to {}",
            done.display
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn plan_cmd(a: args::PlanArgs) -> Result<ExitCode> {
    let (model, plan) = load(&a.source)?;
    let env = render::environment();
    let deploy_url = a.deploy.as_deref().filter(|d| starmap::gitstore::is_url(d));
    let sync = SyncObjects::new(&model, deploy_url, &a.branch)?;
    let renderer = Renderer::new(&model, &env)?;
    let sources = Sources {
        model: &model,
        plan: &plan,
        renderer: &renderer,
        sync: sync.as_ref(),
    };
    let deploy = match &a.deploy {
        Some(d) => match DeployRepo::open(d, &a.branch, false, false) {
            Ok(repo) => Some(repo),
            // A deploy repo that does not exist yet: everything is new.
            Err(_) if !std::path::Path::new(d).exists() && !starmap::gitstore::is_url(d) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let mut changes = deploy::plan(&sources, deploy.as_ref(), a.diff)?;
    if !a.clusters.is_empty() {
        let known: Vec<&str> = model
            .clusters
            .iter()
            .map(|c| c.name.as_str())
            .chain(changes.clusters.iter().map(|c| c.cluster.as_str()))
            .collect();
        let wanted = ClusterGlobs::new(&a.clusters, &known)?;
        changes.clusters.retain(|c| wanted.matches(&c.cluster));
        changes.sync_changed = false;
        changes.metadata_changed = false;
        changes.rollouts.clear();
    }
    let repo = deploy.as_ref().map(|d| &d.repo);
    output::plan_result(&changes, repo, a.diff, a.output, &plan.warnings);
    Ok(if a.detailed_exitcode && !changes.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// One cluster's objects as a YAML stream: the files of `clusters/<cluster>/` a render writes
/// (in their order, without `kustomization.yaml`), from the source alone. Rollout holds are a
/// deploy repo's record, so a cluster in a later wave may still run older objects.
fn build_cmd(a: args::BuildArgs) -> Result<ExitCode> {
    let (model, plan) = load(&a.source)?;
    let ci = model
        .clusters
        .iter()
        .position(|c| c.name == a.cluster)
        .ok_or_else(|| starmap::Error::msg(format!("cluster {:?} is not in the inventory", a.cluster)))?;
    if let Some(filter) = &a.object {
        starmap::explain::check_object_filter(filter)?;
    }
    let env = render::environment();
    let rendered = Renderer::new(&model, &env)?.render_cluster(&plan.clusters[ci])?;
    let objects: Vec<&str> = rendered
        .objects
        .iter()
        .filter(|o| {
            a.object
                .as_deref()
                .is_none_or(|f| starmap::explain::object_matches(f, &o.id.kind, o.id.namespace.as_deref(), &o.id.name))
        })
        .map(|o| o.content.as_str())
        .collect();
    if let Some(filter) = &a.object
        && objects.is_empty()
    {
        return Err(starmap::Error::msg(format!(
            "--object {filter:?}: not on cluster {}",
            a.cluster
        )));
    }
    out!("{}", objects.join("---\n"));
    Ok(ExitCode::SUCCESS)
}

fn completion_cmd(shell: args::Shell) -> Result<ExitCode> {
    use clap::CommandFactory;
    let shell = match shell {
        args::Shell::Bash => clap_complete::Shell::Bash,
        args::Shell::Zsh => clap_complete::Shell::Zsh,
        args::Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "starmap", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(ExitCode::SUCCESS)
}

fn man_cmd() -> Result<ExitCode> {
    use clap::CommandFactory;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| starmap::Error::msg(format!("cannot write the manual page: {e}")))?;
    out!("{}", String::from_utf8_lossy(&page));
    Ok(ExitCode::SUCCESS)
}

fn explain_cmd(a: args::ExplainArgs) -> Result<ExitCode> {
    let (model, plan) = load(&a.source)?;
    let env = render::environment();
    let renderer = Renderer::new(&model, &env)?.explaining();
    let states = match &a.deploy {
        Some(d) => {
            let deploy = DeployRepo::open(d, &a.branch, false, false)?;
            deploy.fetch()?;
            let tip = deploy.tip()?;
            Some(starmap::snapshot::read_states(&deploy.repo, tip.map(|t| t.tree)))
        }
        None => None,
    };
    let names: Vec<&str> = model.clusters.iter().map(|c| c.name.as_str()).collect();
    let wanted = ClusterGlobs::new(&a.clusters, &names)?;
    let explanations = names
        .iter()
        .filter(|n| wanted.matches(n))
        .map(|cluster| {
            starmap::explain::explain(&model, &plan, &renderer, cluster, a.object.as_deref(), states.as_ref())
        })
        .collect::<Result<Vec<_>>>()?;
    let single = a.clusters.len() == 1 && !ClusterGlobs::is_glob(&a.clusters[0]);
    output::explain_results(&explanations, single, a.output);
    Ok(ExitCode::SUCCESS)
}

/// `--cluster` patterns: names or globs (`store-00*`), each of which must match a cluster.
struct ClusterGlobs(globset::GlobSet);

impl ClusterGlobs {
    fn new(patterns: &[String], known: &[&str]) -> Result<ClusterGlobs> {
        let mut all = globset::GlobSetBuilder::new();
        for p in patterns {
            let glob = globset::Glob::new(p)
                .map_err(|e| starmap::Error::msg(format!("--cluster {p:?}: {e}")))?
                .compile_matcher();
            if !known.iter().any(|k| glob.is_match(k)) {
                return Err(starmap::Error::msg(if ClusterGlobs::is_glob(p) {
                    format!("--cluster {p:?}: matches no cluster")
                } else {
                    format!("cluster {p:?} is not in the inventory")
                }));
            }
            all.add(globset::Glob::new(p).map_err(|e| starmap::Error::msg(format!("--cluster {p:?}: {e}")))?);
        }
        all.build()
            .map(ClusterGlobs)
            .map_err(|e| starmap::Error::msg(format!("--cluster: {e}")))
    }

    fn matches(&self, name: &str) -> bool {
        self.0.is_match(name)
    }

    fn is_glob(pattern: &str) -> bool {
        pattern.contains(['*', '?', '[', '{'])
    }
}

fn health_cmd(a: args::HealthArgs) -> Result<ExitCode> {
    let mut rows = Vec::new();
    for file in &a.files {
        let shown = file.display().to_string();
        let bytes = std::fs::read(file).map_err(|e| starmap::Error::msg(format!("{shown}: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|_| starmap::Error::msg(format!("{shown}: not UTF-8 text")))?;
        for doc in starmap::yaml::parse_documents(&text, &shown)? {
            let objects = match doc.value.get("items").and_then(|i| i.as_array()) {
                Some(items)
                    if doc
                        .value
                        .get("kind")
                        .and_then(|k| k.as_str())
                        .is_some_and(|k| k.ends_with("List")) =>
                {
                    items.clone()
                }
                _ => vec![doc.value],
            };
            for object in objects {
                let text = |p: &str| object.pointer(p).and_then(|v| v.as_str()).unwrap_or("").to_string();
                // An object that exists with no health rules is Healthy (contract section 5).
                let status = starmap::health::health_of(&object).unwrap_or(starmap::health::HealthStatus {
                    health: starmap::health::Health::Healthy,
                    message: String::new(),
                });
                rows.push(serde_json::json!({
                    "kind": text("/kind"),
                    "name": text("/metadata/name"),
                    "namespace": object.pointer("/metadata/namespace").and_then(|v| v.as_str()),
                    "health": status.health,
                    "message": status.message,
                }));
            }
        }
    }
    if a.output.is_data() {
        output::print_data(a.output, &serde_json::Value::Array(rows));
    } else {
        outln!("{:<28} {:<40} {:<12} MESSAGE", "KIND", "NAMESPACE/NAME", "HEALTH");
        for r in &rows {
            let name = match r["namespace"].as_str() {
                Some(ns) => format!("{ns}/{}", r["name"].as_str().unwrap_or("")),
                None => r["name"].as_str().unwrap_or("").to_string(),
            };
            outln!(
                "{:<28} {:<40} {:<12} {}",
                r["kind"].as_str().unwrap_or(""),
                name,
                r["health"].as_str().unwrap_or(""),
                r["message"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn validate_cmd(a: args::ValidateArgs) -> Result<ExitCode> {
    let (model, plan) = load(&a.source)?;
    let env = render::environment();
    let sync = SyncObjects::new(&model, None, &a.branch)?;
    let renderer = Renderer::new(&model, &env)?;
    let sources = Sources {
        model: &model,
        plan: &plan,
        renderer: &renderer,
        sync: sync.as_ref(),
    };
    let rendered = sources.render_all()?;
    let objects: usize = rendered.iter().map(|r| r.cluster.objects.len()).sum();
    let schema_report = if a.schemas.is_empty() {
        None
    } else {
        let mut schemas = SchemaSet::new();
        for dir in &a.schemas {
            let n = schemas.load_dir(dir)?;
            if n == 0 {
                return Err(starmap::Error::msg(format!(
                    "--schemas {}: no schema found there",
                    dir.display()
                )));
            }
        }
        let fleet = sync.as_ref().map(|s| s.fleet_files()).transpose()?.unwrap_or_default();
        Some(check::against_schemas(&rendered, &fleet, &schemas)?)
    };
    let invalid = schema_report.as_ref().map(|r| r.invalid.len()).unwrap_or(0);
    match a.output {
        OutputFormat::Json | OutputFormat::Yaml => {
            let mut report = serde_json::json!({
                "valid": invalid == 0,
                "clusters": model.clusters.len(),
                "placements": model.placements.len(),
                "customizations": model.customizations.len(),
                "workloads": model.workloads.len(),
                "renderedObjects": objects,
                "warnings": plan.warnings,
            });
            if let Some(schemas) = &schema_report {
                report["schemas"] = serde_json::to_value(schemas).unwrap_or_default();
            }
            output::print_data(a.output, &report)
        }
        _ => {
            for w in &plan.warnings {
                outln!("warning: {w}");
            }
            if let Some(report) = &schema_report {
                for i in &report.invalid {
                    eprintln!(
                        "error: {}: cluster {}, {}: {}",
                        i.source,
                        i.cluster,
                        i.object,
                        i.errors.join("; ")
                    );
                }
                for u in &report.unchecked {
                    outln!(
                        "unchecked: no schema for {} {} ({})",
                        u.api_version,
                        u.kind,
                        output::count(u.objects, "object")
                    );
                }
                outln!(
                    "schemas: {} checked against a schema, {} invalid, {} unchecked",
                    output::count(report.checked, "object"),
                    report.invalid.len(),
                    report.unchecked.iter().map(|u| u.objects).sum::<usize>()
                );
            }
            if invalid == 0 {
                outln!(
                    "valid: {}, {}, {}, {}; {} rendered",
                    output::count(model.clusters.len(), "cluster"),
                    output::count(model.placements.len(), "placement"),
                    output::count(model.customizations.len(), "customization"),
                    output::count(model.workloads.len(), "workload object"),
                    output::count(objects, "object"),
                );
            }
        }
    }
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
