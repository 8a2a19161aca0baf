//! Status from the clusters back into git (api.md section 5): [`collect`] reads the live
//! objects of each cluster (through its kubeconfig context, or an Argo CD hub), [`store`]
//! writes one status commit per round. The files' formats are `formats::status`; health rules
//! are `health`; summaries are `summary`.

pub mod collect;
pub mod store;
