//! A fast reader for YAML exactly as starmap's emitter writes it (`crate::yaml::emit`), so
//! that reading 10,000 status files takes about a second instead of ten: the general parser
//! keeps the line of every node and is about 15× slower on status files. This one reads the
//! emitter's subset only and gives up (`None`) on anything else; the caller then falls back
//! to the general parser, which also gives the precise error.
//!
//! The subset: block mappings and sequences with two-space indentation (a sequence under a
//! key at the key's column, `- key: value` and `- - item` compact), plain scalars as the
//! emitter writes them (its `is_plain_safe` strings, `true`, `false`, `null`, integers and
//! floats with a `.`), one-line double-quoted strings with JSON's escapes, literal blocks
//! `|` and `|-` two columns deeper than their key or dash, `{}` and `[]`. No comments, tags,
//! anchors, flow collections, explicit keys, documents markers or blank lines outside
//! literal blocks. Whatever it accepts reads as the general parser reads it (checked by the
//! tests below, on the emitter's output for random values).

use serde_json::{Map, Number, Value};

/// The value of a document written by the emitter; `None` when `text` is anything else.
pub fn read(text: &str) -> Option<Value> {
    // Control characters other than line feed and tab (which only literal blocks hold raw),
    // and the invisible or line-breaking characters the emitter always escapes.
    if text
        .bytes()
        .any(|b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f)
        || (!text.is_ascii() && text.chars().any(is_exotic))
    {
        return None;
    }
    let body = text.strip_suffix('\n')?;
    let lines: Vec<&str> = body.split('\n').collect();
    let mut r = Reader { lines, pos: 0 };
    let first = *r.lines.first()?;
    if indent_of(first) != 0 {
        return None;
    }
    let value = if let Some(item) = first.strip_prefix("- ") {
        r.sequence(0, Some(item))?
    } else if is_entry(first) {
        r.mapping(0, Some(first))?
    } else {
        r.pos = 1;
        r.scalar(first, 0)?
    };
    (r.pos == r.lines.len()).then_some(value)
}

/// Characters the emitter never writes raw, but for line feed and tab (which only literal
/// blocks hold raw, and the reader checks those itself).
fn is_exotic(c: char) -> bool {
    c != '\n' && c != '\t' && super::emit::is_exotic(c)
}

struct Reader<'a> {
    lines: Vec<&'a str>,
    pos: usize,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Deepest indentation the fast reader takes. Each level of nesting adds at least one
/// column per two levels, so this keeps documents well inside the parser's limit of 128
/// levels, which the general parser reports (found by fuzzing).
const MAX_INDENT: usize = 100;

/// Longest key source the fast reader takes (YAML's limit is 1024 characters).
const MAX_IMPLICIT_KEY_BYTES: usize = 512;

/// Whether `content` (a line without its indentation) is a mapping entry `key: ...`.
fn is_entry(content: &str) -> bool {
    split_key(content).is_some()
}

/// `key: rest` or `key:` → (key, rest without the separating space, or None at the end).
fn split_key(content: &str) -> Option<(String, Option<&str>)> {
    let (key, after) = if content.starts_with('"') {
        let (key, used) = double_quoted(content)?;
        (key, &content[used..])
    } else {
        // The first `: ` or a final `:` (a plain key has neither).
        let b = content.as_bytes();
        let end = b
            .iter()
            .enumerate()
            .position(|(i, &c)| c == b':' && b.get(i + 1).is_none_or(|&n| n == b' '))?;
        let key = &content[..end];
        if !is_plain_safe(key) {
            return None;
        }
        (key.to_string(), &content[end..])
    };
    // YAML caps an implicit key at 1024 characters; the general parser refuses longer ones
    // and says where, so a long key (well short of the cap, in bytes) is left to it.
    if content.len() - after.len() > MAX_IMPLICIT_KEY_BYTES {
        return None;
    }
    let after = after.strip_prefix(':')?;
    match after {
        "" => Some((key, None)),
        _ => Some((key, Some(after.strip_prefix(' ')?))),
    }
}

