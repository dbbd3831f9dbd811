//! Backbone hyper-parameters: the family (DINOv2 / DINOv3), the feed-forward type and [`VitConfig`]. A leaf
//! module: `vit.rs` (the transformer) and the family modules (`dinov2.rs`, `dinov3.rs`: presets, positions)
//! all read it, and it reads none of them.

use serde::{Deserialize, Serialize};

/// Which reference the backbone follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Meta's DINOv3: axial RoPE on patch tokens, registers, masked k-bias.
    Dinov3,
    /// HF `Dinov2Model` / `Dinov2WithRegistersModel`: learned position table, bicubic interpolation.
    Dinov2,
}

/// Feed-forward type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ffn {
    /// fc1 -> exact-erf GELU -> fc2
    Mlp,
    /// w3(silu(w1 x) * w2 x)
    Swiglu,
}

/// Backbone hyper-parameters. Presets in `dinov3.rs` / `dinov2.rs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    pub family: Family,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub ffn: Ffn,
    pub ffn_hidden: usize,
    pub registers: usize,
    /// Patch size of the backbone's own patchify (16 for DINOv3, 14 for DINOv2).
    pub patch_size: usize,
    pub layer_norm_eps: f64,
    pub layerscale: bool,
    pub qkv_bias: bool,
    /// DINOv3 RoPE base (ignored for DINOv2).
    #[serde(default = "default_rope_base")]
    pub rope_base: f64,
    /// DINOv2: side M of the learned M x M position grid.
    #[serde(default)]
    pub pos_grid: usize,
    /// DINOv2: interpolate the table with antialiasing (HF `Dinov2WithRegistersModel`).
    #[serde(default)]
    pub pos_antialias: bool,
    /// DINOv2: the official torch.hub `interpolate_offset` (0.0 = HF semantics; the hub default is 0.1).
    #[serde(default)]
    pub pos_offset: f64,
}

fn default_rope_base() -> f64 {
    100.0
}

impl VitConfig {
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }
    pub fn n_prefix(&self) -> usize {
        1 + self.registers
    }
    /// Parameter count of the transformer (without patch embedding).
    pub fn validate(&self) -> crate::Result<()> {
        // a config file is untrusted input: sizes that cannot be a model are refused before anything is built
        let sizes = [
            ("dim", self.dim, 1, 1 << 16),
            ("depth", self.depth, 0, 1 << 10),
            ("ffn_hidden", self.ffn_hidden, 1, 1 << 20),
            ("registers", self.registers, 0, 1 << 12),
            ("patch_size", self.patch_size, 1, 1 << 8),
            ("pos_grid", self.pos_grid, 0, 1 << 12),
        ];
        for (what, v, lo, hi) in sizes {
            if v < lo || v > hi {
                return Err(crate::EngineError::Config(format!("{what} {v} outside {lo}..={hi}")));
            }
        }
        if !self.layer_norm_eps.is_finite() || self.layer_norm_eps <= 0.0 || !self.rope_base.is_finite() {
            return Err(crate::EngineError::Config(format!(
                "layer_norm_eps {} / rope_base {} must be finite (eps > 0)",
                self.layer_norm_eps, self.rope_base
            )));
        }
        if self.heads == 0 || !self.dim.is_multiple_of(self.heads) {
            return Err(crate::EngineError::Config(format!("dim {} not divisible by heads {}", self.dim, self.heads)));
        }
        if self.family == Family::Dinov3 && !self.head_dim().is_multiple_of(4) {
            return Err(crate::EngineError::Config(format!("RoPE needs head_dim % 4 == 0, got {}", self.head_dim())));
        }
        Ok(())
    }
}
