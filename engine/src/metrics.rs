//! Image quality metrics on RGB images with values in [0, 1]: PSNR and SSIM (Gaussian window 11, sigma 1.5,
//! as Wang et al. 2004 and scikit-image's `gaussian_weights=True`), computed per channel and averaged.

/// An RGB image, HWC, values in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct RgbF32 {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

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
        let (mx, my, sxx, syy, sxy) = (blur(&x, w, h), blur(&y, w, h), blur(&xx, w, h), blur(&yy, w, h), blur(&xy, w, h));
        let n = mx.len();
        let mut s = 0.0;
        for i in 0..n {
            let (vx, vy, cxy) = (sxx[i] - mx[i] * mx[i], syy[i] - my[i] * my[i], sxy[i] - mx[i] * my[i]);
            s += ((2.0 * mx[i] * my[i] + c1) * (2.0 * cxy + c2)) / ((mx[i].powi(2) + my[i].powi(2) + c1) * (vx + vy + c2));
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
