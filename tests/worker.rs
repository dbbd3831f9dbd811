//! The engine thread: reconstruct, cosine map, steering from the cached latent, the scheduler (newest of a kind
//! wins, other kinds are never dropped, interactive before background, cancelled jobs skipped, steering answered
//! while a render runs), failing jobs that leave the worker and its model intact, the full-resolution render.
//! Model: the fixture DINO-SAE (tiny random weights).

use std::path::PathBuf;
use std::time::Duration;

use engine::image_io::Fit;
use engine::steer::{SteerEdit, SteerTarget};
use engine::worker::{Event, Job, JobKind, ModelSource, Ticket, Worker};

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dinosae-setA/sae/model.safetensors")
}

fn next(w: &Worker) -> Event {
    w.recv_timeout(Duration::from_secs(120)).expect("event within 120 s")
}

fn image(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 4 % 256) as u8, (y * 4 % 256) as u8, ((x + y) * 2 % 256) as u8])
    })
}

/// A worker on the CPU with the fixture model loaded.
fn loaded() -> Worker {
    let w = Worker::spawn_on(engine::backend::BackendChoice::Cpu, || {});
    match next(&w) {
        Event::BackendReady(b) => assert!(!b.wgpu && b.name.starts_with("CPU"), "{}", b.name),
        other => panic!("first event must name the backend, got {other:?}"),
    }
    w.submit(Ticket::new(100), Job::LoadModel(ModelSource::Path(model())));
    match next(&w) {
        Event::Loaded(l) => {
            assert_eq!((l.kind, l.id), (JobKind::LoadModel, 100));
            let m = l.models.main.expect("main model");
            assert!(m.params > 0 && m.bytes == m.params as u64 * 4);
        }
        e => panic!("unexpected {e:?}"),
    }
    w
}

#[test]
fn reconstruct_inspect_steer_and_recover_from_failures() {
    let w = loaded();
    w.submit(Ticket::new(1), Job::Reconstruct { image: image(64, 64), fit: Fit::Crop });
    let (recon, version) = match next(&w) {
        Event::Reconstructed(r) => {
            assert_eq!((r.id, r.grid), (1, (4, 4)));
            assert_eq!((r.magnitude.len(), r.pca_rgb.len()), (16, 16));
            assert!(r.psnr.is_finite());
            (r.recon, r.version)
        }
        e => panic!("unexpected {e:?}"),
    };
    // cosine map: the clicked patch has cosine 1 with itself, computed on this latent's version
    w.submit(Ticket::new(2), Job::PatchCosine { patch: 5 });
    match next(&w) {
        Event::CosineMap(c) => {
            assert_eq!((c.id, c.patch, c.version), (2, 5, version));
            assert_eq!(c.values.len(), 16);
            assert!((c.values[5] - 1.0).abs() < 1e-5);
            assert!(c.values.iter().all(|v| *v <= 1.0 + 1e-5 && *v >= -1.0 - 1e-5));
        }
        e => panic!("unexpected {e:?}"),
    }
    // identity edit decodes to the reconstruction; a real edit changes it
    w.submit(Ticket::new(3), Job::Steer { edit: SteerEdit::default() });
    match next(&w) {
        Event::Steered(s) => assert_eq!((s.id, &s.image), (3, &recon)),
        e => panic!("unexpected {e:?}"),
    }
    let edit = SteerEdit { target: SteerTarget::Patch(0), angle_deg: 60.0, ..Default::default() };
    w.submit(Ticket::new(4), Job::Steer { edit });
    match next(&w) {
        Event::Steered(s) => assert!(s.id == 4 && s.image != recon),
        e => panic!("unexpected {e:?}"),
    }
    // a failing job reports an error; the worker and its model go on
    w.submit(Ticket::new(30), Job::Steer { edit: SteerEdit { patches: vec![999], ..Default::default() } });
    assert!(matches!(next(&w), Event::Failed(f) if f.id == Some(30) && f.kind == Some(JobKind::Steer) && !f.cancelled));
    w.submit(Ticket::new(31), Job::LoadModel(ModelSource::Path(PathBuf::from("/nonexistent/model.safetensors"))));
    assert!(matches!(next(&w), Event::Failed(f) if f.id == Some(31)));
    w.submit(Ticket::new(32), Job::PatchCosine { patch: 0 });
    assert!(
        matches!(next(&w), Event::CosineMap(c) if c.id == 32 && c.version == version),
        "the previous model and latent are still there"
    );
    // the preflight refuses a job over the memory budget with what would fit; the worker goes on
    // (the budget is read per job from the environment; this test binary's other tests do not set it)
    // a latent of another model's width is refused
    let bad = engine::tensor_file::RawTensor::zeros(vec![1, 3, 2, 2]);
    w.submit(Ticket::new(33), Job::LoadLatent { latent: bad });
    assert!(matches!(next(&w), Event::Failed(f) if f.id == Some(33) && f.error.contains("does not fit")));
}

