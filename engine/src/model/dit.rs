//! Class-conditional diffusion transformers on latent grids (the generator of the paper's section 4):
//!
//! - **LightningDiT** (hustvl `models/lightningdit.py`): adaLN-Zero blocks with RMSNorm, SwiGLU, 2-D RoPE
//!   (EVA-02 "fast" table), optional qk-norm, fixed MAE sin-cos position embedding, DiT sinusoidal time
//!   embedding, conditioning `c = t_emb + y_emb`.
//! - **DiT^DH / DDT** (RAE `DiTwDDTHead`): a DiT trunk on `s_embedder(x) + pos_embed` conditioned on
//!   `silu(t_emb + y_emb)` (Gaussian-Fourier time embedding), then a wide shallow head on `x_embedder(x)`
//!   conditioned per token on `s_projector(silu(t_emb + trunk_out))`.
//!
//! Both read the reference `state_dict` names exactly (see [`Dit::load`]). The label table has a null
//! row (index `num_classes`) for classifier-free guidance when `class_dropout_prob > 0`.
//! Position tables (sin-cos and RoPE) are regenerated for the grid of each call, so non-square grids
//! run too (the references only accept square ones); the stored `pos_embed` is used when the grid is the
//! native one. Time `t` is fed raw (in `[0, 1]`, no x1000 scaling), as both references do.

use burn::module::{Module, Param};
use burn::tensor::activation::{gelu_approximate, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::host::silu;
use super::nn::{Conv2d, Linear, Probe};
use crate::error::{EngineError, Result};
use crate::raw::TensorMap;
use crate::weights::{Init, LoadReport, WeightSource};

/// Which reference architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DitArch {
    /// hustvl LightningDiT.
    LightningDit,
    /// RAE DiT^DH (`DiTwDDTHead`).
    Ddt,
}

/// The wide shallow head of DiT^DH.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DdtHeadConfig {
    pub hidden_size: usize,
    pub depth: usize,
    pub num_heads: usize,
}

/// Hyper-parameters, named as in the reference constructors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DitConfig {
    pub arch: DitArch,
    /// Native grid side (sin-cos table stored in the reference state dict); any grid runs.
    pub input_size: usize,
    pub patch_size: usize,
    pub in_channels: usize,
    /// Trunk width (DDT: `hidden_size[0]`).
    pub hidden_size: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub mlp_ratio: f64,
    pub num_classes: usize,
    /// > 0 adds the null-class row (needed for CFG).
    pub class_dropout_prob: f64,
    #[serde(default)]
    pub learn_sigma: bool,
    pub use_qknorm: bool,
    pub use_swiglu: bool,
    pub use_rope: bool,
    pub use_rmsnorm: bool,
    pub wo_shift: bool,
    #[serde(default = "yes")]
    pub use_pos_embed: bool,
    /// DDT head (`hidden_size[1]`, `depth[1]`, `num_heads[1]`); None for LightningDiT.
    #[serde(default)]
    pub head: Option<DdtHeadConfig>,
}

fn yes() -> bool {
    true
}

/// Size presets: `tiny` (CPU tests), `S`, `B`, `L`, `XL` (DiT widths; DDT head as in RAE: 2048 wide, 2 deep).
pub const PRESETS: &[&str] = &["tiny", "s", "b", "l", "xl"];

