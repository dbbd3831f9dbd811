//! The engine thread: reconstruct, cosine map, steering from the cached latent, newest-wins coalescing,
//! failing jobs that leave the worker and its model intact. Model: the fixture DINO-SAE (64x64 inputs).

use std::path::PathBuf;
use std::time::Duration;

use engine::image_io::Fit;
use engine::steer::{SteerEdit, SteerTarget};
use engine::worker::{Command, Event, ModelSource, Worker};

fn model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dinosae-setA/sae/model.safetensors")
}

fn next(w: &Worker) -> Event {
    w.recv_timeout(Duration::from_secs(60)).expect("event within 60 s")
}

fn image() -> image::RgbImage {
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8]))
}

#[test]
fn reconstruct_inspect_steer_and_recover_from_failures() {
    let w = Worker::spawn_on(engine::backend::BackendChoice::Cpu, || {});
    match next(&w) {
        Event::BackendReady { name, wgpu } => assert!(!wgpu && name.starts_with("CPU"), "{name}"),
        other => panic!("first event must name the backend, got {other:?}"),
    }
    w.send(Command::LoadModel(ModelSource::Path(model())));
    assert!(matches!(next(&w), Event::Loaded(_)));
    w.send(Command::Reconstruct { id: 1, image: image(), fit: Fit::Crop });
    let recon = match next(&w) {
        Event::Reconstructed { id, recon, grid, magnitude, pca_rgb, psnr, .. } => {
            assert_eq!((id, grid), (1, (4, 4)));
            assert_eq!((magnitude.len(), pca_rgb.len()), (16, 16));
            assert!(psnr.is_finite());
            recon
        }
        e => panic!("unexpected {e:?}"),
    };
    // cosine map: the clicked patch has cosine 1 with itself
    w.send(Command::PatchCosine { id: 2, patch: 5 });
    match next(&w) {
        Event::CosineMap { id: 2, patch: 5, values } => {
            assert_eq!(values.len(), 16);
            assert!((values[5] - 1.0).abs() < 1e-5);
            assert!(values.iter().all(|v| *v <= 1.0 + 1e-5 && *v >= -1.0 - 1e-5));
        }
        e => panic!("unexpected {e:?}"),
    }
    // identity edit decodes to the reconstruction; a real edit changes it
    w.send(Command::Steer { id: 3, edit: SteerEdit::default() });
    match next(&w) {
        Event::Steered { id: 3, image, .. } => assert_eq!(image, recon),
        e => panic!("unexpected {e:?}"),
    }
    let edit = SteerEdit { target: SteerTarget::Patch(0), angle_deg: 60.0, ..Default::default() };
    w.send(Command::Steer { id: 4, edit });
    match next(&w) {
        Event::Steered { id: 4, image, .. } => assert_ne!(image, recon),
        e => panic!("unexpected {e:?}"),
    }
    // newest wins: a burst of steers yields fewer results, the last one included
    for id in 10..20 {
        w.send(Command::Steer { id, edit: SteerEdit { angle_deg: id as f32, target: SteerTarget::Random(1), ..Default::default() } });
    }
    let mut got = Vec::new();
    while let Some(Event::Steered { id, .. }) = w.recv_timeout(Duration::from_secs(20)) {
        got.push(id);
        if id == 19 {
            break;
        }
    }
    assert_eq!(got.last(), Some(&19));
    // a failing job reports an error; the worker and its model go on
    w.send(Command::Steer { id: 30, edit: SteerEdit { patches: vec![999], ..Default::default() } });
    assert!(matches!(next(&w), Event::Failed { id: Some(30), .. }));
    w.send(Command::LoadModel(ModelSource::Path(PathBuf::from("/nonexistent/model.safetensors"))));
    assert!(matches!(next(&w), Event::Failed { .. }));
    w.send(Command::PatchCosine { id: 31, patch: 0 });
    assert!(matches!(next(&w), Event::CosineMap { id: 31, .. }), "the previous model and latent are still there");
}
