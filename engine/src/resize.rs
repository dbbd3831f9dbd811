//! Bicubic resampling exactly as PyTorch's `F.interpolate(mode="bicubic", align_corners=False)` computes it,
//! with and without `antialias`, written as per-axis weight matrices (out = Wh · x · Wwᵀ).
//!
//! Used for DINOv2 position-table interpolation (HF `Dinov2Model`: antialias off;
//! `Dinov2WithRegistersModel`: antialias on) and for the teacher's input resize (antialias off).

use burn::tensor::{Device, Tensor, TensorData};

fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// Row-major `[n_out, n_in]` weights of one axis.
///
/// `scale` is the source-coordinate step (`n_in / n_out` when a size is requested; the official DINOv2
/// `+0.1` variant passes `M / (g + 0.1)`).
pub fn bicubic_matrix(n_in: usize, n_out: usize, antialias: bool, scale: Option<f64>) -> Vec<f64> {
    let s = scale.unwrap_or(n_in as f64 / n_out as f64);
    let mut m = vec![0.0; n_out * n_in];
    for i in 0..n_out {
        let row = &mut m[i * n_in..(i + 1) * n_in];
        if !antialias {
            // Keys cubic convolution, A = -0.75, border taps clamped, weights not renormalised.
            let a = -0.75;
            let src = s * (i as f64 + 0.5) - 0.5;
            let i0 = src.floor();
            let t = src - i0;
            let w = [cubic(t + 1.0, a), cubic(t, a), cubic(1.0 - t, a), cubic(2.0 - t, a)];
            for (k, wk) in w.iter().enumerate() {
                let idx = (i0 as i64 - 1 + k as i64).clamp(0, n_in as i64 - 1) as usize;
                row[idx] += wk;
            }
        } else {
            // PIL-style: a = -0.5, support stretched by the scale when downsampling, renormalised.
            let a = -0.5;
            let (support, inv) = if s >= 1.0 { (2.0 * s, 1.0 / s) } else { (2.0, 1.0) };
            let center = s * (i as f64 + 0.5);
            let xmin = ((center - support + 0.5).trunc() as i64).max(0) as usize;
            let xmax = ((center + support + 0.5).trunc() as i64).min(n_in as i64).max(0) as usize;
            let mut total = 0.0;
            for (j, r) in row.iter_mut().enumerate().take(xmax).skip(xmin) {
                let w = cubic((j as f64 - center + 0.5) * inv, a);
                *r = w;
                total += w;
            }
            if total != 0.0 {
                row[xmin..xmax].iter_mut().for_each(|r| *r /= total);
            }
        }
    }
    m
}

fn matrix_tensor(m: &[f64], rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    let data: Vec<f32> = m.iter().map(|&v| v as f32).collect();
    Tensor::from_data(TensorData::new(data, vec![rows, cols]), device)
}

/// Resize a batch of maps with separable bicubic weights.
///
/// # Shapes
/// - x: `[B, C, H, W]` -> `[B, C, out_h, out_w]`
pub fn resize_bicubic(
    x: Tensor<4>,
    out_h: usize,
    out_w: usize,
    antialias: bool,
    scale: Option<(f64, f64)>,
) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    if h == out_h && w == out_w && scale.is_none() {
        return x;
    }
    let device = x.device();
    let wh = matrix_tensor(&bicubic_matrix(h, out_h, antialias, scale.map(|s| s.0)), out_h, h, &device);
    let ww = matrix_tensor(&bicubic_matrix(w, out_w, antialias, scale.map(|s| s.1)), out_w, w, &device);
    let n = b * c;
    // rows: [n, H, W] -> [n, out_h, W]; cols: [n, out_h, W] x [W, out_w]
    let x = x.reshape([n, h, w]);
    let y = wh.unsqueeze::<3>().repeat_dim(0, n).matmul(x);
    let y = y.reshape([n * out_h, w]).matmul(ww.transpose());
    y.reshape([b, c, out_h, out_w])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one_and_identity_at_same_size() {
        for aa in [false, true] {
            for (i, o) in [(6, 8), (8, 6), (37, 16), (16, 14), (5, 5)] {
                let m = bicubic_matrix(i, o, aa, None);
                for r in 0..o {
                    let s: f64 = m[r * i..(r + 1) * i].iter().sum();
                    assert!((s - 1.0).abs() < 1e-12, "aa={aa} {i}->{o} row {r} sums to {s}");
                }
            }
            let m = bicubic_matrix(5, 5, aa, None);
            for r in 0..5 {
                for c in 0..5 {
                    let e = if r == c { 1.0 } else { 0.0 };
                    assert!((m[r * 5 + c] - e).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn catmull_rom_upsampling_reproduces_linear_functions_inside() {
        // With a = -0.5 (the antialiased path when upsampling) the cubic kernel reproduces polynomials up to
        // degree 2; Keys' A = -0.75 (the plain path) only reproduces constants, so it must NOT pass this.
        let (i, o) = (12, 17);
        let keys = bicubic_matrix(i, o, false, None);
        let m = bicubic_matrix(i, o, true, None);
        let s = i as f64 / o as f64;
        for r in 3..o - 3 {
            let v: f64 = (0..i).map(|c| m[r * i + c] * (2.0 * c as f64 + 1.0)).sum();
            let src = s * (r as f64 + 0.5) - 0.5;
            assert!((v - (2.0 * src + 1.0)).abs() < 1e-12, "row {r}: {v}");
        }
        let worst = (3..o - 3)
            .map(|r| {
                let v: f64 = (0..i).map(|c| keys[r * i + c] * (2.0 * c as f64 + 1.0)).sum();
                (v - (2.0 * (s * (r as f64 + 0.5) - 0.5) + 1.0)).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst > 1e-3, "A=-0.75 should not reproduce linear functions exactly ({worst})");
    }
}
