//! `dino-sae eval-samples`: how close the generator's samples come to their classes (issue 20).
//!
//! Per class (one photo or one class folder of photos, see [`PhotoSet`]), on the frozen teacher's patch features
//! (the image resized to 14 x the latent grid, as `eval` does): the Frechet distance between `n` decoded samples and
//! `n` random crops of the class's photos (drawn like the generator's training crops, round-robin over the photos,
//! at the evaluation size), beside two references with the same feature counts: the same crops' reconstructions
//! (what the autoencoder alone loses, the floor a sample can reach) and `n` crops of the next class's photos (the
//! distance between two different classes). With `n`
//! images of `g x g` patches each distribution has `n g^2` feature vectors of the teacher's width: small-sample
//! figures, comparable across rows and runs with the same `n` and size only.

use burn::tensor::Tensor;
use image::RgbImage;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::data::{PhotoSet, mix_seed, random_crop};
use crate::error::Result;
use crate::eval::{stack_rows, teacher_tokens};
use crate::image_io;
use crate::metrics;
use crate::model::sae::DinoSae;
use crate::model::vit::Vit;
use crate::sampler::SphereStep;
use crate::tensor_file::RawTensor;

use super::{DitBundle, SampleSpec, cfg_err, check_sae, decode_images, sample_latents};

/// What to evaluate.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleEvalSpec {
    /// Samples (and crops) per class.
    pub n: usize,
    /// Image side in pixels (multiple of 16): the latent grid is `size / 16`.
    pub size: u32,
    pub steps: usize,
    pub method: SphereStep,
    pub cfg_scale: f64,
    pub seed: u64,
    /// Smallest crop side as a fraction of the photo's shorter side (the generator's training crops: 0.5).
    pub min_crop_frac: f32,
    /// Evaluate only the first `max_classes` classes (None: all).
    pub max_classes: Option<usize>,
}

impl Default for SampleEvalSpec {
    fn default() -> Self {
        Self {
            n: 8,
            size: 256,
            steps: 25,
            method: SphereStep::EulerProj,
            cfg_scale: 1.0,
            seed: 0,
            min_crop_frac: 0.5,
            max_classes: None,
        }
    }
}

/// One class's distances (teacher patch features; lower is closer to the class's crops).
#[derive(Clone, Debug)]
pub struct ClassRow {
    pub class: String,
    /// Samples vs crops.
    pub samples: f64,
    /// The crops' reconstructions vs the crops (the autoencoder's floor).
    pub recon: f64,
    /// Crops of `other_class` vs the crops (a different class).
    pub other: f64,
    pub other_class: String,
    /// The decoded samples and the real crops, for grids.
    pub sample_images: Vec<RgbImage>,
    pub crop_images: Vec<RgbImage>,
}

fn features(teacher: &Vit, sae: &DinoSae, imgs: &[RgbImage], grid: usize) -> Result<RawTensor> {
    let device = crate::cpu();
    let refs: Vec<&RgbImage> = imgs.iter().collect();
    let x = image_io::to_tensor(&refs, &sae.cfg.pixels, &device)?;
    RawTensor::from_tensor(teacher_tokens(teacher, x, grid))
}

/// `n` random crops drawn round-robin from `photos` (indices into `set`), one seeded stream.
fn crops(set: &PhotoSet, photos: &[usize], n: usize, size: u32, min_frac: f32, seed: u64) -> Vec<RgbImage> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|k| random_crop(&set.images[photos[k % photos.len()]], &mut rng, size, min_frac)).collect()
}

