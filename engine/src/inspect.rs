//! Latent inspection on the host: per-patch magnitudes, PCA of patch directions -> RGB (fitted jointly on any
//! number of latents so colours agree between images), cosine similarity of every patch to one patch, and the
//! student-vs-teacher cosine per patch. The studio's worker and `dino-sae inspect` both call these.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use burn::tensor::Device;
use image::RgbImage;

use crate::error::{EngineError, Result};
use crate::model::sae::SaeConfig;
use crate::model::vit::Vit;
use crate::preflight::{self, Budget};
use crate::tensor_file::RawTensor;

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

/// Cosine per patch between two `[1, C, h, w]` maps of the same shape (float64 sums; a zero vector gives 0).
pub fn cosine_per_patch(a: &RawTensor, b: &RawTensor) -> Result<Vec<f32>> {
    if a.shape != b.shape || a.shape.len() != 4 || a.shape[0] != 1 {
        return Err(EngineError::Shape(format!("cosine per patch of {:?} and {:?}", a.shape, b.shape)));
    }
    let (c, n) = (a.shape[1], a.shape[2] * a.shape[3]);
    Ok((0..n)
        .map(|p| {
            let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
            for k in 0..c {
                let (x, y) = (a.data[k * n + p] as f64, b.data[k * n + p] as f64);
                ab += x * y;
                aa += x * x;
                bb += y * y;
            }
            (ab / (aa.sqrt() * bb.sqrt()).max(1e-8)) as f32
        })
        .collect())
}