impl DitConfig {
    /// Named preset, e.g. `DitConfig::preset(DitArch::Ddt, "xl", 768, 16, 1000)`.
    pub fn preset(arch: DitArch, name: &str, in_channels: usize, grid: usize, num_classes: usize) -> Result<Self> {
        let (d, depth, heads) = match name.to_ascii_lowercase().as_str() {
            "tiny" => (64, 2, 4),
            "s" => (384, 12, 6),
            "b" => (768, 12, 12),
            "l" => (1024, 24, 16),
            "xl" => (1152, 28, 16),
            other => return Err(EngineError::Config(format!("unknown DiT preset `{other}` (one of {PRESETS:?})"))),
        };
        let head = (arch == DitArch::Ddt).then(|| {
            if name.eq_ignore_ascii_case("tiny") {
                DdtHeadConfig { hidden_size: 96, depth: 1, num_heads: 4 }
            } else {
                DdtHeadConfig { hidden_size: 2048, depth: 2, num_heads: 16 }
            }
        });
        let cfg = Self {
            arch,
            input_size: grid,
            patch_size: 1,
            in_channels,
            hidden_size: d,
            depth,
            num_heads: heads,
            mlp_ratio: 4.0,
            num_classes,
            class_dropout_prob: 0.1,
            learn_sigma: false,
            use_qknorm: arch == DitArch::LightningDit,
            use_swiglu: true,
            use_rope: true,
            use_rmsnorm: true,
            wo_shift: false,
            use_pos_embed: true,
            head,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parse the reference constructor kwargs (`DiTwDDTHead(**cfg)` / `LightningDiT(**cfg)`), where DDT's
    /// `hidden_size`, `depth`, `num_heads` are `[trunk, head]` pairs.
    pub fn from_reference(arch: DitArch, v: &serde_json::Value) -> Result<Self> {
        let err = |k: &str| EngineError::Config(format!("DiT config: missing or bad `{k}`"));
        let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).ok_or_else(|| err(k));
        let flag = |k: &str, d: bool| v.get(k).and_then(|x| x.as_bool()).unwrap_or(d);
        let pair = |k: &str| -> Result<(usize, Option<usize>)> {
            match v.get(k) {
                Some(serde_json::Value::Array(a)) if a.len() == 2 => {
                    let a0 = a[0].as_u64().ok_or_else(|| err(k))? as usize;
                    let a1 = a[1].as_u64().ok_or_else(|| err(k))? as usize;
                    Ok((a0, Some(a1)))
                }
                Some(x) => Ok((x.as_u64().ok_or_else(|| err(k))? as usize, None)),
                None => Err(err(k)),
            }
        };
        let (d, dh) = pair("hidden_size")?;
        let (depth, depth_h) = pair("depth")?;
        let (heads, heads_h) = pair("num_heads")?;
        let head = match arch {
            DitArch::Ddt => Some(DdtHeadConfig {
                hidden_size: dh.unwrap_or(d),
                depth: depth_h.ok_or_else(|| err("depth[1]"))?,
                num_heads: heads_h.unwrap_or(heads),
            }),
            DitArch::LightningDit => None,
        };
        let input_size = match v.get("input_size") {
            Some(serde_json::Value::Array(a)) => {
                a.first().and_then(|x| x.as_u64()).ok_or_else(|| err("input_size"))? as usize
            }
            _ => num("input_size")? as usize,
        };
        let cfg = Self {
            arch,
            input_size,
            patch_size: num("patch_size")? as usize,
            in_channels: num("in_channels")? as usize,
            hidden_size: d,
            depth,
            num_heads: heads,
            mlp_ratio: num("mlp_ratio").unwrap_or(4.0),
            num_classes: num("num_classes")? as usize,
            class_dropout_prob: num("class_dropout_prob").unwrap_or(0.1),
            learn_sigma: flag("learn_sigma", false),
            use_qknorm: flag("use_qknorm", false),
            use_swiglu: flag("use_swiglu", false),
            use_rope: flag("use_rope", false),
            use_rmsnorm: flag("use_rmsnorm", false),
            wo_shift: flag("wo_shift", false),
            use_pos_embed: flag("use_pos_embed", true),
            head,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::Config(m));
        let mut widths = vec![(self.hidden_size, self.num_heads)];
        if let Some(h) = &self.head {
            widths.push((h.hidden_size, h.num_heads));
        }
        for (d, h) in widths {
            if h == 0 || d % h != 0 {
                return bad(format!("DiT width {d} not divisible by {h} heads"));
            }
            if self.use_rope && (d / h) % 4 != 0 {
                return bad(format!("2-D RoPE needs head_dim % 4 == 0, got {}", d / h));
            }
            if self.use_pos_embed && d % 4 != 0 {
                return bad(format!("sin-cos position embedding needs width % 4 == 0, got {d}"));
            }
        }
        if self.use_qknorm && !self.use_rmsnorm {
            return bad("qk-norm is only supported with RMSNorm (use_rmsnorm = true)".into());
        }
        if self.arch == DitArch::Ddt && self.head.is_none() {
            return bad("DDT needs a head config".into());
        }
        if self.patch_size == 0 || self.in_channels == 0 {
            return bad("patch_size and in_channels must be positive".into());
        }
        Ok(())
    }

    pub fn out_channels(&self) -> usize {
        if self.learn_sigma { 2 * self.in_channels } else { self.in_channels }
    }

    /// Index of the unconditional (null) class.
    pub fn null_class(&self) -> usize {
        self.num_classes
    }

    /// Rows of the label table.
    pub fn label_rows(&self) -> usize {
        self.num_classes + usize::from(self.class_dropout_prob > 0.0)
    }

    /// Width of the head blocks and final layer.
    pub fn head_width(&self) -> usize {
        self.head.as_ref().map_or(self.hidden_size, |h| h.hidden_size)
    }
}

/// SwiGLU hidden width as in the references: `int(2/3 * int(mlp_ratio * D))`.
pub fn ffn_hidden(d: usize, ratio: f64, swiglu: bool) -> usize {
    let h = (ratio * d as f64) as usize;
    if swiglu { (2.0 / 3.0 * h as f64) as usize } else { h }
}

/// RMSNorm (weight, eps 1e-6) or a non-affine LayerNorm (eps 1e-6), over the last dim.
#[derive(Module, Debug)]
pub struct Norm {
    pub weight: Option<Param<Tensor<1>>>,
    #[module(skip)]
    pub rms: bool,
}

pub const NORM_EPS: f64 = 1e-6;

impl Norm {
    fn load(ws: &mut WeightSource, key: &str, d: usize, rms: bool) -> Self {
        Self { weight: rms.then(|| ws.param(&format!("{key}.weight"), [d], Init::Ones)), rms }
    }

