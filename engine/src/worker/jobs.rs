//! What each job does. State-changing jobs take `&mut State`; read-only ones (`handle_readonly`) take `&State`
//! so they can also run between the steps of a long background job. Every job consults the memory preflight
//! before it allocates.

use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Tensor;
use image::RgbImage;

use super::protocol::*;
use crate::checkpoint::load_sae;
use crate::error::{EngineError, Result};
use crate::image_io::{self, Fit};
use crate::metrics::{self, RgbF32};
use crate::model::sae::{DinoSae, SaeConfig};
use crate::preflight::{self, Budget};
use crate::raw::RawTensor;
use crate::sphere;

struct Held {
    model: DinoSae,
    info: ModelInfo,
}

/// What the worker keeps between jobs.
pub(super) struct State {
    device: burn::tensor::Device,
    main: Option<Held>,
    /// Latent `[1, C, h, w]` and fitted input of the current image, and the version of that latent.
    current: Option<(RawTensor, RgbImage)>,
    version: u64,
    /// Latents of every image reconstructed with this model (for the joint PCA), newest last, at most 8.
    history: Vec<RawTensor>,
    dit: Option<(crate::generate::DitBundle, GeneratorInfo)>,
    others: Vec<Held>,
    teacher: Option<(crate::model::vit::Vit, String)>,
    /// LPIPS-VGG-like weights, loaded on first use (Err: why not; reported once per request).
    lpips: Option<std::result::Result<crate::lpips::LpipsVgg, String>>,
    /// The fitted input and the reconstructions (main, then compare models) of the current image.
    recons: Option<(RgbF32, Vec<RgbF32>)>,
    /// The memory budget every job is preflighted against (None: `Budget::from_env()`, read per job).
    budget: Option<Budget>,
    /// The main model's preview decoder (steer previews, sampling previews).
    preview: Option<(crate::model::preview::PreviewDecoder, PreviewInfo)>,
}

impl State {
    pub(super) fn new(device: burn::tensor::Device, budget: Option<Budget>) -> Self {
        Self {
            device,
            main: None,
            current: None,
            version: 0,
            history: Vec::new(),
            dit: None,
            others: Vec::new(),
            teacher: None,
            lpips: None,
            recons: None,
            budget,
            preview: None,
        }
    }

    fn budget(&self) -> Budget {
        self.budget.clone().unwrap_or_else(Budget::from_env)
    }

    fn models(&self) -> Models {
        Models {
            main: self.main.as_ref().map(|h| h.info.clone()),
            compare: self.others.iter().map(|h| h.info.clone()).collect(),
            teacher: self.teacher.as_ref().map(|t| t.1.clone()),
            generator: self.dit.as_ref().map(|d| d.1.clone()),
            preview: self.preview.as_ref().map(|p| p.1.clone()),
        }
    }

    /// Load the preview decoder at `dir` for the main model (its latent width must match).
    fn load_preview(&mut self, dir: &std::path::Path) -> Result<()> {
        let (p, _report) = crate::model::preview::PreviewDecoder::load(dir, &self.device)?;
        let m = self.model()?;
        if p.cfg.latent_channels != m.cfg.decoder.latent_channels {
            return Err(EngineError::Config(format!(
                "preview decoder expects {} latent channels, the model has {}",
                p.cfg.latent_channels, m.cfg.decoder.latent_channels
            )));
        }
        let info = PreviewInfo {
            path: dir.to_path_buf(),
            params: p.num_params(),
            gflop_256: crate::flops::preview(&p.cfg, 16, 16) / 1e9,
        };
        self.preview = Some((p, info));
        Ok(())
    }

