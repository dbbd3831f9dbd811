//! Stage 2's pieces against references computed here in float64: spectral normalisation (power iteration vs the
//! closed-form largest singular value), the hinge losses, DiffAugment's formulas; and the discriminator learning
//! to tell real from fake on a fixed pair of batches.

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Tensor, TensorData};
use engine::train::diffaug::{AugParams, apply};
use engine::train::disc::{Discriminator, hinge_d_loss, hinge_g_loss, power_iteration};

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn power_iteration_finds_the_largest_singular_value() {
    // W (3 in x 2 out, burn layout) with W^T W = [[a, b], [b, c]]: sigma_max^2 = the larger eigenvalue
    let w = [1.0f32, 2.0, -0.5, 0.25, 3.0, -1.0];
    let (mut a, mut b, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..3 {
        let (x, y) = (w[i * 2] as f64, w[i * 2 + 1] as f64);
        a += x * x;
        b += x * y;
        c += y * y;
    }
    let sigma = (((a + c) + ((a - c).powi(2) + 4.0 * b * b).sqrt()) / 2.0).sqrt();
    let mut u = vec![1.0f32, 0.0];
    let mut v = vec![0.0f32; 3];
    for _ in 0..30 {
        (v, u) = power_iteration(&w, 3, 2, &u);
    }
    let est: f64 = (0..3).map(|i| (0..2).map(|o| v[i] as f64 * w[i * 2 + o] as f64 * u[o] as f64).sum::<f64>()).sum();
    assert!((est - sigma).abs() < 1e-5 * sigma, "power iteration {est} vs closed form {sigma}");
}

#[test]
fn hinge_losses_match_their_formulas() {
    let dev = engine::cpu();
    let real = [1.5f32, 0.2, -0.7, 0.9];
    let fake = [-2.0f32, -0.3, 0.4, 1.1];
    let t = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), vec![2, 2]), &dev);
    let d: f32 = hinge_d_loss(t(&real), t(&fake)).into_scalar();
    let g: f32 = hinge_g_loss(t(&fake)).into_scalar();
    let want_d = real.iter().map(|&r| (1.0 - r as f64).max(0.0)).sum::<f64>() / 4.0
        + fake.iter().map(|&f| (1.0 + f as f64).max(0.0)).sum::<f64>() / 4.0;
    let want_g = -fake.iter().map(|&f| f as f64).sum::<f64>() / 4.0;
    assert!((d as f64 - want_d).abs() < 1e-6, "{d} vs {want_d}");
    assert!((g as f64 - want_g).abs() < 1e-6, "{g} vs {want_g}");
}

#[test]
fn diffaugment_follows_its_formulas() {
    let dev = engine::cpu();
    let (b, c, h, w) = (2usize, 3usize, 8usize, 8usize);
    let x: Vec<f32> = (0..b * c * h * w).map(|i| ((i * 37 % 101) as f32) / 100.0).collect();
    let xt = || Tensor::<4>::from_data(TensorData::new(x.clone(), vec![b, c, h, w]), &dev);
    let id = apply(xt(), &[AugParams::identity(), AugParams::identity()]);
    let got: Vec<f32> = id.into_data().try_to_vec::<f32>().expect("data");
    assert!(got.iter().zip(&x).all(|(a, b)| (a - b).abs() < 1e-6), "identity parameters change nothing");
    // sample 0: brightness, saturation, contrast, shift down 2 / left 1, cutout 2x2 at (5, 5); sample 1: identity
    let p = AugParams { brightness: 0.1, saturation: 1.5, contrast: 0.8, shift: (2, -1), cutout: (5, 5, 2) };
    let got: Vec<f32> = apply(xt(), &[p.clone(), AugParams::identity()]).into_data().try_to_vec::<f32>().expect("data");
    let at = |ch: usize, r: usize, col: usize| x[(ch * h + r) * w + col] as f64;
    let mut want = vec![0.0f64; c * h * w];
    // colour on sample 0, float64
    let mut col = vec![0.0f64; c * h * w];
    for r in 0..h {
        for q in 0..w {
            let v: Vec<f64> = (0..c).map(|ch| at(ch, r, q) + p.brightness as f64).collect();
            let m = v.iter().sum::<f64>() / c as f64;
            for ch in 0..c {
                col[(ch * h + r) * w + q] = (v[ch] - m) * p.saturation as f64 + m;
            }
        }
    }
    let m = col.iter().sum::<f64>() / col.len() as f64;
    for v in col.iter_mut() {
        *v = (*v - m) * p.contrast as f64 + m;
    }
    for ch in 0..c {
        for r in 0..h {
            for q in 0..w {
                let (sr, sq) = (r as i64 - p.shift.0, q as i64 - p.shift.1);
                let inside = sr >= 0 && sr < h as i64 && sq >= 0 && sq < w as i64;
                let cut = (5..7).contains(&r) && (5..7).contains(&q);
                want[(ch * h + r) * w + q] =
                    if inside && !cut { col[(ch * h + sr as usize) * w + sq as usize] } else { 0.0 };
            }
        }
    }
    let worst = got[..c * h * w].iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-5, "sample 0 vs the float64 formulas: max |err| {worst}");
    assert!(got[c * h * w..].iter().zip(&x[c * h * w..]).all(|(a, b)| (a - b).abs() < 1e-6), "sample 1 untouched");
}

