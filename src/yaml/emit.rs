//! YAML emitter for `serde_json::Value`, in the style of `kubectl get -o yaml`.
//!
//! The output is read back to exactly the same value by YAML 1.2 readers and by
//! YAML 1.1 readers (go-yaml v2 as used by kubectl via `sigs.k8s.io/yaml`,
//! PyYAML, libyaml).
//!
//! Quoting rule: a string is written plain (unquoted) only when it starts with
//! an ASCII letter, `_` or `/`, uses only ASCII letters, digits, spaces and
//! `-_./:+@=,~%()$;`, has no `: `, does not end in a space or `:`, and is not a
//! YAML 1.1/1.2 special word in any case (`y n yes no on off true false null
//! nan inf infinity`); a Kubernetes quantity such as `100m`, `512Mi` or `1.5Gi`
//! (digits, an optional `.digits`, then ASCII letters, not `0x`-style) is plain
//! too. A string containing a line break is written as a literal block (`|`
//! or `|-`) when that reads back exactly; every other string is double-quoted,
//! with JSON-compatible escapes for `"`, `\`, control characters, C1 controls,
//! line/paragraph separators, BOM and invisible format characters.
//!
//! Layout: two-space indent, block mappings, a sequence under a key at the
//! key's own indentation, compact `- key: value` and `- - item`, `{}`, `[]`,
//! `null`. Keys keep the order of the input map.

use serde_json::{Map, Number, Value};
use std::fmt::Write as _;

/// Appends `value` as one YAML block document (no leading `---`), ending in a newline.
pub fn write_document(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) if !map.is_empty() => write_mapping(out, map, 0, false),
        Value::Array(seq) if !seq.is_empty() => write_sequence(out, seq, 0, false),
        _ => write_scalar(out, value, 0, false),
    }
}

/// The document for `value` as a new string of exactly its length. Written into a buffer
/// kept per thread, then copied: a string grown by doubling keeps up to half its capacity
/// unused (a cluster's 4.3 KB index sat in 8 KB), and a render keeps every one of its
/// 200,000 files until the commit, each byte of it fresh memory for the kernel to zero.
pub fn to_yaml_string(value: &Value) -> String {
    thread_local! {
        static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    SCRATCH.with(|scratch| {
        // Nothing that writes a document writes another meanwhile; were it ever so, the inner
        // one gets a buffer of its own rather than a panic.
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            let mut out = String::new();
            write_document(&mut out, value);
            return out;
        };
        scratch.clear();
        write_document(&mut scratch, value);
        let out = scratch.as_str().to_owned();
        // One huge document must not stay allocated for the thread's life.
        if scratch.capacity() > 1 << 20 {
            *scratch = String::new();
        }
        out
    })
}

/// Appends the entries of a non-empty mapping as they appear nested at column `indent`
/// (the same bytes `write_document` gives them there): lets a caller write the entries of a
/// large mapping in parallel and join them.
pub fn write_entries(out: &mut String, map: &Map<String, Value>, indent: usize) {
    write_mapping(out, map, indent, false);
}

/// Keys whose written form is longer than this use the explicit `? key` form:
/// YAML readers reject implicit keys longer than 1024 characters.
const MAX_IMPLICIT_KEY_BYTES: usize = 1000;

const SPACES: &str = "                                                                ";

#[inline]
fn push_indent(out: &mut String, mut n: usize) {
    while n > SPACES.len() {
        out.push_str(SPACES);
        n -= SPACES.len();
    }
    out.push_str(&SPACES[..n]);
}

/// Writes the entries of a non-empty mapping whose keys start at column `indent`.
/// With `inline_first`, the first key goes on the current line (after `- `).
fn write_mapping(out: &mut String, map: &Map<String, Value>, indent: usize, inline_first: bool) {
    let mut first = inline_first;
    for (key, value) in map {
        if first {
            first = false;
        } else {
            push_indent(out, indent);
        }
        let key_start = out.len();
        write_key(out, key);
        // A sequence value goes at the key's own indentation (Kubernetes style),
        // except after an explicit `? key`, where it is indented like a mapping.
        let mut seq_indent = indent;
        if out.len() - key_start > MAX_IMPLICIT_KEY_BYTES {
            out.insert_str(key_start, "? ");
            out.push('\n');
            push_indent(out, indent);
            seq_indent = indent + 2;
        }
        out.push(':');
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                write_mapping(out, m, indent + 2, false);
            }
            Value::Array(s) if !s.is_empty() => {
                out.push('\n');
                write_sequence(out, s, seq_indent, false);
            }
            _ => write_scalar(out, value, indent, true),
        }
    }
}

/// Writes the items of a non-empty sequence whose `-` are at column `indent`.
fn write_sequence(out: &mut String, seq: &[Value], indent: usize, inline_first: bool) {
    let mut first = inline_first;
    for item in seq {
        if first {
            first = false;
        } else {
            push_indent(out, indent);
        }
        out.push('-');
        match item {
            Value::Object(m) if !m.is_empty() => {
                out.push(' ');
                write_mapping(out, m, indent + 2, true);
            }
            Value::Array(s) if !s.is_empty() => {
                out.push(' ');
                write_sequence(out, s, indent + 2, true);
            }
            _ => write_scalar(out, item, indent, true),
        }
    }
}

/// Writes a scalar (or empty collection) and the end of its line. `indent` is the
/// column of the owning key or `-`; block scalar content goes two columns deeper.
/// `space` puts a separating space first (after `key:` or `-`).
fn write_scalar(out: &mut String, value: &Value, indent: usize, space: bool) {
    if space {
        out.push(' ');
    }
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => {
            if is_plain_safe(s) {
                out.push_str(s);
            } else if let Some(chomp) = literal_style(s) {
                write_literal(out, s, chomp, indent + 2);
                return;
            } else {
                write_double_quoted(out, s);
            }
        }
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
    out.push('\n');
}