    /// Look for the preview decoder that ships with the main model (`MODEL/preview`); a broken one is reported,
    /// the model still works without it.
    fn find_preview(&mut self, src: &ModelSource, emit: &dyn Fn(Event)) {
        self.preview = None;
        let dir = match src {
            ModelSource::Default => crate::model::preview::default_preview_dir(),
            ModelSource::Path(p) => crate::model::preview::preview_dir_for(p),
            ModelSource::RandomPreset(_) => None,
        };
        if let Some(d) = dir
            && let Err(e) = self.load_preview(&d) {
                emit(Event::Failed(Failed {
                    kind: None,
                    id: None,
                    error: format!("preview decoder {}: {e}", d.display()),
                    cancelled: false,
                }));
            }
    }

    fn model(&self) -> Result<&DinoSae> {
        self.main.as_ref().map(|h| &h.model).ok_or_else(|| EngineError::Config("no model loaded".into()))
    }

    fn current(&self) -> Result<&(RawTensor, RgbImage)> {
        self.current.as_ref().ok_or_else(|| EngineError::Config("no image encoded yet".into()))
    }

    fn generator(&self) -> Result<&crate::generate::DitBundle> {
        self.dit.as_ref().map(|d| &d.0).ok_or_else(|| EngineError::Config("no generator loaded".into()))
    }
}

fn held(model: DinoSae, name: String, report: &crate::weights::LoadReport, random: bool, source: ModelSource) -> Held {
    let params = model.num_params();
    let info = ModelInfo {
        name,
        config: serde_json::to_string_pretty(&model.cfg).unwrap_or_default(),
        params,
        bytes: params as u64 * 4,
        report: report.summary(8),
        random,
        source,
    };
    Held { model, info }
}

fn load_held(src: &ModelSource, device: &burn::tensor::Device) -> Result<Held> {
    match src {
        ModelSource::Default => {
            let dir = super::require_default_model_dir()?;
            let l = load_sae(&dir, device, false)?;
            Ok(held(l.model, "default model".into(), &l.report, false, src.clone()))
        }
        ModelSource::Path(p) => {
            let l = load_sae(p, device, false)?;
            Ok(held(l.model, p.display().to_string(), &l.report, false, src.clone()))
        }
        ModelSource::RandomPreset(p) => {
            let cfg = SaeConfig::preset(p).ok_or_else(|| EngineError::Config(format!("unknown preset {p}")))?;
            let (m, r) = DinoSae::random(&cfg, 0, device)?;
            Ok(held(m, format!("{p} (RANDOM weights)"), &r, true, src.clone()))
        }
    }
}

fn generator_info(b: &crate::generate::DitBundle, path: Option<std::path::PathBuf>) -> GeneratorInfo {
    GeneratorInfo { path, classes: b.meta.classes.clone(), grid: b.meta.grid, s_vae: b.meta.s_vae }
}

fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}

/// Jobs that only read the state (and are interactive): they may run while a background job holds the engine.
pub(super) fn is_readonly(job: &Job) -> bool {
    matches!(
        job,
        Job::Steer { .. }
            | Job::SteerPreview { .. }
            | Job::PatchCosine { .. }
            | Job::PatchDirection { .. }
            | Job::TeacherCosine
    )
}

