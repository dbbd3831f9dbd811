//! `reconstruct`, `encode`, `decode`, `preflight`: an image through the autoencoder and back.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use engine::autoencoder::{Job, Tiles};
use engine::image_io;
use engine::preflight::{self, Budget};
use engine::tensor_file::{Precision, TensorMap, write_safetensors};

use crate::args::{FitArg, ModelArgs, PreviewArgs, value_name};
use crate::tiles::{TileArgs, reporter};

#[derive(clap::Args)]
pub struct ReconstructArgs {
    /// An image, or a folder of images (one row per image; a bad image is reported and skipped, the exit code
    /// says whether any failed).
    image: PathBuf,
    /// The reconstruction (PNG); for a folder, the folder the reconstructions go to (`<name>.png`).
    #[arg(short, long)]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// How to make H, W multiples of 16.
    #[arg(long, value_enum, default_value_t)]
    fit: FitArg,
    #[command(flatten)]
    tiles: TileArgs,
    #[command(flatten)]
    preview: PreviewArgs,
}

#[derive(clap::Args)]
pub struct EncodeArgs {
    image: PathBuf,
    #[arg(short, long)]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// How to make H, W multiples of 16.
    #[arg(long, value_enum, default_value_t)]
    fit: FitArg,
    #[command(flatten)]
    tiles: TileArgs,
}

#[derive(clap::Args)]
pub struct DecodeArgs {
    latent: PathBuf,
    #[arg(short, long)]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    tiles: TileArgs,
    #[command(flatten)]
    preview: PreviewArgs,
}

#[derive(clap::Args)]
pub struct PreflightArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The job to estimate.
    #[arg(long, value_enum, default_value_t)]
    op: Op,
    /// Image size WxH in pixels (multiples of 16; decode: the output size).
    #[arg(long, default_value = "256x256", value_parser = parse_size)]
    size: (usize, usize),
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Run the job once and measure the peak RSS increase (Linux: VmHWM after a reset of /proc/self/clear_refs).
    #[arg(long)]
    measure: bool,
    /// One JSON line instead of text.
    #[arg(long)]
    json: bool,
}

/// The job `preflight` estimates.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Op {
    Encode,
    Decode,
    #[default]
    Reconstruct,
}

pub fn reconstruct(a: ReconstructArgs) -> Result<()> {
    let ReconstructArgs { image, out, model, fit, tiles, preview: PreviewArgs { preview, preview_dir } } = a;
    let sae = model.open()?;
    let pairs = crate::folder::pairs(&image, &out, "png")?;
    crate::folder::each(&pairs, image.is_dir(), |image, out| {
        let img = image_io::fit16(&image_io::load_rgb(image)?, fit.into());
        let (w, h) = (img.width() as usize, img.height() as usize);
        let what = format!("reconstruct of {w}x{h}");
        let (rec, encode_secs, decode_secs, tiled) = if preview {
            // the preview decoder runs in one pass: a job the plan would tile is refused with the flags that fix it
            tiles.decide(|| sae.plan_image(w, h, true), Some("--preview"))?;
            let t0 = Instant::now();
            let job = Job::tiles(Tiles::Never);
            let z = tiles.hint(sae.encode_image_with(&img, &job, &mut reporter(what)), "--tiled renders it")?.latent;
            let t1 = Instant::now();
            let y = model.load_preview(preview_dir.as_deref())?.decode(z.to_tensor(sae.device())?)?;
            let rec = image_io::from_tensor(y, &sae.config().pixels)?.remove(0);
            (rec, (t1 - t0).as_secs_f64(), t1.elapsed().as_secs_f64(), false)
        } else {
            let job = Job::tiles(tiles.mode());
            let r = tiles.hint(sae.reconstruct_with(&img, &job, &mut reporter(what)), "--tiled renders it")?;
            (r.image, r.encode_secs, r.decode_secs, r.ran.is_tiled())
        };
        let orig = image_io::rgb8_to_f32(&img);
        let psnr = engine::metrics::psnr(&orig, &rec);
        let ssim = engine::metrics::ssim(&orig, &rec);
        image_io::save_png(
            out,
            &image_io::f32_to_rgb8(&rec),
            &[("Software", "dino-sae".into()), ("Source", image.display().to_string())],
        )?;
        Ok(format!(
            "{}x{} -> {}: PSNR {psnr:.2} dB, SSIM {ssim:.4} (encode {:.0} ms, decode {:.0} ms{})",
            img.width(),
            img.height(),
            out.display(),
            encode_secs * 1e3,
            decode_secs * 1e3,
            if tiled { ", tiled" } else { "" }
        ))
    })
}

