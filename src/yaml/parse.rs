//! Parsing YAML with serde-saphyr into `serde_json::Value`s that remember their lines.
//!
//! serde-saphyr does the YAML work (YAML 1.2 core schema, anchors, alias-bomb and depth
//! budgets); we deserialize each node as `Spanned<_>` to learn its line, then split the
//! result into a plain `Value` (what the pipeline transforms) and a `LineTree` of the same
//! shape (what errors consult to say `file:line`).

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;
use std::fmt;

use crate::error::{Error, Location, Result};

/// One YAML document of a file.
#[derive(Debug, Clone)]
pub struct Doc {
    pub value: Value,
    pub lines: LineTree,
}

impl Doc {
    /// Line of the document's root node.
    pub fn line(&self) -> u32 {
        self.lines.line
    }
}

/// The line of every node of a document, shaped like its value.
#[derive(Debug, Clone, Default)]
pub struct LineTree {
    pub line: u32,
    children: Children,
}

#[derive(Debug, Clone, Default)]
enum Children {
    #[default]
    Leaf,
    Seq(Vec<LineTree>),
    /// Key, line of the key, subtree of the value.
    Map(Vec<(String, u32, LineTree)>),
}

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

impl LineTree {
    /// The largest line of any node or key below (and at) this one.
    pub fn max_line(&self) -> u32 {
        let below = match &self.children {
            Children::Leaf => 0,
            Children::Seq(items) => items.iter().map(LineTree::max_line).max().unwrap_or(0),
            Children::Map(entries) => entries
                .iter()
                .map(|(_, line, sub)| (*line).max(sub.max_line()))
                .max()
                .unwrap_or(0),
        };
        self.line.max(below)
    }

