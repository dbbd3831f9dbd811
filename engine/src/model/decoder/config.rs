//! The official `DecoderConfig`: its serde layout (config.json), the per-stage accessors, and the check that the
//! official code builds the config and can run its forward.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::blocks::EVIT_DIM;
use super::layers::{Act, NormKind};
use crate::error::{EngineError, Result};

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