/// Run any job. `pump` is called between the steps of long jobs (sampling, renders, walks).
pub(super) fn handle(
    job: Job,
    ticket: &Ticket,
    state: &mut State,
    emit: &dyn Fn(Event),
    pump: &mut dyn FnMut(&State, &Ticket),
) -> Result<Event> {
    let device = state.device.clone();
    let id = ticket.id;
    match job {
        Job::LoadModel(src) => {
            let h = load_held(&src, &device)?;
            let is_default = src == ModelSource::Default;
            state.main = Some(h);
            state.recons = None;
            state.current = None;
            state.version += 1;
            state.history.clear();
            state.dit = None;
            state.find_preview(&src, emit);
            if is_default
                && let Some(d) = super::default_dit_dir() {
                    match crate::generate::load_dit(&d, &device) {
                        Ok(b) => {
                            let info = generator_info(&b, Some(d));
                            state.dit = Some((b, info));
                        }
                        Err(e) => emit(Event::Failed(Failed {
                            kind: None,
                            id: None,
                            error: format!("default generator: {e}"),
                            cancelled: false,
                        })),
                    }
                }
            Ok(Event::Loaded(Loaded { kind: JobKind::LoadModel, id, models: state.models() }))
        }
        Job::AddCompareModel(path) => {
            let h = load_held(&ModelSource::Path(path), &device)?;
            state.others.push(h);
            Ok(Event::Loaded(Loaded { kind: JobKind::LoadCompare, id, models: state.models() }))
        }
        Job::PromoteCompareModel(i) => {
            if i >= state.others.len() {
                return Err(EngineError::Config(format!("no compare model {i}")));
            }
            let main = state.main.take().ok_or_else(|| EngineError::Config("no model loaded".into()))?;
            let new_main = std::mem::replace(&mut state.others[i], main);
            let src = new_main.info.source.clone();
            state.main = Some(new_main);
            state.find_preview(&src, emit);
            // the cached latent belongs to the old main model
            state.current = None;
            state.recons = None;
            state.history.clear();
            state.version += 1;
            Ok(Event::Loaded(Loaded { kind: JobKind::LoadCompare, id, models: state.models() }))
        }
        Job::RemoveCompareModel(i) => {
            if i >= state.others.len() {
                return Err(EngineError::Config(format!("no compare model {i}")));
            }
            state.others.remove(i);
            Ok(Event::Loaded(Loaded { kind: JobKind::LoadCompare, id, models: state.models() }))
        }
        Job::LoadTeacher(path) => {
            let l = crate::checkpoint::load_backbone(&path, &device, false)?;
            if let Ok(m) = state.model()
                && l.model.cfg.dim != m.cfg.encoder.dim {
                    return Err(EngineError::Config(format!(
                        "teacher width {} differs from the model's latent width {}",
                        l.model.cfg.dim, m.cfg.encoder.dim
                    )));
                }
            state.teacher = Some((l.model, path.display().to_string()));
            Ok(Event::Loaded(Loaded { kind: JobKind::LoadTeacher, id, models: state.models() }))
        }
        Job::LoadGenerator(path) => {
            let m = state.model()?;
            let b = crate::generate::load_dit(&path, &device)?;
            crate::generate::check_sae(&b.meta, m)?;
            let info = generator_info(&b, Some(path));
            state.dit = Some((b, info));
            Ok(Event::Loaded(Loaded { kind: JobKind::LoadGenerator, id, models: state.models() }))
        }
        Job::LoadPreview(path) => {
            state.load_preview(&path)?;
            Ok(Event::Loaded(Loaded { kind: JobKind::LoadPreview, id, models: state.models() }))
        }
        Job::Reconstruct { image, fit } => reconstruct(state, ticket, &image, fit),
        Job::LoadLatent { latent } => load_latent(state, ticket, latent),
        Job::Lpips => lpips(state, id),
        Job::Sample { spec, preview_every } => sample(state, ticket, spec, preview_every, emit, pump),
        Job::ClassMean { class, count } => {
            let b = state.generator()?;
            let spec =
                crate::generate::SampleSpec { class, count: count.max(1), steps: 10, seed: 7, ..Default::default() };
            let z = crate::generate::sample_latents(b, &spec)?; // [n, C, h, w]
            let d = sphere::direction(&z);
            let [n, c, h, w] = d.dims();
            let mean = d.swap_dims(0, 1).reshape([c, n * h * w]).mean_dim(1).reshape([c]);
            let direction = mean
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| EngineError::Data(format!("{e:?}")))?;
            Ok(Event::ClassMean(ClassMean { id, class, direction }))
        }
        Job::Walk { spec, seed_b, frames } => {
            let st: &State = state;
            let (m, b) = (st.model()?, st.generator()?);
            let t0 = Instant::now();
            let frames = frames.clamp(1, 120);
            let [gh, gw] = spec.grid.unwrap_or(b.meta.grid);
            preflight::check_decode(&m.cfg, frames + 1, gh, gw, &st.budget())?;
            let one = crate::generate::SampleSpec { count: 1, ..spec.clone() };
            let za = crate::generate::sample_latents(b, &one)?;
            pump(st, ticket);
            let zb = crate::generate::sample_latents(b, &crate::generate::SampleSpec { seed: seed_b, ..one })?;
            pump(st, ticket);
            let zs = crate::generate::slerp_frames(&za, &zb, frames)?;
            preview_frames(st, &zs, id, t0, emit);
            let frames = decode_frames(m, zs, ticket, &mut |t| pump(st, t))?;
            Ok(Event::Walked(Walked { id, frames, millis: ms(t0), preview: false }))
        }
        Job::WalkImages { a, b, frames } => {
            let st: &State = state;
            let m = st.model()?;
            let t0 = Instant::now();
            let (ia, ib) = crate::generate::pair_images(&a, &b, None)?;
            let frames = frames.clamp(1, 120);
            let budget = st.budget();
            preflight::check_encode(&m.cfg, 2, ia.width() as usize, ia.height() as usize, &budget)?;
            preflight::check_decode(&m.cfg, 1, ia.height() as usize / 16, ia.width() as usize / 16, &budget)?;
            let x = image_io::to_tensor(&[&ia, &ib], &m.cfg.pixels, &st.device)?;
            let z = m.encode_cancellable(x, &ticket.cancel)?.patches;
            let (za, zb) = (z.clone().narrow(0, 0, 1), z.narrow(0, 1, 1));
            let zs = crate::generate::slerp_frames(&za, &zb, frames)?;
            preview_frames(st, &zs, id, t0, emit);
            let frames = decode_frames(m, zs, ticket, &mut |t| pump(st, t))?;
            Ok(Event::Walked(Walked { id, frames, millis: ms(t0), preview: false }))
        }
        Job::ExportLatent { path, edit } => {
            let (lat, _) = state.current()?;
            let z = match edit {
                Some(e) => crate::steer::apply(lat, &e, &device)?,
                None => lat.clone(),
            };
            let mut t = crate::raw::TensorMap::new();
            t.insert("latent".into(), z);
            crate::raw::write_safetensors(&path, &t, &Default::default(), crate::raw::Precision::F32)?;
            Ok(Event::Exported(Exported { id, path }))
        }
        Job::Render { original, fit, edit, tiling } => render(state, ticket, &original, fit, &edit, tiling, emit, pump),
        job @ (Job::Steer { .. }
        | Job::SteerPreview { .. }
        | Job::PatchCosine { .. }
        | Job::PatchDirection { .. }
        | Job::TeacherCosine) => handle_readonly(job, ticket, state),
    }
}

