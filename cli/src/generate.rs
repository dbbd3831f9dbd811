//! `train-dit`, `sample`, `interpolate`: the class-conditional generator on SAE latents.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;
use engine::checkpoint::load_sae;
use engine::generate::ObjectiveKind;
use engine::model::dit::DitArch;
use engine::preflight::{self, Budget};

use crate::args::{SamplerArg, announce, default_sae_and_dit, flag_hint, value_name};
use crate::progress::Progress;

#[derive(clap::Args)]
pub struct TrainDitArgs {
    /// DINO-SAE checkpoint that encodes the photos (and later decodes the samples); default: the default model.
    #[arg(long)]
    sae: Option<PathBuf>,
    #[arg(long)]
    photos: PathBuf,
    /// Run folder: latents/ cache, ckpt-N/, latest, loss.csv, loss.png, final/.
    #[arg(short, long)]
    out: PathBuf,
    /// DiT size.
    #[arg(long, value_enum, default_value_t, ignore_case = true)]
    preset: DitPreset,
    /// Architecture.
    #[arg(long, value_enum, default_value_t, ignore_case = true)]
    arch: ArchArg,
    #[arg(long, value_parser = positive(), default_value_t = 2000)]
    steps: usize,
    #[arg(long, value_parser = positive(), default_value_t = 32)]
    batch: usize,
    /// Crop side in pixels (multiple of 16); latent grid = crop / 16.
    #[arg(long, default_value_t = 128)]
    crop: u32,
    #[arg(long, value_parser = positive(), default_value_t = 16)]
    crops_per_photo: usize,
    /// Training objective.
    #[arg(long, value_enum, default_value_t, ignore_case = true)]
    objective: ObjectiveArg,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Time shift (default sqrt(C h w / 4096), at least 1).
    #[arg(long)]
    shift: Option<f64>,
    /// EMA decay per step (0: no EMA).
    #[arg(long, default_value_t = 0.999)]
    ema: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// Write final/ in f16 (the shipped form); on a finished run, only rewrites final/.
    #[arg(long)]
    f16: bool,
}

#[derive(clap::Args)]
pub struct SampleArgs {
    /// Generator folder (RUN/final); default: the default model's generator.
    #[arg(long)]
    dit: Option<PathBuf>,
    /// The autoencoder the generator was trained on; default: the default model.
    #[arg(long)]
    sae: Option<PathBuf>,
    /// Class index or name (photo file name, with or without extension).
    #[arg(long, default_value = "0")]
    class: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_parser = positive(), default_value_t = 50)]
    steps: usize,
    /// Sampler on the spheres.
    #[arg(long, value_enum, default_value_t, ignore_case = true)]
    sampler: SamplerArg,
    /// Classifier-free guidance scale (1 = none).
    #[arg(long, default_value_t = 1.0)]
    cfg: f64,
    /// Final patch radius s_vae (default: mean patch norm of the training latents).
    #[arg(long)]
    svae: Option<f64>,
    /// Time shift (default: the training shift).
    #[arg(long)]
    shift: Option<f64>,
    #[arg(long, value_parser = positive(), default_value_t = 4)]
    n: usize,
    #[arg(short, long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct InterpolateArgs {
    a: String,
    b: String,
    /// The autoencoder; default: the default model.
    #[arg(long)]
    sae: Option<PathBuf>,
    /// Generator folder for seed endpoints; default: the default model's generator.
    #[arg(long)]
    dit: Option<PathBuf>,
    /// Intervals: writes steps + 1 frames (frame_000 = A, last = B).
    #[arg(long, value_parser = positive(), default_value_t = 8)]
    steps: usize,
    /// Square size for image endpoints (default: A's size, multiples of 16; B is fitted to it).
    #[arg(long)]
    size: Option<u32>,
    /// Seed endpoints: class index or name.
    #[arg(long, default_value = "0")]
    class: String,
    /// Seed endpoints: sampler steps.
    #[arg(long, value_parser = positive(), default_value_t = 50)]
    sample_steps: usize,
    /// Seed endpoints: sampler on the spheres.
    #[arg(long, value_enum, default_value_t, ignore_case = true)]
    sampler: SamplerArg,
    #[arg(long, default_value_t = 1.0)]
    cfg: f64,
    #[arg(long)]
    svae: Option<f64>,
    /// Output folder of the frames.
    #[arg(short, long)]
    out: PathBuf,
    /// Also write the frames as a looping animation: OUT.gif (GIF) or OUT.png / OUT.apng (APNG).
    #[arg(long, value_name = "FILE")]
    gif: Option<PathBuf>,
    /// Frames per second of the animation.
    #[arg(long, default_value_t = 8.0)]
    fps: f32,
}

