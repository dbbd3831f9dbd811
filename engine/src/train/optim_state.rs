//! The optimiser's state (AdamW's moments and step counts) across a resume.
//!
//! burn keys the per-parameter optimiser state by `ParamId`, and a model loaded from a checkpoint gets fresh ids.
//! A checkpoint therefore stores the state (`{tag}.bpk`, burn's optimiser record in its burnpack format) next to
//! the id each *named* parameter had when it was written (`{tag}.ids.json`, internal name -> id); a resume gives
//! the freshly loaded parameters those ids back, by name, before loading the state. Without this, every resume
//! restarted AdamW from zero moments (a jolt of ~lr per weight on the first step after the restart).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::{ModuleOptimizer, OptimizerRecord};
use burn::tensor::Tensor;

use crate::error::{EngineError, Result};
use crate::weights::ParamNames;

/// Tag of the autoencoder's optimiser files in a checkpoint folder (`optim.bpk`, `optim.ids.json`).
pub const MODEL: &str = "optim";
/// Tag of the discriminator's (stage 2).
pub const DISC: &str = "optim_disc";

fn files(dir: &Path, tag: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{tag}.bpk")), dir.join(format!("{tag}.ids.json")))
}

/// Write the optimiser state of a module whose parameters are named by `names` into `dir` as `tag`.
pub fn save(dir: &Path, tag: &str, optim: &ModuleOptimizer, names: &ParamNames) -> Result<()> {
    let (path, ids_path) = files(dir, tag);
    let ids: BTreeMap<&str, u64> = names.iter().map(|(id, (k, _))| (k.as_str(), id.val())).collect();
    let json = serde_json::to_vec(&ids).map_err(|e| EngineError::Checkpoint(format!("parameter ids: {e}")))?;
    crate::tensor_file::atomic_write(&ids_path, &json)?;
    optim.to_record().save(&path).map_err(|e| EngineError::Checkpoint(format!("{}: {e}", path.display())))
}

/// Whether `dir` holds a saved optimiser state `tag` (checkpoints written before this file existed do not) that
/// this process can load. burn materialises a loaded state on its *default* device (wgpu in this build, Mesa's
/// lavapipe without a GPU; `BURN_DEVICE` overrides it) before moving it next to the parameters at the next step;
/// with no wgpu adapter at all that would panic, so the moments restart instead, said on stderr.
pub fn restorable(dir: &Path, tag: &str) -> bool {
    let (a, b) = files(dir, tag);
    if !(a.is_file() && b.is_file()) {
        return false;
    }
    let ok = std::env::var_os("BURN_DEVICE").is_some() || !crate::backend::adapters().is_empty();
    if !ok {
        eprintln!(
            "{}: no wgpu adapter for burn's default device; the optimiser restarts (set BURN_DEVICE=flex to load it)",
            a.display()
        );
    }
    ok
}

/// Give `model`'s parameters (named by `names`) the ids saved in `dir` as `tag` and load the saved state into
/// `optim`.
/// Returns the re-identified model, its names under the new ids, and the optimiser.
///
/// Errors when a saved name is not a parameter of `model` (the checkpoint belongs to another architecture).
pub fn restore<M: Module>(
    dir: &Path,
    tag: &str,
    model: M,
    names: &ParamNames,
    optim: ModuleOptimizer,
) -> Result<(M, ParamNames, ModuleOptimizer)> {
    let (path, ids_path) = files(dir, tag);
    let bytes = std::fs::read(&ids_path).map_err(|e| EngineError::io(&ids_path, e))?;
    let saved: BTreeMap<String, u64> =
        serde_json::from_slice(&bytes).map_err(|e| EngineError::Checkpoint(format!("{}: {e}", ids_path.display())))?;
    let by_name: BTreeMap<&str, ParamId> = names.iter().map(|(id, (k, _))| (k.as_str(), *id)).collect();
    if let Some(k) = saved.keys().find(|k| !by_name.contains_key(k.as_str())) {
        return Err(EngineError::Checkpoint(format!("{}: `{k}` is not a parameter of this model", ids_path.display())));
    }
    let remap: HashMap<ParamId, ParamId> =
        saved.iter().map(|(k, v)| (by_name[k.as_str()], ParamId::from(*v))).collect();
    let model = model.map(&mut Reid { remap: &remap });
    let names = names.iter().map(|(id, v)| (remap.get(id).copied().unwrap_or(*id), v.clone())).collect();
    let record =
        OptimizerRecord::load(&path).map_err(|e| EngineError::Checkpoint(format!("{}: {e}", path.display())))?;
    Ok((model, names, optim.load_record(record)))
}

/// Replaces parameter ids (value, gradient setting and everything else untouched).
struct Reid<'a> {
    remap: &'a HashMap<ParamId, ParamId>,
}

impl ModuleMapper for Reid<'_> {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if let Some(id) = self.remap.get(&param.id) {
            param.id = *id;
        }
        param
    }
}
