//! Reading a source: a directory, or a git repository (local or remote, at a ref) read
//! straight from its object database. Either way the result is the same: a sorted list of
//! the YAML/JSON files under the root, as text, with paths relative to the root.

pub mod build_cache;
mod builders;
mod load;
pub mod tools;
mod tree;

pub use load::{Inventory, load_model};
pub use tree::{SourceFile, SourceTree};