/// Several jobs queued at once: of each interactive kind only the newest runs (the older ones are answered
/// as cancelled), other kinds are never dropped, interactive jobs run before queued background ones, and a
/// job cancelled while queued never runs.
#[test]
fn scheduler_slots_priority_and_cancel() {
    let w = loaded();
    w.submit(Ticket::new(1), Job::Reconstruct { image: image(64, 48), fit: Fit::Crop });
    assert!(matches!(next(&w), Event::Reconstructed(_)));
    // queue a burst while the worker is busy with a first (slow enough) reconstruct of a larger image
    w.submit(Ticket::new(2), Job::Reconstruct { image: image(128, 128), fit: Fit::Crop });
    let export = std::env::temp_dir().join(format!("dino-sae-worker-{}.safetensors", std::process::id()));
    w.submit(Ticket::new(3), Job::ExportLatent { path: export.clone(), edit: None }); // background
    for id in 10..15 {
        w.submit(
            Ticket::new(id),
            Job::Steer {
                edit: SteerEdit { angle_deg: id as f32, target: SteerTarget::Random(1), ..Default::default() },
            },
        );
    }
    w.submit(Ticket::new(20), Job::PatchCosine { patch: 1 });
    let cancelled = Ticket::new(21);
    w.submit(cancelled.clone(), Job::PatchDirection { patch: 2 });
    cancelled.cancel();
    let mut order = Vec::new();
    let mut superseded = Vec::new();
    while order.len() < 4 {
        match next(&w) {
            Event::Failed(f) if f.cancelled => superseded.push(f.id.expect("id")),
            Event::Failed(f) => panic!("unexpected failure {f:?}"),
            e => order.push(e.job().expect("a job event")),
        }
    }
    let ids: Vec<u64> = order.iter().map(|(_, id)| *id).collect();
    // 2 (reconstruct) first; the last steer, the cosine map, then the background export
    assert_eq!(ids[0], 2, "{order:?}");
    assert!(ids.contains(&14) && ids.contains(&20) && ids.contains(&3), "{order:?}");
    assert_eq!(*ids.last().expect("ids"), 3, "the background export runs after the interactive jobs: {order:?}");
    for id in 10..14 {
        assert!(superseded.contains(&id) || ids.contains(&id), "steer {id} is answered");
    }
    assert!(superseded.contains(&21), "the cancelled job is answered as cancelled: {superseded:?}");
    assert!(!ids.contains(&21));
    assert!(export.exists());
    let _ = std::fs::remove_file(&export);
}

