//! The background jobs that run in steps: sampling, walks (between two seeds or two images) and full-resolution renders.
//! Each pumps the queue between its steps / frames / tiles, so interactive jobs are answered meanwhile.

use std::sync::Arc;
use std::time::Instant;

use burn::tensor::Tensor;
use image::RgbImage;

use super::protocol::*;
use super::state::{State, ms, one_pass};
use crate::Sae;
use crate::autoencoder::quiet;
use crate::error::{EngineError, Result};
use crate::image_io::{self, Fit};
use crate::preflight;
use crate::sphere;
use crate::tensor_file::RawTensor;

/// A slerp walk between two sampled latents (seeds `spec.seed` and `seed_b`), `frames` intervals.
pub(super) fn walk(
    st: &State,
    ticket: &Ticket,
    spec: &crate::generate::SampleSpec,
    seed_b: u64,
    frames: usize,
    emit: &dyn Fn(Event),
    pump: &mut dyn FnMut(&State, &Ticket),
) -> Result<Event> {
    let id = ticket.id;
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
    let frames = decode_frames(st.sae()?, zs, ticket, &mut |t| pump(st, t))?;
    Ok(Event::Walked(Walked { id, frames, millis: ms(t0), preview: false }))
}

/// A slerp walk between two images encoded with the current model, `frames` intervals.
pub(super) fn walk_images(
    st: &State,
    ticket: &Ticket,
    a: &RgbImage,
    b: &RgbImage,
    frames: usize,
    emit: &dyn Fn(Event),
    pump: &mut dyn FnMut(&State, &Ticket),
) -> Result<Event> {
    let id = ticket.id;
    let m = st.model()?;
    let t0 = Instant::now();
    let (ia, ib) = crate::generate::pair_images(a, b, None)?;
    let frames = frames.clamp(1, 120);
    preflight::check_decode(&m.cfg, 1, ia.height() as usize / 16, ia.width() as usize / 16, &st.budget())?;
    let (sae, job) = (st.sae()?, one_pass(ticket));
    let za = sae.encode_image_with(&ia, &job, &mut quiet)?.latent.to_tensor(&st.device)?;
    let zb = sae.encode_image_with(&ib, &job, &mut quiet)?.latent.to_tensor(&st.device)?;
    let zs = crate::generate::slerp_frames(&za, &zb, frames)?;
    preview_frames(st, &zs, id, t0, emit);
    let frames = decode_frames(sae, zs, ticket, &mut |t| pump(st, t))?;
    Ok(Event::Walked(Walked { id, frames, millis: ms(t0), preview: false }))
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

/// Decode frames one at a time through the front door (each a preflighted one-pass decode), pumping between them.
fn decode_frames(
    sae: &Sae,
    zs: Vec<Tensor<4>>,
    ticket: &Ticket,
    pump: &mut dyn FnMut(&Ticket),
) -> Result<Vec<RgbImage>> {
    let mut out = Vec::with_capacity(zs.len());
    for z in zs {
        if ticket.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let rgb = sae.decode_with(&RawTensor::from_tensor(z)?, &one_pass(ticket), &mut quiet)?.image;
        out.push(image_io::f32_to_rgb8(&rgb));
        pump(ticket);
    }
    Ok(out)
}

pub(super) fn sample(
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
                && let Ok(preview) = crate::generate::tile(&imgs)
            {
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
    let z = RawTensor::from_tensor(out.z)?;
    // a cancelled run still shows what it reached: that decode is not cancelled with it
    let whole = crate::autoencoder::Job { tiles: crate::autoencoder::Tiles::Never, ..Default::default() };
    let images = state.sae()?.decode_batch(&z, &whole)?.iter().map(image_io::f32_to_rgb8).collect();
    Ok(Event::Sampled(Sampled { id, images, cancelled: out.cancelled, steps_done: out.steps_done, millis: ms(t0) }))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn render(
    state: &State,
    ticket: &Ticket,
    original: &Arc<RgbImage>,
    fit: Fit,
    edit: &crate::steer::SteerEdit,
    tiling: crate::tiled::Tiling,
    emit: &dyn Fn(Event),
    pump: &mut dyn FnMut(&State, &Ticket),
) -> Result<Event> {
    let sae = state.sae()?;
    let (work, _) = state.current()?;
    let t0 = Instant::now();
    let img = image_io::fit16(original, fit);
    let (gh, gw) = (img.height() as usize / 16, img.width() as usize / 16);
    let (ty, tx) = (
        crate::tiled::axis_tiles(gh, tiling.tile, tiling.overlap),
        crate::tiled::axis_tiles(gw, tiling.tile, tiling.overlap),
    );
    let per_pass = ty.len() * tx.len();
    let of = 2 * per_pass;
    let id = ticket.id;
    let mut done = 0usize;
    let mut progress = |p: crate::autoencoder::Progress| {
        if !matches!(p, crate::autoencoder::Progress::Tile(..)) {
            return;
        }
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
    let job =
        crate::autoencoder::Job { tiles: crate::autoencoder::Tiles::Always, tiling, cancel: ticket.cancel.clone() };
    let full = sae.encode_image_with(&img, &job, &mut progress)?.latent;
    let mapped = crate::steer::map_to_grid(edit, work, (gh, gw))?;
    let edited = sae.steer(&full, &mapped)?;
    drop(full);
    let rgb = sae.decode_with(&edited, &job, &mut progress)?.image;
    Ok(Event::Rendered(Rendered {
        id,
        version: state.version,
        image: image_io::f32_to_rgb8(&rgb),
        tiles: per_pass,
        millis: ms(t0),
    }))
}

/// Regenerate the selected patches of the current latent (see [`crate::generate::inpaint`]), pumping between
/// steps; with a preview decoder, every few steps the whole latent as it stands is decoded by it and sent as
/// progress. Returns the new latent (the caller makes it current).
pub(super) fn regenerate(
    st: &State,
    ticket: &Ticket,
    spec: &crate::generate::InpaintSpec,
    emit: &dyn Fn(Event),
    pump: &mut dyn FnMut(&State, &Ticket),
) -> Result<RawTensor> {
    let (sae, b) = (st.sae()?, st.generator()?);
    crate::generate::check_sae(&b.meta, sae.model())?;
    let (lat, _) = st.current()?;
    let job = crate::generate::Inpainting::new(b, lat, spec)?;
    let t0 = Instant::now();
    let every = (spec.steps / 5).max(1);
    let mut on_step = |info: &crate::sampler::StepInfo, z: &Tensor<4>| {
        pump(st, ticket);
        if ticket.is_cancelled() {
            return false;
        }
        if let Some((p, _)) = st.preview.as_ref()
            && info.step.is_multiple_of(every)
            && info.step < info.steps
        {
            let shown = job
                .compose(z)
                .and_then(|full| full.to_tensor::<4>(&st.device))
                .and_then(|full| p.decode(full))
                .and_then(|x| image_io::from_tensor(x, &sae.config().pixels));
            if let Ok(mut imgs) = shown {
                let eta = t0.elapsed().as_secs_f64() / info.step as f64 * (info.steps - info.step) as f64;
                emit(Event::Progress(Progress {
                    kind: JobKind::Inpaint,
                    id: ticket.id,
                    done: info.step,
                    of: info.steps,
                    eta_secs: eta,
                    preview: Some(image_io::f32_to_rgb8(&imgs.remove(0))),
                    fast: true,
                }));
            }
        }
        true
    };
    let out = job.run(&mut on_step)?;
    if out.cancelled {
        return Err(EngineError::Cancelled);
    }
    Ok(out.latent)
}
