//! What the worker keeps between jobs ([`State`]): the loaded models behind the engine's front door, the current
//! latent and image, the generator, teacher, LPIPS weights and preview decoder; and the small helpers every job uses.

use std::time::Instant;

use burn::module::Module;
use image::RgbImage;

use super::protocol::*;
use crate::Sae;
use crate::autoencoder::Tiles;
use crate::checkpoint::load_sae_within;
use crate::error::{EngineError, Result};
use crate::metrics::RgbF32;
use crate::model::sae::{DinoSae, SaeConfig};
use crate::preflight::Budget;
use crate::tensor_file::RawTensor;

/// A model the worker holds, behind the engine's front door, with what the studio is told about it.
pub(super) struct LoadedModel {
    pub(super) sae: Sae,
    pub(super) info: ModelInfo,
}

/// What the worker keeps between jobs.
pub(super) struct State {
    pub(super) device: burn::tensor::Device,
    pub(super) main: Option<LoadedModel>,
    /// Latent `[1, C, h, w]` and fitted input of the current image, and the version of that latent.
    pub(super) current: Option<(RawTensor, RgbImage)>,
    pub(super) version: u64,
    /// Latents of every image reconstructed with this model (for the joint PCA), newest last, at most 8.
    pub(super) history: Vec<RawTensor>,
    /// The current image's latents before each inpainting, newest last (undo), at most 16.
    pub(super) undo_latents: Vec<RawTensor>,
    /// Patches copied for pasting: the latent they came from and their indices in it.
    pub(super) clipboard: Option<(RawTensor, Vec<usize>)>,
    pub(super) dit: Option<(crate::generate::DitBundle, GeneratorInfo)>,
    pub(super) others: Vec<LoadedModel>,
    pub(super) teacher: Option<(crate::model::vit::Vit, String)>,
    /// LPIPS-VGG-like weights, loaded on first use (Err: why not; reported once per request).
    pub(super) lpips: Option<std::result::Result<crate::lpips::LpipsVgg, String>>,
    /// The fitted input and the reconstructions (main, then compare models) of the current image.
    pub(super) recons: Option<(RgbF32, Vec<RgbF32>)>,
    /// The memory budget every job is preflighted against (None: `Budget::from_env()`, read per job).
    pub(super) budget: Option<Budget>,
    /// The main model's preview decoder (steer previews, sampling previews).
    pub(super) preview: Option<(crate::model::preview::PreviewDecoder, PreviewInfo)>,
}

impl State {
    pub(super) fn new(device: burn::tensor::Device, budget: Option<Budget>) -> Self {
        Self {
            device,
            main: None,
            current: None,
            version: 0,
            history: Vec::new(),
            undo_latents: Vec::new(),
            clipboard: None,
            dit: None,
            others: Vec::new(),
            teacher: None,
            lpips: None,
            recons: None,
            budget,
            preview: None,
        }
    }

    pub(super) fn budget(&self) -> Budget {
        self.budget.clone().unwrap_or_else(Budget::from_env).on(&self.device)
    }

    /// Give every loaded model the budget of the job about to run (the environment's is read per job when the
    /// worker was not given one).
    pub(super) fn refresh_budget(&mut self) {
        let budget = self.budget();
        for h in self.main.iter_mut().chain(self.others.iter_mut()) {
            h.sae.set_budget(budget.clone());
        }
    }

    pub(super) fn models(&self) -> Models {
        Models {
            main: self.main.as_ref().map(|h| h.info.clone()),
            compare: self.others.iter().map(|h| h.info.clone()).collect(),
            teacher: self.teacher.as_ref().map(|t| t.1.clone()),
            generator: self.dit.as_ref().map(|d| d.1.clone()),
            preview: self.preview.as_ref().map(|p| p.1.clone()),
        }
    }

    /// Load the preview decoder at `dir` for the main model (its latent width must match).
    pub(super) fn load_preview(&mut self, dir: &std::path::Path) -> Result<()> {
        let (p, _report) = crate::model::preview::PreviewDecoder::load(dir, &self.device)?;
        let m = self.model()?;
        if p.cfg.latent_channels != m.cfg.decoder.latent_channels {
            return Err(EngineError::Config(format!(
                "preview decoder expects {} latent channels, the model has {}",
                p.cfg.latent_channels, m.cfg.decoder.latent_channels
            )));
        }
        let info = PreviewInfo {
            path: dir.to_path_buf(),
            params: p.num_params(),
            gflop_256: crate::flops::preview(&p.cfg, 16, 16) / 1e9,
        };
        self.preview = Some((p, info));
        Ok(())
    }

