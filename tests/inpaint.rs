//! Spherical inpainting (`engine::generate::inpaint`, `engine::sampler::sample_sphere_inpaint`) on the embedded
//! default model and its generator: what it promises, checked against independent references: the encoded latent
//! (unselected patches bit-identical), the plain reconstruction (pixels two patches or more away from the region
//! within 35 dB), the plain spherical sampler (a mask of all ones is ordinary sampling) and the data end of the
//! training path (a mask of zeros returns the image's own directions).

use burn::tensor::{Tensor, TensorData};
use engine::Sae;
use engine::generate::{DitBundle, InpaintSpec, inpaint, load_dit, sphere_config};
use engine::image_io;
use engine::sampler::{sample_sphere, sample_sphere_inpaint};
use engine::tensor_file::RawTensor;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn setup() -> (Sae, DitBundle) {
    let sae = Sae::load_default().expect("the embedded default model");
    let dit = engine::dirs::default_dit_dir().expect("the default model ships its generator");
    (sae, load_dit(&dit, &engine::cpu()).expect("generator"))
}

/// The sample photo at 256 x 256 (a 16 x 16 grid) and its latent.
fn photo_latent(sae: &Sae) -> (image::RgbImage, RawTensor) {
    let img = image_io::load_rgb(root().join("assets/samples/chelsea.png")).expect("photo");
    let img = image_io::resize_exact(&img, 256, 256);
    let z = sae.encode_image(&img).expect("encode").latent;
    (img, z)
}

fn psnr_where(a: &image_io::RgbF32, b: &image_io::RgbF32, keep: impl Fn(usize, usize) -> bool) -> (f64, usize) {
    let (mut se, mut n) = (0f64, 0usize);
    for y in 0..a.height {
        for x in 0..a.width {
            if keep(x, y) {
                for k in 0..3 {
                    let i = (y * a.width + x) * 3 + k;
                    se += ((a.data[i] - b.data[i]) as f64).powi(2);
                    n += 1;
                }
            }
        }
    }
    (10.0 * (1.0 / (se / n as f64)).log10(), n / 3)
}

#[test]
fn inpainting_keeps_the_rest_changes_the_region_and_repeats_with_its_seed() {
    let (sae, b) = setup();
    let (_, z) = photo_latent(&sae);
    let (gh, gw) = (z.shape[2], z.shape[3]);
    assert_eq!((gh, gw), (16, 16));
    // a 3 x 3 region at rows 6..9, columns 6..9
    let sel: Vec<usize> = (6..9).flat_map(|r| (6..9).map(move |c| r * 16 + c)).collect();
    let spec = InpaintSpec { patches: sel.clone(), class: Some(1), seed: 11, steps: 8, ..Default::default() };
    let out = inpaint(&b, &z, &spec, &mut |_, _| true).expect("inpaint");
    assert!(!out.cancelled && out.steps_done == 8);
    let (r0, c0, wh, ww) = out.window;
    assert_eq!((wh, ww), (b.meta.grid[0], b.meta.grid[1]));
    assert!(sel.iter().all(|p| (r0..r0 + wh).contains(&(p / 16)) && (c0..c0 + ww).contains(&(p % 16))));
    let (c, hw) = (z.shape[1], gh * gw);
    let mut turned = 0.0;
    for q in 0..hw {
        let col = |v: &RawTensor| (0..c).map(|k| v.data[k * hw + q] as f64).collect::<Vec<f64>>();
        let (old, new) = (col(&z), col(&out.latent));
        if sel.contains(&q) {
            let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((n(&new) - out.radius).abs() < 1e-3 * out.radius, "new patches get the window's radius");
            turned += (old.iter().zip(&new).map(|(x, y)| x * y).sum::<f64>() / (n(&old) * n(&new))).acos();
        } else {
            assert_eq!(old, new, "patch {q} is not selected: bit-identical to the encoded latent");
        }
    }
    let mean_deg = (turned / sel.len() as f64).to_degrees();
    assert!(mean_deg > 10.0, "the region hardly changed: {mean_deg:.1} degrees on average");
    // far from the region (two patches or more: outside pixels 64..176 in both directions) the decoded image is
    // the plain reconstruction
    let plain = sae.decode(&z).expect("decode plain");
    let edited = sae.decode(&out.latent).expect("decode inpainted");
    let far = |x: usize, y: usize| !((64..176).contains(&x) && (64..176).contains(&y));
    let (far_db, n_far) = psnr_where(&plain, &edited, far);
    assert!(n_far > 40_000);
    assert!(far_db >= 35.0, "pixels two patches away moved: {far_db:.2} dB");
    let (near_db, _) = psnr_where(&plain, &edited, |x, y| (96..144).contains(&x) && (96..144).contains(&y));
    assert!(near_db < far_db - 5.0, "the region's pixels must differ: {near_db:.2} dB inside, {far_db:.2} outside");
    eprintln!("measured: far {far_db:.2} dB, region {near_db:.2} dB, mean turn {mean_deg:.1} degrees");
    // the same seed reproduces; another seed does not
    let again = inpaint(&b, &z, &spec, &mut |_, _| true).expect("again");
    assert_eq!(again.latent.data, out.latent.data);
    let other = inpaint(&b, &z, &InpaintSpec { seed: 12, ..spec.clone() }, &mut |_, _| true).expect("seed 12");
    assert_ne!(other.latent.data, out.latent.data);
    // stopping after two steps ends with what it has
    let stopped = inpaint(&b, &z, &spec, &mut |i, _| i.step < 2).expect("stopped");
    assert!(stopped.cancelled && stopped.steps_done == 2);
}