#[inline]
fn write_key(out: &mut String, key: &str) {
    if is_plain_safe(key) {
        out.push_str(key);
    } else {
        write_double_quoted(out, key);
    }
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        write_float(out, f);
    } else {
        // Only reachable with serde_json's arbitrary_precision feature.
        let _ = write!(out, "{n}");
    }
}

/// Writes a float so that every reader reads back the same f64, as a float:
/// shortest round-trip digits, always a `.` in the mantissa, and a signed
/// exponent (`1.0`, `0.25`, `1.0e+100`, `1.5e-7`), as YAML 1.1 requires.
fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str(".nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { ".inf" } else { "-.inf" });
        return;
    }
    let mut buf = StackBuf::new();
    // Debug is the shortest representation that round-trips; it always has a
    // `.` unless it is in exponent form (`1e100`, `1.5e-7`).
    let _ = write!(buf, "{f:?}");
    let s = buf.as_str();
    match s.find('e') {
        None => out.push_str(s),
        Some(e) => {
            let (mantissa, exp) = (&s[..e], &s[e + 1..]);
            out.push_str(mantissa);
            if !mantissa.contains('.') {
                out.push_str(".0");
            }
            out.push('e');
            if !exp.starts_with('-') {
                out.push('+');
            }
            out.push_str(exp);
        }
    }
}

struct StackBuf {
    buf: [u8; 64],
    len: usize,
}

impl StackBuf {
    fn new() -> Self {
        StackBuf { buf: [0; 64], len: 0 }
    }
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so this is valid UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("0.0")
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// ASCII bytes allowed in a plain scalar after its first character.
const PLAIN_SAFE: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 128 {
        t[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let extra = b" -_./:+@=,~%()$;";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// Words that some YAML 1.1 or 1.2 reader resolves to a bool, null or float,
/// compared ignoring ASCII case.
const SPECIAL_WORDS: [&str; 12] = [
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf", "infinity",
];

/// True when `s` can be written as a plain scalar and every reader reads it
/// back as this same string.
pub(crate) fn is_plain_safe(s: &str) -> bool {
    let b = s.as_bytes();
    let Some(&first) = b.first() else {
        return false;
    };
    if first.is_ascii_alphabetic() || first == b'/' || first == b'_' {
        let last = b[b.len() - 1];
        if last == b' ' || last == b':' {
            return false;
        }
        let mut prev = 0u8;
        for &c in b {
            if !PLAIN_SAFE[c as usize] || (prev == b':' && c == b' ') {
                return false;
            }
            prev = c;
        }
        !(b.len() <= 8 && SPECIAL_WORDS.iter().any(|w| w.eq_ignore_ascii_case(s)))
    } else if first.is_ascii_digit() {
        is_quantity(b)
    } else {
        false
    }
}

/// `[0-9]+(\.[0-9]+)?[A-Za-z]+`, not starting with `0` + letter (`0x1F`, `0o17`,
/// `0b101`): Kubernetes quantities and durations such as `100m`, `1.5Gi`, `30s`.
/// No reader resolves these to anything but a string.
fn is_quantity(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    } else if b[0] == b'0' && i == 1 {
        // `0` directly followed by a letter: a radix prefix.
        return false;
    }
    let letters = i;
    while i < b.len() && b[i].is_ascii_alphabetic() {
        i += 1;
    }
    i > letters && i == b.len()
}

/// Characters that are never written raw: C0 controls (including tab and line
/// feed), DEL, C1 controls (including NEL U+0085), zero-width and bidi format
/// characters, LS U+2028, PS U+2029, BOM U+FEFF and the non-characters
/// U+FFFE/U+FFFF. YAML 1.1 readers treat NEL, LS and PS as line breaks, and
/// the others are invisible or not printable.
#[inline]
pub(crate) fn is_exotic(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{fffe}'..='\u{ffff}')
}

/// Chomping indicator for `s` as a literal block scalar, when that reads back
/// exactly: `"|"` if `s` ends in exactly one line feed, `"|-"` if it ends in
/// none. `None` for single-line strings and those a literal block cannot hold.
fn literal_style(s: &str) -> Option<&'static str> {
    let (body, chomp) = match s.strip_suffix('\n') {
        Some(body) => (body, "|"),
        None => (s, "|-"),
    };
    if !body.contains('\n') && chomp == "|-" {
        return None; // single line
    }
    // More than one trailing line feed would need `|+`; empty content reads as "".
    if body.is_empty() || body.ends_with('\n') {
        return None;
    }
    // The first non-empty line sets the indentation: it must not start with
    // white space (leading empty lines are fine).
    let content = body.trim_start_matches('\n');
    if content.starts_with([' ', '\t']) {
        return None;
    }
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c < 0x80 {
            if (c < 0x20 && c != b'\n' && c != b'\t') || c == 0x7f {
                return None;
            }
            i += 1;
        } else {
            // Non-ASCII: decode the rest char by char (rare).
            return if body[i..].chars().any(is_exotic) {
                None
            } else {
                Some(chomp)
            };
        }
    }
    Some(chomp)
}

/// Writes the block scalar header and its lines at column `indent`; an empty
/// line is written without indentation.
fn write_literal(out: &mut String, s: &str, chomp: &str, indent: usize) {
    out.push_str(chomp);
    out.push('\n');
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        if !line.is_empty() {
            push_indent(out, indent);
            out.push_str(line);
        }
        out.push('\n');
    }
}

