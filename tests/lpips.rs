//! LPIPS-VGG-like (engine/src/lpips.rs) against a float64 PyTorch reference written from the same weights
//! (scripts/dev/make_lpips_reference.py, cross-checked there against the ONNX graph in onnxruntime):
//! per-layer distances and totals for 4 pairs x 2 sizes (one non-square), and tap feature maps.
//! Tolerances (f32 engine vs f64 reference): distances 1e-5 absolute + 1e-4 relative; feature maps
//! 1e-4 * max|ref|. Weights: scripts/fetch-lpips.sh (run by scripts/test.sh).

use std::path::PathBuf;

use burn::tensor::Tensor;
use engine::lpips::LpipsVgg;
use engine::tensor_file::{read_safetensors, read_safetensors_f64};

fn reference() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/lpips/reference.safetensors")
}

fn model() -> LpipsVgg {
    LpipsVgg::load(&engine::lpips::default_dir(), &engine::cpu())
        .expect("LPIPS-VGG-like weights (bash scripts/fetch-lpips.sh)")
}

#[test]
fn distances_and_features_match_the_float64_reference() {
    let m = model();
    let device = engine::cpu();
    let map = read_safetensors(reference()).expect("fixture");
    let input = |k: &str| {
        map.get(&format!("input.{k}")).unwrap_or_else(|| panic!("input.{k}")).to_tensor::<4>(&device).expect("tensor")
    };
    let pairs = [
        ("a", "chelsea", "chelsea_blur3"),
        ("b", "chelsea", "coffee"),
        ("c", "chelsea", "chelsea"),
        ("d", "noise0", "noise1"),
    ];
    let mut totals = Vec::new();
    for size in ["64x64", "48x80"] {
        for (p, x0, x1) in pairs {
            let got = m.layers(input(&format!("{size}.{x0}")), input(&format!("{size}.{x1}"))).expect("layers");
            let got: Vec<f32> = got.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
            let (_, want) = read_safetensors_f64(reference(), &format!("dist.{size}.{p}.layers")).expect("layers ref");
            let (_, total) = read_safetensors_f64(reference(), &format!("dist.{size}.{p}.total")).expect("total ref");
            for (l, (g, w)) in got.iter().zip(&want).enumerate() {
                let err = (*g as f64 - w).abs();
                assert!(err <= 1e-5 + 1e-4 * w.abs(), "{size} pair {p} layer {l}: {g} vs {w} (err {err:e})");
            }
            let sum: f64 = got.iter().map(|v| *v as f64).sum();
            assert!((sum - total[0]).abs() <= 1e-5 + 1e-4 * total[0], "{size} pair {p}: total {sum} vs {}", total[0]);
            if p == "c" {
                assert_eq!(sum, 0.0, "an image is at distance 0 from itself");
            }
            totals.push((format!("{size}.{p}"), sum));
        }
    }
    // feature maps: the first tap (64 x 64) and the last (4x4 and, non-square, 3x5)
    for (size, tap, idx) in [("64x64", "relu1_2", 0), ("64x64", "relu5_3", 4), ("48x80", "relu5_3", 4)] {
        let taps = m.taps(input(&format!("{size}.chelsea")));
        let got: Vec<f32> = taps[idx].clone().into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
        let r = map.get(&format!("feat.{size}.chelsea.{tap}")).expect("feature ref");
        assert_eq!(taps[idx].dims().to_vec(), r.shape, "{size} {tap} shape");
        let scale = r.data.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let err = got.iter().zip(&r.data).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-4 * scale, "{size} {tap}: max err {err} (max |ref| {scale})");
    }
    eprintln!("LPIPS-VGG-like totals: {totals:?}");
}

#[test]
fn orders_degradations_and_refuses_bad_shapes() {
    let m = model();
    let device = engine::cpu();
    let img = image::open(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/samples/chelsea.png"))
        .expect("sample")
        .to_rgb8();
    let img = image::imageops::crop_imm(&img, 0, 0, 96, 96).to_image();
    let base = engine::image_io::rgb8_to_f32(&img);
    let blur = |r: f32| engine::image_io::rgb8_to_f32(&image::imageops::blur(&img, r));
    let d1 = m.distance_rgb(&base, &blur(0.8), &device).expect("d1");
    let d2 = m.distance_rgb(&base, &blur(2.5), &device).expect("d2");
    assert!(0.0 < d1 && d1 < d2, "more blur, larger distance: {d1} {d2}");
    let a = Tensor::<4>::zeros([1, 3, 32, 32], &device);
    assert!(m.layers(a.clone(), Tensor::zeros([1, 3, 32, 48], &device)).is_err(), "size mismatch refused");
    assert!(
        m.layers(Tensor::zeros([1, 3, 8, 8], &device), Tensor::zeros([1, 3, 8, 8], &device)).is_err(),
        "too small refused"
    );
    let missing = std::env::temp_dir().join("dino-sae-no-lpips-here");
    let e = LpipsVgg::load(&missing, &device).expect_err("missing weights refused");
    assert!(e.to_string().contains("fetch-lpips.sh"), "{e}");
}