/// DiT sizes ([`engine::model::dit::PRESETS`]).
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DitPreset {
    #[default]
    Tiny,
    Mini,
    S,
    B,
    L,
    Xl,
}

/// DiT architectures ([`DitArch`]).
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ArchArg {
    /// hustvl LightningDiT.
    #[default]
    #[value(name = "lightningdit", alias = "lightning")]
    LightningDit,
    /// RAE DiT^DH (wide shallow head).
    Ddt,
}

/// Training objectives ([`ObjectiveKind`]).
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ObjectiveArg {
    /// Riemannian flow matching on the spheres (the paper).
    #[default]
    #[value(alias = "sphere")]
    Rfm,
    /// Linear flow matching (the Euclidean baseline).
    #[value(aliases = ["fm", "euclidean"])]
    Euclid,
}

/// A count of at least 1 (steps, batch, samples), checked by the parser.
fn positive() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// The engine refused to resume a run folder holding a run with other settings.
fn other_run(e: &engine::EngineError) -> bool {
    matches!(e, engine::EngineError::Config(m) if m.contains("holds a run with other settings"))
}

/// The engine needs a generator for seed endpoints.
fn no_generator(e: &engine::EngineError) -> bool {
    matches!(e, engine::EngineError::Config(m) if m.contains("need a generator"))
}

pub fn train_dit(a: TrainDitArgs) -> Result<()> {
    use engine::generate::CacheSpec;
    use engine::train::dit::{DitRunConfig, TrainEvent, train_dit_run};
    let cfg = DitRunConfig {
        preset: value_name(&a.preset),
        arch: match a.arch {
            ArchArg::LightningDit => DitArch::LightningDit,
            ArchArg::Ddt => DitArch::Ddt,
        },
        objective: match a.objective {
            ObjectiveArg::Rfm => ObjectiveKind::Rfm,
            ObjectiveArg::Euclid => ObjectiveKind::Euclid,
        },
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        shift: a.shift,
        ema_decay: a.ema,
        seed: a.seed,
        checkpoint_every: a.checkpoint_every,
        cache: CacheSpec { crop: a.crop, crops_per_photo: a.crops_per_photo, seed: a.seed, ..Default::default() },
        final_f16: a.f16,
        ..Default::default()
    };
    let mut encoding: Option<Progress> = None;
    let mut steps = Progress::with_rate("step", a.steps, Duration::from_secs(10));
    let mut on_event = |e: TrainEvent| {
        match e {
            TrainEvent::Encoding { done, total } => {
                encoding.get_or_insert_with(|| Progress::new("encoding latents", total)).set(done, "")
            }
            TrainEvent::Latents { count, reused } => {
                if let Some(b) = encoding.take() {
                    b.finish();
                }
                steps.println(&format!("{count} latents ({})", if reused { "cache reused" } else { "cached" }))
            }
            TrainEvent::Resumed { step } => steps.println(&format!("resuming from step {step}")),
            TrainEvent::Step(p) => steps.set(
                p.step,
                &format!(
                    "loss {:.4}  lr {:.1e}  {:.0} s ({:.3} s/step)",
                    p.loss,
                    p.lr,
                    p.secs,
                    p.secs / p.trained.max(1) as f64
                ),
            ),
            TrainEvent::Checkpoint { step } => steps.println(&format!("checkpoint ckpt-{step}")),
        }
        true
    };
    let sae = default_sae_and_dit(a.sae.clone(), None)?.0;
    let s = flag_hint(train_dit_run(&sae, &a.photos, &a.out, &cfg, &mut on_event), other_run, "pass another -o")?;
    steps.finish();
    println!("done: {} ({} steps, {} latents)", s.final_dir.display(), s.steps, s.latent_count);
    Ok(())
}

