//! DC-AE decoder as DINO-SAE's official `DCAE_Decoder` computes it, for every configuration it can build.
//!
//! `project_in` (conv3x3, + a duplicating shortcut unless `in_shortcut` is null) -> stages, deepest first
//! (`stages.k` is stage_id S-1-k; a stage of depth 0 is empty: no upsample, no blocks, no keys; every other stage
//! but the deepest starts with an upsample block (ConvPixelShuffle or InterpolateConv, + a duplicating or
//! InterpolateConv shortcut, or none), then `depth` ResBlock / EViT_GLU blocks) -> `project_out` (norm -> act ->
//! conv3x3, or -> an upsample block when depth_list[0] == 0; a null norm / act leaves no op, which shifts the
//! conv's `op_list` index).
//!
//! Norms and activations follow the two builders the official code uses: `model.py`'s for ResBlock and
//! project_out (norm trms2d / bn2d / null; act relu / silu / tanh / sigmoid / null) and efficientvit's inside
//! EViT_GLU (norm bn2d / ln2d on `proj` and `point_conv`; act relu / relu6 / hswish / silu / gelu (tanh), any
//! other name is no activation). EViT_GLU reproduces the official quirk: `trms2d` reaches efficientvit's
//! `build_norm` as a module instance, so the block has no norm at all.

mod blocks;
mod config;
mod layers;
mod upsample;

use burn::module::Module;
use burn::tensor::Tensor;

pub use blocks::{DecBlock, EVIT_DIM, EvitBlock, ResBlock};
pub use config::{BlockType, DecoderConfig, SHORTCUT_DUPLICATING, SHORTCUT_INTERPOLATE, UpsampleType};
pub use layers::{Act, BatchNorm2d, LayerNorm2d, Norm2d, NormKind};
pub use upsample::Upsample;

use super::nn::{Conv2d, Probe, repeat_interleave_channels};
use crate::error::Result;
use crate::weights::WeightSource;

#[derive(Module, Debug)]
pub struct Stage {
    pub up: Option<Upsample>,
    pub blocks: Vec<DecBlock>,
}

#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum OutHead {
    Conv(Conv2d),
    Up(Upsample),
}

#[derive(Module, Debug)]
pub struct Decoder {
    /// The main conv3x3 of project_in.
    pub project_in: Conv2d,
    /// Duplicating shortcut of project_in: `Some(r)` adds `repeat_interleave(z, r)`.
    #[module(skip)]
    pub in_repeat: Option<usize>,
    /// `stages[k]` is stage_id S-1-k.
    pub stages: Vec<Stage>,
    pub out_norm: Norm2d,
    #[module(skip)]
    pub out_act: Act,
    pub out: OutHead,
    #[module(skip)]
    pub cfg: DecoderConfig,
}

