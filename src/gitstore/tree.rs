//! Replacing paths inside a base tree: the mechanism by which render and status collection
//! each write only the paths they own and keep everything else of the tip.

use std::collections::BTreeMap;

use git2::{Oid, Repository};

use super::objects::{Entry, MODE_TREE, ObjectSet};
use crate::error::Result;

/// `path` (`a/b/c`) set to `entry` (a blob or tree), or removed when `None`. A path and a
/// path below it are never both changed in one overlay (the base of the deeper change
/// must be in the repository).
pub struct Change {
    pub path: String,
    pub entry: Option<(u32, Oid)>,
}

/// A change split into path components.
type SplitChange<'a> = (Vec<&'a str>, Option<(u32, Oid)>);

/// A new tree: `base` with `changes` applied. Trees left empty disappear (git has no
/// empty directories). Returns `None` for an empty root.
pub fn overlay(
    repo: &Repository,
    objects: &mut ObjectSet,
    base: Option<Oid>,
    changes: &[Change],
) -> Result<Option<Oid>> {
    let split: Vec<SplitChange<'_>> = changes.iter().map(|c| (c.path.split('/').collect(), c.entry)).collect();
    overlay_at(repo, objects, base, &split)
}

fn overlay_at(
    repo: &Repository,
    objects: &mut ObjectSet,
    base: Option<Oid>,
    changes: &[SplitChange<'_>],
) -> Result<Option<Oid>> {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    // A base built earlier in this set (not stored yet) is read from the set.
    if let Some(base) = base
        && let Some(stored) = objects.tree_entries(base)
    {
        entries.extend(stored.into_iter().map(|e| (e.name.clone(), e)));
    } else if let Some(base) = base {
        for e in repo.find_tree(base)?.iter() {
            let name = String::from_utf8_lossy(e.name_bytes()).into_owned();
            entries.insert(
                name.clone(),
                Entry {
                    name,
                    mode: e.filemode() as u32,
                    oid: e.id(),
                },
            );
        }
    }
    // Changes grouped by their first component, in order.
    let mut groups: BTreeMap<&str, Vec<SplitChange<'_>>> = BTreeMap::new();
    for (path, entry) in changes {
        groups.entry(path[0]).or_default().push((path[1..].to_vec(), *entry));
    }
    for (name, group) in groups {
        let whole = group.iter().rev().find(|(rest, _)| rest.is_empty());
        let deeper: Vec<_> = group.iter().filter(|(rest, _)| !rest.is_empty()).cloned().collect();
        let mut current = entries.get(name).cloned();
        if let Some((_, entry)) = whole {
            current = entry.map(|(mode, oid)| Entry {
                name: name.to_string(),
                mode,
                oid,
            });
        }
        debug_assert!(whole.is_none() || deeper.is_empty(), "overlapping changes at {name}");
        if !deeper.is_empty() {
            let sub_base = current.as_ref().filter(|e| e.mode == MODE_TREE).map(|e| e.oid);
            let sub = overlay_at(repo, objects, sub_base, &deeper)?;
            current = sub.map(|oid| Entry::tree(name, oid));
        }
        match current {
            Some(e) => {
                entries.insert(name.to_string(), e);
            }
            None => {
                entries.remove(name);
            }
        }
    }
    if entries.is_empty() {
        return Ok(None);
    }
    Ok(Some(objects.add_tree(entries.into_values().collect())))
}

/// Every blob under `tree`, as (path relative to it, id).
pub fn list_blobs(repo: &Repository, tree: Oid) -> Result<Vec<(String, Oid)>> {
    let tree = repo.find_tree(tree)?;
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            out.push((format!("{dir}{}", e.name().unwrap_or("")), e.id()));
        }
        git2::TreeWalkResult::Ok
    })?;
    Ok(out)
}

/// The id at `path` inside `tree`, if any.
pub fn entry_at(repo: &Repository, tree: Option<Oid>, path: &str) -> Option<Oid> {
    let tree = repo.find_tree(tree?).ok()?;
    tree.get_path(std::path::Path::new(path)).ok().map(|e| e.id())
}

/// The entries directly under `path` inside `tree` (name → id).
pub fn entries_at(repo: &Repository, tree: Option<Oid>, path: &str) -> BTreeMap<String, Oid> {
    let Some(oid) = entry_at(repo, tree, path) else {
        return BTreeMap::new();
    };
    let Ok(tree) = repo.find_tree(oid) else {
        return BTreeMap::new();
    };
    tree.iter()
        .map(|e| (String::from_utf8_lossy(e.name_bytes()).into_owned(), e.id()))
        .collect()
}
