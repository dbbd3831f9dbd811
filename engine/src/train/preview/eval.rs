//! Evaluation of a preview decoder against the full decoder and the photos (`eval-preview`).

use burn::tensor::{Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::data::PhotoSet;
use crate::error::Result;
use crate::image_io;
use crate::model::preview::PreviewDecoder;
use crate::model::sae::DinoSae;

use super::perturb_latent;
use crate::data::mix;
use crate::tensor_file::host_vec as host4;

/// One photo of [`evaluate_preview`]: PSNR (dB) of preview vs full decode, preview vs photo, full decode vs photo.
#[derive(Clone, Debug)]
pub struct PreviewEvalRow {
    pub name: String,
    pub preview_vs_full: f64,
    pub preview_vs_photo: f64,
    pub full_vs_photo: f64,
}

/// On the centre `size` x `size` view of every photo (as `dino-sae eval`): encode, decode with the full decoder and
/// with the preview, and compare.
pub fn evaluate_preview(
    sae: &DinoSae,
    preview: &PreviewDecoder,
    photos: &PhotoSet,
    size: u32,
) -> Result<Vec<PreviewEvalRow>> {
    evaluate_preview_perturbed(sae, preview, photos, size, 0.0, 0)
}

/// [`evaluate_preview`] on perturbed latents: when `noise_deg > 0`, each photo's latent is first perturbed by
/// [`perturb_latent`] (angular noise up to `noise_deg` per patch, then a magnitude scale or a projection to the mean
/// radius; seeded by `(seed, photo)`), as a steer or a sampler would move it; both decoders then decode that latent.
pub fn evaluate_preview_perturbed(
    sae: &DinoSae,
    preview: &PreviewDecoder,
    photos: &PhotoSet,
    size: u32,
    noise_deg: f32,
    seed: u64,
) -> Result<Vec<PreviewEvalRow>> {
    let device = crate::cpu();
    let mut rows = Vec::new();
    for i in 0..photos.images.len() {
        let img = photos.center(i, size);
        let mut z = sae.encode(image_io::to_tensor(&[&img], &sae.cfg.pixels, &device)?)?.patches;
        if noise_deg > 0.0 {
            let dims = z.dims();
            let mut v = host4(z)?;
            perturb_latent(&mut v, dims[1], &mut StdRng::seed_from_u64(mix(seed, i as u64)), noise_deg);
            z = Tensor::from_data(TensorData::new(v, dims.to_vec()), &device);
        }
        let full = image_io::from_tensor(sae.decode(z.clone())?, &sae.cfg.pixels)?.remove(0);
        let prev = image_io::from_tensor(preview.decode(z)?, &preview.cfg.pixels)?.remove(0);
        let orig = image_io::rgb8_to_f32(&img);
        rows.push(PreviewEvalRow {
            name: photos.names[i].clone(),
            preview_vs_full: crate::metrics::psnr(&prev, &full),
            preview_vs_photo: crate::metrics::psnr(&prev, &orig),
            full_vs_photo: crate::metrics::psnr(&full, &orig),
        });
    }
    Ok(rows)
}

/// The rows as a markdown table with a mean row.
pub fn eval_markdown(rows: &[PreviewEvalRow], size: u32) -> String {
    let mut s = format!(
        "| photo ({size}x{size}) | preview vs full decode (dB) | preview vs photo (dB) | full decode vs photo (dB) | gap (dB) |\n|---|---|---|---|---|\n"
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            r.name,
            r.preview_vs_full,
            r.preview_vs_photo,
            r.full_vs_photo,
            r.full_vs_photo - r.preview_vs_photo
        ));
    }
    let n = rows.len().max(1) as f64;
    let mean = |f: fn(&PreviewEvalRow) -> f64| rows.iter().map(f).sum::<f64>() / n;
    s.push_str(&format!(
        "| **mean** | **{:.2}** | **{:.2}** | **{:.2}** | **{:.2}** |\n",
        mean(|r| r.preview_vs_full),
        mean(|r| r.preview_vs_photo),
        mean(|r| r.full_vs_photo),
        mean(|r| r.full_vs_photo - r.preview_vs_photo)
    ));
    s
}