/// Student-vs-teacher cosine per patch (row-major, `h * w` values): the teacher's patch tokens of `img` (the image
/// the latent was encoded from, resized bicubically to the teacher's patch size times the latent grid) against the
/// latent `[1, C, h, w]`. Preflighted against `budget` as an encode by `model` with the teacher as its encoder.
///
/// # Shapes
/// - `img`: `W x H`, any size; `latent`: `[1, C, h, w]` with C the teacher's width.
/// - returns `h * w` cosines in [-1, 1].
pub fn teacher_cosine(
    teacher: &Vit,
    model: &SaeConfig,
    img: &RgbImage,
    latent: &RawTensor,
    budget: &Budget,
    cancel: &Arc<AtomicBool>,
    device: &Device,
) -> Result<Vec<f32>> {
    if latent.shape.len() != 4 || latent.shape[0] != 1 {
        return Err(EngineError::Shape(format!("expected a [1, C, h, w] latent, got {:?}", latent.shape)));
    }
    let (c, gh, gw) = (latent.shape[1], latent.shape[2], latent.shape[3]);
    if teacher.cfg.dim != c {
        return Err(EngineError::Config(format!(
            "teacher width {} differs from the latent width {c}",
            teacher.cfg.dim
        )));
    }
    let ps = teacher.cfg.patch_size;
    let mut budget_cfg = model.clone();
    budget_cfg.encoder = teacher.cfg.clone();
    preflight::check_encode(&budget_cfg, 1, ps * gw, ps * gh, budget)?;
    let x = crate::image_io::to_tensor(&[img], &model.pixels, device)?;
    let tx = crate::resize::resize_bicubic(x, ps * gh, ps * gw, false, None);
    let mut probe = crate::model::nn::Probe::cancellable(cancel.clone());
    let tt = teacher.forward(tx, &mut probe).patch_tokens();
    if probe.cancelled() {
        return Err(EngineError::Cancelled);
    }
    let st = RawTensor::from_tensor(crate::model::sae::tokens_to_map(tt, (gh, gw)))?;
    cosine_per_patch(latent, &st)
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

    /// The principal axes as f32 (what the studio keeps and [`crate::steer::pca_direction`] takes).
    pub fn axes_f32(&self) -> Vec<Vec<f32>> {
        self.axes.iter().map(|a| a.iter().map(|&v| v as f32).collect()).collect()
    }

    /// The three components of every patch direction of a latent (row-major patches).
    pub fn components(&self, latent: &RawTensor) -> Vec<[f64; 3]> {
        patch_rows(latent).iter().map(|r| self.project(&unit(r))).collect()
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

/// A per-patch map as CSV: one line per patch row, `w` comma-separated values (shortest round-trip form), no header.
pub fn grid_csv(values: &[f32], grid: (usize, usize)) -> String {
    let mut out = String::new();
    for row in values.chunks(grid.1.max(1)).take(grid.0) {
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
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
    fn cosine_per_patch_of_known_pairs_and_csv_rows() {
        let a = latent(&[vec![1.0, 0.0], vec![3.0, 4.0], vec![0.0, 0.0]], 1, 3);
        let b = latent(&[vec![0.0, 2.0], vec![-6.0, -8.0], vec![1.0, 1.0]], 1, 3);
        assert_eq!(cosine_per_patch(&a, &b).expect("same shape"), vec![0.0, -1.0, 0.0]);
        assert!(cosine_per_patch(&a, &latent(&[vec![1.0, 0.0]], 1, 1)).is_err());
        assert_eq!(grid_csv(&[1.0, 0.5, -2.25, 3.0, 1e-7, 4.0], (2, 3)), "1,0.5,-2.25\n3,0.0000001,4\n");
    }

    /// Known identity: a "latent" made of the teacher's own patch tokens of the image (laid out here by hand,
    /// token p of row-major order -> column p) has cosine 1 at every patch of a non-square 3x5 grid; the same
    /// tokens laid out rotated by 180 degrees do not (the map's orientation is checked). Fixture set A's DINOv3 teacher.
    #[test]
    fn teacher_cosine_of_the_teachers_own_tokens_is_one() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dev = crate::cpu();
        let t = crate::checkpoint::load_backbone(root.join("tests/fixtures/dinosae-setA/dinov3/hf"), &dev, false)
            .expect("fixture teacher")
            .model;
        let m =
            crate::checkpoint::load_sae(root.join("tests/fixtures/dinosae-setA/sae"), &dev, false).expect("sae").model;
        let (gh, gw, c, ps) = (3usize, 5usize, t.cfg.dim, t.cfg.patch_size);
        let img = RgbImage::from_fn(80, 48, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, ((x * y) % 256) as u8]));
        let x = crate::image_io::to_tensor(&[&img], &m.cfg.pixels, &dev).expect("tensor");
        let tx = crate::resize::resize_bicubic(x, ps * gh, ps * gw, false, None);
        let tokens = RawTensor::from_tensor(t.forward(tx, &mut crate::model::nn::Probe::default()).patch_tokens())
            .expect("tokens");
        let n = gh * gw;
        assert_eq!(tokens.shape, vec![1, n, c]);
        let mut own = RawTensor { shape: vec![1, c, gh, gw], data: vec![0.0; c * n] };
        for p in 0..n {
            for k in 0..c {
                own.data[k * n + p] = tokens.data[p * c + k];
            }
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let cos = teacher_cosine(&t, &m.cfg, &img, &own, &Budget::bytes(1 << 32), &cancel, &dev).expect("cosine");
        assert_eq!(cos.len(), n);
        assert!(cos.iter().all(|v| (v - 1.0).abs() < 1e-5), "{cos:?}");
        let mut rotated = own.clone();
        for (y, x) in (0..gh).flat_map(|y| (0..gw).map(move |x| (y, x))) {
            for k in 0..c {
                rotated.data[k * n + y * gw + x] = own.data[k * n + (gw - 1 - x) + (gh - 1 - y) * gw];
            }
        }
        let cos = teacher_cosine(&t, &m.cfg, &img, &rotated, &Budget::bytes(1 << 32), &cancel, &dev).expect("cosine");
        assert!(cos.iter().filter(|v| (*v - 1.0).abs() > 1e-3).count() > n / 2, "{cos:?}");
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
