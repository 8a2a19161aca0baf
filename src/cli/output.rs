//! Printing reports: text for people, JSON for machines, Markdown for pull requests.

use std::fmt::Write;

use serde_json::json;
use starmap::Model;
use starmap::deploy::Outcome;
use starmap::deploy::changes::{ChangeKind, Changes};
use starmap::deploy::publish::PublishOutcome;
use starmap::explain::Explanation;

use super::args::OutputFormat;

/// `-o json` or `-o yaml`: the same data either way.
pub fn print_data(format: OutputFormat, value: &serde_json::Value) {
    match format {
        OutputFormat::Yaml => out!("{}", starmap::yaml::to_yaml_string(value)),
        _ => outln!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
    }
}

/// A writer whose every write is scrubbed of credentials (`redact::scrub`) before it reaches
/// `W`: the log writer. A log line is formatted whole and written at once, so a credential is
/// never split between two writes.
pub struct Scrubbed<W: std::io::Write>(pub W);

impl<W: std::io::Write> std::io::Write for Scrubbed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(starmap::redact::scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Write what the CLI prints to stdout, scrubbed of credentials (`redact::scrub`): the one
/// way the commands print (`outln!`, `out!`).
pub fn write_out(text: &str, newline: bool) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(starmap::redact::scrub(text).as_bytes());
    if newline {
        let _ = stdout.write_all(b"\n");
    }
}

fn short(oid: &git2::Oid) -> String {
    oid.to_string()[..12].to_string()
}

fn sign(kind: ChangeKind) -> char {
    match kind {
        ChangeKind::Added => '+',
        ChangeKind::Changed => '~',
        ChangeKind::Removed => '-',
    }
}

fn summary(changes: &Changes) -> String {
    let (a, c, r) = changes.counts();
    let n = changes.clusters.len();
    format!(
        "{n} cluster{} to change: {a} object{} added, {c} changed, {r} removed",
        if n == 1 { "" } else { "s" },
        if a == 1 { "" } else { "s" }
    )
}

/// `n thing` or `n things`.
pub fn count(n: usize, thing: &str) -> String {
    format!("{n} {thing}{}", if n == 1 { "" } else { "s" })
}

pub fn render_result(
    model: &Model,
    deploy: &str,
    branch: &str,
    outcome: &Outcome,
    published: Option<&PublishOutcome>,
    dry_run: bool,
    format: OutputFormat,
) {
    let pushed_artifacts = |published: Option<&PublishOutcome>| {
        if let (Some(p), Some(oci)) = (published, &model.config.oci)
            && !p.pushed.is_empty()
        {
            outln!(
                "pushed {} artifact{} to {} (tag {})",
                p.pushed.len(),
                if p.pushed.len() == 1 { "" } else { "s" },
                oci.repository(),
                oci.tag
            );
        }
    };
    if format.is_data() {
        print_data(
            format,
            &json!({
                "artifactsPushed": published.map(|p| p.pushed.clone()),
                "commit": outcome.commit.map(|c| c.to_string()),
                "pushed": outcome.pushed,
                "dryRun": dry_run,
                "branch": branch,
                "clustersRendered": outcome.rendered,
                "clustersUnchanged": outcome.reused,
                "changes": outcome.changes,
                "rollouts": outcome.rollouts,
            }),
        );
        return;
    }
    outln!(
        "rendered {} cluster{} from {} ({} re-rendered, {} unchanged inputs)",
        model.clusters.len(),
        if model.clusters.len() == 1 { "" } else { "s" },
        model.source.display,
        outcome.rendered,
        outcome.reused
    );
    for r in &outcome.rollouts {
        let mut line = format!(
            "rollout {}: {}, {}/{} waves open",
            r.placement, r.phase, r.open_waves, r.waves
        );
        if !r.message.is_empty() {
            line = format!("{line}: {}", r.message);
        }
        outln!("{line}");
    }
    if outcome.changes.is_empty() {
        outln!("no changes: {deploy} branch {branch} is up to date");
        pushed_artifacts(published);
        return;
    }
    match (outcome.commit, dry_run) {
        (_, true) => outln!("dry run: would commit {}", summary(&outcome.changes)),
        (Some(commit), false) => {
            outln!(
                "committed {} on {} in {}: {}",
                short(&commit),
                branch,
                deploy,
                summary(&outcome.changes).replace(" to change", " changed")
            );
            if outcome.pushed {
                outln!("pushed {branch} to origin");
            }
        }
        (None, false) => {}
    }
    pushed_artifacts(published);
}

