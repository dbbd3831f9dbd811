//! Latent steering: rotate selected patches along great circles towards a target direction, rescale their
//! magnitudes (the paper's `s * z/|z|` experiment), and add angular noise. Works on a cached latent (no re-encode).

use burn::tensor::{Device, Tensor, TensorData};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::sphere;
use crate::tensor_file::RawTensor;

/// Where selected patches are rotated to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SteerTarget {
    /// The direction of another patch of the same latent (row-major index).
    Patch(usize),
    /// An explicit direction (length C).
    Direction(Vec<f32>),
    /// A random tangent direction per patch (seeded).
    Random(u64),
}

/// One edit, applied to an unedited latent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SteerEdit {
    /// Row-major patch indices; empty = all patches.
    pub patches: Vec<usize>,
    pub target: SteerTarget,
    /// Rotation towards the target along the great circle, degrees.
    pub angle_deg: f32,
    /// Magnitude multiplier (1 = unchanged).
    pub magnitude_scale: f32,
    /// Angular noise (random tangent rotation per patch), degrees.
    pub noise_deg: f32,
    pub noise_seed: u64,
}

impl Default for SteerEdit {
    fn default() -> Self {
        Self {
            patches: Vec::new(),
            target: SteerTarget::Random(0),
            angle_deg: 0.0,
            magnitude_scale: 1.0,
            noise_deg: 0.0,
            noise_seed: 0,
        }
    }
}

