//! The Studio driven like a user, by labels (egui_kittest): open an image and see its reconstruction and PSNR,
//! click a patch and get a cosine map, drag a steering slider and get a changed decode, export a PNG, and a
//! corrupt file or a wrong checkpoint shows an error and keeps what the user had.
//! Model: the fixture DINO-SAE (tiny random weights, fast on CPU). Panel snapshots go to docs/snapshots/.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dino_sae_studio::app::{StartOptions, Studio, Tab};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn wait_for(h: &mut Harness<'_, Option<Studio>>, what: &str, cond: impl Fn(&Studio) -> bool) {
    let t = Instant::now();
    loop {
        h.step();
        if h.state().as_ref().is_some_and(&cond) {
            h.run_steps(2);
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn snapshot(h: &mut Harness<'_, Option<Studio>>, name: &str) {
    match h.render() {
        Ok(img) => {
            let dir = root().join("docs/snapshots");
            let _ = std::fs::create_dir_all(&dir);
            img.save(dir.join(format!("{name}.png"))).expect("save snapshot");
        }
        Err(e) => panic!("rendering through wgpu failed (install mesa-vulkan-drivers: scripts/setup.sh --gui): {e}"),
    }
}

fn click_patch(h: &mut Harness<'_, Option<Studio>>, fx: f32, fy: f32) {
    let r = h.state().as_ref().and_then(|s| s.last_image_rect).expect("image drawn");
    let pos = r.min + egui::vec2(r.width() * fx, r.height() * fy);
    h.hover_at(pos);
    h.step();
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton { pos, button: egui::PointerButton::Primary, pressed, modifiers: Default::default() });
        h.step();
    }
}

fn fixture_model() -> PathBuf {
    root().join("tests/fixtures/dinosae-setA/sae/model.safetensors")
}

/// The Studio on the fixture model (CPU backend) with chelsea.png opened, in a 1360x1000 harness.
fn studio() -> Harness<'static, Option<Studio>> {
    let opts = StartOptions {
        model: Some(fixture_model()),
        image: Some(root().join("assets/samples/chelsea.png")),
        random_preset: None,
        tab: None,
        backend: Some("cpu".into()),
    };
    Harness::builder().with_size(egui::vec2(1360.0, 1000.0)).build_ui_state(
        move |ui, state: &mut Option<Studio>| {
            state.get_or_insert_with(|| Studio::new(ui.ctx().clone(), opts.clone())).show(ui);
        },
        None,
    )
}