impl<'a> Reader<'a> {
    fn line(&self) -> Option<&'a str> {
        self.lines.get(self.pos).copied()
    }

    /// A block mapping whose keys are at column `indent`. `first`: the first entry's text
    /// when it follows a `- ` on the current line.
    fn mapping(&mut self, indent: usize, first: Option<&'a str>) -> Option<Value> {
        if indent > MAX_INDENT {
            return None;
        }
        let mut map = Map::new();
        let mut inline = first;
        loop {
            let content = match inline.take() {
                Some(c) => c,
                None => {
                    let Some(line) = self.line() else { break };
                    let n = indent_of(line);
                    if n < indent || line.is_empty() {
                        break;
                    }
                    if n > indent || line[n..].starts_with('-') {
                        return None;
                    }
                    &line[n..]
                }
            };
            self.pos += 1;
            let (key, rest) = split_key(content)?;
            let value = match rest {
                Some(scalar) => self.scalar(scalar, indent)?,
                None => self.nested(indent)?,
            };
            if map.insert(key, value).is_some() {
                return None; // a duplicate key: the general parser says where
            }
        }
        Some(Value::Object(map))
    }

    /// The block under `key:` at column `indent`: a mapping two columns deeper, or a
    /// sequence at the key's own column.
    fn nested(&mut self, indent: usize) -> Option<Value> {
        let line = self.line()?;
        let n = indent_of(line);
        let content = &line[n..];
        if n == indent && content.starts_with("- ") {
            self.sequence(indent, None)
        } else if n == indent + 2 && !content.starts_with('-') && is_entry(content) {
            self.mapping(indent + 2, None)
        } else {
            None
        }
    }

    /// A block sequence whose `-` are at column `indent`. `first`: the first item's text
    /// when it follows a `- ` on the current line.
    fn sequence(&mut self, indent: usize, first: Option<&'a str>) -> Option<Value> {
        if indent > MAX_INDENT {
            return None;
        }
        let mut items = Vec::new();
        let mut inline = first;
        loop {
            let item = match inline.take() {
                Some(c) => c,
                None => {
                    let Some(line) = self.line() else { break };
                    let n = indent_of(line);
                    if n < indent || line.is_empty() || !line[n..].starts_with('-') {
                        break;
                    }
                    if n > indent {
                        return None;
                    }
                    line[n..].strip_prefix("- ")?
                }
            };
            // Nested collections start on this line and take it; a scalar takes it here.
            let value = if let Some(rest) = item.strip_prefix("- ") {
                self.sequence(indent + 2, Some(rest))?
            } else if is_entry(item) {
                self.mapping(indent + 2, Some(item))?
            } else {
                self.pos += 1;
                self.scalar(item, indent)?
            };
            items.push(value);
        }
        Some(Value::Array(items))
    }

    /// A scalar written after `key: ` or `- ` (whose key or dash is at column `owner`);
    /// a literal block takes the lines after it.
    fn scalar(&mut self, s: &str, owner: usize) -> Option<Value> {
        match s {
            "null" => return Some(Value::Null),
            // YAML 1.2's other spellings too: minijinja prints a boolean as `True`.
            "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
            "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
            "{}" => return Some(Value::Object(Map::new())),
            "[]" => return Some(Value::Array(Vec::new())),
            "|" | "|-" => return self.literal(owner + 2, s == "|"),
            _ => {}
        }
        let b = s.as_bytes();
        match b.first()? {
            b'"' => {
                let (v, used) = double_quoted(s)?;
                (used == s.len()).then_some(Value::String(v))
            }
            b'-' | b'0'..=b'9' => number(s).or_else(|| is_plain_safe(s).then(|| Value::String(s.to_string()))),
            // A relative path (`path: ./clusters/x` in the built-in Flux template): no YAML
            // type starts with `./` (`.inf` and `.nan` go on with a letter).
            b'.' if s.starts_with("./") => is_plain_safe(&s[1..]).then(|| Value::String(s.to_string())),
            _ => is_plain_safe(s).then(|| Value::String(s.to_string())),
        }
    }

    /// A literal block whose lines are at column `indent` (empty lines written empty).
    fn literal(&mut self, indent: usize, keep_newline: bool) -> Option<Value> {
        let mut lines: Vec<&str> = Vec::new();
        while let Some(line) = self.line() {
            if !line.is_empty() {
                let n = indent_of(line);
                if n < indent {
                    break;
                }
                if n > indent && lines.iter().all(|l| l.is_empty()) {
                    return None; // a reader would take the indentation from this line
                }
            }
            lines.push(line.get(indent..).unwrap_or(""));
            self.pos += 1;
        }
        // Empty, or ending in empty lines: not what the emitter writes.
        if lines.last().is_none_or(|l| l.is_empty()) {
            return None;
        }
        let mut out = lines.join("\n");
        if keep_newline {
            out.push('\n');
        }
        Some(Value::String(out))
    }
}

