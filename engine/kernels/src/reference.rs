//! Float64 definitions the kernels' tests compare against.

/// Direct convolution, stride 1 or more, zero padding, in float64: `x: [C, H, W]`, `w: [C_out, C, k, k]` ->
/// `[C_out, H_out, W_out]`.
#[allow(clippy::too_many_arguments)]
pub fn conv_strided_f64(
    x: &[f32],
    w: &[f32],
    c: usize,
    h: usize,
    wd: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> Vec<f64> {
    let (oh, ow) = ((h + 2 * pad - k) / stride + 1, (wd + 2 * pad - k) / stride + 1);
    let mut out = vec![0.0f64; c_out * oh * ow];
    for co in 0..c_out {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = 0.0f64;
                for ci in 0..c {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = (
                                (oy * stride + ky) as isize - pad as isize,
                                (ox * stride + kx) as isize - pad as isize,
                            );
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                acc += w[((co * c + ci) * k + ky) * k + kx] as f64
                                    * x[(ci * h + iy as usize) * wd + ix as usize] as f64;
                            }
                        }
                    }
                }
                out[(co * oh + oy) * ow + ox] = acc;
            }
        }
    }
    out
}

/// Stride-1 form of [`conv_strided_f64`].
#[allow(clippy::too_many_arguments)]
pub fn conv_f64(x: &[f32], w: &[f32], c: usize, h: usize, wd: usize, c_out: usize, k: usize, pad: usize) -> Vec<f64> {
    conv_strided_f64(x, w, c, h, wd, c_out, k, 1, pad)
}

/// Deterministic test values in [-1, 1].
pub fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n).map(|i| ((i as f32 + seed) * 0.618_034).sin()).collect()
}
