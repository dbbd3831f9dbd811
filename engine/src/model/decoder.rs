//! DC-AE decoder as DINO-SAE's official `DCAE_Decoder` computes it.
//!
//! `project_in` (conv3x3 + duplicating shortcut) -> stages, deepest first (`stages.k` is stage_id S-1-k; each
//! stage but the deepest starts with an upsample block, then `depth` ResBlock / EViT_GLU blocks) ->
//! `project_out` (RMSNorm2d -> ReLU -> conv3x3, or an upsample block when depth_list[0] == 0).
//!
//! EViT_GLU reproduces the official quirk: no normalisation inside (a norm *instance* reaches `build_norm`).

use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::Tensor;
use serde::{Deserialize, Deserializer, Serialize};

use super::host::silu;
use super::nn::{pixel_shuffle2, repeat_interleave_channels, Conv2d, Probe, RmsNorm2d};
use crate::error::{EngineError, Result};
use crate::weights::WeightSource;

/// Block type of one stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockType {
    ResBlock,
    #[serde(rename = "EViT_GLU")]
    EvitGlu,
}

/// Upsampling block type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpsampleType {
    /// conv3x3 to 4*out then pixel_shuffle(2)
    ConvPixelShuffle,
    /// nearest x2 then conv3x3
    InterpolateConv,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<BlockType>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(BlockType),
        Many(Vec<BlockType>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(b) => vec![b],
        OneOrMany::Many(v) => v,
    })
}

/// The official `DecoderConfig` fields we use (extra fields in a config.json are ignored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    #[serde(default = "three")]
    pub in_channels: usize,
    pub latent_channels: usize,
    pub width_list: Vec<usize>,
    pub depth_list: Vec<usize>,
    /// One per stage_id, or a single entry for all.
    #[serde(deserialize_with = "one_or_many")]
    pub block_type: Vec<BlockType>,
    #[serde(default = "trms2d")]
    pub norm: String,
    #[serde(default = "silu_name")]
    pub act: String,
    pub upsample_block_type: UpsampleType,
    #[serde(default = "duplicating")]
    pub upsample_shortcut: Option<String>,
    #[serde(default = "duplicating")]
    pub in_shortcut: Option<String>,
    #[serde(default = "yes")]
    pub upsample_match_channel: bool,
    #[serde(default = "trms2d")]
    pub out_norm: String,
    #[serde(default = "relu_name")]
    pub out_act: String,
}

fn three() -> usize {
    3
}
fn trms2d() -> String {
    "trms2d".into()
}
fn silu_name() -> String {
    "silu".into()
}
fn relu_name() -> String {
    "relu".into()
}
fn duplicating() -> Option<String> {
    Some("duplicating".into())
}
fn yes() -> bool {
    true
}

impl DecoderConfig {
    pub fn stages(&self) -> usize {
        self.width_list.len()
    }

    pub fn block_of(&self, stage_id: usize) -> BlockType {
        if self.block_type.len() == 1 { self.block_type[0] } else { self.block_type[stage_id] }
    }

    /// Pixels per latent cell.
    pub fn upsampling(&self) -> usize {
        // one x2 per non-empty stage below the deepest, one more in project_out when stage 0 is empty
        let s = self.stages();
        let ups = (0..s - 1).filter(|&i| self.depth_list[i] > 0).count() + usize::from(self.depth_list[0] == 0);
        1usize << ups
    }