#[test]
fn every_panel_by_its_labels() {
    let mut h = studio();
    // Compare: the reconstruction and its PSNR
    wait_for(&mut h, "reconstruction", |s| s.current.is_some());
    assert!(h.query_by_label_contains("PSNR").is_some(), "PSNR label shown");
    assert!(h.query_by_label("Reconstruction").is_some());
    // LPIPS-VGG-like arrives as its own job; the value is the engine's metric on the shown pair (8-bit rounding)
    wait_for(&mut h, "LPIPS-VGG-like", |s| s.current.as_ref().is_some_and(|c| c.lpips.is_some()));
    let (input, recon, shown) = {
        let c = h.state().as_ref().and_then(|s| s.current.as_ref()).expect("c");
        (c.input.clone(), c.recon.clone(), c.lpips.as_ref().expect("lpips").0)
    };
    let lp = engine::lpips::LpipsVgg::load(&engine::lpips::default_dir(), &engine::cpu()).expect("weights");
    let want = lp.distance_rgb(&engine::image_io::rgb8_to_f32(&input), &engine::image_io::rgb8_to_f32(&recon), &engine::cpu()).expect("d");
    assert!((shown - want).abs() < 2e-3, "shown {shown} vs {want}");
    assert!(h.query_by_label_contains(&format!("LPIPS-VGG-like {shown:.4}")).is_some(), "the score is on screen");
    // swipe divider and hold-Space flicker
    for n in h.query_all_by_label_contains("swipe (original on the left)") {
        n.set_value_accesskit(0.5);
    }
    h.run_steps(2);
    assert_eq!(h.state().as_ref().map(|s| s.swipe), Some(0.5));
    snapshot(&mut h, "compare");
    // a second model side by side, and the teacher for per-patch student-vs-teacher cosines
    {
        let app = h.state_mut().as_mut().expect("app");
        app.model_path = fixture_model().display().to_string();
        app.teacher_path = root().join("tests/fixtures/dinosae-setA/dinov3/hf").display().to_string();
    }
    h.get_by_label("Add model to compare").click();
    wait_for(&mut h, "compare model", |s| s.current.as_ref().is_some_and(|c| c.others.len() == 1));
    assert!(h.query_by_label_contains("model.safetensors: PSNR").is_some(), "the second reconstruction is labelled");
    h.get_by_label("Load teacher").click();
    wait_for(&mut h, "teacher cosine", |s| s.current.as_ref().is_some_and(|c| c.teacher_cosine.is_some()));
    let n = h.state().as_ref().and_then(|s| s.current.as_ref().map(|c| (c.teacher_cosine.as_ref().map(Vec::len), c.grid))).expect("c");
    assert_eq!(n.0, Some(n.1 .0 * n.1 .1), "one cosine per patch");
    // synchronised zoom: 1:1 zooms all three views, Fit resets
    h.get_by_label("1:1").click();
    h.run_steps(2);
    assert!(h.state().as_ref().is_some_and(|s| s.zoom > 1.0), "1:1 zooms in on a downscaled view");
    h.get_by_label("Fit").click();
    h.run_steps(2);
    assert_eq!(h.state().as_ref().map(|s| s.zoom), Some(1.0));
    // settings survive a round trip and tolerate missing fields
    let st = h.state().as_ref().expect("app").settings();
    let json = serde_json::to_string(&st).expect("json");
    let back: dino_sae_studio::app::Settings = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, st);
    let partial: dino_sae_studio::app::Settings = serde_json::from_str(r#"{"opacity":0.25}"#).expect("partial");
    assert_eq!(partial.opacity, 0.25);
    assert_eq!(partial.fit, "Crop");
    h.key_down(egui::Key::Space);
    h.run_steps(2);
    assert!(h.query_by_label("Original (Space held)").is_some(), "Space flickers to the original");
    h.key_up(egui::Key::Space);
    h.run_steps(2);
    assert!(h.query_by_label("Reconstruction").is_some());

    // Inspect: click a patch -> cosine map
    h.get_by_label("Inspect").click();
    h.run_steps(3);
    assert_eq!(h.state().as_ref().map(|s| s.tab), Some(Tab::Inspect));
    click_patch(&mut h, 0.5, 0.5);
    wait_for(&mut h, "cosine map", |s| s.current.as_ref().is_some_and(|c| c.cosine.is_some()));
    assert!(h.query_by_label_contains("cosine map of patch").is_some());
    let (patch, values) = h.state().as_ref().and_then(|s| s.current.as_ref()?.cosine.clone()).expect("cosine");
    assert!((values[patch] - 1.0).abs() < 1e-4, "the clicked patch is most similar to itself");
    snapshot(&mut h, "inspect");

    // Steer: drag the rotation slider -> a changed decode
    h.get_by_label("Steer").click();
    h.run_steps(3);
    // box selection: drag over the original from 10% to 50% of its width and height
    let r = h.state().as_ref().and_then(|s| s.last_image_rect).expect("image drawn");
    let (gh, gw) = h.state().as_ref().and_then(|s| s.current.as_ref().map(|c| c.grid)).expect("grid");
    let a = r.min + egui::vec2(r.width() * 0.1, r.height() * 0.1);
    let b = r.min + egui::vec2(r.width() * 0.5, r.height() * 0.5);
    h.hover_at(a);
    h.step();
    h.event(egui::Event::PointerButton { pos: a, button: egui::PointerButton::Primary, pressed: true, modifiers: Default::default() });
    h.step();
    for k in 1..=8 {
        h.hover_at(a + (b - a) * (k as f32 / 8.0));
        h.step();
    }
    h.event(egui::Event::PointerButton { pos: b, button: egui::PointerButton::Primary, pressed: false, modifiers: Default::default() });
    h.run_steps(2);
    let expect = |n: usize, lo: f32, hi: f32| (0..n).filter(|&i| { let c = (i as f32 + 0.5) / n as f32; c >= lo && c <= hi }).count();
    let want = expect(gh, 0.1, 0.5) * expect(gw, 0.1, 0.5);
    let got = h.state().as_ref().map(|s| s.selection.len()).unwrap_or(0);
    assert_eq!(got, want, "box selects the patches whose centres it covers");
    h.get_by_label("All patches").click();
    h.run_steps(2);
    assert!(h.state().as_ref().is_some_and(|s| s.selection.is_empty()));
    // brush: Shift+drag along the top row of patches paints the patches under the pointer
    let y = r.min.y + r.height() * (0.5 / gh as f32);
    let p0 = egui::pos2(r.min.x + r.width() * (0.5 / gw as f32), y);
    let p1 = egui::pos2(r.min.x + r.width() * (5.5 / gw as f32), y);
    let shift = egui::Modifiers::SHIFT;
    h.hover_at(p0);
    h.step();
    h.event_modifiers(egui::Event::PointerButton { pos: p0, button: egui::PointerButton::Primary, pressed: true, modifiers: shift }, shift);
    h.step();
    for k in 0..=20 {
        let p = p0 + (p1 - p0) * (k as f32 / 20.0);
        h.event_modifiers(egui::Event::PointerMoved(p), shift);
        h.step();
    }
    h.event_modifiers(egui::Event::PointerButton { pos: p1, button: egui::PointerButton::Primary, pressed: false, modifiers: shift }, shift);
    h.run_steps(2);
    let mut sel = h.state().as_ref().map(|s| s.selection.clone()).unwrap_or_default();
    sel.sort();
    assert!(sel.len() >= 3 && sel.iter().all(|&p| p < gw), "brush painted top-row patches: {sel:?}");
    h.get_by_label("All patches").click();
    h.run_steps(2);
    // the slider and its text label both carry the name; the value action reaches the slider
    for n in h.query_all_by_label_contains("rotate (degrees)") {
        n.set_value_accesskit(60.0);
    }
    h.run_steps(2);
    wait_for(&mut h, "steered decode", |s| s.current.as_ref().is_some_and(|c| c.steered.is_some()));
    let (steered, recon) = {
        let c = h.state().as_ref().and_then(|s| s.current.as_ref()).expect("current");
        (c.steered.as_ref().expect("steered").0.clone(), c.recon.clone())
    };
    assert_ne!(steered, recon, "rotating every patch by 60 degrees changes the decode");
    assert!(h.query_by_label_contains("Steered decode: PSNR").is_some());
    snapshot(&mut h, "steer");
    // undo brings the edit back to zero rotation
    h.get_by_label("Undo").click();
    h.run_steps(2);
    assert_eq!(h.state().as_ref().map(|s| s.edit.angle_deg), Some(0.0));
    // steer towards the first principal axis of the patch directions
    h.get_by_label("PCA 1+").click();
    for n in h.query_all_by_label_contains("rotate (degrees)") {
        n.set_value_accesskit(30.0);
    }
    h.run_steps(2);
    wait_for(&mut h, "PCA steer", |s| {
        matches!(&s.edit.target, engine::steer::SteerTarget::Direction(d) if d.len() == 64) && s.edit.angle_deg == 30.0 && !s.busy
    });

    // Export a PNG with its parameters
    let out = std::env::temp_dir().join(format!("dino-sae-ui-{}.png", std::process::id()));
    h.state_mut().as_mut().expect("app").export_path = out.display().to_string();
    h.get_by_label("Export PNG").click();
    h.run_steps(2);
    let bytes = std::fs::read(&out).expect("exported file");
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("Steer") && text.contains("angle_deg"), "parameters are in the PNG text chunks");
    assert!(engine::image_io::decode_rgb(&bytes).is_ok());

    // Sample: load a generator trained (here, for a few steps) on this model's latents, sample with previews,
    // then start again and cancel: the last state is kept and shown.
    let run = std::env::temp_dir().join(format!("dino-sae-ui-dit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    let cfg = engine::generate::DitRunConfig {
        steps: 10,
        batch: 8,
        checkpoint_every: 10,
        log_every: 5,
        cache: engine::generate::CacheSpec { crop: 32, crops_per_photo: 2, min_crop_frac: 0.5, seed: 1 },
        ..Default::default()
    };
    engine::generate::train_dit_run(
        &fixture_model(),
        &root().join("assets/samples"),
        &run,
        &cfg,
        &mut |_| true,
    )
    .expect("train a tiny generator");
    h.get_by_label("Sample").click();
    h.run_steps(2);
    h.state_mut().as_mut().expect("app").sample.dit_path = run.join("final").display().to_string();
    h.get_by_label("Load generator").click();
    wait_for(&mut h, "generator", |s| !s.sample.classes.is_empty());
    assert!(h.query_by_label("class").is_some(), "class picker shown");
    h.state_mut().as_mut().expect("app").sample.steps = 20;
    h.get_by_label("Start sampling").click();
    wait_for(&mut h, "samples", |s| s.sample.result.is_some() && !s.sample.running);
    assert!(h.query_by_label_contains("Samples: 20 steps").is_some());
    assert!(h.state().as_ref().is_some_and(|s| s.sample.preview.is_some()), "previews arrived during sampling");
    snapshot(&mut h, "sample");
    h.state_mut().as_mut().expect("app").sample.steps = 100;
    h.get_by_label("Start sampling").click();
    wait_for(&mut h, "first preview", |s| s.sample.running && s.sample.progress.is_some());
    h.get_by_label("Cancel sampling").click();
    wait_for(&mut h, "cancelled samples", |s| !s.sample.running && s.sample.result.as_ref().is_some_and(|r| r.1));
    assert!(h.query_by_label_contains("Cancelled after").is_some(), "the last state is kept");
    // slerp walk between two seeds: playable frames, exported as PNGs
    {
        let app = h.state_mut().as_mut().expect("app");
        app.sample.steps = 10;
        app.sample.walk_frames = 4;
        app.sample.seed_b = 5;
        app.sample.frames_dir = run.join("frames").display().to_string();
    }
    h.get_by_label("Walk").click();
    wait_for(&mut h, "walk", |s| !s.sample.walk.is_empty() && !s.sample.running);
    let (first, last, n) = {
        let w = &h.state().as_ref().expect("app").sample.walk;
        (w[0].clone(), w[w.len() - 1].clone(), w.len())
    };
    assert_eq!(n, 5, "4 intervals give 5 frames");
    assert_ne!(first, last, "two different seeds give different endpoints");
    h.get_by_label("Play").click();
    h.run_steps(2);
    h.get_by_label("Export frames").click();
    h.run_steps(2);
    for i in 0..5 {
        assert!(run.join(format!("frames/frame_{i:03}.png")).exists(), "frame {i} exported ({:?}, saved {:?})", h.state().as_ref().and_then(|s| s.error.clone()), h.state().as_ref().map(|s| s.sample.frames_saved));
    }
    // Steer towards the mean direction of a generator class
    h.get_by_label("Steer").click();
    h.run_steps(2);
    h.get_by_label_contains("Target: class mean of").click();
    wait_for(&mut h, "class mean", |s| s.class_mean.as_ref().is_some_and(|(_, d)| d.len() == 64) && !s.busy);
    assert!(h.state().as_ref().is_some_and(|s| matches!(&s.edit.target, engine::steer::SteerTarget::Direction(d) if d.len() == 64)));
    let _ = std::fs::remove_dir_all(&run);

    // Bad inputs keep everything: a corrupt image, then a wrong checkpoint
    let psnr_before = h.state().as_ref().and_then(|s| s.current.as_ref().map(|c| c.psnr));
    h.state_mut().as_mut().expect("app").open_bytes(b"not an image at all");
    h.run_steps(2);
    assert!(h.query_by_label_contains("error:").is_some(), "the error is shown");
    let bad = root().join("tests/fixtures/dinosae-setA/dinov3/hf/model.safetensors");
    h.state_mut().as_mut().expect("app").model_path = bad.display().to_string();
    h.get_by_label("Load model").click();
    wait_for(&mut h, "load failure", |s| !s.busy && s.error.as_deref().is_some_and(|e| e.contains("not a DINO-SAE")));
    let s = h.state().as_ref().expect("app");
    assert_eq!(s.current.as_ref().map(|c| c.psnr), psnr_before, "the reconstruction is kept");
    assert!(s.model.as_ref().is_some_and(|m| m.name.contains("sae")), "the previous model is kept");
}

