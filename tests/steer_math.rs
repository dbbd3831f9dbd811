//! Steering (`engine::steer::apply`) against float64 formulas written out here, independent of the engine's sphere
//! code. A patch x rotated by angle a towards a target direction t, then scaled by s:
//!
//!   y = s |x| (cos a x^ + sin a u),   u = (t^ - (x^ . t^) x^) / |t^ - (x^ . t^) x^|
//!
//! so y lies on the great circle through x and t (in span{x, t}), at angle a from x; at a = angle(x, t) it points
//! along t, past it the angle to t is a - angle(x, t). Angular noise rotates every patch by exactly its angle along
//! a random tangent. Tolerances: float32 arithmetic on vectors of norm ~|x| gives errors of a few 1e-7 |x|; the
//! checks allow 2e-5 |y| (angles: 1e-3 degrees).

use burn::tensor::Tensor;
use engine::generate::class_mean_direction;
use engine::steer::{SteerEdit, SteerTarget, apply, pca_direction};
use engine::tensor_file::RawTensor;

type V = Vec<f64>;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}
fn unit(a: &[f64]) -> V {
    let n = norm(a);
    a.iter().map(|v| v / n).collect()
}
fn angle_deg(a: &[f64], b: &[f64]) -> f64 {
    (dot(a, b) / (norm(a) * norm(b))).clamp(-1.0, 1.0).acos().to_degrees()
}

/// A deterministic latent `[1, C, h, w]` with patch norms between ~2 and ~12 (an LCG, not the engine's RNG).
fn latent(c: usize, h: usize, w: usize, seed: u64) -> RawTensor {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    };
    let n = h * w;
    let mut data = vec![0f32; c * n];
    for p in 0..n {
        let scale = 2.0 + 10.0 * (p as f64 / n as f64);
        let v: V = (0..c).map(|_| next()).collect();
        let v = unit(&v);
        for ch in 0..c {
            data[ch * n + p] = (v[ch] * scale) as f32;
        }
    }
    RawTensor::new(vec![1, c, h, w], data).expect("shape")
}

/// Patch `p` of a `[1, C, h, w]` latent as f64.
fn patch(l: &RawTensor, p: usize) -> V {
    let n = l.shape[2] * l.shape[3];
    (0..l.shape[1]).map(|ch| l.data[ch * n + p] as f64).collect()
}