pub fn sample(a: SampleArgs) -> Result<()> {
    use engine::generate::{SampleSpec, load_dit, resolve_class, sample_grid};
    let SampleArgs { dit, sae, class, seed, steps, sampler, cfg, svae, shift, n, out } = a;
    let device = engine::cpu();
    let (sae, dit) = default_sae_and_dit(sae, dit)?;
    let dit = dit.context("no generator: pass --dit (the default model's generator is missing)")?;
    let b = load_dit(&dit, &device).with_context(|| format!("loading {}", dit.display()))?;
    let m = load_sae(&sae, &device, false).with_context(|| format!("loading {}", sae.display()))?.model;
    let spec = SampleSpec {
        class: resolve_class(&b.meta, &class)?,
        count: n,
        seed,
        steps,
        method: sampler.into(),
        cfg_scale: cfg,
        s_vae: svae,
        shift,
        grid: None,
    };
    let grid = spec.grid.unwrap_or(b.meta.grid);
    let est = preflight::sample(&b.model.cfg, &m.cfg, n, grid[0], grid[1], steps, cfg);
    let budget = Budget::from_env();
    preflight::check(&format!("sampling {n} latents on a {}x{} grid", grid[0], grid[1]), &est, &budget, || {
        let per = preflight::sample(&b.model.cfg, &m.cfg, 1, grid[0], grid[1], steps, cfg).bytes;
        let fit =
            ((budget.bytes as f64 - preflight::BASE) / (per - preflight::BASE).max(1.0)).floor().max(0.0) as usize;
        if fit >= 1 {
            format!("at most --n {fit} fits at once; sample in smaller batches")
        } else {
            "not even one sample fits: raise the budget (DINO_SAE_MEMORY_BUDGET)".into()
        }
    })
    .context("memory preflight")?;
    announce(&format!("sampling {n} on a {}x{} grid", grid[0], grid[1]), &est);
    let extra = [("DiT", dit.display().to_string()), ("SAE", sae.display().to_string())];
    let r = sample_grid(&b, &m, &spec, &out, &extra)?;
    println!(
        "wrote {} ({} samples of class {}, {}x{})",
        out.display(),
        n,
        b.meta.classes[spec.class],
        r.grid.width(),
        r.grid.height()
    );
    Ok(())
}

pub fn interpolate(a: InterpolateArgs) -> Result<()> {
    use engine::generate::{Endpoint, InterpSpec, SampleSpec, interpolate, load_dit, resolve_class};
    let InterpolateArgs { a, b, sae, dit, steps, size, class, sample_steps, sampler, cfg, svae, out, gif, fps } = a;
    if let Some(g) = &gif {
        engine::animation::Format::of(g)?;
    }
    let device = engine::cpu();
    let (ea, eb) = (Endpoint::parse(&a)?, Endpoint::parse(&b)?);
    let (sae, dit) = default_sae_and_dit(sae, dit)?;
    let m = load_sae(&sae, &device, false).with_context(|| format!("loading {}", sae.display()))?.model;
    let bundle = match &dit {
        Some(p) => Some(load_dit(p, &device).with_context(|| format!("loading {}", p.display()))?),
        None => None,
    };
    let class = match &bundle {
        Some(bd) => resolve_class(&bd.meta, &class)?,
        None => 0,
    };
    let spec = InterpSpec {
        steps,
        size,
        sample: SampleSpec {
            class,
            steps: sample_steps,
            method: sampler.into(),
            cfg_scale: cfg,
            s_vae: svae,
            ..Default::default()
        },
    };
    let r = flag_hint(interpolate(&m, bundle.as_ref(), &ea, &eb, &spec, &out), no_generator, "pass --dit RUN/final")?;
    println!("wrote {} frames to {}", r.frames.len(), out.display());
    if let Some(g) = gif {
        let frames = r
            .frames
            .iter()
            .map(|p| engine::image_io::load_rgb(p).with_context(|| format!("reading {}", p.display())))
            .collect::<Result<Vec<_>>>()?;
        let f = engine::animation::write(&g, &frames, fps)?;
        println!("wrote {} ({f:?}, {} frames at {fps} fps)", g.display(), frames.len());
    }
    Ok(())
}
