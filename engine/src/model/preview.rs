//! A distilled *preview decoder*: latent `[B, C, h, w]` -> RGB `[B, 3, 16h, 16w]` at a small fraction of the full
//! DC-AE decoder's cost, for live previews while steering and sampling (issue 17; in the spirit of TAESD: plain
//! 3x3 convolutions + ReLU, x2 upsampling, trained against the big decoder's outputs).
//!
//! Two architectures ([`PreviewArch`]):
//! - `linear`: one 1x1 convolution `C -> 3*16*16` and a x16 pixel shuffle: every patch is an affine function of its
//!   own latent vector (the cheapest tier and the baseline).
//! - `conv`: a 1x1 convolution `C -> widths[0]` + ReLU at the latent grid; then per level `i` (the grid times
//!   `2^i`): for `i > 0` a nearest-x2 + 3x3 convolution `widths[i-1] -> widths[i]` + ReLU, then `depths[i]`
//!   residual blocks `x <- relu(x + conv3x3(x))`; finally a 3x3 convolution `widths[last] -> 3 s^2` and a pixel
//!   shuffle by `s = 16 / 2^(levels-1)`.
//!
//! Output values follow the SAE decoder's convention (`pixels.output`, see
//! [`crate::model::sae::PixelConfig`]), so [`crate::image_io::from_tensor`] reads both alike.
//!
//! On disk: a folder with `model.safetensors` (f32 or f16) and `config.json` ([`PreviewMeta`]); a model folder's
//! preview decoder lives in its `preview/` subfolder.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::host;
use super::nn::Conv2d;
use super::sae::PixelConfig;
use crate::error::{EngineError, Result};
use crate::tensor_file::{Precision, TensorMap};
use crate::weights::{LoadReport, ParamNames, WeightSource};

/// `kind` of a preview decoder's `config.json`.
pub const PREVIEW_KIND: &str = "dino_sae_preview";
/// Name of the preview folder inside a model folder.
pub const PREVIEW_SUBDIR: &str = "preview";

/// Which preview network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreviewArch {
    /// Per-patch affine map to 16x16x3 pixels.
    Linear,
    /// Small conv net (see the module docs).
    Conv,
}

/// Architecture of a preview decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreviewConfig {
    pub arch: PreviewArch,
    /// Latent channels C (the SAE's `decoder.latent_channels`).
    pub latent_channels: usize,
    /// `conv`: width of each resolution level (level 0 at the latent grid, level i at 2^i times it); 1 to 5 levels.
    #[serde(default)]
    pub widths: Vec<usize>,
    /// `conv`: residual 3x3 blocks per level (same length as `widths`).
    #[serde(default)]
    pub depths: Vec<usize>,
    /// Output convention (that of the SAE it previews).
    #[serde(default)]
    pub pixels: PixelConfig,
}

/// Named presets (the FLOPs and times at 256x256 are in docs/PERFORMANCE.md).
pub const PRESETS: [&str; 5] = ["linear", "tiny", "small", "base", "wide"];

impl PreviewConfig {
    /// A named preset for latents of `c` channels: `linear`, `tiny`, `small` (the default), `base`, `wide`.
    pub fn preset(name: &str, c: usize) -> Result<Self> {
        let conv = |widths: &[usize], depths: &[usize]| Self {
            arch: PreviewArch::Conv,
            latent_channels: c,
            widths: widths.to_vec(),
            depths: depths.to_vec(),
            pixels: PixelConfig::default(),
        };
        Ok(match name {
            "linear" => Self {
                arch: PreviewArch::Linear,
                latent_channels: c,
                widths: vec![],
                depths: vec![],
                pixels: PixelConfig::default(),
            },
            "tiny" => conv(&[128, 64], &[2, 1]),
            "small" => conv(&[128, 64, 32], &[2, 1, 1]),
            "base" => conv(&[128, 64, 32, 16], &[2, 1, 1, 1]),
            "wide" => conv(&[192, 96, 48], &[3, 2, 1]),
            o => {
                return Err(EngineError::Config(format!("unknown preview preset {o} ({})", PRESETS.join(", "))));
            }
        })
    }

    /// Pixel-shuffle factor of the output head.
    pub fn shuffle(&self) -> usize {
        match self.arch {
            PreviewArch::Linear => 16,
            PreviewArch::Conv => 16 >> (self.widths.len().max(1) - 1),
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::Config(format!("preview config: {m}")));
        if self.latent_channels == 0 {
            return bad("latent_channels must be positive".into());
        }
        if self.arch == PreviewArch::Conv {
            if self.widths.is_empty() || self.widths.len() > 5 {
                return bad(format!("1 to 5 levels, got {}", self.widths.len()));
            }
            if self.depths.len() != self.widths.len() {
                return bad(format!("{} widths but {} depths", self.widths.len(), self.depths.len()));
            }
            if self.widths.contains(&0) || self.depths.iter().any(|&d| d > 16) || self.widths.iter().any(|&w| w > 4096)
            {
                return bad(format!("widths {:?} / depths {:?} out of range", self.widths, self.depths));
            }
        }
        Ok(())
    }

