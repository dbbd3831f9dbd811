//! `train` (a DINO-SAE stage) and `train-preview` (distil a preview decoder).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;
use engine::train::preview::{PreviewEvent, PreviewTrainConfig};
use engine::train::{Align, EmbedKind, Schedule, TrainConfig};

use crate::args::{BackendArg, value_name};
use crate::progress::Progress;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// The training stage.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=4))]
    stage: u8,
    /// Teacher backbone folder (scripts/fetch-teacher.sh).
    #[arg(long)]
    teacher: PathBuf,
    /// Training photos folder (scripts/fetch-photos.sh).
    #[arg(long)]
    photos: PathBuf,
    /// Run folder (checkpoints, loss.csv, loss.png, final/). An existing run resumes.
    #[arg(short, long)]
    out: PathBuf,
    /// Starting model (a stage-1 result for stages 3/4; for stage 1 a model to continue with a fresh schedule).
    #[arg(long)]
    init: Option<PathBuf>,
    /// Where the training step runs (`wgpu`: a GPU, or lavapipe on a CPU-only machine; scripts/gpu-train.sh).
    /// Checkpoints are the same whichever device wrote them: a run resumes on another backend.
    #[arg(long, value_enum, default_value_t)]
    backend: BackendArg,
    /// Stop cleanly after this many minutes (checked at each log row, every 10 steps): a checkpoint is written and
    /// the same command resumes the run exactly. For bursts on a lent GPU (scripts/gpu-train.sh).
    #[arg(long, value_name = "MINUTES")]
    time_limit: Option<f64>,
    /// Optimiser steps (default: the stage's, 1000).
    #[arg(long)]
    steps: Option<usize>,
    /// Photos per step (default: 4).
    #[arg(long)]
    batch: Option<usize>,
    /// Crop side in pixels (default: 128).
    #[arg(long)]
    crop: Option<u32>,
    /// Peak learning rate (default: the stage's, 3e-4).
    #[arg(long)]
    lr: Option<f64>,
    /// Alignment loss.
    #[arg(long, value_enum, default_value_t)]
    align: AlignArg,
    /// Weight of the LPIPS-VGG-like perceptual term (0 = off; weights from scripts/fetch-lpips.sh).
    #[arg(long)]
    w_perc: Option<f64>,
    /// Weight of a mean-squared pixel error term next to L1 (0 = off, the paper's recipe).
    #[arg(long)]
    w_mse: Option<f64>,
    /// Weight of the alignment term (default: the stage's, the paper's 0.5).
    #[arg(long)]
    w_align: Option<f64>,
    /// Linear learning-rate warm-up, in steps (default: the stage's, 50).
    #[arg(long)]
    warmup: Option<usize>,
    /// Weight of the hinge GAN term (default: 0.5 in stage 2, 0 otherwise; > 0 adds the DINO discriminator).
    #[arg(long)]
    w_gan: Option<f64>,
    /// Discriminator learning rate (default: the generator's), with the generator's warm-up and schedule.
    #[arg(long)]
    lr_d: Option<f64>,
    /// Patch embedding of a stage-1 run from scratch.
    #[arg(long, value_enum, default_value_t)]
    embed: EmbedArg,
    /// Learning rate after warm-up (default: the stage's, constant).
    #[arg(long, value_enum)]
    schedule: Option<ScheduleArg>,
    /// Checkpoint every N steps (default: 200).
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Seed of crops, flips and noise (default: 0).
    #[arg(long)]
    seed: Option<u64>,
}

/// Alignment loss between student and teacher patch tokens ([`Align`]).
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AlignArg {
    /// 1 - cos(student, teacher) (the paper).
    #[default]
    Cosine,
    /// Squared distance (ablation).
    Mse,
}

/// Patch embedding of a student trained from scratch ([`EmbedKind`]).
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EmbedArg {
    /// The HCPE stem (the paper).
    #[default]
    Stem,
    /// The teacher's own patch embedding on the image resized by p/16 (the ablation without the stem).
    Patchify,
    /// That patchify plus the stem as a zero-initialised residual branch (starts as the teacher).
    Hybrid,
}

/// Learning rate after warm-up ([`Schedule`]).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleArg {
    /// Constant.
    Constant,
    /// Half cosine to 0 at the last step.
    Cosine,
}

