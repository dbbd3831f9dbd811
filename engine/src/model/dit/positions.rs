//! Position tables, regenerated for the grid of each call: the 2-D RoPE (LightningDiT) and the MAE sin-cos
//! embedding.

use burn::tensor::{Device, Tensor, TensorData};

/// Cos/sin tables of the 2-D RoPE for one grid, `[N, head_dim]` each.
#[derive(Clone, Debug)]
pub struct RopeTable {
    pub cos: Tensor<2>,
    pub sin: Tensor<2>,
}

impl RopeTable {
    /// EVA-02 `VisionRotaryEmbeddingFast(dim = head_dim/2)` on an `h x w` grid, positions `0..h`, `0..w`:
    /// the first half of each head rotates with the row, the second with the column; frequencies
    /// `10000^(-2j/(head_dim/2))` on adjacent pairs.
    pub fn new(head_dim: usize, h: usize, w: usize, device: &Device) -> Self {
        let (c, s) = rope_values(head_dim, h, w);
        let n = h * w;
        Self {
            cos: Tensor::from_data(TensorData::new(c, vec![n, head_dim]), device),
            sin: Tensor::from_data(TensorData::new(s, vec![n, head_dim]), device),
        }
    }

    /// # Shapes
    /// - x: `[B, H, N, hd]` -> `[B, H, N, hd]`
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, n, hd] = x.dims();
        let pairs = x.clone().reshape([b, h, n, hd / 2, 2]);
        let x0 = pairs.clone().narrow(4, 0, 1);
        let x1 = pairs.narrow(4, 1, 1);
        let rot = Tensor::cat(vec![x1.neg(), x0], 4).reshape([b, h, n, hd]);
        x * self.cos.clone().reshape([1, 1, n, hd]) + rot * self.sin.clone().reshape([1, 1, n, hd])
    }
}

/// Host values of the RoPE table (cos, sin), row-major `[h*w, head_dim]`.
pub fn rope_values(head_dim: usize, h: usize, w: usize) -> (Vec<f32>, Vec<f32>) {
    let d = head_dim / 2;
    // Frequencies in float32 as the reference computes them.
    let freqs: Vec<f64> = (0..d / 2).map(|j| (1.0f32 / 10000f32.powf((2 * j) as f32 / d as f32)) as f64).collect();
    let mut c = Vec::with_capacity(h * w * head_dim);
    let mut s = Vec::with_capacity(h * w * head_dim);
    for r in 0..h {
        for col in 0..w {
            for (pos, _) in [(r, 0), (col, 1)] {
                for f in &freqs {
                    let a = pos as f64 * f;
                    for _ in 0..2 {
                        c.push(a.cos() as f32);
                        s.push(a.sin() as f32);
                    }
                }
            }
        }
    }
    (c, s)
}

/// MAE 2-D sin-cos position embedding, row-major tokens `[h*w, dim]`: the first `dim/2` channels encode
/// the column, the second the row; each half `[sin(p w_i) | cos(p w_i)]`, `w_i = 10000^(-i/(dim/4))`.
pub fn sincos_pos_embed(dim: usize, h: usize, w: usize) -> Vec<f32> {
    let q = dim / 4;
    let om: Vec<f64> = (0..q).map(|i| 1.0 / 10000f64.powf(i as f64 / q as f64)).collect();
    let mut out = Vec::with_capacity(h * w * dim);
    for r in 0..h {
        for col in 0..w {
            for pos in [col, r] {
                let p = pos as f64;
                out.extend(om.iter().map(|o| (p * o).sin() as f32));
                out.extend(om.iter().map(|o| (p * o).cos() as f32));
            }
        }
    }
    out
}
