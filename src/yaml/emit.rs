//! placeholder until the emitter lands
use serde_json::Value;
pub fn write_document(out: &mut String, value: &Value) {
    out.push_str(&serde_json::to_string_pretty(value).unwrap());
    out.push('\n');
}
pub fn to_yaml_string(value: &Value) -> String {
    let mut s = String::new();
    write_document(&mut s, value);
    s
}
