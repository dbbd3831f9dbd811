//! Flow-matching training objectives behind one interface ([`FlowObjective`]):
//!
//! - **Riemannian flow matching on a product of spheres** (DINO-SAE paper v2, Alg. 1; METHOD.md section 4):
//!   every patch (vector over the channel dim) lives on the sphere of radius `R = sqrt(C)`;
//!   data `z0 = R x/|x|`, noise `z1 = R e/|e|`, slerp path
//!   `z_t = [sin((1-t)W) z0 + sin(tW) z1] / sin W`, target `u_t = (W/sin W)[cos(tW) z1 - cos((1-t)W) z0]`,
//!   loss `mean|v_tan - u_tan|^2 + lambda_rad mean|v_rad|^2` (means over elements), `lambda_rad = 0.1`.
//! - **Euclidean linear flow matching** as RAE trains it: `x_t = (1-t) x + t e`, target `u_t = e - x`,
//!   loss `mean (v - u_t)^2`.
//!
//! Convention for both: t = 0 is data, t = 1 is noise. Training time: `t_b = sigmoid(n)`, `n ~ N(mu, sigma)`
//! (logit-normal; RAE truncates to `[0, 0.999]`) or uniform, then shifted `t = a t_b / (1 + (a-1) t_b)`.
//! Everything runs in f32 on tensors; [`f64ref`] holds the same formulas on single f64 vectors.

use burn::tensor::{Device, Tensor, TensorData};
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::sphere;

/// Smallest angle used in the slerp formulas: below it the path is linear to f32 precision, and the
/// formulas stay finite when data and noise coincide.
pub const MIN_OMEGA: f64 = 1e-6;

/// The time shift `a t / (1 + (a-1) t)` (a >= 1 pushes t towards noise).
pub fn shift_time(t: f64, a: f64) -> f64 {
    a * t / (1.0 + (a - 1.0) * t)
}

/// The shift RAE uses by default: `sqrt(C*H*W / 4096)`, at least 1.
pub fn default_shift(c: usize, h: usize, w: usize) -> f64 {
    ((c * h * w) as f64 / 4096.0).sqrt().max(1.0)
}

/// Standard normal draws (Box-Muller) from a seeded generator.
pub fn gaussian(rng: &mut StdRng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = rng.random();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = 2.0 * std::f64::consts::PI * u2;
        out.push((r * a.cos()) as f32);
        out.push((r * a.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// A Gaussian tensor from a seeded generator (deterministic on every backend).
pub fn gaussian_tensor(rng: &mut StdRng, shape: [usize; 4], device: &Device) -> Tensor<4> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(gaussian(rng, n), shape.to_vec()), device)
}

/// Distribution of the base training time before the shift.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimeDist {
    /// `sigmoid(N(mu, sigma))`, restricted to `[lo, hi]` by rejection when `hi < 1` (RAE: hi = 0.999).
    LogitNormal { mu: f64, sigma: f64, lo: f64, hi: f64 },
    /// `U[lo, hi]`.
    Uniform { lo: f64, hi: f64 },
}

impl TimeDist {
    /// The paper's logit-normal(0, 1), untruncated.
    pub fn paper() -> Self {
        TimeDist::LogitNormal { mu: 0.0, sigma: 1.0, lo: 0.0, hi: 1.0 }
    }

    /// Draw base times (before the shift).
    pub fn draw(&self, rng: &mut StdRng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| match *self {
                TimeDist::Uniform { lo, hi } => lo + (hi - lo) * rng.random::<f64>(),
                TimeDist::LogitNormal { mu, sigma, lo, hi } => loop {
                    let g = gaussian(rng, 1)[0] as f64;
                    let t = 1.0 / (1.0 + (-(mu + sigma * g)).exp());
                    if t >= lo && t <= hi {
                        break t;
                    }
                },
            })
            .collect()
    }
}

