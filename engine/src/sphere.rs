//! Product-of-spheres math on latents: one sphere per patch.
//!
//! Tensor versions work on `[B, C, h, w]` maps, reducing over the channel dim (dim 1). The `f64`
//! module holds the same formulas on plain vectors, used as references in tests and `verify-fixture`.

use burn::tensor::Tensor;

/// Guard for divisions by norms.
const TINY: f64 = 1e-12;

/// Per-patch Euclidean norm `[B, 1, h, w]`.
pub fn magnitude(z: &Tensor<4>) -> Tensor<4> {
    z.clone().square().sum_dim(1).sqrt()
}

/// Per-patch unit direction.
pub fn direction(z: &Tensor<4>) -> Tensor<4> {
    z.clone() / magnitude(z).clamp_min(TINY)
}

/// Every patch rescaled to radius `r` (the paper's `s * z/|z|`).
pub fn project_to_radius(z: &Tensor<4>, r: f64) -> Tensor<4> {
    direction(z).mul_scalar(r)
}

fn dot(a: &Tensor<4>, b: &Tensor<4>) -> Tensor<4> {
    (a.clone() * b.clone()).sum_dim(1)
}

/// Tangent projection at x (any radius): `v - <x,v>/|x|^2 x`.
pub fn tangent(x: &Tensor<4>, v: &Tensor<4>) -> Tensor<4> {
    let xx = dot(x, x).clamp_min(TINY);
    v.clone() - x.clone() * (dot(x, v) / xx)
}

/// Angle between patches, stable at 0 and pi: `2 atan2(|a-b|, |a+b|)` on unit directions. `[B,1,h,w]`
pub fn angle(x0: &Tensor<4>, x1: &Tensor<4>) -> Tensor<4> {
    let a = direction(x0);
    let b = direction(x1);
    let d = magnitude(&(a.clone() - b.clone()));
    let s = magnitude(&(a + b));
    d.atan2(s).mul_scalar(2.0)
}

/// Geodesic distance on the sphere of radius |x0|.
pub fn geodesic_distance(x0: &Tensor<4>, x1: &Tensor<4>) -> Tensor<4> {
    angle(x0, x1) * magnitude(x0)
}

/// Unit tangent direction at `x` pointing towards `y` (deterministic fallback when y = ±x).
fn unit_tangent_towards(x: &Tensor<4>, y: &Tensor<4>) -> Tensor<4> {
    let xh = direction(x);
    let u = tangent(&xh, &direction(y));
    let un = magnitude(&u);
    // Fallback for (anti)parallel pairs: the tangent part of e_0 or e_1, whichever is less parallel to x.
    let [b, c, h, w] = x.dims();
    let device = x.device();
    let e = |k: usize| {
        let mut v = vec![0f32; c];
        v[k.min(c - 1)] = 1.0;
        Tensor::<1>::from_floats(v.as_slice(), &device)
            .reshape([1, c, 1, 1])
            .repeat_dim(0, b)
            .repeat_dim(2, h)
            .repeat_dim(3, w)
    };
    let t0 = tangent(&xh, &e(0));
    let t1 = tangent(&xh, &e(1));
    let pick0 = magnitude(&t0).greater_equal(magnitude(&t1));
    let fb = t1.mask_where(pick0.clone().repeat_dim(1, c), t0);
    let fb = direction(&fb);
    let degenerate = un.clone().lower_elem(1e-6).repeat_dim(1, c);
    let u = u / un.clamp_min(TINY);
    u.mask_where(degenerate, fb)
}

/// Spherical interpolation per patch on the sphere of radius |x0| (x1 is used by direction).
/// Exact at t=0 and t=1, stable for nearly parallel pairs, deterministic for antipodal ones.
pub fn slerp(x0: &Tensor<4>, x1: &Tensor<4>, t: f64) -> Tensor<4> {
    if t == 0.0 {
        return x0.clone();
    }
    let r = magnitude(x0);
    if t == 1.0 {
        return direction(x1) * r;
    }
    let theta = angle(x0, x1);
    let u = unit_tangent_towards(x0, x1);
    let a = theta.mul_scalar(t);
    x0.clone() * a.clone().cos() + u * (a.sin() * r)
}

/// Log map at x0: tangent vector of length r*theta towards x1.
pub fn log_map(x0: &Tensor<4>, x1: &Tensor<4>) -> Tensor<4> {
    let r = magnitude(x0);
    unit_tangent_towards(x0, x1) * (angle(x0, x1) * r)
}

