//! YAML in and out: a span-keeping parser (every node knows its line), typed reading with
//! errors at the right line, and a deterministic emitter whose output every YAML 1.1 and
//! 1.2 reader reads the same way.

pub mod emit;
pub mod fast;
pub mod parse;
mod typed;

pub use emit::{to_yaml_string, write_document};
pub use parse::{Doc, LineTree, Step, parse_documents};
pub use typed::{from_doc, from_value_at};
