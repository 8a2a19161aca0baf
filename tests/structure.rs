//! The crate's shape, checked: its top-level modules form layers in data-flow order, so that
//! their `use crate::…` graph has no cycle, and the pure core does no I/O.
//!
//! Every `.rs` file under `src/` is parsed with `syn`; every path that names a module of the
//! crate (`crate::x`, `super::…` climbing out of a top-level module, `starmap::x` in the
//! binary's `cli`) is an edge between two top-level modules. The test prints the graph (run it
//! with `--nocapture`: `.ci/run` does) and fails on
//!
//! - a module that is not in [`LAYERS`] (a new module must be given its place),
//! - an edge to a module of the same or a higher layer (which is what makes a cycle possible),
//! - any cycle (reported with its members even if the layers were wrong),
//! - I/O in a module of the pure core ([`PURE`]): `std::fs`, `std::process`, `std::net`,
//!   `std::env`, `std::thread`, the clock (`SystemTime`, `Instant`, `crate::time::now`), or a
//!   crate that reaches git, a network or a runtime (`git2`, `kube`, `tokio`, `oci_client`,
//!   `reqwest`).
//!
//! Test modules (`#[cfg(test)]`) count for the graph like any code, but may do I/O (a unit test
//! of the YAML emitter runs a real YAML 1.1 reader, say).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Top-level modules, lowest layer first. A module may use modules of lower layers only.
/// ARCHITECTURE.md draws the same picture; keep them together.
const LAYERS: &[&[&str]] = &[
    // Leaves: no other module of the crate.
    &["redact", "time", "retry", "health", "cel", "progress"],
    &["error"],
    &["yaml"],
    // What a user writes: starmap.yaml, the spec kinds, the template language.
    &["config", "spec", "template", "secrets"],
    &["model"],
    // The deploy repo's files: their names and formats, each read and written in one place.
    &["formats"],
    // The pure core, in data-flow order.
    &["plan"],
    &["render", "gitops"],
    &["rollout", "summary"],
    &["explain", "desired"],
    // The imperative shell.
    &["gitstore", "oci", "schema"],
    &["source", "snapshot"],
    &["deploy", "status"],
    &["pipeline", "dashboard"],
    &["controller"],
    // The binary.
    &["cli"],
];

/// Modules that must do no I/O: a model in, a value out.
const PURE: &[&str] = &[
    "redact", "progress", "error", "retry", "health", "cel", "yaml", "config", "spec", "template", "secrets", "model",
    "formats", "plan", "render", "gitops", "rollout", "summary", "explain", "desired",
];

/// Path prefixes that mean I/O (or a crate that does it), and identifiers that read the clock.
const IO_PATHS: &[&str] = &[
    "std::fs",
    "std::process",
    "std::net",
    "std::env",
    "std::thread",
    "git2",
    "kube",
    "tokio",
    "oci_client",
    "reqwest",
    "crate::time::now",
];
const CLOCK_IDENTS: &[&str] = &["SystemTime", "Instant"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// A file's module path: `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `lib.rs` and `main.rs`
/// are the crate roots (an empty path).
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).expect("under src/");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    match last.as_str() {
        "mod.rs" | "lib.rs" | "main.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    parts
}

/// What one file says about its dependencies.
struct FileVisitor<'a> {
    /// The module the visitor is in (the file's path plus inline `mod x { … }`).
    module: Vec<String>,
    /// Whether this file belongs to the binary (`main.rs`, `cli/`), where the library is
    /// `starmap::`.
    binary: bool,
    /// Top-level module → line numbers where it is used.
    uses: BTreeMap<String, Vec<usize>>,
    /// I/O found: (line, what).
    io: Vec<(usize, String)>,
    /// Inside a `#[cfg(test)]` module (how deep).
    in_test: usize,
    top_level: &'a BTreeSet<String>,
}