/// Exp map at x (radius |x|) of a tangent vector v.
pub fn exp_map(x: &Tensor<4>, v: &Tensor<4>) -> Tensor<4> {
    let r = magnitude(x).clamp_min(TINY);
    let vn = magnitude(v);
    let a = vn.clone() / r.clone();
    let vhat = v.clone() / vn.clamp_min(TINY);
    x.clone() * a.clone().cos() + vhat * (a.sin() * r)
}

/// Rotate each patch along the great circle towards `target` by `angle` radians (radius preserved).
pub fn rotate_towards(x: &Tensor<4>, target: &Tensor<4>, angle_rad: f64) -> Tensor<4> {
    let r = magnitude(x);
    let u = unit_tangent_towards(x, target);
    x.clone().mul_scalar(angle_rad.cos()) + u * r.mul_scalar(angle_rad.sin())
}

/// Euler step then retraction: `r * normalize(x + dt * proj_x(v))` with r = |x|.
pub fn euler_proj_step(x: &Tensor<4>, v: &Tensor<4>, dt: f64) -> Tensor<4> {
    let r = magnitude(x);
    let y = x.clone() + tangent(x, v).mul_scalar(dt);
    direction(&y) * r
}

/// Geodesic Euler step: `exp_x(dt * proj_x(v))`.
pub fn exp_step(x: &Tensor<4>, v: &Tensor<4>, dt: f64) -> Tensor<4> {
    exp_map(x, &tangent(x, v).mul_scalar(dt))
}

/// Random unit tangent directions at x (Gaussian, projected, normalised).
pub fn random_tangent(x: &Tensor<4>) -> Tensor<4> {
    let g = Tensor::<4>::random(x.dims(), burn::tensor::Distribution::Normal(0.0, 1.0), &x.device());
    direction(&tangent(x, &g))
}

/// Cosine similarity of token vectors over the last dim (student vs teacher tokens; norms guarded by 1e-8).
///
/// # Shapes
/// - a, b: `[B, N, D]` -> `[B, N]`
pub fn cosine_last(a: Tensor<3>, b: Tensor<3>) -> Tensor<2> {
    let dot = (a.clone() * b.clone()).sum_dim(2);
    let na = a.square().sum_dim(2).sqrt();
    let nb = b.square().sum_dim(2).sqrt();
    let c = dot / (na * nb).clamp_min(1e-8);
    let [bb, n, _] = c.dims();
    c.reshape([bb, n])
}

/// Float64 reference formulas on single vectors (see `../shared/fixtures/dinosae-setA/NOTES.md` section 6).
pub mod f64ref {
    pub fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }
    pub fn norm(a: &[f64]) -> f64 {
        dot(a, a).sqrt()
    }
    pub fn theta(x0: &[f64], x1: &[f64]) -> f64 {
        let (n0, n1) = (norm(x0), norm(x1));
        let d: Vec<f64> = x0.iter().zip(x1).map(|(a, b)| a / n0 - b / n1).collect();
        let s: Vec<f64> = x0.iter().zip(x1).map(|(a, b)| a / n0 + b / n1).collect();
        2.0 * norm(&d).atan2(norm(&s))
    }
    pub fn slerp(x0: &[f64], x1: &[f64], t: f64) -> Vec<f64> {
        let th = theta(x0, x1);
        if th < 1e-12 {
            return x0.to_vec();
        }
        let s = th.sin();
        x0.iter().zip(x1).map(|(a, b)| ((1.0 - t) * th).sin() / s * a + (t * th).sin() / s * b).collect()
    }
    pub fn log(x0: &[f64], x1: &[f64], r: f64) -> Vec<f64> {
        let th = theta(x0, x1);
        let c = th.cos();
        let u: Vec<f64> = x0.iter().zip(x1).map(|(a, b)| b - c * a).collect();
        let un = norm(&u);
        if un < 1e-300 {
            return vec![0.0; x0.len()];
        }
        u.iter().map(|v| r * th * v / un).collect()
    }
    pub fn exp(x: &[f64], v: &[f64], r: f64) -> Vec<f64> {
        let vn = norm(v);
        if vn == 0.0 {
            return x.to_vec();
        }
        x.iter().zip(v).map(|(a, b)| (vn / r).cos() * a + r * (vn / r).sin() * b / vn).collect()
    }
    pub fn proj(x: &[f64], v: &[f64], r: f64) -> Vec<f64> {
        let c = dot(x, v) / (r * r);
        v.iter().zip(x).map(|(b, a)| b - c * a).collect()
    }
    pub fn euler_proj_step(x: &[f64], v: &[f64], dt: f64, r: f64) -> Vec<f64> {
        let y: Vec<f64> = x.iter().zip(proj(x, v, r)).map(|(a, b)| a + dt * b).collect();
        let n = norm(&y);
        y.iter().map(|a| r * a / n).collect()
    }
}
