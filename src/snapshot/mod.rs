//! Reading what the deploy repo recorded at a commit, out of git: the render's bookkeeping
//! (digests, slot ids, rollout states, the files of held placements) and the status side
//! (indexes, status files, which deploy commit a cluster runs). The formats are `formats`';
//! this module only finds the files and hands them over.

mod render;
mod status;

pub use render::{RenderBase, TipSlots, read_states};
pub use status::{DeployState, ObjectReader, StatusBranches, status_root};