pub fn encode(a: EncodeArgs) -> Result<()> {
    let EncodeArgs { image, out, model, fit, tiles } = a;
    let sae = model.open()?;
    let img = image_io::fit16(&image_io::load_rgb(&image)?, fit.into());
    let (z, cls) = crate::tiles::encode(&sae, &img, &tiles)?;
    let mut t = TensorMap::new();
    t.insert("latent".into(), z);
    if let Some(cls) = cls {
        t.insert("cls".into(), cls);
    }
    let meta = [("source".to_string(), image.display().to_string())].into_iter().collect();
    write_safetensors(&out, &t, &meta, Precision::F32)?;
    println!("wrote {} (latent {:?})", out.display(), t["latent"].shape);
    Ok(())
}

pub fn decode(a: DecodeArgs) -> Result<()> {
    let DecodeArgs { latent, out, model, tiles, preview: PreviewArgs { preview, preview_dir } } = a;
    if tiles.tiled && preview {
        bail!("--preview decodes in one pass; drop --tiled");
    }
    let sae = model.open()?;
    let z = engine::tensor_file::read_latent(&latent, sae.config().decoder.latent_channels)?;
    let img = if preview {
        let (gh, gw) = (z.shape[2], z.shape[3]);
        // the preview decoder is small, but a camera-sized latent is still refused rather than run for an hour
        tiles.decide(|| sae.plan_decode(gh, gw), Some("--preview"))?;
        let rec = model.load_preview(preview_dir.as_deref())?.decode(z.to_tensor(sae.device())?)?;
        image_io::from_tensor(rec, &sae.config().pixels)?.remove(0)
    } else {
        crate::tiles::decode(&sae, &z, &tiles)?
    };
    image_io::save_png(&out, &image_io::f32_to_rgb8(&img), &[("Source", latent.display().to_string())])?;
    println!("wrote {} ({}x{})", out.display(), img.width, img.height);
    Ok(())
}

/// `WxH` in pixels, both positive multiples of 16.
fn parse_size(s: &str) -> Result<(usize, usize)> {
    let (w, h) = s.split_once(['x', 'X']).with_context(|| format!("size {s:?}: expected WxH, e.g. 512x384"))?;
    let (w, h): (usize, usize) = (w.trim().parse().context("width")?, h.trim().parse().context("height")?);
    if w == 0 || h == 0 || w % 16 != 0 || h % 16 != 0 {
        bail!("size {w}x{h}: both sides must be positive multiples of 16");
    }
    Ok((w, h))
}

/// `dino-sae preflight`: the estimate, and with `--measure` the measured peak RSS increase of the same job.
pub fn preflight(a: PreflightArgs) -> Result<()> {
    let PreflightArgs { model, op, size, batch, measure, json } = a;
    let op_name = value_name(&op);
    let device = engine::cpu();
    let (w, h) = size;
    let m = model.load()?;
    let cfg = &m.cfg;
    let est = match op {
        Op::Encode => preflight::encode(cfg, batch, h, w, preflight::Attention::on(&device)),
        Op::Decode => preflight::decode(cfg, batch, h / 16, w / 16),
        Op::Reconstruct => preflight::reconstruct(cfg, batch, h, w, preflight::Attention::on(&device)),
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
            Op::Encode => {
                let _ = m.encode(x)?.patches.into_data();
            }
            Op::Decode => {
                let _ = m.decode(z)?.into_data();
            }
            Op::Reconstruct => {
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
            "{{\"op\":\"{op_name}\",\"width\":{w},\"height\":{h},\"batch\":{batch},\"estimate_bytes\":{:.0},\"flops\":{:.0},\"budget_bytes\":{},\"fits\":{fits},\"measured_bytes\":{inc},\"hwm_reset\":{reset},\"seconds\":{secs}}}",
            est.bytes, est.flops, budget.bytes
        );
    } else {
        println!(
            "{op_name} of {w}x{h} (batch {batch}): estimate {} of memory beyond the weights, {:.2} GFLOP",
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
