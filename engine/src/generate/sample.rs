//! Sampling a generator: latents on the sphere (or RAE's Euclidean sampler), decoded by the SAE, tiled.

use std::path::Path;

use burn::tensor::Tensor;
use image::RgbImage;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::image_io;
use crate::model::sae::DinoSae;
use crate::rfm;
use crate::sampler::{EuclidSamplerConfig, SphereSamplerConfig, SphereStep, sample_euclid, sample_sphere};
use crate::tensor_file::RawTensor;

use super::{DitBundle, DitMeta, ObjectiveKind, cfg_err};

/// Parse a sampler name: `euler-proj` or `exp-map`.
pub fn parse_sampler(s: &str) -> Result<SphereStep> {
    match s.to_ascii_lowercase().replace('_', "-").as_str() {
        "euler-proj" | "euler" => Ok(SphereStep::EulerProj),
        "exp-map" | "exp" => Ok(SphereStep::ExpMap),
        o => Err(cfg_err(format!("unknown sampler `{o}` (euler-proj, exp-map)"))),
    }
}

/// A class by index or by name (exact, or the name without its extension).
pub fn resolve_class(meta: &DitMeta, s: &str) -> Result<usize> {
    let n = meta.classes.len();
    if let Ok(k) = s.parse::<usize>() {
        if k < n {
            return Ok(k);
        }
        return Err(cfg_err(format!(
            "class {k} out of range: this model has {n} classes (0..{})",
            n.saturating_sub(1)
        )));
    }
    let stem = |c: &str| Path::new(c).file_stem().map(|x| x.to_string_lossy().to_string()).unwrap_or_default();
    if let Some(k) = meta.classes.iter().position(|c| c == s) {
        return Ok(k);
    }
    let hits: Vec<usize> = (0..n).filter(|&k| stem(&meta.classes[k]) == s).collect();
    match hits.as_slice() {
        [k] => Ok(*k),
        _ => Err(cfg_err(format!(
            "unknown class `{s}`; classes: {}",
            meta.classes.iter().enumerate().map(|(i, c)| format!("{i}={c}")).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// A class as people read it: a photo's file name without its extension, `_` and `-` as spaces, and spaces
/// between a lower-case letter and a capital ("ColdRipple.jpg" -> "Cold Ripple", "sky_at-night.png" -> "sky at
/// night"); names that are not file names stay as they are.
pub fn class_label(name: &str) -> String {
    let stem = match name.rsplit_once('.') {
        Some((s, ext))
            if !s.is_empty() && (1..=4).contains(&ext.len()) && ext.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            s
        }
        _ => name,
    };
    let mut out = String::new();
    let mut prev: Option<char> = None;
    for ch in stem.chars() {
        let ch = if ch == '_' || ch == '-' { ' ' } else { ch };
        if ch.is_uppercase() && prev.is_some_and(|p| p.is_lowercase()) {
            out.push(' ');
        }
        out.push(ch);
        prev = Some(ch);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Refuse an SAE whose latents are not the generator's.
pub fn check_sae(meta: &DitMeta, sae: &DinoSae) -> Result<()> {
    let c = sae.cfg.decoder.latent_channels;
    if c != meta.channels {
        return Err(EngineError::Shape(format!(
            "the generator makes latents with C = {} but the SAE decodes C = {c}; use the SAE it was trained with",
            meta.channels
        )));
    }
    if meta.grid[0] == 0 || meta.grid[1] == 0 {
        return Err(EngineError::Shape(format!("generator grid {:?} is empty", meta.grid)));
    }
    Ok(())
}

/// Sampling settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleSpec {
    pub class: usize,
    pub count: usize,
    pub seed: u64,
    pub steps: usize,
    pub method: SphereStep,
    pub cfg_scale: f64,
    /// Final patch radius (None: the model's `s_vae`).
    pub s_vae: Option<f64>,
    /// Time shift (None: the training shift).
    pub shift: Option<f64>,
    /// Latent grid `[h, w]` (None: the generator's training grid). The DiT rebuilds its position and RoPE
    /// tables per grid, so other grids run; quality away from the training grid is not checked.
    pub grid: Option<[usize; 2]>,
}

impl Default for SampleSpec {
    fn default() -> Self {
        Self {
            class: 0,
            count: 1,
            seed: 0,
            steps: 50,
            method: SphereStep::EulerProj,
            cfg_scale: 1.0,
            s_vae: None,
            shift: None,
            grid: None,
        }
    }
}

/// The spherical sampler settings a spec asks for (training shift and the model's s_vae unless overridden).
pub fn sphere_config(b: &DitBundle, spec: &SampleSpec) -> SphereSamplerConfig {
    SphereSamplerConfig {
        steps: spec.steps,
        shift: spec.shift.unwrap_or_else(|| b.meta.objective.shift()),
        cfg_scale: spec.cfg_scale,
        guided_channels: None,
        method: spec.method,
        final_radius: Some(spec.s_vae.unwrap_or(b.meta.s_vae)),
        t_end: 0.0,
        seed: spec.seed,
    }
}

/// Sample `spec.count` latents `[n, C, h, w]` of class `spec.class`; every patch has radius s_vae.
pub fn sample_latents(b: &DitBundle, spec: &SampleSpec) -> Result<Tensor<4>> {
    let meta = &b.meta;
    if spec.class >= meta.classes.len() {
        return Err(cfg_err(format!("class {} out of range ({} classes)", spec.class, meta.classes.len())));
    }
    if spec.count == 0 || spec.steps == 0 {
        return Err(cfg_err("the sample count and the sampler steps must be positive"));
    }
    let s_vae = spec.s_vae.unwrap_or(meta.s_vae);
    if !(s_vae.is_finite() && s_vae > 0.0) {
        return Err(cfg_err(format!("s_vae must be positive, got {s_vae}")));
    }
    let device = b.model.y_table.val().device();
    let y = vec![spec.class as i64; spec.count];
    let [h, w] = spec.grid.unwrap_or(meta.grid);
    if h == 0 || w == 0 {
        return Err(cfg_err("the latent grid must be at least 1x1"));
    }
    let shift = spec.shift.unwrap_or_else(|| meta.objective.shift());
    let out = match meta.objective_kind {
        ObjectiveKind::Rfm => {
            let sc = sphere_config(b, spec);
            sample_sphere(&b.model, &y, [meta.channels, h, w], &sc, &device, &mut |_, _| true)
        }
        ObjectiveKind::Euclid => {
            if spec.method != SphereStep::EulerProj {
                return Err(cfg_err("a Euclidean-FM model samples with plain Euler (the euler-proj sampler)"));
            }
            let z =
                rfm::gaussian_tensor(&mut StdRng::seed_from_u64(spec.seed), [spec.count, meta.channels, h, w], &device);
            let ec = EuclidSamplerConfig {
                points: spec.steps + 1,
                shift,
                cfg_scale: spec.cfg_scale,
                guided_channels: None,
                t_last: 1.0,
                final_radius: Some(s_vae),
            };
            sample_euclid(&b.model, z, &y, &ec, &mut |_, _| true)
        }
    };
    Ok(out.z)
}

/// Decode latents to RGB8 images.
pub fn decode_images(sae: &DinoSae, z: Tensor<4>) -> Result<Vec<RgbImage>> {
    let x = sae.decode(z)?;
    Ok(image_io::from_tensor(x, &sae.cfg.pixels)?.iter().map(image_io::f32_to_rgb8).collect())
}

/// Tile equally sized images row-major, `ceil(sqrt(n))` columns, no gaps.
pub fn tile(imgs: &[RgbImage]) -> Result<RgbImage> {
    let first = imgs.first().ok_or_else(|| EngineError::Image("no images to tile".into()))?;
    let (w, h) = first.dimensions();
    let cols = (imgs.len() as f64).sqrt().ceil().max(1.0) as u32;
    let rows = (imgs.len() as u32).div_ceil(cols);
    let mut out = RgbImage::new(cols * w, rows * h);
    for (k, img) in imgs.iter().enumerate() {
        if img.dimensions() != (w, h) {
            return Err(EngineError::Image("tiles must have one size".into()));
        }
        let (cx, cy) = (k as u32 % cols, k as u32 / cols);
        image::imageops::replace(&mut out, img, (cx * w) as i64, (cy * h) as i64);
    }
    Ok(out)
}

/// What [`sample_grid`] made.
#[derive(Debug)]
pub struct SampleResult {
    /// `[n, C, h, w]` latents before decoding.
    pub latents: RawTensor,
    pub images: Vec<RgbImage>,
    pub grid: RgbImage,
}

/// Sample, decode and write a grid PNG whose text chunks hold the parameters.
pub fn sample_grid(
    b: &DitBundle,
    sae: &DinoSae,
    spec: &SampleSpec,
    out: &Path,
    extra: &[(&str, String)],
) -> Result<SampleResult> {
    check_sae(&b.meta, sae)?;
    let z = sample_latents(b, spec)?;
    let latents = RawTensor::from_tensor(z.clone())?;
    let images = decode_images(sae, z)?;
    let grid = tile(&images)?;
    let mut text: Vec<(&str, String)> = vec![
        ("Software", "dino-sae sample".into()),
        ("Class", format!("{} ({})", spec.class, b.meta.classes[spec.class])),
        ("Seed", spec.seed.to_string()),
        ("Steps", spec.steps.to_string()),
        (
            "Sampler",
            match spec.method {
                SphereStep::EulerProj => "euler-proj",
                SphereStep::ExpMap => "exp-map",
            }
            .into(),
        ),
        ("CFG", spec.cfg_scale.to_string()),
        ("SVAE", spec.s_vae.unwrap_or(b.meta.s_vae).to_string()),
        ("Shift", spec.shift.unwrap_or_else(|| b.meta.objective.shift()).to_string()),
        ("Count", spec.count.to_string()),
        ("Objective", format!("{:?}", b.meta.objective_kind).to_lowercase()),
    ];
    text.extend(extra.iter().cloned());
    image_io::save_png(out, &grid, &text)?;
    Ok(SampleResult { latents, images, grid })
}

#[cfg(test)]
mod tests {
    use super::class_label;

    #[test]
    fn class_labels_read_like_words() {
        assert_eq!(class_label("Aqua.jpg"), "Aqua");
        assert_eq!(class_label("ColdRipple.jpg"), "Cold Ripple");
        assert_eq!(class_label("sky_at-night.png"), "sky at night");
        assert_eq!(class_label("BytheWater.jpg"), "Bythe Water");
        assert_eq!(class_label("landscape"), "landscape");
        assert_eq!(class_label("v1.2 release"), "v1.2 release");
        assert_eq!(class_label(".hidden"), ".hidden");
    }
}