impl TrainArgs {
    /// The stage's configuration with the flags given on top.
    fn config(&self) -> TrainConfig {
        let mut cfg = TrainConfig::stage(self.stage);
        cfg.steps = self.steps.unwrap_or(cfg.steps);
        cfg.batch = self.batch.unwrap_or(cfg.batch);
        cfg.crop = self.crop.unwrap_or(cfg.crop);
        cfg.lr = self.lr.unwrap_or(cfg.lr);
        cfg.checkpoint_every = self.checkpoint_every.unwrap_or(cfg.checkpoint_every);
        cfg.seed = self.seed.unwrap_or(cfg.seed);
        cfg.w_perc = self.w_perc.unwrap_or(cfg.w_perc);
        cfg.w_mse = self.w_mse.unwrap_or(cfg.w_mse);
        cfg.w_align = self.w_align.unwrap_or(cfg.w_align);
        cfg.warmup = self.warmup.unwrap_or(cfg.warmup);
        cfg.w_gan = self.w_gan.unwrap_or(cfg.w_gan);
        cfg.lr_d = self.lr_d;
        cfg.align = match self.align {
            AlignArg::Cosine => Align::Cosine,
            AlignArg::Mse => Align::Mse,
        };
        cfg.embed = match self.embed {
            EmbedArg::Stem => EmbedKind::Stem,
            EmbedArg::Patchify => EmbedKind::Patchify,
            EmbedArg::Hybrid => EmbedKind::Hybrid,
        };
        cfg.schedule = match self.schedule {
            None => cfg.schedule,
            Some(ScheduleArg::Constant) => Schedule::Constant,
            Some(ScheduleArg::Cosine) => Schedule::Cosine,
        };
        cfg
    }
}

