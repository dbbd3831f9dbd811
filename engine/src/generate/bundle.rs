//! Saving and loading a generator: the DiT's state dict in the reference names plus `config.json` ([`DitMeta`]).

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::model::dit::{Dit, DitArch, DitConfig, rope_values};
use crate::rfm::{EuclidFm, FlowObjective, SphereFm, TimeDist};
use crate::tensor_file::{Precision, RawTensor, TensorMap, read_safetensors, write_safetensors};
use crate::weights::{ParamNames, WeightSource, export};

use super::{cfg_err, read_json, write_json};

/// `kind` of a saved generator's `config.json`.
pub const DIT_KIND: &str = "dino_sae_dit";

struct IdCollector(Vec<ParamId>);

impl ModuleVisitor for IdCollector {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id);
    }
}

fn param_ids<M: Module>(m: &M) -> Vec<ParamId> {
    let mut c = IdCollector(Vec::new());
    m.visit(&mut c);
    c.0
}

/// Reference state-dict name of every parameter of `model` (found by building a model of the same
/// config through [`Dit::load`] and pairing parameters in visiting order).
pub fn dit_param_names(model: &Dit) -> Result<ParamNames> {
    let mut ws = WeightSource::random(0, &crate::cpu());
    let reference = Dit::load(&mut ws, &model.cfg);
    let ref_names = ws.names();
    let (a, b) = (param_ids(&reference), param_ids(model));
    if a.len() != b.len() {
        return Err(EngineError::Shape(format!("DiT has {} parameters, its config builds {}", b.len(), a.len())));
    }
    let mut out = ParamNames::new();
    for (ra, mb) in a.iter().zip(&b) {
        let name = ref_names.get(ra).ok_or_else(|| EngineError::Data("unnamed DiT parameter".into()))?;
        out.insert(*mb, name.clone());
    }
    Ok(out)
}

/// The full reference state dict of `model`: its parameters plus the constant tables [`Dit::load`]
/// reads (`pos_embed`, RoPE `freqs_cos/sin`, DDT `t_embedder.W`).
pub fn dit_state_dict(model: &Dit, names: &ParamNames) -> Result<TensorMap> {
    let mut map = export(model, names)?;
    let cfg = &model.cfg;
    if let Some(p) = &model.pos_embed {
        map.insert("pos_embed".into(), RawTensor::from_tensor(p.clone())?);
    }
    if let Some(w) = &model.t_embedder.fourier_w {
        map.insert("t_embedder.W".into(), RawTensor::from_tensor(w.clone())?);
    }
    if cfg.use_rope {
        let g = cfg.input_size / cfg.patch_size;
        let tables: Vec<(&str, usize)> = match cfg.arch {
            DitArch::LightningDit => vec![("feat_rope", cfg.hidden_size / cfg.num_heads)],
            DitArch::Ddt => {
                let h = cfg.head.as_ref().map_or(cfg.num_heads, |h| h.num_heads);
                vec![("enc_feat_rope", cfg.hidden_size / cfg.num_heads), ("dec_feat_rope", cfg.head_width() / h)]
            }
        };
        for (name, hd) in tables {
            let (cos, sin) = rope_values(hd, g, g);
            map.insert(format!("{name}.freqs_cos"), RawTensor::new(vec![g * g, hd], cos)?);
            map.insert(format!("{name}.freqs_sin"), RawTensor::new(vec![g * g, hd], sin)?);
        }
    }
    Ok(map)
}

/// Build a [`Dit`] from a state dict; every key must be used and every parameter present.
pub fn dit_from_state_dict(map: TensorMap, cfg: &DitConfig, device: &Device) -> Result<(Dit, ParamNames)> {
    cfg.validate()?;
    let mut ws = WeightSource::from_map(map, device);
    let m = Dit::load(&mut ws, cfg);
    let names = ws.names();
    let rep = ws.finish();
    if !rep.is_complete() || !rep.unexpected.is_empty() {
        return Err(EngineError::IncompleteWeights(rep.summary(12)));
    }
    Ok((m, names))
}