    /// Parameters (weights + biases).
    pub fn param_count(&self) -> usize {
        let conv = |ci: usize, co: usize, k: usize| ci * co * k * k + co;
        let s = self.shuffle();
        match self.arch {
            PreviewArch::Linear => conv(self.latent_channels, 3 * s * s, 1),
            PreviewArch::Conv => {
                let w = &self.widths;
                let mut n = conv(self.latent_channels, w[0], 1);
                for i in 0..w.len() {
                    if i > 0 {
                        n += conv(w[i - 1], w[i], 3);
                    }
                    n += self.depths[i] * conv(w[i], w[i], 3);
                }
                n + conv(w[w.len() - 1], 3 * s * s, 3)
            }
        }
    }
}

/// `config.json` of a preview folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreviewMeta {
    pub kind: String,
    pub preview: PreviewConfig,
    /// Training steps behind the weights (0: untrained / unknown).
    #[serde(default)]
    pub steps: usize,
    /// Fingerprint of the SAE file it was distilled from (empty: unknown).
    #[serde(default)]
    pub sae: String,
}

/// One resolution level of the conv architecture.
#[derive(Module, Debug)]
pub struct PreviewLevel {
    /// nearest x2 + 3x3 conv from the previous level (None at level 0).
    pub up: Option<Conv2d>,
    pub blocks: Vec<Conv2d>,
}

/// The preview decoder. See the module docs.
#[derive(Module, Debug)]
pub struct PreviewDecoder {
    /// 1x1 convolution from the latent.
    pub input: Conv2d,
    pub levels: Vec<PreviewLevel>,
    /// 3x3 output head (`conv` only).
    pub out: Option<Conv2d>,
    #[module(skip)]
    pub cfg: PreviewConfig,
    #[module(skip)]
    pub names: ParamNames,
}

/// `relu(a + b)` (one host pass on the CPU fast path).
fn add_relu(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    if host::eligible(&a) && host::eligible(&b) {
        let (device, shape) = (a.device(), a.shape());
        let mut va = host_vec(a);
        let vb = host_vec(b);
        for (x, y) in va.iter_mut().zip(&vb) {
            *x = (*x + *y).max(0.0);
        }
        return Tensor::from_data(TensorData::new(va, shape), &device);
    }
    relu(a + b)
}

/// ReLU (one host pass on the CPU fast path).
fn relu_fast(a: Tensor<4>) -> Tensor<4> {
    if host::eligible(&a) {
        let (device, shape) = (a.device(), a.shape());
        let mut v = host_vec(a);
        for x in v.iter_mut() {
            *x = x.max(0.0);
        }
        return Tensor::from_data(TensorData::new(v, shape), &device);
    }
    relu(a)
}

fn host_vec(x: Tensor<4>) -> Vec<f32> {
    let data = x.into_data();
    match data.as_slice::<f32>() {
        Ok(_) => data.try_into_vec::<f32>().unwrap_or_default(),
        Err(_) => data.iter::<f32>().collect(),
    }
}

/// `pixel_shuffle(s)`: `out[b, c, s*y+i, s*x+j] = in[b, c*s*s + i*s + j, y, x]`.
///
/// # Shapes
/// - x: `[B, C*s*s, H, W]` -> `[B, C, s*H, s*W]`
pub fn pixel_shuffle(x: Tensor<4>, s: usize) -> Tensor<4> {
    if s == 1 {
        return x;
    }
    let [b, css, h, w] = x.dims();
    let c = css / (s * s);
    x.reshape([b, c, s, s, h, w]).permute([0, 1, 4, 2, 5, 3]).reshape([b, c, s * h, s * w])
}

impl PreviewDecoder {
    /// Build from a weight source (names: `input.*`, `levels.{i}.up.*`, `levels.{i}.blocks.{j}.*`, `out.*`).
    pub fn build(ws: &mut WeightSource, cfg: &PreviewConfig) -> Result<Self> {
        cfg.validate()?;
        let c = cfg.latent_channels;
        let s = cfg.shuffle();
        let (input, levels, out) = match cfg.arch {
            PreviewArch::Linear => (Conv2d::load(ws, "input", c, 3 * s * s, 1, 1, 1, true), Vec::new(), None),
            PreviewArch::Conv => {
                let w = &cfg.widths;
                let input = Conv2d::load(ws, "input", c, w[0], 1, 1, 1, true);
                let levels = (0..w.len())
                    .map(|i| PreviewLevel {
                        up: (i > 0).then(|| Conv2d::load(ws, &format!("levels.{i}.up"), w[i - 1], w[i], 3, 1, 1, true)),
                        blocks: (0..cfg.depths[i])
                            .map(|j| Conv2d::load(ws, &format!("levels.{i}.blocks.{j}"), w[i], w[i], 3, 1, 1, true))
                            .collect(),
                    })
                    .collect();
                let out = Conv2d::load(ws, "out", w[w.len() - 1], 3 * s * s, 3, 1, 1, true);
                (input, levels, Some(out))
            }
        };
        Ok(Self { input, levels, out, cfg: cfg.clone(), names: ws.names() })
    }