/// Deterministic unit Gaussian directions `[1, C, h, w]` from a seed (host RNG, backend independent).
fn seeded_normal(shape: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| {
            let u1: f32 = rng.random_range(f32::EPSILON..1.0);
            let u2: f32 = rng.random();
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect();
    Tensor::from_data(TensorData::new(data, shape.to_vec()), device)
}

/// Apply `edit` to a latent `[1, C, h, w]`. Unselected patches are returned unchanged (bit for bit).
pub fn apply(latent: &RawTensor, edit: &SteerEdit, device: &Device) -> Result<RawTensor> {
    if latent.shape.len() != 4 || latent.shape[0] != 1 {
        return Err(EngineError::Shape(format!("steer expects a [1, C, h, w] latent, got {:?}", latent.shape)));
    }
    let [_, c, h, w] = [latent.shape[0], latent.shape[1], latent.shape[2], latent.shape[3]];
    let n = h * w;
    if let Some(&bad) = edit.patches.iter().find(|&&p| p >= n) {
        return Err(EngineError::Shape(format!("patch {bad} out of range (grid {h}x{w})")));
    }
    if !edit.angle_deg.is_finite() || !edit.magnitude_scale.is_finite() || !edit.noise_deg.is_finite() {
        return Err(EngineError::NonFinite("steer parameters".into()));
    }
    let z: Tensor<4> = latent.to_tensor(device)?;
    let target: Tensor<4> = match &edit.target {
        SteerTarget::Patch(p) => {
            if *p >= n {
                return Err(EngineError::Shape(format!("target patch {p} out of range")));
            }
            let col = z.clone().reshape([1, c, n]).narrow(2, *p, 1).reshape([1, c, 1, 1]);
            col.repeat_dim(2, h).repeat_dim(3, w)
        }
        SteerTarget::Direction(d) => {
            if d.len() != c {
                return Err(EngineError::Shape(format!("direction has {} values, latent has {c} channels", d.len())));
            }
            Tensor::<1>::from_floats(d.as_slice(), device).reshape([1, c, 1, 1]).repeat_dim(2, h).repeat_dim(3, w)
        }
        SteerTarget::Random(seed) => seeded_normal([1, c, h, w], *seed, device),
    };
    let mut y = sphere::rotate_towards(&z, &target, (edit.angle_deg as f64).to_radians());
    if edit.noise_deg != 0.0 {
        let g = seeded_normal([1, c, h, w], edit.noise_seed ^ 0x9e37_79b9_7f4a_7c15, device);
        let t = sphere::direction(&sphere::tangent(&y, &g));
        y = sphere::rotate_towards(&y, &(y.clone() + t), (edit.noise_deg as f64).to_radians());
    }
    if edit.magnitude_scale != 1.0 {
        y = y.mul_scalar(edit.magnitude_scale);
    }
    let y = RawTensor::from_tensor(y)?;
    // Compose: edited values on selected patches only.
    let mut out = latent.clone();
    let sel: Vec<usize> = if edit.patches.is_empty() { (0..n).collect() } else { edit.patches.clone() };
    for ch in 0..c {
        for &p in &sel {
            out.data[ch * n + p] = y.data[ch * n + p];
        }
    }
    Ok(out)
}

/// How many generator samples the class-mean target averages (the studio's "Target: class mean").
pub const CLASS_MEAN_SAMPLES: usize = 4;

/// The bounding box of a selection of row-major patches on a `(h, w)` grid: first row, first column, rows,
/// columns. An empty selection or a patch outside the grid is refused.
pub fn selection_box(patches: &[usize], (h, w): (usize, usize)) -> Result<(usize, usize, usize, usize)> {
    if patches.is_empty() {
        return Err(EngineError::Config("select the patches to copy".into()));
    }
    if let Some(p) = patches.iter().find(|&&p| p >= h * w) {
        return Err(EngineError::Config(format!("patch {p} is outside the source's {h}x{w} grid")));
    }
    let (r0, r1) = patches.iter().map(|p| p / w).fold((usize::MAX, 0), |(a, b), r| (a.min(r), b.max(r)));
    let (c0, c1) = patches.iter().map(|p| p % w).fold((usize::MAX, 0), |(a, b), c| (a.min(c), b.max(c)));
    Ok((r0, c0, r1 - r0 + 1, c1 - c0 + 1))
}

/// Patch transplant: `src`'s patches `patches` (row-major over its grid), directions and magnitudes, copied onto
/// `dst` with their layout kept, the selection's top-left patch landing on `to` (row, column of `dst`'s grid).
/// Every other patch of `dst` is unchanged; a selection that would fall outside `dst` is refused.
///
/// # Shapes
/// - src: `[1, C, h, w]`, dst: `[1, C, H, W]` -> `[1, C, H, W]`
pub fn transplant(dst: &RawTensor, src: &RawTensor, patches: &[usize], to: (usize, usize)) -> Result<RawTensor> {
    let dims = |t: &RawTensor, what: &str| match t.shape.as_slice() {
        &[1, c, h, w] => Ok((c, h, w)),
        s => Err(EngineError::Shape(format!("{what}: expected a latent [1, C, h, w], got {s:?}"))),
    };
    let (c, sh, sw) = dims(src, "source")?;
    let (dc, dh, dw) = dims(dst, "destination")?;
    if c != dc {
        return Err(EngineError::Shape(format!("the source has {c} channels, the destination {dc}")));
    }
    let (r0, c0, rows, cols) = selection_box(patches, (sh, sw))?;
    if to.0 + rows > dh || to.1 + cols > dw {
        return Err(EngineError::Config(format!(
            "a {rows}x{cols} selection at row {}, column {} does not fit the destination's {dh}x{dw} grid",
            to.0, to.1
        )));
    }
    let mut out = dst.clone();
    for &p in patches {
        let (r, q) = (p / sw - r0 + to.0, p % sw - c0 + to.1);
        for ch in 0..c {
            out.data[(ch * dh + r) * dw + q] = src.data[ch * sh * sw + p];
        }
    }
    Ok(out)
}

/// The mean unit direction of latents `z` (length C, not normalised): each patch reduced to its unit direction,
/// averaged over every sample and patch (the class-mean target, [`crate::generate::class_mean_direction`]).
///
/// # Shapes
/// - z: `[N, C, H, W]` -> C values
pub fn mean_direction(z: Tensor<4>) -> Result<Vec<f32>> {
    let d = sphere::direction(&z);
    let [n, c, h, w] = d.dims();
    let mean = d.swap_dims(0, 1).reshape([c, n * h * w]).mean_dim(1).reshape([c]);
    crate::tensor_file::host_vec(mean)
}

/// The unit direction of patch `patch` (row-major) of a `[1, C, h, w]` latent: the studio's "Pin as target", which
/// keeps it to steer another image towards. Errors for an index out of range or a patch of zero length.
pub fn patch_direction(latent: &RawTensor, patch: usize) -> Result<Vec<f32>> {
    if latent.shape.len() != 4 || latent.shape[0] != 1 {
        return Err(EngineError::Shape(format!("expected a [1, C, h, w] latent, got {:?}", latent.shape)));
    }
    let (c, hw) = (latent.shape[1], latent.shape[2] * latent.shape[3]);
    if patch >= hw {
        return Err(EngineError::Config(format!(
            "patch {patch} out of range ({hw} patches, grid {}x{})",
            latent.shape[2], latent.shape[3]
        )));
    }
    let v: Vec<f32> = (0..c).map(|k| latent.data[k * hw + patch]).collect();
    let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    if !(n.is_finite() && n > 0.0) {
        return Err(EngineError::Data(format!("patch {patch} has no direction (|z| = {n})")));
    }
    Ok(v.iter().map(|x| (*x as f64 / n) as f32).collect())
}

/// The target direction of principal axis `k` (0-based; the studio labels it "PCA k+1") of the patch directions,
/// `+` or `-` (`positive`), from the axes of [`crate::inspect::Pca`]; None when there is no such axis.
pub fn pca_direction(axes: &[Vec<f32>], k: usize, positive: bool) -> Option<Vec<f32>> {
    axes.get(k).map(|a| a.iter().map(|v| if positive { *v } else { -*v }).collect())
}

/// Row-major indices of the patches of a `gh x gw` grid over an image of `size` (w, h) whose centres lie inside the
/// rectangle `[x0, y0, x1, y1]` (same units as `size`, borders included, corners in any order): the studio's box
/// selection and `dino-sae steer --box`.
pub fn patches_in_box(grid: (usize, usize), size: (f32, f32), rect: [f32; 4]) -> Vec<usize> {
    let (gh, gw) = grid;
    let (x0, x1) = (rect[0].min(rect[2]), rect[0].max(rect[2]));
    let (y0, y1) = (rect[1].min(rect[3]), rect[1].max(rect[3]));
    let mut out = Vec::new();
    for y in 0..gh {
        let cy = (y as f32 + 0.5) * size.1 / gh as f32;
        for x in 0..gw {
            let cx = (x as f32 + 0.5) * size.0 / gw as f32;
            if (x0..=x1).contains(&cx) && (y0..=y1).contains(&cy) {
                out.push(y * gw + x);
            }
        }
    }
    out
}

/// The working-copy patch whose area holds the centre of patch `i` of `n` along one axis, for a grid of `m`.
fn source_index(i: usize, n: usize, m: usize) -> usize {
    (((i as f64 + 0.5) * m as f64 / n as f64).floor() as usize).min(m.saturating_sub(1))
}

/// Map an edit made on the latent `work` (`[1, C, h, w]`, e.g. of the working copy) to a latent of grid `to`
/// (`(H, W)`) of the same image, e.g. its full-resolution render: a patch of the new grid is selected when the
/// working patch under its centre is; a target patch becomes that patch's direction (the same direction at
/// every size); explicit directions carry over; random targets and angular noise keep their seeds (drawn per
/// patch of the new grid: the same statistics, not the same pattern).
pub fn map_to_grid(edit: &SteerEdit, work: &RawTensor, to: (usize, usize)) -> Result<SteerEdit> {
    if work.shape.len() != 4 || work.shape[0] != 1 {
        return Err(EngineError::Shape(format!("steer expects a [1, C, h, w] latent, got {:?}", work.shape)));
    }
    let (c, h, w) = (work.shape[1], work.shape[2], work.shape[3]);
    let n = h * w;
    if let Some(&bad) = edit.patches.iter().find(|&&p| p >= n) {
        return Err(EngineError::Shape(format!("patch {bad} out of range (grid {h}x{w})")));
    }
    let (th, tw) = to;
    let patches = if edit.patches.is_empty() {
        Vec::new()
    } else {
        let mut sel = vec![false; n];
        for &p in &edit.patches {
            sel[p] = true;
        }
        let mut out = Vec::new();
        for y in 0..th {
            let sy = source_index(y, th, h);
            for x in 0..tw {
                if sel[sy * w + source_index(x, tw, w)] {
                    out.push(y * tw + x);
                }
            }
        }
        if out.is_empty() {
            // a selection always covers at least one patch of a larger grid; of a smaller one, keep the nearest
            out.push(source_index(edit.patches[0] / w, h, th) * tw + source_index(edit.patches[0] % w, w, tw));
        }
        out
    };
    let target = match &edit.target {
        SteerTarget::Patch(p) => {
            if *p >= n {
                return Err(EngineError::Shape(format!("target patch {p} out of range")));
            }
            SteerTarget::Direction((0..c).map(|k| work.data[k * n + p]).collect())
        }
        t => t.clone(),
    };
    Ok(SteerEdit { patches, target, ..edit.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latent(rows: &[Vec<f32>], h: usize, w: usize) -> RawTensor {
        let (c, n) = (rows[0].len(), h * w);
        let mut data = vec![0.0; c * n];
        for (p, r) in rows.iter().enumerate() {
            for (k, v) in r.iter().enumerate() {
                data[k * n + p] = *v;
            }
        }
        RawTensor { shape: vec![1, c, h, w], data }
    }

    #[test]
    fn patch_direction_is_the_unit_vector_of_that_patch() {
        let l = latent(&[vec![3.0, 4.0, 0.0], vec![0.0, 0.0, -2.0], vec![0.0; 3], vec![1.0, 0.0, 0.0]], 2, 2);
        assert_eq!(patch_direction(&l, 0).expect("patch 0"), vec![0.6, 0.8, 0.0]);
        assert_eq!(patch_direction(&l, 1).expect("patch 1"), vec![0.0, 0.0, -1.0]);
        assert!(patch_direction(&l, 2).is_err(), "a zero patch has no direction");
        let e = patch_direction(&l, 4).expect_err("out of range").to_string();
        assert!(e.contains("out of range") && e.contains("2x2"), "{e}");
    }

    #[test]
    fn pca_direction_flips_the_axis_for_minus() {
        let axes = vec![vec![1.0, -2.0], vec![0.5, 0.25]];
        assert_eq!(pca_direction(&axes, 1, true), Some(vec![0.5, 0.25]));
        assert_eq!(pca_direction(&axes, 0, false), Some(vec![-1.0, 2.0]));
        assert_eq!(pca_direction(&axes, 2, true), None);
    }

    #[test]
    fn box_selects_the_patches_whose_centres_it_holds() {
        // a 4 x 8 grid over 160 x 80 (20 x 20 cells, centres at 10, 30, 50, ...)
        assert_eq!(patches_in_box((4, 8), (160.0, 80.0), [0.0, 0.0, 41.0, 41.0]), vec![0, 1, 8, 9]);
        assert_eq!(patches_in_box((4, 8), (160.0, 80.0), [41.0, 41.0, 0.0, 0.0]), vec![0, 1, 8, 9], "any corners");
        // borders count: a box from centre to centre holds both
        assert_eq!(patches_in_box((4, 8), (160.0, 80.0), [150.0, 70.0, 170.0, 70.0]), vec![31]);
        assert!(patches_in_box((4, 8), (160.0, 80.0), [0.0, 0.0, 9.0, 9.0]).is_empty());
        assert_eq!(patches_in_box((4, 8), (160.0, 80.0), [0.0, 0.0, 160.0, 80.0]).len(), 32);
    }
}