/// With a preview decoder, send the walk's frames decoded by it first (playable at once; the full decode follows).
fn preview_frames(st: &State, zs: &[Tensor<4>], id: u64, t0: Instant, emit: &dyn Fn(Event)) {
    let (Some((p, _)), Ok(m)) = (st.preview.as_ref(), st.model()) else { return };
    let mut frames = Vec::with_capacity(zs.len());
    for z in zs {
        match p.decode(z.clone()).and_then(|x| image_io::from_tensor(x, &m.cfg.pixels)) {
            Ok(r) => frames.extend(r.iter().map(image_io::f32_to_rgb8)),
            Err(_) => return, // the full decode follows anyway
        }
    }
    emit(Event::Walked(Walked { id, frames, millis: ms(t0), preview: true }));
}

/// Decode frames one at a time (each is one preflighted decode), pumping between them.
fn decode_frames(
    m: &DinoSae,
    zs: Vec<Tensor<4>>,
    ticket: &Ticket,
    pump: &mut dyn FnMut(&Ticket),
) -> Result<Vec<RgbImage>> {
    let mut out = Vec::with_capacity(zs.len());
    for z in zs {
        if ticket.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let x = m.decode_cancellable(z, &ticket.cancel)?;
        out.extend(image_io::from_tensor(x, &m.cfg.pixels)?.iter().map(image_io::f32_to_rgb8));
        pump(ticket);
    }
    Ok(out)
}

