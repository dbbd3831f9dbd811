//! `dino-sae inpaint`: regenerate a region of a photo on the sphere. The image is encoded, the generator samples
//! the selected patches while every other patch is held to the image's own latent along the training path
//! (`engine::generate::inpaint`), and the result is decoded; the PNG's text chunks hold the parameters, the latent
//! lies beside it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use engine::generate::{InpaintSpec, inpaint, load_dit, resolve_class};
use engine::image_io;
use engine::tensor_file::{Precision, TensorMap, write_safetensors};

use crate::args::{ModelArgs, SamplerArg};
use crate::steer::{Selection, SourceArgs, command_line, latin1, model_name};
use crate::tiles::TileArgs;

#[derive(clap::Args, Debug)]
pub struct InpaintArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The inpainted image (PNG; the parameters are in its text chunks).
    #[arg(short, long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub selection: Selection,
    /// Generator class of the new patches (index, name, or name without its extension; default: none, the
    /// unconditional null class).
    #[arg(long)]
    pub class: Option<String>,
    /// Seed of the noise the new patches start from.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sampler steps.
    #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub steps: u32,
    /// Classifier-free guidance scale (1 = none).
    #[arg(long, default_value_t = 1.5)]
    pub cfg: f64,
    /// Step rule on the sphere.
    #[arg(long, value_enum, default_value_t)]
    pub sampler: SamplerArg,
    /// Where the inpainted latent goes (safetensors, key `latent`); default: OUT with the extension .safetensors.
    #[arg(long, value_name = "PATH")]
    pub save_latent: Option<PathBuf>,
    /// Generator folder (default: the default model's, when no --model is named).
    #[arg(long)]
    pub dit: Option<PathBuf>,
    #[command(flatten)]
    pub tiles: TileArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(a: InpaintArgs) -> Result<()> {
    let sae = a.model.open()?;
    let (_, dit) = crate::args::default_sae_and_dit(a.model.model.clone(), a.dit.clone())?;
    let dit = dit.context("inpainting needs a generator: name one with --dit")?;
    let b = load_dit(&dit, sae.device()).with_context(|| format!("loading generator {}", dit.display()))?;
    engine::generate::check_sae(&b.meta, sae.model())?;
    let img = a.source.load()?;
    let latent = crate::tiles::encode(&sae, &img, &a.tiles)?.0;
    let grid = (latent.shape[2], latent.shape[3]);
    eprintln!("latent grid {}x{} ({} patches, row-major)", grid.0, grid.1, grid.0 * grid.1);
    let mut patches = crate::steer::selection(&a.selection, grid, img.dimensions())?;
    if patches.is_empty() {
        patches = (0..grid.0 * grid.1).collect(); // --all
    }
    let class = a.class.as_deref().map(|c| resolve_class(&b.meta, c)).transpose()?;
    let spec = InpaintSpec {
        patches,
        class,
        seed: a.seed,
        steps: a.steps as usize,
        cfg_scale: a.cfg,
        method: a.sampler.into(),
    };
    let mut bar = crate::progress::Progress::new("inpaint: step", spec.steps);
    let out = inpaint(&b, &latent, &spec, &mut |info, _| {
        bar.set(info.step, "");
        true
    })?;
    bar.finish();
    let rec = crate::tiles::decode(&sae, &out.latent, &a.tiles)?;
    let class_name = class.map_or_else(|| "none (unconditional)".to_string(), |k| b.meta.classes[k].clone());
    let params = serde_json::json!({
        "grid": [grid.0, grid.1],
        "patches": spec.patches,
        "class": class_name,
        "seed": spec.seed,
        "steps": spec.steps,
        "cfg": spec.cfg_scale,
        "sampler": crate::args::value_name(&a.sampler),
        "window": [out.window.0, out.window.1, out.window.2, out.window.3],
        "radius": out.radius,
    });
    let latent_path = a.save_latent.clone().unwrap_or_else(|| a.out.with_extension("safetensors"));
    let model = model_name(&a.model);
    let text = [
        ("Software", format!("dino-sae {} (engine {})", env!("CARGO_PKG_VERSION"), engine::VERSION)),
        ("Source", a.source.image.display().to_string()),
        ("dino-sae:command", command_line()),
        ("dino-sae:model", model.clone()),
        ("dino-sae:generator", dit.display().to_string()),
        ("dino-sae:inpaint", params.to_string()),
        ("dino-sae:latent", latent_path.display().to_string()),
    ];
    let text: Vec<(&str, String)> = text.iter().map(|(k, v)| (*k, latin1(v))).collect();
    image_io::save_png(&a.out, &image_io::f32_to_rgb8(&rec), &text)?;
    let mut t = TensorMap::new();
    t.insert("latent".into(), out.latent);
    let meta = [
        ("source".to_string(), a.source.image.display().to_string()),
        ("model".to_string(), model),
        ("inpaint".to_string(), params.to_string()),
    ]
    .into_iter()
    .collect();
    write_safetensors(&latent_path, &t, &meta, Precision::F32)?;
    println!(
        "regenerated {} of {} patches (class {class_name}, seed {}, {} steps, window {}x{} at row {}, column {}) -> {} ({}x{}); latent -> {}",
        spec.patches.len(),
        grid.0 * grid.1,
        spec.seed,
        out.steps_done,
        out.window.2,
        out.window.3,
        out.window.0,
        out.window.1,
        a.out.display(),
        rec.width,
        rec.height,
        latent_path.display()
    );
    Ok(())
}
