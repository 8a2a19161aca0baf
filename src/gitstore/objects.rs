//! Git objects built in memory: blob and tree ids are computed here (SHA-1, in parallel
//! where it pays), and only objects the repository lacks are written, all at once, as one
//! pack. This is what makes a 10,000-cluster commit take seconds, and it is atomic: the
//! branch moves only after every object is stored.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write;
use std::sync::Arc;

use flate2::{Compress, Compression, FlushCompress, Status};
use git2::{ObjectType, Oid};
use rayon::prelude::*;
use sha1::{Digest, Sha1};

use super::deflate;
use super::present::Present;
use crate::error::{Error, Result};

pub const MODE_BLOB: u32 = 0o100644;
pub const MODE_TREE: u32 = 0o040000;

/// The id git gives an object of this kind and content.
pub fn hash_object(kind: ObjectType, data: &[u8]) -> Oid {
    let mut h = Sha1::new();
    h.update(kind.str().as_bytes());
    h.update(b" ");
    h.update(data.len().to_string().as_bytes());
    h.update(b"\0");
    h.update(data);
    Oid::from_bytes(&h.finalize()).expect("SHA-1 is 20 bytes")
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub mode: u32,
    pub oid: Oid,
}

impl Entry {
    pub fn blob(name: impl Into<String>, oid: Oid) -> Entry {
        Entry {
            name: name.into(),
            mode: MODE_BLOB,
            oid,
        }
    }
    pub fn tree(name: impl Into<String>, oid: Oid) -> Entry {
        Entry {
            name: name.into(),
            mode: MODE_TREE,
            oid,
        }
    }
    pub fn is_tree(&self) -> bool {
        self.mode == MODE_TREE
    }
}

/// Git's order: by name, with trees compared as if their name ended in `/`.
fn git_order(a: &Entry, b: &Entry) -> Ordering {
    let ak = a
        .name
        .as_bytes()
        .iter()
        .chain(if a.is_tree() { &b"/"[..] } else { &[] });
    let bk = b
        .name
        .as_bytes()
        .iter()
        .chain(if b.is_tree() { &b"/"[..] } else { &[] });
    ak.cmp(bk)
}

/// Serialize a tree (entries in any order).
pub fn tree_bytes(mut entries: Vec<Entry>) -> Vec<u8> {
    entries.sort_by(git_order);
    let mut out = Vec::with_capacity(entries.len() * 48);
    for e in entries {
        write!(out, "{:o} {}\0", e.mode, e.name).expect("writing to a Vec");
        out.extend_from_slice(e.oid.as_bytes());
    }
    out
}

/// The entries of a serialized tree (as [`tree_bytes`] writes it).
fn parse_tree(mut data: &[u8]) -> Option<Vec<Entry>> {
    let mut entries = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|b| *b == b' ')?;
        let mode = u32::from_str_radix(std::str::from_utf8(&data[..space]).ok()?, 8).ok()?;
        let nul = data.iter().position(|b| *b == 0)?;
        let name = String::from_utf8(data[space + 1..nul].to_vec()).ok()?;
        let oid = Oid::from_bytes(data.get(nul + 1..nul + 21)?).ok()?;
        entries.push(Entry { name, mode, oid });
        data = &data[nul + 21..];
    }
    Some(entries)
}

/// Files the object set shares with their owner instead of copying them: a rendered
/// cluster's files (90 MB at 10,000 clusters by their sizes, all of it fresh memory for the
/// kernel to zero, and copied for nothing: the renderer keeps them anyway).
pub trait SharedFiles: Send + Sync {
    /// The bytes of file number `i`; the owner says how it numbers its files.
    fn file(&self, i: usize) -> &[u8];
}

/// The content of an object of the set.
pub enum Data {
    Owned(Vec<u8>),
    Shared(Arc<dyn SharedFiles>, usize),
}

impl std::ops::Deref for Data {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Data::Owned(bytes) => bytes,
            Data::Shared(files, i) => files.file(*i),
        }
    }
}

impl From<Vec<u8>> for Data {
    fn from(bytes: Vec<u8>) -> Data {
        Data::Owned(bytes)
    }
}

/// An object of the set: its kind, its content and its id.
type Object = (ObjectType, Data, Oid);