    /// Random weights (PyTorch's default init; seeded), e.g. to start a distillation.
    pub fn random(cfg: &PreviewConfig, seed: u64, device: &Device) -> Result<(Self, LoadReport)> {
        let mut ws = WeightSource::random(seed, device);
        let m = Self::build(&mut ws, cfg)?;
        Ok((m, ws.finish()))
    }

    /// From a name -> tensor map. Incomplete, mis-shaped or non-finite weights are refused; unexpected keys are
    /// reported.
    pub fn from_map(map: TensorMap, cfg: &PreviewConfig, device: &Device) -> Result<(Self, LoadReport)> {
        let mut ws = WeightSource::from_map(map, device);
        let m = Self::build(&mut ws, cfg)?;
        let report = ws.finish();
        report.check()?;
        Ok((m, report))
    }

    /// Load a preview folder (`model.safetensors` + `config.json`; a path to either file works too).
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        let path = path.as_ref();
        let dir =
            if path.is_file() { path.parent().unwrap_or(Path::new(".")).to_path_buf() } else { path.to_path_buf() };
        let meta = read_meta(&dir)?;
        let file = dir.join("model.safetensors");
        if !file.exists() {
            return Err(EngineError::Checkpoint(format!("{} has no model.safetensors", dir.display())));
        }
        let map = crate::tensor_file::read_safetensors(&file)?;
        Self::from_map(map, &meta.preview, device)
    }

    /// The parameters under their names (f32 host tensors).
    pub fn state_dict(&self) -> Result<TensorMap> {
        crate::weights::export(self, &self.names)
    }

    /// Write `dir/model.safetensors` and `dir/config.json` (each atomically).
    pub fn save(&self, dir: impl AsRef<Path>, precision: Precision, steps: usize, sae: &str) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
        let meta = PreviewMeta { kind: PREVIEW_KIND.into(), preview: self.cfg.clone(), steps, sae: sae.into() };
        let md = [("format".to_string(), "pt".to_string())].into_iter().collect();
        crate::tensor_file::write_safetensors(dir.join("model.safetensors"), &self.state_dict()?, &md, precision)?;
        let json = serde_json::to_string_pretty(&meta).map_err(|e| EngineError::Config(e.to_string()))?;
        crate::tensor_file::atomic_write(&dir.join("config.json"), json.as_bytes())
    }

    /// Latent -> pixels in the SAE decoder's output convention (`cfg.pixels.output`).
    ///
    /// # Shapes
    /// - z: `[B, C, h, w]` -> `[B, 3, 16h, 16w]`
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let s = self.cfg.shuffle();
        let Some(out) = &self.out else {
            return pixel_shuffle(self.input.forward(z), s);
        };
        let mut x = relu_fast(self.input.forward(z));
        for lv in &self.levels {
            if let Some(up) = &lv.up {
                x = relu_fast(up.forward_up2(x));
            }
            for b in &lv.blocks {
                let y = b.forward(x.clone());
                x = add_relu(x, y);
            }
        }
        pixel_shuffle(out.forward(x), s)
    }

    /// [`Self::forward`] with the latent's shape checked.
    ///
    /// # Shapes
    /// - z: `[B, C, h, w]` -> `[B, 3, 16h, 16w]`
    pub fn decode(&self, z: Tensor<4>) -> Result<Tensor<4>> {
        let [_, c, h, w] = z.dims();
        if c != self.cfg.latent_channels || h == 0 || w == 0 {
            return Err(EngineError::Shape(format!(
                "preview decoder needs a [B, {}, h, w] latent, got {:?}",
                self.cfg.latent_channels,
                z.dims()
            )));
        }
        Ok(self.forward(z))
    }
}

/// Read and check a preview folder's `config.json`.
pub fn read_meta(dir: &Path) -> Result<PreviewMeta> {
    let p = dir.join("config.json");
    let s = std::fs::read_to_string(&p).map_err(|e| EngineError::io(&p, e))?;
    let meta: PreviewMeta =
        serde_json::from_str(&s).map_err(|e| EngineError::Config(format!("{}: {e}", p.display())))?;
    if meta.kind != PREVIEW_KIND {
        return Err(EngineError::Config(format!("{}: kind `{}`, not `{PREVIEW_KIND}`", p.display(), meta.kind)));
    }
    meta.preview.validate()?;
    Ok(meta)
}

/// Whether `dir` looks like a preview folder (its `config.json` has kind `dino_sae_preview`).
pub fn is_preview_dir(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .is_some_and(|v| v.get("kind").and_then(|k| k.as_str()) == Some(PREVIEW_KIND))
}

/// The preview folder of a model folder (`MODEL/preview`), when it holds weights.
pub fn preview_dir_for(model: &Path) -> Option<PathBuf> {
    let dir = if model.is_file() { model.parent()?.to_path_buf() } else { model.to_path_buf() };
    let p = dir.join(PREVIEW_SUBDIR);
    p.join("model.safetensors").exists().then_some(p)
}

/// The default model's preview decoder (`assets/default-model/preview`), if present.
pub fn default_preview_dir() -> Option<PathBuf> {
    crate::dirs::default_model_dir().and_then(|d| preview_dir_for(&d))
}
