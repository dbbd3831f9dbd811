//! Winograd F(2x2, 3x3) for stride-1, pad-1 3x3 convolutions (Lavin & Gray 2016): each 2x2 output tile is
//! `A^T [(G g G^T) . (B^T d B)] A`, with `d` the 4x4 input tile. Summed over input channels, the element-wise
//! product becomes 16 matrix products (one per position `xi` of the 4x4 transformed tile),
//! `M[xi] = U[xi] V[xi]`, `U[xi]: [C_out, C]`, `V[xi]: [C, P]` with `P` the number of tiles: 16 C_out C P
//! multiply-adds instead of the direct 36 C_out C P (2.25x fewer). The products stay with the caller (burn's batched
//! matmul); this module does the three transforms, vectorisably and on all cores.
//!
//! The transforms' entries are 0, +-1 and +-1/2 (exact in f32), so the error is float32 reassociation only, plus
//! [`flush`]: input and weight values below 1e-15 in magnitude are read as zero. Without it, the differences of
//! neighbouring tiny activations (SiLU of large negative inputs is ~1e-37) are subnormal floats, and every step that
//! touches one takes a microcode assist: measured 6-7x slower transforms and products on the default decoder's
//! second convolution of each block. With every operand 0 or >= 1e-15, the transforms' sums and differences are 0
//! or normal. The flushed terms change an output by at most 1e-15 x sum|w|, far below f32 resolution at the
//! activations' scale (1e-3 .. 1e2).
//!
//! One image at a time (`x: [C, H, W]`), a band of tile rows at a time, so that `V` of a large image never has to
//! exist at once.

use std::ops::Range;

use rayon::prelude::*;

/// Magnitudes below this are set to zero in the transformed input and weights (see the module doc).
pub const TINY: f32 = 1e-15;

/// `v`, or 0 when `|v| < TINY` (NaN stays NaN).
#[inline(always)]
pub fn flush(v: f32) -> f32 {
    if v.abs() < TINY { 0.0 } else { v }
}

/// Output tiles of a `[H, W]` map: `(rows, cols)` of 2x2 tiles (the last row/column may hang over the edge).
pub fn tiles(h: usize, w: usize) -> (usize, usize) {
    (h.div_ceil(2), w.div_ceil(2))
}

/// Tile rows per band so that a band's `V` (`16 C P_band` floats) holds at most `budget` floats (at least one row).
pub fn tile_rows_per_band(c: usize, h: usize, w: usize, budget: usize) -> usize {
    let (th, tw) = tiles(h, w);
    (budget / (16 * c * tw).max(1)).clamp(1, th.max(1))
}

/// `U = G g G^T` for every (c_out, c): `w: [C_out, C, 3, 3]` -> `[16, C, C_out]` (the right factor of the
/// pixels-as-rows products).
pub fn transform_weights(w: &[f32], c_out: usize, c: usize) -> Vec<f32> {
    let n = c_out * c;
    let mut u = vec![0.0f32; 16 * n];
    // G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    let g_rows = |v: [f32; 3]| [v[0], 0.5 * (v[0] + v[1] + v[2]), 0.5 * (v[0] - v[1] + v[2]), v[2]];
    let per_kernel: Vec<[f32; 16]> = w
        .par_chunks(9)
        .map(|g| {
            // (G g): 4x3, then (G g) G^T: 4x4
            let g: [f32; 9] = std::array::from_fn(|i| flush(g[i]));
            let cols: [[f32; 4]; 3] = std::array::from_fn(|j| g_rows([g[j], g[3 + j], g[6 + j]]));
            let mut out = [0.0f32; 16];
            for a in 0..4 {
                let row = g_rows([cols[0][a], cols[1][a], cols[2][a]]);
                out[a * 4..a * 4 + 4].copy_from_slice(&row);
            }
            out
        })
        .collect();
    u.par_chunks_mut(n).enumerate().for_each(|(xi, dst)| {
        for (ci, row) in dst.chunks_mut(c_out).enumerate() {
            for (co, d) in row.iter_mut().enumerate() {
                *d = per_kernel[co * c + ci][xi];
            }
        }
    });
    u
}