    pub fn validate(&self) -> Result<()> {
        let s = self.stages();
        let bad = |m: String| Err(EngineError::Config(format!("decoder: {m}")));
        if s == 0 || self.depth_list.len() != s {
            return bad(format!("width_list {:?} and depth_list {:?} differ in length", self.width_list, self.depth_list));
        }
        if self.block_type.len() != 1 && self.block_type.len() != s {
            return bad(format!("block_type has {} entries for {s} stages", self.block_type.len()));
        }
        if self.norm != "trms2d" || self.out_norm != "trms2d" || self.act != "silu" || self.out_act != "relu" {
            return bad(format!(
                "only norm/out_norm trms2d, act silu, out_act relu are implemented (got {}, {}, {}, {})",
                self.norm, self.out_norm, self.act, self.out_act
            ));
        }
        for sc in [&self.upsample_shortcut, &self.in_shortcut].into_iter().flatten() {
            if sc != "duplicating" {
                return bad(format!("shortcut {sc:?} not implemented (duplicating or none)"));
            }
        }
        if !self.upsample_match_channel {
            return bad("upsample_match_channel=false not implemented".into());
        }
        let last = self.width_list[s - 1];
        if self.in_shortcut.is_some() && last % self.latent_channels != 0 {
            return bad(format!("width {last} not a multiple of latent channels {}", self.latent_channels));
        }
        for i in 0..s - 1 {
            let used = self.depth_list[i] > 0;
            if used && self.upsample_shortcut.is_some() && (4 * self.width_list[i]) % self.width_list[i + 1] != 0 {
                return bad(format!("4*width[{i}] must be a multiple of width[{}]", i + 1));
            }
        }
        for i in 0..s {
            if self.block_of(i) == BlockType::EvitGlu && (self.width_list[i] < 32 || self.width_list[i] % 32 != 0) {
                return bad(format!("EViT_GLU stage {i} needs a width that is a multiple of 32"));
            }
        }
        Ok(())
    }

    /// The released DINO-SAE decoder (paper v2 Table 8) for latent width `c` (1024 for ViT-L).
    pub fn released(c: usize) -> Self {
        Self::new(c, vec![256, 512, 512, 1024, 1024], vec![5, 5, 3, 3, 3])
    }

    /// Our small default-model decoder: no full-resolution stage (project_out upsamples the last x2),
    /// EViT_GLU in the two deepest stages. For c = 384 (DINOv2-S).
    pub fn small(c: usize) -> Self {
        Self::new(c, vec![24, 48, 96, 192, c], vec![0, 1, 2, 2, 2])
    }

    fn new(c: usize, width_list: Vec<usize>, depth_list: Vec<usize>) -> Self {
        use BlockType::*;
        Self {
            in_channels: 3,
            latent_channels: c,
            width_list,
            depth_list,
            block_type: vec![ResBlock, ResBlock, ResBlock, EvitGlu, EvitGlu],
            norm: trms2d(),
            act: silu_name(),
            upsample_block_type: UpsampleType::InterpolateConv,
            upsample_shortcut: duplicating(),
            in_shortcut: duplicating(),
            upsample_match_channel: true,
            out_norm: trms2d(),
            out_act: relu_name(),
        }
    }
}

/// `x + RMSNorm2d(conv3x3_nobias(SiLU(conv3x3_bias(x))))`
#[derive(Module, Debug)]
pub struct ResBlock {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub norm: RmsNorm2d,
}

impl ResBlock {
    fn load(ws: &mut WeightSource, p: &str, c: usize) -> Self {
        Self {
            conv1: Conv2d::load(ws, &format!("{p}.main.conv1.conv"), c, c, 3, 1, 1, true),
            conv2: Conv2d::load(ws, &format!("{p}.main.conv2.conv"), c, c, 3, 1, 1, false),
            norm: RmsNorm2d::load(ws, &format!("{p}.main.conv2.norm.weight"), c),
        }
    }

    /// # Shapes
    /// - x: `[B, C, H, W]` -> same
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.norm.forward(self.conv2.forward(silu(self.conv1.forward(x.clone()))));
        x + y
    }
}

/// EfficientViT block: `x + LiteMLA(x)` then `x + GLUMBConv(x)`, no norms (official quirk).
#[derive(Module, Debug)]
pub struct EvitBlock {
    pub qkv: Conv2d,
    pub proj: Conv2d,
    pub inverted: Conv2d,
    pub depth: Conv2d,
    pub point: Conv2d,
    #[module(skip)]
    pub heads: usize,
}

/// Head dim of LiteMLA and the linear-vs-quadratic threshold (`H*W > 32` takes the linear branch).
pub const EVIT_DIM: usize = 32;
const EVIT_EPS: f64 = 1e-15;

