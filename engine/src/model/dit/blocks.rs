//! The DiT's layers: norms, attention, FFNs, the adaLN-modulated block, the final layer and the time embedder.

use burn::module::{Module, Param};
use burn::tensor::activation::gelu_approximate;
use burn::tensor::{Tensor, TensorData};

use super::config::{DitConfig, ffn_hidden};
use super::positions::RopeTable;
use crate::model::host::silu;
use crate::model::nn::Linear;
use crate::weights::{Init, WeightSource};

/// RMSNorm (weight, eps 1e-6) or a non-affine LayerNorm (eps 1e-6), over the last dim.
#[derive(Module, Debug)]
pub struct Norm {
    pub weight: Option<Param<Tensor<1>>>,
    #[module(skip)]
    pub rms: bool,
}

pub const NORM_EPS: f64 = 1e-6;

impl Norm {
    pub(super) fn load(ws: &mut WeightSource, key: &str, d: usize, rms: bool) -> Self {
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
    pub(super) fn forward(&self, x: Tensor<3>) -> Tensor<3> {
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

/// Modulate: `x * (1 + scale) + shift` (shift None with `wo_shift`).
fn modulate(x: Tensor<3>, shift: Option<Tensor<3>>, scale: Tensor<3>) -> Tensor<3> {
    let y = x.clone() + x * scale;
    match shift {
        Some(s) => y + s,
        None => y,
    }
}

impl DitBlock {
    pub(super) fn load(ws: &mut WeightSource, p: &str, cfg: &DitConfig, d: usize, heads: usize) -> Self {
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

    pub(super) fn attention(&self, x: Tensor<3>, rope: Option<&RopeTable>) -> Tensor<3> {
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
        let o = crate::model::host::attention(q, k, v).swap_dims(1, 2).reshape([b, n, d]);
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
