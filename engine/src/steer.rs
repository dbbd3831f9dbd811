//! Latent steering: rotate selected patches along great circles towards a target direction, rescale their
//! magnitudes (the paper's `s * z/|z|` experiment), and add angular noise. Works on a cached latent (no re-encode).

use burn::tensor::{Device, Tensor, TensorData};
use rand::{SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::raw::RawTensor;
use crate::sphere;

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