/// A full-resolution render in tiles of an image several tiles wide: progress after every tile, a steer sent
/// meanwhile is answered before the render ends, and the unedited render equals a one-pass reconstruction
/// inside one tile. Then a render cancelled midway ends as cancelled and the worker goes on.
#[test]
fn render_progress_preemption_and_cancel() {
    let w = loaded();
    // the fixture model's tiny ViT has no bound on the grid; 8x8-patch tiles over a 12x10 grid give 4 tiles
    let original = std::sync::Arc::new(image(192, 160));
    w.submit(Ticket::new(1), Job::Reconstruct { image: (*original).clone(), fit: Fit::Crop });
    let one_pass = match next(&w) {
        Event::Reconstructed(r) => r.recon,
        e => panic!("unexpected {e:?}"),
    };
    // one tile: the render of the unedited latent is the one-pass reconstruction
    let big = engine::tiled::Tiling { tile: 32, overlap: 4 };
    w.submit(
        Ticket::new(6),
        Job::Render { original: original.clone(), fit: Fit::Crop, edit: SteerEdit::default(), tiling: big },
    );
    loop {
        match next(&w) {
            Event::Progress(_) => {}
            Event::Rendered(r) => {
                let worst =
                    r.image.as_raw().iter().zip(one_pass.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(255);
                assert!(worst <= 1, "one-tile render vs reconstruction: {worst} levels");
                break;
            }
            e => panic!("unexpected {e:?}"),
        }
    }
    // 2x2 tiles of 8x8 patches over the 12x10 grid; a steer sent after the first tile is answered before the end
    let tiling = engine::tiled::Tiling { tile: 8, overlap: 2 };
    w.submit(
        Ticket::new(2),
        Job::Render { original: original.clone(), fit: Fit::Crop, edit: SteerEdit::default(), tiling },
    );
    let (mut progress, mut steer_at, mut rendered) = (Vec::new(), None, None);
    while rendered.is_none() {
        match next(&w) {
            Event::Progress(p) => {
                assert_eq!((p.kind, p.id), (JobKind::Render, 2));
                progress.push((p.done, p.of));
                if progress.len() == 1 {
                    w.submit(Ticket::new(3), Job::Steer { edit: SteerEdit { angle_deg: 30.0, ..Default::default() } });
                }
            }
            Event::Steered(s) => {
                assert_eq!(s.id, 3);
                steer_at = Some(progress.len());
            }
            Event::Rendered(r) => rendered = Some(r),
            e => panic!("unexpected {e:?}"),
        }
    }
    let r = rendered.expect("rendered");
    assert_eq!(r.image.dimensions(), (192, 160));
    assert_eq!(progress.len(), 8, "4 encode + 4 decode tiles: {progress:?}");
    assert!(progress.iter().enumerate().all(|(i, (d, of))| *d == i + 1 && *of == 8));
    let at = steer_at.expect("the steer was answered");
    assert!(at < progress.len(), "the steer was answered while the render ran (after tile {at})");
    // cancel a render after its first tile: it ends as cancelled; the worker still answers
    let t = Ticket::new(4);
    w.submit(t.clone(), Job::Render { original, fit: Fit::Crop, edit: SteerEdit::default(), tiling });
    loop {
        match next(&w) {
            Event::Progress(_) => t.cancel(),
            Event::Failed(f) => {
                assert!(f.cancelled && f.id == Some(4), "{f:?}");
                break;
            }
            e => panic!("unexpected {e:?}"),
        }
    }
    w.submit(Ticket::new(5), Job::PatchCosine { patch: 0 });
    assert!(matches!(next(&w), Event::CosineMap(c) if c.id == 5));
}

#[test]
fn map_to_grid_selects_the_patches_under_the_working_selection() {
    // working grid 2x3, full grid 4x6: each working patch covers a 2x2 block
    let work =
        engine::tensor_file::RawTensor::new(vec![1, 2, 2, 3], (0..12).map(|v| v as f32 + 1.0).collect()).expect("t");
    let edit = SteerEdit { patches: vec![1, 5], target: SteerTarget::Patch(4), angle_deg: 10.0, ..Default::default() };
    let m = engine::steer::map_to_grid(&edit, &work, (4, 6)).expect("map");
    let mut want = Vec::new();
    for (wy, wx) in [(0usize, 1usize), (1, 2)] {
        for dy in 0..2 {
            for dx in 0..2 {
                want.push((wy * 2 + dy) * 6 + wx * 2 + dx);
            }
        }
    }
    let mut got = m.patches.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // the target patch becomes its direction: channel values of patch 4 (row-major, C=2, 6 patches)
    assert_eq!(m.target, SteerTarget::Direction(vec![5.0, 11.0]));
    assert_eq!(m.angle_deg, 10.0);
    // all patches stay all patches
    let all = engine::steer::map_to_grid(&SteerEdit::default(), &work, (4, 6)).expect("map");
    assert!(all.patches.is_empty());
    assert!(engine::steer::map_to_grid(&SteerEdit { patches: vec![6], ..Default::default() }, &work, (4, 6)).is_err());
}

#[test]
fn sessions_round_trip_and_refuse_bad_values() {
    let dir = std::env::temp_dir().join(format!("dino-sae-session-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("my.session.json");
    let s = engine::worker::session::Session {
        image: Some(PathBuf::from("photo.jpg")),
        working_side: 512,
        edit: SteerEdit {
            patches: vec![1, 2],
            angle_deg: 33.0,
            target: SteerTarget::Direction(vec![0.5, -0.5]),
            ..Default::default()
        },
        ui: serde_json::json!({"tab": "Steer"}),
        ..Default::default()
    };
    let mut lat = engine::tensor_file::TensorMap::new();
    lat.insert(
        "latent".into(),
        engine::tensor_file::RawTensor::new(vec![1, 2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]).expect("t"),
    );
    s.save(&path, Some(&lat)).expect("save");
    let (back, latents) = engine::worker::session::Session::load(&path).expect("load");
    assert_eq!(back.edit, s.edit);
    assert_eq!((back.image, back.working_side, back.ui), (s.image, 512, s.ui));
    assert_eq!(latents.expect("latents")["latent"], lat["latent"]);
    // missing fields take defaults; bad values are refused with a message
    assert_eq!(engine::worker::session::Session::parse(b"{}").expect("empty").working_side, 384);
    for bad in [
        &br#"{"working_side": 3}"#[..],
        br#"{"edit": {"patches": [], "target": {"Random": 0}, "angle_deg": 1e39, "magnitude_scale": 1, "noise_deg": 0, "noise_seed": 0}}"#,
        br#"{"latents": "../../etc/passwd"}"#,
        br#"{"version": 99}"#,
        b"not json",
    ] {
        let e = engine::worker::session::Session::parse(bad).expect_err("refused");
        assert!(e.to_string().contains("session"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A worker with a small memory budget refuses a job over it with what would fit, and keeps what it had.
#[test]
fn over_budget_jobs_are_refused_and_leave_the_state() {
    let budget = engine::preflight::Budget::bytes(160 << 20);
    let w = Worker::spawn_with_budget(engine::backend::BackendChoice::Cpu, Some(budget), || {});
    assert!(matches!(next(&w), Event::BackendReady(_)));
    w.submit(Ticket::new(1), Job::LoadModel(ModelSource::Path(model())));
    assert!(matches!(next(&w), Event::Loaded(_)));
    w.submit(Ticket::new(2), Job::Reconstruct { image: image(64, 64), fit: Fit::Crop });
    let version = match next(&w) {
        Event::Reconstructed(r) => r.version,
        e => panic!("unexpected {e:?}"),
    };
    w.submit(Ticket::new(3), Job::Reconstruct { image: image(1024, 1024), fit: Fit::Crop });
    match next(&w) {
        Event::Failed(f) => {
            assert!(!f.cancelled && f.id == Some(3), "{f:?}");
            assert!(f.error.contains("over the budget") && f.error.contains("at most"), "{}", f.error);
        }
        e => panic!("expected a refusal, got {e:?}"),
    }
    w.submit(Ticket::new(4), Job::PatchCosine { patch: 0 });
    assert!(matches!(next(&w), Event::CosineMap(c) if c.version == version), "the previous latent is kept");
}

/// A preview decoder (random weights here) of the fixture model's latent width, saved as a folder.
fn preview_dir(tag: &str) -> PathBuf {
    use engine::model::preview::{PreviewConfig, PreviewDecoder};
    let dir = std::env::temp_dir().join(format!("dino-sae-worker-preview-{tag}-{}", std::process::id()));
    let (p, _) =
        PreviewDecoder::random(&PreviewConfig::preset("tiny", 64).expect("preset"), 5, &engine::cpu()).expect("build");
    p.save(&dir, engine::tensor_file::Precision::F32, 0, "").expect("save");
    dir
}

/// Preview-first steering: a preview steer runs before a full decode queued ahead of it, is answered as a
/// preview, and a stale full decode cancelled in the queue never runs; without a preview decoder a preview
/// steer is refused and the worker goes on.
#[test]
fn preview_steers_run_first_and_stale_full_decodes_are_cancelled() {
    let w = loaded();
    w.submit(Ticket::new(1), Job::SteerPreview { edit: SteerEdit::default() });
    assert!(matches!(next(&w), Event::Failed(f) if f.id == Some(1) && f.error.contains("no preview decoder")));
    let dir = preview_dir("first");
    w.submit(Ticket::new(2), Job::LoadPreview(dir.clone()));
    match next(&w) {
        Event::Loaded(l) => assert!(l.models.preview.as_ref().is_some_and(|p| p.params > 0 && p.path == dir)),
        e => panic!("unexpected {e:?}"),
    }
    w.submit(Ticket::new(3), Job::Reconstruct { image: image(128, 96), fit: Fit::Crop });
    let recon = match next(&w) {
        Event::Reconstructed(r) => r.recon,
        e => panic!("unexpected {e:?}"),
    };
    // the worker is busy with a slow job; meanwhile a full steer, then (the user moved on) its cancel and a
    // newer preview and full steer
    w.submit(Ticket::new(4), Job::Lpips);
    let stale = Ticket::new(5);
    w.submit(stale.clone(), Job::Steer { edit: SteerEdit { angle_deg: 10.0, ..Default::default() } });
    stale.cancel();
    let edit = SteerEdit { angle_deg: 40.0, target: SteerTarget::Random(3), ..Default::default() };
    w.submit(Ticket::new(7), Job::Steer { edit: edit.clone() });
    w.submit(Ticket::new(6), Job::SteerPreview { edit });
    let mut order = Vec::new();
    while !order.iter().any(|(id, _)| *id == 7) {
        match next(&w) {
            Event::Steered(s) => {
                assert_eq!(s.image.dimensions(), recon.dimensions(), "the preview has the input's size");
                order.push((s.id, s.preview));
            }
            Event::Failed(f) if f.id == Some(5) => assert!(f.cancelled, "{f:?}"),
            Event::Lpips(_) | Event::Failed(_) => {}
            e => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(order, vec![(6, true), (7, false)], "the preview first, then the full decode; never the stale one");
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a preview decoder, a walk's frames come first from it (not final: the slot keeps waiting), then the full
/// decode of the same frames ends the job.
#[test]
fn walks_send_preview_frames_first() {
    let w = loaded();
    let dir = preview_dir("walk");
    w.submit(Ticket::new(2), Job::LoadPreview(dir.clone()));
    assert!(matches!(next(&w), Event::Loaded(_)));
    w.submit(Ticket::new(3), Job::Reconstruct { image: image(64, 64), fit: Fit::Crop });
    assert!(matches!(next(&w), Event::Reconstructed(_)));
    w.submit(Ticket::new(4), Job::WalkImages { a: image(64, 64), b: image(80, 64), frames: 3 });
    let first = match next(&w) {
        Event::Walked(f) => f,
        e => panic!("unexpected {e:?}"),
    };
    assert!(first.preview && first.frames.len() == 4);
    assert!(
        !Event::Walked(engine::worker::Walked { id: 4, frames: Vec::new(), millis: 0.0, preview: true }).is_final()
    );
    match next(&w) {
        Event::Walked(full) => {
            assert!(!full.preview && full.frames.len() == 4);
            assert_eq!(full.frames[0].dimensions(), first.frames[0].dimensions());
            assert_ne!(full.frames[1], first.frames[1], "the full decoder's frames, not the preview's");
        }
        e => panic!("unexpected {e:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