#[test]
fn a_full_mask_is_plain_sampling_and_an_empty_mask_is_the_image() {
    let (sae, b) = setup();
    let (_, z) = photo_latent(&sae);
    let [gh, gw] = b.meta.grid;
    let c = z.shape[1];
    // the window at the top left
    let mut win = vec![0f32; c * gh * gw];
    for ch in 0..c {
        for y in 0..gh {
            for x in 0..gw {
                win[(ch * gh + y) * gw + x] = z.data[(ch * 16 + y) * 16 + x];
            }
        }
    }
    let device = engine::cpu();
    let known = Tensor::<4>::from_data(TensorData::new(win.clone(), vec![1, c, gh, gw]), &device);
    let mask = |v: f32| Tensor::<4>::from_data(TensorData::new(vec![v; gh * gw], vec![1, 1, gh, gw]), &device);
    let spec = engine::generate::SampleSpec { class: 2, count: 1, seed: 9, steps: 5, ..Default::default() };
    let cfg = engine::sampler::SphereSamplerConfig { final_radius: None, ..sphere_config(&b, &spec) };
    let all = sample_sphere_inpaint(&b.model, &known, &mask(1.0), &[2], &cfg, &mut |_, _| true);
    let plain = sample_sphere(&b.model, &[2], [c, gh, gw], &cfg, &device, &mut |_, _| true);
    let (a, p) = (RawTensor::from_tensor(all.z).expect("a"), RawTensor::from_tensor(plain.z).expect("p"));
    let worst = a.data.iter().zip(&p.data).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(worst < 1e-5, "a mask of ones must be the plain sampler: {worst:.2e}");
    // a mask of zeros: every patch is held to its path, which ends at its own direction (radius sqrt(C))
    let none = sample_sphere_inpaint(&b.model, &known, &mask(0.0), &[2], &cfg, &mut |_, _| true);
    let got = RawTensor::from_tensor(none.z).expect("none");
    let r = (c as f64).sqrt();
    let hw = gh * gw;
    for q in 0..hw {
        let v: Vec<f64> = (0..c).map(|k| win[k * hw + q] as f64).collect();
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        for (k, x) in v.iter().enumerate() {
            let want = x / n * r;
            assert!((got.data[k * hw + q] as f64 - want).abs() < 1e-4, "patch {q} channel {k}");
        }
    }
}

#[test]
fn bad_requests_are_refused_with_reasons() {
    let (sae, b) = setup();
    let (_, z) = photo_latent(&sae);
    let go = |spec: InpaintSpec, z: &RawTensor| inpaint(&b, z, &spec, &mut |_, _| true).err().map(|e| e.to_string());
    let base = InpaintSpec { patches: vec![0], steps: 2, ..Default::default() };
    let e = go(InpaintSpec { patches: vec![], ..base.clone() }, &z).expect("empty");
    assert!(e.contains("select"), "{e}");
    let e = go(InpaintSpec { patches: vec![256], ..base.clone() }, &z).expect("outside");
    assert!(e.contains("outside"), "{e}");
    let e = go(InpaintSpec { patches: vec![0, 15 * 16], ..base.clone() }, &z).expect("too tall");
    assert!(e.contains("window"), "{e}");
    let e = go(InpaintSpec { class: Some(10_000), ..base.clone() }, &z).expect("class");
    assert!(e.contains("class"), "{e}");
    let small = RawTensor::zeros(vec![1, z.shape[1], 4, 4]);
    let e = go(base.clone(), &small).expect("small");
    assert!(e.contains("at least"), "{e}");
    let narrow = RawTensor::zeros(vec![1, 8, 16, 16]);
    assert!(go(base.clone(), &narrow).is_some());
    let mut nan = z.clone();
    nan.data[5] = f32::NAN;
    assert!(go(base, &nan).is_some());
}