impl Decoder {
    /// Load with the official key names under `prefix` (e.g. `decoder`; may be empty).
    pub fn load(ws: &mut WeightSource, prefix: &str, cfg: &DecoderConfig) -> Result<Self> {
        cfg.validate()?;
        let k = |s: &str| if prefix.is_empty() { s.to_string() } else { format!("{prefix}.{s}") };
        let s = cfg.stages();
        let wl = &cfg.width_list;
        let d = cfg.latent_channels;
        let (pin_key, in_repeat) = match cfg.in_shortcut {
            Some(_) => ("project_in.main.conv", Some(wl[s - 1] / d)),
            None => ("project_in.conv", None),
        };
        let project_in = Conv2d::load(ws, &k(pin_key), d, wl[s - 1], 3, 1, 1, true);
        let mut stages = Vec::with_capacity(s);
        for (ki, stage_id) in (0..s).rev().enumerate() {
            let width = wl[stage_id];
            let depth = cfg.depth_list[stage_id];
            let mut j = 0;
            let up = (stage_id < s - 1 && depth > 0).then(|| {
                j += 1;
                Upsample::load(
                    ws,
                    &k(&format!("stages.{ki}.op_list.0")),
                    cfg.upsample_block_type,
                    wl[stage_id + 1],
                    cfg.up_out(stage_id),
                    cfg.upsample_shortcut.as_deref(),
                )
            });
            let mut blocks = Vec::with_capacity(depth);
            for _ in 0..depth {
                let p = k(&format!("stages.{ki}.op_list.{j}"));
                blocks.push(match cfg.block_of(stage_id) {
                    BlockType::ResBlock => {
                        let norm = NormKind::model_py(cfg.norm_of(stage_id))?;
                        DecBlock::Res(ResBlock::load(ws, &p, width, norm, Act::model_py(cfg.act_of(stage_id))?))
                    }
                    BlockType::EvitGlu => {
                        let norm = NormKind::evit(cfg.norm_of(stage_id))?;
                        DecBlock::Evit(EvitBlock::load(ws, &p, width, norm, Act::efficientvit(cfg.act_of(stage_id))?))
                    }
                });
                j += 1;
            }
            stages.push(Stage { up, blocks });
        }
        // project_out = OpSequential([norm, act, conv or upsample]) with the null entries dropped.
        let c_out = cfg.out_width();
        let norm_kind = NormKind::model_py(cfg.out_norm.as_deref())?;
        let out_act = Act::model_py(cfg.out_act.as_deref())?;
        let out_norm = Norm2d::load(ws, &k("project_out.op_list.0"), norm_kind, c_out);
        let idx = usize::from(norm_kind != NormKind::None) + usize::from(out_act != Act::Identity);
        let out = if cfg.depth_list[0] > 0 {
            OutHead::Conv(Conv2d::load(
                ws,
                &k(&format!("project_out.op_list.{idx}.conv")),
                c_out,
                cfg.in_channels,
                3,
                1,
                1,
                true,
            ))
        } else {
            OutHead::Up(Upsample::load(
                ws,
                &k(&format!("project_out.op_list.{idx}")),
                cfg.upsample_block_type,
                c_out,
                cfg.in_channels,
                None,
            ))
        };
        Ok(Self { project_in, in_repeat, stages, out_norm, out_act, out, cfg: cfg.clone() })
    }

    /// # Shapes
    /// - z: `[B, C, h, w]` -> image `[B, in_channels, h*f, w*f]`, f = `cfg.upsampling()`
    pub fn forward(&self, z: Tensor<4>, probe: &mut Probe) -> Tensor<4> {
        let mut x = self.project_in.forward(z.clone());
        if let Some(r) = self.in_repeat {
            x = x + repeat_interleave_channels(z, r);
        }
        probe.put("project_in_out", &x);
        for (ki, st) in self.stages.iter().enumerate() {
            if st.up.is_none() && st.blocks.is_empty() {
                continue;
            }
            if let Some(up) = &st.up {
                x = up.forward(x);
                probe.put(format!("stages.{ki}.op_list.0_out"), &x);
            }
            let j0 = usize::from(st.up.is_some());
            for (jb, b) in st.blocks.iter().enumerate() {
                if probe.cancelled() {
                    // stop between blocks; the caller turns this into `Cancelled`
                    return x;
                }
                x = match b {
                    DecBlock::Res(r) => r.forward(x),
                    DecBlock::Evit(e) => e.forward(x, probe, &format!("evit.stages.{ki}.op_list.{}", j0 + jb)),
                };
                if jb + 1 < st.blocks.len() {
                    probe.put(format!("stages.{ki}.op_list.{}_out", j0 + jb), &x);
                }
            }
            probe.put(format!("stages.{ki}_out"), &x);
        }
        let x = self.out_act.forward(self.out_norm.forward(x));
        match &self.out {
            OutHead::Conv(c) => c.forward(x),
            OutHead::Up(u) => u.forward(x),
        }
    }
}
