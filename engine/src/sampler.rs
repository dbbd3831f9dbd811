//! Samplers: integrate the learned velocity from t = 1 (noise) to t = 0 (data).
//!
//! - [`sample_sphere`]: the paper's spherical sampler (METHOD.md section 4). Start from `R e/|e|`
//!   (`R = sqrt(C)`), time grid `shift(1 - k/steps)` (k = 0..steps, so it ends at t = `t_end`, default 0);
//!   per step the (guided) velocity is projected onto the tangent plane, then either
//!   **Euler + projection** `z <- R normalize(z + dt v)` (default) or the **exponential map**
//!   `theta = |dt||v|/R, z <- z cos(theta) + R vhat sin(theta)`, renormalised. Finally every patch is rescaled
//!   to `final_radius` (the paper's s_vae) if given.
//! - [`sample_euclid`]: RAE's Euler ODE sampler (`transport/`): grid `shift(1 - linspace(0, t_last, points))`,
//!   `x <- x + (t_{k+1} - t_k) v(x, t_k)`.
//!
//! Classifier-free guidance: the batch `[x; x]` with labels `[y; null]`, `v = v_u + w (v_c - v_u)` on all
//! channels (or the first `guided_channels`). A per-step callback sees every state and may stop the
//! run; the sampler then returns the last state. Noise comes from a seeded host generator, so a seed
//! gives the same samples on every backend.

use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::model::dit::{Dit, labels};
use crate::rfm::{gaussian_tensor, radius, shift_time};
use crate::sphere;

/// Something that predicts a velocity.
pub trait VelocityField {
    /// # Shapes
    /// - x: `[B, C, H, W]`, t: `[B]`, y: `[B]` -> `[B, C, H, W]`
    fn velocity(&self, x: Tensor<4>, t: Tensor<1>, y: Tensor<1, Int>) -> Tensor<4>;
    /// Label of the unconditional class (None: no CFG possible).
    fn null_class(&self) -> Option<usize>;
}

impl VelocityField for Dit {
    fn velocity(&self, x: Tensor<4>, t: Tensor<1>, y: Tensor<1, Int>) -> Tensor<4> {
        let v = Dit::velocity(self, x, t, y);
        let c = self.cfg.in_channels;
        if v.dims()[1] > c { v.narrow(1, 0, c) } else { v }
    }
    fn null_class(&self) -> Option<usize> {
        (self.cfg.label_rows() > self.cfg.num_classes).then_some(self.cfg.num_classes)
    }
}

/// Guided velocity at a single time `t` for every sample.
///
/// # Shapes
/// - x: `[n, C, H, W]`, y: n labels -> `[n, C, H, W]`
pub fn guided_velocity<M: VelocityField + ?Sized>(
    model: &M,
    x: Tensor<4>,
    t: f64,
    y: &[i64],
    cfg_scale: f64,
    guided_channels: Option<usize>,
) -> Tensor<4> {
    let n = x.dims()[0];
    let device = x.device();
    let guide = cfg_scale != 1.0 && model.null_class().is_some();
    if !guide {
        let tt = Tensor::<1>::from_data(TensorData::new(vec![t as f32; n], vec![n]), &device);
        return model.velocity(x, tt, labels(y, &device));
    }
    let null = model.null_class().unwrap_or(0) as i64;
    let mut yy = y.to_vec();
    yy.extend(std::iter::repeat_n(null, n));
    let tt = Tensor::<1>::from_data(TensorData::new(vec![t as f32; 2 * n], vec![2 * n]), &device);
    let v = model.velocity(Tensor::cat(vec![x.clone(), x], 0), tt, labels(&yy, &device));
    let [_, c, _, _] = v.dims();
    let g = guided_channels.unwrap_or(c).min(c);
    let cond = v.clone().narrow(0, 0, n);
    let unc = v.narrow(0, n, n);
    let guided =
        unc.clone().narrow(1, 0, g) + (cond.clone().narrow(1, 0, g) - unc.narrow(1, 0, g)).mul_scalar(cfg_scale);
    if g < c { Tensor::cat(vec![guided, cond.narrow(1, g, c - g)], 1) } else { guided }
}