/// The read-only interactive jobs.
pub(super) fn handle_readonly(job: Job, ticket: &Ticket, state: &State) -> Result<Event> {
    let id = ticket.id;
    let device = &state.device;
    match job {
        Job::PatchCosine { patch } => {
            let (lat, _) = state.current()?;
            let rows = crate::inspect::patch_rows(lat);
            let v = rows.get(patch).ok_or_else(|| EngineError::Shape(format!("patch {patch} out of range")))?;
            Ok(Event::CosineMap(CosineMap {
                id,
                version: state.version,
                patch,
                values: crate::inspect::cosine_to(lat, v),
            }))
        }
        Job::PatchDirection { patch } => {
            let (lat, _) = state.current()?;
            let (c, hw) = (lat.shape[1], lat.shape[2] * lat.shape[3]);
            if patch >= hw {
                return Err(EngineError::Config(format!("patch {patch} out of range ({hw} patches)")));
            }
            let v: Vec<f32> = (0..c).map(|k| lat.data[k * hw + patch]).collect();
            let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            if !(n.is_finite() && n > 0.0) {
                return Err(EngineError::Data(format!("patch {patch} has no direction (|z| = {n})")));
            }
            Ok(Event::PatchDirection(PatchDirection {
                id,
                patch,
                direction: v.iter().map(|x| (*x as f64 / n) as f32).collect(),
            }))
        }
        Job::TeacherCosine => {
            let (t, _) = state.teacher.as_ref().ok_or_else(|| EngineError::Config("no teacher loaded".into()))?;
            let m = state.model()?;
            let (lat, img) = state.current()?;
            let (gh, gw) = (lat.shape[2], lat.shape[3]);
            let ps = t.cfg.patch_size;
            let mut budget_cfg = m.cfg.clone();
            budget_cfg.encoder = t.cfg.clone();
            preflight::check_encode(&budget_cfg, 1, ps * gw, ps * gh, &state.budget())?;
            let x = image_io::to_tensor(&[img], &m.cfg.pixels, device)?;
            let tx = crate::interp::resize_bicubic(x, ps * gh, ps * gw, false, None);
            let mut probe = crate::model::nn::Probe::cancellable(ticket.cancel.clone());
            let tt = t.forward(tx, &mut probe).patch_tokens();
            if probe.cancelled() {
                return Err(EngineError::Cancelled);
            }
            let st = crate::model::sae::tokens_to_map(tt, (gh, gw));
            let c = lat.shape[1];
            let z: Tensor<4> = lat.to_tensor(device)?;
            let cos = crate::fixture::cosine_last(
                z.reshape([1, c, gh * gw]).swap_dims(1, 2),
                st.reshape([1, c, gh * gw]).swap_dims(1, 2),
            );
            Ok(Event::TeacherCosine(TeacherCosine {
                id,
                version: state.version,
                values: RawTensor::from_tensor(cos)?.data,
            }))
        }
        Job::Steer { edit } => steer(state, ticket, &edit, false),
        Job::SteerPreview { edit } => steer(state, ticket, &edit, true),
        other => Err(EngineError::Config(format!("{:?} is not a read-only job", other.kind()))),
    }
}