/// Spherical RFM settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SphereFm {
    /// Weight of the radial penalty (paper: 0.1).
    pub lambda_rad: f64,
    /// Time shift a (paper: 8 for 1024 x 16 x 16 latents).
    pub shift: f64,
    pub time: TimeDist,
}

impl Default for SphereFm {
    fn default() -> Self {
        Self { lambda_rad: 0.1, shift: 8.0, time: TimeDist::paper() }
    }
}

/// Euclidean (RAE) linear flow matching settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EuclidFm {
    pub shift: f64,
    pub time: TimeDist,
}

impl Default for EuclidFm {
    fn default() -> Self {
        Self { shift: 1.0, time: TimeDist::LogitNormal { mu: 0.0, sigma: 1.0, lo: 0.0, hi: 0.999 } }
    }
}

/// One objective, spherical or Euclidean.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "objective", rename_all = "snake_case")]
pub enum FlowObjective {
    Sphere(SphereFm),
    Euclid(EuclidFm),
}

/// A training batch on the path: model input `xt` at times `t`, regression target `target`.
#[derive(Clone, Debug)]
pub struct PathSample {
    pub xt: Tensor<4>,
    pub t: Tensor<1>,
    pub target: Tensor<4>,
}

/// Everything the spherical path computes (for parity checks). Per-token scalars are `[B, 1, H, W]`.
#[derive(Clone, Debug)]
pub struct SpherePath {
    pub z0: Tensor<4>,
    pub z1: Tensor<4>,
    pub cos_omega: Tensor<4>,
    pub omega: Tensor<4>,
    pub zt: Tensor<4>,
    pub ut: Tensor<4>,
}

/// The spherical loss broken down.
#[derive(Clone, Debug)]
pub struct SphereLossParts {
    pub zt_hat: Tensor<4>,
    pub v_rad_coef: Tensor<4>,
    pub v_rad: Tensor<4>,
    pub v_tan: Tensor<4>,
    pub u_tan: Tensor<4>,
    /// mean over elements of (v_tan - u_tan)^2, `[1]`
    pub mse_tan: Tensor<1>,
    /// mean over elements of v_rad^2, `[1]`
    pub mse_rad: Tensor<1>,
    /// mse_tan + lambda mse_rad, `[1]`
    pub loss: Tensor<1>,
}

fn dot(a: &Tensor<4>, b: &Tensor<4>) -> Tensor<4> {
    (a.clone() * b.clone()).sum_dim(1)
}

/// Radius of the latent spheres: `sqrt(C)`.
pub fn radius(c: usize) -> f64 {
    (c as f64).sqrt()
}

/// Slerp path and its velocity from data `x` and noise `e` (neither needs to be on the sphere).
///
/// # Shapes
/// - x, e: `[B, C, H, W]`, t: `[B]` -> tensors `[B, C, H, W]`, scalars `[B, 1, H, W]`
pub fn sphere_path(x: &Tensor<4>, e: &Tensor<4>, t: &Tensor<1>) -> SpherePath {
    let [b, c, _, _] = x.dims();
    let r = radius(c);
    let z0 = sphere::project_to_radius(x, r);
    let z1 = sphere::project_to_radius(e, r);
    let cos_omega = dot(&z0, &z1).div_scalar(r * r).clamp(-1.0, 1.0);
    // atan2 form: accurate for small angles (arccos loses half the digits there in f32).
    let omega = sphere::angle(&z0, &z1);
    let om = omega.clone().clamp_min(MIN_OMEGA);
    let sin_om = om.clone().sin().clamp_min(1e-12);
    let t4 = t.clone().reshape([b, 1, 1, 1]);
    let one_m_t = t4.clone().neg().add_scalar(1.0);
    let a0 = (one_m_t.clone() * om.clone()).sin() / sin_om.clone();
    let a1 = (t4.clone() * om.clone()).sin() / sin_om.clone();
    let zt = z0.clone() * a0 + z1.clone() * a1;
    let k = om.clone() / sin_om;
    let ut = (z1.clone() * (t4 * om.clone()).cos() - z0.clone() * (one_m_t * om).cos()) * k;
    SpherePath { z0, z1, cos_omega, omega, zt, ut }
}