    /// The line of the deepest node on `path` that exists. For a key that is not there
    /// (an unknown field, say), the line of the key itself when it exists.
    pub fn line_at(&self, path: &[Step<'_>]) -> u32 {
        let mut node = self;
        for step in path {
            match (&node.children, step) {
                (Children::Seq(items), Step::Index(i)) if *i < items.len() => node = &items[*i],
                (Children::Map(entries), Step::Key(k)) => match entries.iter().find(|(key, _, _)| key == k) {
                    Some((_, _, sub)) => node = sub,
                    None => return node.line,
                },
                _ => return node.line,
            }
        }
        node.line
    }

    /// A copy of the subtree at `path`, if the path exists.
    pub fn subtree(&self, path: &[Step<'_>]) -> Option<LineTree> {
        let mut node = self;
        for step in path {
            node = match (&node.children, step) {
                (Children::Seq(items), Step::Index(i)) => items.get(*i)?,
                (Children::Map(entries), Step::Key(k)) => &entries.iter().find(|(x, _, _)| x == k)?.2,
                _ => return None,
            };
        }
        Some(node.clone())
    }

    /// The line where `key` is written inside the mapping at `path`.
    pub fn key_line(&self, path: &[Step<'_>], key: &str) -> Option<u32> {
        let mut node = self;
        for step in path {
            node = match (&node.children, step) {
                (Children::Seq(items), Step::Index(i)) => items.get(*i)?,
                (Children::Map(entries), Step::Key(k)) => &entries.iter().find(|(x, _, _)| x == k)?.2,
                _ => return None,
            };
        }
        match &node.children {
            Children::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, l, _)| *l),
            _ => None,
        }
    }
}

/// Parse every document of a YAML (or JSON) text. Empty documents are skipped, and so are
/// documents that are only `null` (serde-saphyr skips `null` itself, not a tagged empty
/// node such as `!x`: both are skipped here, found by fuzzing).
/// `path` is only used in error messages.
pub fn parse_documents(text: &str, path: &str) -> Result<Vec<Doc>> {
    let nodes: Vec<Node> =
        serde_saphyr::from_str_multiple_with_options(text, options()).map_err(|e| saphyr_error(&e, path))?;
    let mut docs = Vec::with_capacity(nodes.len());
    for node in nodes {
        let doc = node
            .into_doc()
            .map_err(|(line, m)| Error::at(Location::new(path, line), m))?;
        if !doc.value.is_null() {
            docs.push(doc);
        }
    }
    Ok(docs)
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    // The defaults are sized for config files; an inventory of 10,000 clusters is one
    // file of 10,000 documents. Depth and alias limits keep their protective defaults
    // (bombs and 100k nested brackets are rejected in milliseconds).
    budget.max_documents = 1_000_000;
    budget.max_events = 100_000_000;
    budget.max_nodes = 50_000_000;
    budget.max_total_scalar_bytes = 1 << 30;
    budget.max_depth = 128;
    // Anchors are rare in manifests; a bomb is stopped after 100,000 copied events
    // (tens of milliseconds) instead of the default million.
    budget.max_recorded_anchor_events = 100_000;
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = 100_000;
    serde_saphyr::options! {
        budget: Some(budget),
        alias_limits: alias_limits,
        // YAML 1.2: `yes`/`on` are strings, as kustomize and Flux read them.
        strict_booleans: true,
        // `defaultMode: 0644` means 420, as kubectl (go-yaml) reads it.
        legacy_octal_numbers: true,
        with_snippet: false,
    }
}

/// serde-saphyr's message says "at line L, column C" (and more for aliases); we print
/// `path:line:` first and keep the message to one plain sentence.
fn saphyr_error(e: &serde_saphyr::Error, path: &str) -> Error {
    let line = e.location().map(|l| l.line() as u32).unwrap_or(0);
    let raw = e.to_string();
    let first_line = raw.lines().next().unwrap_or("invalid YAML");
    let message = match first_line.find(" at line ") {
        Some(i) => &first_line[..i],
        None => first_line,
    };
    Error::at(
        Location::new(path, line),
        format!("invalid YAML: {}", plain_message(message.trim())),
    )
}

/// serde-saphyr's wording for limits and policies, in a user's terms.
fn plain_message(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set DuplicateKeyPolicy").next().unwrap_or(rest);
        return format!("duplicate key {key:?} in this mapping");
    }
    if message.contains("recursion limit") || message.contains("depth") && message.contains("budget") {
        return "nested more than 128 levels deep".into();
    }
    if message.contains("\\u{0}") {
        return "a NUL byte, which YAML does not allow".into();
    }
    if message.starts_with("alias replay limit") {
        return "too many alias expansions (more than 100,000 copied nodes: a YAML \"alias bomb\"?)".into();
    }
    if message.starts_with("budget breached") {
        let what = if message.contains("Alias") || message.contains("Anchor") || message.contains("Replay") {
            "too many alias expansions (more than 100,000 copied nodes: a YAML \"alias bomb\"?)"
        } else {
            "the document is too large"
        };
        return what.to_string();
    }
    message.to_string()
}

/// A parsed node with its line, as serde-saphyr hands it over.
struct Node {
    line: u32,
    kind: Kind,
}

enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Spanned<KeyText>, Node)>),
}

/// A mapping key. Kubernetes objects only have string keys; YAML allows others
/// (`1: x`, `true: y`), which we turn into their text like kubectl's YAML-to-JSON does.
struct KeyText(String);

impl Node {
    fn into_doc(self) -> Result<Doc, (u32, String)> {
        let (value, lines) = self.split()?;
        Ok(Doc { value, lines })
    }

