//! Lowering a 2-D convolution to a matrix product: im2col in two layouts, the NCHW -> NHWC transpose one of them
//! needs, and the scatter of a product's result back into an NCHW output (with the bias).
//!
//! One image at a time (`x` is `[C, H, W]`); a chunk of whole output rows `rows` at a time, so the column matrix of a
//! large image never has to exist at once.
//! - `kn`: columns `[K, n]`, K ordered `(c, ky, kx)` (the weight `[C_out, C, k, k]` reshaped is its left factor).
//! - `nk`: columns `[n, K]`, K ordered `(ky, kx, c)`, built from NHWC input: the product `cols x W^T` has the
//!   pixels as rows, the better shape for the matrix kernel when C_out is small and n large.

use std::ops::Range;

use rayon::prelude::*;

/// One image's convolution geometry: square kernel `k`, the same stride and zero padding on both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    /// `None` when the kernel does not fit the padded input or the stride is 0.
    pub fn new(c: usize, h: usize, w: usize, k: usize, stride: usize, pad: usize) -> Option<Self> {
        (stride > 0 && k > 0 && h + 2 * pad >= k && w + 2 * pad >= k).then_some(Self { c, h, w, k, stride, pad })
    }
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }
    /// K, the length of one patch.
    pub fn patch_len(&self) -> usize {
        self.c * self.k * self.k
    }
    /// Output rows per chunk so that a chunk's columns hold at most `budget` floats (at least one row).
    pub fn rows_per_chunk(&self, budget: usize) -> usize {
        (budget / (self.patch_len() * self.out_w()).max(1)).clamp(1, self.out_h())
    }
}

/// The output columns `[lo, hi)` whose input column `o * stride + tap - pad` lies inside `[0, len)`.
fn valid(out_len: usize, len: usize, stride: usize, tap: usize, pad: usize) -> (usize, usize) {
    // o * stride + tap >= pad  and  o * stride + tap < len + pad
    let lo = pad.saturating_sub(tap).div_ceil(stride);
    let hi = if len + pad > tap { (len + pad - tap).div_ceil(stride) } else { 0 };
    (lo.min(out_len), hi.clamp(lo.min(out_len), out_len))
}

