//! DINOv3 specifics: axial RoPE (base 100, per-axis coordinate normalisation, half-split rotation) and presets.
//!
//! Everything else of the DINOv3 ViT (registers, LayerScale, masked k-bias applied at load time, exact GELU,
//! final LayerNorm) is in `vit.rs`.

use burn::tensor::{Device, Tensor};

use super::nn::tensor_from;
use super::vit_config::{Family, Ffn, VitConfig};

/// Sin/cos tables for one patch grid, shared by all heads.
#[derive(Debug, Clone)]
pub struct Rope {
    /// `[N, Dh]`
    pub sin: Tensor<2>,
    /// `[N, Dh]`
    pub cos: Tensor<2>,
}

/// `periods[j] = base^(4j/Dh)`, j < Dh/4 (the official `rope_embed.periods` buffer).
pub fn rope_periods(head_dim: usize, base: f64) -> Vec<f64> {
    (0..head_dim / 4).map(|j| base.powf(4.0 * j as f64 / head_dim as f64)).collect()
}

/// Host sin/cos tables `[h*w, Dh]` (row-major grid; columns `[y.., x.., y.., x..]`).
pub fn rope_tables(head_dim: usize, base: f64, (h, w): (usize, usize)) -> (Vec<f32>, Vec<f32>) {
    let periods = rope_periods(head_dim, base);
    let q = head_dim / 4;
    let mut sin = Vec::with_capacity(h * w * head_dim);
    let mut cos = Vec::with_capacity(h * w * head_dim);
    for i in 0..h {
        for j in 0..w {
            let cy = 2.0 * ((i as f64 + 0.5) / h as f64) - 1.0;
            let cx = 2.0 * ((j as f64 + 0.5) / w as f64) - 1.0;
            let mut ang = Vec::with_capacity(2 * q);
            ang.extend(periods.iter().map(|p| 2.0 * std::f64::consts::PI * cy / p));
            ang.extend(periods.iter().map(|p| 2.0 * std::f64::consts::PI * cx / p));
            for _ in 0..2 {
                sin.extend(ang.iter().map(|a| a.sin() as f32));
                cos.extend(ang.iter().map(|a| a.cos() as f32));
            }
        }
    }
    (sin, cos)
}

impl Rope {
    pub fn new(head_dim: usize, base: f64, grid: (usize, usize), device: &Device) -> Self {
        let n = grid.0 * grid.1;
        let (s, c) = rope_tables(head_dim, base, grid);
        Self { sin: tensor_from(s, [n, head_dim], device), cos: tensor_from(c, [n, head_dim], device) }
    }

    /// Rotate tokens `n_prefix..` of q or k: `x cos + rotate_half(x) sin`, rotate_half = cat(-x2, x1).
    ///
    /// # Shapes
    /// - x: `[B, H, T, Dh]` with `T = n_prefix + N` -> same
    pub fn apply(&self, x: Tensor<4>, n_prefix: usize) -> Tensor<4> {
        let [_, _, t, dh] = x.dims();
        let n = t - n_prefix;
        let prefix = x.clone().narrow(2, 0, n_prefix);
        let p = x.narrow(2, n_prefix, n);
        let half = dh / 2;
        let x1 = p.clone().narrow(3, 0, half);
        let x2 = p.clone().narrow(3, half, half);
        let rot = Tensor::cat(vec![x2.neg(), x1], 3);
        let cos = self.cos.clone().reshape([1, 1, n, dh]);
        let sin = self.sin.clone().reshape([1, 1, n, dh]);
        let p = p * cos + rot * sin;
        Tensor::cat(vec![prefix, p], 2)
    }
}

fn v3(dim: usize, depth: usize, heads: usize, ffn: Ffn, ffn_hidden: usize) -> VitConfig {
    VitConfig {
        family: Family::Dinov3,
        dim,
        depth,
        heads,
        ffn,
        ffn_hidden,
        registers: 4,
        patch_size: 16,
        layer_norm_eps: 1e-5,
        layerscale: true,
        qkv_bias: true,
        rope_base: 100.0,
        pos_grid: 0,
        pos_antialias: false,
        pos_offset: 0.0,
    }
}

/// Named presets of Meta's hub models.
pub fn preset(name: &str) -> Option<VitConfig> {
    Some(match name {
        "dinov3_vits16" | "vits16" => v3(384, 12, 6, Ffn::Mlp, 1536),
        "dinov3_vits16plus" | "vits16plus" => v3(384, 12, 6, Ffn::Swiglu, 1536),
        "dinov3_vitb16" | "vitb16" => v3(768, 12, 12, Ffn::Mlp, 3072),
        "dinov3_vitl16" | "vitl16" => v3(1024, 24, 16, Ffn::Mlp, 4096),
        "dinov3_vith16plus" | "vith16plus" => v3(1280, 32, 20, Ffn::Swiglu, 5120),
        _ => return None,
    })
}

pub const PRESETS: [&str; 5] =
    ["dinov3_vits16", "dinov3_vits16plus", "dinov3_vitb16", "dinov3_vitl16", "dinov3_vith16plus"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_match_the_documented_values() {
        // NOTES: Dh=16 gives [1, 3.162, 10, 31.62]
        let p = rope_periods(16, 100.0);
        let want = [1.0, 10f64.sqrt(), 10.0, 1000f64.sqrt()];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn presets_are_consistent() {
        for n in PRESETS {
            let c = preset(n).expect("preset");
            c.validate().expect("valid");
            assert_eq!(c.head_dim(), 64, "{n}");
        }
        assert_eq!(preset("dinov3_vitl16").map(|c| (c.dim, c.depth, c.heads, c.registers)), Some((1024, 24, 16, 4)));
    }
}