/// Objects to store, deduplicated by id.
#[derive(Default)]
pub struct ObjectSet {
    objects: Vec<Object>,
    index: HashMap<Oid, usize, BuildHasherDefault<OidHasher>>,
}

/// An object id is already a uniform hash: its first eight bytes are the map's hash
/// (SipHash over 300,000 ids was a tenth of building the trees).
#[derive(Default)]
struct OidHasher(u64);

impl Hasher for OidHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut first = [0u8; 8];
            first[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(first);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl ObjectSet {
    pub fn add(&mut self, kind: ObjectType, data: Vec<u8>) -> Oid {
        let oid = hash_object(kind, &data);
        self.add_hashed(kind, Data::Owned(data), oid);
        oid
    }

    /// Add an object whose id is already known (hashed in parallel elsewhere).
    pub fn add_hashed(&mut self, kind: ObjectType, data: Data, oid: Oid) {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.index.entry(oid) {
            slot.insert(self.objects.len());
            self.objects.push((kind, data, oid));
        }
    }

    /// Room for `more` objects: a full render of 100,000 clusters adds 3.2 million, and
    /// growing the set by doubling would copy it about 22 times.
    pub fn reserve(&mut self, more: usize) {
        self.objects.reserve(more);
        self.index.reserve(more);
    }

    pub fn add_tree(&mut self, entries: Vec<Entry>) -> Oid {
        self.add(ObjectType::Tree, tree_bytes(entries))
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Content of an object of this set, if it is here.
    pub fn get(&self, oid: Oid) -> Option<&[u8]> {
        self.index.get(&oid).map(|&i| &*self.objects[i].1)
    }

    /// The entries of a tree of this set (not yet stored), if it is here.
    pub fn tree_entries(&self, oid: Oid) -> Option<Vec<Entry>> {
        let &i = self.index.get(&oid)?;
        let (kind, data, _) = &self.objects[i];
        (*kind == ObjectType::Tree).then(|| parse_tree(data)).flatten()
    }

    /// Store the objects the repository does not have yet, as one pack. Returns how many
    /// were written. The last guard of `redact`: an object that holds a credential this
    /// process knows is refused, and nothing is written. The set stays readable: the work
    /// tree is written from it.
    pub fn write(&self, repo: &git2::Repository) -> Result<usize> {
        let started = std::time::Instant::now();
        if let Some((kind, _, oid)) = self
            .objects
            .par_iter()
            .find_first(|(_, data, _)| crate::redact::holds_secret(data))
        {
            return Err(Error::msg(format!(
                "internal error: a credential reached the {} {oid} about to be written to the deploy repo; nothing was written (please report this)",
                kind.str()
            )));
        }
        let present = Present::new(repo, self.objects.len())?;
        let missing: Vec<_> = self
            .objects
            .iter()
            .filter(|(_, _, oid)| !present.contains(*oid))
            .collect();
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "objects: checked");
        if missing.is_empty() {
            return Ok(0);
        }
        drop(present);
        store_pack(&repo.commondir().join("objects").join("pack"), &missing)?;
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "objects: packed");
        // libgit2 finds the new pack on its next lookup only after a rescan.
        repo.odb()?.refresh()?;
        Ok(missing.len())
    }
}

/// Objects compressed per batch. The pack is written one batch at a time while the next
/// is compressed: only two batches of compressed bytes are held (the whole pack held in
/// memory was 95 MB at 10,000 clusters and 0.9 GB at 100,000, all of it fresh memory the
/// kernel had to zero), and writing and hashing the pack overlap with compressing it.
const BATCH: usize = 16_384;

/// Objects one worker compresses into one buffer: few allocations, and enough work per
/// task for rayon to spread a batch over its workers.
const RUN: usize = 512;

/// A run of objects compressed into one buffer: per object its id, its packed size
/// (header and zlib stream) and their CRC-32, which the index keeps.
struct Compressed {
    bytes: Vec<u8>,
    objects: Vec<(Oid, u32, u32)>,
}

