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
    /// Encode (caching the latent), decode, measure.
    Reconstruct { id: u64, image: RgbImage, fit: Fit },
    /// Cosine of every patch of the current latent to one patch of it.
    PatchCosine { id: u64, patch: usize },
    /// Edit the cached latent and decode (no re-encode). Newest wins: queued older steers are skipped.
    Steer { id: u64, edit: crate::steer::SteerEdit },
    /// LPIPS-VGG-like distance of the current image to its reconstructions (main model, then compare models).
    /// Images larger than 512 px on a side are measured at a size fitting 512 (reported).
    Lpips { id: u64 },
    /// Save the current (edited, if `edited`) latent as safetensors.
    ExportLatent { path: PathBuf, edited: Option<crate::steer::SteerEdit> },
    /// Load a generator (`train-dit` final folder) trained on this model's latents.
    LoadDit(PathBuf),
    /// Add a model whose reconstructions are shown beside the main one (Compare).
    AddCompareModel(PathBuf),
    /// Load the unmodified teacher backbone (e.g. DINOv2 from scripts/fetch-teacher.sh) for per-patch
    /// student-vs-teacher cosines.
    LoadTeacher(PathBuf),
    /// Sample with the loaded generator; previews every `preview_every` steps; `cancel` stops it (keeping the
    /// last state, which is decoded and returned).
    Sample { id: u64, spec: crate::generate::SampleSpec, preview_every: usize, cancel: std::sync::Arc<std::sync::atomic::AtomicBool> },
    /// The mean patch direction of a generator class (from `count` samples), as a steering target.
    ClassMean { id: u64, class: usize, count: usize },
    /// A slerp walk (per patch) between the samples of two seeds (`spec.seed` and `seed_b`), `frames` intervals.
    Walk { id: u64, spec: crate::generate::SampleSpec, seed_b: u64, frames: usize },
    /// A slerp walk (per patch, linear magnitude) between two images, encoded with the current model: A is cropped
    /// to multiples of 16, B centre-cropped to A's aspect and resized to A's size. `frames` intervals.
    WalkImages { id: u64, a: RgbImage, b: RgbImage, frames: usize },
    /// The direction (unit, length C) of one patch of the current latent: a steering target that stays valid
    /// after another image is opened.
    PatchDirection { id: u64, patch: usize },
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
        /// PCA -> RGB of patch directions, fitted jointly on every image reconstructed with this model.
        pca_rgb: Vec<[u8; 3]>,
        /// The 3 principal axes of that fit (length C each), usable as steering directions.
        pca_axes: Vec<Vec<f32>>,
        /// Per-patch cosine between the student's and the teacher's patch tokens (when a teacher is loaded).
        teacher_cosine: Option<Vec<f32>>,
        /// (model name, reconstruction, PSNR, SSIM) of every added compare model.
        others: Vec<(String, RgbImage, f64, f64)>,
        grid: (usize, usize),
        millis: f64,
    },
    CosineMap { id: u64, patch: usize, values: Vec<f32> },
    Steered { id: u64, image: RgbImage, psnr: f64, magnitude: Vec<f32>, millis: f64 },
    Exported { path: PathBuf },
    CompareModelAdded { name: String },
    TeacherLoaded { name: String },
    DitLoaded { classes: Vec<String>, grid: [usize; 2], s_vae: f64 },
    SampleProgress { id: u64, step: usize, of: usize, eta_secs: f64, preview: RgbImage },
    Sampled { id: u64, images: Vec<RgbImage>, cancelled: bool, steps_done: usize, millis: f64 },
    Walked { id: u64, frames: Vec<RgbImage>, millis: f64 },
    ClassMean { id: u64, class: usize, direction: Vec<f32> },
    PatchDirection { id: u64, patch: usize, direction: Vec<f32> },
    /// LPIPS-VGG-like of the main reconstruction and of each compare model's, measured at `size` (w, h).
    LpipsScores { id: u64, main: f64, others: Vec<f64>, size: (usize, usize) },
    /// The device the engine computes on (sent once, first).
    BackendReady { name: String, wgpu: bool },
    Failed { id: Option<u64>, error: String },
}

