//! Image quality metrics on RGB images with values in [0, 1]: PSNR and SSIM (Gaussian window 11, sigma 1.5,
//! as Wang et al. 2004 and scikit-image's `gaussian_weights=True`), computed per channel and averaged.

pub use crate::image_io::RgbF32;

/// Peak signal-to-noise ratio in dB for peak 1.0 (infinite for identical images).
pub fn psnr(a: &RgbF32, b: &RgbF32) -> f64 {
    assert_eq!(a.data.len(), b.data.len(), "psnr: images differ in size");
    let mse: f64 = a.data.iter().zip(&b.data).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.data.len() as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (1.0 / mse).log10() }
}

fn gaussian_kernel() -> [f64; 11] {
    let mut k = [0.0; 11];
    for (i, v) in k.iter_mut().enumerate() {
        let x = i as f64 - 5.0;
        *v = (-x * x / (2.0 * 1.5 * 1.5)).exp();
    }
    let s: f64 = k.iter().sum();
    k.map(|v| v / s)
}

fn blur(img: &[f64], w: usize, h: usize) -> Vec<f64> {
    // 'valid' separable filtering: output (h-10) x (w-10)
    let k = gaussian_kernel();
    let (ow, oh) = (w - 10, h - 10);
    let mut tmp = vec![0.0; h * ow];
    for y in 0..h {
        for x in 0..ow {
            tmp[y * ow + x] = (0..11).map(|i| k[i] * img[y * w + x + i]).sum();
        }
    }
    let mut out = vec![0.0; oh * ow];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = (0..11).map(|i| k[i] * tmp[(y + i) * ow + x]).sum();
        }
    }
    out
}

/// Mean SSIM over channels (data range 1.0). Images smaller than 11x11 return NaN.
pub fn ssim(a: &RgbF32, b: &RgbF32) -> f64 {
    assert_eq!(a.data.len(), b.data.len(), "ssim: images differ in size");
    let (w, h) = (a.width, a.height);
    if w < 11 || h < 11 {
        return f64::NAN;
    }
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let mut total = 0.0;
    for ch in 0..3 {
        let x: Vec<f64> = (0..w * h).map(|i| a.data[i * 3 + ch] as f64).collect();
        let y: Vec<f64> = (0..w * h).map(|i| b.data[i * 3 + ch] as f64).collect();
        let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
        let yy: Vec<f64> = y.iter().map(|v| v * v).collect();
        let xy: Vec<f64> = x.iter().zip(&y).map(|(p, q)| p * q).collect();
        let (mx, my, sxx, syy, sxy) =
            (blur(&x, w, h), blur(&y, w, h), blur(&xx, w, h), blur(&yy, w, h), blur(&xy, w, h));
        let n = mx.len();
        let mut s = 0.0;
        for i in 0..n {
            let (vx, vy, cxy) = (sxx[i] - mx[i] * mx[i], syy[i] - my[i] * my[i], sxy[i] - mx[i] * my[i]);
            s += ((2.0 * mx[i] * my[i] + c1) * (2.0 * cxy + c2))
                / ((mx[i].powi(2) + my[i].powi(2) + c1) * (vx + vy + c2));
        }
        total += s / n as f64;
    }
    total / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: usize, h: usize, f: impl Fn(usize, usize, usize) -> f32) -> RgbF32 {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    data.push(f(x, y, c));
                }
            }
        }
        RgbF32 { width: w, height: h, data }
    }

    #[test]
    fn psnr_of_constant_offset_is_analytic() {
        let a = img(16, 16, |x, y, _| ((x + y) % 7) as f32 / 10.0);
        let b = img(16, 16, |x, y, _| ((x + y) % 7) as f32 / 10.0 + 0.1);
        // mse = 0.01 -> 20 dB
        assert!((psnr(&a, &b) - 20.0).abs() < 1e-4);
        assert!(psnr(&a, &a).is_infinite());
    }

    #[test]
    fn ssim_identity_and_known_structure_loss() {
        let a = img(32, 32, |x, y, c| ((x * 7 + y * 3 + c) % 11) as f32 / 10.0);
        assert!((ssim(&a, &a) - 1.0).abs() < 1e-12);
        // a constant image against a textured one has low SSIM
        let b = img(32, 32, |_, _, _| 0.5);
        assert!(ssim(&a, &b) < 0.1);
        // scaling contrast by 0.5 around the mean lowers SSIM but keeps it positive
        let c = img(32, 32, |x, y, c| 0.25 + 0.5 * ((x * 7 + y * 3 + c) % 11) as f32 / 10.0);
        let s = ssim(&a, &c);
        assert!(s > 0.3 && s < 0.95, "{s}");
    }
}