/// Compress objects for a version 2 pack (whole objects, no deltas), in parallel runs.
/// Most objects are a few hundred bytes of YAML: `deflate::compress_small` takes those;
/// larger or incompressible ones go to zlib-rs at level 1, one compressor per worker.
fn compress_batch(objects: &[&Object]) -> Result<Vec<Compressed>> {
    objects
        .par_chunks(RUN)
        .map_init(
            || (Compress::new(Compression::fast(), true), Vec::new()),
            |(z, table), run| {
                let size: usize = run.iter().map(|(_, data, _)| data.len()).sum();
                let mut out = Vec::with_capacity(size / 2 + 64 * run.len());
                let mut objects = Vec::with_capacity(run.len());
                for &&(kind, ref data, oid) in run {
                    let start = out.len();
                    let type_code: u8 = match kind {
                        ObjectType::Commit => 1,
                        ObjectType::Tree => 2,
                        _ => 3,
                    };
                    let mut size = data.len();
                    let mut byte = (type_code << 4) | (size & 0x0f) as u8;
                    size >>= 4;
                    while size > 0 {
                        out.push(byte | 0x80);
                        byte = (size & 0x7f) as u8;
                        size >>= 7;
                    }
                    out.push(byte);
                    if deflate::compress_small(data, table, &mut out).is_none() {
                        z.reset();
                        loop {
                            let consumed = z.total_in() as usize;
                            if out.capacity() - out.len() < 64 {
                                out.reserve(out.capacity().max(256));
                            }
                            match z.compress_vec(&data[consumed..], &mut out, FlushCompress::Finish)? {
                                Status::StreamEnd => break,
                                Status::Ok | Status::BufError => {}
                            }
                        }
                    }
                    let packed = &out[start..];
                    // Objects are at most a few MiB (`MAX_OBJECT_BYTES`), far below 4 GiB.
                    debug_assert!(u32::try_from(packed.len()).is_ok());
                    objects.push((oid, packed.len() as u32, crc32fast::hash(packed)));
                }
                Ok(Compressed { bytes: out, objects })
            },
        )
        .collect::<std::result::Result<_, flate2::CompressError>>()
        .map_err(|e| Error::msg(format!("cannot compress objects: {e}")))
}

/// The version 2 index of a pack (git's `pack-format.txt`): fan-out table, sorted ids,
/// CRC-32s, offsets (large ones in a second table), the pack's checksum, its own.
fn pack_index(mut entries: Vec<PackEntry>, pack_checksum: &[u8]) -> Vec<u8> {
    entries.par_sort_unstable_by_key(|e| e.0);
    let mut idx = Vec::with_capacity(8 + 1024 + entries.len() * 28 + 40);
    idx.extend_from_slice(b"\xfftOc");
    idx.extend_from_slice(&2u32.to_be_bytes());
    let mut fanout = [0u32; 256];
    for (oid, _, _) in &entries {
        fanout[oid.as_bytes()[0] as usize] += 1;
    }
    let mut running = 0;
    for count in fanout {
        running += count;
        idx.extend_from_slice(&running.to_be_bytes());
    }
    for (oid, _, _) in &entries {
        idx.extend_from_slice(oid.as_bytes());
    }
    for (_, _, crc) in &entries {
        idx.extend_from_slice(&crc.to_be_bytes());
    }
    let mut large = Vec::new();
    for (_, offset, _) in &entries {
        if *offset < 0x8000_0000 {
            idx.extend_from_slice(&(*offset as u32).to_be_bytes());
        } else {
            idx.extend_from_slice(&(0x8000_0000 | large.len() as u32).to_be_bytes());
            large.push(*offset);
        }
    }
    for offset in large {
        idx.extend_from_slice(&offset.to_be_bytes());
    }
    idx.extend_from_slice(pack_checksum);
    let checksum = Sha1::digest(&idx);
    idx.extend_from_slice(&checksum);
    idx
}