/// Step rule on the sphere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SphereStep {
    /// `z <- R normalize(z + dt v_tan)` (the recommended sampler).
    #[default]
    EulerProj,
    /// Rotation along the great circle (exponential map), then renormalise.
    ExpMap,
}

/// Spherical sampler settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SphereSamplerConfig {
    pub steps: usize,
    /// Time shift a (the training shift).
    pub shift: f64,
    /// CFG scale w (1 = no guidance).
    pub cfg_scale: f64,
    /// Guide only the first k channels (None = all, the paper's choice).
    #[serde(default)]
    pub guided_channels: Option<usize>,
    pub method: SphereStep,
    /// Rescale every patch to this radius at the end (s_vae; None keeps R = sqrt(C)).
    pub final_radius: Option<f64>,
    /// Last (unshifted) time of the grid; 0 integrates to the data end.
    #[serde(default)]
    pub t_end: f64,
    /// Seed of the initial noise.
    pub seed: u64,
}

impl Default for SphereSamplerConfig {
    fn default() -> Self {
        Self {
            steps: 50,
            shift: 8.0,
            cfg_scale: 1.0,
            guided_channels: None,
            method: SphereStep::EulerProj,
            final_radius: Some(14.0),
            t_end: 0.0,
            seed: 0,
        }
    }
}

/// Where a step is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    /// 1-based index of the step just taken.
    pub step: usize,
    pub steps: usize,
    /// Time before and after the step.
    pub t: f64,
    pub t_next: f64,
}

/// What a sampler returns.
#[derive(Clone, Debug)]
pub struct SampleOutput {
    /// Final state (rescaled to `final_radius` when set), also when cancelled.
    pub z: Tensor<4>,
    pub steps_done: usize,
    pub cancelled: bool,
}

/// Per-step callback: gets the state after each step; return false to stop.
pub type StepCallback<'a> = &'a mut dyn FnMut(&StepInfo, &Tensor<4>) -> bool;

/// Shifted time grid from 1 to `t_end`: `shift(1 - (1 - t_end) k / steps)`, k = 0..=steps.
pub fn sphere_time_grid(steps: usize, shift: f64, t_end: f64) -> Vec<f64> {
    (0..=steps).map(|k| shift_time(1.0 - (1.0 - t_end) * k as f64 / steps.max(1) as f64, shift)).collect()
}

/// Initial noise on the spheres of radius sqrt(C), from `seed`.
///
/// # Shapes
/// - -> `[n, C, H, W]`
pub fn sphere_noise(shape: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
    let mut rng = StdRng::seed_from_u64(seed);
    let e = gaussian_tensor(&mut rng, shape, device);
    sphere::project_to_radius(&e, radius(shape[1]))
}

/// One spherical step from `z` with velocity `v` (projected onto the tangent plane first).
///
/// # Shapes
/// - z, v: `[B, C, H, W]` -> `[B, C, H, W]` on the sphere of radius `r`
pub fn sphere_step(z: &Tensor<4>, v: &Tensor<4>, dt: f64, r: f64, method: SphereStep) -> Tensor<4> {
    let b = z.dims()[0];
    let dt = Tensor::<1>::from_data(TensorData::new(vec![dt as f32; b], vec![b]), &z.device());
    sphere_step_per_sample(z, v, &dt, r, method)
}

