//! Arguments and helpers shared by several commands: which model, which preview decoder, preflight and progress
//! lines.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::ValueEnum;
use engine::backend::BackendChoice;
use engine::checkpoint::load_sae;
use engine::image_io::Fit;
use engine::model::preview::PreviewDecoder;
use engine::model::sae::{DinoSae, SaeConfig};
use engine::preflight;
use engine::tiled;

use crate::progress::Progress;

/// Which DINO-SAE a command runs: a named checkpoint, random weights of a preset, else the default model.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// DINO-SAE checkpoint: our folder (model.safetensors + config.json) or an official state dict (.pt/.pth/.safetensors).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Use random weights of a preset - for timing and debugging only.
    #[arg(long, value_enum)]
    pub random_preset: Option<SaePreset>,
    /// Run even if some weights are missing or mis-shaped (they are zero then).
    #[arg(long)]
    pub allow_incomplete: bool,
}

/// `--preview [--preview-dir DIR]`: decode with the distilled preview decoder.
#[derive(clap::Args, Clone, Debug)]
pub struct PreviewArgs {
    /// Decode with the distilled preview decoder (fast, approximate) instead of the full decoder.
    #[arg(long)]
    pub preview: bool,
    /// Preview decoder folder (default: the model folder's `preview/`).
    #[arg(long)]
    pub preview_dir: Option<PathBuf>,
}

impl ModelArgs {
    /// The named model folder / file, else the default model's folder.
    pub fn path(&self) -> Result<PathBuf> {
        match &self.model {
            Some(p) => Ok(p.clone()),
            None => engine::dirs::require_default_model_dir().context("no --model given"),
        }
    }

    /// Load the model (CPU); says on stderr which one and how complete it is.
    pub fn load(&self) -> Result<DinoSae> {
        let device = engine::cpu();
        if let Some(p) = self.random_preset {
            eprintln!("warning: RANDOM weights ({}); outputs are meaningless", value_name(&p));
            return Ok(DinoSae::random(&p.config(), 0, &device)?.0);
        }
        let path = self.path()?;
        let loaded =
            load_sae(&path, &device, self.allow_incomplete).with_context(|| format!("loading {}", path.display()))?;
        eprintln!("model: {} [{}] {}", path.display(), loaded.format, loaded.report.summary(0));
        Ok(loaded.model)
    }

    /// [`ModelArgs::load`] behind the engine's front door (CPU, the environment's memory budget).
    pub fn open(&self) -> Result<engine::Sae> {
        Ok(engine::Sae::new(self.load()?, &engine::cpu(), engine::preflight::Budget::from_env()))
    }

    /// The preview decoder for `--preview`: `dir`, else the model folder's `preview/` (the default model's when no
    /// --model is given).
    pub fn load_preview(&self, dir: Option<&Path>) -> Result<PreviewDecoder> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => {
                let m = self.path()?;
                engine::model::preview::preview_dir_for(&m).with_context(|| {
                    format!(
                        "{} has no preview decoder (preview/); distil one with `dino-sae train-preview`",
                        m.display()
                    )
                })?
            }
        };
        let (p, report) =
            PreviewDecoder::load(&dir, &engine::cpu()).with_context(|| format!("loading preview {}", dir.display()))?;
        eprintln!(
            "preview: {} ({:?}, {:.2} M params) {}",
            dir.display(),
            p.cfg.arch,
            p.cfg.param_count() as f64 / 1e6,
            report.summary(0)
        );
        Ok(p)
    }
}

/// The name clap shows for a value (`EulerProj` -> `euler-proj`).
pub fn value_name<T: ValueEnum>(v: &T) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

/// How to make H, W multiples of 16 ([`Fit`]).
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FitArg {
    /// Centre-crop to the largest multiple of 16.
    #[default]
    Crop,
    /// Pad to the next multiple of 16 by edge replication.
    Pad,
    /// Resize to the nearest multiple of 16.
    Resize,
}

impl From<FitArg> for Fit {
    fn from(f: FitArg) -> Self {
        match f {
            FitArg::Crop => Fit::Crop,
            FitArg::Pad => Fit::Pad,
            FitArg::Resize => Fit::Resize,
        }
    }
}

