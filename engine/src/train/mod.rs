//! DINO-SAE training (METHOD.md section 3) as configurations of one trainer.
//!
//! - stage 1: semantic-structural alignment: stem + decoder trained, DINO blocks frozen;
//!   loss = w_align * align(z_student, z_teacher) + w_l1 * L1(x_hat, x). `align` is cosine (the paper) or MSE (ablation).
//! - stage 0 (ours, optional): stem warm start: the stem alone is fitted (relative MSE) to the teacher's own patch
//!   embedding of the resized image, so that stage 1 starts from in-distribution tokens (see docs/RESULTS.md: the
//!   pretrained patchify beats a randomly initialised stem at a short budget).
//! - stage 2: adversarial adaptation: stage 1 + w_gan * hinge GAN loss from a DINO discriminator
//!   ([`disc`]: the frozen teacher read at four depths by spectral-normalised per-token heads; inputs through
//!   [`diffaug`]); the discriminator is trained in the same step on real vs detached reconstructions.
//! - stage 3: decoder refinement: the whole encoder frozen, decoder trained on L1 (+ GAN when w_gan > 0).
//! - stage 4: noise augmentation: as stage 3 with z' = z + sigma * eps, sigma ~ U(0, tau), tau ramping.
//!
//! Optional terms in every stage but 0: w_perc * LPIPS-VGG-like (the paper's LPIPS, here VGG16 + LPIPS heads),
//! w_mse * mean squared pixel error (ours; 0 by default).
//!
//! Teacher targets come from the unmodified DINOv2 on the crop resized (bicubic) to 14 * grid pixels.
//! Checkpoints every N steps (atomic: written to a temporary folder, then renamed; `latest` names the newest),
//! resume after a kill, an EMA copy, CSV loss log and a loss-curve PNG.

pub mod data;
pub mod diffaug;
pub mod disc;
pub mod optim_state;
pub mod plot;
pub mod preview;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, save_sae};
use crate::error::{EngineError, Result};
use crate::fixture::cosine_last;
use crate::interp::resize_bicubic;
use crate::model::nn::Probe;
pub use crate::model::sae::EmbedKind;
use crate::model::sae::{DinoSae, SaeConfig, tokens_to_map};
use crate::model::vit::Vit;
use crate::raw::{Precision, TensorMap};
use crate::weights::{WeightSource, export};
use data::PhotoSet;

/// Alignment loss between student and teacher patch tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    /// 1 - cos(z_s, z_t), averaged over patches (the paper).
    Cosine,
    /// |z_s - z_t|^2 averaged (ablation).
    Mse,
}

/// Learning-rate schedule after warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    #[default]
    Constant,
    /// Half cosine to 0 at the last step.
    Cosine,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub stage: u8,
    pub steps: usize,
    pub batch: usize,
    pub crop: u32,
    /// Smallest source square, as a fraction of the photo's shorter side (scale augmentation).
    pub min_crop_frac: f32,
    pub lr: f64,
    pub warmup: usize,
    pub weight_decay: f32,
    pub ema_decay: f64,
    pub ema_every: usize,
    pub align: Align,
    pub w_align: f64,
    pub w_l1: f64,
    /// Weight of a mean-squared pixel error term (0 = off, the paper's recipe; PSNR is this error's log).
    #[serde(default)]
    pub w_mse: f64,
    /// Weight of the LPIPS-VGG-like perceptual term (0 = off); its weights come from `perc_weights` or
    /// `lpips::default_dir()` (scripts/fetch-lpips.sh).
    #[serde(default)]
    pub w_perc: f64,
    #[serde(default)]
    pub perc_weights: Option<PathBuf>,
    /// Weight of the hinge GAN term (stage 2 defaults to 0.5, the paper's; 0 = no discriminator).
    #[serde(default)]
    pub w_gan: f64,
    /// Discriminator learning rate (None: the generator's); warm-up and schedule are the generator's.
    #[serde(default)]
    pub lr_d: Option<f64>,
    /// Stage 1 from scratch: the CNN stem (paper) or the backbone's resized patchify (ablation).
    #[serde(default)]
    pub embed: EmbedKind,
    /// Learning-rate schedule after the linear warm-up.
    #[serde(default)]
    pub schedule: Schedule,
    /// Stage 4: tau ramps linearly from `.0` to `.1` over the run.
    pub noise_tau: (f64, f64),
    pub checkpoint_every: usize,
    pub log_every: usize,
    pub seed: u64,
}

