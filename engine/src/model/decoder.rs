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

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, sigmoid};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::host::silu;
use super::nn::{Conv2d, Probe, RmsNorm2d, pixel_shuffle2, repeat_interleave_channels};
use crate::error::{EngineError, Result};
use crate::weights::{Init, WeightSource};

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

/// The shortcut names the official builders accept.
pub const SHORTCUT_DUPLICATING: &str = "duplicating";
pub const SHORTCUT_INTERPOLATE: &str = "InterpolateConv";

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<BlockType>, D::Error> {
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(b) => vec![b],
        OneOrMany::Many(v) => v,
    })
}

/// A per-stage name list (`norm`, `act`): one string (or null) for all stages, or one per stage_id.
fn names_de<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<Option<String>>, D::Error> {
    Ok(match OneOrMany::<Option<String>>::deserialize(d)? {
        OneOrMany::One(b) => vec![b],
        OneOrMany::Many(v) => v,
    })
}

/// Written back as the official code writes it: a single value when it holds one entry.
fn names_ser<S: Serializer>(v: &[Option<String>], s: S) -> std::result::Result<S::Ok, S::Error> {
    if v.len() == 1 { v[0].serialize(s) } else { v.serialize(s) }
}

/// The official `DecoderConfig` (extra fields in a config.json are ignored; missing ones take the official
/// defaults, except `width_list` / `depth_list` / `latent_channels`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    #[serde(default = "three")]
    pub in_channels: usize,
    pub latent_channels: usize,
    pub width_list: Vec<usize>,
    pub depth_list: Vec<usize>,
    /// One per stage_id, or a single entry for all.
    #[serde(deserialize_with = "one_or_many", default = "res_block")]
    pub block_type: Vec<BlockType>,
    /// One per stage_id, or a single entry for all; null = no norm.
    #[serde(deserialize_with = "names_de", serialize_with = "names_ser", default = "trms2d_list")]
    pub norm: Vec<Option<String>>,
    /// One per stage_id, or a single entry for all; null = no activation.
    #[serde(deserialize_with = "names_de", serialize_with = "names_ser", default = "silu_list")]
    pub act: Vec<Option<String>>,
    #[serde(default = "pixel_shuffle")]
    pub upsample_block_type: UpsampleType,
    /// `duplicating`, `InterpolateConv` or null.
    #[serde(default = "duplicating")]
    pub upsample_shortcut: Option<String>,
    /// `duplicating` or null (`InterpolateConv` builds, but the official forward cannot run it).
    #[serde(default = "duplicating")]
    pub in_shortcut: Option<String>,
    #[serde(default = "yes")]
    pub upsample_match_channel: bool,
    #[serde(default = "trms2d")]
    pub out_norm: Option<String>,
    #[serde(default = "relu_name")]
    pub out_act: Option<String>,
}

fn three() -> usize {
    3
}
fn res_block() -> Vec<BlockType> {
    vec![BlockType::ResBlock]
}
fn pixel_shuffle() -> UpsampleType {
    UpsampleType::ConvPixelShuffle
}
fn trms2d() -> Option<String> {
    Some("trms2d".into())
}
fn trms2d_list() -> Vec<Option<String>> {
    vec![trms2d()]
}
fn silu_list() -> Vec<Option<String>> {
    vec![Some("silu".into())]
}
fn relu_name() -> Option<String> {
    Some("relu".into())
}
fn duplicating() -> Option<String> {
    Some(SHORTCUT_DUPLICATING.into())
}
fn yes() -> bool {
    true
}

/// An activation as one of the two official builders makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Act {
    #[default]
    Identity,
    Relu,
    Relu6,
    Hswish,
    Silu,
    /// `nn.GELU(approximate="tanh")` (efficientvit's `gelu`)
    GeluTanh,
    Tanh,
    Sigmoid,
}

impl Act {
    /// `model.py`'s `build_act` (ResBlock, project_out): unknown names are an error there.
    pub fn model_py(name: Option<&str>) -> Result<Self> {
        Ok(match name.map(str::to_ascii_lowercase).as_deref() {
            None => Act::Identity,
            Some("relu") => Act::Relu,
            Some("silu") => Act::Silu,
            Some("tanh") => Act::Tanh,
            Some("sigmoid") => Act::Sigmoid,
            Some(o) => {
                return Err(EngineError::Config(format!(
                    "decoder: activation {o:?} (the official builder accepts relu, silu, tanh, sigmoid or null)"
                )));
            }
        })
    }