/// Tangent/radial decomposition at `zt` and the RFM loss.
///
/// # Shapes
/// - v, zt, ut: `[B, C, H, W]` -> parts as in [`SphereLossParts`]
pub fn sphere_loss_parts(v: &Tensor<4>, zt: &Tensor<4>, ut: &Tensor<4>, lambda_rad: f64) -> SphereLossParts {
    let zt_hat = sphere::direction(zt);
    let v_rad_coef = dot(v, &zt_hat);
    let v_rad = zt_hat.clone() * v_rad_coef.clone();
    let v_tan = v.clone() - v_rad.clone();
    let u_tan = ut.clone() - zt_hat.clone() * dot(ut, &zt_hat);
    let mse_tan = (v_tan.clone() - u_tan.clone()).square().mean();
    let mse_rad = v_rad.clone().square().mean();
    let loss = mse_tan.clone() + mse_rad.clone().mul_scalar(lambda_rad);
    SphereLossParts { zt_hat, v_rad_coef, v_rad, v_tan, u_tan, mse_tan, mse_rad, loss }
}

/// Euclidean linear path: `(x_t, u_t) = ((1-t) x + t e, e - x)`.
///
/// # Shapes
/// - x, e: `[B, C, H, W]`, t: `[B]` -> `([B, C, H, W], [B, C, H, W])`
pub fn linear_path(x: &Tensor<4>, e: &Tensor<4>, t: &Tensor<1>) -> (Tensor<4>, Tensor<4>) {
    let b = x.dims()[0];
    let t4 = t.clone().reshape([b, 1, 1, 1]);
    let xt = x.clone() * t4.clone().neg().add_scalar(1.0) + e.clone() * t4;
    (xt, e.clone() - x.clone())
}

/// RAE's per-sample loss `mean over (C,H,W) of (v - u)^2`.
///
/// # Shapes
/// - v, u: `[B, C, H, W]` -> `[B]`
pub fn per_sample_mse(v: &Tensor<4>, u: &Tensor<4>) -> Tensor<1> {
    let [b, c, h, w] = v.dims();
    (v.clone() - u.clone()).square().reshape([b, c * h * w]).mean_dim(1).reshape([b])
}

impl FlowObjective {
    pub fn name(&self) -> &'static str {
        match self {
            FlowObjective::Sphere(_) => "riemannian-fm (sphere)",
            FlowObjective::Euclid(_) => "euclidean-fm (linear)",
        }
    }

    pub fn shift(&self) -> f64 {
        match self {
            FlowObjective::Sphere(s) => s.shift,
            FlowObjective::Euclid(e) => e.shift,
        }
    }

    /// Shifted training times.
    pub fn sample_t(&self, rng: &mut StdRng, n: usize) -> Vec<f32> {
        let (dist, a) = match self {
            FlowObjective::Sphere(s) => (s.time, s.shift),
            FlowObjective::Euclid(e) => (e.time, e.shift),
        };
        dist.draw(rng, n).into_iter().map(|t| shift_time(t, a) as f32).collect()
    }

    /// Path point and target from data `x`, noise `e` (raw Gaussian; the sphere objective normalises both).
    ///
    /// # Shapes
    /// - x, e: `[B, C, H, W]`, t: `[B]`
    pub fn path(&self, x: &Tensor<4>, e: &Tensor<4>, t: &Tensor<1>) -> PathSample {
        match self {
            FlowObjective::Sphere(_) => {
                let p = sphere_path(x, e, t);
                PathSample { xt: p.zt, t: t.clone(), target: p.ut }
            }
            FlowObjective::Euclid(_) => {
                let (xt, ut) = linear_path(x, e, t);
                PathSample { xt, t: t.clone(), target: ut }
            }
        }
    }

    /// Draw noise and times for a data batch and build the path sample.
    pub fn draw(&self, x: &Tensor<4>, rng: &mut StdRng) -> PathSample {
        let dims = x.dims();
        let device = x.device();
        let e = gaussian_tensor(rng, dims, &device);
        let t = self.sample_t(rng, dims[0]);
        let t = Tensor::<1>::from_data(TensorData::new(t, vec![dims[0]]), &device);
        self.path(x, &e, &t)
    }

    /// Scalar training loss of the model output `v` on `s`.
    ///
    /// # Shapes
    /// - v: `[B, C, H, W]` -> `[1]`
    pub fn loss(&self, v: &Tensor<4>, s: &PathSample) -> Tensor<1> {
        match self {
            FlowObjective::Sphere(cfg) => sphere_loss_parts(v, &s.xt, &s.target, cfg.lambda_rad).loss,
            FlowObjective::Euclid(_) => (v.clone() - s.target.clone()).square().mean(),
        }
    }
}