    /// # Shapes
    /// - x: `[..., d]` -> `[..., d]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let last = D - 1;
        let y = if self.rms {
            let ms = x.clone().square().mean_dim(last);
            x * ms.add_scalar(NORM_EPS).sqrt().recip()
        } else {
            let xc = x.clone() - x.mean_dim(last);
            let var = xc.clone().square().mean_dim(last);
            xc * var.add_scalar(NORM_EPS).sqrt().recip()
        };
        match &self.weight {
            Some(w) => {
                let d = w.dims()[0];
                let mut shape = [1usize; D];
                shape[last] = d;
                y * w.val().reshape(shape)
            }
            None => y,
        }
    }
}

/// Self-attention with fused qkv, optional per-head qk RMSNorm, RoPE.
#[derive(Module, Debug)]
pub struct DitAttention {
    pub qkv: Linear,
    pub q_norm: Option<Norm>,
    pub k_norm: Option<Norm>,
    pub proj: Linear,
    #[module(skip)]
    pub heads: usize,
}

/// `w3(silu(x1) * x2)` with `[x1 | x2] = w12(x)`.
#[derive(Module, Debug)]
pub struct SwiGluFfn {
    pub w12: Linear,
    pub w3: Linear,
}

/// timm Mlp with tanh-GELU (the references' non-SwiGLU option).
#[derive(Module, Debug)]
pub struct GeluFfn {
    pub fc1: Linear,
    pub fc2: Linear,
}

#[derive(Module, Debug)]
pub enum DitFfn {
    Swiglu(SwiGluFfn),
    Gelu(GeluFfn),
}

impl DitFfn {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            DitFfn::Swiglu(f) => {
                let h = f.w12.forward(x);
                let hd = h.dims()[2] / 2;
                let x1 = h.clone().narrow(2, 0, hd);
                let x2 = h.narrow(2, hd, hd);
                f.w3.forward(silu(x1) * x2)
            }
            DitFfn::Gelu(f) => f.fc2.forward(gelu_approximate(f.fc1.forward(x))),
        }
    }
}

/// One adaLN-Zero block (`LightningDiTBlock` / `LightningDDTBlock`).
#[derive(Module, Debug)]
pub struct DitBlock {
    pub norm1: Norm,
    pub attn: DitAttention,
    pub norm2: Norm,
    pub mlp: DitFfn,
    /// `adaLN_modulation.1` (applied to `silu(c)`), out 6D (4D with `wo_shift`).
    pub ada: Linear,
    #[module(skip)]
    pub wo_shift: bool,
}

/// Cos/sin tables of the 2-D RoPE for one grid, `[N, head_dim]` each.
#[derive(Clone, Debug)]
pub struct RopeTable {
    pub cos: Tensor<2>,
    pub sin: Tensor<2>,
}

impl RopeTable {
    /// EVA-02 `VisionRotaryEmbeddingFast(dim = head_dim/2)` on an `h x w` grid, positions `0..h`, `0..w`:
    /// the first half of each head rotates with the row, the second with the column; frequencies
    /// `10000^(-2j/(head_dim/2))` on adjacent pairs.
    pub fn new(head_dim: usize, h: usize, w: usize, device: &Device) -> Self {
        let (c, s) = rope_values(head_dim, h, w);
        let n = h * w;
        Self {
            cos: Tensor::from_data(TensorData::new(c, vec![n, head_dim]), device),
            sin: Tensor::from_data(TensorData::new(s, vec![n, head_dim]), device),
        }
    }

    /// # Shapes
    /// - x: `[B, H, N, hd]` -> `[B, H, N, hd]`
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, n, hd] = x.dims();
        let pairs = x.clone().reshape([b, h, n, hd / 2, 2]);
        let x0 = pairs.clone().narrow(4, 0, 1);
        let x1 = pairs.narrow(4, 1, 1);
        let rot = Tensor::cat(vec![x1.neg(), x0], 4).reshape([b, h, n, hd]);
        x * self.cos.clone().reshape([1, 1, n, hd]) + rot * self.sin.clone().reshape([1, 1, n, hd])
    }
}