/// Apply `edit` to the cached latent and decode it with the full decoder, or the preview decoder (`preview`).
fn steer(state: &State, ticket: &Ticket, edit: &crate::steer::SteerEdit, preview: bool) -> Result<Event> {
    if preview && state.preview.is_none() {
        return Err(EngineError::Config("no preview decoder loaded".into()));
    }
    let m = state.model()?;
    let (lat, img) = state.current()?;
    let device = &state.device;
    let t0 = Instant::now();
    let edited = crate::steer::apply(lat, edit, device)?;
    let z = edited.to_tensor(device)?;
    let x = if preview {
        let (p, _) = state.preview.as_ref().ok_or_else(|| EngineError::Config("no preview decoder loaded".into()))?;
        p.decode(z)?
    } else {
        preflight::check_decode(&m.cfg, 1, lat.shape[2], lat.shape[3], &state.budget())?;
        m.decode_cancellable(z, &ticket.cancel)?
    };
    if ticket.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    let rec = image_io::from_tensor(x, &m.cfg.pixels)?;
    let mut image = image_io::f32_to_rgb8(&rec[0]);
    if image.dimensions() != img.dimensions() {
        image = image_io::resize_exact(&image, img.width(), img.height());
    }
    Ok(Event::Steered(Steered {
        id: ticket.id,
        version: state.version,
        preview,
        psnr: metrics::psnr(&image_io::rgb8_to_f32(img), &image_io::rgb8_to_f32(&image)),
        image,
        magnitude: crate::inspect::magnitudes(&edited),
        millis: ms(t0),
    }))
}

fn reconstruct(state: &mut State, ticket: &Ticket, image: &RgbImage, fit: Fit) -> Result<Event> {
    let device = state.device.clone();
    let t0 = Instant::now();
    let img = image_io::fit16(image, fit);
    let (w, h) = (img.width() as usize, img.height() as usize);
    let budget = state.budget();
    let m = state.model()?;
    preflight::check_reconstruct(&m.cfg, w, h, &budget)?;
    let x = image_io::to_tensor(&[&img], &m.cfg.pixels, &device)?;
    let lat = m.encode_cancellable(x, &ticket.cancel)?;
    let grid = lat.grid();
    let raw = RawTensor::from_tensor(lat.patches.clone())?;
    let rec = image_io::from_tensor(m.decode_cancellable(lat.patches, &ticket.cancel)?, &m.cfg.pixels)?;
    let orig: RgbF32 = image_io::rgb8_to_f32(&img);
    let mut others = Vec::new();
    let mut other_recons = Vec::new();
    for o in &state.others {
        preflight::check_reconstruct(&o.model.cfg, w, h, &budget)?;
        let ox = image_io::to_tensor(&[&img], &o.model.cfg.pixels, &device)?;
        let z = o.model.encode_cancellable(ox, &ticket.cancel)?.patches;
        let r = image_io::from_tensor(o.model.decode_cancellable(z, &ticket.cancel)?, &o.model.cfg.pixels)?;
        others.push(OtherRecon {
            name: o.info.name.clone(),
            image: image_io::f32_to_rgb8(&r[0]),
            psnr: metrics::psnr(&orig, &r[0]),
            ssim: metrics::ssim(&orig, &r[0]),
        });
        other_recons.push(r[0].clone());
    }
    // nothing above changed the state: a failure or cancel leaves the previous image in place
    let (psnr, ssim) = (metrics::psnr(&orig, &rec[0]), metrics::ssim(&orig, &rec[0]));
    let recon = image_io::f32_to_rgb8(&rec[0]);
    state.recons = Some((orig, std::iter::once(rec[0].clone()).chain(other_recons).collect()));
    Ok(Event::Reconstructed(Box::new(make_current(
        state, ticket.id, raw, img, recon, psnr, ssim, others, grid, t0, false,
    ))))
}

#[allow(clippy::too_many_arguments)]
fn make_current(
    state: &mut State,
    id: u64,
    raw: RawTensor,
    input: RgbImage,
    recon: RgbImage,
    psnr: f64,
    ssim: f64,
    others: Vec<OtherRecon>,
    grid: (usize, usize),
    t0: Instant,
    from_latent: bool,
) -> Reconstruction {
    let magnitude = crate::inspect::magnitudes(&raw);
    state.history.push(raw.clone());
    if state.history.len() > 8 {
        state.history.remove(0);
    }
    let refs: Vec<&RawTensor> = state.history.iter().collect();
    let pca = crate::inspect::Pca::fit(&refs);
    let pca_rgb = pca.as_ref().map(|p| p.rgb(&raw)).unwrap_or_default();
    let pca_axes: Vec<Vec<f32>> =
        pca.map(|p| p.axes.iter().map(|a| a.iter().map(|&v| v as f32).collect()).collect()).unwrap_or_default();
    state.current = Some((raw, input.clone()));
    state.version += 1;
    Reconstruction {
        id,
        version: state.version,
        input,
        recon,
        psnr,
        ssim,
        magnitude,
        pca_rgb,
        pca_axes,
        others,
        grid,
        millis: ms(t0),
        from_latent,
    }
}

