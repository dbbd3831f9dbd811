//! The DiT's configuration: architecture, sizes, presets (and the FFN width rule of both references).

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

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

/// Size presets: `tiny` (CPU tests), `mini` (the default model's generator on CPU), `S`, `B`, `L`, `XL` (DiT widths; DDT
/// head as in RAE: 2048 wide, 2 deep).
pub const PRESETS: &[&str] = &["tiny", "mini", "s", "b", "l", "xl"];

impl DitConfig {
    /// Named preset, e.g. `DitConfig::preset(DitArch::Ddt, "xl", 768, 16, 1000)`.
    pub fn preset(arch: DitArch, name: &str, in_channels: usize, grid: usize, num_classes: usize) -> Result<Self> {
        let (d, depth, heads) = match name.to_ascii_lowercase().as_str() {
            "tiny" => (64, 2, 4),
            // between tiny and S for CPU training: ~0.3 s per step of 16 latents at the 8x8 grid on 2 cores
            "mini" => (192, 6, 6),
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