/// [`sphere_step`] with one `dt` per sample.
///
/// # Shapes
/// - z, v: `[B, C, H, W]`, dt: `[B]` -> `[B, C, H, W]`
pub fn sphere_step_per_sample(z: &Tensor<4>, v: &Tensor<4>, dt: &Tensor<1>, r: f64, method: SphereStep) -> Tensor<4> {
    let b = z.dims()[0];
    let dt = dt.clone().reshape([b, 1, 1, 1]);
    let v_tan = sphere::tangent(z, v);
    match method {
        SphereStep::EulerProj => sphere::project_to_radius(&(z.clone() + v_tan * dt), r),
        SphereStep::ExpMap => {
            let step = v_tan * dt;
            let n = sphere::magnitude(&step);
            let theta = n.clone().div_scalar(r);
            let vhat = step / n.clamp_min(1e-20);
            let pre = z.clone() * theta.clone().cos() + vhat * theta.sin().mul_scalar(r);
            sphere::project_to_radius(&pre, r)
        }
    }
}

/// Sample `y.len()` latents of shape `[C, H, W]`. See the module docs.
pub fn sample_sphere<M: VelocityField + ?Sized>(
    model: &M,
    y: &[i64],
    chw: [usize; 3],
    cfg: &SphereSamplerConfig,
    device: &Device,
    callback: StepCallback<'_>,
) -> SampleOutput {
    let z = sphere_noise([y.len(), chw[0], chw[1], chw[2]], cfg.seed, device);
    sample_sphere_from(model, z, y, cfg, callback)
}

/// As [`sample_sphere`] from a given start `z` (projected onto the radius-sqrt(C) spheres first).
///
/// # Shapes
/// - z: `[n, C, H, W]` -> `SampleOutput.z`: `[n, C, H, W]`
pub fn sample_sphere_from<M: VelocityField + ?Sized>(
    model: &M,
    z: Tensor<4>,
    y: &[i64],
    cfg: &SphereSamplerConfig,
    callback: StepCallback<'_>,
) -> SampleOutput {
    let r = radius(z.dims()[1]);
    let z = sphere::project_to_radius(&z, r);
    let (mut z, steps_done, cancelled, _) = integrate(model, z, y, cfg, &|z, _| z, callback);
    if let Some(s) = cfg.final_radius {
        z = sphere::project_to_radius(&z, s);
    }
    SampleOutput { z, steps_done, cancelled }
}

/// The step loop of the spherical samplers: before each step `hold` may pin part of the state at that step's time
/// (inpainting; the identity otherwise), then the guided velocity is integrated by one Euler + projection or
/// exp-map step and `callback` sees the result (false stops the run). Returns the last state, the steps taken,
/// whether the run was stopped early and the time of the last state.
fn integrate<M: VelocityField + ?Sized>(
    model: &M,
    mut z: Tensor<4>,
    y: &[i64],
    cfg: &SphereSamplerConfig,
    hold: &dyn Fn(Tensor<4>, f64) -> Tensor<4>,
    callback: StepCallback<'_>,
) -> (Tensor<4>, usize, bool, f64) {
    let r = radius(z.dims()[1]);
    let grid = sphere_time_grid(cfg.steps, cfg.shift, cfg.t_end);
    let (mut done, mut cancelled) = (0, false);
    for k in 0..cfg.steps {
        let (t, tn) = (grid[k], grid[k + 1]);
        z = hold(z, t);
        let v = guided_velocity(model, z.clone(), t, y, cfg.cfg_scale, cfg.guided_channels);
        z = sphere_step(&z, &v, tn - t, r, cfg.method);
        done = k + 1;
        if !callback(&StepInfo { step: k + 1, steps: cfg.steps, t, t_next: tn }, &z) {
            cancelled = k + 1 < cfg.steps;
            break;
        }
    }
    (z, done, cancelled, grid[done])
}

