//! The engine's front door (`engine::Sae`): the plan it announces, the tiles it reports, cancel, bad input and the
//! budget it is given, checked against independent references (the model's own one-pass forward, the tile lists of
//! `engine::tiled::axis_tiles`, the preflight's estimates, float64 sums).

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use engine::autoencoder::{Job, Progress, Ran, Stage, Tiles, quiet};
use engine::budget::Budget;
use engine::tensor_file::RawTensor;
use engine::tiled::{Tiling, axis_tiles};
use engine::{EngineError, Sae, image_io};
use image::RgbImage;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture_path() -> PathBuf {
    root().join("tests/fixtures/dinosae-setA/sae/model.safetensors")
}

/// The fixture model (the PyTorch reference's tiny random weights) within a generous budget.
fn fixture() -> Sae {
    Sae::load_on(fixture_path(), &engine::cpu(), Budget::bytes(8 << 30)).expect("fixture model")
}

/// The sample photo resized to `w x h`.
fn photo(w: u32, h: u32) -> RgbImage {
    let img = image_io::load_rgb(root().join("assets/samples/chelsea.png")).expect("sample photo");
    image_io::resize_exact(&img, w, h)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn a_small_photo_runs_in_one_pass_exactly_as_the_model_does() {
    let sae = fixture();
    let img = photo(64, 48);
    let mut events = Vec::new();
    let e = sae.encode_image_with(&img, &Job::default(), &mut |p| events.push(p)).expect("encode");
    assert!(matches!(events.as_slice(), [Progress::Plan(Ran::Whole(est))] if est.bytes > 0.0), "{events:?}");
    // the reference: the network's own forward on the same pixels
    let x = image_io::to_tensor(&[&img], &sae.config().pixels, sae.device()).expect("pixels");
    let lat = sae.model().encode(x).expect("model encode");
    let want = RawTensor::from_tensor(lat.patches.clone()).expect("host");
    assert_eq!(e.latent.shape, want.shape);
    assert_eq!(e.latent.shape[2..], [3, 4]);
    assert_eq!(max_abs_diff(&e.latent.data, &want.data), 0.0);
    assert!(e.cls.is_some(), "a one-pass encode keeps the CLS token");
    let rec = sae.decode(&e.latent).expect("decode");
    let want = image_io::from_tensor(sae.model().decode(lat.patches).expect("model decode"), &sae.config().pixels)
        .expect("pixels")
        .remove(0);
    assert_eq!((rec.width, rec.height), (64, 48));
    assert_eq!(max_abs_diff(&rec.data, &want.data), 0.0);
    // reconstruct = encode then decode, with both timings
    let r = sae.reconstruct(&img).expect("reconstruct");
    assert_eq!(max_abs_diff(&r.image.data, &want.data), 0.0);
    assert!(r.encode_secs > 0.0 && r.decode_secs > 0.0);
}

#[test]
fn forced_tiles_report_the_plan_then_every_tile_in_order() {
    let sae = fixture();
    let img = photo(96, 64); // a 4 x 6 grid
    let tiling = Tiling { tile: 2, overlap: 1 };
    let n = axis_tiles(4, 2, 1).len() * axis_tiles(6, 2, 1).len();
    assert!(n > 4, "the test needs several tiles, got {n}");
    let job = Job { tiles: Tiles::Always, tiling, ..Default::default() };
    let mut events = Vec::new();
    let r = sae.reconstruct_with(&img, &job, &mut |p| events.push(p)).expect("tiled reconstruct");
    assert_eq!(events[0], Progress::Plan(Ran::Tiled(None)));
    for (stage, chunk) in [(Stage::Encode, &events[1..1 + n]), (Stage::Decode, &events[1 + n..])] {
        assert_eq!(chunk.len(), n, "{stage:?}: one event per tile");
        for (k, ev) in chunk.iter().enumerate() {
            match ev {
                Progress::Tile(s, t) => assert_eq!((*s, t.done, t.of), (stage, k + 1, n)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(r.ran.is_tiled());
    assert_eq!(r.latent.shape[2..], [4, 6]);
    assert_eq!((r.image.width, r.image.height), (96, 64));
    assert!(r.image.data.iter().all(|v| v.is_finite()));
}

#[test]
fn a_budget_too_small_for_one_pass_goes_to_tiles_and_one_pass_is_refused() {
    let base = fixture();
    let cfg = base.config().clone();
    let (w, h) = (512, 512);
    let tiling = Tiling { tile: 8, overlap: 2 };
    // between what one 128 px tile needs and what the whole image needs (the preflight's own estimates)
    let attention = engine::preflight::Attention::cpu();
    let whole = engine::preflight::encode(&cfg, 1, h, w, attention).bytes;
    let tile = engine::preflight::encode(&cfg, 1, 128, 128, attention).bytes;
    assert!(whole > 2.0 * tile, "whole {whole} vs tile {tile}");
    let sae = base.with_budget(Budget::bytes(((whole + tile) / 2.0) as u64));
    let img = photo(w as u32, h as u32);
    let mut events = Vec::new();
    let job = Job { tiling, ..Default::default() };
    let e = sae.encode_image_with(&img, &job, &mut |p| events.push(p)).expect("tiled by itself");
    match &events[0] {
        Progress::Plan(Ran::Tiled(Some(why))) => assert!(why.contains("over the budget"), "{why}"),
        other => panic!("expected a tiled plan with its reason, got {other:?}"),
    }
    assert_eq!(e.latent.shape[2..], [32, 32]);
    assert!(e.cls.is_none(), "tiles have no CLS token");
    let never = Job { tiles: Tiles::Never, tiling, ..Default::default() };
    match sae.encode_image_with(&img, &never, &mut quiet) {
        Err(EngineError::TooBig { .. }) => {}
        other => panic!("one pass over the budget must be refused, got {:?}", other.map(|e| e.ran)),
    }
}

#[test]
fn a_cancelled_job_stops_with_cancelled_and_bad_inputs_are_refused() {
    let sae = fixture();
    let img = photo(64, 64);
    let job = Job::default();
    job.cancel.store(true, Ordering::Relaxed);
    assert!(matches!(sae.encode_image_with(&img, &job, &mut quiet), Err(EngineError::Cancelled)));
    let z = sae.encode_image(&img).expect("encode").latent;
    assert!(matches!(sae.decode_with(&z, &job, &mut quiet), Err(EngineError::Cancelled)));
    let tiled = Job { tiles: Tiles::Always, ..job.clone() };
    assert!(matches!(sae.reconstruct_with(&img, &tiled, &mut quiet), Err(EngineError::Cancelled)));
    // sides that are not multiples of 16, a latent of another width, a batch where one latent is expected
    assert!(matches!(sae.encode_image(&photo(100, 64)), Err(EngineError::Shape(_))));
    let c = z.shape[1];
    let wrong = RawTensor::zeros(vec![1, c + 1, 4, 4]);
    assert!(matches!(sae.decode(&wrong), Err(EngineError::Shape(_))));
    assert!(matches!(sae.steer(&wrong, &Default::default()), Err(EngineError::Shape(_))));
    let pair = RawTensor::cat_rows(&[&z, &z]).expect("batch of two");
    assert!(matches!(sae.decode(&pair), Err(EngineError::Shape(_))));
    // ... which decode_batch takes, giving each latent's own decode
    let both = sae.decode_batch(&pair, &Job::default()).expect("batch");
    let one = sae.decode(&z).expect("one");
    assert_eq!(both.len(), 2);
    for b in &both {
        assert!(max_abs_diff(&b.data, &one.data) < 1e-5);
    }
}

#[test]
fn maps_are_the_float64_radius_and_cosine_to_the_mean_direction() {
    let sae = fixture();
    let z = sae.encode_image(&photo(80, 48)).expect("encode").latent;
    let m = sae.maps(&z).expect("maps");
    let (c, gh, gw) = (z.shape[1], z.shape[2], z.shape[3]);
    assert_eq!(m.grid, (gh, gw));
    let n = gh * gw;
    let rows: Vec<Vec<f64>> = (0..n).map(|p| (0..c).map(|k| z.data[k * n + p] as f64).collect()).collect();
    let norms: Vec<f64> = rows.iter().map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt()).collect();
    let mut mean = vec![0f64; c];
    for (r, nr) in rows.iter().zip(&norms) {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v / nr;
        }
    }
    let mn = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
    for p in 0..n {
        let want_cos = rows[p].iter().zip(&mean).map(|(a, b)| a * b).sum::<f64>() / (norms[p] * mn);
        assert!((m.magnitude[p] as f64 - norms[p]).abs() < 1e-4 * norms[p].max(1.0), "radius of patch {p}");
        assert!((m.cosine_to_mean[p] as f64 - want_cos).abs() < 1e-5, "cosine of patch {p}");
    }
    assert!(sae.maps(&RawTensor::cat_rows(&[&z, &z]).expect("pair")).is_err(), "maps take one latent");
}

#[test]
fn loading_is_checked_against_the_budget_it_is_given() {
    // the fixture's config describes far more than 64 KiB of parameters: refused before any tensor is built,
    // whatever the environment's budget says
    match Sae::load_on(fixture_path(), &engine::cpu(), Budget::bytes(64 << 10)) {
        // "(set)": the budget given here, not the environment's ("60 % of the available memory")
        Err(EngineError::TooBig { budget, .. }) => assert!(budget.ends_with("(set)"), "{budget}"),
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
    let sae = fixture();
    assert_eq!(sae.budget().bytes, 8 << 30);
    assert_eq!(sae.source(), Some(fixture_path().as_path()));
}