/// The two taps (row/column offsets within the 4x4 tile, with signs) of row `a` of `B^T =
/// [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`.
const BT: [[(usize, f32); 2]; 4] =
    [[(0, 1.0), (2, -1.0)], [(1, 1.0), (2, 1.0)], [(2, 1.0), (1, -1.0)], [(1, 1.0), (3, -1.0)]];

/// `V = B^T d B` for the tiles of tile rows `rows`: the NHWC image `x: [H, W, C]` -> `[16, P_band, C]`, `P_band =
/// rows.len() * tiles_w`, tile `(ty, tx)` reading input rows `2 ty - 1 ..= 2 ty + 2` and columns `2 tx - 1 ..= 2 tx +
/// 2` (zero outside). Each entry is a signed sum of four pixels' channel vectors.
pub fn transform_input(x: &[f32], c: usize, h: usize, w: usize, rows: Range<usize>) -> Vec<f32> {
    let (_, tw) = tiles(h, w);
    let nr = rows.len();
    let mut v = vec![0.0f32; 16 * nr * tw * c];
    // one chunk per (xi, tile row)
    v.par_chunks_mut(tw * c).enumerate().for_each(|(k, dst)| {
        let (xi, ty) = (k / nr, rows.start + k % nr);
        let (ta, tb) = (BT[xi / 4], BT[xi % 4]);
        for (tx, out) in dst.chunks_mut(c).enumerate() {
            for (di, si) in ta {
                // padded row 2ty + di is input row 2ty + di - 1
                let y = 2 * ty + di;
                if y == 0 || y > h {
                    continue;
                }
                for (dj, sj) in tb {
                    let xx = 2 * tx + dj;
                    if xx == 0 || xx > w {
                        continue;
                    }
                    let s = si * sj;
                    let px = &x[((y - 1) * w + xx - 1) * c..][..c];
                    for (o, p) in out.iter_mut().zip(px) {
                        *o += s * flush(*p);
                    }
                }
            }
        }
    });
    v
}

/// Output channels per parallel task of [`transform_output`]: one 64-byte line of a product row.
const CO_GROUP: usize = 16;