/// The emitter's numbers: `-?(0|[1-9][0-9]*)` as an int (i64, else u64), and floats with a
/// `.` and an optional signed exponent. Anything else: `None`.
fn number(s: &str) -> Option<Value> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let b = digits.as_bytes();
    if b.is_empty() || !b[0].is_ascii_digit() {
        return None;
    }
    let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_len > 1 && b[0] == b'0' {
        return None; // leading zero: octal in some readers
    }
    if int_len == b.len() {
        if let Ok(i) = s.parse::<i64>() {
            return Some(Value::from(i));
        }
        return s.parse::<u64>().ok().map(Value::from);
    }
    let rest = &digits[int_len..];
    let frac = rest.strip_prefix('.')?;
    let frac_len = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
    if frac_len == 0 {
        return None;
    }
    let exp = &frac[frac_len..];
    if !exp.is_empty() {
        let e = exp.strip_prefix('e')?;
        let e = e.strip_prefix('+').or_else(|| e.strip_prefix('-'))?;
        if e.is_empty() || !e.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let f: f64 = s.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

/// A double-quoted string at the start of `s`: its value and the bytes it took. Only the
/// escapes the emitter writes (`\" \\ \/ \b \f \n \r \t \uXXXX`, no surrogates).
fn double_quoted(s: &str) -> Option<(String, usize)> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut out = String::new();
    let mut i = 1;
    let mut start = 1;
    while i < b.len() {
        match b[i] {
            b'"' => {
                out.push_str(&s[start..i]);
                return Some((out, i + 1));
            }
            b'\\' => {
                out.push_str(&s[start..i]);
                let c = match *b.get(i + 1)? {
                    b'"' => '"',
                    b'\\' => '\\',
                    b'/' => '/',
                    b'b' => '\u{8}',
                    b'f' => '\u{c}',
                    b'n' => '\n',
                    b'r' => '\r',
                    b't' => '\t',
                    b'u' => {
                        let hex = s.get(i + 2..i + 6)?;
                        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                            return None;
                        }
                        let c = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                        i += 4;
                        c
                    }
                    _ => return None,
                };
                out.push(c);
                i += 2;
                start = i;
            }
            c if c < 0x20 || c == 0x7f => return None,
            _ => i += 1,
        }
    }
    None
}

// The emitter's rule for plain strings: strings that every reader reads back as this same
// string (the same function, so the two cannot drift apart).
use super::emit::is_plain_safe;

