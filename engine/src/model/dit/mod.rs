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

mod blocks;
mod config;
mod positions;

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::Result;
use crate::model::host::silu;
use crate::model::nn::{Conv2d, Linear, Probe};
use crate::tensor_file::TensorMap;
use crate::weights::{Init, LoadReport, WeightSource};

pub use blocks::{
    DitAttention, DitBlock, DitFfn, FinalLayer, GeluFfn, NORM_EPS, Norm, SwiGluFfn, T_FREQ_DIM, TimeEmbedder,
};
pub use config::{DdtHeadConfig, DitArch, DitConfig, PRESETS, ffn_hidden};
pub use positions::{RopeTable, rope_values, sincos_pos_embed};

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
