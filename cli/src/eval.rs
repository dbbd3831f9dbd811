//! `eval` (reconstruction quality of models on a photo folder) and `eval-preview` (preview vs full decoder).

use std::path::PathBuf;

use anyhow::{Context, Result};
use engine::checkpoint::load_sae;

use crate::args::ModelArgs;
use crate::progress::Progress;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Models to evaluate: `name=PATH` (our folder or an official state dict), `untrained=TEACHER` (or
    /// `untrained-patchify=TEACHER`, `untrained-hybrid=TEACHER`) for a random stem + decoder around the teacher's blocks; default: the
    /// embedded default model.
    #[arg(value_parser = parse_model)]
    models: Vec<EvalModel>,
    /// Teacher backbone for the cosine and Frechet columns (default: where scripts/fetch-teacher.sh puts it).
    #[arg(long)]
    teacher: Option<PathBuf>,
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

#[derive(clap::Args)]
pub struct EvalSamplesArgs {
    /// Generator folder; default: the default model's generator.
    #[arg(long)]
    dit: Option<PathBuf>,
    /// The autoencoder the generator was trained on; default: the default model.
    #[arg(long)]
    sae: Option<PathBuf>,
    /// Teacher backbone for the features (default: where scripts/fetch-teacher.sh puts it).
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// The photo folder the generator was trained on (its classes are the photos' file names).
    #[arg(long)]
    photos: PathBuf,
    /// Samples (and real crops) per class.
    #[arg(long, default_value_t = 8)]
    n: usize,
    /// Image side in pixels (multiple of 16); latent grid = size / 16.
    #[arg(long, default_value_t = 256)]
    size: u32,
    #[arg(long, default_value_t = 25)]
    steps: usize,
    /// Sampler on the spheres.
    #[arg(long, value_enum, default_value_t, ignore_case = true)]
    sampler: crate::args::SamplerArg,
    /// Classifier-free guidance scale (1 = none).
    #[arg(long, default_value_t = 1.0)]
    cfg: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only the first K classes.
    #[arg(long)]
    classes: Option<usize>,
    /// Write the table here, and beside it `samples-CLASS.png` / `crops-CLASS.png` grids per class.
    #[arg(short, long)]
    out: Option<PathBuf>,
}

/// One `eval` row: a name and what it evaluates.
#[derive(Clone, Debug)]
pub struct EvalModel {
    name: String,
    path: PathBuf,
    /// `untrained` rows: a random student of this patch embedding around the teacher at `path`.
    untrained: Option<engine::train::EmbedKind>,
}

/// `name=PATH`, or a bare PATH named by itself.
fn parse_model(s: &str) -> Result<EvalModel> {
    let (name, path) = s.split_once('=').unwrap_or((s, s));
    if name.is_empty() || path.is_empty() {
        anyhow::bail!("{s:?}: expected NAME=PATH");
    }
    let untrained = match name {
        "untrained" => Some(engine::train::EmbedKind::Stem),
        "untrained-patchify" => Some(engine::train::EmbedKind::Patchify),
        "untrained-hybrid" => Some(engine::train::EmbedKind::Hybrid),
        _ => None,
    };
    Ok(EvalModel { name: name.to_string(), path: PathBuf::from(path), untrained })
}

/// The teacher given, else the one `scripts/fetch-teacher.sh` puts in the cache folder.
fn load_teacher(teacher: Option<PathBuf>, device: &burn::tensor::Device) -> Result<engine::model::vit::Vit> {
    let teacher = teacher.unwrap_or_else(engine::dirs::teacher_dir);
    if !teacher.exists() {
        anyhow::bail!("no teacher at {}: run scripts/fetch-teacher.sh or pass --teacher", teacher.display());
    }
    Ok(engine::checkpoint::load_backbone(&teacher, device, false)
        .with_context(|| format!("loading the teacher {}", teacher.display()))?
        .model)
}

pub fn eval(a: EvalArgs) -> Result<()> {
    let EvalArgs { mut models, teacher, photos, size, out } = a;
    let device = engine::cpu();
    if models.is_empty() {
        let dir = engine::dirs::require_default_model_dir().context("no model named")?;
        models.push(EvalModel { name: "default".into(), path: dir, untrained: None });
    }
    let t = load_teacher(teacher, &device)?;
    let set = engine::data::PhotoSet::load(&photos, 1024)?;
    let lp = match engine::lpips::LpipsVgg::load(&engine::lpips::default_dir(), &device) {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("LPIPS-VGG-like column left empty: {e}");
            None
        }
    };
    let mut rows = Vec::new();
    for EvalModel { name, path, untrained } in &models {
        let m = match untrained {
            Some(embed) => engine::train::init_student(
                path,
                engine::model::decoder::DecoderConfig::small(t.cfg.dim),
                *embed,
                0,
                &device,
            )?,
            None => load_sae(path, &device, false).with_context(|| format!("loading {}", path.display()))?.model,
        };
        let mut bar = Progress::new(format!("{name}: photo"), set.images.len());
        let r =
            engine::eval::evaluate_with_progress(&m, &t, &set, size, lp.as_ref(), &mut |done, _| bar.set(done, ""))?;
        bar.clear();
        for (i, (img, p, q, c)) in r.per_image.iter().enumerate() {
            let (w, h) = set.images.get(i).map(|x| x.dimensions()).unwrap_or_default();
            println!("{name:<24} {img:<24} {w:>5}x{h:<5} PSNR {p:6.2}  SSIM {q:.4}  cos {c:.4}");
        }
        rows.push((name.to_string(), r));
    }
    let md = engine::eval::markdown(&rows, size);
    println!("{md}");
    if let Some(o) = out {
        engine::tensor_file::atomic_write(&o, md.as_bytes())?;
    }
    // PhotoSet::load reported and skipped the images it could not read
    let all = crate::folder::images_in(&photos)?;
    let failed: Vec<String> = all.iter().map(|p| crate::folder::name(p)).filter(|n| !set.names.contains(n)).collect();
    if !failed.is_empty() {
        anyhow::bail!("{} of {} images could not be read: {}", failed.len(), all.len(), failed.join(", "));
    }
    Ok(())
}