/// Spherical inpainting: sample the patches where `regen` is 1 while the others are held to `known`'s own
/// path. Before every step, each known patch is put where the training path puts it at that step's time (the
/// great-circle point between its encoded direction and its noise, [`crate::rfm::sphere_path`]); then the step
/// is taken on the whole grid, so the regenerated patches see consistent neighbours at every noise level. After
/// the last step the known patches are exactly `known`'s directions (at `t_end = 0`). The result is on the
/// radius-sqrt(C) spheres (`cfg.final_radius` is not applied: the caller sets the radii).
///
/// # Shapes
/// - known: `[n, C, H, W]`, regen: `[n, 1, H, W]` (1 = sample, 0 = keep), y: n labels -> `[n, C, H, W]`
pub fn sample_sphere_inpaint<M: VelocityField + ?Sized>(
    model: &M,
    known: &Tensor<4>,
    regen: &Tensor<4>,
    y: &[i64],
    cfg: &SphereSamplerConfig,
    callback: StepCallback<'_>,
) -> SampleOutput {
    let [n, c, h, w] = known.dims();
    let device = known.device();
    let noise = sphere_noise([n, c, h, w], cfg.seed, &device);
    let keep = regen.clone().neg().add_scalar(1.0);
    let held = |z: Tensor<4>, t: f64| {
        let tt = Tensor::<1>::from_data(TensorData::new(vec![t as f32; n], vec![n]), &device);
        let on_path = crate::rfm::sphere_path(known, &noise, &tt).zt;
        z * regen.clone() + on_path * keep.clone()
    };
    let (z, steps_done, cancelled, t_last) = integrate(model, noise.clone(), y, cfg, &held, callback);
    SampleOutput { z: held(z, t_last), steps_done, cancelled }
}

/// RAE Euler sampler settings (Euclidean flow matching).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EuclidSamplerConfig {
    /// Grid points (RAE `num_steps`); `points - 1` Euler steps.
    pub points: usize,
    pub shift: f64,
    pub cfg_scale: f64,
    #[serde(default)]
    pub guided_channels: Option<usize>,
    /// Last base time of the grid `1 - t_last` (RAE: 0.999, i.e. stop at shift(0.001)).
    pub t_last: f64,
    /// Rescale every patch to this radius at the end (None: raw samples).
    pub final_radius: Option<f64>,
}

impl Default for EuclidSamplerConfig {
    fn default() -> Self {
        Self { points: 51, shift: 1.0, cfg_scale: 1.0, guided_channels: None, t_last: 0.999, final_radius: None }
    }
}

/// RAE's grid: `shift(1 - linspace(0, t_last, points))`.
pub fn euclid_time_grid(points: usize, shift: f64, t_last: f64) -> Vec<f64> {
    let n = points.max(2);
    (0..n).map(|k| shift_time(1.0 - t_last * k as f64 / (n - 1) as f64, shift)).collect()
}

/// Euler integration of the guided velocity from noise `z` (t = 1) towards data.
///
/// # Shapes
/// - z: `[n, C, H, W]` -> `SampleOutput.z`: `[n, C, H, W]`
pub fn sample_euclid<M: VelocityField + ?Sized>(
    model: &M,
    z: Tensor<4>,
    y: &[i64],
    cfg: &EuclidSamplerConfig,
    callback: StepCallback<'_>,
) -> SampleOutput {
    let grid = euclid_time_grid(cfg.points, cfg.shift, cfg.t_last);
    let steps = grid.len() - 1;
    let mut x = z;
    let mut done = 0;
    let mut cancelled = false;
    for k in 0..steps {
        let (t, tn) = (grid[k], grid[k + 1]);
        // The reference steps with float32 times.
        let dt = (tn as f32 - t as f32) as f64;
        let v = guided_velocity(model, x.clone(), t as f32 as f64, y, cfg.cfg_scale, cfg.guided_channels);
        x = x + v.mul_scalar(dt);
        done = k + 1;
        if !callback(&StepInfo { step: k + 1, steps, t, t_next: tn }, &x) {
            cancelled = k + 1 < steps;
            break;
        }
    }
    if let Some(s) = cfg.final_radius {
        x = sphere::project_to_radius(&x, s);
    }
    SampleOutput { z: x, steps_done: done, cancelled }
}