/// Host values of the RoPE table (cos, sin), row-major `[h*w, head_dim]`.
pub fn rope_values(head_dim: usize, h: usize, w: usize) -> (Vec<f32>, Vec<f32>) {
    let d = head_dim / 2;
    // Frequencies in float32 as the reference computes them.
    let freqs: Vec<f64> = (0..d / 2).map(|j| (1.0f32 / 10000f32.powf((2 * j) as f32 / d as f32)) as f64).collect();
    let mut c = Vec::with_capacity(h * w * head_dim);
    let mut s = Vec::with_capacity(h * w * head_dim);
    for r in 0..h {
        for col in 0..w {
            for (pos, _) in [(r, 0), (col, 1)] {
                for f in &freqs {
                    let a = pos as f64 * f;
                    for _ in 0..2 {
                        c.push(a.cos() as f32);
                        s.push(a.sin() as f32);
                    }
                }
            }
        }
    }
    (c, s)
}

/// MAE 2-D sin-cos position embedding, row-major tokens `[h*w, dim]`: the first `dim/2` channels encode
/// the column, the second the row; each half `[sin(p w_i) | cos(p w_i)]`, `w_i = 10000^(-i/(dim/4))`.
pub fn sincos_pos_embed(dim: usize, h: usize, w: usize) -> Vec<f32> {
    let q = dim / 4;
    let om: Vec<f64> = (0..q).map(|i| 1.0 / 10000f64.powf(i as f64 / q as f64)).collect();
    let mut out = Vec::with_capacity(h * w * dim);
    for r in 0..h {
        for col in 0..w {
            for pos in [col, r] {
                let p = pos as f64;
                out.extend(om.iter().map(|o| (p * o).sin() as f32));
                out.extend(om.iter().map(|o| (p * o).cos() as f32));
            }
        }
    }
    out
}

/// Modulate: `x * (1 + scale) + shift` (shift None with `wo_shift`).
fn modulate(x: Tensor<3>, shift: Option<Tensor<3>>, scale: Tensor<3>) -> Tensor<3> {
    let y = x.clone() + x * scale;
    match shift {
        Some(s) => y + s,
        None => y,
    }
}

impl DitBlock {
    fn load(ws: &mut WeightSource, p: &str, cfg: &DitConfig, d: usize, heads: usize) -> Self {
        let hd = d / heads;
        let f = ffn_hidden(d, cfg.mlp_ratio, cfg.use_swiglu);
        let mlp = if cfg.use_swiglu {
            DitFfn::Swiglu(SwiGluFfn {
                w12: Linear::load(ws, &format!("{p}.mlp.w12"), d, 2 * f, true),
                w3: Linear::load(ws, &format!("{p}.mlp.w3"), f, d, true),
            })
        } else {
            DitFfn::Gelu(GeluFfn {
                fc1: Linear::load(ws, &format!("{p}.mlp.fc1"), d, f, true),
                fc2: Linear::load(ws, &format!("{p}.mlp.fc2"), f, d, true),
            })
        };
        let n_mod = if cfg.wo_shift { 4 } else { 6 };
        Self {
            norm1: Norm::load(ws, &format!("{p}.norm1"), d, cfg.use_rmsnorm),
            attn: DitAttention {
                qkv: Linear::load(ws, &format!("{p}.attn.qkv"), d, 3 * d, true),
                q_norm: cfg.use_qknorm.then(|| Norm::load(ws, &format!("{p}.attn.q_norm"), hd, true)),
                k_norm: cfg.use_qknorm.then(|| Norm::load(ws, &format!("{p}.attn.k_norm"), hd, true)),
                proj: Linear::load(ws, &format!("{p}.attn.proj"), d, d, true),
                heads,
            },
            norm2: Norm::load(ws, &format!("{p}.norm2"), d, cfg.use_rmsnorm),
            mlp,
            ada: Linear::load(ws, &format!("{p}.adaLN_modulation.1"), d, n_mod * d, true),
            wo_shift: cfg.wo_shift,
        }
    }

