//! The engine thread: `Command` in, `Event` out. The GUI never touches tensors, only these messages and images.
//!
//! Every job runs under `catch_unwind`: a failing or panicking job becomes `Event::Failed` and the worker
//! keeps its model and goes on. Interactive requests carry an id; the UI drops results older than the
//! newest id it sent (newest request wins).

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Instant;

use image::RgbImage;

use crate::checkpoint::load_sae;
use crate::image_io::{self, Fit};
use crate::metrics::{self, RgbF32};
use crate::model::sae::{DinoSae, SaeConfig};
use crate::sphere;

/// Where to get a model.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// `assets/default-model` next to the workspace.
    Default,
    Path(PathBuf),
    /// Random weights of a preset, explicitly asked for (pipeline demo only).
    RandomPreset(String),
}

#[derive(Debug)]
pub enum Command {
    LoadModel(ModelSource),
    Reconstruct { id: u64, image: RgbImage, fit: Fit },
    Shutdown,
}

/// What the UI needs to show about a model.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub name: String,
    pub config: String,
    pub params: usize,
    pub report: String,
    pub random: bool,
}

#[derive(Debug)]
pub enum Event {
    Loaded(ModelInfo),
    Reconstructed {
        id: u64,
        input: RgbImage,
        recon: RgbImage,
        psnr: f64,
        ssim: f64,
        /// Per-patch |z|, row-major `grid.0 x grid.1`.
        magnitude: Vec<f32>,
        grid: (usize, usize),
        millis: f64,
    },
    Failed { id: Option<u64>, error: String },
}

/// Handle to the engine thread.
pub struct Worker {
    tx: Sender<Command>,
    rx: Receiver<Event>,
}

impl Worker {
    /// Start the thread. `notify` is called after each event (e.g. egui's `request_repaint`).
    pub fn spawn(notify: impl Fn() + Send + 'static) -> Self {
        let (tx, crx) = channel::<Command>();
        let (etx, rx) = channel::<Event>();
        std::thread::Builder::new()
            .name("dino-sae-engine".into())
            .spawn(move || {
                let mut model: Option<DinoSae> = None;
                while let Ok(cmd) = crx.recv() {
                    if matches!(cmd, Command::Shutdown) {
                        break;
                    }
                    let id = match &cmd {
                        Command::Reconstruct { id, .. } => Some(*id),
                        _ => None,
                    };
                    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(cmd, &mut model)));
                    let ev = match res {
                        Ok(Ok(ev)) => ev,
                        Ok(Err(e)) => Event::Failed { id, error: e.to_string() },
                        Err(p) => Event::Failed {
                            id,
                            error: format!(
                                "internal error (the engine recovered): {}",
                                p.downcast_ref::<String>().cloned().or(p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
                            ),
                        },
                    };
                    if etx.send(ev).is_err() {
                        break;
                    }
                    notify();
                }
            })
            .expect("spawn engine thread");
        Self { tx, rx }
    }

    pub fn send(&self, cmd: Command) {
        let _ = self.tx.send(cmd);
    }

    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Blocking receive with timeout (tests).
    pub fn recv_timeout(&self, d: std::time::Duration) -> Option<Event> {
        self.rx.recv_timeout(d).ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
    }
}

/// The default model folder, if it holds a model.
pub fn default_model_dir() -> Option<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/default-model");
    here.join("model.safetensors").exists().then_some(here)
}

fn handle(cmd: Command, model: &mut Option<DinoSae>) -> crate::Result<Event> {
    let device = crate::cpu();
    match cmd {
        Command::LoadModel(src) => {
            let (m, name, report, random) = match src {
                ModelSource::Default => {
                    let dir = default_model_dir().ok_or_else(|| {
                        crate::EngineError::Checkpoint("no trained default model in assets/default-model yet".into())
                    })?;
                    let l = load_sae(&dir, &device, false)?;
                    (l.model, "default model".to_string(), l.report, false)
                }
                ModelSource::Path(p) => {
                    let l = load_sae(&p, &device, false)?;
                    (l.model, p.display().to_string(), l.report, false)
                }
                ModelSource::RandomPreset(p) => {
                    let cfg = SaeConfig::preset(&p).ok_or_else(|| crate::EngineError::Config(format!("unknown preset {p}")))?;
                    let (m, r) = DinoSae::random(&cfg, 0, &device)?;
                    (m, format!("{p} (RANDOM weights)"), r, true)
                }
            };
            use burn::module::Module;
            let info = ModelInfo {
                name,
                config: serde_json::to_string_pretty(&m.cfg).unwrap_or_default(),
                params: m.num_params(),
                report: report.summary(8),
                random,
            };
            *model = Some(m);
            Ok(Event::Loaded(info))
        }
        Command::Reconstruct { id, image, fit } => {
            let m = model.as_ref().ok_or_else(|| crate::EngineError::Config("no model loaded".into()))?;
            let t0 = Instant::now();
            let img = image_io::fit16(&image, fit);
            let x = image_io::to_tensor(&[&img], &m.cfg.pixels, &device)?;
            let lat = m.encode(x)?;
            let grid = lat.grid();
            let mag = crate::raw::RawTensor::from_tensor(sphere::magnitude(&lat.patches))?;
            let rec = image_io::from_tensor(m.decode(lat.patches)?, &m.cfg.pixels)?;
            let orig: RgbF32 = image_io::rgb8_to_f32(&img);
            Ok(Event::Reconstructed {
                id,
                psnr: metrics::psnr(&orig, &rec[0]),
                ssim: metrics::ssim(&orig, &rec[0]),
                recon: image_io::f32_to_rgb8(&rec[0]),
                input: img,
                magnitude: mag.data,
                grid,
                millis: t0.elapsed().as_secs_f64() * 1e3,
            })
        }
        Command::Shutdown => Err(crate::EngineError::Cancelled),
    }
}
