//! Latent inspection on the host: per-patch magnitudes, PCA of patch directions -> RGB (fitted jointly on any
//! number of latents so colours agree between images), and cosine similarity of every patch to one patch.

use crate::raw::RawTensor;

/// Patch vectors of a `[1, C, h, w]` latent as rows of C values.
pub fn patch_rows(latent: &RawTensor) -> Vec<Vec<f32>> {
    let (c, n) = (latent.shape[1], latent.shape[2] * latent.shape[3]);
    (0..n).map(|p| (0..c).map(|ch| latent.data[ch * n + p]).collect()).collect()
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// |z| per patch.
pub fn magnitudes(latent: &RawTensor) -> Vec<f32> {
    patch_rows(latent).iter().map(|r| norm(r)).collect()
}

/// Cosine of every patch of `latent` to vector `v`.
pub fn cosine_to(latent: &RawTensor, v: &[f32]) -> Vec<f32> {
    let nv = norm(v).max(1e-12);
    patch_rows(latent)
        .iter()
        .map(|r| r.iter().zip(v).map(|(a, b)| a * b).sum::<f32>() / (norm(r).max(1e-12) * nv))
        .collect()
}

/// A fitted 3-component PCA of unit patch directions.
#[derive(Clone, Debug)]
pub struct Pca {
    pub mean: Vec<f64>,
    pub axes: Vec<Vec<f64>>,
    /// Per-axis (min, max) of the projections of the fitting data, for colour scaling.
    pub range: Vec<(f64, f64)>,
}

fn unit(r: &[f32]) -> Vec<f64> {
    let n = norm(r).max(1e-12) as f64;
    r.iter().map(|&x| x as f64 / n).collect()
}

impl Pca {
    /// Fit on the directions of all patches of all `latents` (power iteration with deflation).
    pub fn fit(latents: &[&RawTensor]) -> Option<Self> {
        let rows: Vec<Vec<f64>> = latents.iter().flat_map(|l| patch_rows(l)).map(|r| unit(&r)).collect();
        let c = rows.first()?.len();
        if rows.len() < 2 {
            return None;
        }
        let mut mean = vec![0.0; c];
        for r in &rows {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v / rows.len() as f64;
            }
        }
        let centred: Vec<Vec<f64>> = rows.iter().map(|r| r.iter().zip(&mean).map(|(a, b)| a - b).collect()).collect();
        let mut axes: Vec<Vec<f64>> = Vec::new();
        for k in 0..3 {
            let mut v: Vec<f64> = (0..c).map(|i| ((i * 7919 + k * 104729) % 97) as f64 - 48.0).collect();
            for _ in 0..100 {
                // w = X^T X v, deflated against earlier axes
                let mut w = vec![0.0; c];
                for r in &centred {
                    let d: f64 = r.iter().zip(&v).map(|(a, b)| a * b).sum();
                    for (wi, ri) in w.iter_mut().zip(r) {
                        *wi += d * ri;
                    }
                }
                for a in &axes {
                    let d: f64 = w.iter().zip(a).map(|(x, y)| x * y).sum();
                    for (wi, ai) in w.iter_mut().zip(a) {
                        *wi -= d * ai;
                    }
                }
                let n = w.iter().map(|x| x * x).sum::<f64>().sqrt();
                if n < 1e-300 {
                    break;
                }
                v = w.iter().map(|x| x / n).collect();
            }
            axes.push(v);
        }
        let mut p = Self { mean, axes, range: vec![(0.0, 0.0); 3] };
        let proj: Vec<[f64; 3]> = rows.iter().map(|r| p.project(r)).collect();
        for k in 0..3 {
            let lo = proj.iter().map(|q| q[k]).fold(f64::INFINITY, f64::min);
            let hi = proj.iter().map(|q| q[k]).fold(f64::NEG_INFINITY, f64::max);
            p.range[k] = (lo, hi);
        }
        Some(p)
    }

    fn project(&self, r: &[f64]) -> [f64; 3] {
        let mut o = [0.0; 3];
        for (k, a) in self.axes.iter().enumerate() {
            o[k] = r.iter().zip(&self.mean).zip(a).map(|((x, m), ai)| (x - m) * ai).sum();
        }
        o
    }

    /// RGB per patch of a latent (components scaled by the fitting range).
    pub fn rgb(&self, latent: &RawTensor) -> Vec<[u8; 3]> {
        patch_rows(latent)
            .iter()
            .map(|r| {
                let q = self.project(&unit(r));
                let mut c = [0u8; 3];
                for k in 0..3 {
                    let (lo, hi) = self.range[k];
                    c[k] = (((q[k] - lo) / (hi - lo).max(1e-12)).clamp(0.0, 1.0) * 255.0).round() as u8;
                }
                c
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latent(rows: &[Vec<f32>], h: usize, w: usize) -> RawTensor {
        let c = rows[0].len();
        let n = h * w;
        let mut data = vec![0.0; c * n];
        for (p, r) in rows.iter().enumerate() {
            for ch in 0..c {
                data[ch * n + p] = r[ch];
            }
        }
        RawTensor { shape: vec![1, c, h, w], data }
    }

    #[test]
    fn cosine_and_magnitude_of_known_vectors() {
        let l = latent(&[vec![3.0, 4.0, 0.0], vec![0.0, 0.0, 2.0], vec![-3.0, -4.0, 0.0], vec![1.0, 0.0, 0.0]], 2, 2);
        assert_eq!(magnitudes(&l), vec![5.0, 2.0, 5.0, 1.0]);
        let c = cosine_to(&l, &[3.0, 4.0, 0.0]);
        let want = [1.0, 0.0, -1.0, 0.6];
        for (a, b) in c.iter().zip(want) {
            assert!((a - b).abs() < 1e-6);
        }
    }

    #[test]
    fn pca_first_axis_is_the_dominant_direction() {
        // directions spread along e0 +- small e1 jitter: axis 0 must be +-e0... after centring, the spread is along e1
        let rows: Vec<Vec<f32>> = (0..20).map(|i| vec![1.0, (i as f32 - 10.0) * 0.1, 0.001 * i as f32]).collect();
        let l = latent(&rows, 4, 5);
        let p = Pca::fit(&[&l]).expect("fit");
        let a0 = &p.axes[0];
        assert!(a0[1].abs() > 0.95, "first axis {a0:?}");
        let rgb = p.rgb(&l);
        // red channel follows the e1 coordinate monotonically (up to sign)
        let reds: Vec<u8> = rgb.iter().map(|c| c[0]).collect();
        let inc = reds.windows(2).all(|w| w[0] <= w[1]);
        let dec = reds.windows(2).all(|w| w[0] >= w[1]);
        assert!(inc || dec, "{reds:?}");
    }
}