/// Which training objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectiveKind {
    /// Riemannian flow matching on the product of spheres (the paper).
    Rfm,
    /// Euclidean linear flow matching (RAE baseline).
    Euclid,
}

impl ObjectiveKind {
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "rfm" | "sphere" => Ok(Self::Rfm),
            "euclid" | "fm" | "euclidean" => Ok(Self::Euclid),
            o => Err(cfg_err(format!("unknown objective `{o}` (rfm, euclid)"))),
        }
    }

    /// The objective with time shift `shift`.
    pub fn objective(self, shift: f64) -> FlowObjective {
        match self {
            Self::Rfm => FlowObjective::Sphere(SphereFm { lambda_rad: 0.1, shift, time: TimeDist::paper() }),
            Self::Euclid => FlowObjective::Euclid(EuclidFm { shift, ..Default::default() }),
        }
    }
}

/// `config.json` of a saved generator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DitMeta {
    pub kind: String,
    pub dit: DitConfig,
    /// Class names (index = label).
    pub classes: Vec<String>,
    pub objective_kind: ObjectiveKind,
    pub objective: FlowObjective,
    /// Latent grid `[h, w]` the model was trained on.
    pub grid: [usize; 2],
    /// Latent channels C.
    pub channels: usize,
    /// Default final patch radius for sampling (mean patch norm of the training latents).
    pub s_vae: f64,
    /// Training steps behind these weights.
    pub steps: usize,
    /// True when the weights are the EMA.
    pub ema: bool,
    /// Fingerprint of the SAE whose latents it learned.
    pub sae: String,
}

impl DitMeta {
    fn validate(&self) -> Result<()> {
        if self.kind != DIT_KIND {
            return Err(cfg_err(format!("config.json is a `{}`, not a `{DIT_KIND}`", self.kind)));
        }
        if self.dit.in_channels != self.channels {
            return Err(cfg_err(format!(
                "config.json: DiT in_channels {} but latent C {}",
                self.dit.in_channels, self.channels
            )));
        }
        let g = self.dit.input_size / self.dit.patch_size.max(1);
        if self.grid != [g, g] {
            return Err(cfg_err(format!("config.json: grid {:?} but the DiT's native grid is {g}x{g}", self.grid)));
        }
        if self.classes.len() != self.dit.num_classes {
            return Err(cfg_err(format!(
                "config.json: {} class names for {} classes",
                self.classes.len(),
                self.dit.num_classes
            )));
        }
        Ok(())
    }
}

/// A generator ready to sample.
#[derive(Debug)]
pub struct DitBundle {
    pub model: Dit,
    pub meta: DitMeta,
}

/// Write `dir/model.safetensors` (weights in `precision`; they load back as f32) and `dir/config.json` (atomically
/// each).
pub fn save_dit(dir: &Path, model: &Dit, names: &ParamNames, meta: &DitMeta, precision: Precision) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let map = dit_state_dict(model, names)?;
    let md = [("format".to_string(), "pt".to_string())].into_iter().collect();
    write_safetensors(dir.join("model.safetensors"), &map, &md, precision)?;
    write_json(&dir.join("config.json"), meta)
}

/// Load a generator folder (`model.safetensors` + `config.json`; a path to either file works too).
pub fn load_dit(path: &Path, device: &Device) -> Result<DitBundle> {
    let dir = if path.is_file() { path.parent().unwrap_or(Path::new(".")).to_path_buf() } else { path.to_path_buf() };
    let cfg_path = dir.join("config.json");
    if !cfg_path.exists() {
        return Err(cfg_err(format!("{} has no config.json (expected a `train-dit` final/ folder)", dir.display())));
    }
    let meta: DitMeta = read_json(&cfg_path)?;
    meta.validate()?;
    let map = read_safetensors(dir.join("model.safetensors"))?;
    let (model, _) = dit_from_state_dict(map, &meta.dit, device)?;
    Ok(DitBundle { model, meta })
}