/// The same formulas on single f64 token vectors (references for tests and `verify-fixture`).
pub mod f64ref {
    use crate::sphere::f64ref::{dot, norm};

    pub fn scale(a: &[f64], s: f64) -> Vec<f64> {
        a.iter().map(|v| v * s).collect()
    }
    pub fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }
    pub fn sub(a: &[f64], b: &[f64]) -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x - y).collect()
    }
    pub fn to_radius(a: &[f64], r: f64) -> Vec<f64> {
        scale(a, r / norm(a))
    }

    /// Token of the slerp path: (z0, z1, cos_omega, omega, zt, ut).
    pub struct Token {
        pub z0: Vec<f64>,
        pub z1: Vec<f64>,
        pub cos_omega: f64,
        pub omega: f64,
        pub zt: Vec<f64>,
        pub ut: Vec<f64>,
    }

    pub fn path(x: &[f64], e: &[f64], t: f64, r: f64) -> Token {
        let z0 = to_radius(x, r);
        let z1 = to_radius(e, r);
        let cos_omega = (dot(&z0, &z1) / (r * r)).clamp(-1.0, 1.0);
        let omega = crate::sphere::f64ref::theta(&z0, &z1);
        let s = omega.sin();
        let zt = add(&scale(&z0, ((1.0 - t) * omega).sin() / s), &scale(&z1, (t * omega).sin() / s));
        let k = omega / s;
        let ut = scale(&sub(&scale(&z1, (t * omega).cos()), &scale(&z0, ((1.0 - t) * omega).cos())), k);
        Token { z0, z1, cos_omega, omega, zt, ut }
    }

    /// (v_rad_coef, v_rad, v_tan, u_tan) at zt.
    pub fn decompose(v: &[f64], zt: &[f64], ut: &[f64]) -> (f64, Vec<f64>, Vec<f64>, Vec<f64>) {
        let zh = scale(zt, 1.0 / norm(zt));
        let c = dot(v, &zh);
        let v_rad = scale(&zh, c);
        let v_tan = sub(v, &v_rad);
        let u_tan = sub(ut, &scale(&zh, dot(ut, &zh)));
        (c, v_rad, v_tan, u_tan)
    }

    /// Euler + projection: `R normalize(z + dt v)`.
    pub fn euler_proj(z: &[f64], v: &[f64], dt: f64, r: f64) -> Vec<f64> {
        to_radius(&add(z, &scale(v, dt)), r)
    }

    /// Exp-map step with a tangent v: returns (theta, vhat, z_pre, z_renormalised).
    pub fn exp_step(z: &[f64], v_tan: &[f64], dt: f64, r: f64) -> (f64, Vec<f64>, Vec<f64>, Vec<f64>) {
        let step = scale(v_tan, dt);
        let n = norm(&step);
        let theta = n / r;
        let vhat = scale(&step, 1.0 / n);
        let pre = add(&scale(z, theta.cos()), &scale(&vhat, r * theta.sin()));
        let post = to_radius(&pre, r);
        (theta, vhat, pre, post)
    }
}
