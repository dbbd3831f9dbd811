//! Generation on DINO-SAE latents, end to end (the `train-dit`, `sample` and `interpolate` commands):
//!
//! - **Latent cache** ([`cache_latents`]): every photo of a folder gives `crops_per_photo` square crops
//!   (crop 0 = the centre view, the rest random squares with scale jitter and flips, drawn from a
//!   generator seeded by `(seed, photo index)`), encoded once with the SAE. Class = index of the photo
//!   in the sorted folder. Stored as safetensors shards (`latents` `[n, C, h, w]`, `labels` `[n]`) under
//!   `RUN/latents/` plus `index.json` (classes, grid, C, crop settings, fingerprints of the SAE file and
//!   of the photos). A rerun with the same SAE, photos and crop settings reuses the cache.
//! - **Training** ([`train_dit_run`]): a class-conditional [`Dit`](crate::model::dit::Dit) (one class per photo plus the null
//!   class for CFG) trained with [`train_dit`] on the cached latents projected to radius `sqrt(C)`, with
//!   spherical RFM (default) or Euclidean linear FM (baseline). The run is cut into segments of
//!   `checkpoint_every` steps; after each segment the EMA is updated and a checkpoint is written
//!   atomically (`.ckpt-N.tmp/` renamed to `ckpt-N/`, then `latest`). A killed run resumes from `latest`
//!   and, because every segment is seeded by `(seed, first step)`, ends with exactly the weights of an
//!   uninterrupted run. Limitation: [`train_dit`] owns its AdamW state, so the optimiser moments restart
//!   at every segment (with a short learning-rate re-warm-up), as they do on resume in the SAE trainer.
//!   `loss.csv` (every step) and `loss.png` sit in the run folder; `final/` holds the EMA model
//!   (`model.safetensors` in the reference state-dict names, `config.json` = [`DitMeta`]).
//! - **Sampling** ([`sample_latents`], [`sample_grid`]): the spherical sampler (Euler + projection or the
//!   exponential map) for RFM models, RAE's Euler sampler for Euclidean ones; every patch ends at radius
//!   `s_vae` (default: the mean patch norm of the training latents) and is decoded by the SAE.
//! - **Sample quality** ([`evaluate_samples`]): per class, the Frechet distance on the teacher's patch features
//!   between decoded samples and crops of the class's photo, beside the autoencoder's floor and another class.
//! - **Interpolation** ([`slerp_frames`], [`interpolate`]): per patch, the direction follows the great
//!   circle ([`crate::sphere::slerp`]) and the magnitude is interpolated linearly; frame 0 and the last frame
//!   are exactly the two latents.

mod bundle;
mod cache;
mod interpolate;
mod quality;
mod sample;
mod train;

use std::path::Path;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::raw::atomic_write;
use crate::train::data::mix_seed;
pub use crate::train::data::{fingerprint_file, fingerprint_photos};

pub use bundle::{
    DIT_KIND, DitBundle, DitMeta, ObjectiveKind, dit_from_state_dict, dit_param_names, dit_state_dict, load_dit,
    save_dit,
};
pub use cache::{
    CacheSpec, LatentIndex, LatentSet, ShardInfo, cache_latents, mean_patch_norm, photo_crops, random_crop,
};
pub use interpolate::{Endpoint, InterpResult, InterpSpec, endpoint_latents, interpolate, pair_images, slerp_frames};
pub use quality::{ClassRow, SampleEvalSpec, evaluate_samples, samples_markdown};
pub use sample::{
    SampleResult, SampleSpec, check_sae, decode_images, parse_sampler, resolve_class, sample_grid, sample_latents,
    sphere_config, tile,
};
pub use train::{
    Batch, DitProgress, DitRunConfig, LATENTS_DIR, REWARM_STEPS, TrainDitConfig, TrainDitSummary, TrainEvent,
    TrainStep, ema_segment_decay, inference_model, read_loss_csv, train_dit, train_dit_run, write_loss_png,
};

// ---------------------------------------------------------------------------------------------------
// Small helpers

fn cfg_err(m: impl Into<String>) -> EngineError {
    EngineError::Config(m.into())
}

fn host(t: Tensor<4>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().map_err(|e| EngineError::Data(format!("{e:?}")))
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v).map_err(|e| cfg_err(e.to_string()))?;
    atomic_write(path, s.as_bytes())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let s = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    serde_json::from_str(&s).map_err(|e| cfg_err(format!("{}: {e}", path.display())))
}