/// Evaluate the generator `b` (decoding with `sae`) class by class against the photos it was trained on (found
/// in `photos` by the class names). `on_class(done, total)` after each class.
pub fn evaluate_samples(
    b: &DitBundle,
    sae: &DinoSae,
    teacher: &Vit,
    photos: &PhotoSet,
    spec: &SampleEvalSpec,
    on_class: &mut dyn FnMut(usize, usize),
) -> Result<Vec<ClassRow>> {
    check_sae(&b.meta, sae)?;
    if spec.n < 2 || spec.size < 16 || !spec.size.is_multiple_of(16) {
        return Err(cfg_err(format!(
            "need at least 2 samples per class and a size that is a multiple of 16, got n {} size {}",
            spec.n, spec.size
        )));
    }
    let classes = &b.meta.classes;
    // each class's photos in `photos` (by class name: the photo's file name, or its class folder's name)
    let members: Vec<Vec<usize>> = classes
        .iter()
        .map(|c| photos.classes.iter().position(|p| p == c).map(|k| photos.class_photos(k)).unwrap_or_default())
        .collect();
    let missing: Vec<&str> =
        classes.iter().zip(&members).filter(|(_, m)| m.is_empty()).map(|(c, _)| c.as_str()).collect();
    if !missing.is_empty() {
        return Err(cfg_err(format!(
            "the photo folder lacks {} of the generator's {} classes (e.g. {}): pass the folder it was trained on",
            missing.len(),
            classes.len(),
            missing[0]
        )));
    }
    let grid = (spec.size / 16) as usize;
    let total = spec.max_classes.unwrap_or(classes.len()).min(classes.len());
    let mut rows = Vec::with_capacity(total);
    for c in 0..total {
        let other_c = (c + 1) % classes.len();
        let seed = mix_seed(spec.seed, c as u64);
        let real = crops(photos, &members[c], spec.n, spec.size, spec.min_crop_frac, seed);
        let other = crops(photos, &members[other_c], spec.n, spec.size, spec.min_crop_frac, mix_seed(seed, 1));
        let f_real = features(teacher, sae, &real, grid)?;
        // the crops' reconstructions
        let refs: Vec<&RgbImage> = real.iter().collect();
        let x: Tensor<4> = image_io::to_tensor(&refs, &sae.cfg.pixels, &crate::cpu())?;
        let recon = decode_images(sae, sae.encode(x)?.patches)?;
        // the samples
        let sspec = SampleSpec {
            class: c,
            count: spec.n,
            seed,
            steps: spec.steps,
            method: spec.method,
            cfg_scale: spec.cfg_scale,
            s_vae: None,
            shift: None,
            grid: Some([grid, grid]),
        };
        let samples = decode_images(sae, sample_latents(b, &sspec)?)?;
        let real_rows = stack_rows(&[f_real]);
        let fd = |imgs: &[RgbImage]| -> Result<f64> {
            Ok(metrics::frechet(&stack_rows(&[features(teacher, sae, imgs, grid)?]), &real_rows))
        };
        rows.push(ClassRow {
            class: classes[c].clone(),
            samples: fd(&samples)?,
            recon: fd(&recon)?,
            other: fd(&other)?,
            other_class: classes[other_c].clone(),
            sample_images: samples,
            crop_images: real,
        });
        on_class(c + 1, total);
    }
    Ok(rows)
}

/// The markdown table of [`evaluate_samples`]'s rows, with the means.
pub fn samples_markdown(rows: &[ClassRow], spec: &SampleEvalSpec) -> String {
    let mut s = format!(
        "Frechet distance on the teacher's patch features to {n} random {sz}x{sz} crops of each class's photos \
         ({n} images per distribution, {steps} sampler steps, CFG {cfg}):\n\n\
         | class | samples | reconstructions of the crops (floor) | crops of another class | other class |\n\
         |---|---|---|---|---|\n",
        n = spec.n,
        sz = spec.size,
        steps = spec.steps,
        cfg = spec.cfg_scale
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {} |\n",
            r.class, r.samples, r.recon, r.other, r.other_class
        ));
    }
    let k = rows.len().max(1) as f64;
    let mean = |f: fn(&ClassRow) -> f64| rows.iter().map(f).sum::<f64>() / k;
    s.push_str(&format!(
        "| **mean ({} classes)** | **{:.1}** | **{:.1}** | **{:.1}** | |\n",
        rows.len(),
        mean(|r| r.samples),
        mean(|r| r.recon),
        mean(|r| r.other)
    ));
    s
}
