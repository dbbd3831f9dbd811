//! SiLU and exact (erf) GELU, branch-free and libm-free so LLVM vectorises the loops.

use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// `e^x` for f32: relative error below 3e-7 on [-87, 88] (Cody-Waite reduction by ln 2, degree-6 polynomial for
/// `e^r` on |r| <= ln2/2, Cephes' coefficients); saturates outside that range; NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds to the nearest integer, which then sits in the low mantissa bits
    const SHIFT: f32 = 12_582_912.0;
    // a select, not f32::clamp, so LLVM vectorises it; NaN passes through
    #[allow(clippy::manual_clamp)] // f32::clamp would neither vectorise nor be needed for NaN
    let x = if x < -87.0 {
        -87.0
    } else if x > 88.0 {
        88.0
    } else {
        x
    };
    let m = x * std::f32::consts::LOG2_E + SHIFT;
    let n = m - SHIFT;
    let ni = (m.to_bits() as i32).wrapping_sub(SHIFT.to_bits() as i32);
    // r = x - n ln2 with ln2 = 0.693359375 - 2.12194440e-4 (the first part exact in few bits)
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes' 5.0000001e-1 is 0.5 in f32
    let er = p * r * r + r + 1.0;
    er * f32::from_bits((ni.wrapping_add(127) << 23) as u32)
}

/// `x * sigmoid(x)`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// Exact GELU, `x/2 * (1 + erf(x / sqrt 2))`. `1 - erf(z)` for z >= 0 is Abramowitz & Stegun 7.1.26 (absolute
/// error <= 1.5e-7); for x < 0 the factor `1 + erf` is taken as `erfc(|z|)` directly, so the left tail has no
/// cancellation.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [0.254_829_6, -0.284_496_74, 1.421_413_8, -1.453_152_1, 1.061_405_4];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erfc = poly * exp(-z * z);
    let one_plus_erf = if x >= 0.0 { 2.0 - erfc } else { erfc };
    0.5 * x * one_plus_erf
}

/// SiLU in place, on all cores.
pub fn silu_inplace(v: &mut [f32]) {
    v.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|x| *x = silu(*x)));
}

/// Exact GELU in place, on all cores.
pub fn gelu_inplace(v: &mut [f32]) {
    v.par_chunks_mut(CHUNK).for_each(|c| c.iter_mut().for_each(|x| *x = gelu(*x)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in float64 by its Maclaurin series (|z| <= 4.5: the largest term is ~1e7, so ~1e-9 absolute accuracy).
    fn erf64(z: f64) -> f64 {
        if z.abs() > 4.5 {
            return z.signum();
        }
        let (mut sum, mut term, z2) = (0.0f64, z, z * z);
        for n in 0..200 {
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 {
                break;
            }
            term *= -z2 / (n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn grid() -> impl Iterator<Item = f32> {
        (-40_000..=40_000).map(|i| i as f32 * 2.5e-4 * 6.0) // [-6, 6] in 1.5e-4 steps
    }

    #[test]
    fn exp_is_within_3e_7_relative_of_f64() {
        let worst = (-86_990..=87_990)
            .map(|i| i as f32 * 1e-3)
            .map(|x| ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert!(exp(f32::NAN).is_nan());
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37 && exp(1000.0).is_finite());
    }

    #[test]
    fn silu_matches_f64() {
        let worst = grid()
            .chain([-80.0, -30.0, 30.0, 80.0])
            .map(|x| {
                let r = x as f64 / (1.0 + (-(x as f64)).exp());
                (silu(x) as f64 - r).abs() / r.abs().max(1e-3)
            })
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "worst error {worst:e}");
    }

    #[test]
    fn gelu_matches_f64_erf() {
        // absolute error <= 0.5 |x| 1.5e-7 from A&S 7.1.26 plus f32 rounding
        let worst = grid()
            .map(|x| {
                let r = 0.5 * x as f64 * (1.0 + erf64(x as f64 / 2f64.sqrt()));
                (gelu(x) as f64 - r).abs() / (x.abs() as f64).max(1.0)
            })
            .fold(0.0, f64::max);
        assert!(worst < 2e-7, "worst error {worst:e}");
        assert!(gelu(f32::NAN).is_nan());
        assert_eq!(gelu(0.0), 0.0);
    }

    #[test]
    fn the_erf_reference_is_right() {
        // tabulated values (Abramowitz & Stegun table 7.1)
        for (z, e) in [(0.5, 0.520_499_877_8), (1.0, 0.842_700_792_9), (2.0, 0.995_322_265_0), (3.0, 0.999_977_909_5)] {
            assert!((erf64(z) - e).abs() < 1e-9, "erf({z})");
        }
    }

    #[test]
    fn in_place_forms_apply_the_scalar_ones() {
        let xs: Vec<f32> = (0..100_003).map(|i| ((i as f32) * 0.37).sin() * 7.0).collect();
        let (mut a, mut b) = (xs.clone(), xs.clone());
        silu_inplace(&mut a);
        gelu_inplace(&mut b);
        for (i, x) in xs.iter().enumerate() {
            assert_eq!(a[i], silu(*x));
            assert_eq!(b[i], gelu(*x));
        }
    }
}