impl EvitBlock {
    fn load(ws: &mut WeightSource, p: &str, c: usize) -> Self {
        let heads = c / EVIT_DIM;
        let td = heads * EVIT_DIM;
        let mid = 4 * c;
        Self {
            qkv: Conv2d::load(ws, &format!("{p}.context_module.main.qkv.conv"), c, 3 * td, 1, 1, 1, false),
            proj: Conv2d::load(ws, &format!("{p}.context_module.main.proj.conv"), td, c, 1, 1, 1, false),
            inverted: Conv2d::load(ws, &format!("{p}.local_module.main.inverted_conv.conv"), c, 2 * mid, 1, 1, 1, true),
            depth: Conv2d::load(ws, &format!("{p}.local_module.main.depth_conv.conv"), 2 * mid, 2 * mid, 3, 1, 2 * mid, true),
            point: Conv2d::load(ws, &format!("{p}.local_module.main.point_conv.conv"), mid, c, 1, 1, 1, false),
            heads,
        }
    }

    /// ReLU linear attention (quadratic form when `H*W <= 32`, as the reference).
    ///
    /// # Shapes
    /// - x: `[B, C, H, W]` -> `[B, heads*32, H, W]` (before proj)
    pub fn attention(&self, x: Tensor<4>, probe: &mut Probe, name: &str) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let n = h * w;
        let hd = self.heads;
        let qkv = self.qkv.forward(x);
        probe.put(format!("{name}.qkv_out"), &qkv);
        let qkv = qkv.reshape([b, hd, 3 * EVIT_DIM, n]); // per head [q | k | v]
        let q = relu(qkv.clone().narrow(2, 0, EVIT_DIM));
        let k = relu(qkv.clone().narrow(2, EVIT_DIM, EVIT_DIM));
        let v = qkv.narrow(2, 2 * EVIT_DIM, EVIT_DIM);
        let out = if n > EVIT_DIM {
            let ones = Tensor::<4>::ones([b, hd, 1, n], &v.device());
            let vp = Tensor::cat(vec![v, ones], 2); // [B, h, 33, N]
            let vk = vp.matmul(k.swap_dims(2, 3)); // [B, h, 33, 32]
            let o = vk.matmul(q); // [B, h, 33, N]
            let num = o.clone().narrow(2, 0, EVIT_DIM);
            let den = o.narrow(2, EVIT_DIM, 1).add_scalar(EVIT_EPS);
            num / den
        } else {
            let a = k.swap_dims(2, 3).matmul(q); // [B, h, N(keys), N(queries)]
            let s = a.clone().sum_dim(2).add_scalar(EVIT_EPS);
            v.matmul(a / s)
        };
        let out = out.reshape([b, hd * EVIT_DIM, h, w]);
        probe.put(format!("{name}.attn_out_pre_proj"), &out);
        out
    }

    /// # Shapes
    /// - x: `[B, C, H, W]` -> same
    pub fn forward(&self, x: Tensor<4>, probe: &mut Probe, name: &str) -> Tensor<4> {
        let a = self.proj.forward(self.attention(x.clone(), probe, name));
        let x = x + a;
        probe.put(format!("{name}.context_module_out"), &x);
        let y = self.depth.forward(silu(self.inverted.forward(x.clone())));
        let mid = y.dims()[1] / 2;
        let gated = y.clone().narrow(1, 0, mid) * silu(y.narrow(1, mid, mid));
        probe.put(format!("{name}.glu.gated"), &gated);
        x + self.point.forward(gated)
    }
}

#[derive(Module, Debug)]
pub enum DecBlock {
    Res(ResBlock),
    Evit(EvitBlock),
}

/// Upsample x2 (main path) plus, optionally, the duplicating shortcut.
#[derive(Module, Debug)]
pub struct Upsample {
    pub conv: Conv2d,
    #[module(skip)]
    pub pixel_shuffle: bool,
    /// `Some(r)`: shortcut = pixel_shuffle(repeat_interleave(x, r)).
    #[module(skip)]
    pub shortcut_repeat: Option<usize>,
}