    /// efficientvit's `build_act` (inside EViT_GLU). A name it does not register gives `None` there, and the
    /// GLU gate then calls `None`: the official forward fails, so such a config is refused.
    pub fn efficientvit(name: Option<&str>) -> Result<Self> {
        Ok(match name.unwrap_or("") {
            "relu" => Act::Relu,
            "relu6" => Act::Relu6,
            "hswish" => Act::Hswish,
            "silu" => Act::Silu,
            "gelu" => Act::GeluTanh,
            o => {
                return Err(EngineError::Config(format!(
                    "decoder: EViT_GLU activation {o:?} (efficientvit registers relu, relu6, hswish, silu, gelu; \
                     with any other the official GLU gate fails)"
                )));
            }
        })
    }

    /// # Shapes
    /// - x: any -> same
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Act::Identity => x,
            Act::Relu => relu(x),
            Act::Relu6 => x.clamp(0.0, 6.0),
            Act::Hswish => x.clone() * x.add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0),
            Act::Silu => silu(x),
            Act::GeluTanh => {
                let cube = x.clone() * x.clone() * x.clone();
                let inner = (x.clone() + cube.mul_scalar(0.044715)).mul_scalar((2.0 / std::f64::consts::PI).sqrt());
                x.mul_scalar(0.5) * inner.tanh().add_scalar(1.0)
            }
            Act::Tanh => x.tanh(),
            Act::Sigmoid => sigmoid(x),
        }
    }
}

/// Which norm a `ConvLayer` / project_out carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    None,
    /// DINO-SAE's RMSNorm2d (weight `[1, C, 1, 1]`)
    Rms,
    /// `nn.BatchNorm2d` in eval mode (running statistics, eps 1e-5)
    Batch,
    /// efficientvit's `LayerNorm2d` (over channels, eps 1e-5)
    Layer,
}

impl NormKind {
    /// `model.py`'s `build_norm` (ResBlock, project_out).
    pub fn model_py(name: Option<&str>) -> Result<Self> {
        Ok(match name.map(str::to_ascii_lowercase).as_deref() {
            None => NormKind::None,
            Some("trms2d") => NormKind::Rms,
            Some("bn2d") => NormKind::Batch,
            Some(o) => {
                return Err(EngineError::Config(format!(
                    "decoder: norm {o:?} (the official builder accepts trms2d, bn2d or null)"
                )));
            }
        })
    }

    /// What an EViT_GLU block of a stage with this `norm` gets (efficientvit's `build_norm`; `trms2d` arrives
    /// as a module instance and gives none).
    pub fn evit(name: Option<&str>) -> Result<Self> {
        Ok(match name.unwrap_or("") {
            "bn2d" => NormKind::Batch,
            "ln2d" => NormKind::Layer,
            "ln" => {
                return Err(EngineError::Config(
                    "decoder: EViT_GLU with norm \"ln\" (a LayerNorm over the width axis) is not supported".into(),
                ));
            }
            _ => NormKind::None,
        })
    }
}

/// Eval-mode `BatchNorm2d`.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: Param<Tensor<1>>,
    pub running_var: Param<Tensor<1>>,
}

/// efficientvit's `LayerNorm2d`: per pixel over channels, affine.
#[derive(Module, Debug)]
pub struct LayerNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
}

const BN_EPS: f64 = 1e-5;
const LN_EPS: f64 = 1e-5;

/// A 2D norm of any supported kind (none: identity).
#[derive(Module, Debug)]
pub struct Norm2d {
    pub rms: Option<RmsNorm2d>,
    pub batch: Option<BatchNorm2d>,
    pub layer: Option<LayerNorm2d>,
}

impl Norm2d {
    /// Load the norm module at `key` (e.g. `...conv2.norm`) of kind `kind` for `c` channels.
    pub fn load(ws: &mut WeightSource, key: &str, kind: NormKind, c: usize) -> Self {
        let mut n = Self { rms: None, batch: None, layer: None };
        match kind {
            NormKind::None => {}
            NormKind::Rms => n.rms = Some(RmsNorm2d::load(ws, &format!("{key}.weight"), c)),
            NormKind::Batch => {
                n.batch = Some(BatchNorm2d {
                    weight: ws.param(&format!("{key}.weight"), [c], Init::Ones),
                    bias: ws.param(&format!("{key}.bias"), [c], Init::Zeros),
                    running_mean: ws.param(&format!("{key}.running_mean"), [c], Init::Zeros),
                    running_var: ws.param(&format!("{key}.running_var"), [c], Init::Ones),
                });
                // a buffer with no effect in eval mode
                let nbt = format!("{key}.num_batches_tracked");
                if ws.contains(&nbt) && !ws.is_random() {
                    let shape = ws.shape_of(&nbt).unwrap_or_default();
                    ws.raw(&nbt, &shape, Init::Zeros);
                }
            }
            NormKind::Layer => {
                n.layer = Some(LayerNorm2d {
                    weight: ws.param(&format!("{key}.weight"), [c], Init::Ones),
                    bias: ws.param(&format!("{key}.bias"), [c], Init::Zeros),
                })
            }
        }
        n
    }

