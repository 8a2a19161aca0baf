//! Health rules against Argo CD's own test cases (`../shared/data/health/`, see its
//! PROVENANCE.md): every row of expected.tsv, expected_nil.tsv and crds/expected_all.tsv.
//!
//! Each test prints a table of all its rows and asserts that the rows that do not match are
//! exactly the documented deliberate differences.

use std::path::{Path, PathBuf};

use serde_json::Value;
use starmap::health::{Health, health_of};

/// Rows (by file, as in the TSV) where starmap deliberately differs from the Argo CD expectation.
const DELIBERATE_DIFFERENCES: &[(&str /*file*/, &str /*why*/)] = &[];

/// legacy/expected.tsv: assertions of the archived gitops-engine that current Argo CD removed.
const LEGACY_DIFFERENCES: &[(&str, &str)] = &[
    (
        "hpa-v2beta2-healthy.yaml",
        "autoscaling/v2beta2 HPA: current Argo CD (#27887) no longer supports it and gives Unknown; we follow current Argo CD",
    ),
    (
        "hpa-v2beta1-healthy-disabled.yaml",
        "autoscaling/v2beta1 HPA: current Argo CD (#27887) no longer supports it and gives Unknown; we follow current Argo CD",
    ),
    (
        "hpa-v2beta1-healthy.yaml",
        "autoscaling/v2beta1 HPA: current Argo CD (#27887) no longer supports it and gives Unknown; we follow current Argo CD",
    ),
];

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/health")
}

/// How the upstream test compares a row.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// health_test.go: the status, and the message only where the TSV gives one.
    BuiltIn,
    /// util/lua/health_test.go: the whole {status, message}; an empty message must be empty.
    Lua,
    /// GetResourceHealth returns nil.
    Nil,
}

struct Row {
    file: String,
    kind: String,
    status: String,
    message: String,
}

fn read_tsv(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.starts_with("file\tkind\texpected_status\texpected_message"),
        "{}: header {header:?}",
        path.display()
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert!(cols.len() >= 4, "{}: short row {l:?}", path.display());
            Row {
                file: cols[0].into(),
                kind: cols[1].into(),
                status: cols[2].into(),
                message: cols[3].into(),
            }
        })
        .collect()
}

/// Parses a fixture: one YAML document, or the single non-empty one among several. A repeated
/// key keeps its last value, as Argo CD's YAML reader (sigs.k8s.io/yaml) does: statefulset-ondelete.yaml
/// repeats `spec.updateStrategy` (with the same value).
fn load(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read: {e}"))?;
    let options = || serde_saphyr::options! { duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins };
    match serde_saphyr::from_str_with_options::<Value>(&text, options()) {
        Ok(v) => Ok(v),
        Err(single) => {
            let docs: Vec<Value> = serde_saphyr::from_multiple_with_options::<Value>(&text, options())
                .map_err(|e| format!("parse: {single}; as multiple documents: {e}"))?
                .into_iter()
                .filter(|d| !d.is_null())
                .collect();
            match <[Value; 1]>::try_from(docs) {
                Ok([doc]) => Ok(doc),
                Err(docs) => Err(format!("{} documents, expected one", docs.len())),
            }
        }
    }
}

/// Evaluates one row; `Err` describes a mismatch.
fn check(dir: &Path, row: &Row, mode: Mode) -> Result<String, String> {
    // Paths are relative to the TSV's folder (crds/) or to its testdata/ folder.
    let direct = dir.join(&row.file);
    let path = if direct.exists() {
        direct
    } else {
        dir.join("testdata").join(&row.file)
    };
    let object = load(&path)?;
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    if kind != row.kind {
        return Err(format!("fixture kind {kind:?}, TSV says {:?}", row.kind));
    }
    let got = health_of(&object);
    let shown = match &got {
        None => "nil".to_string(),
        Some(h) if h.message.is_empty() => h.health.to_string(),
        Some(h) => format!("{} {:?}", h.health, h.message),
    };
    match (mode, got) {
        (Mode::Nil, None) => Ok(shown),
        (Mode::Nil, Some(_)) => Err(format!("got {shown}, expected nil")),
        (_, None) => Err(format!("got nil, expected {}", row.status)),
        (mode, Some(h)) => {
            let want = Health::parse(&row.status).ok_or_else(|| format!("bad expected status {:?}", row.status))?;
            let message_ok = match mode {
                Mode::Lua => h.message == row.message,
                _ => row.message.is_empty() || h.message == row.message,
            };
            if h.health == want && message_ok {
                Ok(shown)
            } else {
                Err(format!("got {shown}"))
            }
        }
    }
}