/// Columns `[K, rows.len() * out_w]` of `x: [C, H, W]`, K ordered `(c, ky, kx)`.
pub fn im2col_kn(x: &[f32], g: &ConvGeom, rows: Range<usize>) -> Vec<f32> {
    let (ow, k, s) = (g.out_w(), g.k, g.stride);
    let n = rows.len() * ow;
    let mut cols = vec![0.0f32; g.patch_len() * n];
    cols.par_chunks_mut(n).enumerate().for_each(|(r, dst)| {
        let (c, ky, kx) = (r / (k * k), (r / k) % k, r % k);
        let (lo, hi) = valid(ow, g.w, s, kx, g.pad);
        for (i, oy) in rows.clone().enumerate() {
            let iy = oy * s + ky;
            if iy < g.pad || iy >= g.h + g.pad {
                continue; // stays zero
            }
            let src = &x[(c * g.h + iy - g.pad) * g.w..][..g.w];
            let line = &mut dst[i * ow..(i + 1) * ow];
            if lo < hi {
                let first = lo * s + kx - g.pad;
                if s == 1 {
                    line[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
                } else {
                    for (o, v) in line[lo..hi].iter_mut().zip(src[first..].iter().step_by(s)) {
                        *o = *v;
                    }
                }
            }
        }
    });
    cols
}

/// `[C, HW]` -> `[HW, C]`.
pub fn nchw_to_nhwc(x: &[f32], c: usize, hw: usize) -> Vec<f32> {
    const BLOCK: usize = 64;
    let mut out = vec![0.0f32; c * hw];
    out.par_chunks_mut(BLOCK * c).enumerate().for_each(|(b, dst)| {
        let p0 = b * BLOCK;
        let np = dst.len() / c;
        for ch in 0..c {
            let src = &x[ch * hw + p0..][..np];
            for (p, v) in src.iter().enumerate() {
                dst[p * c + ch] = *v;
            }
        }
    });
    out
}

/// Columns `[rows.len() * out_w, K]` of the NHWC image `x: [H, W, C]`, K ordered `(ky, kx, c)`.
pub fn im2col_nk(x: &[f32], g: &ConvGeom, rows: Range<usize>) -> Vec<f32> {
    let (ow, k, s, c, kl) = (g.out_w(), g.k, g.stride, g.c, g.patch_len());
    let mut cols = vec![0.0f32; rows.len() * ow * kl];
    cols.par_chunks_mut(ow * kl).zip(rows).for_each(|(dst, oy)| {
        for ky in 0..k {
            let iy = oy * s + ky;
            if iy < g.pad || iy >= g.h + g.pad {
                continue;
            }
            let src_row = &x[(iy - g.pad) * g.w * c..][..g.w * c];
            for kx in 0..k {
                let (lo, hi) = valid(ow, g.w, s, kx, g.pad);
                for ox in lo..hi {
                    let ix = ox * s + kx - g.pad;
                    let at = ox * kl + (ky * k + kx) * c;
                    dst[at..at + c].copy_from_slice(&src_row[ix * c..(ix + 1) * c]);
                }
            }
        }
    });
    cols
}

/// Write a chunk's product `y: [C_out, n]` (the `kn` form) into `out: [C_out, N]` at columns `p0..p0+n`, plus bias.
pub fn scatter_kn(y: &[f32], out: &mut [f32], n_total: usize, p0: usize, bias: Option<&[f32]>) {
    let n = y.len() / (out.len() / n_total);
    out.par_chunks_mut(n_total).enumerate().for_each(|(co, row)| {
        let b = bias.map_or(0.0, |b| b[co]);
        for (o, v) in row[p0..p0 + n].iter_mut().zip(&y[co * n..(co + 1) * n]) {
            *o = v + b;
        }
    });
}

/// Write a chunk's product `y: [n, C_out]` (the `nk` form) into `out: [C_out, N]` at columns `p0..p0+n`, plus bias.
pub fn scatter_nk(y: &[f32], out: &mut [f32], n_total: usize, p0: usize, bias: Option<&[f32]>) {
    let c_out = out.len() / n_total;
    let n = y.len() / c_out;
    out.par_chunks_mut(n_total).enumerate().for_each(|(co, row)| {
        let b = bias.map_or(0.0, |b| b[co]);
        for (p, o) in row[p0..p0 + n].iter_mut().enumerate() {
            *o = y[p * c_out + co] + b;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{conv_strided_f64, values};

    /// Both lowerings, chunked, multiplied out naively, equal the direct convolution (1e-5 relative to the output
    /// scale), for odd sizes, strides 1-3, kernels 1-7 and paddings 0-3.
    #[test]
    fn lowered_products_equal_the_direct_convolution() {
        let cases = [
            (3, 9, 7, 3, 1, 1),
            (2, 8, 11, 7, 2, 3),
            (5, 6, 5, 2, 1, 1),
            (4, 5, 9, 3, 2, 1),
            (1, 4, 4, 1, 1, 0),
            (3, 7, 10, 3, 3, 0),
            (2, 3, 3, 3, 1, 2),
        ];
        for (c, h, w, k, stride, pad) in cases {
            let g = ConvGeom::new(c, h, w, k, stride, pad).expect("geometry");
            let co_n = 4;
            let x = values(c * h * w, 0.5);
            let wt = values(co_n * g.patch_len(), 3.0);
            let bias = values(co_n, 9.0);
            let mut want = conv_strided_f64(&x, &wt, c, h, w, co_n, k, stride, pad);
            let per = want.len() / co_n;
            want.iter_mut().enumerate().for_each(|(i, v)| *v += bias[i / per] as f64);
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let (oh, ow, kl) = (g.out_h(), g.out_w(), g.patch_len());
            let n_total = oh * ow;
            // weight in (ky, kx, c) order for the nk form
            let mut w_nk = vec![0.0f32; co_n * kl];
            for co in 0..co_n {
                for ch in 0..c {
                    for t in 0..k * k {
                        w_nk[co * kl + t * c + ch] = wt[(co * c + ch) * k * k + t];
                    }
                }
            }
            let nhwc = nchw_to_nhwc(&x, c, h * w);
            for rows_per in [1, 2, oh] {
                let (mut out_kn, mut out_nk) = (vec![0.0f32; co_n * n_total], vec![0.0f32; co_n * n_total]);
                let mut r0 = 0;
                while r0 < oh {
                    let rows = r0..(r0 + rows_per).min(oh);
                    let n = rows.len() * ow;
                    let cols = im2col_kn(&x, &g, rows.clone());
                    let y: Vec<f32> = (0..co_n * n)
                        .map(|i| (0..kl).map(|q| wt[(i / n) * kl + q] * cols[q * n + i % n]).sum())
                        .collect();
                    scatter_kn(&y, &mut out_kn, n_total, r0 * ow, Some(&bias));
                    let cols = im2col_nk(&nhwc, &g, rows.clone());
                    let y: Vec<f32> = (0..n * co_n)
                        .map(|i| (0..kl).map(|q| cols[(i / co_n) * kl + q] * w_nk[(i % co_n) * kl + q]).sum())
                        .collect();
                    scatter_nk(&y, &mut out_nk, n_total, r0 * ow, Some(&bias));
                    r0 = rows.end;
                }
                for (name, got) in [("kn", &out_kn), ("nk", &out_nk)] {
                    let err = got.iter().zip(&want).fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
                    assert!(err <= 1e-5 * scale, "{name} {:?} rows/chunk {rows_per}: err {err:e}", g);
                }
            }
        }
    }

    #[test]
    fn geometry_rejects_kernels_larger_than_the_padded_input() {
        assert!(ConvGeom::new(3, 2, 2, 7, 2, 2).is_none());
        assert!(ConvGeom::new(3, 2, 2, 3, 0, 1).is_none());
        let g = ConvGeom::new(3, 256, 256, 7, 2, 3).expect("stem");
        assert_eq!((g.out_h(), g.out_w(), g.patch_len()), (128, 128, 147));
        assert_eq!(g.rows_per_chunk(147 * 128 * 10), 10);
        assert_eq!(g.rows_per_chunk(1), 1);
    }
}