pub fn train(a: TrainArgs) -> Result<()> {
    let backend = engine::backend::Backend::select(a.backend.into())?;
    let device = backend.device.clone();
    let cfg = a.config();
    let set = engine::data::PhotoSet::load(&a.photos, 768)?;
    eprintln!("training stage {} on {} photos -> {} ({backend})", a.stage, set.images.len(), a.out.display());
    let teacher_dim = engine::checkpoint::load_backbone(&a.teacher, &device, false)?.model.cfg.dim;
    let mut bar = Progress::with_rate("step", cfg.steps, Duration::from_secs(10));
    let limit_s = a.time_limit.map(|m| m * 60.0);
    let mut stopped_at = None;
    let mut on_log = |r: &engine::train::LogRow| {
        bar.set(
            r.step,
            &format!(
                "loss {:.4}  align {:.4}  l1 {:.4}  crop psnr {:.2}  perc {:.4}  gan g {:.3} d {:.3}  lr {:.1e}  {:.0} s",
                r.loss,
                r.align,
                r.l1,
                -10.0 * r.mse.max(1e-12).log10(),
                r.perc,
                r.gan_g,
                r.gan_d,
                r.lr,
                r.secs
            ),
        );
        if limit_s.is_some_and(|l| r.secs >= l) && r.step < cfg.steps {
            stopped_at = Some(r.step);
            return false;
        }
        true
    };
    let done = engine::train::train_on(
        &cfg,
        &a.teacher,
        a.init.as_deref(),
        engine::model::decoder::DecoderConfig::small(teacher_dim),
        &set,
        &a.out,
        &mut on_log,
        &device,
    );
    bar.finish();
    match (done, stopped_at) {
        (Err(engine::EngineError::Cancelled), Some(step)) => {
            println!(
                "stopped at the time limit: checkpoint at step {step} of {} in {}; the same command resumes",
                cfg.steps,
                a.out.display()
            );
        }
        (r, _) => {
            r?;
            println!("done: {}", a.out.join("final").display());
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct TrainPreviewArgs {
    /// The DINO-SAE whose decoder is distilled (our folder or an official checkpoint); default: the default model.
    #[arg(long, short = 'm')]
    model: Option<PathBuf>,
    /// Training photos folder (scripts/fetch-photos.sh).
    #[arg(long)]
    photos: PathBuf,
    /// Run folder (cache/, checkpoints, loss.csv, loss.png, final/). An existing run resumes.
    #[arg(short, long)]
    out: PathBuf,
    /// Architecture preset.
    #[arg(long, value_enum, default_value_t)]
    preset: PreviewPreset,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long)]
    crop: Option<u32>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    crops_per_photo: Option<usize>,
    /// Perturbed latents per crop (decoded once each).
    #[arg(long)]
    noise_variants: Option<usize>,
    /// Largest angular noise per patch, degrees.
    #[arg(long)]
    noise_max_deg: Option<f32>,
    #[arg(long)]
    w_l1: Option<f64>,
    #[arg(long)]
    w_mse: Option<f64>,
    /// Weight of the L1 to the photo itself (clean latents).
    #[arg(long)]
    w_photo: Option<f64>,
    /// Weight of the LPIPS-VGG-like term to the full decode (scripts/fetch-lpips.sh; slow on CPU).
    #[arg(long)]
    w_perc: Option<f64>,
    #[arg(long)]
    checkpoint_every: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Write final/ in f16 (the shipped form).
    #[arg(long)]
    f16: bool,
}

/// Preview decoder architectures ([`engine::model::preview::PRESETS`]).
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PreviewPreset {
    Linear,
    Tiny,
    #[default]
    Small,
    Base,
    Wide,
}

impl TrainPreviewArgs {
    /// The default preview-training configuration with the flags given on top.
    fn config(&self) -> PreviewTrainConfig {
        let d = PreviewTrainConfig::default();
        PreviewTrainConfig {
            preset: value_name(&self.preset),
            steps: self.steps.unwrap_or(d.steps),
            batch: self.batch.unwrap_or(d.batch),
            crop: self.crop.unwrap_or(d.crop),
            lr: self.lr.unwrap_or(d.lr),
            crops_per_photo: self.crops_per_photo.unwrap_or(d.crops_per_photo),
            noise_variants: self.noise_variants.unwrap_or(d.noise_variants),
            noise_max_deg: self.noise_max_deg.unwrap_or(d.noise_max_deg),
            w_l1: self.w_l1.unwrap_or(d.w_l1),
            w_mse: self.w_mse.unwrap_or(d.w_mse),
            w_photo: self.w_photo.unwrap_or(d.w_photo),
            w_perc: self.w_perc.unwrap_or(d.w_perc),
            checkpoint_every: self.checkpoint_every.unwrap_or(d.checkpoint_every),
            seed: self.seed.unwrap_or(d.seed),
            final_f16: self.f16,
            ..d
        }
    }
}

pub fn train_preview(a: TrainPreviewArgs) -> Result<()> {
    let cfg = a.config();
    let mut caching: Option<Progress> = None;
    let mut steps = Progress::with_rate("step", cfg.steps, Duration::from_secs(10));
    let model = match &a.model {
        Some(m) => m.clone(),
        None => engine::dirs::require_default_model_dir().context("no --model given")?,
    };
    let r = engine::train::preview::train_preview(&model, &a.photos, &a.out, &cfg, &mut |e| {
        match e {
            PreviewEvent::Caching { done, total } => {
                caching.get_or_insert_with(|| Progress::new("caching latents + full decodes", total)).set(done, "")
            }
            PreviewEvent::Cached { count, reused } => {
                if let Some(c) = caching.take() {
                    c.finish();
                }
                steps.println(&format!(
                    "{count} training items ({})",
                    if reused { "cache reused" } else { "cache built" }
                ))
            }
            PreviewEvent::Resumed { step } => steps.println(&format!("resuming at step {step}")),
            PreviewEvent::Log(r) => steps.set(
                r.step,
                &format!(
                    "loss {:.5}  l1 {:.5}  mse {:.6}  photo {:.5}  perc {:.4}  lr {:.2e}  {:.0} s",
                    r.loss, r.l1, r.mse, r.photo, r.perc, r.lr, r.secs
                ),
            ),
            PreviewEvent::Checkpoint { step } => steps.println(&format!("checkpoint {step}")),
        }
        true
    })?;
    steps.finish();
    println!("wrote {} (steps {} -> {}, {} items)", r.final_dir.display(), r.start_step, r.steps, r.items);
    Ok(())
}
