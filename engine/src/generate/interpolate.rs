//! Interpolation between two latents: per patch, slerp of the direction and a linear magnitude.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use image::RgbImage;

use crate::error::{EngineError, Result};
use crate::image_io::{self, Fit};
use crate::model::sae::DinoSae;
use crate::sphere;
use crate::tensor_file::{Precision, RawTensor, TensorMap, write_safetensors};

use super::{DitBundle, SampleSpec, cfg_err, check_sae, decode_images, sample_latents};

/// One end of an interpolation.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    Image(PathBuf),
    /// A sample of the generator from this seed.
    Seed(u64),
}

impl Endpoint {
    /// `seed:17` is a seed, anything else an image path.
    pub fn parse(s: &str) -> Result<Self> {
        match s.strip_prefix("seed:") {
            Some(v) => {
                v.trim().parse().map(Self::Seed).map_err(|_| cfg_err(format!("bad seed in `{s}` (seed:INTEGER)")))
            }
            None => Ok(Self::Image(PathBuf::from(s))),
        }
    }
}

/// Bring two images to one size: `size` given: both centre-cropped to squares and resized to
/// `size x size`; otherwise A is centre-cropped to multiples of 16 and B centre-cropped to A's aspect
/// ratio and resized to A's size.
pub fn pair_images(a: &RgbImage, b: &RgbImage, size: Option<u32>) -> Result<(RgbImage, RgbImage)> {
    let crop_to = |img: &RgbImage, aw: u32, ah: u32| {
        let (w, h) = img.dimensions();
        // largest centred window with aspect aw:ah
        let (cw, ch) = if (w as u64) * (ah as u64) > (h as u64) * (aw as u64) {
            (((h as u64 * aw as u64) / ah as u64).max(1) as u32, h)
        } else {
            (w, ((w as u64 * ah as u64) / aw as u64).max(1) as u32)
        };
        image::imageops::crop_imm(img, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image()
    };
    match size {
        Some(s) => {
            if s == 0 || !s.is_multiple_of(16) {
                return Err(cfg_err(format!("the endpoint size must be a positive multiple of 16, got {s}")));
            }
            Ok((image_io::resize_exact(&crop_to(a, 1, 1), s, s), image_io::resize_exact(&crop_to(b, 1, 1), s, s)))
        }
        None => {
            let a2 = image_io::fit16(a, Fit::Crop);
            let (w, h) = a2.dimensions();
            let b2 = image_io::resize_exact(&crop_to(b, w, h), w, h);
            Ok((a2, b2))
        }
    }
}

/// `steps + 1` latents from `a` to `b`: per patch, `slerp(a/|a|, b/|b|, t) ((1-t)|a| + t|b|)` with
/// `t = k/steps`; frame 0 is `a` and frame `steps` is `b` exactly.
///
/// # Shapes
/// - a, b: `[B, C, h, w]` -> `steps + 1` tensors `[B, C, h, w]`
pub fn slerp_frames(a: &Tensor<4>, b: &Tensor<4>, steps: usize) -> Result<Vec<Tensor<4>>> {
    if a.dims() != b.dims() {
        return Err(EngineError::Shape(format!("latents differ in shape: {:?} vs {:?}", a.dims(), b.dims())));
    }
    if steps == 0 {
        return Err(cfg_err("an interpolation needs at least 1 step"));
    }
    let (ma, mb) = (sphere::magnitude(a), sphere::magnitude(b));
    let (da, db) = (sphere::direction(a), sphere::direction(b));
    Ok((0..=steps)
        .map(|k| {
            if k == 0 {
                return a.clone();
            }
            if k == steps {
                return b.clone();
            }
            let t = k as f64 / steps as f64;
            sphere::slerp(&da, &db, t) * (ma.clone().mul_scalar(1.0 - t) + mb.clone().mul_scalar(t))
        })
        .collect())
}

/// Interpolation settings.
#[derive(Clone, Debug)]
pub struct InterpSpec {
    /// Intervals: `steps + 1` frames.
    pub steps: usize,
    /// Square size for image endpoints (None: A's size, see [`pair_images`]).
    pub size: Option<u32>,
    /// For seed endpoints: class, sampler settings (its `seed` and `count` are ignored).
    pub sample: SampleSpec,
}

/// What [`interpolate`] made.
#[derive(Debug)]
pub struct InterpResult {
    /// Latent of every frame `[1, C, h, w]`.
    pub latents: Vec<RawTensor>,
    pub frames: Vec<PathBuf>,
}

/// The latent of an endpoint pair: images encoded with the SAE, seeds sampled with the generator.
pub fn endpoint_latents(
    sae: &DinoSae,
    dit: Option<&DitBundle>,
    a: &Endpoint,
    b: &Endpoint,
    spec: &InterpSpec,
) -> Result<(Tensor<4>, Tensor<4>)> {
    let device = crate::cpu();
    match (a, b) {
        (Endpoint::Image(pa), Endpoint::Image(pb)) => {
            let (ia, ib) = pair_images(&image_io::load_rgb(pa)?, &image_io::load_rgb(pb)?, spec.size)?;
            // the memory preflight: both endpoints are encoded in one batch, every frame decoded alone
            let (w, h) = (ia.width() as usize, ia.height() as usize);
            let budget = crate::preflight::Budget::from_env();
            crate::preflight::check_encode(&sae.cfg, 2, w, h, &budget)?;
            crate::preflight::check_decode(&sae.cfg, 1, h / 16, w / 16, &budget)?;
            let x = image_io::to_tensor(&[&ia, &ib], &sae.cfg.pixels, &device)?;
            let z = sae.encode(x)?.patches;
            Ok((z.clone().narrow(0, 0, 1), z.narrow(0, 1, 1)))
        }
        (Endpoint::Seed(sa), Endpoint::Seed(sb)) => {
            let d = dit.ok_or_else(|| cfg_err("seed endpoints need a generator (a trained DiT folder)"))?;
            check_sae(&d.meta, sae)?;
            let one = |seed: u64| sample_latents(d, &SampleSpec { seed, count: 1, ..spec.sample.clone() });
            Ok((one(*sa)?, one(*sb)?))
        }
        _ => Err(cfg_err("both endpoints must be images or both seeds (seed:N)")),
    }
}

/// Interpolate between two endpoints, decode every frame, write `out/frame_000.png`, ... and
/// `out/latents.safetensors` (`frames` `[steps+1, C, h, w]`).
pub fn interpolate(
    sae: &DinoSae,
    dit: Option<&DitBundle>,
    a: &Endpoint,
    b: &Endpoint,
    spec: &InterpSpec,
    out: &Path,
) -> Result<InterpResult> {
    let (za, zb) = endpoint_latents(sae, dit, a, b, spec)?;
    let frames = slerp_frames(&za, &zb, spec.steps)?;
    std::fs::create_dir_all(out).map_err(|e| EngineError::io(out, e))?;
    let mut latents = Vec::with_capacity(frames.len());
    let mut paths = Vec::with_capacity(frames.len());
    let name = |e: &Endpoint| match e {
        Endpoint::Image(p) => p.display().to_string(),
        Endpoint::Seed(s) => format!("seed:{s}"),
    };
    for (k, z) in frames.into_iter().enumerate() {
        latents.push(RawTensor::from_tensor(z.clone())?);
        let img = decode_images(sae, z)?.remove(0);
        let p = out.join(format!("frame_{k:03}.png"));
        let t = k as f64 / spec.steps as f64;
        image_io::save_png(
            &p,
            &img,
            &[
                ("Software", "dino-sae interpolate".into()),
                ("A", name(a)),
                ("B", name(b)),
                ("T", format!("{t}")),
                ("Path", "slerp per patch, linear magnitude".into()),
            ],
        )?;
        paths.push(p);
    }
    let mut all = latents.iter().flat_map(|r| r.data.iter().copied()).collect::<Vec<f32>>();
    let mut shape = latents[0].shape.clone();
    shape[0] = latents.len();
    let mut m = TensorMap::new();
    m.insert("frames".into(), RawTensor::new(shape, std::mem::take(&mut all))?);
    write_safetensors(out.join("latents.safetensors"), &m, &Default::default(), Precision::F32)?;
    Ok(InterpResult { latents, frames: paths })
}