    pub fn kind(&self) -> NormKind {
        if self.rms.is_some() {
            NormKind::Rms
        } else if self.batch.is_some() {
            NormKind::Batch
        } else if self.layer.is_some() {
            NormKind::Layer
        } else {
            NormKind::None
        }
    }

    /// # Shapes
    /// - x: `[B, C, H, W]` -> same
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(r) = &self.rms {
            return r.forward(x);
        }
        if let Some(b) = &self.batch {
            let c = b.weight.dims()[0];
            let scale = b.weight.val() / b.running_var.val().add_scalar(BN_EPS).sqrt();
            let shift = b.bias.val() - b.running_mean.val() * scale.clone();
            return x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1]);
        }
        if let Some(l) = &self.layer {
            let c = l.weight.dims()[0];
            let centred = x.clone() - x.mean_dim(1);
            let var = centred.clone().square().mean_dim(1);
            let y = centred / var.add_scalar(LN_EPS).sqrt();
            return y * l.weight.val().reshape([1, c, 1, 1]) + l.bias.val().reshape([1, c, 1, 1]);
        }
        x
    }
}

impl DecoderConfig {
    pub fn stages(&self) -> usize {
        self.width_list.len()
    }

    pub fn block_of(&self, stage_id: usize) -> BlockType {
        if self.block_type.len() == 1 { self.block_type[0] } else { self.block_type[stage_id] }
    }

    /// The `norm` entry of a stage (None: null).
    pub fn norm_of(&self, stage_id: usize) -> Option<&str> {
        let v = if self.norm.len() == 1 { &self.norm[0] } else { &self.norm[stage_id] };
        v.as_deref()
    }

    /// The `act` entry of a stage (None: null).
    pub fn act_of(&self, stage_id: usize) -> Option<&str> {
        let v = if self.act.len() == 1 { &self.act[0] } else { &self.act[stage_id] };
        v.as_deref()
    }

    /// Channels project_out reads (the official `width_list[0] if depth_list[0] > 0 else width_list[1]`).
    pub fn out_width(&self) -> usize {
        if self.depth_list[0] > 0 { self.width_list[0] } else { self.width_list[1] }
    }

    /// Channels an upsample block of stage `stage_id` (< S-1) writes.
    pub fn up_out(&self, stage_id: usize) -> usize {
        if self.upsample_match_channel { self.width_list[stage_id] } else { self.width_list[stage_id + 1] }
    }

    /// Pixels per latent cell.
    pub fn upsampling(&self) -> usize {
        // one x2 per non-empty stage below the deepest, one more in project_out when stage 0 is empty
        let s = self.stages();
        let ups = (0..s - 1).filter(|&i| self.depth_list[i] > 0).count() + usize::from(self.depth_list[0] == 0);
        1usize << ups
    }

