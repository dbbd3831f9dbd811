//! The Studio driven like a user, through its widgets (egui_kittest): text typed into fields, buttons, sliders,
//! clicks and drags on the image. State is only read, never written, by these tests.
//! Model: the fixture DINO-SAE (tiny random weights, fast on CPU). Panel snapshots are compared with the
//! committed ones in docs/snapshots (`UPDATE_SNAPSHOTS=1` rewrites them after a deliberate change).

#[path = "support/studio.rs"]
mod support;

use dino_sae_studio::state::Tab;
use egui_kittest::kittest::{NodeT, Queryable};
use engine::worker::JobKind;
use support::*;

#[test]
fn every_panel_by_its_labels() {
    let mut h = studio();
    assert!(h.query_by_label_contains("PSNR").is_some(), "PSNR label shown");
    assert!(h.query_by_label("Reconstruction").is_some());
    // LPIPS-VGG-like arrives as its own job; the value is the engine's metric on the shown pair (8-bit rounding)
    wait_for(&mut h, "LPIPS-VGG-like", |s| s.current().is_some_and(|c| c.lpips.is_some()));
    let (input, recon, shown) = {
        let c = app(&h).current().expect("c");
        (c.input.clone(), c.recon.clone(), c.lpips.as_ref().expect("lpips").0)
    };
    let lp = engine::lpips::LpipsVgg::load(&engine::lpips::default_dir(), &engine::cpu()).expect("weights");
    let want = lp
        .distance_rgb(&engine::image_io::rgb8_to_f32(&input), &engine::image_io::rgb8_to_f32(&recon), &engine::cpu())
        .expect("d");
    assert!((shown - want).abs() < 2e-3, "shown {shown} vs {want}");
    assert!(h.query_by_label_contains(&format!("LPIPS-VGG-like {shown:.4}")).is_some(), "the score is on screen");
    set_slider(&mut h, "swipe (original on the left)", 0.5);
    assert_eq!(app(&h).swipe(), 0.5);
    // a second model side by side, and the teacher for per-patch student-vs-teacher cosines (Models tab)
    type_into(&mut h, "Model path", &fixture_model().display().to_string());
    h.get_by_label("Models").click();
    h.run_steps(2);
    h.get_by_label("Add model to compare").click();
    wait_for(&mut h, "compare model", |s| s.current().is_some_and(|c| c.others.len() == 1) && s.is_idle());
    assert_eq!(app(&h).models().compare.len(), 1);
    assert!(h.query_by_label_contains("Compare 1:").is_some(), "the Models tab lists the compare model");
    type_into(&mut h, "Teacher path", &root().join("tests/fixtures/dinosae-setA/dinov3/hf").display().to_string());
    h.get_by_label("Load teacher").click();
    wait_for(&mut h, "teacher cosine", |s| s.current().is_some_and(|c| c.teacher_cosine.is_some()));
    let c = app(&h).current().expect("c");
    assert_eq!(c.teacher_cosine.as_ref().map(Vec::len), Some(c.grid.0 * c.grid.1), "one cosine per patch");
    h.get_by_label("Compare").click();
    h.run_steps(2);
    assert!(h.query_by_label_contains("model.safetensors: PSNR").is_some(), "the second reconstruction is labelled");
    // synchronised zoom: 1:1 zooms all three views, Fit resets
    h.get_by_label("1:1").click();
    h.run_steps(2);
    assert!(app(&h).zoom() > 1.0, "1:1 zooms in on a downscaled view");
    h.get_by_label("Fit").click();
    h.run_steps(2);
    assert_eq!(app(&h).zoom(), 1.0);
    // settings survive a round trip and tolerate missing fields
    let st = app(&h).settings().clone();
    let back: dino_sae_studio::state::Settings =
        serde_json::from_str(&serde_json::to_string(&st).expect("json")).expect("parse");
    assert_eq!(back, st);
    let partial: dino_sae_studio::state::Settings = serde_json::from_str(r#"{"opacity":0.25}"#).expect("partial");
    assert_eq!((partial.opacity, partial.working_side), (0.25, 384));
    h.key_down(egui::Key::Space);
    h.run_steps(2);
    assert!(h.query_by_label("Original (Space held)").is_some(), "Space flickers to the original");
    h.key_up(egui::Key::Space);
    h.run_steps(2);

    // Inspect: click a patch -> cosine map
    h.get_by_label("Inspect").click();
    h.run_steps(3);
    assert_eq!(app(&h).tab(), Tab::Inspect);
    click_patch(&mut h, 0.5, 0.5);
    wait_for(&mut h, "cosine map", |s| s.current().is_some_and(|c| c.cosine.is_some()));
    assert!(h.query_by_label_contains("cosine map of patch").is_some());
    let (patch, values) = app(&h).current().and_then(|c| c.cosine.clone()).expect("cosine");
    assert!((values[patch] - 1.0).abs() < 1e-4, "the clicked patch is most similar to itself");

    // Steer: a box selection, then the rotation slider -> a changed decode
    h.get_by_label("Steer").click();
    h.run_steps(3);
    let r = app(&h).last_image_rect().expect("image drawn");
    let (gh, gw) = app(&h).current().map(|c| c.grid).expect("grid");
    let a = r.min + egui::vec2(r.width() * 0.1, r.height() * 0.1);
    let b = r.min + egui::vec2(r.width() * 0.5, r.height() * 0.5);
    h.hover_at(a);
    h.step();
    h.event(egui::Event::PointerButton {
        pos: a,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: Default::default(),
    });
    h.step();
    for k in 1..=8 {
        h.hover_at(a + (b - a) * (k as f32 / 8.0));
        h.step();
    }
    h.event(egui::Event::PointerButton {
        pos: b,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: Default::default(),
    });
    h.run_steps(2);
    let inside =
        |n: usize, lo: f32, hi: f32| (0..n).filter(|&i| (lo..=hi).contains(&((i as f32 + 0.5) / n as f32))).count();
    assert_eq!(
        app(&h).selection().len(),
        inside(gh, 0.1, 0.5) * inside(gw, 0.1, 0.5),
        "box selects the patches whose centres it covers"
    );
    h.get_by_label("All patches").click();
    h.run_steps(2);
    assert!(app(&h).selection().is_empty());
    set_slider(&mut h, "rotate (degrees)", 60.0);
    wait_for(&mut h, "steered decode", |s| {
        s.current().is_some_and(|c| c.steered.is_some()) && !s.is_running(JobKind::Steer)
    });
    let c = app(&h).current().expect("current");
    assert_ne!(
        c.steered.as_ref().expect("steered").0,
        c.recon,
        "rotating every patch by 60 degrees changes the decode"
    );
    assert!(h.query_by_label_contains("Steered decode: PSNR").is_some());
    h.get_by_label("Undo").click();
    h.run_steps(2);
    assert_eq!(app(&h).edit().angle_deg, 0.0, "undo brings the edit back to zero rotation");
    h.get_by_label("PCA 1+").click();
    set_slider(&mut h, "rotate (degrees)", 30.0);
    wait_for(&mut h, "PCA steer", |s| {
        matches!(&s.edit().target, engine::steer::SteerTarget::Direction(d) if d.len() == 64)
            && s.edit().angle_deg == 30.0
            && s.is_idle()
    });

    // Export a PNG with its parameters (written off the UI thread)
    let out = std::env::temp_dir().join(format!("dino-sae-ui-{}.png", std::process::id()));
    type_into(&mut h, "Export path", &out.display().to_string());
    h.get_by_label("Export PNG").click();
    wait_for(&mut h, "export", |s| s.last_export() == Some(out.as_path()));
    let bytes = std::fs::read(&out).expect("exported file");
    assert!(String::from_utf8_lossy(&bytes).contains("angle_deg"), "parameters are in the PNG text chunks");
    assert!(engine::image_io::decode_rgb(&bytes).is_ok());
    let _ = std::fs::remove_file(&out);

    // Bad inputs keep everything: a corrupt image file, then a wrong checkpoint
    let bad_img = std::env::temp_dir().join(format!("dino-sae-ui-bad-{}.png", std::process::id()));
    std::fs::write(&bad_img, b"not an image at all").expect("write");
    let psnr_before = app(&h).current().map(|c| c.psnr);
    type_into(&mut h, "Image path", &bad_img.display().to_string());
    h.get_by_label("Open image").click();
    wait_for(&mut h, "image error", |s| s.error().is_some() && s.is_idle());
    assert!(h.query_by_label_contains("error:").is_some(), "the error is shown");
    let _ = std::fs::remove_file(&bad_img);
    type_into(
        &mut h,
        "Model path",
        &root().join("tests/fixtures/dinosae-setA/dinov3/hf/model.safetensors").display().to_string(),
    );
    h.get_by_label("Load model").click();
    wait_for(&mut h, "load failure", |s| s.is_idle() && s.error().is_some_and(|e| e.contains("not a DINO-SAE")));
    assert_eq!(app(&h).current().map(|c| c.psnr), psnr_before, "the reconstruction is kept");
    assert!(app(&h).models().main.as_ref().is_some_and(|m| m.name.contains("sae")), "the previous model is kept");
}

/// Typing a path that contains "2", "h" and "r" into the image field types it: the tab, the heatmap and the
/// steering stay as they were, and the image opens. Outside a text field the same keys are shortcuts.
#[test]
fn typing_into_a_text_field_never_triggers_a_command() {
    let dir = std::env::temp_dir().join(format!("dino-sae-ui-2hr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("photo-2hr.png");
    std::fs::copy(root().join("assets/samples/coffee.png"), &path).expect("copy");
    let mut h = studio();
    h.get_by_label("Steer").click();
    h.run_steps(2);
    set_slider(&mut h, "rotate (degrees)", 40.0);
    idle(&mut h);
    let (tab, edit) = (app(&h).tab(), app(&h).edit().clone());
    assert_eq!(tab, Tab::Steer);
    type_into(&mut h, "Image path", &path.display().to_string());
    assert_eq!(app(&h).tab(), tab, "typing 2 did not switch tabs");
    assert_eq!(app(&h).edit(), &edit, "typing r did not reset the steering");
    assert_eq!(app(&h).settings().image_path, path.display().to_string(), "the field holds what was typed");
    h.key_press(egui::Key::Enter);
    h.run_steps(2);
    let before = app(&h).current().map(|c| c.input.clone());
    wait_for(&mut h, "the typed image", |s| s.is_idle() && s.current().map(|c| c.input.clone()) != before);
    assert_eq!(app(&h).tab(), tab);
    // out of the field (click on empty canvas), "2" is the Inspect shortcut again
    h.hover_at(egui::pos2(1300.0, 990.0));
    h.event(egui::Event::PointerButton {
        pos: egui::pos2(1300.0, 990.0),
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: Default::default(),
    });
    h.event(egui::Event::PointerButton {
        pos: egui::pos2(1300.0, 990.0),
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: Default::default(),
    });
    h.run_steps(2);
    h.key_press(egui::Key::Num2);
    h.run_steps(2);
    assert_eq!(app(&h).tab(), Tab::Inspect, "the shortcut works outside text fields");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Results of one kind never displace another's: steering while sampling (both finish), and a cosine map
/// asked for while a reconstruction runs (both finish, and the map belongs to the image shown).
#[test]
fn steer_while_sampling_and_click_while_reconstructing() {
    let run = tiny_generator("concurrent");
    let mut h = studio();
    load_generator(&mut h, &run);
    set_slider(&mut h, "steps", 100.0);
    h.get_by_label("Start sampling").click();
    h.run_steps(2);
    assert!(app(&h).is_running(JobKind::Sample));
    h.get_by_label("Steer").click();
    h.run_steps(2);
    set_slider(&mut h, "rotate (degrees)", 45.0);
    wait_for(&mut h, "steer and sample both finish", |s| {
        s.current().is_some_and(|c| c.steered.is_some()) && s.sample_ui().result.is_some() && s.is_idle()
    });
    assert!(app(&h).sample_ui().result.as_ref().is_some_and(|r| r.2 == 100 && !r.1), "the sampling ran all its steps");
    // the Start button is enabled again (it was stuck before the job slots)
    h.get_by_label("Sample").click();
    h.run_steps(2);
    assert!(!h.get_by_label("Start sampling").accesskit_node().is_disabled(), "Start sampling is enabled again");

    // open another image and click a patch while it reconstructs
    h.get_by_label("Inspect").click();
    h.run_steps(2);
    type_into(&mut h, "Image path", &root().join("assets/samples/coffee.png").display().to_string());
    h.get_by_label("Open image").click();
    h.run_steps(1);
    click_patch(&mut h, 0.3, 0.3);
    wait_for(&mut h, "reconstruction and cosine map", |s| s.is_idle() && s.recent_images() == 2);
    // the click was on the old image: its map is dropped (other latent) or arrived before; a click now works
    click_patch(&mut h, 0.5, 0.5);
    wait_for(&mut h, "cosine map of the new image", |s| s.is_idle() && s.current().is_some_and(|c| c.cosine.is_some()));
    let c = app(&h).current().expect("c");
    let (p, v) = c.cosine.clone().expect("cos");
    assert_eq!(v.len(), c.grid.0 * c.grid.1, "the map has the shown image's grid");
    assert!((v[p] - 1.0).abs() < 1e-4);
    let _ = std::fs::remove_dir_all(&run);
}

/// A 6000x4000 camera photo: the app stays up and edits a 384 px working copy; its full-resolution render
/// starts with progress and can be cancelled. A smaller photo's render completes in tiles at the original's size
/// and is kept when a second render is cancelled. Peak memory stays within the memory budget.
#[test]
fn camera_photo_working_copy_full_render_and_cancel() {
    let dir = std::env::temp_dir().join(format!("dino-sae-ui-camera-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pattern = |x: u32, y: u32| image::Rgb([(x / 24 % 256) as u8, (y / 16 % 256) as u8, ((x + y) / 40 % 256) as u8]);
    let camera = dir.join("camera.jpg");
    image::RgbImage::from_fn(6000, 4000, pattern).save(&camera).expect("write jpeg");
    let mut h = harness(options(Some(camera.clone())));
    wait_for(&mut h, "working copy", |s| s.current().is_some() && s.is_idle());
    let c = app(&h).current().expect("c");
    assert_eq!(c.input.dimensions(), (384, 256), "the working copy's longest side is 384");
    assert_eq!(app(&h).original().map(|o| o.dimensions()), Some((6000, 4000)));
    assert!(h.query_by_label_contains("original 6000x4000, working copy 384x256").is_some());
    h.get_by_label("Render full resolution").click();
    wait_for(&mut h, "render progress", |s| s.is_running(JobKind::Render));
    assert!(h.query_by_label_contains("Cancel render").is_some());
    h.get_by_label("Cancel render").click();
    wait_for(&mut h, "cancelled", |s| !s.is_running(JobKind::Render) && s.render_ui().note.is_some());
    assert!(app(&h).render_ui().result.is_none());
    // a 1600x1200 photo renders completely (2 x 12 tiles of 512 px)
    let photo = dir.join("photo.png");
    image::RgbImage::from_fn(1600, 1200, pattern).save(&photo).expect("write png");
    type_into(&mut h, "Image path", &photo.display().to_string());
    h.get_by_label("Open image").click();
    wait_for(&mut h, "second photo", |s| s.is_idle() && s.original().is_some_and(|o| o.width() == 1600));
    h.get_by_label("Render full resolution").click();
    wait_for(&mut h, "render", |s| s.render_ui().result.is_some() && !s.is_running(JobKind::Render));
    let (img, _, tiles) = app(&h).render_ui().result.clone().expect("render");
    assert_eq!((img.dimensions(), tiles), ((1600, 1200), 12));
    // a second render, cancelled: the first stays
    h.get_by_label("Render full resolution").click();
    h.run_steps(2);
    h.get_by_label("Cancel render").click();
    wait_for(&mut h, "cancelled", |s| !s.is_running(JobKind::Render));
    assert!(h.query_by_label_contains("cancelled; the previous render is kept").is_some());
    assert_eq!(app(&h).render_ui().result.as_ref().map(|r| r.0.dimensions()), Some((1600, 1200)));
    // peak resident memory of this test process (all tests of the binary share it) within the budget
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024);
    let budget = engine::preflight::Budget::from_env();
    if let Some(b) = hwm {
        assert!(
            b < budget.bytes.max(4 << 30),
            "peak RSS {} over the budget {}",
            engine::preflight::human(b as f64),
            engine::preflight::human(budget.bytes as f64)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Save a session through the UI, open it in a new studio: image, working size, edit and tab come back.
#[test]
fn sessions_save_and_open_through_the_ui() {
    let mut h = studio();
    h.get_by_label("Steer").click();
    h.run_steps(2);
    set_slider(&mut h, "rotate (degrees)", 25.0);
    idle(&mut h);
    let edit = app(&h).edit().clone();
    let file = std::env::temp_dir().join(format!("dino-sae-ui-session-{}.json", std::process::id()));
    type_into(&mut h, "Session file", &file.display().to_string());
    h.get_by_label("Save session").click();
    idle(&mut h);
    assert!(file.exists(), "{:?}", app(&h).error());
    assert!(engine::worker::session::Session::latents_path(&file).exists(), "the latent is written beside it");
    drop(h);
    let mut h2 = harness(options(Some(file.clone())));
    wait_for(&mut h2, "session restored", |s| s.is_idle() && s.current().is_some_and(|c| c.steered.is_some()));
    assert_eq!(app(&h2).edit(), &edit);
    assert_eq!(app(&h2).tab(), Tab::Steer);
    assert!(app(&h2).settings().image_path.ends_with("chelsea.png"));
    let _ = std::fs::remove_file(engine::worker::session::Session::latents_path(&file));
    let _ = std::fs::remove_file(&file);
}

/// Regenerate a region through the Steer panel (select, regenerate, undo): the reconstruction changes, the
/// selection stays, and the undo brings back the reconstruction from before, pixel for pixel (to 8-bit rounding).
#[test]
fn regenerate_a_selection_and_undo_it() {
    let run = tiny_generator("regen");
    let mut h = studio();
    load_generator(&mut h, &run);
    h.get_by_label("Steer").click();
    h.run_steps(2);
    assert!(h.get_by_label("Regenerate selection").accesskit_node().is_disabled(), "nothing selected yet");
    let (before, v0) = {
        let c = app(&h).current().expect("current");
        (c.recon.clone(), c.version)
    };
    click_patch(&mut h, 0.3, 0.3);
    assert_eq!(app(&h).selection().len(), 1);
    idle(&mut h);
    h.get_by_label("Regenerate selection").click();
    h.run_steps(2);
    wait_for(&mut h, "regenerated", |s| {
        !s.is_running(JobKind::Inpaint) && s.current().is_some_and(|c| c.version > v0) && s.is_idle()
    });
    let (after, v1) = {
        let c = app(&h).current().expect("current");
        (c.recon.clone(), c.version)
    };
    assert_eq!(after.dimensions(), before.dimensions());
    assert_ne!(after, before, "the regenerated patch changes the decode");
    assert_eq!(app(&h).selection().len(), 1, "the selection stays for another try");
    assert!(app(&h).error().is_none(), "{:?}", app(&h).error());
    h.get_by_label("Undo regenerate / paste").click();
    h.run_steps(2);
    wait_for(&mut h, "undone", |s| s.current().is_some_and(|c| c.version > v1) && s.is_idle());
    let back = app(&h).current().expect("current").recon.clone();
    let worst = back.as_raw().iter().zip(before.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
    assert!(worst <= 1, "the undo restores the reconstruction before the regeneration (max diff {worst})");
    assert!(h.get_by_label("Undo regenerate / paste").accesskit_node().is_disabled(), "nothing left to undo");
}

/// The library of directions through its widgets: save the PCA 1+ target of one image under a name, open a second
/// image, apply the saved direction there (the edit's target is the saved vector, exactly), save "selection minus
/// region A", rename and delete; the files are the engine library's.
#[test]
fn save_a_direction_and_apply_it_to_a_second_image() {
    let mut h = studio();
    h.get_by_label("Steer").click();
    h.run_steps(2);
    h.get_by_label("Directions library").click();
    h.run_steps(2);
    h.get_by_label("PCA 1+").click();
    h.run_steps(2);
    idle(&mut h);
    type_into(&mut h, "Direction name", "pca-a");
    h.get_by_label("Save target").click();
    h.run_steps(2);
    assert!(app(&h).error().is_none(), "{:?}", app(&h).error());
    let saved = match &app(&h).edit().target {
        engine::steer::SteerTarget::Direction(d) => d.clone(),
        t => panic!("PCA 1+ resolves to a direction, got {t:?}"),
    };
    assert!(h.query_by_label("Apply pca-a").is_some(), "the new direction is listed");
    // a second image: the saved direction is applied to it as the steering target
    type_into(&mut h, "Image path", &root().join("assets/samples/astronaut.png").display().to_string());
    let v0 = app(&h).current().map(|c| c.version).unwrap_or(0);
    h.get_by_label("Open image").click();
    wait_for(&mut h, "second image", |s| s.current().is_some_and(|c| c.version > v0) && s.is_idle());
    h.get_by_label("Apply pca-a").click();
    h.run_steps(2);
    set_slider(&mut h, "rotate (degrees)", 30.0);
    wait_for(&mut h, "steered towards the saved direction", |s| {
        s.current().is_some_and(|c| c.steered.is_some()) && s.is_idle()
    });
    assert_eq!(
        app(&h).edit().target,
        engine::steer::SteerTarget::Direction(saved.clone()),
        "the saved vector, exactly"
    );
    // this region minus that region
    click_patch(&mut h, 0.2, 0.2);
    h.get_by_label("Use selection as region A").click();
    h.run_steps(2);
    click_patch(&mut h, 0.2, 0.2);
    click_patch(&mut h, 0.8, 0.8);
    assert_eq!(app(&h).selection().len(), 1);
    type_into(&mut h, "Direction name", "corner-diff");
    h.get_by_label("Save selection minus region A").click();
    wait_for(&mut h, "region direction saved", |s| s.is_idle());
    h.run_steps(2);
    assert!(h.query_by_label("Apply corner-diff").is_some(), "{:?}", app(&h).error());
    // rename and delete
    type_into(&mut h, "Direction name", "pca-b");
    h.get_by_label("Rename pca-a").click();
    h.run_steps(2);
    assert!(h.query_by_label("Apply pca-a").is_none() && h.query_by_label("Apply pca-b").is_some());
    h.get_by_label("Delete corner-diff").click();
    h.run_steps(2);
    assert!(h.query_by_label("Apply corner-diff").is_none());
    assert!(app(&h).error().is_none(), "{:?}", app(&h).error());
}

/// Patch transplant through the Steer panel: copy a selected patch of one image, open another, paste it there;
/// the reconstruction changes, and the undo brings back the one before.
#[test]
fn copy_patches_and_paste_them_onto_a_second_image() {
    let mut h = studio();
    h.get_by_label("Steer").click();
    h.run_steps(2);
    click_patch(&mut h, 0.5, 0.5);
    idle(&mut h);
    h.get_by_label("Copy selection").click();
    wait_for(&mut h, "copied", |s| s.is_idle());
    h.run_steps(2);
    assert!(h.query_by_label_contains("1 patches copied").is_some(), "{:?}", app(&h).error());
    type_into(&mut h, "Image path", &root().join("assets/samples/astronaut.png").display().to_string());
    let v0 = app(&h).current().map(|c| c.version).unwrap_or(0);
    h.get_by_label("Open image").click();
    wait_for(&mut h, "second image", |s| s.current().is_some_and(|c| c.version > v0) && s.is_idle());
    let (before, v1) = {
        let c = app(&h).current().expect("current");
        (c.recon.clone(), c.version)
    };
    h.get_by_label("Paste patches").click();
    h.run_steps(2);
    wait_for(&mut h, "pasted", |s| s.current().is_some_and(|c| c.version > v1) && s.is_idle());
    let (after, v2) = {
        let c = app(&h).current().expect("current");
        (c.recon.clone(), c.version)
    };
    assert_ne!(after, before, "the pasted patch changes the decode");
    assert!(app(&h).error().is_none(), "{:?}", app(&h).error());
    h.get_by_label("Undo regenerate / paste").click();
    h.run_steps(2);
    wait_for(&mut h, "undone", |s| s.current().is_some_and(|c| c.version > v2) && s.is_idle());
    let back = app(&h).current().expect("current").recon.clone();
    let worst = back.as_raw().iter().zip(before.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
    assert!(worst <= 1, "undo restores the second image's reconstruction (max diff {worst})");
}