impl Upsample {
    fn load(ws: &mut WeightSource, key: &str, kind: UpsampleType, c_in: usize, c_out: usize, shortcut: bool) -> Self {
        let ps = kind == UpsampleType::ConvPixelShuffle;
        let conv_out = if ps { 4 * c_out } else { c_out };
        Self {
            conv: Conv2d::load(ws, key, c_in, conv_out, 3, 1, 1, true),
            pixel_shuffle: ps,
            shortcut_repeat: shortcut.then_some(4 * c_out / c_in),
        }
    }

    /// # Shapes
    /// - x: `[B, C_in, H, W]` -> `[B, C_out, 2H, 2W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let main = if self.pixel_shuffle {
            pixel_shuffle2(self.conv.forward(x.clone()))
        } else {
            self.conv.forward_up2(x.clone())
        };
        match self.shortcut_repeat {
            Some(r) => main + pixel_shuffle2(repeat_interleave_channels(x, r)),
            None => main,
        }
    }
}

#[derive(Module, Debug)]
pub struct Stage {
    pub up: Option<Upsample>,
    pub blocks: Vec<DecBlock>,
}

#[derive(Module, Debug)]
pub enum OutHead {
    Conv(Conv2d),
    Up(Upsample),
}

#[derive(Module, Debug)]
pub struct Decoder {
    pub project_in: Conv2d,
    #[module(skip)]
    pub in_repeat: Option<usize>,
    /// `stages[k]` is stage_id S-1-k.
    pub stages: Vec<Stage>,
    pub out_norm: RmsNorm2d,
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
        let project_in = Conv2d::load(ws, &k("project_in.main.conv"), d, wl[s - 1], 3, 1, 1, true);
        let in_repeat = cfg.in_shortcut.as_ref().map(|_| wl[s - 1] / d);
        let mut stages = Vec::with_capacity(s);
        for (ki, stage_id) in (0..s).rev().enumerate() {
            let width = wl[stage_id];
            let depth = cfg.depth_list[stage_id];
            let mut j = 0;
            let up = (stage_id < s - 1 && depth > 0).then(|| {
                j += 1;
                Upsample::load(
                    ws,
                    &k(&format!("stages.{ki}.op_list.0.main.conv.conv")),
                    cfg.upsample_block_type,
                    wl[stage_id + 1],
                    width,
                    cfg.upsample_shortcut.is_some(),
                )
            });
            let mut blocks = Vec::with_capacity(depth);
            for _ in 0..depth {
                let p = k(&format!("stages.{ki}.op_list.{j}"));
                blocks.push(match cfg.block_of(stage_id) {
                    BlockType::ResBlock => DecBlock::Res(ResBlock::load(ws, &p, width)),
                    BlockType::EvitGlu => DecBlock::Evit(EvitBlock::load(ws, &p, width)),
                });
                j += 1;
            }
            stages.push(Stage { up, blocks });
        }
        // With an empty stage 0 its upsample block is skipped too: project_out sees width_list[1] channels.
        let c_out = if cfg.depth_list[0] > 0 { wl[0] } else { wl[1] };
        let out_norm = RmsNorm2d::load(ws, &k("project_out.op_list.0.weight"), c_out);
        let out = if cfg.depth_list[0] > 0 {
            OutHead::Conv(Conv2d::load(ws, &k("project_out.op_list.2.conv"), c_out, cfg.in_channels, 3, 1, 1, true))
        } else {
            OutHead::Up(Upsample::load(
                ws,
                &k("project_out.op_list.2.conv.conv"),
                cfg.upsample_block_type,
                c_out,
                cfg.in_channels,
                false,
            ))
        };
        Ok(Self { project_in, in_repeat, stages, out_norm, out, cfg: cfg.clone() })
    }

    /// # Shapes
    /// - z: `[B, C, h, w]` -> image `[B, 3, h*f, w*f]`, f = `cfg.upsampling()` (16 for 5 stages)
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
            }
            probe.put(format!("stages.{ki}_out"), &x);
        }
        let x = relu(self.out_norm.forward(x));
        match &self.out {
            OutHead::Conv(c) => c.forward(x),
            OutHead::Up(u) => u.forward(x),
        }
    }
}