/// What the worker keeps between commands.
struct State {
    device: burn::tensor::Device,
    model: Option<DinoSae>,
    /// Latent `[1, C, h, w]` and fitted input of the current image.
    current: Option<(crate::raw::RawTensor, RgbImage)>,
    /// Latents of every image reconstructed with this model (for the joint PCA), newest last, at most 8.
    history: Vec<crate::raw::RawTensor>,
    dit: Option<crate::generate::DitBundle>,
    others: Vec<(String, DinoSae)>,
    teacher: Option<crate::model::vit::Vit>,
    /// LPIPS-VGG-like weights, loaded on first use (Err: why not; reported once per request).
    lpips: Option<std::result::Result<crate::lpips::LpipsVgg, String>>,
    /// The fitted input and the reconstructions (main, then compare models) of the current image.
    recons: Option<(RgbF32, Vec<RgbF32>)>,
}

/// Handle to the engine thread.
pub struct Worker {
    tx: Sender<Command>,
    rx: Receiver<Event>,
}

impl Worker {
    /// Start the thread on the backend `DINO_SAE_BACKEND` names (default: auto). `notify` is called after each
    /// event (e.g. egui's `request_repaint`).
    pub fn spawn(notify: impl Fn() + Send + 'static) -> Self {
        Self::spawn_on(crate::backend::BackendChoice::from_env(), notify)
    }

    /// Start the thread on a chosen backend. The first event is `BackendReady` (or `Failed` and then CPU, when
    /// wgpu was asked for and no adapter exists).
    pub fn spawn_on(choice: crate::backend::BackendChoice, notify: impl Fn() + Send + 'static) -> Self {
        let (tx, crx) = channel::<Command>();
        let (etx, rx) = channel::<Event>();
        std::thread::Builder::new()
            .name("dino-sae-engine".into())
            .spawn(move || {
                let backend = match crate::backend::Backend::select(choice) {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = etx.send(Event::Failed { id: None, error: format!("{e}; using the CPU") });
                        crate::backend::Backend::cpu()
                    }
                };
                let _ = etx.send(Event::BackendReady { name: backend.name.clone(), wgpu: backend.is_wgpu });
                notify();
                let mut state = State {
                    device: backend.device,
                    model: None,
                    current: None,
                    history: Vec::new(),
                    dit: None,
                    others: Vec::new(),
                    teacher: None,
                    lpips: None,
                    recons: None,
                };
                while let Ok(first) = crx.recv() {
                    // Take everything queued; of several Steer commands only the newest runs.
                    let mut batch = vec![first];
                    while let Ok(c) = crx.try_recv() {
                        batch.push(c);
                    }
                    let last_steer = batch.iter().rposition(|c| matches!(c, Command::Steer { .. }));
                    let mut stop = false;
                    for (i, cmd) in batch.into_iter().enumerate() {
                    if matches!(cmd, Command::Shutdown) {
                        stop = true;
                        break;
                    }
                    if matches!(cmd, Command::Steer { .. }) && Some(i) != last_steer {
                        continue;
                    }
                    let id = match &cmd {
                        Command::Reconstruct { id, .. }
                        | Command::PatchCosine { id, .. }
                        | Command::Steer { id, .. }
                        | Command::Sample { id, .. }
                        | Command::Walk { id, .. }
                        | Command::WalkImages { id, .. }
                        | Command::PatchDirection { id, .. }
                        | Command::Lpips { id }
                        | Command::ClassMean { id, .. } => Some(*id),
                        _ => None,
                    };
                    let emit = |ev: Event| {
                        let _ = etx.send(ev);
                        notify();
                    };
                    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(cmd, &mut state, &emit)));
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
                        stop = true;
                        break;
                    }
                    notify();
                    }
                    if stop {
                        break;
                    }
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

/// Where the default model is looked for, in order: `$DINO_SAE_DEFAULT_MODEL`, `assets/default-model` of the
/// source tree this binary was built from, and `assets/default-model` under the current directory (a binary
/// copied elsewhere, or built in a clone that is gone).
pub fn default_model_candidates() -> Vec<PathBuf> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os("DINO_SAE_DEFAULT_MODEL") {
        c.push(PathBuf::from(p));
    }
    c.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/default-model"));
    if let Ok(cwd) = std::env::current_dir() {
        c.push(cwd.join("assets/default-model"));
    }
    c
}