/// Cosine of two vectors in f64.
fn cos(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    d / (n(a) * n(b))
}

#[test]
fn histogram_pinned_patch_of_another_image_undoer_and_image_walk() {
    let model = fixture_model();
    let mut h = studio();
    wait_for(&mut h, "reconstruction", |s| s.current.is_some());
    assert!(h.query_by_label_contains("backend: CPU (burn Flex").is_some(), "the status bar names the engine's backend");

    // Inspect: the histogram of |z| (egui_plot) with its summary
    h.get_by_label("Inspect").click();
    h.run_steps(3);
    assert!(h.query_by_label("Histogram of |z|").is_some());
    let n = h.state().as_ref().and_then(|s| s.current.as_ref().map(|c| c.magnitude.len())).expect("c");
    assert!(h.query_by_label_contains(&format!("{n} patches, mean |z|")).is_some());
    // the colour bar names its ends: the smallest and largest |z| of this image
    let (lo, hi) = h.state().as_ref().and_then(|s| s.current.as_ref()).map(|c| c.magnitude.iter().fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)))).expect("c");
    assert!(h.query_by_label(&format!("colour scale {lo:.2}")).is_some(), "colour bar low end");
    assert!(h.query_by_label_contains(&format!("{hi:.2}  (mid")).is_some(), "colour bar high end");

    // Steer: pin patch 3 of this image as the target
    h.get_by_label("Steer").click();
    h.run_steps(3);
    h.get_by_label("patch").click();
    h.run_steps(2);
    h.state_mut().as_mut().expect("app").target_patch = 3;
    h.get_by_label("Pin as target").click();
    wait_for(&mut h, "pinned patch", |s| s.pinned.is_some() && !s.busy);
    let pinned = h.state().as_ref().and_then(|s| s.pinned.clone()).expect("pinned").1;
    // reference: the engine's own encoding of the fitted input, patch 3, straight from the model
    let input = h.state().as_ref().and_then(|s| s.current.as_ref().map(|c| c.input.clone())).expect("input");
    let device = engine::cpu();
    let m = engine::checkpoint::load_sae(&model, &device, false).expect("model").model;
    let x = engine::image_io::to_tensor(&[&input], &m.cfg.pixels, &device).expect("tensor");
    let z = engine::raw::RawTensor::from_tensor(m.encode(x).expect("encode").patches).expect("raw");
    let hw = z.shape[2] * z.shape[3];
    let want: Vec<f32> = (0..z.shape[1]).map(|k| z.data[k * hw + 3]).collect();
    assert_eq!(pinned.len(), want.len());
    assert!(cos(&pinned, &want) > 1.0 - 1e-6, "pinned direction is patch 3's ({})", cos(&pinned, &want));
    let norm = pinned.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "unit direction, |d| = {norm}");

    // open another image; the pinned target stays and steers the new image towards it
    h.state_mut().as_mut().expect("app").open_image(&root().join("assets/samples/coffee.png"));
    wait_for(&mut h, "second image", |s| s.recent.len() == 2 && !s.busy);
    h.get_by_label_contains("pinned: patch 3 of image 1").click();
    h.run_steps(2);
    for n in h.query_all_by_label_contains("rotate (degrees)") {
        n.set_value_accesskit(90.0);
    }
    h.run_steps(2);
    wait_for(&mut h, "steered towards the pinned patch", |s| s.current.as_ref().is_some_and(|c| c.steered.is_some()) && !s.busy);
    assert!(h.state().as_ref().is_some_and(|s| matches!(&s.edit.target, engine::steer::SteerTarget::Direction(d) if *d == pinned)));
    // egui's Undoer: undo returns to 0 degrees, redo to 90
    h.get_by_label("Undo").click();
    h.run_steps(2);
    assert_eq!(h.state().as_ref().map(|s| s.edit.angle_deg), Some(0.0));
    h.get_by_label("Redo").click();
    h.run_steps(2);
    assert_eq!(h.state().as_ref().map(|s| s.edit.angle_deg), Some(90.0));

    // Sample tab without a generator: a slerp walk from the current image (coffee) to the first one (chelsea)
    let dir = std::env::temp_dir().join(format!("dino-sae-ui-walk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let app = h.state_mut().as_mut().expect("app");
        app.sample.walk_frames = 3;
        app.sample.frames_dir = dir.display().to_string();
    }
    h.get_by_label("Sample").click();
    h.run_steps(2);
    h.get_by_label_contains("recent image 1 (").click();
    wait_for(&mut h, "image walk", |s| !s.sample.walk.is_empty() && !s.sample.running);
    let (walk, recon) = {
        let s = h.state().as_ref().expect("app");
        (s.sample.walk.clone(), s.current.as_ref().expect("c").recon.clone())
    };
    assert_eq!(walk.len(), 4, "3 intervals give 4 frames");
    assert_eq!(walk[0].dimensions(), recon.dimensions(), "frames at the current image's size");
    // frame 0 is the current image's own reconstruction (encoded in a batch of two: float noise only)
    let p = engine::metrics::psnr(&engine::image_io::rgb8_to_f32(&walk[0]), &engine::image_io::rgb8_to_f32(&recon));
    assert!(p > 40.0, "frame 0 = reconstruction of A (PSNR {p:.1} dB)");
    assert_ne!(walk[0], walk[3], "the walk ends elsewhere");
    h.get_by_label("Export frames").click();
    h.run_steps(2);
    let bytes = std::fs::read(dir.join("frame_003.png")).expect("exported frame");
    assert!(String::from_utf8_lossy(&bytes).contains("current image -> recent image 1"), "walk parameters in the PNG");
    let _ = std::fs::remove_dir_all(&dir);
}