pub fn eval_samples(a: EvalSamplesArgs) -> Result<()> {
    use engine::generate::{SampleEvalSpec, evaluate_samples, load_dit, samples_markdown, tile};
    let EvalSamplesArgs { dit, sae, teacher, photos, n, size, steps, sampler, cfg, seed, classes, out } = a;
    let device = engine::cpu();
    let (sae, dit) = crate::args::default_sae_and_dit(sae, dit)?;
    let dit = dit.context("no generator: pass --dit (the default model's generator is missing)")?;
    let b = load_dit(&dit, &device).with_context(|| format!("loading {}", dit.display()))?;
    let m = load_sae(&sae, &device, false).with_context(|| format!("loading {}", sae.display()))?.model;
    let t = load_teacher(teacher, &device)?;
    let set = engine::data::PhotoSet::load(&photos, 1024)?;
    let spec = SampleEvalSpec {
        n,
        size,
        steps,
        method: sampler.into(),
        cfg_scale: cfg,
        seed,
        max_classes: classes,
        ..Default::default()
    };
    let total = classes.unwrap_or(b.meta.classes.len()).min(b.meta.classes.len());
    let mut bar = Progress::new("class".to_string(), total);
    let rows = evaluate_samples(&b, &m, &t, &set, &spec, &mut |done, _| bar.set(done, ""))?;
    bar.clear();
    let md = samples_markdown(&rows, &spec);
    println!("{md}");
    if let Some(o) = out {
        if let Some(dir) = o.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        engine::tensor_file::atomic_write(&o, md.as_bytes())?;
        let dir = o.parent().map(PathBuf::from).unwrap_or_default();
        for r in &rows {
            let stem =
                std::path::Path::new(&r.class).file_stem().map_or(r.class.clone(), |s| s.to_string_lossy().into());
            tile(&r.sample_images)?.save(dir.join(format!("samples-{stem}.png")))?;
            tile(&r.crop_images)?.save(dir.join(format!("crops-{stem}.png")))?;
        }
        println!("wrote {} and {} pairs of grids beside it", o.display(), rows.len());
    }
    Ok(())
}

pub fn eval_preview(a: EvalPreviewArgs) -> Result<()> {
    let EvalPreviewArgs { model, preview_dir, photos, size, noise_deg, seed } = a;
    let m = model.load()?;
    let p = model.load_preview(preview_dir.as_deref())?;
    let set = engine::data::PhotoSet::load(&photos, 1024)?;
    let rows = engine::train::preview::evaluate_preview_perturbed(&m, &p, &set, size, noise_deg, seed)?;
    print!("{}", engine::train::preview::eval_markdown(&rows, size));
    Ok(())
}