impl FileVisitor<'_> {
    /// Record a path given as its segments, from the module the visitor is in.
    fn path(&mut self, segments: &[String], line: usize) {
        let Some(first) = segments.first() else { return };
        let target: Option<Vec<String>> = match first.as_str() {
            "crate" if !self.binary => Some(segments[1..].to_vec()),
            "starmap" if self.binary => Some(segments[1..].to_vec()),
            "super" => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                let mut m = self.module.clone();
                for _ in 0..ups {
                    m.pop();
                }
                m.extend(segments[ups..].iter().cloned());
                Some(m)
            }
            "self" => {
                let mut m = self.module.clone();
                m.extend(segments[1..].iter().cloned());
                Some(m)
            }
            _ => None,
        };
        let joined = segments.join("::");
        if self.in_test > 0 {
            // Tests may do I/O; their dependencies still count below.
        } else if IO_PATHS
            .iter()
            .any(|p| joined == *p || joined.starts_with(&format!("{p}::")))
        {
            self.io.push((line, joined.clone()));
        }
        if self.in_test == 0 && segments.iter().any(|s| CLOCK_IDENTS.contains(&s.as_str())) {
            self.io.push((line, joined));
        }
        if let Some(target) = target
            && let Some(top) = target.first()
            && self.top_level.contains(top)
        {
            self.uses.entry(top.clone()).or_default().push(line);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.path(&prefix.clone(), n.ident.span().start().line);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.path(&prefix.clone(), r.ident.span().start().line);
                prefix.pop();
            }
            syn::UseTree::Glob(g) => self.path(&prefix.clone(), g.star_token.span.start().line),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    /// Paths inside macro calls (`format!`, `tracing::info!`) are tokens, not syntax: find
    /// `a::b::c` runs in them.
    fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
        let mut run: Vec<String> = Vec::new();
        let mut line = 0;
        let mut colons = 0;
        let flush = |this: &mut Self, run: &mut Vec<String>, line: usize| {
            if run.len() > 1 {
                this.path(run, line);
            }
            run.clear();
        };
        for tt in tokens {
            match tt {
                proc_macro2::TokenTree::Ident(i) => {
                    if colons != 2 {
                        flush(self, &mut run, line);
                    }
                    if run.is_empty() {
                        line = i.span().start().line;
                    }
                    run.push(i.to_string());
                    colons = 0;
                }
                proc_macro2::TokenTree::Punct(p) if p.as_char() == ':' && !run.is_empty() => colons += 1,
                proc_macro2::TokenTree::Group(g) => {
                    flush(self, &mut run, line);
                    colons = 0;
                    self.tokens(g.stream());
                }
                _ => {
                    flush(self, &mut run, line);
                    colons = 0;
                }
            }
        }
        flush(self, &mut run, line);
    }
}

impl<'ast> Visit<'ast> for FileVisitor<'_> {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = path.segments.first().map(|s| s.ident.span().start().line).unwrap_or(0);
        self.path(&segments, line);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        self.tokens(mac.tokens.clone());
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        let test = is_cfg_test(&item.attrs);
        self.in_test += usize::from(test);
        if item.content.is_some() {
            self.module.push(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
            self.module.pop();
        }
        self.in_test -= usize::from(test);
    }
}

/// `#[cfg(test)]`.
fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test"))
}

struct Graph {
    /// Module → module → (file:line where first seen, count).
    edges: BTreeMap<String, BTreeMap<String, (String, usize)>>,
    /// Module → I/O found in it: `file:line: path`.
    io: BTreeMap<String, Vec<String>>,
    modules: BTreeSet<String>,
}