    fn attention(&self, x: Tensor<3>, rope: Option<&RopeTable>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let h = self.attn.heads;
        let dh = d / h;
        let qkv = self.attn.qkv.forward(x).reshape([b, n, 3, h, dh]).permute([2, 0, 3, 1, 4]);
        let mut q = qkv.clone().narrow(0, 0, 1).reshape([b, h, n, dh]);
        let mut k = qkv.clone().narrow(0, 1, 1).reshape([b, h, n, dh]);
        let v = qkv.narrow(0, 2, 1).reshape([b, h, n, dh]);
        if let (Some(qn), Some(kn)) = (&self.attn.q_norm, &self.attn.k_norm) {
            q = qn.forward(q);
            k = kn.forward(k);
        }
        if let Some(r) = rope {
            q = r.apply(q);
            k = r.apply(k);
        }
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f64).sqrt());
        let o = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([b, n, d]);
        self.attn.proj.forward(o)
    }

    /// # Shapes
    /// - x: `[B, N, D]`, c: `[B, 1, D]` (global conditioning) or `[B, N, D]` (per token) -> `[B, N, D]`
    pub fn forward(&self, x: Tensor<3>, c: Tensor<3>, rope: Option<&RopeTable>) -> Tensor<3> {
        let m = self.ada.forward(silu(c));
        let parts = m.chunk(if self.wo_shift { 4 } else { 6 }, 2);
        let (sh1, sc1, g1, sh2, sc2, g2) = if self.wo_shift {
            (None, parts[0].clone(), parts[1].clone(), None, parts[2].clone(), parts[3].clone())
        } else {
            (
                Some(parts[0].clone()),
                parts[1].clone(),
                parts[2].clone(),
                Some(parts[3].clone()),
                parts[4].clone(),
                parts[5].clone(),
            )
        };
        let a = self.attention(modulate(self.norm1.forward(x.clone()), sh1, sc1), rope);
        let x = x + g1 * a;
        let f = self.mlp.forward(modulate(self.norm2.forward(x.clone()), sh2, sc2));
        x + g2 * f
    }
}

/// adaLN final layer: `linear(norm(x) * (1 + scale) + shift)`, `[shift | scale] = ada(silu(c))`.
#[derive(Module, Debug)]
pub struct FinalLayer {
    pub norm: Norm,
    pub linear: Linear,
    pub ada: Linear,
}

impl FinalLayer {
    /// # Shapes
    /// - x: `[B, N, D]`, c: `[B, 1 or N, D]` -> `[B, N, p*p*C_out]`
    pub fn forward(&self, x: Tensor<3>, c: Tensor<3>) -> Tensor<3> {
        let parts = self.ada.forward(silu(c)).chunk(2, 2);
        self.linear.forward(modulate(self.norm.forward(x), Some(parts[0].clone()), parts[1].clone()))
    }
}

/// Time embedding: DiT sinusoid (`[cos | sin]`, 256) or Gaussian Fourier (`[sin | cos](2 pi t W)`), then MLP.
#[derive(Module, Debug)]
pub struct TimeEmbedder {
    /// `t_embedder.W` (frozen, DDT only).
    pub fourier_w: Option<Tensor<1>>,
    pub mlp0: Linear,
    pub mlp2: Linear,
}

/// Frequency size of the DiT sinusoidal embedding.
pub const T_FREQ_DIM: usize = 256;

impl TimeEmbedder {
    /// # Shapes
    /// - t: `[B]` -> `[B, D]`
    pub fn forward(&self, t: Tensor<1>) -> Tensor<2> {
        let b = t.dims()[0];
        let device = t.device();
        let t2 = t.reshape([b, 1]);
        let feats = match &self.fourier_w {
            Some(w) => {
                let n = w.dims()[0];
                let arg = t2 * w.clone().reshape([1, n]).mul_scalar(2.0 * std::f64::consts::PI);
                Tensor::cat(vec![arg.clone().sin(), arg.cos()], 1)
            }
            None => {
                let half = T_FREQ_DIM / 2;
                let f: Vec<f32> = (0..half).map(|i| (-(10000f64.ln()) * i as f64 / half as f64).exp() as f32).collect();
                let f = Tensor::<1>::from_data(TensorData::new(f, vec![half]), &device).reshape([1, half]);
                let arg = t2 * f;
                Tensor::cat(vec![arg.clone().cos(), arg.sin()], 1)
            }
        };
        self.mlp2.forward(silu(self.mlp0.forward(feats)))
    }
}

/// LightningDiT or DiT^DH. See the module docs.
#[derive(Module, Debug)]
pub struct Dit {
    /// LightningDiT: the token embedder. DDT: the head's embedder of the noisy input.
    pub x_embedder: Conv2d,
    /// DDT trunk embedder.
    pub s_embedder: Option<Conv2d>,
    /// DDT trunk -> head width projection (absent when widths match).
    pub s_projector: Option<Linear>,
    pub t_embedder: TimeEmbedder,
    /// `y_embedder.embedding_table.weight` `[num_classes (+1 null), D]`.
    pub y_table: Param<Tensor<2>>,
    /// Stored sin-cos table for the native grid `[1, N, D]`.
    pub pos_embed: Option<Tensor<3>>,
    pub blocks: Vec<DitBlock>,
    pub final_layer: FinalLayer,
    #[module(skip)]
    pub cfg: DitConfig,
}