/// Where tensors run ([`BackendChoice`]).
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendArg {
    /// wgpu on a hardware GPU, else the CPU.
    Auto,
    /// The CPU (burn's flex backend).
    #[default]
    #[value(alias = "flex")]
    Cpu,
    /// wgpu on any adapter (software ones included).
    #[value(alias = "gpu")]
    Wgpu,
}

impl From<BackendArg> for BackendChoice {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Cpu => BackendChoice::Cpu,
            BackendArg::Wgpu => BackendChoice::Wgpu,
        }
    }
}

/// A DINO-SAE architecture at random weights ([`SaeConfig::preset`]).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaePreset {
    /// DINOv2-S/14 encoder, small DC-AE decoder.
    #[value(alias = "small-dinov2")]
    Small,
    /// The released DINO-SAE (DINOv3-L/16).
    #[value(alias = "dino-sae-l16")]
    Released,
}

impl SaePreset {
    pub fn config(self) -> SaeConfig {
        match self {
            SaePreset::Small => SaeConfig::small_dinov2(),
            SaePreset::Released => SaeConfig::released(),
        }
    }
}

/// The sphere sampler of a generator ([`engine::sampler::SphereStep`]).
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[value(rename_all = "kebab-case")]
pub enum SamplerArg {
    /// Euler step, then projection back onto the spheres.
    #[default]
    #[value(alias = "euler")]
    EulerProj,
    /// Rotation along the great circle (exponential map).
    #[value(alias = "exp")]
    ExpMap,
}

impl From<SamplerArg> for engine::sampler::SphereStep {
    fn from(s: SamplerArg) -> Self {
        match s {
            SamplerArg::EulerProj => Self::EulerProj,
            SamplerArg::ExpMap => Self::ExpMap,
        }
    }
}

/// The autoencoder and generator a generation command uses: the ones named, else the default model and its
/// generator (a named autoencoder without a named generator gets none).
pub fn default_sae_and_dit(sae: Option<PathBuf>, dit: Option<PathBuf>) -> Result<(PathBuf, Option<PathBuf>)> {
    match sae {
        Some(s) => Ok((s, dit)),
        None => Ok((
            engine::dirs::require_default_model_dir().context("no --sae given")?,
            dit.or_else(engine::dirs::default_dit_dir),
        )),
    }
}

/// The engine's error with the command-line flag that addresses it appended, when `applies` picks the error
/// (engine messages never name flags; the command line knows which flag it was).
pub fn flag_hint<T>(r: engine::Result<T>, applies: fn(&engine::EngineError) -> bool, hint: &str) -> Result<T> {
    r.map_err(|e| if applies(&e) { anyhow::anyhow!("{e} ({hint})") } else { e.into() })
}

/// A memory preflight refusal.
pub fn too_big(e: &engine::EngineError) -> bool {
    matches!(e, engine::EngineError::TooBig { .. })
}

/// One stderr line with what the preflight expects of a job (memory beyond the weights, FLOPs, a time guess at
/// 60 GFLOP/s); jobs estimated at more than 10 s say so.
pub fn announce(what: &str, est: &preflight::Estimate) {
    let secs = est.seconds_at(60.0);
    eprintln!(
        "preflight: {what}: about {} of memory, {:.1} GFLOP{}",
        preflight::human(est.bytes),
        est.flops / 1e9,
        if secs > 10.0 { format!(" (roughly {secs:.0} s on 2 cores; a long job)") } else { String::new() }
    );
}

/// The progress of a tiled render (`<what>: tile k/n`, the engine's ETA): a bar on a terminal, else a line per tile.
pub fn progress_line(what: &'static str) -> impl FnMut(tiled::TileProgress) {
    let mut bar: Option<Progress> = None;
    move |t: tiled::TileProgress| {
        let b = bar.get_or_insert_with(|| Progress::new(format!("{what}: tile"), t.of));
        b.set(t.done, &format!("ETA {:.0} s", t.eta_secs));
        if t.done >= t.of
            && let Some(b) = bar.take()
        {
            b.finish();
        }
    }
}
