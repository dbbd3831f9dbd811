//! DINOv2 specifics (HF `Dinov2Model` / `Dinov2WithRegistersModel`): the learned position table and its
//! bicubic interpolation to any grid, and presets. The default model's teacher is DINOv2-S/14.

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use super::vit_config::{Family, Ffn, VitConfig};
use crate::resize::resize_bicubic;
use crate::weights::{Init, WeightSource};

/// Learned `[1, 1 + M*M, D]` table (CLS row first, then the row-major M x M grid).
#[derive(Module, Debug)]
pub struct PosTable {
    pub table: Param<Tensor<3>>,
    #[module(skip)]
    pub grid: usize,
    #[module(skip)]
    pub antialias: bool,
    #[module(skip)]
    pub offset: f64,
}

impl PosTable {
    pub fn load(ws: &mut WeightSource, key: &str, cfg: &VitConfig) -> Self {
        let m = cfg.pos_grid;
        Self {
            table: ws.param(key, [1, 1 + m * m, cfg.dim], Init::Normal(0.02)),
            grid: m,
            antialias: cfg.pos_antialias,
            offset: cfg.pos_offset,
        }
    }

    /// The table for an `h x w` patch grid, as HF computes it: unchanged when the grid is the learned
    /// M x M one, else bicubic (`size=(h, w)`, align_corners False, antialias per variant).
    ///
    /// # Shapes
    /// - returns `[1, 1 + h*w, D]`
    pub fn for_grid(&self, h: usize, w: usize) -> Tensor<3> {
        let m = self.grid;
        let t = self.table.val();
        if h == m && w == m {
            return t;
        }
        let d = t.dims()[2];
        let cls = t.clone().narrow(1, 0, 1);
        let grid = t.narrow(1, 1, m * m).reshape([1, m, m, d]).permute([0, 3, 1, 2]); // [1, D, M, M]
        let scale =
            (self.offset != 0.0).then(|| (m as f64 / (h as f64 + self.offset), m as f64 / (w as f64 + self.offset)));
        let g = resize_bicubic(grid, h, w, self.antialias, scale); // [1, D, h, w]
        let g = g.reshape([1, d, h * w]).swap_dims(1, 2);
        Tensor::cat(vec![cls, g], 1)
    }
}

fn v2(dim: usize, depth: usize, heads: usize, ffn: Ffn, ffn_hidden: usize, registers: usize) -> VitConfig {
    VitConfig {
        family: Family::Dinov2,
        dim,
        depth,
        heads,
        ffn,
        ffn_hidden,
        registers,
        patch_size: 14,
        layer_norm_eps: 1e-6,
        layerscale: true,
        qkv_bias: true,
        rope_base: 100.0,
        pos_grid: 37,
        pos_antialias: registers > 0,
        pos_offset: 0.0,
    }
}

/// Named presets of the HF / hub models (registers variants interpolate with antialiasing).
pub fn preset(name: &str) -> Option<VitConfig> {
    Some(match name {
        "dinov2_vits14" | "vits14" => v2(384, 12, 6, Ffn::Mlp, 1536, 0),
        "dinov2_vitb14" | "vitb14" => v2(768, 12, 12, Ffn::Mlp, 3072, 0),
        "dinov2_vitl14" | "vitl14" => v2(1024, 24, 16, Ffn::Mlp, 4096, 0),
        "dinov2_vits14_reg" => v2(384, 12, 6, Ffn::Mlp, 1536, 4),
        "dinov2_vitb14_reg" => v2(768, 12, 12, Ffn::Mlp, 3072, 4),
        "dinov2_vitl14_reg" => v2(1024, 24, 16, Ffn::Mlp, 4096, 4),
        _ => return None,
    })
}

pub const PRESETS: [&str; 6] =
    ["dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vits14_reg", "dinov2_vitb14_reg", "dinov2_vitl14_reg"];