/// Write `objects` as a pack and its index into `objects/pack/` the way git does: the pack
/// streamed to a temporary file (hashed on the way), then the index, then the pack renamed
/// into place before its index, as readers find packs by their index. (libgit2's pack
/// writer would inflate and hash every object again to index it: 1.5 s of a
/// 10,000-cluster render.)
fn store_pack(dir: &std::path::Path, objects: &[&Object]) -> Result<()> {
    let io = |e: std::io::Error| Error::msg(format!("cannot write pack to the deploy repo: {e}"));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp_pack = tempfile::Builder::new()
        .prefix("tmp_pack_")
        .tempfile_in(dir)
        .map_err(io)?;
    let mut pack = PackWriter {
        out: std::io::BufWriter::with_capacity(1 << 20, tmp_pack.as_file()),
        sha: Sha1::new(),
        offset: 0,
        entries: Vec::with_capacity(objects.len()),
    };
    let header = [&b"PACK"[..], &2u32.to_be_bytes(), &(objects.len() as u32).to_be_bytes()].concat();
    pack.append(&header).map_err(io)?;
    let mut batches = objects.chunks(BATCH);
    let mut compressed = batches.next().map(compress_batch).transpose()?;
    while let Some(runs) = compressed {
        let next = batches.next();
        let (written, next) = rayon::join(|| pack.append_runs(runs), || next.map(compress_batch).transpose());
        written.map_err(io)?;
        compressed = next?;
    }
    let (checksum, entries) = pack.finish().map_err(io)?;
    let name = hex::encode(checksum);
    let final_pack = dir.join(format!("pack-{name}.pack"));
    let final_idx = dir.join(format!("pack-{name}.idx"));
    if final_idx.exists() {
        return Ok(()); // the same objects, already stored
    }
    let tmp_idx = tempfile::Builder::new()
        .prefix("tmp_idx_")
        .tempfile_in(dir)
        .map_err(io)?;
    std::fs::write(tmp_idx.path(), pack_index(entries, &checksum)).map_err(io)?;
    read_only(tmp_pack.path()).map_err(io)?;
    read_only(tmp_idx.path()).map_err(io)?;
    tmp_pack.persist(&final_pack).map_err(|e| io(e.error))?;
    tmp_idx.persist(&final_idx).map_err(|e| io(e.error))?;
    Ok(())
}

/// An object's entry in a pack index: its id, its offset in the pack, its CRC-32.
type PackEntry = (Oid, u64, u32);

/// A pack being written: its bytes so far hashed, and each object's index entry.
struct PackWriter<W> {
    out: W,
    sha: Sha1,
    offset: u64,
    entries: Vec<PackEntry>,
}

impl<W: Write> PackWriter<W> {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.sha.update(bytes);
        self.offset += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    fn append_runs(&mut self, runs: Vec<Compressed>) -> std::io::Result<()> {
        for run in runs {
            let mut offset = self.offset;
            for (oid, size, crc) in run.objects {
                self.entries.push((oid, offset, crc));
                offset += u64::from(size);
            }
            self.append(&run.bytes)?;
        }
        Ok(())
    }

    /// The pack's trailing checksum written: it and the index entries.
    fn finish(mut self) -> std::io::Result<([u8; 20], Vec<PackEntry>)> {
        let checksum: [u8; 20] = self.sha.finalize().into();
        self.out.write_all(&checksum)?;
        self.out.flush()?;
        Ok((checksum, self.entries))
    }
}