fn read_graph() -> Graph {
    let mut files: Vec<PathBuf> = walk(&src());
    files.sort();
    let mut top_level: BTreeSet<String> = BTreeSet::new();
    for f in &files {
        if let Some(top) = module_path(f).first() {
            top_level.insert(top.clone());
        }
    }
    let mut graph = Graph {
        edges: BTreeMap::new(),
        io: BTreeMap::new(),
        modules: top_level.clone(),
    };
    for file in &files {
        let module = module_path(file);
        let Some(top) = module.first().cloned() else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut v = FileVisitor {
            module: module.clone(),
            binary: top == "cli",
            uses: BTreeMap::new(),
            io: Vec::new(),
            // `#[cfg(test)] mod tests;` in a file of its own.
            in_test: usize::from(module.last().is_some_and(|m| m == "tests")),
            top_level: &top_level,
        };
        v.visit_file(&ast);
        let shown = file
            .strip_prefix(src().parent().unwrap())
            .unwrap()
            .display()
            .to_string();
        for (to, lines) in v.uses {
            if to == top {
                continue;
            }
            let e = graph
                .edges
                .entry(top.clone())
                .or_default()
                .entry(to)
                .or_insert_with(|| (format!("{shown}:{}", lines[0]), 0));
            e.1 += lines.len();
        }
        for (line, what) in v.io {
            graph
                .io
                .entry(top.clone())
                .or_default()
                .push(format!("{shown}:{line}: {what}"));
        }
    }
    graph
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.edges.get(v).into_iter().flat_map(|m| m.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for m in &graph.modules {
        if !t.index.contains_key(m.as_str()) {
            t.visit(m);
        }
    }
    t.out
}

#[test]
fn top_level_modules_form_layers_without_cycles_and_the_core_does_no_io() {
    let graph = read_graph();
    println!("top-level module graph (module -> what it uses), lowest layer first:");
    let mut ordered: Vec<&String> = graph.modules.iter().collect();
    ordered.sort_by_key(|m| (layer_of(m).unwrap_or(usize::MAX), m.to_string()));
    for m in &ordered {
        let uses: Vec<&str> = graph
            .edges
            .get(*m)
            .map(|e| e.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let layer = layer_of(m).map_or("?".to_string(), |l| l.to_string());
        let pure = if PURE.contains(&m.as_str()) { " (pure)" } else { "" };
        println!("  [{layer:>2}] {m}{pure} -> {}", uses.join(", "));
    }

    let mut problems = Vec::new();
    for m in &graph.modules {
        if layer_of(m).is_none() {
            problems.push(format!("module `{m}` has no place in LAYERS (tests/structure.rs)"));
        }
    }
    for (from, tos) in &graph.edges {
        for (to, (at, _)) in tos {
            if let (Some(a), Some(b)) = (layer_of(from), layer_of(to))
                && b >= a
            {
                problems.push(format!(
                    "`{from}` (layer {a}) uses `{to}` (layer {b}) at {at}: a module may use lower layers only"
                ));
            }
        }
    }
    for component in cycles(&graph) {
        problems.push(format!("cycle among: {}", component.join(", ")));
    }
    for m in PURE {
        for hit in graph.io.get(*m).into_iter().flatten() {
            problems.push(format!("I/O in the pure module `{m}`: {hit}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn every_file_of_src_is_in_the_code_map_of_architecture_md() {
    let root = src().parent().unwrap().to_path_buf();
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for file in walk(&src()) {
        let rel = file.strip_prefix(&root).unwrap().display().to_string();
        if !map.contains(&format!("`{rel}`")) {
            missing.push(rel);
        }
    }
    missing.sort();
    assert!(missing.is_empty(), "not in ARCHITECTURE.md's code map: {missing:?}");
}

#[test]
fn the_checker_sees_cycles_and_io() {
    // The checker itself, on a made-up graph: a -> b -> a is a cycle; c alone is not.
    let mut graph = Graph {
        edges: BTreeMap::new(),
        io: BTreeMap::new(),
        modules: ["a", "b", "c"].iter().map(|s| s.to_string()).collect(),
    };
    graph
        .edges
        .entry("a".into())
        .or_default()
        .insert("b".into(), ("x".into(), 1));
    graph
        .edges
        .entry("b".into())
        .or_default()
        .insert("a".into(), ("y".into(), 1));
    graph
        .edges
        .entry("c".into())
        .or_default()
        .insert("a".into(), ("z".into(), 1));
    assert_eq!(cycles(&graph), vec![vec!["a".to_string(), "b".to_string()]]);

    // Paths in `use` trees, expressions, `super::` and macro tokens are all seen.
    let top: BTreeSet<String> = ["render", "status", "model"].iter().map(|s| s.to_string()).collect();
    let code = r#"
        use crate::model::{Model, ObjectId};
        use std::fs;
        fn f() {
            let _ = super::super::status::x();
            tracing::info!("{}", crate::render::y());
            let _ = std::time::Instant::now();
        }
    "#;
    let mut v = FileVisitor {
        module: vec!["plan".into(), "inner".into()],
        binary: false,
        uses: BTreeMap::new(),
        io: Vec::new(),
        in_test: 0,
        top_level: &top,
    };
    v.visit_file(&syn::parse_file(code).unwrap());
    let used: Vec<&String> = v.uses.keys().collect();
    assert_eq!(used, ["model", "render", "status"]);
    let io: Vec<&str> = v.io.iter().map(|(_, w)| w.as_str()).collect();
    assert_eq!(io, ["std::fs", "std::time::Instant::now"]);
}
