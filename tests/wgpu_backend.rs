//! burn's wgpu backend against the PyTorch references: the same fixture sets the CPU parity tests use, run on a
//! wgpu device, with the same per-tensor tolerances (max|err| <= tol * max(1, max|ref|), tol 1e-4, 2e-4 where
//! bicubic interpolation is involved). Without a GPU this runs on Mesa's lavapipe (installed by
//! scripts/setup.sh --gui): slow, but the same shaders. Set DINO_SAE_SKIP_WGPU=1 to skip on a machine with no
//! wgpu adapter at all; otherwise a missing adapter fails the test rather than passing silently.

use std::path::PathBuf;
use std::time::Duration;

use engine::backend::{Backend, BackendChoice};
use engine::worker::{Event, Job, ModelSource, Ticket, Worker};

fn fixtures(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn wgpu() -> Option<Backend> {
    if std::env::var("DINO_SAE_SKIP_WGPU").as_deref() == Ok("1") {
        eprintln!("DINO_SAE_SKIP_WGPU=1: wgpu checks skipped");
        return None;
    }
    let b = Backend::select(BackendChoice::Wgpu).expect("a wgpu adapter (lavapipe: apt install mesa-vulkan-drivers)");
    assert!(b.is_wgpu && b.name.starts_with("wgpu: "), "{}", b.name);
    eprintln!("backend: {b}");
    Some(b)
}

fn assert_ok(report: &engine::verify::Report, min_checks: usize) {
    let fails: Vec<String> =
        report.failures().iter().map(|c| format!("{} err {:.3e} ref {:.3e}", c.name, c.max_abs, c.ref_max)).collect();
    assert!(fails.is_empty(), "wgpu failed checks:\n{}", fails.join("\n"));
    assert!(report.checks.len() >= min_checks, "only {} checks ran", report.checks.len());
}

#[test]
fn wgpu_matches_pytorch_on_the_sae_fixtures() {
    let Some(b) = wgpu() else { return };
    // Set A: DINOv3 (both namings), stem, decoder, sphere maths (88 checks on the CPU).
    assert_ok(&engine::verify::verify_dir(fixtures("dinosae-setA"), &b.device).expect("set A runs"), 80);
    // DINOv2 (+registers, antialiased position tables), EViT_GLU decoder, full chain (84 on the CPU).
    assert_ok(&engine::verify::verify_dir(fixtures("dinov2-evit-setA"), &b.device).expect("dinov2 set runs"), 80);
}

#[test]
fn wgpu_matches_pytorch_on_the_dit_fixtures() {
    let Some(b) = wgpu() else { return };
    let r = engine::verify::verify_dit_dir(&fixtures("dit-setA"), &b.device).expect("dit set runs");
    assert_ok(&r, 90);
}

#[test]
fn worker_on_wgpu_reports_it_and_agrees_with_the_cpu_worker() {
    if wgpu().is_none() {
        return;
    }
    let model = fixtures("dinosae-setA/sae/model.safetensors");
    let img =
        image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x * y) % 251) as u8]));
    let run = |choice| {
        let w = Worker::spawn_on(choice, || {});
        let next = || w.recv_timeout(Duration::from_secs(300)).expect("event");
        let name = match next() {
            Event::BackendReady(b) => {
                assert_eq!(b.wgpu, choice == BackendChoice::Wgpu, "{}", b.name);
                b.name
            }
            e => panic!("expected BackendReady, got {e:?}"),
        };
        w.submit(Ticket::new(0), Job::LoadModel(ModelSource::Path(model.clone())));
        assert!(matches!(next(), Event::Loaded(_)));
        w.submit(Ticket::new(1), Job::Reconstruct { image: img.clone(), fit: engine::image_io::Fit::Crop });
        match next() {
            Event::Reconstructed(r) => (name, r.recon, r.magnitude),
            e => panic!("expected Reconstructed, got {e:?}"),
        }
    };
    let (_, cpu_img, cpu_mag) = run(BackendChoice::Cpu);
    let (name, gpu_img, gpu_mag) = run(BackendChoice::Wgpu);
    assert!(name.starts_with("wgpu"), "{name}");
    // 8-bit images: at most 1 level apart (rounding of values that differ by ~1e-5).
    let worst = cpu_img.as_raw().iter().zip(gpu_img.as_raw()).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
    assert!(worst <= 1, "reconstructions differ by {worst} levels");
    for (a, b) in cpu_mag.iter().zip(&gpu_mag) {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "|z| {a} vs {b}");
    }
}