fn patch_embed(ws: &mut WeightSource, key: &str, c: usize, d: usize, p: usize) -> Conv2d {
    let mut conv = Conv2d::load(ws, &format!("{key}.proj"), c, d, p, p, 1, true);
    conv.padding = 0;
    conv
}

impl Dit {
    /// Build from reference `state_dict` names (`x_embedder.proj`, `s_embedder.proj`, `s_projector`,
    /// `t_embedder.{W,mlp.0,mlp.2}`, `y_embedder.embedding_table.weight`, `pos_embed`, `blocks.{i}.…`,
    /// `final_layer.…`; DDT head blocks continue the numbering). RoPE buffers (`feat_rope.*`,
    /// `enc_feat_rope.*`, `dec_feat_rope.*`) are consumed and regenerated per grid.
    pub fn load(ws: &mut WeightSource, cfg: &DitConfig) -> Self {
        let c = cfg.in_channels;
        let p = cfg.patch_size;
        let de = cfg.hidden_size;
        let dh = cfg.head_width();
        let device = ws.device().clone();
        let (x_embedder, s_embedder, s_projector) = match cfg.arch {
            DitArch::LightningDit => (patch_embed(ws, "x_embedder", c, de, p), None, None),
            DitArch::Ddt => (
                patch_embed(ws, "x_embedder", c, dh, p),
                Some(patch_embed(ws, "s_embedder", c, de, p)),
                (de != dh).then(|| Linear::load(ws, "s_projector", de, dh, true)),
            ),
        };
        let fourier_w = (cfg.arch == DitArch::Ddt).then(|| {
            let raw = ws.raw("t_embedder.W", &[T_FREQ_DIM], Init::Normal(1.0));
            Tensor::<1>::from_data(TensorData::new(raw.data, raw.shape), &device)
        });
        let f_in = if fourier_w.is_some() { 2 * T_FREQ_DIM } else { T_FREQ_DIM };
        let t_embedder = TimeEmbedder {
            fourier_w,
            mlp0: Linear::load(ws, "t_embedder.mlp.0", f_in, de, true),
            mlp2: Linear::load(ws, "t_embedder.mlp.2", de, de, true),
        };
        let y_table = ws.param("y_embedder.embedding_table.weight", [cfg.label_rows(), de], Init::Normal(0.02));
        let g = cfg.input_size / p;
        let pos_embed = if cfg.use_pos_embed {
            let generated = sincos_pos_embed(de, g, g);
            let data = if ws.is_random() { generated } else { ws.raw("pos_embed", &[1, g * g, de], Init::Zeros).data };
            Some(Tensor::from_data(TensorData::new(data, vec![1, g * g, de]), &device))
        } else {
            None
        };
        // RoPE buffers: consumed for the report, regenerated at run time.
        if cfg.use_rope && !ws.is_random() {
            let tables: Vec<(&str, usize)> = match cfg.arch {
                DitArch::LightningDit => vec![("feat_rope", de / cfg.num_heads)],
                DitArch::Ddt => {
                    let h = cfg.head.as_ref().map_or(cfg.num_heads, |h| h.num_heads);
                    vec![("enc_feat_rope", de / cfg.num_heads), ("dec_feat_rope", dh / h)]
                }
            };
            for (name, hd) in tables {
                for part in ["freqs_cos", "freqs_sin"] {
                    let _ = ws.raw(&format!("{name}.{part}"), &[g * g, hd], Init::Zeros);
                }
            }
        }
        let mut blocks = Vec::new();
        for i in 0..cfg.depth {
            blocks.push(DitBlock::load(ws, &format!("blocks.{i}"), cfg, de, cfg.num_heads));
        }
        if let Some(h) = &cfg.head {
            for i in 0..h.depth {
                blocks.push(DitBlock::load(ws, &format!("blocks.{}", cfg.depth + i), cfg, h.hidden_size, h.num_heads));
            }
        }
        let final_layer = FinalLayer {
            norm: Norm::load(ws, "final_layer.norm_final", dh, cfg.use_rmsnorm),
            linear: Linear::load(ws, "final_layer.linear", dh, p * p * cfg.out_channels(), true),
            ada: Linear::load(ws, "final_layer.adaLN_modulation.1", dh, 2 * dh, true),
        };
        Self {
            x_embedder,
            s_embedder,
            s_projector,
            t_embedder,
            y_table,
            pos_embed,
            blocks,
            final_layer,
            cfg: cfg.clone(),
        }
    }

    /// Load a reference state dict; returns the model and what loading found (missing/unexpected keys).
    pub fn from_state_dict(map: TensorMap, cfg: &DitConfig, device: &Device) -> Result<(Self, LoadReport)> {
        cfg.validate()?;
        let mut ws = WeightSource::from_map(map, device);
        let m = Self::load(&mut ws, cfg);
        Ok((m, ws.finish()))
    }