/// Runs every row of a TSV, prints the table, and checks the mismatches against `differences`.
fn run(tsv: &str, mode: Mode, differences: &[(&str, &str)]) {
    let tsv_path = data_dir().join(tsv);
    let dir = tsv_path.parent().expect("tsv has a parent");
    let rows = read_tsv(&tsv_path);
    assert!(!rows.is_empty(), "{tsv}: no rows");
    let mut failed = Vec::new();
    println!("{tsv}:");
    println!("  {:<4} {:<90} {:<26} {:<12} got", "", "file", "kind", "expected");
    for row in &rows {
        let (mark, got) = match check(dir, row, mode) {
            Ok(got) => ("ok", got),
            Err(why) => {
                failed.push(row.file.clone());
                ("FAIL", why)
            }
        };
        let expected = if row.message.is_empty() {
            row.status.clone()
        } else {
            format!("{} {:?}", row.status, row.message)
        };
        println!("  {mark:<4} {:<90} {:<26} {expected:<12} {got}", row.file, row.kind);
    }
    let passed = rows.len() - failed.len();
    println!("{tsv}: {passed}/{} rows pass", rows.len());
    let in_this_tsv: Vec<String> = differences
        .iter()
        .filter(|(file, _)| rows.iter().any(|r| r.file == *file))
        .map(|(file, why)| {
            println!("  deliberate difference: {file}: {why}");
            file.to_string()
        })
        .collect();
    assert_eq!(
        failed, in_this_tsv,
        "{tsv}: rows that fail vs the documented deliberate differences"
    );
}

#[test]
fn argo_cd_builtin_health_cases() {
    run("expected.tsv", Mode::BuiltIn, DELIBERATE_DIFFERENCES);
}

#[test]
fn argo_cd_nil_health_cases() {
    run("expected_nil.tsv", Mode::Nil, DELIBERATE_DIFFERENCES);
}

#[test]
fn argo_cd_lua_health_cases() {
    run("crds/expected_all.tsv", Mode::Lua, DELIBERATE_DIFFERENCES);
}

/// legacy/: assertions of the archived gitops-engine that current Argo CD deleted, with the old
/// HPA API versions. We follow current Argo CD (Unknown), so all differ, as documented.
#[test]
fn legacy_gitops_engine_hpa_cases() {
    run("legacy/expected.tsv", Mode::BuiltIn, LEGACY_DIFFERENCES);
    for (file, _) in LEGACY_DIFFERENCES {
        let object = load(&data_dir().join("legacy/testdata").join(file)).expect("legacy fixture parses");
        assert_eq!(health_of(&object).map(|h| h.health), Some(Health::Unknown), "{file}");
    }
}

/// Each per-kind crds/<group>/<Kind>/expected.tsv is covered by expected_all.tsv.
#[test]
fn crds_expected_all_is_the_union() {
    let all = read_tsv(&data_dir().join("crds/expected_all.tsv"));
    let mut count = 0;
    for group in std::fs::read_dir(data_dir().join("crds")).expect("crds dir").flatten() {
        if !group.path().is_dir() {
            continue;
        }
        for kind in std::fs::read_dir(group.path()).expect("group dir").flatten() {
            let prefix = format!(
                "{}/{}/",
                group.file_name().to_string_lossy(),
                kind.file_name().to_string_lossy()
            );
            for row in read_tsv(&kind.path().join("expected.tsv")) {
                count += 1;
                let file = format!("{prefix}{}", row.file);
                assert!(
                    all.iter()
                        .any(|r| r.file == file && r.status == row.status && r.message == row.message),
                    "{file} missing from expected_all.tsv"
                );
            }
        }
    }
    assert_eq!(count, all.len());
}