/// `Y = A^T M A` (+ bias) for the tiles of tile rows `rows`, written into the NCHW map `out: [C_out, H, W]`; `m: [16,
/// P_band, C_out]` are the products. `A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]`.
pub fn transform_output(m: &[f32], out: &mut [f32], h: usize, w: usize, rows: Range<usize>, bias: Option<&[f32]>) {
    let (_, tw) = tiles(h, w);
    let pb = rows.len() * tw;
    let c_out = m.len() / (16 * pb);
    let hw = h * w;
    out.par_chunks_mut(CO_GROUP * hw).enumerate().for_each(|(g, planes)| {
        let co0 = g * CO_GROUP;
        let ng = planes.len() / hw;
        let mut t = [[[0.0f32; CO_GROUP]; 4]; 2];
        for (i, ty) in rows.clone().enumerate() {
            for tx in 0..tw {
                let p = i * tw + tx;
                let row = |xi: usize| &m[(xi * pb + p) * c_out + co0..][..ng];
                // t = A^T M: 2x4 per channel
                for b in 0..4 {
                    let (m0, m1, m2, m3) = (row(b), row(4 + b), row(8 + b), row(12 + b));
                    for j in 0..ng {
                        t[0][b][j] = m0[j] + m1[j] + m2[j];
                        t[1][b][j] = m1[j] - m2[j] - m3[j];
                    }
                }
                for (r, tr) in t.iter().enumerate() {
                    let y = 2 * ty + r;
                    if y >= h {
                        continue;
                    }
                    let x = 2 * tx;
                    for j in 0..ng {
                        let bj = bias.map_or(0.0, |b| b[co0 + j]);
                        let plane = &mut planes[j * hw..(j + 1) * hw];
                        plane[y * w + x] = tr[0][j] + tr[1][j] + tr[2][j] + bj;
                        if x + 1 < w {
                            plane[y * w + x + 1] = tr[1][j] - tr[2][j] - tr[3][j] + bj;
                        }
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::im2col::nchw_to_nhwc;
    use crate::reference::{conv_f64, values};

    /// The three transforms around naive per-`xi` products equal the direct float64 convolution (stride 1, pad 1,
    /// 3x3, with bias) to 1e-5 of the output scale, on odd and even, non-square maps, in one band and in bands of
    /// one and two tile rows.
    #[test]
    fn transforms_around_the_products_equal_the_direct_convolution() {
        for (c, c_out, h, w) in [(3, 4, 7, 9), (5, 2, 8, 6), (1, 1, 1, 1), (2, 3, 2, 5), (4, 7, 11, 4), (3, 37, 5, 3)] {
            let x = values(c * h * w, 0.25);
            let wt = values(c_out * c * 9, 5.0);
            let bias = values(c_out, 11.0);
            let mut want = conv_f64(&x, &wt, c, h, w, c_out, 3, 1);
            want.iter_mut().enumerate().for_each(|(i, v)| *v += bias[i / (h * w)] as f64);
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let u = transform_weights(&wt, c_out, c);
            let nhwc = nchw_to_nhwc(&x, c, h * w);
            let (th, tw) = tiles(h, w);
            for per in [1, 2, th] {
                let mut out = vec![f32::NAN; c_out * h * w];
                let mut r0 = 0;
                while r0 < th {
                    let rows = r0..(r0 + per).min(th);
                    let pb = rows.len() * tw;
                    let v = transform_input(&nhwc, c, h, w, rows.clone());
                    let m: Vec<f32> = (0..16 * pb * c_out)
                        .map(|i| {
                            let (xi, p, co) = (i / (pb * c_out), (i / c_out) % pb, i % c_out);
                            (0..c).map(|ci| v[(xi * pb + p) * c + ci] * u[(xi * c + ci) * c_out + co]).sum()
                        })
                        .collect();
                    transform_output(&m, &mut out, h, w, rows.clone(), Some(&bias));
                    r0 = rows.end;
                }
                let err = out.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
                assert!(err <= 1e-5 * scale, "c {c} c_out {c_out} {h}x{w}, {per} tile rows per band: err {err:e}");
            }
        }
    }

    /// `G g G^T` of a kernel with one non-zero tap equals the outer product of G's columns (a known identity).
    #[test]
    fn weight_transform_of_a_unit_tap_is_an_outer_product_of_g_columns() {
        let g = [[1.0f32, 0.5, 0.5, 0.0], [0.0, 0.5, -0.5, 0.0], [0.0, 0.5, 0.5, 1.0]]; // columns of G
        for tap in 0..9 {
            let mut k = [0.0f32; 9];
            k[tap] = 1.0;
            let u = transform_weights(&k, 1, 1);
            for a in 0..4 {
                for b in 0..4 {
                    assert_eq!(u[a * 4 + b], g[tap / 3][a] * g[tap % 3][b], "tap {tap} at ({a}, {b})");
                }
            }
        }
    }

    /// Subnormal-producing inputs (neighbouring values ~1e-37 whose differences underflow) give zeros in the
    /// transformed input, never subnormals; NaN passes through.
    #[test]
    fn transformed_input_holds_no_subnormals() {
        let (c, h, w) = (2, 6, 7);
        // (an NHWC map: the layout does not matter to the property)
        let mut x: Vec<f32> = (0..c * h * w).map(|i| -6.1e-37 - (i % 5) as f32 * 1e-38).collect();
        x[3] = 0.5;
        let v = transform_input(&x, c, h, w, 0..tiles(h, w).0);
        assert!(v.iter().all(|v| !v.is_subnormal()), "no subnormal values");
        assert!(v.iter().any(|v| *v != 0.0), "the normal input still comes through");
        x[3] = f32::NAN;
        assert!(transform_input(&x, c, h, w, 0..1).iter().any(|v| v.is_nan()), "NaN stays NaN");
        assert_eq!(flush(1e-16), 0.0);
        assert_eq!(flush(-2e-15), -2e-15);
    }

    #[test]
    fn bands_cover_the_map() {
        assert_eq!(tiles(7, 9), (4, 5));
        assert_eq!(tile_rows_per_band(48, 128, 128, 16 * 48 * 64 * 10), 10);
        assert_eq!(tile_rows_per_band(48, 128, 128, 1), 1);
        assert_eq!(tile_rows_per_band(48, 128, 128, usize::MAX), 64);
    }
}