/// The reference rotation of x towards t by `a_deg`, scaled by s.
fn rotate_ref(x: &[f64], t: &[f64], a_deg: f64, s: f64) -> V {
    let xh = unit(x);
    let th = unit(t);
    let c = dot(&xh, &th);
    let u = unit(&th.iter().zip(&xh).map(|(t, x)| t - c * x).collect::<V>());
    let a = a_deg.to_radians();
    let r = norm(x);
    xh.iter().zip(&u).map(|(x, u)| s * r * (a.cos() * x + a.sin() * u)).collect()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Distance of y from span{a, b} (Gram-Schmidt in f64), relative to |y|.
fn off_plane(y: &[f64], a: &[f64], b: &[f64]) -> f64 {
    let e1 = unit(a);
    let b_e1 = dot(b, &e1);
    let bb: V = b.iter().zip(&e1).map(|(bi, ei)| bi - b_e1 * ei).collect();
    let e2 = unit(&bb);
    let (y1, y2) = (dot(y, &e1), dot(y, &e2));
    let r: V = y.iter().zip(&e1).zip(&e2).map(|((yi, e1i), e2i)| yi - y1 * e1i - y2 * e2i).collect();
    norm(&r) / norm(y)
}

fn edit(patches: Vec<usize>, target: SteerTarget, angle_deg: f32, scale: f32) -> SteerEdit {
    SteerEdit { patches, target, angle_deg, magnitude_scale: scale, ..Default::default() }
}

/// Towards an explicit direction, on selected patches only, at angles below, at and past each patch's angle to the
/// target and at three magnitude scales: the formula above, on the great circle through x and t, unselected
/// patches bit-identical.
#[test]
fn rotation_towards_a_direction_follows_the_great_circle_at_any_angle_and_scale() {
    let device = engine::cpu();
    let (c, h, w) = (16, 3, 4);
    let z = latent(c, h, w, 1);
    let t: V = unit(&(0..c).map(|i| ((i * 37 % 11) as f64) - 5.0).collect::<V>());
    let t32: Vec<f32> = t.iter().map(|v| *v as f32).collect();
    let selected = vec![0, 5, 7, 11];
    for scale in [0.5f32, 1.0, 2.5] {
        for a in [10.0f32, 45.0, 90.0, 150.0] {
            let y = apply(&z, &edit(selected.clone(), SteerTarget::Direction(t32.clone()), a, scale), &device)
                .expect("steer");
            for p in 0..h * w {
                let (x, yp) = (patch(&z, p), patch(&y, p));
                if !selected.contains(&p) {
                    assert_eq!(yp, x, "unselected patch {p} changed");
                    continue;
                }
                let want = rotate_ref(&x, &t, a as f64, scale as f64);
                let err = max_abs_diff(&yp, &want);
                assert!(err <= 2e-5 * norm(&want), "patch {p} a {a} s {scale}: max |err| {err:e}");
                assert!(off_plane(&yp, &x, &t) < 2e-5, "patch {p}: off the great circle through x and t");
                assert!((angle_deg(&yp, &x) - a.min(180.0) as f64).abs() < 1e-3, "patch {p}: angle from x");
                assert!(((norm(&yp) / norm(&x)) - scale as f64).abs() < 2e-5, "patch {p}: magnitude scale");
            }
        }
    }
    // each patch at exactly its own angle to the target lands on the target's direction; 30 degrees past it, the
    // angle to the target is 30 degrees and the point is still on the same great circle, beyond t
    for p in selected {
        let x = patch(&z, p);
        let theta = angle_deg(&x, &t);
        let at =
            apply(&z, &edit(vec![p], SteerTarget::Direction(t32.clone()), theta as f32, 1.0), &device).expect("steer");
        let yp = patch(&at, p);
        assert!(angle_deg(&yp, &t) < 1e-3, "patch {p}: at its angle {theta:.2} it should point along t");
        let past = apply(&z, &edit(vec![p], SteerTarget::Direction(t32.clone()), theta as f32 + 30.0, 1.0), &device)
            .expect("steer");
        let yp = patch(&past, p);
        assert!((angle_deg(&yp, &t) - 30.0).abs() < 1e-3, "patch {p}: 30 degrees past the target");
        assert!((angle_deg(&yp, &x) - (theta + 30.0)).abs() < 1e-3, "patch {p}: beyond t, not back towards x");
        assert!(off_plane(&yp, &x, &t) < 2e-5);
    }
}

/// A patch of the same latent as the target: the same as steering towards that patch's unit direction.
#[test]
fn patch_target_is_that_patchs_direction() {
    let device = engine::cpu();
    let z = latent(12, 4, 4, 2);
    let q = 9;
    let t = unit(&patch(&z, q));
    let y = apply(&z, &edit(vec![], SteerTarget::Patch(q), 60.0, 1.5), &device).expect("steer");
    for p in (0..16).filter(|&p| p != q) {
        let want = rotate_ref(&patch(&z, p), &t, 60.0, 1.5);
        let err = max_abs_diff(&patch(&y, p), &want);
        assert!(err <= 2e-5 * norm(&want), "patch {p}: max |err| {err:e}");
    }
}

/// A random target (seeded): every patch moves by exactly the angle, keeps its radius times the scale, the same
/// seed repeats bit for bit and another seed goes elsewhere.
#[test]
fn random_target_moves_each_patch_by_the_angle() {
    let device = engine::cpu();
    let z = latent(20, 4, 5, 3);
    let e = edit(vec![], SteerTarget::Random(42), 35.0, 0.8);
    let y = apply(&z, &e, &device).expect("steer");
    for p in 0..20 {
        let (x, yp) = (patch(&z, p), patch(&y, p));
        assert!((angle_deg(&yp, &x) - 35.0).abs() < 1e-3, "patch {p}: {}", angle_deg(&yp, &x));
        assert!((norm(&yp) / norm(&x) - 0.8).abs() < 2e-5);
    }
    assert_eq!(apply(&z, &e, &device).expect("again").data, y.data, "the seed repeats");
    let other = apply(&z, &edit(vec![], SteerTarget::Random(43), 35.0, 0.8), &device).expect("other");
    assert_ne!(other.data, y.data);
}

/// Angular noise of sigma degrees: every patch ends exactly sigma away from where the steering put it, along a
/// tangent direction; over 256 patches of one direction the tangent directions average out (isotropic: the mean of
/// n random unit vectors has norm ~1/sqrt(n); we allow 3/sqrt(n)), and the noise seed repeats.
#[test]
fn angular_noise_rotates_every_patch_by_its_angle_in_isotropic_directions() {
    let device = engine::cpu();
    let (c, h, w) = (32, 16, 16);
    let n = h * w;
    // every patch the same direction e, radii varying
    let e: V = unit(&(0..c).map(|i| 1.0 + i as f64 * 0.1).collect::<V>());
    let mut data = vec![0f32; c * n];
    for p in 0..n {
        for ch in 0..c {
            data[ch * n + p] = (e[ch] * (3.0 + p as f64 * 0.01)) as f32;
        }
    }
    let z = RawTensor::new(vec![1, c, h, w], data).expect("latent");
    let t: V = unit(&(0..c).map(|i| if i % 3 == 0 { 1.0 } else { -0.5 }).collect::<V>());
    let t32: Vec<f32> = t.iter().map(|v| *v as f32).collect();
    for (a, sigma) in [(0.0f32, 20.0f32), (40.0, 7.5)] {
        let base = apply(&z, &edit(vec![], SteerTarget::Direction(t32.clone()), a, 1.0), &device).expect("base");
        let noisy =
            SteerEdit { noise_deg: sigma, noise_seed: 9, ..edit(vec![], SteerTarget::Direction(t32.clone()), a, 1.0) };
        let y = apply(&z, &noisy, &device).expect("noise");
        let mut mean = vec![0.0; c];
        for p in 0..n {
            let (b, yp) = (unit(&patch(&base, p)), unit(&patch(&y, p)));
            assert!((angle_deg(&yp, &b) - sigma as f64).abs() < 1e-3, "patch {p}: {}", angle_deg(&yp, &b));
            // the unit tangent the noise moved along: (y^ - cos(sigma) b^) / sin(sigma)
            let s = (sigma as f64).to_radians();
            let u: V = yp.iter().zip(&b).map(|(y, b)| (y - s.cos() * b) / s.sin()).collect();
            assert!(dot(&u, &b).abs() < 1e-4, "the noise direction is tangent");
            for (m, v) in mean.iter_mut().zip(&u) {
                *m += v / n as f64;
            }
        }
        assert!(norm(&mean) < 3.0 / (n as f64).sqrt(), "noise directions not isotropic: |mean| {}", norm(&mean));
        assert_eq!(apply(&z, &noisy, &device).expect("again").data, y.data, "the noise seed repeats");
    }
}

/// PCA targets: the engine's first principal axis of the patch directions satisfies the eigen-equation of their
/// covariance, computed here in float64 (Sigma a = lambda a, lambda the largest Rayleigh quotient found by a
/// separate power iteration); steering towards "+PCA 1" and "-PCA 1" follows the formula with t = +-a.
#[test]
fn pca_targets_are_principal_axes_of_the_patch_directions() {
    let device = engine::cpu();
    let (c, h, w) = (10, 6, 6);
    let n = h * w;
    // directions spread mostly along e1 around e0, a little along e2
    let mut data = vec![0f32; c * n];
    for p in 0..n {
        let s = (p as f64 / n as f64) * 2.0 - 1.0;
        let mut v = vec![0.0; c];
        v[0] = 1.0;
        v[1] = 1.5 * s;
        v[2] = 0.3 * ((p * 7 % 5) as f64 - 2.0) / 2.0;
        v[3] = 0.05 * ((p * 3 % 7) as f64 - 3.0) / 3.0;
        let v = unit(&v);
        for ch in 0..c {
            data[ch * n + p] = (v[ch] * 5.0) as f32;
        }
    }
    let z = RawTensor::new(vec![1, c, h, w], data).expect("latent");
    let pca = engine::inspect::Pca::fit(&[&z]).expect("pca");
    let axes = pca.axes_f32();
    // covariance of the unit directions (float64)
    let rows: Vec<V> = (0..n).map(|p| unit(&patch(&z, p))).collect();
    let mean: V = (0..c).map(|k| rows.iter().map(|r| r[k]).sum::<f64>() / n as f64).collect();
    let mut cov = vec![vec![0.0; c]; c];
    for r in &rows {
        for i in 0..c {
            for j in 0..c {
                cov[i][j] += (r[i] - mean[i]) * (r[j] - mean[j]) / n as f64;
            }
        }
    }
    let mul = |v: &[f64]| -> V { cov.iter().map(|row| dot(row, v)).collect() };
    let mut v: V = vec![1.0; c];
    for _ in 0..2000 {
        v = unit(&mul(&v));
    }
    let lambda_max = dot(&v, &mul(&v));
    let a: V = axes[0].iter().map(|x| *x as f64).collect();
    let sa = mul(&a);
    let la = dot(&a, &sa);
    assert!((norm(&a) - 1.0).abs() < 1e-5, "unit axis");
    assert!((la - lambda_max).abs() <= 1e-6 * lambda_max, "axis 1 is the top eigenvector: {la} vs {lambda_max}");
    let resid: V = sa.iter().zip(&a).map(|(s, a)| s - la * a).collect();
    assert!(norm(&resid) <= 1e-5 * lambda_max, "eigen-equation residual {}", norm(&resid));
    // the second axis is orthogonal to the first
    let b: V = axes[1].iter().map(|x| *x as f64).collect();
    assert!(dot(&a, &b).abs() < 1e-5);
    for positive in [true, false] {
        let dir = pca_direction(&axes, 0, positive).expect("axis");
        let t: V = dir.iter().map(|x| *x as f64).collect();
        assert!((dot(&t, &a) - if positive { 1.0 } else { -1.0 }).abs() < 1e-5);
        let y = apply(&z, &edit(vec![3, 20], SteerTarget::Direction(dir), 25.0, 1.0), &device).expect("steer");
        for p in [3, 20] {
            let want = rotate_ref(&patch(&z, p), &t, 25.0, 1.0);
            assert!(max_abs_diff(&patch(&y, p), &want) <= 2e-5 * norm(&want));
        }
    }
    assert!(pca_direction(&axes, 5, true).is_none(), "only three axes");
}

/// The class-mean target is the float64 mean of the unit directions of the class's samples (the generator's
/// sampler at 10 steps, seed 7, as documented), over samples and patches.
#[test]
fn class_mean_target_is_the_mean_direction_of_the_class_samples() {
    use engine::generate::{DIT_KIND, DitBundle, DitMeta, ObjectiveKind, SampleSpec, sample_latents};
    use engine::model::dit::{Dit, DitArch, DitConfig};
    let device = engine::cpu();
    let cfg = DitConfig::preset(DitArch::LightningDit, "tiny", 16, 2, 3).expect("cfg");
    let meta = DitMeta {
        kind: DIT_KIND.into(),
        dit: cfg.clone(),
        classes: vec!["a".into(), "b".into(), "c".into()],
        objective_kind: ObjectiveKind::Rfm,
        objective: ObjectiveKind::Rfm.objective(1.0),
        grid: [2, 2],
        channels: 16,
        s_vae: 4.0,
        steps: 0,
        ema: false,
        sae: String::new(),
    };
    let b = DitBundle { model: Dit::random(&cfg, 5, &device).expect("model"), meta };
    for class in [0, 2] {
        let got = class_mean_direction(&b, class, 3).expect("class mean");
        let z: Tensor<4> =
            sample_latents(&b, &SampleSpec { class, count: 3, steps: 10, seed: 7, ..Default::default() }).expect("z");
        let z = RawTensor::from_tensor(z).expect("raw");
        let (cnt, c, hw) = (z.shape[0], z.shape[1], z.shape[2] * z.shape[3]);
        let mut mean = vec![0.0f64; c];
        for s in 0..cnt {
            for p in 0..hw {
                let v: V = (0..c).map(|ch| z.data[(s * c + ch) * hw + p] as f64).collect();
                for (m, u) in mean.iter_mut().zip(unit(&v)) {
                    *m += u / (cnt * hw) as f64;
                }
            }
        }
        let g: V = got.iter().map(|x| *x as f64).collect();
        assert!(max_abs_diff(&g, &mean) < 1e-5, "class {class}: {:e}", max_abs_diff(&g, &mean));
    }
}