/// Trained on a fixed real batch (photos) against a fixed fake batch (their blurred, darkened copies), the
/// discriminator's hinge loss falls well below its starting value, and the spectral norm of every head layer
/// stays normalised (the estimate of W / sigma is 1).
#[test]
fn discriminator_learns_to_separate_real_from_fake() {
    let device = engine::cpu().autodiff();
    let teacher = root().join("tests/fixtures/dinosae-setA/dinov3/hf");
    let backbone = engine::checkpoint::load_backbone(&teacher, &device, false).expect("backbone").model.no_grad();
    let mut d =
        Discriminator::new(backbone, 7, None, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], &device).expect("disc");
    let photos = engine::data::PhotoSet::load(&root().join("assets/samples"), 128).expect("photos");
    let imgs: Vec<image::RgbImage> = (0..4).map(|i| photos.center(i % photos.images.len(), 32)).collect();
    let refs: Vec<&image::RgbImage> = imgs.iter().collect();
    // mean 0, std 1: to_tensor gives pixels in [0, 1]
    let unit = engine::model::sae::PixelConfig {
        mean: [0.0; 3],
        std: [1.0; 3],
        output: engine::model::sae::OutputRange::Unit,
    };
    let real = engine::image_io::to_tensor(&refs, &unit, &device).expect("real");
    let blurred: Vec<image::RgbImage> = imgs.iter().map(|i| image::imageops::blur(i, 2.0)).collect();
    let brefs: Vec<&image::RgbImage> = blurred.iter().collect();
    let fake = engine::image_io::to_tensor(&brefs, &unit, &device).expect("fake").mul_scalar(0.7);
    let mut opt = AdamWConfig::new().with_weight_decay(0.0).init();
    let mut losses = Vec::new();
    for _ in 0..40 {
        d.update_spectral_norms().expect("sn");
        let l = hinge_d_loss(d.forward(real.clone()), d.forward(fake.clone()));
        losses.push(l.clone().into_scalar::<f32>());
        let g = GradientsParams::from_grads(l.backward(), &d.heads);
        d.heads = opt.step(2e-3, d.heads.clone(), g);
    }
    let (first, last) = (losses[0], *losses.last().expect("losses"));
    assert!(first > 1.5 && last < 0.5 * first, "hinge D loss {first} -> {last}: {losses:?}");
    // sigma(W) estimated by the running power iteration agrees with the weights' own largest singular value
    // after a few more iterations without updates
    for _ in 0..30 {
        d.update_spectral_norms().expect("sn");
    }
    let sig_running = d.sigmas();
    for _ in 0..100 {
        d.update_spectral_norms().expect("sn");
    }
    let sig_conv = d.sigmas();
    for (a, b) in sig_running.iter().zip(&sig_conv) {
        assert!((a - b).abs() <= 1e-3 * b.abs().max(1e-6), "running sigma {a} vs converged {b}");
    }
}