    fn split(self) -> Result<(Value, LineTree), (u32, String)> {
        let line = self.line;
        let leaf = |value| {
            Ok((
                value,
                LineTree {
                    line,
                    children: Children::Leaf,
                },
            ))
        };
        match self.kind {
            Kind::Null => leaf(Value::Null),
            Kind::Bool(b) => leaf(Value::Bool(b)),
            Kind::Int(i) => leaf(Value::from(i)),
            Kind::UInt(u) => leaf(Value::from(u)),
            Kind::Float(f) => match Number::from_f64(f) {
                Some(n) => leaf(Value::Number(n)),
                None => Err((line, format!("the number {f} cannot be represented in JSON"))),
            },
            Kind::Str(s) => leaf(Value::String(s)),
            Kind::Seq(items) => {
                let mut values = Vec::with_capacity(items.len());
                let mut trees = Vec::with_capacity(items.len());
                for item in items {
                    let (v, t) = item.split()?;
                    values.push(v);
                    trees.push(t);
                }
                Ok((
                    Value::Array(values),
                    LineTree {
                        line,
                        children: Children::Seq(trees),
                    },
                ))
            }
            Kind::Map(entries) => {
                let mut map = Map::with_capacity(entries.len());
                let mut trees = Vec::with_capacity(entries.len());
                for (key, node) in entries {
                    let key_line = key.referenced.line() as u32;
                    let (v, t) = node.split()?;
                    map.insert(key.value.0.clone(), v);
                    trees.push((key.value.0, key_line, t));
                }
                Ok((
                    Value::Object(map),
                    LineTree {
                        line,
                        children: Children::Map(trees),
                    },
                ))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned: Spanned<Kind> = Spanned::deserialize(d)?;
        Ok(Node {
            line: spanned.referenced.line() as u32,
            kind: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        Kind::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::UInt(v))
    }
    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Kind, E> {
        i64::try_from(v)
            .map(Kind::Int)
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Kind, E> {
        u64::try_from(v)
            .map(Kind::UInt)
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Kind, E> {
        String::from_utf8(v.to_vec())
            .map(Kind::Str)
            .map_err(|_| E::custom("binary value is not UTF-8 text"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Kind::Map(entries))
    }
}

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Kind::deserialize(d)? {
            Kind::Str(s) => Ok(KeyText(s)),
            Kind::Null => Ok(KeyText("null".into())),
            Kind::Bool(b) => Ok(KeyText(b.to_string())),
            Kind::Int(i) => Ok(KeyText(i.to_string())),
            Kind::UInt(u) => Ok(KeyText(u.to_string())),
            Kind::Float(f) => Ok(KeyText(f.to_string())),
            Kind::Seq(_) | Kind::Map(_) => Err(serde::de::Error::custom(
                "a mapping key must be a scalar, not a sequence or mapping",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_lines_of_every_node() {
        let text =
            "# comment\n---\napiVersion: v1\nkind: ConfigMap\ndata:\n  a: \"1\"\n  b: [x, y]\n---\n---\nkind: Other\n";
        let docs = parse_documents(text, "f.yaml").unwrap();
        assert_eq!(docs.len(), 2, "empty documents are skipped");
        let tagged = "# a tagged empty node is null, like an empty document\n    !/x/\n---\nnull\n---\nkind: A\n";
        assert_eq!(parse_documents(tagged, "f.yaml").unwrap().len(), 1);
        assert_eq!(docs[0].line(), 3);
        assert_eq!(
            docs[0]
                .lines
                .line_at(&[Step::Key("data"), Step::Key("b"), Step::Index(1)]),
            7
        );
        assert_eq!(docs[0].lines.key_line(&[Step::Key("data")], "b"), Some(7));
        assert_eq!(docs[1].line(), 10);
    }

    #[test]
    fn yaml_1_2_booleans_and_legacy_octal() {
        let docs = parse_documents("a: yes\nb: on\nc: 0644\nd: true\ne: '0777'\n", "f").unwrap();
        let v = &docs[0].value;
        assert_eq!(v["a"], "yes");
        assert_eq!(v["b"], "on");
        assert_eq!(v["c"], 420);
        assert_eq!(v["d"], true);
        assert_eq!(v["e"], "0777");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse_documents("a: 1\nb: [1, 2\nc: 3\n", "w/x.yaml").unwrap_err();
        let loc = e.location.clone().unwrap();
        assert_eq!(loc.path, "w/x.yaml");
        assert!(loc.line >= 2, "{e}");
        assert!(e.to_string().starts_with("w/x.yaml:"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let e = parse_documents("a: 1\na: 2\n", "d.yaml").unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");
        assert_eq!(e.location.unwrap().line, 2);
    }

    #[test]
    fn key_order_is_kept() {
        let docs = parse_documents("z: 1\na: 2\nm: 3\n", "f").unwrap();
        let keys: Vec<_> = docs[0].value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }
}