pub fn plan_result(
    changes: &Changes,
    repo: Option<&git2::Repository>,
    diff: bool,
    format: OutputFormat,
    warnings: &[String],
) {
    match format {
        OutputFormat::Json | OutputFormat::Yaml => {
            let (a, c, r) = changes.counts();
            print_data(
                format,
                &json!({
                    "changed": !changes.is_empty(),
                    "objects": {"added": a, "changed": c, "removed": r},
                    "clusters": changes.clusters,
                    "rollouts": changes.rollouts,
                    "warnings": warnings,
                }),
            );
        }
        OutputFormat::Markdown => out!("{}", markdown(changes, repo, diff, warnings)),
        OutputFormat::Text | OutputFormat::Html => {
            for w in warnings {
                outln!("warning: {w}");
            }
            if changes.is_empty() {
                outln!("No changes: the deploy repo is up to date.");
                return;
            }
            outln!("Plan: {}\n", summary(changes));
            for r in &changes.rollouts {
                outln!("~ rollout {r}\n");
            }
            if changes.sync_changed {
                outln!("~ the generated Argo CD and Flux objects (argocd/, flux/) change\n");
            }
            for c in &changes.clusters {
                outln!(
                    "{} cluster {} ({} object{})",
                    sign(c.change),
                    c.cluster,
                    c.objects.len(),
                    if c.objects.len() == 1 { "" } else { "s" }
                );
                for o in &c.objects {
                    outln!("    {} {:<50} {}", sign(o.change), o.object, o.file);
                }
            }
            if diff {
                outln!();
                out!("{}", unified_diffs(changes, repo));
            }
        }
    }
}

/// Unified diffs of every changed file (objects and `kustomization.yaml`), `a/` the tip
/// and `b/` the render.
fn unified_diffs(changes: &Changes, repo: Option<&git2::Repository>) -> String {
    let read = |oid: Option<git2::Oid>| {
        oid.and_then(|oid| repo.and_then(|r| r.find_blob(oid).ok()))
            .map(|b| String::from_utf8_lossy(b.content()).into_owned())
            .unwrap_or_default()
    };
    let mut out = String::new();
    for c in &changes.clusters {
        let mut files: Vec<(&str, Option<git2::Oid>, Option<&str>)> = c
            .objects
            .iter()
            .map(|o| (o.file.as_str(), o.old, o.new.as_deref()))
            .collect();
        if let Some((old, new)) = &c.kustomization {
            files.push(("kustomization.yaml", *old, new.as_deref()));
        }
        files.sort_by(|a, b| a.0.cmp(b.0));
        for (file, old, new) in files {
            let path = format!("clusters/{}/{file}", c.cluster);
            let a = if old.is_some() {
                format!("a/{path}")
            } else {
                "/dev/null".into()
            };
            let b = if new.is_some() {
                format!("b/{path}")
            } else {
                "/dev/null".into()
            };
            let old_text = read(old);
            let text = similar::TextDiff::from_lines(old_text.as_str(), new.unwrap_or(""));
            let _ = write!(out, "{}", text.unified_diff().context_radius(3).header(&a, &b));
        }
    }
    out
}