/// Writes `s` as a one-line double-quoted scalar. The escapes used (`\" \\ \b
/// \f \n \r \t \uXXXX`) are common to JSON, YAML 1.1 and YAML 1.2.
fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c < 0x80 {
            if c >= 0x20 && c != b'"' && c != b'\\' && c != 0x7f {
                i += 1;
                continue;
            }
            out.push_str(&s[start..i]);
            write_escape(out, c as char);
            i += 1;
            start = i;
        } else {
            let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
            let w = ch.len_utf8();
            if is_exotic(ch) {
                out.push_str(&s[start..i]);
                write_escape(out, ch);
                start = i + w;
            }
            i += w;
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_escape(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        _ => {
            // Every escaped character is in the BMP.
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            let v = c as u32;
            out.push_str("\\u");
            for shift in [12, 8, 4, 0] {
                out.push(HEX[((v >> shift) & 0xf) as usize] as char);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Each rendered file is kept until the commit: its string holds its bytes and no more
    /// (a string grown by doubling kept up to half its capacity unused).
    #[test]
    fn a_document_is_returned_at_its_length() {
        let value = serde_json::json!({"data": {"text": "x".repeat(3000)}, "kind": "ConfigMap"});
        let text = to_yaml_string(&value);
        assert_eq!(text.capacity(), text.len());
        let mut expected = String::new();
        write_document(&mut expected, &value);
        assert_eq!(text, expected);
    }

    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use serde_json::json;

    /// Strings that a careless emitter gets wrong in some YAML reader.
    #[rustfmt::skip]
    const SPECIAL: &[&str] = &[
        "", " ", "  ", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF", "y", "Y", "n", "N", "yEs", "nO", "oN", "true", "True", "TRUE", "tRUE", "false",
        "False", "FALSE", "null", "Null", "NULL", "nULL", "~", "nan", "NaN", "inf", "Infinity",
        ".nan", ".NaN", ".NAN", ".inf", ".Inf", "-.inf", "+.inf", "-.Inf", "0", "-0", "+1", "-1",
        "7", "007", "0777", "0o17", "0O17", "0x1F", "0X1f", "0xff", "0b101", "-0b101", "+0x1",
        "1_000", "1,000", "12:30", "1:20", "190:20:30", "1:20:30.5", "-1:20", "1e3", "1E3", "1e+3",
        "1.5e-3", "1.0", "-1.5", "+1.5", ".5", "-.5", "1.", "1._0", "0.", "._", "1__0", "3.14",
        "6.8523015e+5", "685.230_15e+03", "2001-12-14", "2001-12-14t21:59:43.10-05:00",
        "2001-12-14 21:59:43.10 -5", "2002-12-14", "2001-1-2", "2001-12-15T02:59:43.1Z", "=", "<<",
        "- ", "-", "--", "---", "...", "- a", "-a", "?", "? a", "?a", ":", ": a", ":a", ",", ",a",
        "[", "]", "[a]", "{", "}", "{a: b}", "#", "# comment", "&", "&anchor", "*", "*alias", "!",
        "!tag", "!!str", "|", "|-", ">", ">-", "'", "'a'", "\"", "\"a\"", "%", "%YAML", "@", "@a",
        "`", "`a`", "a: b", "a:b", "a:", "a::", "a #b", "a#b", "a ", " a", "a  b", "a\tb", "\t",
        "a\t", "\ta", "a\nb", "a\n", "\n", "\n\n", "a\n\n", "\na", "a\rb", "a\r\nb\r\n", "\r",
        "a\u{85}b", "\u{85}", "a\u{2028}b", "a\u{2029}b", "\u{feff}a", "a\u{feff}", "\u{0}",
        "a\u{7}b", "\u{1b}[0m", "\u{7f}", "\u{9f}", "\u{a0}", "a\u{a0}", "\u{200b}", "\u{202e}abc",
        "\u{fffe}", "\u{ffff}", "\u{fffd}", "😀", "a😀b", "\u{10ffff}", "\u{e000}", "é", "日本語", "\\",
        "a\\b", "C:\\dir", "\\n", "$", "${VAR}", "$(date)", "a'b", "a\"b", "a|b", "a>b", "a&b",
        "a*b", "a!b", "a%b", "a@b", "a`b", "a{b}", "a[0]", "a,b", "a=b", "a~", "100m", "512Mi",
        "1.5Gi", "1Gi", "30s", "5m30s", "1e", "1E", "1d", "0m", "0x", "0o", "0b", "0xAB", "0b1",
        "1e5m", "12:30m", "90deg", "1.5rad", "1.", "1.m", "/", "/bin/sh", "//", "/a:b", "/ a",
        "http://example.com/a?b=c#d", "nginx:1.27", "registry.k8s.io/pause:3.9@sha256:abc",
        "app.kubernetes.io/name", "kubectl.kubernetes.io/last-applied-configuration",
        "hello world", "Hello, World!", "ReadWriteOnce", "IfNotPresent",
    ];

    fn saphyr_options() -> serde_saphyr::Options {
        serde_saphyr::options! {
            strict_booleans: true,
            legacy_octal_numbers: true,
        }
    }

    fn parse(yaml: &str) -> Value {
        serde_saphyr::from_str_with_options(yaml, saphyr_options())
            .unwrap_or_else(|e| panic!("serde-saphyr failed: {e}\n--- yaml:\n{yaml}"))
    }

    /// Exact equality: same types (a float stays a float), same key order,
    /// floats equal as f64 with the same sign of zero.
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                if x.is_f64() || y.is_f64() {
                    match (x.as_f64(), y.as_f64()) {
                        (Some(p), Some(q)) if x.is_f64() && y.is_f64() => {
                            p == q && p.is_sign_negative() == q.is_sign_negative()
                        }
                        _ => false,
                    }
                } else {
                    x.as_i64() == y.as_i64() && x.as_u64() == y.as_u64()
                }
            }
            (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|((kp, p), (kq, q))| kp == kq && same(p, q))
            }
            _ => a == b,
        }
    }

    fn assert_round_trip(v: &Value) -> String {
        let yaml = to_yaml_string(v);
        assert!(yaml.ends_with('\n'), "no final newline: {yaml:?}");
        let back = parse(&yaml);
        assert!(
            same(v, &back),
            "round trip differs\ninput: {v}\nyaml:\n{yaml}\nback: {back}"
        );
        yaml
    }

    /// The line written for `k: <s>`.
    fn value_line(s: &str) -> String {
        let y = assert_round_trip(&json!({ "k": s }));
        y.strip_prefix("k: ").unwrap().to_string()
    }

    #[test]
    fn quoting_table() {
        let table: &[(&str, &str)] = &[
            // Plain.
            ("nginx", "nginx"),
            ("nginx:1.27", "nginx:1.27"),
            (
                "registry.k8s.io/pause:3.9@sha256:abc",
                "registry.k8s.io/pause:3.9@sha256:abc",
            ),
            ("app.kubernetes.io/name", "app.kubernetes.io/name"),
            ("http://example.com/a", "http://example.com/a"),
            ("/bin/sh", "/bin/sh"),
            ("hello world", "hello world"),
            ("a=b,c=d", "a=b,c=d"),
            ("ReadWriteOnce", "ReadWriteOnce"),
            ("yesterday", "yesterday"),
            ("nope", "nope"),
            ("100m", "100m"),
            ("512Mi", "512Mi"),
            ("1.5Gi", "1.5Gi"),
            ("5m30s", "\"5m30s\""),
            ("30s", "30s"),
            // Special words, any case.
            ("yes", "\"yes\""),
            ("Yes", "\"Yes\""),
            ("YES", "\"YES\""),
            ("yEs", "\"yEs\""),
            ("no", "\"no\""),
            ("No", "\"No\""),
            ("on", "\"on\""),
            ("off", "\"off\""),
            ("OFF", "\"OFF\""),
            ("y", "\"y\""),
            ("Y", "\"Y\""),
            ("n", "\"n\""),
            ("N", "\"N\""),
            ("true", "\"true\""),
            ("True", "\"True\""),
            ("false", "\"false\""),
            ("null", "\"null\""),
            ("Null", "\"Null\""),
            ("NULL", "\"NULL\""),
            ("~", "\"~\""),
            ("", "\"\""),
            ("nan", "\"nan\""),
            ("Infinity", "\"Infinity\""),
            // Numbers and timestamps in YAML 1.1 or 1.2.
            ("0", "\"0\""),
            ("8080", "\"8080\""),
            ("0777", "\"0777\""),
            ("0x1F", "\"0x1F\""),
            ("0xAB", "\"0xAB\""),
            ("0o17", "\"0o17\""),
            ("0b101", "\"0b101\""),
            ("1_000", "\"1_000\""),
            ("12:30", "\"12:30\""),
            ("1:20:30.5", "\"1:20:30.5\""),
            ("1e3", "\"1e3\""),
            (".5", "\".5\""),
            ("1.", "\"1.\""),
            ("1.0", "\"1.0\""),
            (".inf", "\".inf\""),
            ("-.inf", "\"-.inf\""),
            (".NaN", "\".NaN\""),
            ("2001-12-14", "\"2001-12-14\""),
            ("2001-12-14t21:59:43.10-05:00", "\"2001-12-14t21:59:43.10-05:00\""),
            ("=", "\"=\""),
            ("<<", "\"<<\""),
            // Indicators.
            ("- a", "\"- a\""),
            ("-a", "\"-a\""),
            ("?", "\"?\""),
            (":", "\":\""),
            (",", "\",\""),
            ("[a]", "\"[a]\""),
            ("]", "\"]\""),
            ("{a: b}", "\"{a: b}\""),
            ("}", "\"}\""),
            ("# x", "\"# x\""),
            ("&a", "\"&a\""),
            ("*a", "\"*a\""),
            ("!a", "\"!a\""),
            ("|", "\"|\""),
            (">", "\">\""),
            ("'a'", "\"'a'\""),
            ("\"a\"", "\"\\\"a\\\"\""),
            ("%a", "\"%a\""),
            ("@a", "\"@a\""),
            ("`a`", "\"`a`\""),
            ("a: b", "\"a: b\""),
            ("a #b", "\"a #b\""),
            ("a:", "\"a:\""),
            ("a ", "\"a \""),
            (" a", "\" a\""),
            ("a\\b", "\"a\\\\b\""),
            // Control and unusual characters.
            ("a\tb", "\"a\\tb\""),
            ("a\rb", "\"a\\rb\""),
            ("\u{0}", "\"\\u0000\""),
            ("\u{1b}[0m", "\"\\u001B[0m\""),
            ("\u{7f}", "\"\\u007F\""),
            ("a\u{85}b", "\"a\\u0085b\""),
            ("a\u{2028}b", "\"a\\u2028b\""),
            ("a\u{2029}b", "\"a\\u2029b\""),
            ("\u{feff}a", "\"\\uFEFFa\""),
            ("\u{200b}", "\"\\u200B\""),
            ("\u{ffff}", "\"\\uFFFF\""),
            ("é", "\"é\""),
            ("a😀b", "\"a😀b\""),
            ("a\n\nb\n\n", "\"a\\n\\nb\\n\\n\""),
        ];
        for (input, want) in table {
            assert_eq!(value_line(input), format!("{want}\n"), "for {input:?}");
        }
    }

    #[test]
    fn json_literal_is_a_yaml_double_quoted_scalar() {
        // serde_json::to_string writes U+2028, U+2029 and non-BMP characters raw,
        // which YAML 1.2 accepts inside double quotes...
        for s in ["a\u{2028}b\u{2029}c", "😀 \u{10ffff}", "\"\\\n\t\u{1}"] {
            let lit = serde_json::to_string(s).unwrap();
            assert_eq!(parse(&format!("k: {lit}\n")), json!({ "k": s }), "{lit}");
        }
        // ...but it also writes DEL and C1 controls raw, which are not printable
        // in YAML, and YAML 1.1 folds a raw NEL/LS/PS like a line break. So we
        // escape those ourselves, with escapes that JSON and YAML share.
        let lit = serde_json::to_string("\u{7f}").unwrap();
        assert!(serde_saphyr::from_str_with_options::<Value>(&lit, saphyr_options()).is_err());
        for s in [
            "a\u{2028}b\u{2029}c",
            "😀 \u{10ffff}",
            "\u{7f}\u{85}\u{9f}\u{feff}",
            "\"\\\n\t\u{1}",
        ] {
            let mut ours = String::new();
            write_double_quoted(&mut ours, s);
            assert_eq!(serde_json::from_str::<String>(&ours).unwrap(), s);
            assert_eq!(parse(&format!("k: {ours}\n")), json!({ "k": s }), "{ours}");
            assert!(!ours.contains(['\u{7f}', '\u{85}', '\u{9f}', '\u{2028}', '\u{2029}', '\u{feff}']));
        }
    }

    #[test]
    fn special_strings_round_trip_everywhere() {
        for s in SPECIAL {
            assert_round_trip(&json!(s));
            assert_round_trip(&json!({ "k": s, *s: s }));
            assert_round_trip(&json!([s, [s], { *s: [s] }]));
        }
    }

    #[test]
    fn keys_are_quoted_like_values() {
        let v = json!({"yes": 1, "on": 2, "8080": 3, "a: b": 4, "": 5, "<<": 6, "x y": 7,
                       "app.kubernetes.io/name": 8, "-": 9, "a\nb": 10});
        let y = assert_round_trip(&v);
        assert_eq!(
            y,
            "\"yes\": 1\n\"on\": 2\n\"8080\": 3\n\"a: b\": 4\n\"\": 5\n\"<<\": 6\nx y: 7\n\
             app.kubernetes.io/name: 8\n\"-\": 9\n\"a\\nb\": 10\n"
        );
    }

    #[test]
    fn long_keys_use_explicit_form() {
        let long = "k".repeat(1500);
        let v = json!({ long.clone(): [1, 2], "short": {long.clone(): {"a": "b"}}, "l": [{long.clone(): 1}] });
        let y = assert_round_trip(&v);
        assert!(y.starts_with(&format!("? {long}\n:\n  - 1\n  - 2\n")), "{y}");
        assert!(y.contains(&format!("- ? {long}\n  : 1\n")), "{y}");
        for len in 990..1030 {
            let v = json!({ "k".repeat(len): 1, "\"".repeat(len / 2): [{ "é".repeat(len): 2 }] });
            assert_round_trip(&v);
        }
    }

    #[test]
    fn kubernetes_style() {
        let v = json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.27",
            "ports": [{"containerPort": 80}]}]}});
        assert_eq!(
            assert_round_trip(&v),
            "spec:\n  containers:\n  - name: app\n    image: nginx:1.27\n    ports:\n    - containerPort: 80\n"
        );
    }

    #[test]
    fn key_order_is_kept() {
        let v: Value = serde_json::from_str(r#"{"z": 1, "a": 2, "m": {"y": 1, "b": 2}}"#).unwrap();
        assert_eq!(assert_round_trip(&v), "z: 1\na: 2\nm:\n  \"y\": 1\n  b: 2\n");
    }

    #[test]
    fn empty_containers_and_null() {
        assert_eq!(to_yaml_string(&json!({})), "{}\n");
        assert_eq!(to_yaml_string(&json!([])), "[]\n");
        assert_eq!(to_yaml_string(&json!(null)), "null\n");
        let v = json!({"a": {}, "b": [], "c": null, "d": [{}, [], null], "e": true, "f": false});
        assert_eq!(
            assert_round_trip(&v),
            "a: {}\nb: []\nc: null\nd:\n- {}\n- []\n- null\ne: true\nf: false\n"
        );
    }

    #[test]
    fn nested_sequences() {
        let v = json!([[1, [2, 3]], [["a"]], [{"k": [4]}]]);
        assert_eq!(
            assert_round_trip(&v),
            "- - 1\n  - - 2\n    - 3\n- - - a\n- - k:\n    - 4\n"
        );
        let v = json!({"m": [[1, 2], []]});
        assert_eq!(assert_round_trip(&v), "m:\n- - 1\n  - 2\n- []\n");
    }

    #[test]
    fn literal_blocks() {
        let cases: &[(&str, &str)] = &[
            ("a\nb\n", "k: |\n  a\n  b\n"),
            ("a\nb", "k: |-\n  a\n  b\n"),
            ("a\n", "k: |\n  a\n"),
            ("a\n\nb\n", "k: |\n  a\n\n  b\n"),
            ("\na\n", "k: |\n\n  a\n"),
            ("a\n  b\n", "k: |\n  a\n    b\n"),
            ("a\n\tb\n", "k: |\n  a\n  \tb\n"),
            ("a \nb\n", "k: |\n  a \n  b\n"),
            ("a\n \nb", "k: |-\n  a\n   \n  b\n"),
            (
                "#!/bin/sh\nset -eu\necho \"${VAR}\" $(date)\nkey: value\n- item\n\n# done\n",
                "k: |\n  #!/bin/sh\n  set -eu\n  echo \"${VAR}\" $(date)\n  key: value\n  - item\n\n  # done\n",
            ),
            ("---\n...\n", "k: |\n  ---\n  ...\n"),
            // Not representable as a literal block: double-quoted.
            ("a\n\n", "k: \"a\\n\\n\"\n"),
            ("\n", "k: \"\\n\"\n"),
            ("\n\n", "k: \"\\n\\n\"\n"),
            (" a\nb\n", "k: \" a\\nb\\n\"\n"),
            ("\n a\n", "k: \"\\n a\\n\"\n"),
            ("\ta\nb", "k: \"\\ta\\nb\"\n"),
            ("a\r\nb\r\n", "k: \"a\\r\\nb\\r\\n\"\n"),
            ("a\nb\u{85}\n", "k: \"a\\nb\\u0085\\n\"\n"),
            ("a\nb\u{2028}", "k: \"a\\nb\\u2028\"\n"),
            ("a\n\u{7}", "k: \"a\\n\\u0007\"\n"),
        ];
        for (input, want) in cases {
            assert_eq!(assert_round_trip(&json!({ "k": input })), *want, "for {input:?}");
        }
        // In a sequence, in a compact mapping, nested, and at the top level.
        let v = json!({"args": ["a\nb\n", {"script": "x\ny"}], "deep": {"er": "p\nq\n"}});
        assert_eq!(
            assert_round_trip(&v),
            "args:\n- |\n  a\n  b\n- script: |-\n    x\n    y\ndeep:\n  er: |\n    p\n    q\n"
        );
        assert_eq!(assert_round_trip(&json!("a\nb\n")), "|\n  a\n  b\n");
        assert_eq!(assert_round_trip(&json!([["a\nb"]])), "- - |-\n    a\n    b\n");
    }

    #[test]
    fn numbers() {
        let cases: &[(Value, &str)] = &[
            (json!(0), "0"),
            (json!(-7), "-7"),
            (json!(i64::MIN), "-9223372036854775808"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(1.0), "1.0"),
            (json!(-0.0), "-0.0"),
            (json!(0.1), "0.1"),
            (json!(2.5), "2.5"),
            (json!(1e15), "1000000000000000.0"),
            (json!(1e16), "1.0e+16"),
            (json!(1e100), "1.0e+100"),
            (json!(1.5e300), "1.5e+300"),
            (json!(1e-7), "1.0e-7"),
            (json!(1.25e-5), "1.25e-5"),
            (json!(0.0001), "0.0001"),
            (json!(f64::MAX), "1.7976931348623157e+308"),
            (json!(5e-324), "5.0e-324"),
        ];
        for (v, want) in cases {
            assert_eq!(assert_round_trip(&json!({ "k": v })), format!("k: {want}\n"));
        }
    }

    #[test]
    fn deterministic() {
        let v = json!({"a": [1, 2.5, "x\ny", {"b": null}], "c": "yes"});
        assert_eq!(to_yaml_string(&v), to_yaml_string(&v));
        let mut out = String::from("---\n");
        write_document(&mut out, &v);
        assert_eq!(out, format!("---\n{}", to_yaml_string(&v)));
    }

    const DEPLOYMENT_JSON: &str = r##"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop-prod","labels":{"app.kubernetes.io/name":"web","app.kubernetes.io/instance":"web-prod","app.kubernetes.io/part-of":"shop","app.kubernetes.io/managed-by":"starmap","tier":"frontend"},"annotations":{"deployment.kubernetes.io/revision":"42","starmap.io/source":"git@github.com:acme/shop.git//deploy/web?ref=v1.27.3","prometheus.io/scrape":"true","prometheus.io/port":"9102"}},"spec":{"replicas":3,"revisionHistoryLimit":10,"selector":{"matchLabels":{"app.kubernetes.io/name":"web","app.kubernetes.io/instance":"web-prod"}},"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":0}},"template":{"metadata":{"labels":{"app.kubernetes.io/name":"web","app.kubernetes.io/instance":"web-prod"},"annotations":{"checksum/config":"3f2a9c1b7e4d5f60a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718"}},"spec":{"serviceAccountName":"web","securityContext":{"runAsNonRoot":true,"runAsUser":10001,"fsGroup":10001,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"web","image":"registry.example.com/shop/web:1.27.3@sha256:9b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a","imagePullPolicy":"IfNotPresent","args":["--listen=:8080","--log-level=info","--config=/etc/web/config.yaml"],"env":[{"name":"GOMAXPROCS","value":"2"},{"name":"FEATURE_FLAGS","value":"checkout-v2,new-search"},{"name":"ENABLED","value":"yes"},{"name":"POD_IP","valueFrom":{"fieldRef":{"fieldPath":"status.podIP"}}}],"ports":[{"name":"http","containerPort":8080,"protocol":"TCP"},{"name":"metrics","containerPort":9102,"protocol":"TCP"}],"readinessProbe":{"httpGet":{"path":"/healthz","port":"http"},"initialDelaySeconds":5,"periodSeconds":10,"timeoutSeconds":1,"successThreshold":1,"failureThreshold":3},"livenessProbe":{"httpGet":{"path":"/livez","port":"http"},"periodSeconds":20},"resources":{"requests":{"cpu":"250m","memory":"256Mi"},"limits":{"cpu":"1","memory":"512Mi"}},"volumeMounts":[{"name":"config","mountPath":"/etc/web","readOnly":true},{"name":"tmp","mountPath":"/tmp"}],"lifecycle":{"preStop":{"exec":{"command":["/bin/sh","-c","sleep 5\nkill -TERM 1\n"]}}}}],"volumes":[{"name":"config","configMap":{"name":"web-config","defaultMode":420}},{"name":"tmp","emptyDir":{}}],"tolerations":[{"key":"dedicated","operator":"Equal","value":"web","effect":"NoSchedule"}],"topologySpreadConstraints":[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"ScheduleAnyway","labelSelector":{"matchLabels":{"app.kubernetes.io/name":"web"}}}]}}}}"##;

    const CONFIGMAP_JSON: &str = r##"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"web-config","namespace":"shop-prod"},"data":{"config.yaml":"server:\n  listen: :8080\n  timeout: 30s\nfeatures:\n  - checkout-v2\n  - new-search\nenabled: yes\n","entrypoint.sh":"#!/bin/sh\nset -eu\n\n# wait for the database\nuntil nc -z \"${DB_HOST}\" 5432; do\n\techo \"waiting for db at $(date)\"\n\tsleep 1\ndone\n\nexec /app/web --config=/etc/web/config.yaml \"$@\"\n","nginx.conf":"server {\n    listen 80;\n    location / {\n        proxy_pass http://127.0.0.1:8080;\n    }\n}","empty":"","ratio":"0.5","port":"8080","on":"off","motd":"Welcome!  \nTrailing spaces above.\n","windows.txt":"line one\r\nline two\r\n","weird":"\n\nleading blank lines then text\n","indented":"  starts indented\nsecond\n"}}"##;

    fn sample_documents() -> Vec<Value> {
        [DEPLOYMENT_JSON, CONFIGMAP_JSON]
            .iter()
            .map(|s| serde_json::from_str(s).unwrap())
            .collect()
    }

    #[test]
    fn sample_manifests_round_trip() {
        for v in sample_documents() {
            assert_round_trip(&v);
        }
    }

    #[test]
    fn configmap_files_are_literal_blocks() {
        let v: Value = serde_json::from_str(CONFIGMAP_JSON).unwrap();
        let want = concat!(
            "apiVersion: v1\n",
            "kind: ConfigMap\n",
            "metadata:\n",
            "  name: web-config\n",
            "  namespace: shop-prod\n",
            "data:\n",
            "  config.yaml: |\n",
            "    server:\n",
            "      listen: :8080\n",
            "      timeout: 30s\n",
            "    features:\n",
            "      - checkout-v2\n",
            "      - new-search\n",
            "    enabled: yes\n",
            "  entrypoint.sh: |\n",
            "    #!/bin/sh\n",
            "    set -eu\n",
            "\n",
            "    # wait for the database\n",
            "    until nc -z \"${DB_HOST}\" 5432; do\n",
            "    \techo \"waiting for db at $(date)\"\n",
            "    \tsleep 1\n",
            "    done\n",
            "\n",
            "    exec /app/web --config=/etc/web/config.yaml \"$@\"\n",
            "  nginx.conf: |-\n",
            "    server {\n",
            "        listen 80;\n",
            "        location / {\n",
            "            proxy_pass http://127.0.0.1:8080;\n",
            "        }\n",
            "    }\n",
            "  empty: \"\"\n",
            "  ratio: \"0.5\"\n",
            "  port: \"8080\"\n",
            "  \"on\": \"off\"\n",
            "  motd: |\n",
            "    Welcome!  \n",
            "    Trailing spaces above.\n",
            "  windows.txt: \"line one\\r\\nline two\\r\\n\"\n",
            "  weird: |\n",
            "\n",
            "\n",
            "    leading blank lines then text\n",
            "  indented: \"  starts indented\\nsecond\\n\"\n",
        );
        assert_eq!(assert_round_trip(&v), want);
    }

    // ---- property test ----

    fn arb_float() -> impl Strategy<Value = f64> {
        prop_oneof![
            4 => any::<f64>().prop_filter("finite", |f| f.is_finite()),
            2 => (-1000i32..1000).prop_map(f64::from),
            1 => (-20i32..20).prop_map(|e| 10f64.powi(e)),
            1 => prop::sample::select(vec![
                0.0, -0.0, 1e100, 1e-7, 1e15, 1e16, 1e21, 123456789012345680000.0, f64::MAX,
                f64::MIN, f64::MIN_POSITIVE, 5e-324, 0.1, 1.0 / 3.0,
            ]),
        ]
    }

    fn arb_line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(" ".to_string()),
            Just("  indented".to_string()),
            Just("\tx".to_string()),
            Just("#!/bin/sh".to_string()),
            Just("key: value".to_string()),
            Just("- item".to_string()),
            Just("echo ${VAR} $(date)".to_string()),
            Just("---".to_string()),
            "[ -~\t]{0,16}",
            "[a-z #:|>-]{0,8}",
            "\\PC{0,6}",
        ]
    }

    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(SPECIAL).prop_map(String::from),
            3 => "[a-zA-Z0-9 :#._/\"'\\\\{}\\[\\],&*!|>%@`?=<~$()+\t\n-]{0,12}",
            2 => "[a-zA-Z/][a-zA-Z0-9 ._/:=,@+~%()$;-]{0,12}",
            2 => any::<String>(),
            2 => (prop::collection::vec(arb_line(), 1..6), 0usize..3)
                .prop_map(|(lines, nl)| lines.join("\n") + &"\n".repeat(nl)),
            1 => "[\u{80}-\u{9f}\u{2028}\u{2029}\u{feff}\u{200b}\u{fffe}\u{ffff}a \n\r\t]{0,6}",
            1 => "[0-9]{1,4}(\\.[0-9]{0,2})?[a-zA-Z]{0,3}",
            1 => "[-+]?[0-9_.:eExXoObB]{1,8}",
            2 => "[ \t\n:#?a0.'\"|>-]{0,8}",
            1 => "[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([tT ][0-9]{1,2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,3})?( ?Z| ?[-+][0-9]{1,2}(:[0-9]{2})?)?)?",
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        arb_value_sized(5, 64)
    }

    fn arb_value_sized(depth: u32, size: u32) -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            1 => Just(Value::Null),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
            1 => arb_float().prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
            4 => arb_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(depth, size, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((arb_string(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
        #[test]
        fn round_trips_through_serde_saphyr(v in arb_value()) {
            let yaml = to_yaml_string(&v);
            let back: Value = serde_saphyr::from_str_with_options(&yaml, saphyr_options())
                .map_err(|e| TestCaseError::fail(format!("{e}\n--- yaml:\n{yaml}")))?;
            prop_assert!(same(&v, &back), "input: {}\nyaml:\n{}\nback: {}", v, yaml, back);
        }
    }

    /// A YAML 1.1 reader (PyYAML, where `yes`, `on` and `0777` are not strings) reads back what
    /// the emitter writes: the fixed special cases, sample manifests and random documents
    /// (`YAMLEMIT_N` of them, default 2000; `YAMLEMIT_SEED` picks others). `YAMLEMIT_DUMP=file`
    /// also keeps the corpus as JSON lines `[yaml, expected_json]`, to check other readers
    /// (go-yaml v2 through sigs.k8s.io/yaml) by hand.
    #[test]
    fn a_yaml_1_1_reader_reads_back_the_corpus() {
        let pyyaml = std::process::Command::new("python3")
            .args(["-c", "import yaml"])
            .status();
        if !pyyaml.is_ok_and(|s| s.success()) {
            assert!(
                std::env::var_os("STARMAP_REQUIRE_TOOLS").is_none(),
                "python3 with PyYAML is required (STARMAP_REQUIRE_TOOLS is set)"
            );
            eprintln!("skipped: python3 with PyYAML is not installed (pip install pyyaml)");
            return;
        }
        let n: usize = std::env::var("YAMLEMIT_N")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2000);
        let mut docs: Vec<Value> = Vec::new();
        for s in SPECIAL {
            docs.push(json!(s));
            docs.push(json!({ "k": s }));
            docs.push(json!({ *s: "v" }));
            docs.push(json!([s, { "k": [s] }, [s]]));
        }
        for v in [
            json!(1.0),
            json!(1e100),
            json!(-0.0),
            json!(1e-7),
            json!(u64::MAX),
            json!(i64::MIN),
            json!({"a": 5e-324, "b": [1e16, 0.1]}),
            json!({"k".repeat(1500): {"a": "k".repeat(1100)}}),
            json!([{"k".repeat(1200): ["x"]}]),
        ] {
            docs.push(v);
        }
        docs.extend(sample_documents());
        for len in 990..1030 {
            docs.push(json!({ "k".repeat(len): 1, "\"".repeat(len / 2): [2] }));
            docs.push(json!([{ "é".repeat(len / 2): { "k".repeat(len): "v" } }]));
        }
        let mut runner = match std::env::var("YAMLEMIT_SEED").ok().and_then(|s| s.parse::<u8>().ok()) {
            Some(seed) => proptest::test_runner::TestRunner::new_with_rng(
                ProptestConfig::default(),
                proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &[seed; 32]),
            ),
            None => proptest::test_runner::TestRunner::deterministic(),
        };
        let (small, big) = (arb_value_sized(5, 64), arb_value_sized(10, 400));
        for i in 0..n {
            let strat = if i % 4 == 0 { &big } else { &small };
            docs.push(strat.new_tree(&mut runner).unwrap().current());
        }
        let mut out = String::new();
        for v in &docs {
            let yaml = to_yaml_string(v);
            out.push_str(&serde_json::to_string(&(yaml, serde_json::to_string(v).unwrap())).unwrap());
            out.push('\n');
        }
        let dir = tempfile::tempdir().unwrap();
        let path = match std::env::var("YAMLEMIT_DUMP") {
            Ok(p) => std::path::PathBuf::from(p),
            Err(_) => dir.path().join("corpus.jsonl"),
        };
        std::fs::write(&path, out).unwrap();
        // Python compares numbers by value (1 == 1.0), as JSON means them.
        let check = r#"
import json, sys, yaml
bad = 0
for i, line in enumerate(open(sys.argv[1], encoding="utf-8")):
    text, expected = json.loads(line)
    try:
        got = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except Exception as e:
        got = "error: %s" % e
    if got != json.loads(expected):
        bad += 1
        if bad <= 5:
            print("document %d reads back differently:\n%s\nexpected %s\ngot %r" % (i, text, expected, got))
print("%d of %d documents differ" % (bad, i + 1))
sys.exit(1 if bad else 0)
"#;
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(check)
            .arg(&path)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{report}{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            report.contains(&format!("0 of {} documents differ", docs.len())),
            "{report}"
        );
    }
}