/// Symmetric eigen-decomposition (cyclic Jacobi) of a row-major n x n matrix: (eigenvalues, eigenvectors as columns).
pub fn sym_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..60 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        let diag: f64 = (0..n).map(|i| a[i * n + i].powi(2)).sum();
        if off <= 1e-22 * diag.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

fn mean_cov(x: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = x.len() / d;
    let mut mu = vec![0.0; d];
    for r in x.chunks(d) {
        for (m, v) in mu.iter_mut().zip(r) {
            *m += v / n as f64;
        }
    }
    let mut cov = vec![0.0; d * d];
    for r in x.chunks(d) {
        for i in 0..d {
            let di = r[i] - mu[i];
            for j in i..d {
                cov[i * d + j] += di * (r[j] - mu[j]);
            }
        }
    }
    for i in 0..d {
        for j in i..d {
            let v = cov[i * d + j] / (n as f64 - 1.0).max(1.0);
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    (mu, cov)
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..n {
                c[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    c
}

/// Frechet distance between Gaussians fitted to two sets of d-dim rows:
/// |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2).
pub fn frechet((d, a): &(usize, Vec<f64>), (_, b): &(usize, Vec<f64>)) -> f64 {
    let d = *d;
    if d == 0 || a.len() < 2 * d || b.len() < 2 * d {
        return f64::NAN;
    }
    let (m1, s1) = mean_cov(a, d);
    let (m2, s2) = mean_cov(b, d);
    let (e1, v1) = sym_eigen(&s1, d);
    // S1^1/2 = V diag(sqrt(e)) V^T
    let mut r = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            r[i * d + j] = (0..d).map(|k| v1[i * d + k] * e1[k].max(0.0).sqrt() * v1[j * d + k]).sum();
        }
    }
    let m = matmul(&matmul(&r, &s2, d), &r, d);
    let (em, _) = sym_eigen(&m, d);
    let tr_sqrt: f64 = em.iter().map(|v| v.max(0.0).sqrt()).sum();
    let dm: f64 = m1.iter().zip(&m2).map(|(x, y)| (x - y).powi(2)).sum();
    let tr1: f64 = (0..d).map(|i| s1[i * d + i]).sum();
    let tr2: f64 = (0..d).map(|i| s2[i * d + i]).sum();
    (dm + tr1 + tr2 - 2.0 * tr_sqrt).max(0.0)
}

#[cfg(test)]
mod frechet_tests {
    use super::*;

    #[test]
    fn frechet_of_shifted_gaussians_is_analytic() {
        // Two samples of the same diagonal covariance, means 3 apart along one axis: FD = 9 (+ sampling noise 0 here:
        // the second set is the first set shifted, so the covariances are identical).
        let d = 4;
        let mut a = Vec::new();
        let mut s = 12345u64;
        for _ in 0..400 {
            for k in 0..d {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                a.push(((s >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * (k + 1) as f64);
            }
        }
        let b: Vec<f64> =
            a.chunks(d).flat_map(|r| r.iter().enumerate().map(|(k, v)| if k == 2 { v + 3.0 } else { *v })).collect();
        let fd = frechet(&(d, a.clone()), &(d, b));
        assert!((fd - 9.0).abs() < 1e-6, "{fd}");
        assert!(frechet(&(d, a.clone()), &(d, a)).abs() < 1e-6);
    }

    #[test]
    fn jacobi_recovers_eigenvalues() {
        let m = [4.0, 1.0, 0.0, 1.0, 3.0, 0.0, 0.0, 0.0, 2.0];
        let (mut e, _) = sym_eigen(&m, 3);
        e.sort_by(f64::total_cmp);
        let want = [2.0, (7.0 - 5f64.sqrt()) / 2.0, (7.0 + 5f64.sqrt()) / 2.0];
        let mut w = want.to_vec();
        w.sort_by(f64::total_cmp);
        for (a, b) in e.iter().zip(&w) {
            assert!((a - b).abs() < 1e-10);
        }
    }
}