    /// Fresh model for training: random weights with the references' adaLN-Zero initialisation
    /// (every adaLN modulation and the final linear start at zero, so the initial output is 0).
    pub fn init(cfg: &DitConfig, seed: u64, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let mut ws = WeightSource::random(seed, device);
        let mut m = Self::load(&mut ws, cfg);
        fn zero(l: &mut Linear) {
            let w = l.weight.val().zeros_like();
            let id = l.weight.id;
            l.weight = Param::from_tensor(w);
            l.weight.id = id;
            if let Some(b) = &mut l.bias {
                let id = b.id;
                *b = Param::from_tensor(b.val().zeros_like());
                b.id = id;
            }
        }
        for b in &mut m.blocks {
            zero(&mut b.ada);
        }
        zero(&mut m.final_layer.ada);
        zero(&mut m.final_layer.linear);
        Ok(m)
    }

    /// Random weights everywhere (no zero init): a model whose output depends on every input, for demos.
    pub fn random(cfg: &DitConfig, seed: u64, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let mut ws = WeightSource::random(seed, device);
        Ok(Self::load(&mut ws, cfg))
    }

    fn embed(conv: &Conv2d, x: Tensor<4>) -> Tensor<3> {
        let y = conv.forward(x);
        let [b, d, h, w] = y.dims();
        y.reshape([b, d, h * w]).swap_dims(1, 2)
    }

    fn pos_table(&self, gh: usize, gw: usize, device: &Device) -> Option<Tensor<3>> {
        if !self.cfg.use_pos_embed {
            return None;
        }
        let g = self.cfg.input_size / self.cfg.patch_size;
        match &self.pos_embed {
            Some(p) if gh == g && gw == g => Some(p.clone()),
            _ => {
                let d = self.cfg.hidden_size;
                Some(Tensor::from_data(TensorData::new(sincos_pos_embed(d, gh, gw), vec![1, gh * gw, d]), device))
            }
        }
    }

    /// Class-embedding lookup.
    ///
    /// # Shapes
    /// - y: `[B]` -> `[B, D]`
    pub fn embed_labels(&self, y: Tensor<1, Int>) -> Tensor<2> {
        self.y_table.val().select(0, y)
    }

    /// Velocity (or the reference's output) at `(x, t, y)`.
    ///
    /// Probe names follow the reference fixtures: `t_emb`, `y_emb`, `c`, `x_patch`, `x_in` / `s_patch`, `s_in`,
    /// `block_{i:02}_out`, `trunk_out`, `head_cond_pre_proj`, `head_cond`, `final_tokens` / `head_out_tokens`.
    ///
    /// # Shapes
    /// - x: `[B, C, H, W]` (H, W multiples of the patch size, any aspect), t: `[B]`, y: `[B]` Int
    ///   -> `[B, C_out, H, W]`
    pub fn forward(&self, x: Tensor<4>, t: Tensor<1>, y: Tensor<1, Int>, probe: &mut Probe) -> Tensor<4> {
        let [_, _, hh, ww] = x.dims();
        let p = self.cfg.patch_size;
        let (gh, gw) = (hh / p, ww / p);
        let device = x.device();
        let t_emb = self.t_embedder.forward(t);
        probe.put("t_emb", &t_emb);
        let y_emb = self.embed_labels(y);
        probe.put("y_emb", &y_emb);
        let de = self.cfg.hidden_size;
        let rope = |d: usize, heads: usize| self.cfg.use_rope.then(|| RopeTable::new(d / heads, gh, gw, &device));
        let tokens = match self.cfg.arch {
            DitArch::LightningDit => {
                let c = t_emb + y_emb;
                probe.put("c", &c);
                let [b, _] = c.dims();
                let c = c.reshape([b, 1, de]);
                let mut h = Self::embed(&self.x_embedder, x);
                probe.put("x_patch", &h);
                if let Some(pe) = self.pos_table(gh, gw, &device) {
                    h = h + pe;
                }
                probe.put("x_in", &h);
                let r = rope(de, self.cfg.num_heads);
                for (i, blk) in self.blocks.iter().enumerate() {
                    h = blk.forward(h, c.clone(), r.as_ref());
                    probe.put(format!("block_{i:02}_out"), &h);
                }
                probe.put("trunk_out", &h);
                let out = self.final_layer.forward(h, c);
                probe.put("final_tokens", &out);
                out
            }
            DitArch::Ddt => {
                let c = silu(t_emb.clone() + y_emb);
                probe.put("c", &c);
                let [b, _] = c.dims();
                let c = c.reshape([b, 1, de]);
                let s_emb = self.s_embedder.as_ref().expect("DDT has an s_embedder");
                let mut s = Self::embed(s_emb, x.clone());
                probe.put("s_patch", &s);
                if let Some(pe) = self.pos_table(gh, gw, &device) {
                    s = s + pe;
                }
                probe.put("s_in", &s);
                let r = rope(de, self.cfg.num_heads);
                let trunk_depth = self.cfg.depth;
                for (i, blk) in self.blocks.iter().take(trunk_depth).enumerate() {
                    s = blk.forward(s, c.clone(), r.as_ref());
                    probe.put(format!("block_{i:02}_out"), &s);
                }
                probe.put("trunk_out", &s);
                let s = silu(t_emb.reshape([b, 1, de]) + s);
                probe.put("head_cond_pre_proj", &s);
                let s = match &self.s_projector {
                    Some(l) => l.forward(s),
                    None => s,
                };
                probe.put("head_cond", &s);
                let mut xx = Self::embed(&self.x_embedder, x);
                probe.put("x_patch", &xx);
                let head = self.cfg.head.as_ref().expect("DDT has a head");
                let rd = rope(head.hidden_size, head.num_heads);
                for (i, blk) in self.blocks.iter().enumerate().skip(trunk_depth) {
                    xx = blk.forward(xx, s.clone(), rd.as_ref());
                    probe.put(format!("block_{i:02}_out"), &xx);
                }
                let out = self.final_layer.forward(xx, s);
                probe.put("head_out_tokens", &out);
                out
            }
        };
        unpatchify(tokens, gh, gw, p, self.cfg.out_channels())
    }

