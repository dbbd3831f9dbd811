//! `train-preview`: distil a [`PreviewDecoder`] from a DINO-SAE's full decoder (issue 17).
//!
//! - **Decode-once cache** (`OUT/cache/`): every photo gives `crops_per_photo` square crops (the centre view, then
//!   random squares with scale jitter and flips, as the generator's latent cache draws them); each crop is encoded
//!   once, and its latent plus `noise_variants` perturbed copies (angular noise on each patch's sphere, up to
//!   `noise_max_deg`, plus a random magnitude scale or a projection to the mean radius, like steered and sampled
//!   latents) are decoded once by the full decoder. Stored: latents, the full decoder's outputs (targets), the crops
//!   themselves (in the decoder's output convention) and a clean flag. A rerun with the same SAE, photos and
//!   settings reuses the cache.
//! - **Loss**: `w_l1 * L1(pred, full) + w_mse * MSE(pred, full) + w_photo * L1(pred, photo)` (photo term on clean
//!   latents only) `+ w_perc * LPIPS-VGG-like(pred, full)` (optional; [`crate::lpips`]).
//! - **Run folder**: atomic checkpoints `ckpt-N/` (the preview folder + AdamW's state + `state.json`), `latest`,
//!   `loss.csv`, `loss.png`, `final/`. One random stream per step (seeded by `(seed, step)`) and the optimiser's
//!   moments restored on resume, so an interrupted run ends with the weights of an uninterrupted one.

mod cache;
mod eval;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{RunDir, Schedule, optim_state};
use crate::data::mix;
use crate::data::{PhotoSet, fingerprint_file, fingerprint_photos};
use crate::error::{EngineError, Result};
use crate::model::preview::{PreviewConfig, PreviewDecoder};
use crate::tensor_file::{Precision, atomic_write, write_json};

use cache::CacheKey;
pub use cache::{PreviewSet, build_cache};
pub use eval::{PreviewEvalRow, eval_markdown, evaluate_preview, evaluate_preview_perturbed};

/// `train-preview` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreviewTrainConfig {
    /// Architecture preset ([`PreviewConfig::preset`]).
    pub preset: String,
    pub steps: usize,
    pub batch: usize,
    /// Crop side in pixels (multiple of 16).
    pub crop: u32,
    pub crops_per_photo: usize,
    pub min_crop_frac: f32,
    /// Perturbed copies of each crop's latent (each decoded once by the full decoder).
    pub noise_variants: usize,
    /// Largest angular noise per patch, degrees.
    pub noise_max_deg: f32,
    pub lr: f64,
    pub warmup: usize,
    pub schedule: Schedule,
    pub weight_decay: f32,
    pub w_l1: f64,
    pub w_mse: f64,
    pub w_photo: f64,
    pub w_perc: f64,
    /// LPIPS-VGG-like weights folder (default [`crate::lpips::default_dir`]).
    pub perc_weights: Option<PathBuf>,
    pub checkpoint_every: usize,
    pub log_every: usize,
    pub seed: u64,
    /// Write `final/` in f16 (the shipped form).
    pub final_f16: bool,
}

impl Default for PreviewTrainConfig {
    fn default() -> Self {
        Self {
            preset: "small".into(),
            steps: 3000,
            batch: 16,
            crop: 128,
            crops_per_photo: 16,
            min_crop_frac: 0.3,
            noise_variants: 2,
            noise_max_deg: 30.0,
            lr: 2e-3,
            warmup: 50,
            schedule: Schedule::Cosine,
            weight_decay: 0.0,
            w_l1: 1.0,
            w_mse: 1.0,
            w_photo: 0.1,
            w_perc: 0.0,
            perc_weights: None,
            checkpoint_every: 200,
            log_every: 10,
            seed: 0,
            final_f16: false,
        }
    }
}