fn load_latent(state: &mut State, ticket: &Ticket, latent: RawTensor) -> Result<Event> {
    let t0 = Instant::now();
    let m = state.model()?;
    let c = m.cfg.decoder.latent_channels;
    if latent.shape.len() != 4 || latent.shape[0] != 1 || latent.shape[1] != c {
        return Err(EngineError::Shape(format!(
            "latent {:?} does not fit this model (expects [1, {c}, h, w])",
            latent.shape
        )));
    }
    if !latent.is_finite() {
        return Err(EngineError::NonFinite("latent".into()));
    }
    let grid = (latent.shape[2], latent.shape[3]);
    preflight::check_decode(&m.cfg, 1, grid.0, grid.1, &state.budget())?;
    let rec =
        image_io::from_tensor(m.decode_cancellable(latent.to_tensor(&state.device)?, &ticket.cancel)?, &m.cfg.pixels)?;
    let img = image_io::f32_to_rgb8(&rec[0]);
    state.recons = Some((rec[0].clone(), vec![rec[0].clone()]));
    Ok(Event::Reconstructed(Box::new(make_current(
        state,
        ticket.id,
        latent,
        img.clone(),
        img,
        f64::INFINITY,
        1.0,
        Vec::new(),
        grid,
        t0,
        true,
    ))))
}

