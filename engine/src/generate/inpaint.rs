//! Regenerate a region of an image's latent on the sphere ([`inpaint`]): the generator samples the selected
//! patches while every other patch is held to the image's own latent along the training path
//! ([`crate::sampler::sample_sphere_inpaint`]), so the new patches agree with their surroundings. The generator
//! works on its training grid: on a larger latent, a window of that size around the selection is regenerated and
//! the rest of the latent is left as it was.

use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{DitBundle, SampleSpec, cfg_err, sphere_config};
use crate::error::{EngineError, Result};
use crate::sampler::{SphereStep, StepInfo, sample_sphere_inpaint};
use crate::tensor_file::RawTensor;

/// What to regenerate and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InpaintSpec {
    /// Patches to regenerate, row-major indices over the latent's grid.
    pub patches: Vec<usize>,
    /// Generator class (`None`: the null class, unconditional).
    pub class: Option<usize>,
    pub seed: u64,
    pub steps: usize,
    pub cfg_scale: f64,
    pub method: SphereStep,
}

impl Default for InpaintSpec {
    fn default() -> Self {
        Self { patches: Vec::new(), class: None, seed: 0, steps: 25, cfg_scale: 1.5, method: SphereStep::EulerProj }
    }
}

/// An inpainted latent.
#[derive(Clone, Debug)]
pub struct Inpainted {
    /// The whole latent `[1, C, H, W]`: the selected patches new, every other patch bit-identical to the input.
    pub latent: RawTensor,
    /// The window the generator ran on: first row, first column, rows, columns (patches).
    pub window: (usize, usize, usize, usize),
    /// Radius given to the new patches (the mean radius of the window's kept patches).
    pub radius: f64,
    pub steps_done: usize,
    pub cancelled: bool,
}

/// The generator's window `(row, col)` of size `(wh, ww)` centred on the selection's bounding box, inside the grid.
fn window(patches: &[usize], grid: (usize, usize), size: (usize, usize)) -> Result<(usize, usize)> {
    let (gh, gw) = grid;
    let (wh, ww) = size;
    let (r0, r1) = patches.iter().map(|p| p / gw).fold((usize::MAX, 0), |(a, b), r| (a.min(r), b.max(r)));
    let (c0, c1) = patches.iter().map(|p| p % gw).fold((usize::MAX, 0), |(a, b), c| (a.min(c), b.max(c)));
    if r1 - r0 + 1 > wh || c1 - c0 + 1 > ww {
        return Err(cfg_err(format!(
            "the selection spans {}x{} patches; the generator regenerates at most its {wh}x{ww} window at once",
            r1 - r0 + 1,
            c1 - c0 + 1
        )));
    }
    let place =
        |lo: usize, hi: usize, size: usize, n: usize| (lo + hi).div_ceil(2).saturating_sub(size / 2).min(n - size);
    Ok((place(r0, r1, wh, gh), place(c0, c1, ww, gw)))
}

/// Regenerate `spec.patches` of `latent` (`[1, C, H, W]`, this generator's C; at least its grid in each
/// direction). `on_step` sees the window's state after every step (return false to stop: the run then ends
/// with what it has, `cancelled`).
pub fn inpaint(
    b: &DitBundle,
    latent: &RawTensor,
    spec: &InpaintSpec,
    on_step: &mut dyn FnMut(&StepInfo, &Tensor<4>) -> bool,
) -> Result<Inpainted> {
    Inpainting::new(b, latent, spec)?.run(on_step)
}

/// An inpainting job, checked and set up: the window, the kept patches and the radius of the new ones. Between
/// steps, [`Inpainting::compose`] turns the window's state into a whole latent (live previews).
pub struct Inpainting<'a> {
    b: &'a DitBundle,
    latent: &'a RawTensor,
    spec: &'a InpaintSpec,
    /// First row and column of the window, and its size (the generator's grid).
    window: (usize, usize, usize, usize),
    /// The window of the latent `[1, C, wh, ww]` and its mask (1 = regenerate), row-major.
    known: Vec<f32>,
    regen: Vec<f32>,
    label: i64,
    radius: f64,
}

impl<'a> Inpainting<'a> {
    pub fn new(b: &'a DitBundle, latent: &'a RawTensor, spec: &'a InpaintSpec) -> Result<Self> {
        let meta = &b.meta;
        let [gh0, gw0] = meta.grid;
        let (c, gh, gw) = match latent.shape.as_slice() {
            &[1, c, h, w] if c == meta.channels => (c, h, w),
            s => {
                return Err(EngineError::Shape(format!(
                    "inpainting takes one latent [1, {}, h, w] of this generator's width, got {s:?}",
                    meta.channels
                )));
            }
        };
        if gh < gh0 || gw < gw0 {
            return Err(cfg_err(format!(
                "the latent is {gh}x{gw} patches; the generator needs at least its {gh0}x{gw0} grid ({}x{} px)",
                gh0 * 16,
                gw0 * 16
            )));
        }
        if spec.patches.is_empty() {
            return Err(cfg_err("select the patches to regenerate"));
        }
        if let Some(&p) = spec.patches.iter().find(|&&p| p >= gh * gw) {
            return Err(cfg_err(format!("patch {p} is outside the {gh}x{gw} grid")));
        }
        if !matches!(meta.objective_kind, super::ObjectiveKind::Rfm) {
            return Err(cfg_err("inpainting runs the spherical sampler: this generator was trained with Euclidean FM"));
        }
        let label = match spec.class {
            Some(k) if k >= meta.classes.len() => {
                return Err(cfg_err(format!("class {k} out of range ({} classes)", meta.classes.len())));
            }
            Some(k) => k as i64,
            None => b.model.cfg.null_class() as i64,
        };
        if spec.steps == 0 || !spec.cfg_scale.is_finite() {
            return Err(cfg_err("inpainting needs at least one step and a finite CFG scale"));
        }
        if !latent.is_finite() {
            return Err(EngineError::NonFinite("latent".into()));
        }
        let (r0, c0) = window(&spec.patches, (gh, gw), (gh0, gw0))?;
        let mut known = vec![0f32; c * gh0 * gw0];
        let mut regen = vec![0f32; gh0 * gw0];
        for ch in 0..c {
            for y in 0..gh0 {
                let src = (ch * gh + r0 + y) * gw + c0;
                known[(ch * gh0 + y) * gw0..(ch * gh0 + y + 1) * gw0].copy_from_slice(&latent.data[src..src + gw0]);
            }
        }
        for &p in &spec.patches {
            regen[(p / gw - r0) * gw0 + (p % gw - c0)] = 1.0;
        }
        // the new patches get the mean radius of the window's kept patches (the image's own scale there)
        let hw0 = gh0 * gw0;
        let kept: Vec<f64> = (0..hw0).filter(|&q| regen[q] == 0.0).map(|q| norm(&known, c, hw0, q)).collect();
        let radius = if kept.is_empty() { meta.s_vae } else { kept.iter().sum::<f64>() / kept.len() as f64 };
        Ok(Self { b, latent, spec, window: (r0, c0, gh0, gw0), known, regen, label, radius })
    }

