//! Sphere math on latent tensors (f32) against the float64 reference formulas, plus edge cases.
//! Tolerances: 1e-5 * r for generic pairs, 1e-4 * r near theta -> 0 (f32 arccos/atan2 precision).

use burn::tensor::{Distribution, Tensor};
use engine::sphere::{self, f64ref};
use engine::tensor_file::RawTensor;

fn rows(t: &Tensor<4>) -> Vec<Vec<f64>> {
    // [B, C, 1, 1] -> B rows of C
    let r = RawTensor::from_tensor(t.clone()).expect("download");
    let c = r.shape[1];
    r.data.chunks(c).map(|ch| ch.iter().map(|&v| v as f64).collect()).collect()
}

fn on_sphere(n: usize, c: usize, r: f64, seed: u64) -> Tensor<4> {
    let device = engine::cpu();
    device.seed(seed);
    let g = Tensor::<4>::random([n, c, 1, 1], Distribution::Normal(0.0, 1.0), &device);
    sphere::project_to_radius(&g, r)
}

fn max_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f64::max)
}

#[test]
fn tensor_ops_match_f64_references() {
    let r = 8.0;
    let x0 = on_sphere(16, 32, r, 1);
    let x1 = on_sphere(16, 32, r, 2);
    let device = engine::cpu();
    let v = Tensor::<4>::random([16, 32, 1, 1], Distribution::Normal(0.0, 1.0), &device);
    let (a, b, vv) = (rows(&x0), rows(&x1), rows(&v));
    for t in [0.0, 0.25, 0.5, 1.0] {
        let ours = rows(&sphere::slerp(&x0, &x1, t));
        let want: Vec<Vec<f64>> = a.iter().zip(&b).map(|(p, q)| f64ref::slerp(p, q, t)).collect();
        assert!(max_diff(&ours, &want) < 1e-5 * r, "slerp t={t}: {}", max_diff(&ours, &want));
    }
    let ours = rows(&sphere::log_map(&x0, &x1));
    let want: Vec<Vec<f64>> = a.iter().zip(&b).map(|(p, q)| f64ref::log(p, q, r)).collect();
    assert!(max_diff(&ours, &want) < 1e-5 * r, "log {}", max_diff(&ours, &want));
    let ours = rows(&sphere::euler_proj_step(&x0, &v, 0.1));
    let want: Vec<Vec<f64>> = a.iter().zip(&vv).map(|(p, q)| f64ref::euler_proj_step(p, q, 0.1, r)).collect();
    assert!(max_diff(&ours, &want) < 1e-5 * r);
    let vt = sphere::tangent(&x0, &v);
    let ours = rows(&sphere::exp_map(&x0, &vt));
    let want: Vec<Vec<f64>> = a.iter().zip(&vv).map(|(p, q)| f64ref::exp(p, &f64ref::proj(p, q, r), r)).collect();
    assert!(max_diff(&ours, &want) < 1e-5 * r);
    // identity: exp(t log) = slerp
    let l = sphere::log_map(&x0, &x1).mul_scalar(0.3);
    let d = max_diff(&rows(&sphere::exp_map(&x0, &l)), &rows(&sphere::slerp(&x0, &x1, 0.3)));
    assert!(d < 1e-5 * r, "exp(t log) vs slerp {d}");
}

#[test]
fn slerp_is_exact_at_endpoints_and_stays_on_sphere() {
    let r = 32.0;
    let x0 = on_sphere(8, 64, r, 3);
    let x1 = on_sphere(8, 64, r, 4);
    assert_eq!(rows(&sphere::slerp(&x0, &x1, 0.0)), rows(&x0));
    assert!(max_diff(&rows(&sphere::slerp(&x0, &x1, 1.0)), &rows(&x1)) < 1e-5 * r);
    for t in [0.1, 0.7] {
        let m = rows(&sphere::magnitude(&sphere::slerp(&x0, &x1, t)));
        for n in m {
            assert!((n[0] - r).abs() < 1e-5 * r);
        }
    }
}

#[test]
fn nearly_parallel_and_antipodal_pairs() {
    let r = 4.0;
    let x0 = on_sphere(4, 16, r, 5);
    let device = engine::cpu();
    // nearly parallel: theta ~ 1e-3
    let eps = Tensor::<4>::random([4, 16, 1, 1], Distribution::Normal(0.0, 1.0), &device);
    let x1 = sphere::project_to_radius(&(x0.clone() + sphere::tangent(&x0, &eps).mul_scalar(1e-3 / 4.0 * r)), r);
    let (a, b) = (rows(&x0), rows(&x1));
    let ours = rows(&sphere::slerp(&x0, &x1, 0.5));
    let want: Vec<Vec<f64>> = a.iter().zip(&b).map(|(p, q)| f64ref::slerp(p, q, 0.5)).collect();
    assert!(max_diff(&ours, &want) < 1e-4 * r, "near-parallel slerp {}", max_diff(&ours, &want));
    // identical points: slerp returns the point
    assert!(max_diff(&rows(&sphere::slerp(&x0, &x0, 0.5)), &a) < 1e-5 * r);
    // antipodal: a half-way point is on the sphere and at 90 degrees from both ends
    let anti = x0.clone().neg();
    let mid = sphere::slerp(&x0, &anti, 0.5);
    for (m, p) in rows(&mid).iter().zip(&a) {
        assert!((f64ref::norm(m) - r).abs() < 1e-4 * r, "antipodal midpoint off the sphere");
        let th = f64ref::theta(m, p);
        assert!((th - std::f64::consts::FRAC_PI_2).abs() < 1e-3, "antipodal midpoint angle {th}");
        assert!(m.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn rotation_towards_a_target_moves_by_the_requested_angle() {
    let r = 5.0;
    let x = on_sphere(6, 24, r, 7);
    let target = on_sphere(6, 24, 1.0, 8);
    let a = 0.4;
    let y = sphere::rotate_towards(&x, &target, a);
    let (xs, ys, ts) = (rows(&x), rows(&y), rows(&target));
    for i in 0..6 {
        assert!((f64ref::norm(&ys[i]) - r).abs() < 1e-4 * r);
        assert!((f64ref::theta(&xs[i], &ys[i]) - a).abs() < 1e-4);
        // it got closer to the target
        assert!(f64ref::theta(&ys[i], &ts[i]) < f64ref::theta(&xs[i], &ts[i]));
    }
}

#[test]
fn random_tangents_are_unit_and_orthogonal() {
    let x = on_sphere(10, 32, 3.0, 9);
    let t = sphere::random_tangent(&x);
    for (tv, xv) in rows(&t).iter().zip(rows(&x)) {
        assert!((f64ref::norm(tv) - 1.0).abs() < 1e-5);
        assert!(f64ref::dot(tv, &xv).abs() < 1e-4);
    }
}