fn lpips(state: &mut State, id: u64) -> Result<Event> {
    let device = state.device.clone();
    if state.lpips.is_none() {
        state.lpips =
            Some(crate::lpips::LpipsVgg::load(&crate::lpips::default_dir(), &device).map_err(|e| e.to_string()));
    }
    let (orig, recs) = state.recons.as_ref().ok_or_else(|| EngineError::Config("no reconstruction yet".into()))?;
    let lp = match state.lpips.as_ref() {
        Some(Ok(l)) => l,
        Some(Err(e)) => return Err(EngineError::Checkpoint(format!("LPIPS-VGG-like: {e}"))),
        None => return Err(EngineError::Config("LPIPS-VGG-like weights not loaded".into())),
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
    Ok(Event::Lpips(LpipsScores { id, version: state.version, main, others: scores, size: (o.width, o.height) }))
}

fn sample(
    state: &State,
    ticket: &Ticket,
    spec: crate::generate::SampleSpec,
    preview_every: usize,
    emit: &dyn Fn(Event),
    pump: &mut dyn FnMut(&State, &Ticket),
) -> Result<Event> {
    let (m, b) = (state.model()?, state.generator()?);
    if !matches!(b.meta.objective_kind, crate::generate::ObjectiveKind::Rfm) {
        return Err(EngineError::Config(
            "this generator was trained with Euclidean FM; the app samples on spheres (use `dino-sae sample`)".into(),
        ));
    }
    if spec.class >= b.meta.classes.len() {
        return Err(EngineError::Config(format!("class {} out of range", spec.class)));
    }
    let t0 = Instant::now();
    let [h, w] = spec.grid.unwrap_or(b.meta.grid);
    let count = spec.count.max(1);
    let est = preflight::sample(&b.meta.dit, &m.cfg, count, h, w, spec.steps.max(1), spec.cfg_scale);
    preflight::check(&format!("sampling {count} latents of {h}x{w}"), &est, &state.budget(), || {
        "sample a smaller batch".into()
    })?;
    let s_vae = spec.s_vae.unwrap_or(b.meta.s_vae);
    let sc =
        crate::generate::sphere_config(b, &crate::generate::SampleSpec { steps: spec.steps.max(1), ..spec.clone() });
    let y = vec![spec.class as i64; count];
    let every = preview_every.max(1);
    let id = ticket.id;
    let mut cb = |info: &crate::sampler::StepInfo, z: &Tensor<4>| {
        pump(state, ticket);
        if ticket.is_cancelled() {
            return false;
        }
        if info.step.is_multiple_of(every) && info.step < info.steps {
            let zr = sphere::project_to_radius(z, s_vae);
            let fast = state.preview.as_ref().map(|(p, _)| p);
            let imgs = match fast {
                Some(p) => p
                    .decode(zr)
                    .and_then(|x| image_io::from_tensor(x, &m.cfg.pixels))
                    .map(|v| v.iter().map(image_io::f32_to_rgb8).collect::<Vec<_>>()),
                None => crate::generate::decode_images(m, zr),
            };
            if let Ok(imgs) = imgs
                && let Ok(preview) = crate::generate::tile(&imgs) {
                    let eta = t0.elapsed().as_secs_f64() / info.step.max(1) as f64 * (info.steps - info.step) as f64;
                    emit(Event::Progress(Progress {
                        kind: JobKind::Sample,
                        id,
                        done: info.step,
                        of: info.steps,
                        eta_secs: eta,
                        preview: Some(preview),
                        fast: fast.is_some(),
                    }));
                }
        }
        true
    };
    let out = crate::sampler::sample_sphere(&b.model, &y, [b.meta.channels, h, w], &sc, &state.device, &mut cb);
    let images = crate::generate::decode_images(m, out.z)?;
    Ok(Event::Sampled(Sampled { id, images, cancelled: out.cancelled, steps_done: out.steps_done, millis: ms(t0) }))
}

#[allow(clippy::too_many_arguments)]
fn render(
    state: &State,
    ticket: &Ticket,
    original: &Arc<RgbImage>,
    fit: Fit,
    edit: &crate::steer::SteerEdit,
    tiling: crate::render::Tiling,
    emit: &dyn Fn(Event),
    pump: &mut dyn FnMut(&State, &Ticket),
) -> Result<Event> {
    let m = state.model()?;
    let (work, _) = state.current()?;
    let t0 = Instant::now();
    let budget = state.budget();
    let img = image_io::fit16(original, fit);
    let (gh, gw) = (img.height() as usize / 16, img.width() as usize / 16);
    let (ty, tx) = (
        crate::render::axis_tiles(gh, tiling.tile, tiling.overlap),
        crate::render::axis_tiles(gw, tiling.tile, tiling.overlap),
    );
    let per_pass = ty.len() * tx.len();
    let of = 2 * per_pass;
    let id = ticket.id;
    let mut done = 0usize;
    let mut progress = |_: crate::render::TileProgress| {
        done += 1;
        let eta = t0.elapsed().as_secs_f64() / done as f64 * (of - done) as f64;
        emit(Event::Progress(Progress {
            kind: JobKind::Render,
            id,
            done,
            of,
            eta_secs: eta,
            preview: None,
            fast: false,
        }));
        pump(state, ticket);
    };
    let full = crate::render::encode_tiled(m, &img, tiling, &budget, &state.device, &ticket.cancel, &mut progress)?;
    let mapped = crate::steer::map_to_grid(edit, work, (gh, gw))?;
    let edited = crate::steer::apply(&full, &mapped, &state.device)?;
    drop(full);
    let rgb = crate::render::decode_tiled(m, &edited, tiling, &budget, &state.device, &ticket.cancel, &mut progress)?;
    Ok(Event::Rendered(Rendered {
        id,
        version: state.version,
        image: image_io::f32_to_rgb8(&rgb),
        tiles: per_pass,
        millis: ms(t0),
    }))
}