    /// First row, first column, rows, columns of the window the generator runs on.
    pub fn window(&self) -> (usize, usize, usize, usize) {
        self.window
    }

    /// The whole latent with the selected patches taken from the window state `z` (`[1, C, wh, ww]`, any radius),
    /// scaled to the new patches' radius; every other patch exactly as in the input.
    pub fn compose(&self, z: &Tensor<4>) -> Result<RawTensor> {
        let z = crate::tensor_file::host_vec(z.clone())?;
        let (r0, c0, gh0, gw0) = self.window;
        let (c, gh, gw) = (self.latent.shape[1], self.latent.shape[2], self.latent.shape[3]);
        let hw0 = gh0 * gw0;
        if z.len() != c * hw0 {
            return Err(EngineError::Shape(format!("window state of {} values, expected {}", z.len(), c * hw0)));
        }
        let mut data = self.latent.data.clone();
        for &p in &self.spec.patches {
            let q = (p / gw - r0) * gw0 + (p % gw - c0);
            let n = norm(&z, c, hw0, q).max(1e-12);
            for ch in 0..c {
                data[ch * gh * gw + p] = (z[ch * hw0 + q] as f64 / n * self.radius) as f32;
            }
        }
        if data.iter().any(|v| !v.is_finite()) {
            return Err(EngineError::NonFinite("inpainted latent".into()));
        }
        RawTensor::new(self.latent.shape.clone(), data)
    }

    /// Run the sampler on the window (see [`inpaint`]).
    pub fn run(&self, on_step: &mut dyn FnMut(&StepInfo, &Tensor<4>) -> bool) -> Result<Inpainted> {
        let (_, _, gh0, gw0) = self.window;
        let c = self.latent.shape[1];
        let device = self.b.model.y_table.val().device();
        let known = Tensor::<4>::from_data(TensorData::new(self.known.clone(), vec![1, c, gh0, gw0]), &device);
        let regen = Tensor::<4>::from_data(TensorData::new(self.regen.clone(), vec![1, 1, gh0, gw0]), &device);
        let spec = self.spec;
        let sample = SampleSpec {
            class: spec.class.unwrap_or(0),
            count: 1,
            seed: spec.seed,
            steps: spec.steps,
            method: spec.method,
            cfg_scale: spec.cfg_scale,
            ..Default::default()
        };
        let cfg = sphere_config(self.b, &sample);
        let out = sample_sphere_inpaint(&self.b.model, &known, &regen, &[self.label], &cfg, on_step);
        Ok(Inpainted {
            latent: self.compose(&out.z)?,
            window: self.window,
            radius: self.radius,
            steps_done: out.steps_done,
            cancelled: out.cancelled,
        })
    }
}

/// Length of patch `q` of a `[C, hw]` channel-major buffer.
fn norm(v: &[f32], c: usize, hw: usize, q: usize) -> f64 {
    (0..c).map(|ch| (v[ch * hw + q] as f64).powi(2)).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_centred_on_the_selection_and_stays_inside_the_grid() {
        // a 16x16 grid, an 8x8 window
        assert_eq!(window(&[7 * 16 + 7, 8 * 16 + 8], (16, 16), (8, 8)).ok(), Some((4, 4)));
        assert_eq!(window(&[0], (16, 16), (8, 8)).ok(), Some((0, 0)));
        assert_eq!(window(&[255], (16, 16), (8, 8)).ok(), Some((8, 8)));
        assert_eq!(window(&[3], (8, 8), (8, 8)).ok(), Some((0, 0)));
        // 9 rows do not fit an 8-row window
        assert!(window(&[0, 8 * 16], (16, 16), (8, 8)).is_err());
        // every selected patch lies inside the window
        for sel in [vec![5usize, 6, 21, 22], vec![14 * 16 + 15], vec![2 * 16 + 9, 9 * 16 + 9]] {
            let (r, c) = window(&sel, (16, 16), (8, 8)).expect("fits");
            assert!(sel.iter().all(|p| (r..r + 8).contains(&(p / 16)) && (c..c + 8).contains(&(p % 16))), "{sel:?}");
        }
    }
}
