//! `dino-sae transplant`: copy patches of one image's latent (directions and magnitudes) onto another's at a chosen
//! place (`engine::steer::transplant`, as the studio's Steer > Transplant), decode; PNG (parameters in its text
//! chunks) + the latent beside it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use engine::image_io;
use engine::tensor_file::{Precision, TensorMap, write_safetensors};

use crate::args::{FitArg, ModelArgs};
use crate::steer::{RowCol, Selection, SourceArgs, command_line, latin1, model_name, selection};
use crate::tiles::TileArgs;

#[derive(clap::Args, Debug)]
pub struct TransplantArgs {
    /// The image the patches come from.
    pub source: PathBuf,
    /// The image they are pasted onto.
    pub target: PathBuf,
    /// The result (PNG; the parameters are in its text chunks).
    #[arg(short, long)]
    pub out: PathBuf,
    /// The source's patches (row-major indices, or a box in its pixels; --all copies every patch).
    #[command(flatten)]
    pub selection: Selection,
    /// Where the selection's top-left patch lands in the target's grid: ROW,COL.
    #[arg(long, value_name = "R,C")]
    pub to: RowCol,
    /// How to make both images' sides multiples of 16.
    #[arg(long, value_enum, default_value_t)]
    pub fit: FitArg,
    /// Work on copies whose longest side is at most this many pixels (the studio's working copies).
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(16..))]
    pub working_size: Option<u32>,
    /// Where the result's latent goes; default: OUT with the extension .safetensors.
    #[arg(long, value_name = "PATH")]
    pub save_latent: Option<PathBuf>,
    #[command(flatten)]
    pub tiles: TileArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(a: TransplantArgs) -> Result<()> {
    let sae = a.model.open()?;
    let load = |p: &PathBuf| SourceArgs { image: p.clone(), fit: a.fit, working_size: a.working_size }.load();
    let (src_img, dst_img) = (load(&a.source)?, load(&a.target)?);
    let src = crate::tiles::encode(&sae, &src_img, &a.tiles)?.0;
    let dst = crate::tiles::encode(&sae, &dst_img, &a.tiles)?.0;
    let grid = (src.shape[2], src.shape[3]);
    let mut patches = selection(&a.selection, grid, src_img.dimensions())?;
    if patches.is_empty() {
        patches = (0..grid.0 * grid.1).collect(); // --all
    }
    let out = engine::steer::transplant(&dst, &src, &patches, (a.to.row, a.to.col))
        .with_context(|| format!("pasting into {}", a.target.display()))?;
    let rec = crate::tiles::decode(&sae, &out, &a.tiles)?;
    let params = serde_json::json!({
        "source": a.source.display().to_string(),
        "source_grid": [grid.0, grid.1],
        "patches": patches,
        "to": [a.to.row, a.to.col],
        "target_grid": [dst.shape[2], dst.shape[3]],
    });
    let latent_path = a.save_latent.clone().unwrap_or_else(|| a.out.with_extension("safetensors"));
    let model = model_name(&a.model);
    let text = [
        ("Software", format!("dino-sae {} (engine {})", env!("CARGO_PKG_VERSION"), engine::VERSION)),
        ("Source", a.target.display().to_string()),
        ("dino-sae:command", command_line()),
        ("dino-sae:model", model.clone()),
        ("dino-sae:transplant", params.to_string()),
        ("dino-sae:latent", latent_path.display().to_string()),
    ];
    let text: Vec<(&str, String)> = text.iter().map(|(k, v)| (*k, latin1(v))).collect();
    image_io::save_png(&a.out, &image_io::f32_to_rgb8(&rec), &text)?;
    let mut t = TensorMap::new();
    t.insert("latent".into(), out);
    let meta = [("model".to_string(), model), ("transplant".to_string(), params.to_string())].into_iter().collect();
    write_safetensors(&latent_path, &t, &meta, Precision::F32)?;
    println!(
        "pasted {} patches of {} at row {}, column {} of {} -> {} ({}x{}); latent -> {}",
        patches.len(),
        a.source.display(),
        a.to.row,
        a.to.col,
        a.target.display(),
        a.out.display(),
        rec.width,
        rec.height,
        latent_path.display()
    );
    Ok(())
}
