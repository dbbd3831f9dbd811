//! `conv3x3(nearest_up2(x))` at the input resolution: the weight fold into four 2x2 phase kernels and the
//! assembly of the phases into the upsampled map. The 2x2 convolution between them is an ordinary one (pad 1).
//!
//! Output pixel (2i + a, 2j + b) of the upsampled convolution sees input rows i-1+a.. and columns j-1+b.. only
//! twice each: for phase a = 0 the kernel rows fold to [W0, W1 + W2] at offsets (-1, 0), for a = 1 to [W0 + W1, W2]
//! at offsets (0, +1); columns alike. With padding 1, phase (a, b) of the 2x2 convolution's output sits at
//! `[i + a, j + b]`.

use rayon::prelude::*;

/// Fold three taps into the two of a phase: phase 0 -> [t0, t1 + t2], phase 1 -> [t0 + t1, t2].
#[inline(always)]
fn fold3(t: [f32; 3], phase: usize) -> [f32; 2] {
    if phase == 0 { [t[0], t[1] + t[2]] } else { [t[0] + t[1], t[2]] }
}

/// `[C_out, C_in, 3, 3]` -> `[4 C_out, C_in, 2, 2]`, output channel `4 co + 2 a + b` for phase (a, b).
pub fn fold_up2_weights(w: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; 4 * c_out * c_in * 4];
    out.par_chunks_mut(4 * c_in * 4).enumerate().for_each(|(co, dst)| {
        for ci in 0..c_in {
            let k = &w[(co * c_in + ci) * 9..][..9];
            for b in 0..2 {
                // columns folded for phase b, per kernel row
                let rows = [0, 1, 2].map(|r| fold3([k[3 * r], k[3 * r + 1], k[3 * r + 2]], b));
                for a in 0..2 {
                    let d = &mut dst[((2 * a + b) * c_in + ci) * 4..][..4];
                    for s in 0..2 {
                        let [top, bottom] = fold3([rows[0][s], rows[1][s], rows[2][s]], a);
                        d[s] = top;
                        d[2 + s] = bottom;
                    }
                }
            }
        }
    });
    out
}

/// One image's phases `y: [4 C_out, H+1, W+1]` (the 2x2 convolution, pad 1) -> `[C_out, 2H, 2W]`:
/// `out[co, 2i + a, 2j + b] = y[4 co + 2a + b, i + a, j + b]`.
pub fn assemble_up2(y: &[f32], c_out: usize, h: usize, w: usize) -> Vec<f32> {
    let (yh, yw) = (h + 1, w + 1);
    let mut out = vec![0.0f32; c_out * 4 * h * w];
    out.par_chunks_mut(4 * h * w).enumerate().for_each(|(co, dst)| {
        for (oy, row) in dst.chunks_mut(2 * w).enumerate() {
            let (i, a) = (oy / 2, oy % 2);
            let p0 = &y[((4 * co + 2 * a) * yh + i + a) * yw..][..yw];
            let p1 = &y[((4 * co + 2 * a + 1) * yh + i + a) * yw..][..yw];
            for (j, pair) in row.chunks_mut(2).enumerate() {
                pair[0] = p0[j];
                pair[1] = p1[j + 1];
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{conv_f64, values};

    /// fold -> 2x2 convolution (pad 1) -> assemble equals nearest x2 then the 3x3 convolution (pad 1), in float64
    /// references, for odd non-square sizes (1e-5 of the output scale).
    #[test]
    fn folded_upsample_conv_equals_upsample_then_conv() {
        for (c_in, c_out, h, w) in [(3, 2, 3, 5), (4, 3, 1, 1), (2, 5, 4, 2)] {
            let x = values(c_in * h * w, 0.3);
            let wt = values(c_out * c_in * 9, 5.0);
            let mut up = vec![0.0f32; c_in * 4 * h * w];
            for c in 0..c_in {
                for y in 0..2 * h {
                    for xx in 0..2 * w {
                        up[(c * 2 * h + y) * 2 * w + xx] = x[(c * h + y / 2) * w + xx / 2];
                    }
                }
            }
            let want = conv_f64(&up, &wt, c_in, 2 * h, 2 * w, c_out, 3, 1);
            let folded = fold_up2_weights(&wt, c_out, c_in);
            let phases: Vec<f32> =
                conv_f64(&x, &folded, c_in, h, w, 4 * c_out, 2, 1).iter().map(|v| *v as f32).collect();
            let got = assemble_up2(&phases, c_out, h, w);
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let err = got.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
            assert!(err <= 1e-5 * scale, "{c_in}->{c_out} at {h}x{w}: err {err:e}");
        }
    }
}
