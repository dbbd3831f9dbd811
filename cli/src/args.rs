//! Arguments and helpers shared by several commands: which model, which preview decoder, preflight and progress
//! lines.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use engine::checkpoint::load_sae;
use engine::model::preview::PreviewDecoder;
use engine::model::sae::{DinoSae, SaeConfig};
use engine::preflight;
use engine::render;

/// Which DINO-SAE a command runs: a named checkpoint, random weights of a preset, else the default model.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// DINO-SAE checkpoint: our folder (model.safetensors + config.json) or an official state dict (.pt/.pth/.safetensors).
    #[arg(long, short = 'm')]
    pub model: Option<PathBuf>,
    /// Use random weights of a preset (`small`, `released`) - for timing and debugging only.
    #[arg(long)]
    pub random_preset: Option<String>,
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
            None => engine::worker::require_default_model_dir().context("no --model given"),
        }
    }

    /// Load the model (CPU); says on stderr which one and how complete it is.
    pub fn load(&self) -> Result<DinoSae> {
        let device = engine::cpu();
        if let Some(p) = &self.random_preset {
            let cfg = SaeConfig::preset(p).with_context(|| format!("unknown preset {p} (small, released)"))?;
            eprintln!("warning: RANDOM weights ({p}); outputs are meaningless");
            return Ok(DinoSae::random(&cfg, 0, &device)?.0);
        }
        let path = self.path()?;
        let loaded =
            load_sae(&path, &device, self.allow_incomplete).with_context(|| format!("loading {}", path.display()))?;
        eprintln!("model: {} [{}] {}", path.display(), loaded.format, loaded.report.summary(0));
        Ok(loaded.model)
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

/// The autoencoder and generator a generation command uses: the ones named, else the default model and its
/// generator (a named autoencoder without a named generator gets none).
pub fn default_sae_and_dit(sae: Option<PathBuf>, dit: Option<PathBuf>) -> Result<(PathBuf, Option<PathBuf>)> {
    match sae {
        Some(s) => Ok((s, dit)),
        None => Ok((
            engine::worker::require_default_model_dir().context("no --sae given")?,
            dit.or_else(engine::worker::default_dit_dir),
        )),
    }
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

/// A progress callback printing `\r<what> tile k/n, ETA s` on stderr (newline after the last tile).
pub fn progress_line(what: &'static str) -> impl FnMut(render::TileProgress) {
    move |p: render::TileProgress| {
        eprint!(
            "\r{what}: tile {}/{} ({:.0} %), ETA {:.0} s   ",
            p.done,
            p.of,
            100.0 * p.done as f64 / p.of.max(1) as f64,
            p.eta_secs
        );
        if p.done == p.of {
            eprintln!();
        }
    }
}