    /// Check that the official code builds this config and that its forward runs (channel counts chain).
    pub fn validate(&self) -> Result<()> {
        let s = self.stages();
        let bad = |m: String| Err(EngineError::Config(format!("decoder: {m}")));
        if s == 0 || self.depth_list.len() != s {
            return bad(format!(
                "width_list {:?} and depth_list {:?} differ in length",
                self.width_list, self.depth_list
            ));
        }
        if self.width_list.contains(&0) || self.latent_channels == 0 || self.in_channels == 0 {
            return bad(format!("zero channels in width_list {:?} / latent / in_channels", self.width_list));
        }
        // bounds that keep every channel product below overflow (a config file is untrusted input)
        if s > 64
            || self.width_list.iter().chain([&self.latent_channels, &self.in_channels]).any(|&c| c > 1 << 20)
            || self.depth_list.iter().any(|&d| d > 4096)
        {
            return bad(format!(
                "absurd sizes: {s} stages, width_list {:?}, depth_list {:?}, latent {}",
                self.width_list, self.depth_list, self.latent_channels
            ));
        }
        for (what, n) in [("block_type", self.block_type.len()), ("norm", self.norm.len()), ("act", self.act.len())] {
            if n != 1 && n != s {
                return bad(format!("{what} has {n} entries for {s} stages"));
            }
        }
        if self.depth_list[0] == 0 && s < 2 {
            return bad("a single stage of depth 0 (project_out would read width_list[1])".into());
        }
        match self.in_shortcut.as_deref() {
            None => {}
            Some(SHORTCUT_DUPLICATING) => {
                let last = self.width_list[s - 1];
                if !last.is_multiple_of(self.latent_channels) {
                    return bad(format!(
                        "in_shortcut duplicating needs width_list[-1] = {last} to be a multiple of the latent channels {}",
                        self.latent_channels
                    ));
                }
            }
            Some(SHORTCUT_INTERPOLATE) => {
                return bad("in_shortcut InterpolateConv: the official code builds it, but its forward adds a x2 \
                            shortcut to a x1 path and fails; no such model can have been trained"
                    .into());
            }
            Some(o) => return bad(format!("in_shortcut {o:?} (duplicating, InterpolateConv or null)")),
        }
        match self.upsample_shortcut.as_deref() {
            None | Some(SHORTCUT_DUPLICATING) | Some(SHORTCUT_INTERPOLATE) => {}
            Some(o) => return bad(format!("upsample_shortcut {o:?} (duplicating, InterpolateConv or null)")),
        }
        // Walk the channels the way the official forward does.
        let mut c = self.width_list[s - 1];
        for stage_id in (0..s).rev() {
            let depth = self.depth_list[stage_id];
            if depth == 0 {
                continue;
            }
            let width = self.width_list[stage_id];
            if stage_id < s - 1 {
                let c_in = self.width_list[stage_id + 1];
                if c_in != c {
                    return bad(format!(
                        "stage {stage_id}'s upsample block reads width_list[{}] = {c_in} channels, the stages above give {c}",
                        stage_id + 1
                    ));
                }
                let out = self.up_out(stage_id);
                if self.upsample_shortcut.as_deref() == Some(SHORTCUT_DUPLICATING) && !(4 * out).is_multiple_of(c_in) {
                    return bad(format!(
                        "stage {stage_id}: duplicating shortcut needs 4*{out} to be a multiple of {c_in}"
                    ));
                }
                c = out;
            }
            if c != width {
                return bad(format!(
                    "stage {stage_id}'s blocks need {width} input channels, they get {c} (upsample_match_channel={})",
                    self.upsample_match_channel
                ));
            }
            match self.block_of(stage_id) {
                BlockType::ResBlock => {
                    NormKind::model_py(self.norm_of(stage_id))?;
                    Act::model_py(self.act_of(stage_id))?;
                }
                BlockType::EvitGlu => {
                    NormKind::evit(self.norm_of(stage_id))?;
                    Act::efficientvit(self.act_of(stage_id))?;
                    if width < EVIT_DIM {
                        return bad(format!(
                            "EViT_GLU stage {stage_id} needs a width of at least {EVIT_DIM}, got {width}"
                        ));
                    }
                }
            }
        }
        if self.out_width() != c {
            return bad(format!("project_out reads {} channels, the stages give {c}", self.out_width()));
        }
        NormKind::model_py(self.out_norm.as_deref())?;
        Act::model_py(self.out_act.as_deref())?;
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
            norm: trms2d_list(),
            act: silu_list(),
            upsample_block_type: UpsampleType::InterpolateConv,
            upsample_shortcut: duplicating(),
            in_shortcut: duplicating(),
            upsample_match_channel: true,
            out_norm: trms2d(),
            out_act: relu_name(),
        }
    }
}

/// `x + norm(conv3x3_nobias(act(conv3x3_bias(x))))`
#[derive(Module, Debug)]
pub struct ResBlock {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub norm: Norm2d,
    #[module(skip)]
    pub act: Act,
}

impl ResBlock {
    fn load(ws: &mut WeightSource, p: &str, c: usize, norm: NormKind, act: Act) -> Self {
        Self {
            conv1: Conv2d::load(ws, &format!("{p}.main.conv1.conv"), c, c, 3, 1, 1, true),
            conv2: Conv2d::load(ws, &format!("{p}.main.conv2.conv"), c, c, 3, 1, 1, false),
            norm: Norm2d::load(ws, &format!("{p}.main.conv2.norm"), norm, c),
            act,
        }
    }

    /// # Shapes
    /// - x: `[B, C, H, W]` -> same
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.norm.forward(self.conv2.forward(self.act.forward(self.conv1.forward(x.clone()))));
        x + y
    }
}

/// EfficientViT block: `x + LiteMLA(x)` then `x + GLUMBConv(x)`; norms only where efficientvit builds them
/// (`proj` and `point_conv`, for a stage norm of bn2d / ln2d; none for trms2d, the official quirk).
#[derive(Module, Debug)]
pub struct EvitBlock {
    pub qkv: Conv2d,
    pub proj: Conv2d,
    pub proj_norm: Norm2d,
    pub inverted: Conv2d,
    pub depth: Conv2d,
    pub point: Conv2d,
    pub point_norm: Norm2d,
    #[module(skip)]
    pub heads: usize,
    #[module(skip)]
    pub act: Act,
}

