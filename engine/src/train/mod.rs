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

pub mod config;
pub mod diffaug;
pub mod disc;
pub mod dit;
mod loss;
pub mod optim_state;
pub mod plot;
pub mod preview;
pub mod run_dir;

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{SeedableRng, rngs::StdRng};

use crate::checkpoint::{self, save_sae};
use crate::data::PhotoSet;
use crate::error::{EngineError, Result};
pub use crate::model::sae::EmbedKind;
use crate::model::sae::{DinoSae, SaeConfig};
use crate::model::vit::Vit;
use crate::tensor_file::{Precision, TensorMap};
use crate::weights::{WeightSource, export};
pub use config::{Align, Schedule, TrainConfig, lr_schedule, recipe_changes};
use loss::{StepCtx, autoencoder_loss, discriminator_step, stem_warmup_loss};
pub use run_dir::RunDir;

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
/// resized by p/16), or for [`EmbedKind::Hybrid`] both, the stem's last convolution at zero (again the teacher).
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
    let mut map: TensorMap = r
        .tensors
        .into_iter()
        .filter(|(k, _)| embed.has_patchify() || !k.starts_with("patch_embed."))
        .map(|(k, v)| (format!("dino_model.{k}"), v))
        .collect();
    if embed == EmbedKind::Hybrid {
        // the residual branch's last convolution starts at zero: the untrained student is the teacher
        let key = format!("dino_model.patch_embed.{}", crate::model::hybrid::ZERO_INIT_KEY);
        let shape = vec![encoder.dim, crate::model::stem::STEM_WIDTHS[2], 3, 3];
        map.insert(key, crate::tensor_file::RawTensor::zeros(shape));
    }
    let cfg = SaeConfig { encoder, decoder: cfg_decoder, pixels: Default::default(), embed };
    let mut ws = WeightSource::from_map_or_init(map, seed, device);
    let m = DinoSae::load(&mut ws, &cfg)?;
    let rep = ws.finish();
    if !rep.mismatched.is_empty() {
        return Err(EngineError::IncompleteWeights(rep.summary(10)));
    }
    Ok(m)
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
    let tmp = run.checkpoint_tmp(step)?;
    save_sae(model, tmp.join("model"), Precision::F32)?;
    optim_state::save(&tmp, optim_state::MODEL, &optims.model, &model.names)?;
    if let Some(d) = disc {
        crate::tensor_file::write_safetensors(tmp.join(DISC_FILE), &d.export()?, &Default::default(), Precision::F32)?;
        optim_state::save(&tmp, optim_state::DISC, &optims.disc, &d.names)?;
    }
    let mut ema_model = model.clone();
    ema_model = load_weights(ema_model, ema)?;
    save_sae(&ema_model, tmp.join("ema"), Precision::F32)?;
    let state = serde_json::json!({ "step": step, "train": cfg });
    crate::tensor_file::atomic_write(&tmp.join("state.json"), state.to_string().as_bytes())?;
    run.publish(&tmp, step)
}

/// The discriminator's heads and spectral-norm vectors inside a checkpoint folder.
pub const DISC_FILE: &str = "disc.safetensors";

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

/// Train on the CPU. `init` is the starting model (for stages 3/4 a stage-1 result; without it stage 1 starts
/// from the teacher). Resumes from `out/latest` when present. Returns the final EMA model, saved to `out/final`.
pub fn train(
    cfg: &TrainConfig,
    teacher_dir: &Path,
    init: Option<&Path>,
    decoder: crate::model::decoder::DecoderConfig,
    photos: &PhotoSet,
    out: &Path,
    on_log: OnLog<'_>,
) -> Result<DinoSae> {
    train_on(cfg, teacher_dir, init, decoder, photos, out, on_log, &crate::cpu())
}

/// [`train`] on `device` (the CPU, or a wgpu device for `scripts/gpu-train.sh`): the models, the batch and the
/// optimiser live there; checkpoints are the same files whichever device wrote them, so a run moves between the CPU
/// and a GPU by resuming.
#[allow(clippy::too_many_arguments)]
pub fn train_on(
    cfg: &TrainConfig,
    teacher_dir: &Path,
    init: Option<&Path>,
    decoder: crate::model::decoder::DecoderConfig,
    photos: &PhotoSet,
    out: &Path,
    on_log: OnLog<'_>,
    device: &Device,
) -> Result<DinoSae> {
    cfg.validate()?;
    let run = RunDir::open(out)?;
    let plain = device.clone();
    let ad = device.clone().autodiff();
    let teacher: Vit = checkpoint::load_backbone(teacher_dir, &plain, false)?.model;
    // the checkpoint this run resumes from, if any (read once: model, EMA, optimisers, discriminator)
    let resume = run.latest(&["model/model.safetensors"]);
    let (mut step0, mut model) = match &resume {
        Some((s, p)) => (*s, checkpoint::load_sae(p.join("model"), &ad, false)?.model),
        None => match init {
            Some(p) => (0, checkpoint::load_sae(p, &ad, false)?.model),
            None => (0, init_student(teacher_dir, decoder, cfg.embed, cfg.seed, &ad)?),
        },
    };
    let mut ema: TensorMap = match &resume {
        Some((_, p)) => crate::tensor_file::read_safetensors(p.join("ema/model.safetensors"))?,
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
        &crate::preflight::Budget::from_env().on(&plain),
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
            Some((_, p)) if p.join(DISC_FILE).exists() => {
                Some(crate::tensor_file::read_safetensors(p.join(DISC_FILE))?)
            }
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

/// Redraw `loss.png` from `loss.csv`.
pub fn write_curve(out: &Path) -> Result<()> {
    plot::curve_from_csv(out, &[("loss", 1), ("align", 2), ("l1", 3)])
}