/// The default model folder: the first of [`default_model_candidates`] that holds a model.
pub fn default_model_dir() -> Option<PathBuf> {
    default_model_candidates().into_iter().find(|d| d.join("model.safetensors").exists())
}

/// [`default_model_dir`], or an error naming every place looked in.
pub fn require_default_model_dir() -> crate::Result<PathBuf> {
    default_model_dir().ok_or_else(|| {
        let looked: Vec<String> = default_model_candidates().iter().map(|p| p.display().to_string()).collect();
        crate::EngineError::Checkpoint(format!("no default model found (looked in {})", looked.join(", ")))
    })
}

/// The generator folder of the default model, if present.
pub fn default_dit_dir() -> Option<PathBuf> {
    default_model_dir().map(|d| d.join("dit")).filter(|d| d.join("model.safetensors").exists())
}

fn handle(cmd: Command, state: &mut State, emit: &dyn Fn(Event)) -> crate::Result<Event> {
    let device = state.device.clone();
    match cmd {
        Command::LoadModel(src) => {
            let (m, name, report, random) = match src {
                ModelSource::Default => {
                    let dir = require_default_model_dir()?;
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
            let is_default = info.name == "default model";
            state.model = Some(m);
            state.recons = None;
            state.current = None;
            state.history.clear();
            state.dit = None;
            if is_default {
                if let Some(d) = default_dit_dir() {
                    match crate::generate::load_dit(&d, &device) {
                        Ok(b) => {
                            emit(Event::Loaded(info.clone()));
                            let ev = Event::DitLoaded { classes: b.meta.classes.clone(), grid: b.meta.grid, s_vae: b.meta.s_vae };
                            state.dit = Some(b);
                            return Ok(ev);
                        }
                        Err(e) => emit(Event::Failed { id: None, error: format!("default generator: {e}") }),
                    }
                }
            }
            Ok(Event::Loaded(info))
        }
        Command::Reconstruct { id, image, fit } => {
            let m = state.model.as_ref().ok_or_else(|| crate::EngineError::Config("no model loaded".into()))?;
            let t0 = Instant::now();
            let img = image_io::fit16(&image, fit);
            let x = image_io::to_tensor(&[&img], &m.cfg.pixels, &device)?;
            let lat = m.encode(x.clone())?;
            let grid = lat.grid();
            let mag = crate::raw::RawTensor::from_tensor(sphere::magnitude(&lat.patches))?;
            let raw = crate::raw::RawTensor::from_tensor(lat.patches.clone())?;
            let teacher_cosine = match &state.teacher {
                Some(t) => {
                    let (gh, gw) = grid;
                    let ps = t.cfg.patch_size;
                    let tx = crate::interp::resize_bicubic(x.clone(), ps * gh, ps * gw, false, None);
                    let tt = t.forward(tx, &mut crate::model::nn::Probe::default()).patch_tokens();
                    let st = crate::model::sae::tokens_to_map(tt, grid);
                    let c = crate::fixture::cosine_last(
                        lat.patches.clone().reshape([1, lat.patches.dims()[1], gh * gw]).swap_dims(1, 2),
                        st.reshape([1, lat.patches.dims()[1], gh * gw]).swap_dims(1, 2),
                    );
                    Some(crate::raw::RawTensor::from_tensor(c)?.data)
                }
                None => None,
            };
            let rec = image_io::from_tensor(m.decode(lat.patches)?, &m.cfg.pixels)?;
            let orig: RgbF32 = image_io::rgb8_to_f32(&img);
            let mut others = Vec::new();
            let mut other_recons = Vec::new();
            for (name, om) in &state.others {
                let ox = image_io::to_tensor(&[&img], &om.cfg.pixels, &device)?;
                let r = image_io::from_tensor(om.decode(om.encode(ox)?.patches)?, &om.cfg.pixels)?;
                others.push((name.clone(), image_io::f32_to_rgb8(&r[0]), metrics::psnr(&orig, &r[0]), metrics::ssim(&orig, &r[0])));
                other_recons.push(r[0].clone());
            }
            state.recons = Some((orig.clone(), std::iter::once(rec[0].clone()).chain(other_recons).collect()));
            state.history.push(raw.clone());
            if state.history.len() > 8 {
                state.history.remove(0);
            }
            let refs: Vec<&crate::raw::RawTensor> = state.history.iter().collect();
            let pca = crate::inspect::Pca::fit(&refs);
            let pca_rgb = pca.as_ref().map(|p| p.rgb(&raw)).unwrap_or_default();
            let pca_axes: Vec<Vec<f32>> =
                pca.map(|p| p.axes.iter().map(|a| a.iter().map(|&v| v as f32).collect()).collect()).unwrap_or_default();
            state.current = Some((raw, img.clone()));
            Ok(Event::Reconstructed {
                id,
                psnr: metrics::psnr(&orig, &rec[0]),
                ssim: metrics::ssim(&orig, &rec[0]),
                recon: image_io::f32_to_rgb8(&rec[0]),
                input: img,
                magnitude: mag.data,
                pca_rgb,
                pca_axes,
                teacher_cosine,
                others,
                grid,
                millis: t0.elapsed().as_secs_f64() * 1e3,
            })
        }
        Command::PatchCosine { id, patch } => {
            let (lat, _) = state.current.as_ref().ok_or_else(|| crate::EngineError::Config("no image encoded yet".into()))?;
            let rows = crate::inspect::patch_rows(lat);
            let v = rows.get(patch).ok_or_else(|| crate::EngineError::Shape(format!("patch {patch} out of range")))?;
            Ok(Event::CosineMap { id, patch, values: crate::inspect::cosine_to(lat, v) })
        }
        Command::Steer { id, edit } => {
            let m = state.model.as_ref().ok_or_else(|| crate::EngineError::Config("no model loaded".into()))?;
            let (lat, img) = state.current.as_ref().ok_or_else(|| crate::EngineError::Config("no image encoded yet".into()))?;
            let t0 = Instant::now();
            let edited = crate::steer::apply(lat, &edit, &device)?;
            let rec = image_io::from_tensor(m.decode(edited.to_tensor(&device)?)?, &m.cfg.pixels)?;
            Ok(Event::Steered {
                id,
                psnr: metrics::psnr(&image_io::rgb8_to_f32(img), &rec[0]),
                image: image_io::f32_to_rgb8(&rec[0]),
                magnitude: crate::inspect::magnitudes(&edited),
                millis: t0.elapsed().as_secs_f64() * 1e3,
            })
        }
        Command::ExportLatent { path, edited } => {
            let (lat, _) = state.current.as_ref().ok_or_else(|| crate::EngineError::Config("no image encoded yet".into()))?;
            let z = match edited {
                Some(e) => crate::steer::apply(lat, &e, &device)?,
                None => lat.clone(),
            };
            let mut t = crate::raw::TensorMap::new();
            t.insert("latent".into(), z);
            crate::raw::write_safetensors(&path, &t, &Default::default(), crate::raw::Precision::F32)?;
            Ok(Event::Exported { path })
        }
        Command::AddCompareModel(path) => {
            let l = load_sae(&path, &device, false)?;
            let name = path.display().to_string();
            state.others.push((name.clone(), l.model));
            Ok(Event::CompareModelAdded { name })
        }
        Command::LoadTeacher(path) => {
            let l = crate::checkpoint::load_backbone(&path, &device, false)?;
            if let Some(m) = &state.model {
                if l.model.cfg.dim != m.cfg.encoder.dim {
                    return Err(crate::EngineError::Config(format!(
                        "teacher width {} differs from the model's latent width {}",
                        l.model.cfg.dim, m.cfg.encoder.dim
                    )));
                }
            }
            state.teacher = Some(l.model);
            Ok(Event::TeacherLoaded { name: path.display().to_string() })
        }
        Command::LoadDit(path) => {
            let m = state.model.as_ref().ok_or_else(|| crate::EngineError::Config("load an autoencoder first".into()))?;
            let b = crate::generate::load_dit(&path, &device)?;
            crate::generate::check_sae(&b.meta, m)?;
            let ev = Event::DitLoaded { classes: b.meta.classes.clone(), grid: b.meta.grid, s_vae: b.meta.s_vae };
            state.dit = Some(b);
            Ok(ev)
        }
        Command::Sample { id, spec, preview_every, cancel } => {
            use std::sync::atomic::Ordering;
            let m = state.model.as_ref().ok_or_else(|| crate::EngineError::Config("no model loaded".into()))?;
            let b = state.dit.as_ref().ok_or_else(|| crate::EngineError::Config("no generator loaded".into()))?;
            if !matches!(b.meta.objective_kind, crate::generate::ObjectiveKind::Rfm) {
                return Err(crate::EngineError::Config("this generator was trained with Euclidean FM; the app samples on spheres (use `dino-sae sample`)".into()));
            }
            if spec.class >= b.meta.classes.len() {
                return Err(crate::EngineError::Config(format!("class {} out of range", spec.class)));
            }
            let t0 = Instant::now();
            let [h, w] = b.meta.grid;
            let s_vae = spec.s_vae.unwrap_or(b.meta.s_vae);
            let sc = crate::generate::sphere_config(b, &crate::generate::SampleSpec { steps: spec.steps.max(1), ..spec.clone() });
            let y = vec![spec.class as i64; spec.count.max(1)];
            let every = preview_every.max(1);
            let mut cb = |info: &crate::sampler::StepInfo, z: &burn::tensor::Tensor<4>| {
                if cancel.load(Ordering::Relaxed) {
                    return false;
                }
                if info.step % every == 0 && info.step < info.steps {
                    let zr = sphere::project_to_radius(z, s_vae);
                    if let Ok(imgs) = crate::generate::decode_images(m, zr) {
                        if let Ok(preview) = crate::generate::tile(&imgs) {
                            let el = t0.elapsed().as_secs_f64();
                            let eta = el / info.step as f64 * (info.steps - info.step) as f64;
                            emit(Event::SampleProgress { id, step: info.step, of: info.steps, eta_secs: eta, preview });
                        }
                    }
                }
                true
            };
            let out = crate::sampler::sample_sphere(&b.model, &y, [b.meta.channels, h, w], &sc, &device, &mut cb);
            let images = crate::generate::decode_images(m, out.z)?;
            Ok(Event::Sampled {
                id,
                images,
                cancelled: out.cancelled,
                steps_done: out.steps_done,
                millis: t0.elapsed().as_secs_f64() * 1e3,
            })
        }
        Command::ClassMean { id, class, count } => {
            let b = state.dit.as_ref().ok_or_else(|| crate::EngineError::Config("no generator loaded".into()))?;
            let spec = crate::generate::SampleSpec { class, count: count.max(1), steps: 10, seed: 7, ..Default::default() };
            let z = crate::generate::sample_latents(b, &spec)?; // [n, C, h, w]
            let d = sphere::direction(&z);
            let [n, c, h, w] = d.dims();
            let mean = d.swap_dims(0, 1).reshape([c, n * h * w]).mean_dim(1).reshape([c]);
            let direction = mean.into_data().convert::<f32>().try_to_vec::<f32>().map_err(|e| crate::EngineError::Data(format!("{e:?}")))?;
            Ok(Event::ClassMean { id, class, direction })
        }
        Command::Walk { id, spec, seed_b, frames } => {
            let m = state.model.as_ref().ok_or_else(|| crate::EngineError::Config("no model loaded".into()))?;
            let b = state.dit.as_ref().ok_or_else(|| crate::EngineError::Config("no generator loaded".into()))?;
            let t0 = Instant::now();
            let one = crate::generate::SampleSpec { count: 1, ..spec.clone() };
            let za = crate::generate::sample_latents(b, &one)?;
            let zb = crate::generate::sample_latents(b, &crate::generate::SampleSpec { seed: seed_b, ..one })?;
            let zs = crate::generate::slerp_frames(&za, &zb, frames.clamp(1, 120))?;
            let z = burn::tensor::Tensor::cat(zs, 0);
            let frames = crate::generate::decode_images(m, z)?;
            Ok(Event::Walked { id, frames, millis: t0.elapsed().as_secs_f64() * 1e3 })
        }
        Command::WalkImages { id, a, b, frames } => {
            let m = state.model.as_ref().ok_or_else(|| crate::EngineError::Config("no model loaded".into()))?;
            let t0 = Instant::now();
            let (ia, ib) = crate::generate::pair_images(&a, &b, None)?;
            let x = image_io::to_tensor(&[&ia, &ib], &m.cfg.pixels, &device)?;
            let z = m.encode(x)?.patches;
            let (za, zb) = (z.clone().narrow(0, 0, 1), z.narrow(0, 1, 1));
            let zs = crate::generate::slerp_frames(&za, &zb, frames.clamp(1, 120))?;
            let frames = crate::generate::decode_images(m, burn::tensor::Tensor::cat(zs, 0))?;
            Ok(Event::Walked { id, frames, millis: t0.elapsed().as_secs_f64() * 1e3 })
        }
        Command::Lpips { id } => {
            let (orig, recs) = state.recons.as_ref().ok_or_else(|| crate::EngineError::Config("no reconstruction yet".into()))?;
            if state.lpips.is_none() {
                state.lpips = Some(crate::lpips::LpipsVgg::load(&crate::lpips::default_dir(), &device).map_err(|e| e.to_string()));
            }
            let lp = match state.lpips.as_ref() {
                Some(Ok(l)) => l,
                Some(Err(e)) => return Err(crate::EngineError::Checkpoint(format!("LPIPS-VGG-like: {e}"))),
                None => unreachable!("set above"),
            };
            // VGG16 costs ~0.3 GFLOP per 1000 pixels: measure large images at a size fitting 512 px
            let fit = |img: &RgbF32| -> RgbF32 {
                let side = img.width.max(img.height);
                if side <= 512 {
                    return img.clone();
                }
                let (w, h) = ((img.width * 512 / side).max(16) as u32, (img.height * 512 / side).max(16) as u32);
                image_io::rgb8_to_f32(&image_io::resize_exact(&image_io::f32_to_rgb8(img), w, h))
            };
            let o = fit(orig);
            let mut scores = Vec::with_capacity(recs.len());
            for r in recs {
                scores.push(lp.distance_rgb(&o, &fit(r), &device)?);
            }
            let main = scores.remove(0);
            Ok(Event::LpipsScores { id, main, others: scores, size: (o.width, o.height) })
        }
        Command::PatchDirection { id, patch } => {
            let (lat, _) = state.current.as_ref().ok_or_else(|| crate::EngineError::Config("no image encoded yet".into()))?;
            let (c, hw) = (lat.shape[1], lat.shape[2] * lat.shape[3]);
            if patch >= hw {
                return Err(crate::EngineError::Config(format!("patch {patch} out of range ({hw} patches)")));
            }
            let v: Vec<f32> = (0..c).map(|k| lat.data[k * hw + patch]).collect();
            let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            if !(n.is_finite() && n > 0.0) {
                return Err(crate::EngineError::Data(format!("patch {patch} has no direction (|z| = {n})")));
            }
            Ok(Event::PatchDirection { id, patch, direction: v.iter().map(|x| (*x as f64 / n) as f32).collect() })
        }
        Command::Shutdown => Err(crate::EngineError::Cancelled),
    }
}