/// Head dim of LiteMLA and the linear-vs-quadratic threshold (`H*W > 32` takes the linear branch).
pub const EVIT_DIM: usize = 32;
const EVIT_EPS: f64 = 1e-15;

impl EvitBlock {
    fn load(ws: &mut WeightSource, p: &str, c: usize, norm: NormKind, act: Act) -> Self {
        let heads = c / EVIT_DIM;
        let td = heads * EVIT_DIM;
        let mid = 4 * c;
        Self {
            qkv: Conv2d::load(ws, &format!("{p}.context_module.main.qkv.conv"), c, 3 * td, 1, 1, 1, false),
            proj: Conv2d::load(ws, &format!("{p}.context_module.main.proj.conv"), td, c, 1, 1, 1, false),
            proj_norm: Norm2d::load(ws, &format!("{p}.context_module.main.proj.norm"), norm, c),
            inverted: Conv2d::load(ws, &format!("{p}.local_module.main.inverted_conv.conv"), c, 2 * mid, 1, 1, 1, true),
            depth: Conv2d::load(
                ws,
                &format!("{p}.local_module.main.depth_conv.conv"),
                2 * mid,
                2 * mid,
                3,
                1,
                2 * mid,
                true,
            ),
            point: Conv2d::load(ws, &format!("{p}.local_module.main.point_conv.conv"), mid, c, 1, 1, 1, false),
            point_norm: Norm2d::load(ws, &format!("{p}.local_module.main.point_conv.norm"), norm, c),
            heads,
            act,
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
        let a = self.proj_norm.forward(self.proj.forward(self.attention(x.clone(), probe, name)));
        let x = x + a;
        probe.put(format!("{name}.context_module_out"), &x);
        let y = self.depth.forward(self.act.forward(self.inverted.forward(x.clone())));
        let mid = y.dims()[1] / 2;
        let gated = y.clone().narrow(1, 0, mid) * self.act.forward(y.narrow(1, mid, mid));
        probe.put(format!("{name}.glu.gated"), &gated);
        x + self.point_norm.forward(self.point.forward(gated))
    }
}

// Built once per model; boxing the larger variant would only add an indirection to every forward.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum DecBlock {
    Res(ResBlock),
    Evit(EvitBlock),
}

/// Upsample x2 (main path) plus, optionally, a shortcut (duplicating, or its own InterpolateConv).
#[derive(Module, Debug)]
pub struct Upsample {
    pub conv: Conv2d,
    #[module(skip)]
    pub pixel_shuffle: bool,
    /// `Some(r)`: shortcut = pixel_shuffle(repeat_interleave(x, r)).
    #[module(skip)]
    pub shortcut_repeat: Option<usize>,
    /// shortcut = conv3x3(nearest_up2(x)) (`upsample_shortcut: InterpolateConv`).
    pub shortcut_conv: Option<Conv2d>,
}

impl Upsample {
    /// `key` is the upsample layer's module path (e.g. `stages.1.op_list.0` or `project_out.op_list.2`);
    /// `shortcut`: the official shortcut name, None for a bare layer.
    fn load(
        ws: &mut WeightSource,
        key: &str,
        kind: UpsampleType,
        c_in: usize,
        c_out: usize,
        shortcut: Option<&str>,
    ) -> Self {
        let ps = kind == UpsampleType::ConvPixelShuffle;
        let conv_out = if ps { 4 * c_out } else { c_out };
        let main = if shortcut.is_some() { format!("{key}.main.conv.conv") } else { format!("{key}.conv.conv") };
        let shortcut_conv = (shortcut == Some(SHORTCUT_INTERPOLATE))
            .then(|| Conv2d::load(ws, &format!("{key}.shortcut.conv.conv"), c_in, c_out, 3, 1, 1, true));
        Self {
            conv: Conv2d::load(ws, &main, c_in, conv_out, 3, 1, 1, true),
            pixel_shuffle: ps,
            shortcut_repeat: (shortcut == Some(SHORTCUT_DUPLICATING)).then_some(4 * c_out / c_in),
            shortcut_conv,
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
        if let Some(r) = self.shortcut_repeat {
            return main + pixel_shuffle2(repeat_interleave_channels(x, r));
        }
        if let Some(c) = &self.shortcut_conv {
            return main + c.forward_up2(x);
        }
        main
    }
}

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
