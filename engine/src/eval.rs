//! `dino-sae eval`: reconstruction quality of a model on a folder of photos, as a markdown table row.
//!
//! Per photo (centre square crop resized to `size`): PSNR, SSIM, mean cosine between the student's patch tokens
//! and the unmodified teacher's (on the image resized to 14 * grid), and over the whole folder the Frechet
//! distance between the teacher's patch-token distributions of originals and reconstructions.

use std::path::Path;

use burn::tensor::Tensor;

use crate::data::PhotoSet;
use crate::error::Result;
use crate::image_io;
use crate::metrics;
use crate::model::nn::Probe;
use crate::model::sae::DinoSae;
use crate::model::vit::Vit;
use crate::resize::resize_bicubic;
use crate::sphere::cosine_last;
use crate::tensor_file::RawTensor;

/// Aggregate results.
#[derive(Clone, Debug, Default)]
pub struct EvalResult {
    pub images: usize,
    pub psnr: f64,
    pub ssim: f64,
    pub cosine: f64,
    pub frechet: f64,
    /// Mean LPIPS-VGG-like distance (None when evaluated without its weights).
    pub lpips: Option<f64>,
    pub per_image: Vec<(String, f64, f64, f64)>,
}

/// The teacher's patch tokens of `x` resized to its patch size x `grid`.
///
/// # Shapes
/// - x: `[B, 3, H, W]` -> `[B, grid^2, D]`
pub(crate) fn teacher_tokens(teacher: &Vit, x: Tensor<4>, grid: usize) -> Tensor<3> {
    let ps = teacher.cfg.patch_size;
    let tx = resize_bicubic(x, ps * grid, ps * grid, false, None);
    teacher.forward(tx, &mut Probe::default()).patch_tokens()
}

/// Evaluate `model` on every photo of `photos` at `size` x `size` (with the LPIPS-VGG-like distance when its
/// weights are given).
pub fn evaluate(
    model: &DinoSae,
    teacher: &Vit,
    photos: &PhotoSet,
    size: u32,
    lpips: Option<&crate::lpips::LpipsVgg>,
) -> Result<EvalResult> {
    evaluate_with_progress(model, teacher, photos, size, lpips, &mut |_, _| {})
}

/// [`evaluate`], calling `on_image(done, total)` after each photo.
pub fn evaluate_with_progress(
    model: &DinoSae,
    teacher: &Vit,
    photos: &PhotoSet,
    size: u32,
    lpips: Option<&crate::lpips::LpipsVgg>,
    on_image: &mut dyn FnMut(usize, usize),
) -> Result<EvalResult> {
    let device = crate::cpu();
    let grid = (size / 16) as usize;
    let mut r = EvalResult::default();
    let (mut feats_a, mut feats_b) = (Vec::new(), Vec::new());
    for i in 0..photos.images.len() {
        let img = photos.center(i, size);
        let x = image_io::to_tensor(&[&img], &model.cfg.pixels, &device)?;
        let out = model.encode_full(x.clone(), &mut Probe::default())?;
        let s = out.patch_tokens();
        let t = teacher_tokens(teacher, x, grid);
        let cos = cosine_last(s.clone(), t.clone()).mean().into_scalar::<f32>() as f64;
        let rec = model.decode(crate::model::sae::tokens_to_map(s, out.grid))?;
        let rec_img = image_io::from_tensor(rec, &model.cfg.pixels)?.remove(0);
        let orig = image_io::rgb8_to_f32(&img);
        let (p, q) = (metrics::psnr(&orig, &rec_img), metrics::ssim(&orig, &rec_img));
        if let Some(l) = lpips {
            *r.lpips.get_or_insert(0.0) += l.distance_rgb(&orig, &rec_img, &device)?;
        }
        // teacher features of the reconstruction, for the Frechet distance
        let rec8 = image_io::f32_to_rgb8(&rec_img);
        let xr = image_io::to_tensor(&[&rec8], &model.cfg.pixels, &device)?;
        feats_a.push(RawTensor::from_tensor(t)?);
        feats_b.push(RawTensor::from_tensor(teacher_tokens(teacher, xr, grid))?);
        r.per_image.push((photos.names[i].clone(), p, q, cos));
        r.psnr += p;
        r.ssim += q;
        r.cosine += cos;
        on_image(i + 1, photos.images.len());
    }
    let n = photos.images.len().max(1) as f64;
    r.images = photos.images.len();
    r.psnr /= n;
    r.ssim /= n;
    r.cosine /= n;
    r.lpips = r.lpips.map(|v| v / n);
    r.frechet = metrics::frechet(&stack_rows(&feats_a), &stack_rows(&feats_b));
    Ok(r)
}

/// The rows of `[..., D]` tensors stacked as `(D, values)` (the form `metrics::frechet` takes).
pub(crate) fn stack_rows(ts: &[RawTensor]) -> (usize, Vec<f64>) {
    let d = ts.first().map(|t| *t.shape.last().unwrap_or(&0)).unwrap_or(0);
    let data: Vec<f64> = ts.iter().flat_map(|t| t.data.iter().map(|&v| v as f64)).collect();
    (d, data)
}

/// A markdown table of rows (name, result).
pub fn markdown(rows: &[(String, EvalResult)], size: u32) -> String {
    let mut s = "| model | images | PSNR (dB) | SSIM | teacher cosine | Frechet distance (teacher patch features) | LPIPS-VGG-like |\n|---|---|---|---|---|---|---|\n".to_string();
    for (name, r) in rows {
        s.push_str(&format!(
            "| {name} | {} at {size}x{size} | {:.2} | {:.4} | {:.4} | {:.2} | {} |\n",
            r.images,
            r.psnr,
            r.ssim,
            r.cosine,
            r.frechet,
            r.lpips.map(|v| format!("{v:.4}")).unwrap_or_else(|| "no weights (scripts/fetch-lpips.sh)".into())
        ));
    }
    s
}

/// Load a model folder/file and evaluate it (CLI helper).
pub fn evaluate_path(model: &Path, teacher: &Path, photos: &Path, size: u32) -> Result<EvalResult> {
    let device = crate::cpu();
    let m = crate::checkpoint::load_sae(model, &device, false)?.model;
    let t = crate::checkpoint::load_backbone(teacher, &device, false)?.model;
    let set = PhotoSet::load(photos, 1024)?;
    let lp = crate::lpips::LpipsVgg::load(&crate::lpips::default_dir(), &device).ok();
    evaluate(&m, &t, &set, size, lp.as_ref())
}
