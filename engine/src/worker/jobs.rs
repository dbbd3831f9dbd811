//! What each job does. State-changing jobs take `&mut State`; read-only ones (`handle_readonly`) take `&State`
//! so they can also run between the steps of a long background job. Every job consults the memory preflight
//! before it allocates.

use std::time::Instant;

use image::RgbImage;

use super::background::{regenerate, render, sample, walk, walk_images};
use super::protocol::*;
use super::state::{State, generator_info, load_held, ms, one_pass};
use crate::autoencoder::quiet;
use crate::error::{EngineError, Result};
use crate::image_io::{self, Fit};
use crate::metrics::{self, RgbF32};
use crate::tensor_file::RawTensor;

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
            let h = load_held(&src, &device, state.budget())?;
            let is_default = src == ModelSource::Default;
            state.main = Some(h);
            state.recons = None;
            state.current = None;
            state.version += 1;
            state.history.clear();
            state.dit = None;
            state.find_preview(&src, emit);
            if is_default && let Some(d) = crate::dirs::default_dit_dir() {
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
            let h = load_held(&ModelSource::Path(path), &device, state.budget())?;
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
                && l.model.cfg.dim != m.cfg.encoder.dim
            {
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
        Job::Inpaint { spec } => {
            let t0 = Instant::now();
            let latent = regenerate(state, ticket, &spec, emit, pump)?;
            replace_latent(state, ticket, latent, t0)
        }
        Job::RegionDifference { a, b } => {
            let (lat, _) = state.current()?;
            let direction = crate::directions::region_difference(lat, &a, &b)?;
            Ok(Event::RegionDirection(RegionDirection { id, direction, sizes: (a.len(), b.len()) }))
        }
        Job::CopyPatches { patches } => {
            let (lat, _) = state.current()?;
            let (_, _, rows, cols) = crate::steer::selection_box(&patches, (lat.shape[2], lat.shape[3]))
                .map_err(|_| EngineError::Config("select patches of this image to copy".into()))?;
            state.clipboard = Some((lat.clone(), patches.clone()));
            Ok(Event::Copied(Copied { id, patches: patches.len(), span: (rows, cols) }))
        }
        Job::PastePatches { to } => {
            let t0 = Instant::now();
            let (src, patches) = state.clipboard.clone().ok_or_else(|| EngineError::Config("nothing copied".into()))?;
            let latent = crate::steer::transplant(&state.current()?.0, &src, &patches, to)?;
            replace_latent(state, ticket, latent, t0)
        }
        Job::UndoInpaint => {
            let t0 = Instant::now();
            let prev =
                state.undo_latents.last().cloned().ok_or_else(|| EngineError::Config("nothing to undo".into()))?;
            let event = show_latent(state, ticket, prev, t0)?;
            state.undo_latents.pop();
            Ok(event)
        }
        Job::Lpips => lpips(state, id),
        Job::Sample { spec, preview_every } => sample(state, ticket, spec, preview_every, emit, pump),
        Job::ClassMean { class, count } => {
            let direction = crate::generate::class_mean_direction(state.generator()?, class, count)?;
            Ok(Event::ClassMean(ClassMean { id, class, direction }))
        }
        Job::Walk { spec, seed_b, frames } => walk(state, ticket, &spec, seed_b, frames, emit, pump),
        Job::WalkImages { a, b, frames } => walk_images(state, ticket, &a, &b, frames, emit, pump),
        Job::ExportLatent { path, edit } => {
            let (lat, _) = state.current()?;
            let z = match edit {
                Some(e) => crate::steer::apply(lat, &e, &device)?,
                None => lat.clone(),
            };
            let mut t = crate::tensor_file::TensorMap::new();
            t.insert("latent".into(), z);
            crate::tensor_file::write_safetensors(&path, &t, &Default::default(), crate::tensor_file::Precision::F32)?;
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
            let direction = crate::steer::patch_direction(lat, patch)?;
            Ok(Event::PatchDirection(PatchDirection { id, patch, direction }))
        }
        Job::TeacherCosine => {
            let (t, _) = state.teacher.as_ref().ok_or_else(|| EngineError::Config("no teacher loaded".into()))?;
            let m = state.model()?;
            let (lat, img) = state.current()?;
            let values = crate::inspect::teacher_cosine(t, &m.cfg, img, lat, &state.budget(), &ticket.cancel, device)?;
            Ok(Event::TeacherCosine(TeacherCosine { id, version: state.version, values }))
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
    let sae = state.sae()?;
    let (lat, img) = state.current()?;
    let t0 = Instant::now();
    let edited = sae.steer(lat, edit)?;
    let rec = if preview {
        let (p, _) = state.preview.as_ref().ok_or_else(|| EngineError::Config("no preview decoder loaded".into()))?;
        image_io::from_tensor(p.decode(edited.to_tensor(sae.device())?)?, &sae.config().pixels)?.remove(0)
    } else {
        sae.decode_with(&edited, &one_pass(ticket), &mut quiet)?.image
    };
    if ticket.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    let mut image = image_io::f32_to_rgb8(&rec);
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
    let t0 = Instant::now();
    let img = image_io::fit16(image, fit);
    let job = one_pass(ticket);
    let main = state.sae()?.reconstruct_with(&img, &job, &mut quiet)?;
    state.undo_latents.clear();
    let (raw, rec) = (main.latent, main.image);
    let grid = (raw.shape[2], raw.shape[3]);
    let orig: RgbF32 = image_io::rgb8_to_f32(&img);
    let mut others = Vec::new();
    let mut other_recons = Vec::new();
    for o in &state.others {
        let r = o.sae.reconstruct_with(&img, &job, &mut quiet)?.image;
        others.push(OtherRecon {
            name: o.info.name.clone(),
            image: image_io::f32_to_rgb8(&r),
            psnr: metrics::psnr(&orig, &r),
            ssim: metrics::ssim(&orig, &r),
        });
        other_recons.push(r);
    }
    // nothing above changed the state: a failure or cancel leaves the previous image in place
    let (psnr, ssim) = (metrics::psnr(&orig, &rec), metrics::ssim(&orig, &rec));
    let recon = image_io::f32_to_rgb8(&rec);
    state.recons = Some((orig, std::iter::once(rec).chain(other_recons).collect()));
    Ok(Event::Reconstructed(Box::new(make_current(
        state,
        JobKind::Reconstruct,
        ticket.id,
        raw,
        img,
        recon,
        psnr,
        ssim,
        others,
        grid,
        t0,
        false,
    ))))
}

#[allow(clippy::too_many_arguments)]
fn make_current(
    state: &mut State,
    kind: JobKind,
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
    let pca_axes = pca.map(|p| p.axes_f32()).unwrap_or_default();
    state.current = Some((raw, input.clone()));
    state.version += 1;
    Reconstruction {
        kind,
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

/// An edit of the current image's latent (regenerated or pasted patches) becomes the current latent; the one it
/// replaces is kept for `UndoInpaint` (the newest 16).
fn replace_latent(state: &mut State, ticket: &Ticket, latent: RawTensor, t0: Instant) -> Result<Event> {
    let old = state.current()?.0.clone();
    let event = show_latent(state, ticket, latent, t0)?;
    state.undo_latents.push(old);
    if state.undo_latents.len() > 16 {
        state.undo_latents.remove(0);
    }
    Ok(event)
}

/// Make `latent` (of the current image) the current latent: decode it, measure it against the image, answer as
/// `Reconstructed` of the inpainting job. Nothing changes when the decode fails.
fn show_latent(state: &mut State, ticket: &Ticket, latent: RawTensor, t0: Instant) -> Result<Event> {
    let (_, input) = state.current()?.clone();
    let rec = state.sae()?.decode_with(&latent, &one_pass(ticket), &mut quiet)?.image;
    let orig = image_io::rgb8_to_f32(&input);
    let (psnr, ssim) = (metrics::psnr(&orig, &rec), metrics::ssim(&orig, &rec));
    let recon = image_io::f32_to_rgb8(&rec);
    let grid = (latent.shape[2], latent.shape[3]);
    state.recons = Some((orig, vec![rec]));
    Ok(Event::Reconstructed(Box::new(make_current(
        state,
        JobKind::Inpaint,
        ticket.id,
        latent,
        input,
        recon,
        psnr,
        ssim,
        Vec::new(),
        grid,
        t0,
        false,
    ))))
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
    let rec = state.sae()?.decode_with(&latent, &one_pass(ticket), &mut quiet)?.image;
    let img = image_io::f32_to_rgb8(&rec);
    state.recons = Some((rec.clone(), vec![rec]));
    state.undo_latents.clear();
    Ok(Event::Reconstructed(Box::new(make_current(
        state,
        JobKind::Reconstruct,
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