impl PreviewTrainConfig {
    /// Learning rate at `step` (1-based): linear warm-up, then constant or a half cosine to 0 at `steps`.
    pub fn lr_at(&self, step: usize) -> f64 {
        super::lr_schedule(self.lr, self.warmup, self.steps, self.schedule, step)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(EngineError::Config(format!("train-preview: {m}")));
        if self.steps == 0 || self.batch == 0 {
            return bad("steps and batch must be positive");
        }
        if self.crop == 0 || !self.crop.is_multiple_of(16) {
            return bad("the crop side must be a positive multiple of 16");
        }
        if self.crops_per_photo == 0 {
            return bad("crops per photo must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("the learning rate must be positive");
        }
        Ok(())
    }

    fn cache_key(&self) -> CacheKey {
        CacheKey {
            crop: self.crop,
            crops_per_photo: self.crops_per_photo,
            min_crop_frac: self.min_crop_frac,
            noise_variants: self.noise_variants,
            noise_max_deg: self.noise_max_deg,
            seed: self.seed,
        }
    }
}

fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// Perturb a latent `[C, hw]` (host) in place like a steer or a sample would: every patch rotated by an angle drawn
/// in [0, max_deg] towards a random tangent direction; then either a magnitude scale in [0.8, 1.2] for the whole
/// latent (1/2), every patch projected to the latent's mean radius (1/4), or neither.
pub fn perturb_latent(z: &mut [f32], c: usize, rng: &mut StdRng, max_deg: f32) {
    let hw = z.len() / c;
    let deg = rng.random_range(0.0..=max_deg.max(0.0));
    let mut radii = Vec::with_capacity(hw);
    for p in 0..hw {
        let v: Vec<f64> = (0..c).map(|k| z[k * hw + p] as f64).collect();
        let r = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        radii.push(r);
        if r < 1e-12 {
            continue;
        }
        let u: Vec<f64> = v.iter().map(|x| x / r).collect();
        let g: Vec<f64> = (0..c).map(|_| gaussian(rng) as f64).collect();
        let gu: f64 = g.iter().zip(&u).map(|(a, b)| a * b).sum();
        let t: Vec<f64> = g.iter().zip(&u).map(|(a, b)| a - gu * b).collect();
        let tn = t.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        // each patch its own angle in [0, deg]
        let a = (deg as f64 * rng.random::<f64>()).to_radians();
        for k in 0..c {
            z[k * hw + p] = (r * (a.cos() * u[k] + a.sin() * t[k] / tn)) as f32;
        }
    }
    let mode: f64 = rng.random();
    if mode < 0.5 {
        let s: f32 = rng.random_range(0.8..1.2);
        z.iter_mut().for_each(|x| *x *= s);
    } else if mode < 0.75 {
        let mean = radii.iter().sum::<f64>() / hw.max(1) as f64;
        for (p, &r) in radii.iter().enumerate() {
            if r > 1e-12 {
                let f = (mean / r) as f32;
                for k in 0..c {
                    z[k * hw + p] *= f;
                }
            }
        }
    }
}

/// One logged window (means over the steps since the previous row).
#[derive(Clone, Copy, Debug, Default)]
pub struct PreviewLogRow {
    pub step: usize,
    pub loss: f64,
    pub l1: f64,
    pub mse: f64,
    pub photo: f64,
    pub perc: f64,
    pub lr: f64,
    pub secs: f64,
}

/// What [`train_preview`] reports. Returning false from the callback on a `Log` writes a checkpoint and stops
/// with [`EngineError::Cancelled`].
#[derive(Clone, Copy, Debug)]
pub enum PreviewEvent {
    Caching { done: usize, total: usize },
    Cached { count: usize, reused: bool },
    Resumed { step: usize },
    Log(PreviewLogRow),
    Checkpoint { step: usize },
}

/// What a finished run returns.
#[derive(Clone, Debug)]
pub struct PreviewTrainSummary {
    pub start_step: usize,
    pub steps: usize,
    pub final_dir: PathBuf,
    pub cache_reused: bool,
    pub items: usize,
}

/// Columns of `loss.csv`.
pub const CSV_HEADER: &str = "step,loss,l1,mse,photo,perc,lr,secs";

fn step_rng(seed: u64, step: usize) -> StdRng {
    StdRng::seed_from_u64(mix(seed ^ 0x0070_7265_7669_6577, step as u64))
}

fn save_checkpoint(
    run: &RunDir,
    step: usize,
    model: &PreviewDecoder,
    optim: &burn::optim::ModuleOptimizer,
    cfg: &PreviewTrainConfig,
    sae_fp: &str,
) -> Result<()> {
    let tmp = run.checkpoint_tmp(step)?;
    model.save(&tmp, Precision::F32, step, sae_fp)?;
    optim_state::save(&tmp, optim_state::MODEL, optim, &model.names)?;
    write_json(&tmp.join("state.json"), &serde_json::json!({ "step": step, "train": cfg }))?;
    run.publish(&tmp, step)
}

/// Redraw `loss.png` from `loss.csv` (loss, L1 to the full decode, L1 to the photo).
pub fn write_curve(out: &Path) -> Result<()> {
    super::plot::curve_from_csv(out, &[("loss", 1), ("l1", 2), ("photo", 4)])
}

/// Distil a preview decoder of `sae_path` on the photos in `photos_dir` into the run folder `out` (resuming from
/// `out/latest`). See the module docs. Returns where `final/` was written.
pub fn train_preview(
    sae_path: &Path,
    photos_dir: &Path,
    out: &Path,
    cfg: &PreviewTrainConfig,
    on_event: &mut dyn FnMut(PreviewEvent) -> bool,
) -> Result<PreviewTrainSummary> {
    cfg.validate()?;
    let run = RunDir::open(out)?;
    let plain = crate::cpu();
    let ad = crate::cpu().autodiff();

    // 1. decode-once cache
    let sae = crate::checkpoint::load_sae(sae_path, &plain, false)?.model;
    let sae_fp = fingerprint_file(sae_path)?;
    let photos = PhotoSet::load(photos_dir, (cfg.crop * 4).max(256))?;
    let photos_fp = fingerprint_photos(photos_dir, &photos.names);
    let (set, reused) =
        build_cache(&sae, &sae_fp, &photos, &photos_fp, cfg, &out.join("cache"), &mut |done, total| {
            on_event(PreviewEvent::Caching { done, total });
        })?;
    let mut pcfg = PreviewConfig::preset(&cfg.preset, sae.cfg.decoder.latent_channels)?;
    pcfg.pixels = sae.cfg.pixels.clone();
    drop((sae, photos));
    on_event(PreviewEvent::Cached { count: set.len(), reused });
    if set.is_empty() {
        return Err(EngineError::Config("no training items".into()));
    }

    // 2. model + optimiser (resumed when `latest` exists)
    let resume = run.latest(&["model.safetensors", "config.json", "state.json"]);
    let mut optim = AdamWConfig::new().with_weight_decay(cfg.weight_decay).init();
    let (mut step, mut model) = match &resume {
        Some((s, p)) => {
            let (m, _) = PreviewDecoder::load(p, &ad)?;
            if m.cfg != pcfg {
                return Err(EngineError::Config(format!(
                    "{} holds a preview run of another architecture; use a new -o",
                    out.display()
                )));
            }
            on_event(PreviewEvent::Resumed { step: *s });
            (*s, m)
        }
        None => (0, PreviewDecoder::random(&pcfg, cfg.seed, &ad)?.0),
    };
    if let Some((_, p)) = resume.as_ref().filter(|(_, p)| optim_state::restorable(p, optim_state::MODEL)) {
        let old = model.names.clone();
        let (m, names, o) = optim_state::restore(p, optim_state::MODEL, model, &old, optim)?;
        model = m;
        model.names = names;
        optim = o;
    }
    let start_step = step;
    let perc_net = if cfg.w_perc > 0.0 {
        let dir = cfg.perc_weights.clone().unwrap_or_else(crate::lpips::default_dir);
        Some(crate::lpips::LpipsVgg::load(&dir, &ad)?.no_grad())
    } else {
        None
    };

    // 3. loss log: keep the rows up to the checkpoint we start from
    let csv_path = out.join("loss.csv");
    {
        let mut text = format!("{CSV_HEADER}\n");
        if step > 0 {
            let old = std::fs::read_to_string(&csv_path).unwrap_or_default();
            for line in old.lines().skip(1) {
                if line.split(',').next().and_then(|s| s.parse::<usize>().ok()).is_some_and(|s| s <= step) {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        atomic_write(&csv_path, text.as_bytes())?;
    }
    let mut csv =
        std::fs::OpenOptions::new().append(true).open(&csv_path).map_err(|e| EngineError::io(&csv_path, e))?;

    // 4. steps
    let t0 = Instant::now();
    let mut acc = PreviewLogRow::default();
    let mut n_acc = 0usize;
    let px_cfg = pcfg.pixels.clone();
    while step < cfg.steps {
        let s = step + 1;
        let mut rng = step_rng(cfg.seed, s);
        let idx: Vec<usize> = (0..cfg.batch).map(|_| rng.random_range(0..set.len())).collect();
        let [z, t, p, m] = set.batch(&idx, &ad);
        let pred = model.forward(z);
        let diff = pred.clone() - t.clone();
        let l1 = diff.clone().abs().mean();
        let mse = diff.square().mean();
        let n_clean = idx.iter().map(|&i| set.clean[i]).sum::<f32>();
        let photo = if n_clean > 0.0 {
            ((pred.clone() - p).abs() * m).mean().mul_scalar(cfg.batch as f64 / n_clean as f64)
        } else {
            Tensor::<1>::zeros([1], &ad)
        };
        let mut loss =
            l1.clone().mul_scalar(cfg.w_l1) + mse.clone().mul_scalar(cfg.w_mse) + photo.clone().mul_scalar(cfg.w_photo);
        let mut perc_v = 0.0;
        if let Some(net) = &perc_net {
            let d = net.layers(px_cfg.output_to_unit(pred.clone()), px_cfg.output_to_unit(t))?.sum_dim(1).mean();
            perc_v = d.clone().into_scalar::<f32>() as f64;
            loss = loss + d.mul_scalar(cfg.w_perc);
        }
        let lv = loss.clone().into_scalar::<f32>() as f64;
        if !lv.is_finite() {
            return Err(EngineError::NonFinite(format!("preview loss at step {s}")));
        }
        let lr = cfg.lr_at(s);
        acc.loss += lv;
        acc.l1 += l1.into_scalar::<f32>() as f64;
        acc.mse += mse.into_scalar::<f32>() as f64;
        acc.photo += photo.into_scalar::<f32>() as f64;
        acc.perc += perc_v;
        n_acc += 1;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr, model, grads);
        step = s;
        if step.is_multiple_of(cfg.log_every.max(1)) || step == cfg.steps {
            let k = n_acc.max(1) as f64;
            let row = PreviewLogRow {
                step,
                loss: acc.loss / k,
                l1: acc.l1 / k,
                mse: acc.mse / k,
                photo: acc.photo / k,
                perc: acc.perc / k,
                lr,
                secs: t0.elapsed().as_secs_f64(),
            };
            acc = PreviewLogRow::default();
            n_acc = 0;
            writeln!(
                csv,
                "{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.3e},{:.1}",
                row.step, row.loss, row.l1, row.mse, row.photo, row.perc, row.lr, row.secs
            )
            .map_err(|e| EngineError::io(&csv_path, e))?;
            if !on_event(PreviewEvent::Log(row)) {
                save_checkpoint(&run, step, &model, &optim, cfg, &sae_fp)?;
                write_curve(out)?;
                return Err(EngineError::Cancelled);
            }
        }
        if step.is_multiple_of(cfg.checkpoint_every.max(1)) || step == cfg.steps {
            save_checkpoint(&run, step, &model, &optim, cfg, &sae_fp)?;
            write_curve(out)?;
            on_event(PreviewEvent::Checkpoint { step });
        }
    }
    drop(csv);
    let final_dir = out.join("final");
    let inference = model.valid();
    inference.save(&final_dir, if cfg.final_f16 { Precision::F16 } else { Precision::F32 }, step, &sae_fp)?;
    write_curve(out)?;
    Ok(PreviewTrainSummary { start_step, steps: step, final_dir, cache_reused: reused, items: set.len() })
}