impl TrainConfig {
    pub fn stage(stage: u8) -> Self {
        Self {
            stage,
            steps: 1000,
            batch: 4,
            crop: 128,
            min_crop_frac: 0.3,
            lr: 3e-4,
            warmup: 50,
            weight_decay: 1e-4,
            ema_decay: 0.999,
            ema_every: 10,
            align: Align::Cosine,
            w_align: 0.5,
            w_l1: 1.0,
            w_mse: 0.0,
            w_perc: 0.0,
            perc_weights: None,
            w_gan: if stage == 2 { 0.5 } else { 0.0 },
            lr_d: None,
            embed: EmbedKind::Stem,
            schedule: Schedule::Constant,
            noise_tau: (0.8, 1.2),
            checkpoint_every: 200,
            log_every: 10,
            seed: 0,
        }
    }

    /// Learning rate at `step` (1-based): linear warm-up over `warmup` steps, then constant, or a half cosine
    /// from `lr` down to 0 at `steps`.
    pub fn lr_at(&self, step: usize) -> f64 {
        lr_schedule(self.lr, self.warmup, self.steps, self.schedule, step)
    }

    fn validate(&self) -> Result<()> {
        match self.stage {
            0 | 1 | 3 | 4 => {}
            2 if self.w_gan > 0.0 => {}
            2 => return Err(EngineError::Config("stage 2 is stage 1 + the GAN term: it needs w_gan > 0".into())),
            s => return Err(EngineError::Config(format!("unknown stage {s} (0, 1, 2, 3, 4)"))),
        }
        if !(self.w_gan >= 0.0 && self.w_gan.is_finite()) {
            return Err(EngineError::Config(format!("w_gan must be finite and >= 0, got {}", self.w_gan)));
        }
        if !self.crop.is_multiple_of(16) || self.crop == 0 || self.batch == 0 {
            return Err(EngineError::Config("crop must be a positive multiple of 16 and batch > 0".into()));
        }
        Ok(())
    }
}

/// One logged row.
#[derive(Clone, Debug)]
pub struct LogRow {
    pub step: usize,
    pub loss: f64,
    pub align: f64,
    pub l1: f64,
    /// Mean squared pixel error in [0, 1] units (logged in every stage but 0; in the loss when w_mse > 0).
    pub mse: f64,
    pub lr: f64,
    pub secs: f64,
    /// LPIPS-VGG-like term before weighting (0 when off).
    pub perc: f64,
    /// Generator hinge loss -mean D(fake) and discriminator hinge loss (0 without GAN).
    pub gan_g: f64,
    pub gan_d: f64,
}

/// Where a run lives.
pub struct RunDir(pub PathBuf);

impl RunDir {
    fn latest(&self) -> Option<(usize, PathBuf)> {
        let s = std::fs::read_to_string(self.0.join("latest")).ok()?;
        let name = s.trim();
        let step = name.strip_prefix("ckpt-")?.parse().ok()?;
        let p = self.0.join(name);
        p.join("model/model.safetensors").exists().then_some((step, p))
    }
}

/// Recipe fields that differ between the configuration a checkpoint was written with (`saved`, its state.json's
/// `train`) and the one a resume runs with, as `field: old -> new`. `steps`, `checkpoint_every` and `log_every` may
/// change on a resume (a longer or shorter run) and are not reported.
pub fn recipe_changes(saved: &serde_json::Value, now: &TrainConfig) -> Vec<String> {
    let Ok(serde_json::Value::Object(now)) = serde_json::to_value(now) else { return Vec::new() };
    now.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "steps" | "checkpoint_every" | "log_every"))
        .filter_map(|(k, v)| {
            let old = saved.get(k).unwrap_or(&serde_json::Value::Null);
            (old != v).then(|| format!("{k}: {old} -> {v}"))
        })
        .collect()
}

fn images_to_tensor(imgs: &[image::RgbImage], cfg: &SaeConfig, device: &Device) -> Result<(Tensor<4>, Tensor<4>)> {
    let refs: Vec<&image::RgbImage> = imgs.iter().collect();
    let x = crate::image_io::to_tensor(&refs, &cfg.pixels, device)?;
    let (w, h) = imgs[0].dimensions();
    let mut data = Vec::with_capacity(imgs.len() * 3 * (w * h) as usize);
    for img in imgs {
        for c in 0..3 {
            data.extend(img.pixels().map(|p| p[c] as f32 / 255.0));
        }
    }
    let target = Tensor::from_data(TensorData::new(data, vec![imgs.len(), 3, h as usize, w as usize]), device);
    Ok((x, target))
}