/// The documents of a stream of the emitter's subset separated by `---` lines (as the
/// built-in Flux and Argo CD templates write it); empty documents are skipped as the general
/// parser skips them. `None` when any document is outside the subset.
pub fn read_stream(text: &str) -> Option<Vec<Value>> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut flush = |doc: &mut String| -> Option<()> {
        if !doc.trim().is_empty() {
            docs.push(read(doc)?);
        }
        doc.clear();
        Some(())
    };
    for line in text.split_inclusive('\n') {
        // A literal block's lines are indented, so `---` at column 0 only separates documents.
        if line.trim_end_matches(['\n', '\r']) == "---" {
            flush(&mut current)?;
        } else {
            current.push_str(line);
        }
    }
    if !current.is_empty() && !current.ends_with('\n') {
        return None;
    }
    flush(&mut current)?;
    Some(docs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{parse_documents, to_yaml_string};
    use proptest::prelude::*;
    use serde_json::json;

    fn general(text: &str) -> Value {
        let docs = parse_documents(text, "t.yaml").unwrap();
        docs.into_iter().next().map(|d| d.value).unwrap_or(Value::Null)
    }

    #[track_caller]
    fn same(v: &Value) {
        let text = to_yaml_string(v);
        let fast = read(&text).unwrap_or_else(|| panic!("fast reader gave up on:\n{text}"));
        assert_eq!(fast, general(&text), "{text}");
        assert_eq!(&fast, v, "{text}");
    }

    #[test]
    fn reads_streams_of_documents() {
        let a = json!({"kind": "A", "spec": {"path": "./clusters/x", "n": 1}});
        let b = json!({"kind": "B", "list": ["x", "y"]});
        let text = format!("---\n{}---\n{}", to_yaml_string(&a), to_yaml_string(&b));
        assert_eq!(read_stream(&text), Some(vec![a.clone(), b.clone()]));
        let stream: Vec<Value> = parse_documents(&text, "t.yaml")
            .unwrap()
            .into_iter()
            .map(|d| d.value)
            .collect();
        assert_eq!(stream, vec![a.clone(), b]);
        assert_eq!(read_stream("---\n---\n"), Some(vec![]));
        let paths = "a: ./clusters/x\nb: ./\n";
        assert_eq!(read_stream(paths), Some(vec![general(paths)]));
        assert_eq!(general(paths), json!({"a": "./clusters/x", "b": "./"}));
        assert_eq!(read(".inf: 1\n"), None);
        let spellings = "a: True\nb: FALSE\nc: TRUE\nd: False\n";
        assert_eq!(read_stream(spellings), Some(vec![general(spellings)]));
        assert_eq!(
            general(spellings),
            json!({"a": true, "b": false, "c": true, "d": false})
        );
        assert_eq!(read_stream("kind: A\n# a comment\n"), None, "outside the subset");
        assert_eq!(read_stream("kind: A"), None, "no final line break");
        assert_eq!(read_stream("--- !tag\nkind: A\n"), None);
    }

    #[test]
    fn reads_what_the_emitter_writes() {
        same(&json!({
            "cluster": "store-0042",
            "reachable": true,
            "lastSeen": "2026-11-02T10:00:00Z",
            "deployCommit": "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
            "n": -3, "big": 18446744073709551615u64, "f": 1.5, "e": 1.0e100, "tiny": 1.5e-7,
            "empty": {}, "none": [], "null": null, "quoted": "yes", "q2": "a: b", "q3": "",
            "esc": "tab\there \"q\" \\ \u{85} \u{2028} é ✓",
            "qty": ["100m", "1.5Gi", "30s", "0x1F", "007", "1e3"],
            "script": "#!/bin/sh\necho hi\n\n  indented\n",
            "nochomp": "a\nb",
            "leading": "\n\nx\ny",
            "objects": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "placements": ["a", "b"],
                 "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                [1, [2, {"k": "v"}], []],
                "plain",
                {"nested": {"deeper": [{"x": null}]}}
            ],
            "key with spaces": 1, "\"odd\" key": 2, "ключ": 3
        }));
        same(&json!("just a string"));
        same(&json!([1, 2]));
    }

    #[test]
    fn gives_up_on_anything_else() {
        for text in [
            "a: 1 # comment\n",
            "a: &x 1\nb: *x\n",
            "a: {b: 1}\n",
            "? a\n: 1\n",
            "---\na: 1\n",
            "a: 1\n\nb: 2\n",
            "a: 0777\n",
            "a: yes\n",
            "a: 1\na: 2\n",
            "a:\n    b: 1\n",
            "a: 'single'\n",
            "a: \"\\x41\"\n",
            "a: |+\n  x\n\n",
            "a: |2\n    x\n",
            "a: 1",
            "a:\r\n  b: 1\r\n",
        ] {
            assert_eq!(read(text), None, "{text:?}");
        }
        // Found by fuzzing: YAML refuses an implicit key past 1024 characters, so must we.
        let long = format!("{}: 1\n", "k ".repeat(600));
        assert_eq!(read(&long), None);
        assert!(parse_documents(&long, "long.yaml").is_err());
        // And past 128 levels of nesting.
        let deep: String = (0..70)
            .map(|i| format!("{}- a:\n", " ".repeat(2 * i)))
            .collect::<String>()
            + &" ".repeat(140)
            + "b: 1\n";
        // On the stack starmap gives its threads (8 MiB), not the test harness's 2 MiB.
        let deep_is_refused = std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(move || read(&deep).is_none() && parse_documents(&deep, "deep.yaml").is_err())
            .unwrap();
        assert!(deep_is_refused.join().unwrap());
    }

    #[test]
    fn long_keys_written_by_the_emitter_read_back() {
        let value = json!({ "k".repeat(2000): 1, "q: \"".repeat(400): {"a": 1} });
        let text = to_yaml_string(&value);
        assert_eq!(general(&text), value, "{text}");
        assert_eq!(read(&text), None);
    }

    #[test]
    fn status_test_files_read_the_same() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/status/clusters");
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            // Hand-written, so not always in the emitter's style: whatever is read is right.
            if let Some(v) = read(&text) {
                assert_eq!(v, general(&text));
            }
            let v = general(&text);
            same(&v);
        }
    }

    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z_/][a-zA-Z0-9 ._/:=-]{0,12}",
            "[0-9]{1,4}(\\.[0-9]{1,2})?[a-zA-Z]{0,3}",
            "(yes|No|ON|off|y|NULL|true|nan|inf|~|-|:|#|&a|\\*a|!t|%|@)",
            "[ -~]{0,16}",
            "[a-z \\n\\t]{0,20}",
            "\\PC{0,8}",
            Just("\u{85}x\u{2028}\u{feff}".to_string()),
        ]
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            any_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((any_string(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn most_random_documents_take_the_fast_path() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = any_value();
        let mut fast = 0;
        for _ in 0..500 {
            let v = strategy.new_tree(&mut runner).unwrap().current();
            if read(&to_yaml_string(&v)).is_some() {
                fast += 1;
            }
        }
        assert!(fast >= 475, "only {fast} of 500 read by the fast reader");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn agrees_with_the_general_parser(v in any_value()) {
            let text = to_yaml_string(&v);
            if let Some(fast) = read(&text) {
                prop_assert_eq!(&fast, &general(&text), "{}", text);
                prop_assert_eq!(&fast, &v, "{}", text);
            }
        }
    }
}