fn markdown(changes: &Changes, repo: Option<&git2::Repository>, diff: bool, warnings: &[String]) -> String {
    let mut m = String::from("### starmap plan\n\n");
    for w in warnings {
        let _ = writeln!(m, "> **warning:** {w}\n");
    }
    if changes.is_empty() {
        m.push_str("No changes: the deploy repo is up to date.\n");
        return m;
    }
    let _ = writeln!(m, "**{}**\n", summary(changes));
    if changes.sync_changed {
        m.push_str("The generated Argo CD and Flux objects (`argocd/`, `flux/`) change.\n\n");
    }
    m.push_str("| cluster | | added | changed | removed |\n|---|---|---:|---:|---:|\n");
    const ROWS: usize = 100;
    for c in changes.clusters.iter().take(ROWS) {
        let what = match c.change {
            ChangeKind::Added => "new cluster",
            ChangeKind::Changed => "",
            ChangeKind::Removed => "removed cluster",
        };
        let (added, changed, removed) = c.counts();
        let _ = writeln!(m, "| `{}` | {what} | {added} | {changed} | {removed} |", c.cluster);
    }
    if changes.clusters.len() > ROWS {
        let _ = writeln!(m, "| … {} more clusters | | | | |", changes.clusters.len() - ROWS);
    }
    m.push_str("\n<details><summary>Objects</summary>\n\n");
    for c in changes.clusters.iter().take(ROWS) {
        let _ = writeln!(m, "- `{}`", c.cluster);
        for o in &c.objects {
            // Words, not +/-: after a list marker those would start a nested list.
            let what = match o.change {
                ChangeKind::Added => "added",
                ChangeKind::Changed => "changed",
                ChangeKind::Removed => "removed",
            };
            let _ = writeln!(m, "  - {what} `{}`", o.object);
        }
    }
    m.push_str("\n</details>\n");
    if diff {
        m.push_str("\n<details><summary>Diff</summary>\n\n```diff\n");
        m.push_str(&unified_diffs(changes, repo));
        m.push_str("```\n\n</details>\n");
    }
    m
}

/// Explanations of one or more clusters: as data, one object when `single` (one cluster
/// named exactly), else a list; as text, one after the other.
pub fn explain_results(explanations: &[Explanation], single: bool, format: OutputFormat) {
    if format.is_data() {
        let value = match explanations {
            [one] if single => serde_json::to_value(one).unwrap_or_default(),
            many => serde_json::to_value(many).unwrap_or_default(),
        };
        print_data(format, &value);
        return;
    }
    for (i, e) in explanations.iter().enumerate() {
        if i > 0 {
            outln!();
        }
        explain_text(e);
    }
}

fn explain_text(e: &Explanation) {
    let labels: Vec<String> = e.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    outln!("cluster {}\n  labels: {}\n", e.cluster, labels.join(", "));
    if e.placed.is_empty() {
        match &e.object {
            Some(object) => outln!("{object} is not on this cluster.\n"),
            None => outln!("Nothing is placed on this cluster.\n"),
        }
    }
    for p in &e.placed {
        outln!("{}  ({})", p.object, p.source);
        outln!("  file: {}", p.file);
        for r in &p.placed_by {
            outln!("  placed by {}: {}", r.placement, r.clause);
            outln!("    cluster selected by {}", r.cluster_by);
        }
        if p.customizations.is_empty() {
            outln!("  no customization");
        }
        for c in &p.customizations {
            outln!("  customized by {c}:");
            for change in p.changes.iter().filter(|x| x.customization == *c) {
                outln!("    {}", change.what);
            }
        }
        outln!();
    }
    if !e.not_placed.is_empty() {
        outln!("Not on this cluster:");
        for n in &e.not_placed {
            outln!("  {}  ({})\n    {}", n.object, n.source, n.why);
        }
    }
    if !e.rollouts.is_empty() {
        outln!("\nRollouts:");
        for r in &e.rollouts {
            outln!(
                "  {}: wave {} ({} of {}), chosen by {}\n    {}",
                r.placement,
                r.wave,
                r.wave_number,
                r.waves,
                r.chosen_by,
                r.status
            );
        }
    }
}