/// The student's initial weights: the teacher's blocks and a fresh decoder; a fresh stem, or for
/// [`EmbedKind::Patchify`] the teacher's own patch embedding (so the untrained encoder is the teacher on the image
/// resized by p/16).
pub fn init_student(
    teacher_dir: &Path,
    cfg_decoder: crate::model::decoder::DecoderConfig,
    embed: EmbedKind,
    seed: u64,
    device: &Device,
) -> Result<DinoSae> {
    let src = checkpoint::read(teacher_dir)?;
    let r = checkpoint::to_internal(&src)?;
    let encoder = checkpoint::guess_vit(&src, &r.tensors, "")?;
    let map: TensorMap = r
        .tensors
        .into_iter()
        .filter(|(k, _)| embed == EmbedKind::Patchify || !k.starts_with("patch_embed."))
        .map(|(k, v)| (format!("dino_model.{k}"), v))
        .collect();
    let cfg = SaeConfig { encoder, decoder: cfg_decoder, pixels: Default::default(), embed };
    let mut ws = WeightSource::from_map_or_init(map, seed, device);
    let m = DinoSae::load(&mut ws, &cfg)?;
    let rep = ws.finish();
    if !rep.mismatched.is_empty() {
        return Err(EngineError::IncompleteWeights(rep.summary(10)));
    }
    Ok(m)
}

/// Stage 0 (stem warm start): the stem's tokens against the teacher's own patch embedding of the image resized to
/// the teacher's grid, MSE relative to the target's mean square. Only the stem runs (no blocks, no decoder).
///
/// # Shapes
/// - x (plain) / x_ad (autodiff): `[B, 3, 16g, 16g]`; `side` = p * g
fn stem_warmup_loss(
    model: &DinoSae,
    teacher: &Vit,
    x: Tensor<4>,
    x_ad: Tensor<4>,
    side: usize,
    ad: &Device,
) -> (Tensor<1>, f64) {
    let s = model.encoder.patch_embed.forward(x_ad, &mut Probe::default());
    let t = teacher.patch_embed.forward(resize_bicubic(x, side, side, false, None), &mut Probe::default());
    let t = Tensor::<4>::from_data(t.into_data(), ad);
    let scale = (t.clone().square().mean().into_scalar::<f32>() as f64).max(1e-12);
    let l = (s - t).square().mean().div_scalar(scale);
    let v = l.clone().into_scalar::<f32>() as f64;
    (l, v)
}

/// Freeze what a stage does not train.
fn freeze_for_stage(mut m: DinoSae, stage: u8) -> DinoSae {
    let enc = m.encoder;
    if stage == 0 {
        // only the patch embedding (the stem) learns
        m.decoder = m.decoder.freeze();
    }
    let encoder = if stage <= 2 {
        let mut e = enc;
        e.blocks = e.blocks.into_iter().map(Module::freeze).collect();
        e.norm = e.norm.freeze();
        e.cls_token = e.cls_token.set_require_grad(false);
        e.registers = e.registers.map(|r| r.set_require_grad(false));
        e.pos = e.pos.map(Module::freeze);
        e
    } else {
        enc.freeze()
    };
    m.encoder = encoder;
    m
}

