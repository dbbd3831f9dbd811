//! `eval` (reconstruction quality of models on a photo folder) and `eval-preview` (preview vs full decoder).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use engine::checkpoint::load_sae;

use crate::args::ModelArgs;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Models to evaluate: `name=PATH` (our folder or an official state dict) or `untrained=TEACHER` for a
    /// random stem + decoder around the teacher's blocks.
    #[arg(required = true)]
    models: Vec<String>,
    #[arg(long)]
    teacher: PathBuf,
    #[arg(long)]
    photos: PathBuf,
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Write the markdown table to this file.
    #[arg(short, long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct EvalPreviewArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Preview folder (default: the model folder's `preview/`).
    #[arg(long)]
    preview_dir: Option<PathBuf>,
    #[arg(long)]
    photos: PathBuf,
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Perturb each latent first (angular noise up to this many degrees per patch, then a magnitude scale or a
    /// projection to the mean radius), as steering or sampling would; both decoders decode the perturbed latent.
    #[arg(long, default_value_t = 0.0)]
    noise_deg: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let EvalArgs { models, teacher, photos, size, out } = a;
    let device = engine::cpu();
    let t = engine::checkpoint::load_backbone(&teacher, &device, false)?.model;
    let set = engine::train::data::PhotoSet::load(&photos, 1024)?;
    let lp = match engine::lpips::LpipsVgg::load(&engine::lpips::default_dir(), &device) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("LPIPS-VGG-like column left empty: {e}");
            None
        }
    };
    let mut rows = Vec::new();
    for spec in &models {
        let (name, path) = spec.split_once('=').unwrap_or((spec.as_str(), spec.as_str()));
        let untrained = match name {
            "untrained" => Some(engine::train::EmbedKind::Stem),
            "untrained-patchify" => Some(engine::train::EmbedKind::Patchify),
            _ => None,
        };
        let m = if let Some(embed) = untrained {
            engine::train::init_student(
                Path::new(path),
                engine::model::decoder::DecoderConfig::small(t.cfg.dim),
                embed,
                0,
                &device,
            )?
        } else {
            load_sae(Path::new(path), &device, false).with_context(|| format!("loading {path}"))?.model
        };
        let r = engine::eval::evaluate(&m, &t, &set, size, lp.as_ref())?;
        for (img, p, q, c) in &r.per_image {
            eprintln!("{name:<24} {img:<24} PSNR {p:6.2}  SSIM {q:.4}  cos {c:.4}");
        }
        rows.push((name.to_string(), r));
    }
    let md = engine::eval::markdown(&rows, size);
    println!("{md}");
    if let Some(o) = out {
        engine::raw::atomic_write(&o, md.as_bytes())?;
    }
    Ok(())
}

pub fn eval_preview(a: EvalPreviewArgs) -> Result<()> {
    let EvalPreviewArgs { model, preview_dir, photos, size, noise_deg, seed } = a;
    let m = model.load()?;
    let p = model.load_preview(preview_dir.as_deref())?;
    let set = engine::train::data::PhotoSet::load(&photos, 1024)?;
    let rows = engine::train::preview::evaluate_preview_perturbed(&m, &p, &set, size, noise_deg, seed)?;
    print!("{}", engine::train::preview::eval_markdown(&rows, size));
    Ok(())
}