    /// Plain forward without probes. Shapes as [`Dit::forward`].
    pub fn velocity(&self, x: Tensor<4>, t: Tensor<1>, y: Tensor<1, Int>) -> Tensor<4> {
        self.forward(x, t, y, &mut Probe::default())
    }

    /// The references' `forward_with_cfg`: the first half of `x` is used twice (labels `y` = `[cond; null]`),
    /// `guided = uncond + scale (cond - uncond)` on the first `guided_channels` channels (all when None;
    /// hustvl LightningDiT guides only 3), applied where `interval.0 <= t <= interval.1` (t of the first half).
    /// Returns `[guided; guided]` concatenated with each half's own unguided remaining channels.
    ///
    /// # Shapes
    /// - x: `[2n, C, H, W]`, t: `[2n]`, y: `[2n]` -> `[2n, C_out, H, W]`
    pub fn forward_with_cfg(
        &self,
        x: Tensor<4>,
        t: Tensor<1>,
        y: Tensor<1, Int>,
        scale: f64,
        guided_channels: Option<usize>,
        interval: (f64, f64),
    ) -> Tensor<4> {
        let n = x.dims()[0] / 2;
        let half = x.narrow(0, 0, n);
        let t_half = t.clone().narrow(0, 0, n);
        let out = self.velocity(Tensor::cat(vec![half.clone(), half], 0), t, y);
        let [_, co, h, w] = out.dims();
        let g = guided_channels.unwrap_or(co).min(co);
        let eps = out.clone().narrow(1, 0, g);
        let cond = eps.clone().narrow(0, 0, n);
        let unc = eps.narrow(0, n, n);
        let guided = unc.clone() + (cond.clone() - unc).mul_scalar(scale);
        let inside = t_half
            .clone()
            .greater_equal_elem(interval.0)
            .bool_and(t_half.lower_equal_elem(interval.1))
            .reshape([n, 1, 1, 1])
            .repeat_dim(1, g)
            .repeat_dim(2, h)
            .repeat_dim(3, w);
        let half_eps = cond.mask_where(inside, guided);
        let eps = Tensor::cat(vec![half_eps.clone(), half_eps], 0);
        if g < co { Tensor::cat(vec![eps, out.narrow(1, g, co - g)], 1) } else { eps }
    }
}

/// Tokens back to a map: `[B, h*w, p*p*C]` (row-major tokens, channel fastest) -> `[B, C, h*p, w*p]`.
///
/// # Shapes
/// - tokens: `[B, gh*gw, p*p*C]` -> `[B, C, gh*p, gw*p]`
pub fn unpatchify(tokens: Tensor<3>, gh: usize, gw: usize, p: usize, c: usize) -> Tensor<4> {
    let [b, _, _] = tokens.dims();
    if p == 1 {
        return tokens.swap_dims(1, 2).reshape([b, c, gh, gw]);
    }
    tokens.reshape([b, gh, gw, p, p, c]).permute([0, 5, 1, 3, 2, 4]).reshape([b, c, gh * p, gw * p])
}

/// Int labels on a device.
pub fn labels(y: &[i64], device: &Device) -> Tensor<1, Int> {
    Tensor::from_data(TensorData::new(y.to_vec(), vec![y.len()]), device)
}
