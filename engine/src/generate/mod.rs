//! Generation on DINO-SAE latents, end to end (the `train-dit`, `sample` and `interpolate` commands):
//!
//! - **Latent cache** ([`cache_latents`]): every photo of a folder gives `crops_per_photo` square crops
//!   (crop 0 = the centre view, the rest random squares with scale jitter and flips, drawn from a
//!   generator seeded by `(seed, photo index)`), encoded once with the SAE. Class = index of the photo
//!   in the sorted folder. Stored as safetensors shards (`latents` `[n, C, h, w]`, `labels` `[n]`) under
//!   `RUN/latents/` plus `index.json` (classes, grid, C, crop settings, fingerprints of the SAE file and
//!   of the photos). A rerun with the same SAE, photos and crop settings reuses the cache.
//! - **Training** ([`crate::train::dit::train_dit_run`], under `train/` with the other trainers): a class-conditional [`Dit`](crate::model::dit::Dit) (one class per photo or per class folder, plus the null
//!   class for CFG) trained with `train_dit` on the cached latents projected to radius `sqrt(C)`, with
//!   spherical RFM (default) or Euclidean linear FM (baseline). The run is cut into segments of
//!   `checkpoint_every` steps; after each segment the EMA is updated and a checkpoint is written
//!   atomically (`.ckpt-N.tmp/` renamed to `ckpt-N/`, then `latest`). A killed run resumes from `latest`
//!   and, because every segment is seeded by `(seed, first step)`, ends with exactly the weights of an
//!   uninterrupted run. Limitation: `train_dit` owns its AdamW state, so the optimiser moments restart
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
mod inpaint;
mod interpolate;
mod quality;
mod sample;

pub use crate::data::{fingerprint_file, fingerprint_photos};
use crate::error::{EngineError, Result};
use crate::tensor_file::{host_vec as host, read_json, write_json};

pub use bundle::{
    DIT_KIND, DitBundle, DitMeta, ObjectiveKind, dit_from_state_dict, dit_param_names, dit_state_dict, load_dit,
    save_dit,
};
pub use cache::{
    CacheSpec, LatentIndex, LatentSet, ShardInfo, cache_latents, mean_patch_norm, photo_crops, random_crop,
};
pub use inpaint::{InpaintSpec, Inpainted, Inpainting, inpaint};
pub use interpolate::{Endpoint, InterpResult, InterpSpec, endpoint_latents, interpolate, pair_images, slerp_frames};
pub use quality::{ClassRow, SampleEvalSpec, evaluate_samples, samples_markdown};
pub use sample::{
    SampleResult, SampleSpec, check_sae, class_label, decode_images, parse_sampler, resolve_class, sample_grid,
    sample_latents, sphere_config, tile,
};

// ---------------------------------------------------------------------------------------------------
// Small helpers

pub(crate) fn cfg_err(m: impl Into<String>) -> EngineError {
    EngineError::Config(m.into())
}

/// The class-mean target direction (length C, not normalised): `count` latents of `class` sampled by the generator
/// (10 steps, seed 7), reduced by [`crate::steer::mean_direction`]. The studio's "Target: class mean" and
/// `dino-sae steer --towards class:NAME` both call this.
pub fn class_mean_direction(b: &DitBundle, class: usize, count: usize) -> Result<Vec<f32>> {
    let spec = SampleSpec { class, count: count.max(1), steps: 10, seed: 7, ..Default::default() };
    crate::steer::mean_direction(sample_latents(b, &spec)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor_file::RawTensor;

    /// The class-mean direction is the float64 mean of the unit directions of the generator's samples (10 steps,
    /// seed 7) over every sample and patch; the default model's generator, 2 samples.
    #[test]
    fn class_mean_is_the_mean_unit_direction_of_the_samples() {
        let Some(dir) = crate::dirs::default_dit_dir() else {
            eprintln!("skipped: no default generator");
            return;
        };
        let b = crate::generate::load_dit(&dir, &crate::cpu()).expect("default generator");
        let got = class_mean_direction(&b, 1, 2).expect("class mean");
        let spec = crate::generate::SampleSpec { class: 1, count: 2, steps: 10, seed: 7, ..Default::default() };
        let z = RawTensor::from_tensor(crate::generate::sample_latents(&b, &spec).expect("sample")).expect("raw");
        let (n, c, hw) = (z.shape[0], z.shape[1], z.shape[2] * z.shape[3]);
        let mut want = vec![0f64; c];
        for s in 0..n {
            for p in 0..hw {
                let v: Vec<f64> = (0..c).map(|k| z.data[(s * c + k) * hw + p] as f64).collect();
                let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                for (m, x) in want.iter_mut().zip(&v) {
                    *m += x / norm / (n * hw) as f64;
                }
            }
        }
        let err = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
        assert_eq!(got.len(), c);
        assert!(err < 1e-5, "max error {err:.2e}");
    }
}