/// Packs are read-only and readable by all, as git leaves them (0444).
fn read_only(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_git() {
        let repo_dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(repo_dir.path()).unwrap();
        let data = b"hello\n".to_vec();
        assert_eq!(hash_object(ObjectType::Blob, &data), repo.blob(&data).unwrap());

        let mut set = ObjectSet::default();
        let blob = set.add(ObjectType::Blob, b"x: 1\n".to_vec());
        let sub = set.add_tree(vec![Entry::blob("b.yaml", blob)]);
        // `a.b` sorts before `a` + `/` as a tree: git's order, checked by git itself.
        let root = set.add_tree(vec![
            Entry::tree("a", sub),
            Entry::blob("a.b", blob),
            Entry::blob("a-c", blob),
        ]);
        assert_eq!(set.write(&repo).unwrap(), 3);
        // The pack and index starmap wrote itself, checked by git.
        let packs: Vec<_> = std::fs::read_dir(repo_dir.path().join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "idx"))
            .collect();
        assert_eq!(packs.len(), 1);
        let verify = std::process::Command::new("git")
            .arg("verify-pack")
            .arg("-v")
            .arg(&packs[0])
            .output()
            .unwrap();
        assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
        assert!(String::from_utf8_lossy(&verify.stdout).contains(&root.to_string()));
        let fsck = std::process::Command::new("git")
            .args(["fsck", "--full", "--strict"])
            .current_dir(repo_dir.path())
            .output()
            .unwrap();
        assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stderr));
        let tree = repo.find_tree(root).unwrap();
        let names: Vec<_> = tree.iter().map(|e| e.name().unwrap().to_string()).collect();
        assert_eq!(names, ["a-c", "a.b", "a"]);
        let mut builder = repo.treebuilder(None).unwrap();
        builder.insert("a", sub, 0o040000).unwrap();
        builder.insert("a.b", blob, 0o100644).unwrap();
        builder.insert("a-c", blob, 0o100644).unwrap();
        assert_eq!(builder.write().unwrap(), root, "same id as libgit2's own tree builder");
        let mut set = ObjectSet::default();
        let entries = vec![
            Entry::blob("a-c", blob),
            Entry::blob("a.b", blob),
            Entry::tree("a", sub),
        ];
        let id = set.add_tree(entries.clone());
        assert_eq!(set.tree_entries(id), Some(entries), "a tree of the set reads back");
        let mut again = ObjectSet::default();
        again.add(ObjectType::Blob, b"x: 1\n".to_vec());
        assert_eq!(
            again.write(&repo).unwrap(),
            0,
            "objects the repo has are not written again"
        );
    }

    /// A pack is compressed and written in batches: more than two batches still make one
    /// pack that git reads whole, every object in it once.
    #[test]
    fn a_pack_of_several_batches_is_one_pack_git_reads() {
        let repo_dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(repo_dir.path()).unwrap();
        let mut set = ObjectSet::default();
        let count = 2 * BATCH + RUN + 3;
        let ids: Vec<Oid> = (0..count)
            .map(|i| set.add(ObjectType::Blob, format!("n: {i}\n").repeat(1 + i % 7).into_bytes()))
            .collect();
        // Content shared with an owner, as a render's files are.
        struct Two;
        impl SharedFiles for Two {
            fn file(&self, i: usize) -> &[u8] {
                [&b"shared: 0\n"[..], b"shared: 1\n"][i]
            }
        }
        let two: Arc<dyn SharedFiles> = Arc::new(Two);
        for i in 0..2 {
            let data = Data::Shared(Arc::clone(&two), i);
            let oid = hash_object(ObjectType::Blob, &data);
            set.add_hashed(ObjectType::Blob, data, oid);
        }
        assert_eq!(set.write(&repo).unwrap(), count + 2);
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(repo_dir.path())
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        git(&["fsck", "--full", "--strict"]);
        let listed = git(&["cat-file", "--batch-all-objects", "--batch-check=%(objectname)"]);
        assert_eq!(listed.lines().count(), count + 2, "each object once");
        assert!(listed.contains(&ids[count - 1].to_string()));
        assert_eq!(
            git(&["count-objects", "-v"]).lines().find(|l| l.starts_with("packs:")),
            Some("packs: 1")
        );
        let last = repo.find_blob(ids[count - 1]).unwrap();
        assert_eq!(
            last.content(),
            format!("n: {}\n", count - 1).repeat(1 + (count - 1) % 7).as_bytes()
        );
        let shared = repo.find_blob(hash_object(ObjectType::Blob, b"shared: 1\n")).unwrap();
        assert_eq!(shared.content(), b"shared: 1\n");
    }

    #[test]
    fn index_offsets_past_two_gib_go_to_the_large_table() {
        let a = Oid::from_str("01").unwrap();
        let b = Oid::from_str("02").unwrap();
        let idx = pack_index(vec![(b, 5 << 30, 7), (a, 12, 9)], &[0u8; 20]);
        let body = &idx[8 + 1024..];
        assert_eq!(&body[..20], a.as_bytes(), "ids sorted");
        let crcs = &body[40..48];
        assert_eq!(crcs, [0, 0, 0, 9, 0, 0, 0, 7]);
        let offsets = &body[48..56];
        assert_eq!(offsets, [0, 0, 0, 12, 0x80, 0, 0, 0]);
        assert_eq!(&body[56..64], (5u64 << 30).to_be_bytes());
        assert_eq!(idx.len(), 8 + 1024 + 64 + 20 + 20);
    }
}