/// `ema <- d ema + (1 - d) cur` on host maps (keys missing from `ema` or re-shaped are copied).
pub fn ema_update(ema: &mut TensorMap, cur: &TensorMap, d: f64) {
    for (k, v) in cur {
        match ema.get_mut(k) {
            Some(e) if e.shape == v.shape => {
                for (a, b) in e.data.iter_mut().zip(&v.data) {
                    *a = (d * *a as f64 + (1.0 - d) * *b as f64) as f32;
                }
            }
            _ => {
                ema.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The optimisers of a run: the autoencoder's and, in stage 2, the discriminator heads'.
struct Optims {
    model: ModuleOptimizer,
    disc: ModuleOptimizer,
}

fn save_checkpoint(
    run: &RunDir,
    step: usize,
    model: &DinoSae,
    ema: &TensorMap,
    cfg: &TrainConfig,
    disc: Option<&disc::Discriminator>,
    optims: &Optims,
) -> Result<()> {
    let tmp = run.0.join(format!(".ckpt-{step}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    save_sae(model, tmp.join("model"), Precision::F32)?;
    optim_state::save(&tmp, optim_state::MODEL, &optims.model, &model.names)?;
    if let Some(d) = disc {
        crate::raw::write_safetensors(tmp.join(DISC_FILE), &d.export()?, &Default::default(), Precision::F32)?;
        optim_state::save(&tmp, optim_state::DISC, &optims.disc, &d.names)?;
    }
    let mut ema_model = model.clone();
    ema_model = load_weights(ema_model, ema)?;
    save_sae(&ema_model, tmp.join("ema"), Precision::F32)?;
    let state = serde_json::json!({ "step": step, "train": cfg });
    crate::raw::atomic_write(&tmp.join("state.json"), state.to_string().as_bytes())?;
    publish_checkpoint(&run.0, &tmp, step)
}

/// The discriminator's heads and spectral-norm vectors inside a checkpoint folder.
pub const DISC_FILE: &str = "disc.safetensors";

/// Make a fully written temporary checkpoint folder `tmp` the run's `ckpt-{step}`: rename it into place, point
/// `latest` at it (atomically), and keep only the newest two checkpoints.
pub fn publish_checkpoint(out: &Path, tmp: &Path, step: usize) -> Result<()> {
    let fin = out.join(format!("ckpt-{step}"));
    let _ = std::fs::remove_dir_all(&fin);
    std::fs::rename(tmp, &fin).map_err(|e| EngineError::io(&fin, e))?;
    crate::raw::atomic_write(&out.join("latest"), format!("ckpt-{step}").as_bytes())?;
    if let Ok(rd) = std::fs::read_dir(out) {
        let mut olds: Vec<usize> = rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("ckpt-")?.parse().ok())
            .filter(|&s| s < step)
            .collect();
        olds.sort();
        olds.pop();
        for s in olds {
            let _ = std::fs::remove_dir_all(out.join(format!("ckpt-{s}")));
        }
    }
    Ok(())
}

/// Replace a model's parameters with values from a host map (same internal names).
pub fn load_weights(model: DinoSae, map: &TensorMap) -> Result<DinoSae> {
    let device = model.encoder.cls_token.val().device();
    let mut ws = WeightSource::from_map(map.clone(), &device);
    let m = DinoSae::load(&mut ws, &model.cfg)?;
    ws.finish().check()?;
    Ok(m)
}

/// Progress callback: (row) -> keep going?
pub type OnLog<'a> = &'a mut dyn FnMut(&LogRow) -> bool;

/// Learning rate at `step` (1-based) of a run of `steps`: linear warm-up over `warmup` steps, then constant, or a
/// half cosine from `lr` down to 0 at `steps` (every trainer's schedule).
pub fn lr_schedule(lr: f64, warmup: usize, steps: usize, schedule: Schedule, step: usize) -> f64 {
    let warm = (step as f64 / warmup.max(1) as f64).min(1.0);
    let decay = match schedule {
        Schedule::Constant => 1.0,
        Schedule::Cosine => {
            let span = steps.saturating_sub(warmup).max(1) as f64;
            let t = (step.saturating_sub(warmup) as f64 / span).min(1.0);
            0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    };
    lr * warm * decay
}

/// Train. `init` is the starting model for stages 3/4 (a stage-1 result); stage 1 starts from the teacher.
/// Resumes from `out/latest` when present. Returns the final EMA model, saved to `out/final`.
pub fn train(
    cfg: &TrainConfig,
    teacher_dir: &Path,
    init: Option<&Path>,
    decoder: crate::model::decoder::DecoderConfig,
    photos: &PhotoSet,
    out: &Path,
    on_log: OnLog<'_>,
) -> Result<DinoSae> {
    cfg.validate()?;
    std::fs::create_dir_all(out).map_err(|e| EngineError::io(out, e))?;
    let run = RunDir(out.to_path_buf());
    // A run killed while writing a checkpoint leaves only a `.ckpt-*.tmp` folder: never used, removed here.
    if let Ok(rd) = std::fs::read_dir(out) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let plain = crate::cpu();
    let ad = crate::cpu().autodiff();
    let teacher: Vit = checkpoint::load_backbone(teacher_dir, &plain, false)?.model;
    // the checkpoint this run resumes from, if any (read once: model, EMA, optimisers, discriminator)
    let resume = run.latest();
    let (mut step0, mut model) = match &resume {
        Some((s, p)) => (*s, checkpoint::load_sae(p.join("model"), &ad, false)?.model),
        None => match init {
            Some(p) => (0, checkpoint::load_sae(p, &ad, false)?.model),
            None => (0, init_student(teacher_dir, decoder, cfg.embed, cfg.seed, &ad)?),
        },
    };
    let mut ema: TensorMap = match &resume {
        Some((_, p)) => crate::raw::read_safetensors(p.join("ema/model.safetensors"))?,
        None => export(&model, &model.names)?,
    };
    // a resume with other flags changes the run's recipe from here on: allowed, but said
    if let Some((s, p)) = &resume {
        let state: Option<serde_json::Value> =
            std::fs::read(p.join("state.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(saved) = state.as_ref().and_then(|v| v.get("train")) {
            for c in recipe_changes(saved, cfg) {
                eprintln!("resuming at step {s} with a changed setting: {c}");
            }
        }
    }
    let mut optims = Optims {
        model: AdamWConfig::new().with_weight_decay(cfg.weight_decay).init(),
        disc: AdamWConfig::new().with_weight_decay(0.0).init(),
    };
    // AdamW's moments continue across a resume (checkpoints from before optim_state existed restart them)
    if let Some((_, p)) = resume.as_ref().filter(|(_, p)| optim_state::restorable(p, optim_state::MODEL)) {
        let old = model.names.clone();
        let (m, names, o) = optim_state::restore(p, optim_state::MODEL, model, &old, optims.model)?;
        model = m;
        model.names = names;
        optims.model = o;
    }
    let sae_cfg = model.cfg.clone();
    // the memory preflight of one training step (autodiff keeps the activations for the backward pass)
    let est = crate::preflight::train_step(&sae_cfg, cfg.batch, cfg.crop as usize);
    crate::preflight::check(
        &format!("a training step of batch {} at {}x{} crops", cfg.batch, cfg.crop, cfg.crop),
        &est,
        &crate::preflight::Budget::from_env(),
        || "use a smaller batch or crop".into(),
    )?;
    let names = model.names.clone();
    // frozen perceptual network on the autodiff device: gradients flow through it to the decoder, never into it
    let perc_net = if cfg.w_perc > 0.0 {
        let dir = cfg.perc_weights.clone().unwrap_or_else(crate::lpips::default_dir);
        Some(crate::lpips::LpipsVgg::load(&dir, &ad)?.no_grad())
    } else {
        None
    };
    let mut disc = if cfg.w_gan > 0.0 {
        let backbone = checkpoint::load_backbone(teacher_dir, &ad, false)?.model.no_grad();
        let state = match &resume {
            Some((_, p)) if p.join(DISC_FILE).exists() => Some(crate::raw::read_safetensors(p.join(DISC_FILE))?),
            _ => None,
        };
        let mut d =
            disc::Discriminator::new(backbone, cfg.seed ^ 0xd15c, state, sae_cfg.pixels.mean, sae_cfg.pixels.std, &ad)?;
        if let Some((_, p)) = resume.as_ref().filter(|(_, p)| optim_state::restorable(p, optim_state::DISC)) {
            let (heads, names, o) = optim_state::restore(p, optim_state::DISC, d.heads, &d.names, optims.disc)?;
            (d.heads, d.names, optims.disc) = (heads, names, o);
        }
        Some(d)
    } else {
        None
    };
    let mut model = freeze_for_stage(model, cfg.stage);
    let csv_path = out.join("loss.csv");
    let new_csv = !csv_path.exists() || step0 == 0;
    let mut csv = std::fs::OpenOptions::new()
        .create(true)
        .append(!new_csv)
        .write(true)
        .truncate(new_csv)
        .open(&csv_path)
        .map_err(|e| EngineError::io(&csv_path, e))?;
    if new_csv {
        writeln!(csv, "{CSV_HEADER}").map_err(|e| EngineError::io(&csv_path, e))?;
    }
    let t0 = Instant::now();
    let g = (cfg.crop / 16) as usize;
    let ctx = StepCtx {
        cfg,
        teacher: &teacher,
        sae: &sae_cfg,
        perc_net: perc_net.as_ref(),
        ad: &ad,
        side: teacher.cfg.patch_size * g,
    };
    let mut acc = Stats::default();
    while step0 < cfg.steps {
        let step = step0 + 1;
        // one stream per step (crops, flips, noise, DiffAugment), so a resumed run draws what an uninterrupted one would
        let mut rng = step_rng(cfg.seed, step);
        let imgs: Vec<image::RgbImage> =
            (0..cfg.batch).map(|_| photos.sample(&mut rng, cfg.crop, cfg.min_crop_frac).1).collect();
        let (x, target) = images_to_tensor(&imgs, &sae_cfg, &plain)?;
        let lr = cfg.lr_at(step);
        let x_ad = Tensor::<4>::from_data(x.clone().into_data(), &ad);
        let target = Tensor::<4>::from_data(target.into_data(), &ad);
        let (loss, mut stats, fake) = if cfg.stage == 0 {
            let (l, v) = stem_warmup_loss(&model, &teacher, x, x_ad, ctx.side, &ad);
            (l, Stats { align: v, ..Default::default() }, None)
        } else {
            autoencoder_loss(&ctx, &model, x, x_ad, target.clone(), step, &mut rng, disc.as_mut())?
        };
        stats.loss = loss.clone().into_scalar::<f32>() as f64;
        if !stats.loss.is_finite() {
            return Err(EngineError::NonFinite(format!("loss at step {step}")));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optims.model.step(lr, model, grads);
        if let (Some(d), Some(fake)) = (disc.as_mut(), fake) {
            let lr_d = cfg.lr_d.map_or(lr, |l| lr * l / cfg.lr.max(1e-30));
            let real = sae_cfg.pixels.output_to_unit(target);
            stats.gan_d = discriminator_step(d, &mut optims.disc, lr_d, real, fake, step, &mut rng)?;
        }
        acc.add(&stats);
        step0 = step;
        if step % cfg.ema_every == 0 {
            let cur = export(&model, &names)?;
            ema_update(&mut ema, &cur, cfg.ema_decay.powi(cfg.ema_every as i32));
        }
        if step % cfg.log_every == 0 || step == cfg.steps {
            let row = acc.row(step, lr, t0.elapsed().as_secs_f64());
            acc = Stats::default();
            writeln!(
                csv,
                "{},{:.6},{:.6},{:.6},{:.3e},{:.1},{:.6},{:.6},{:.6},{:.6}",
                row.step, row.loss, row.align, row.l1, row.lr, row.secs, row.perc, row.gan_g, row.gan_d, row.mse
            )
            .map_err(|e| EngineError::io(&csv_path, e))?;
            if !on_log(&row) {
                save_checkpoint(&run, step, &model, &ema, cfg, disc.as_ref(), &optims)?;
                return Err(EngineError::Cancelled);
            }
        }
        if step % cfg.checkpoint_every == 0 || step == cfg.steps {
            save_checkpoint(&run, step, &model, &ema, cfg, disc.as_ref(), &optims)?;
            write_curve(out)?;
        }
    }
    let final_model = load_weights(model, &ema)?;
    save_sae(&final_model, out.join("final"), Precision::F32)?;
    write_curve(out)?;
    Ok(final_model)
}

/// The random stream of training step `step` (1-based) of a run seeded `seed`.
fn step_rng(seed: u64, step: usize) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (step as u64).wrapping_mul(0xd1b5_4a32_d192_ed03))
}

/// Columns of `loss.csv` (one row per `log_every` steps, each the mean over those steps).
pub const CSV_HEADER: &str = "step,loss,align,l1,lr,secs,perc,gan_g,gan_d,mse";

/// Scalars of one step (before weighting), summed over a logging window.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    loss: f64,
    align: f64,
    l1: f64,
    mse: f64,
    perc: f64,
    gan_g: f64,
    gan_d: f64,
    n: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.loss += o.loss;
        self.align += o.align;
        self.l1 += o.l1;
        self.mse += o.mse;
        self.perc += o.perc;
        self.gan_g += o.gan_g;
        self.gan_d += o.gan_d;
        self.n += 1;
    }

    /// The window's means as a log row.
    fn row(&self, step: usize, lr: f64, secs: f64) -> LogRow {
        let n = self.n.max(1) as f64;
        LogRow {
            step,
            loss: self.loss / n,
            align: self.align / n,
            l1: self.l1 / n,
            mse: self.mse / n,
            lr,
            secs,
            perc: self.perc / n,
            gan_g: self.gan_g / n,
            gan_d: self.gan_d / n,
        }
    }
}

/// What a step needs besides the model and the batch.
struct StepCtx<'a> {
    cfg: &'a TrainConfig,
    teacher: &'a Vit,
    sae: &'a SaeConfig,
    perc_net: Option<&'a crate::lpips::LpipsVgg>,
    ad: &'a Device,
    /// Side of the teacher's input: its patch size times the crop's grid.
    side: usize,
}

fn scalar(t: &Tensor<1>) -> f64 {
    t.clone().into_scalar::<f32>() as f64
}

/// Stages 1-2: the student's tokens against the teacher's on the crop resized (bicubic) to the teacher's grid.
///
/// # Shapes
/// - s: `[B, g*g, C]` (autodiff); x: `[B, 3, 16g, 16g]` (plain)
fn align_loss(ctx: &StepCtx, s: Tensor<3>, x: Tensor<4>) -> Tensor<1> {
    let tx = resize_bicubic(x, ctx.side, ctx.side, false, None);
    let t = ctx.teacher.forward(tx, &mut Probe::default()).patch_tokens();
    let t = Tensor::<3>::from_data(t.into_data(), ctx.ad);
    match ctx.cfg.align {
        Align::Cosine => cosine_last(s, t).neg().add_scalar(1.0).mean(),
        Align::Mse => (s - t).square().mean(),
    }
}

/// Stage 4: `z + sigma * eps`, one sigma ~ U(0, tau) per sample, tau ramping linearly over the run.
///
/// # Shapes
/// - z: `[B, C, g, g]` -> `[B, C, g, g]`
fn add_latent_noise(cfg: &TrainConfig, z: Tensor<4>, step: usize, rng: &mut StdRng) -> Tensor<4> {
    let frac = step as f64 / cfg.steps.max(1) as f64;
    let tau = cfg.noise_tau.0 + (cfg.noise_tau.1 - cfg.noise_tau.0) * frac;
    let b = z.dims()[0];
    let sig: Vec<f32> = (0..b).map(|_| rng.random_range(0.0..tau.max(1e-9)) as f32).collect();
    let device = z.device();
    let sig = Tensor::<4>::from_data(TensorData::new(sig, vec![b, 1, 1, 1]), &device);
    let eps = Tensor::<4>::random(z.dims(), burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    z + eps * sig
}

/// The generator's loss for stages 1-4: alignment (stages 1-2), L1 + MSE on pixels, perceptual, and the GAN's
/// generator term (its discriminator's spectral norms are refreshed first). Returns the loss, its unweighted parts,
/// and the detached fake (in [0, 1]) for the discriminator's step.
///
/// # Shapes
/// - x (plain) / x_ad (autodiff): `[B, 3, 16g, 16g]` normalised input; target: `[B, 3, 16g, 16g]` in [0, 1]
#[allow(clippy::too_many_arguments)]
fn autoencoder_loss(
    ctx: &StepCtx,
    model: &DinoSae,
    x: Tensor<4>,
    x_ad: Tensor<4>,
    target: Tensor<4>,
    step: usize,
    rng: &mut StdRng,
    disc: Option<&mut disc::Discriminator>,
) -> Result<(Tensor<1>, Stats, Option<Tensor<4>>)> {
    let cfg = ctx.cfg;
    let mut stats = Stats::default();
    let out_s = model.encoder.forward(x_ad, &mut Probe::default());
    let s = out_s.patch_tokens();
    let align = (cfg.stage <= 2).then(|| align_loss(ctx, s.clone(), x));
    let mut z = tokens_to_map(s, out_s.grid);
    if cfg.stage == 4 {
        z = add_latent_noise(cfg, z, step, rng);
    }
    let recon = model.decoder.forward(z, &mut Probe::default());
    let err = recon.clone() - target.clone();
    let l1 = err.clone().abs().mean();
    stats.l1 = scalar(&l1);
    let mut loss = match align {
        Some(a) => {
            stats.align = scalar(&a);
            a.mul_scalar(cfg.w_align) + l1.mul_scalar(cfg.w_l1)
        }
        None => l1.mul_scalar(cfg.w_l1),
    };
    if cfg.w_mse > 0.0 {
        let mse = err.square().mean();
        stats.mse = scalar(&mse);
        loss = loss + mse.mul_scalar(cfg.w_mse);
    } else {
        stats.mse = scalar(&err.detach().square().mean());
    }
    if let Some(net) = ctx.perc_net {
        let p = net
            .layers(ctx.sae.pixels.output_to_unit(recon.clone()), ctx.sae.pixels.output_to_unit(target))?
            .sum_dim(1)
            .mean();
        stats.perc = scalar(&p);
        loss = loss + p.mul_scalar(cfg.w_perc);
    }
    let fake = match disc {
        Some(d) => {
            d.update_spectral_norms()?;
            let fake = ctx.sae.pixels.output_to_unit(recon);
            let g = disc::hinge_g_loss(d.forward(diffaug::diff_augment(fake.clone(), rng)));
            stats.gan_g = scalar(&g);
            loss = loss + g.mul_scalar(cfg.w_gan);
            Some(fake.detach())
        }
        None => None,
    };
    Ok((loss, stats, fake))
}

/// One discriminator step on real vs (detached) fake images, both through DiffAugment. Returns its hinge loss.
///
/// # Shapes
/// - real, fake: `[B, 3, H, W]` in [0, 1]
fn discriminator_step(
    d: &mut disc::Discriminator,
    optim: &mut burn::optim::ModuleOptimizer,
    lr: f64,
    real: Tensor<4>,
    fake: Tensor<4>,
    step: usize,
    rng: &mut StdRng,
) -> Result<f64> {
    let real_aug = diffaug::diff_augment(real, rng);
    let fake_aug = diffaug::diff_augment(fake, rng);
    let dl = disc::hinge_d_loss(d.forward(real_aug), d.forward(fake_aug));
    let dv = scalar(&dl);
    if !dv.is_finite() {
        return Err(EngineError::NonFinite(format!("discriminator loss at step {step}")));
    }
    let g = GradientsParams::from_grads(dl.backward(), &d.heads);
    d.heads = optim.step(lr, d.heads.clone(), g);
    Ok(dv)
}

/// Redraw `loss.png` from `loss.csv`.
pub fn write_curve(out: &Path) -> Result<()> {
    let s = std::fs::read_to_string(out.join("loss.csv")).unwrap_or_default();
    let mut cols: Vec<(String, Vec<f64>)> =
        ["loss", "align", "l1"].iter().map(|n| (n.to_string(), Vec::new())).collect();
    for line in s.lines().skip(1) {
        let v: Vec<f64> = line.split(',').filter_map(|x| x.parse().ok()).collect();
        if v.len() >= 4 {
            for (i, c) in cols.iter_mut().enumerate() {
                c.1.push(v[i + 1]);
            }
        }
    }
    cols.retain(|(_, v)| v.iter().any(|x| *x > 0.0));
    plot::loss_curve(&out.join("loss.png"), &cols, 640, 360)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_reports_changed_recipe_fields_only() {
        let saved = TrainConfig::stage(1);
        let mut now = saved.clone();
        assert!(recipe_changes(&serde_json::to_value(&saved).unwrap(), &now).is_empty());
        now.steps = 5000; // a longer run: not a recipe change
        now.lr = 1e-4;
        now.w_mse = 10.0;
        let c = recipe_changes(&serde_json::to_value(&saved).unwrap(), &now);
        assert_eq!(c, vec!["lr: 0.0003 -> 0.0001".to_string(), "w_mse: 0.0 -> 10.0".to_string()]);
        // a field the old checkpoint did not record at all
        let mut old = serde_json::to_value(&saved).unwrap();
        old.as_object_mut().unwrap().remove("embed");
        assert_eq!(recipe_changes(&old, &saved), vec!["embed: null -> \"stem\"".to_string()]);
    }

    #[test]
    fn learning_rate_schedules_follow_their_formulas() {
        let mut c = TrainConfig::stage(1);
        c.lr = 1e-3;
        c.warmup = 10;
        c.steps = 110;
        // warm-up: linear from lr/warmup
        assert!((c.lr_at(1) - 1e-4).abs() < 1e-15);
        assert!((c.lr_at(5) - 5e-4).abs() < 1e-15);
        assert!((c.lr_at(10) - 1e-3).abs() < 1e-15);
        assert!((c.lr_at(110) - 1e-3).abs() < 1e-15, "constant keeps lr");
        c.schedule = Schedule::Cosine;
        assert!((c.lr_at(10) - 1e-3).abs() < 1e-15, "cosine starts at lr after warm-up");
        assert!((c.lr_at(60) - 0.5e-3).abs() < 1e-12, "half-way is lr/2");
        assert!((c.lr_at(35) - 1e-3 * (0.5 + 0.5 * (std::f64::consts::PI / 4.0).cos())).abs() < 1e-12);
        assert!(c.lr_at(110).abs() < 1e-15, "ends at 0");
        assert!(c.lr_at(200).abs() < 1e-15, "stays at 0 past the end");
    }
}