    /// Look for the preview decoder that ships with the main model (`MODEL/preview`); a broken one is reported,
    /// the model still works without it.
    pub(super) fn find_preview(&mut self, src: &ModelSource, emit: &dyn Fn(Event)) {
        self.preview = None;
        let dir = match src {
            ModelSource::Default => crate::model::preview::default_preview_dir(),
            ModelSource::Path(p) => crate::model::preview::preview_dir_for(p),
            ModelSource::RandomPreset(_) => None,
        };
        if let Some(d) = dir
            && let Err(e) = self.load_preview(&d)
        {
            emit(Event::Failed(Failed {
                kind: None,
                id: None,
                error: format!("preview decoder {}: {e}", d.display()),
                cancelled: false,
            }));
        }
    }

    pub(super) fn model(&self) -> Result<&DinoSae> {
        Ok(self.sae()?.model())
    }

    /// The main model behind the engine's front door (preflight and tiling built in).
    pub(super) fn sae(&self) -> Result<&Sae> {
        self.main.as_ref().map(|h| &h.sae).ok_or_else(|| EngineError::Config("no model loaded".into()))
    }

    pub(super) fn current(&self) -> Result<&(RawTensor, RgbImage)> {
        self.current.as_ref().ok_or_else(|| EngineError::Config("no image encoded yet".into()))
    }

    pub(super) fn generator(&self) -> Result<&crate::generate::DitBundle> {
        self.dit.as_ref().map(|d| &d.0).ok_or_else(|| EngineError::Config("no generator loaded".into()))
    }
}

pub(super) fn held(
    sae: Sae,
    name: String,
    report: &crate::weights::LoadReport,
    random: bool,
    source: ModelSource,
) -> LoadedModel {
    let model = sae.model();
    let params = model.num_params();
    let info = ModelInfo {
        name,
        config: serde_json::to_string_pretty(&model.cfg).unwrap_or_default(),
        params,
        bytes: params as u64 * 4,
        report: report.summary(8),
        random,
        source,
    };
    LoadedModel { sae, info }
}

/// Load a model within the worker's budget (the file is parsed and the config checked against it).
pub(super) fn load_held(src: &ModelSource, device: &burn::tensor::Device, budget: Budget) -> Result<LoadedModel> {
    let open = |dir: &std::path::Path| load_sae_within(dir, device, false, &budget);
    match src {
        ModelSource::Default => {
            let l = open(&crate::dirs::require_default_model_dir()?)?;
            Ok(held(Sae::new(l.model, device, budget), "default model".into(), &l.report, false, src.clone()))
        }
        ModelSource::Path(p) => {
            let l = open(p)?;
            Ok(held(Sae::new(l.model, device, budget), p.display().to_string(), &l.report, false, src.clone()))
        }
        ModelSource::RandomPreset(p) => {
            let cfg = SaeConfig::preset(p).ok_or_else(|| EngineError::Config(format!("unknown preset {p}")))?;
            let (m, r) = DinoSae::random(&cfg, 0, device)?;
            Ok(held(Sae::new(m, device, budget), format!("{p} (RANDOM weights)"), &r, true, src.clone()))
        }
    }
}

pub(super) fn generator_info(b: &crate::generate::DitBundle, path: Option<std::path::PathBuf>) -> GeneratorInfo {
    GeneratorInfo { path, classes: b.meta.classes.clone(), grid: b.meta.grid, s_vae: b.meta.s_vae }
}

/// A front-door job of the worker: one pass (the studio works on a working copy; `Render` asks for tiles), with the
/// ticket's cancel token.
pub(super) fn one_pass(ticket: &Ticket) -> crate::autoencoder::Job {
    crate::autoencoder::Job { tiles: Tiles::Never, cancel: ticket.cancel.clone(), ..Default::default() }
}

pub(super) fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}
