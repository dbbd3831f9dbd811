//! `dino-sae directions`: the library of named steering directions (the studio's Steer > Directions), stored in
//! `$DINO_SAE_DATA` (else `$XDG_DATA_HOME/dino-sae`, else `~/.local/share/dino-sae`) under `directions/`.
//! `steer --towards dir:NAME` applies one.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use engine::directions::{Library, SavedDirection};
use engine::steer::SteerTarget;

use crate::args::ModelArgs;
use crate::steer::{PixelBox, SourceArgs, Towards, portable_target};
use crate::tiles::TileArgs;

#[derive(clap::Subcommand, Debug)]
pub enum DirectionsCmd {
    /// The saved directions: name, kind, where each came from.
    List,
    /// Save a direction: a target (patch:R,C and pca:K+/- of --image, class:NAME, random:SEED), or the mean
    /// direction of --region minus that of --minus (boxes in pixels of --image).
    Add(AddArgs),
    /// Delete a saved direction.
    Rm { name: String },
    /// Rename a saved direction.
    Rename { old: String, new: String },
    /// Write a saved direction to a file (safetensors: the vector and its description), to share it.
    Export {
        name: String,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Read a direction file into the library (under its own name, or --name).
    Import {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// Replace a direction of the same name.
        #[arg(long)]
        force: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// The name (letters, digits, '-', '_', '.').
    pub name: String,
    /// What to save: patch:R,C | pca:K+ | pca:K- (of --image) | class:NAME | random:SEED.
    #[arg(long, required_unless_present = "region", conflicts_with = "region")]
    pub towards: Option<Towards>,
    /// The image that patch and PCA targets and regions are taken from.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// With --minus: save "this region minus that region", the difference of the two regions' mean directions
    /// (patches whose centres lie in the box, pixels of the encoded --image).
    #[arg(long, value_name = "X0,Y0,X1,Y1", requires = "minus")]
    pub region: Option<PixelBox>,
    #[arg(long, value_name = "X0,Y0,X1,Y1", requires = "region")]
    pub minus: Option<PixelBox>,
    /// Replace a direction of the same name.
    #[arg(long)]
    pub force: bool,
    /// Generator for class:NAME (default: the default model's, when no --model is named).
    #[arg(long)]
    pub dit: Option<PathBuf>,
    /// How to make the image's sides multiples of 16.
    #[arg(long, value_enum, default_value_t)]
    pub fit: crate::args::FitArg,
    #[command(flatten)]
    pub tiles: TileArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(cmd: DirectionsCmd) -> Result<()> {
    let lib = Library::user();
    match cmd {
        DirectionsCmd::List => {
            let (all, bad) = lib.list();
            if all.is_empty() {
                println!("no directions saved yet in {} (dino-sae directions add NAME ...)", lib.dir().display());
            }
            for d in &all {
                println!("{:<24} {:<18} {}", d.name, d.kind(), d.source);
            }
            for b in bad {
                eprintln!("warning: {b}");
            }
        }
        DirectionsCmd::Add(a) => add(&lib, a)?,
        DirectionsCmd::Rm { name } => {
            lib.remove(&name)?;
            println!("removed {name}");
        }
        DirectionsCmd::Rename { old, new } => {
            lib.rename(&old, &new)?;
            println!("renamed {old} -> {new}");
        }
        DirectionsCmd::Export { name, out } => {
            lib.export(&name, &out)?;
            println!("wrote {} ({name})", out.display());
        }
        DirectionsCmd::Import { file, name, force } => {
            let d =
                lib.import(&file, name.as_deref(), force).with_context(|| format!("importing {}", file.display()))?;
            println!("imported {} ({}, {})", d.name, d.kind(), d.source);
        }
    }
    Ok(())
}

fn add(lib: &Library, a: AddArgs) -> Result<()> {
    // what needs no image: random seeds and class means
    let needs_image = a.region.is_some() || matches!(a.towards, Some(Towards::Patch(_) | Towards::Pca { .. }));
    if matches!(a.towards, Some(Towards::Library(_))) {
        bail!("dir:NAME is already in the library (dino-sae directions rename / export)");
    }
    let (target, source) = if let Some(Towards::Random(seed)) = a.towards {
        (SteerTarget::Random(seed), format!("random (seed {seed})"))
    } else {
        let sae = a.model.open()?;
        let latent = match (&a.image, needs_image) {
            (Some(p), _) => {
                let src = SourceArgs { image: p.clone(), fit: a.fit, working_size: None };
                crate::tiles::encode(&sae, &src.load()?, &a.tiles)?.0
            }
            (None, true) => bail!("patch, PCA and region directions are taken from an image: add --image"),
            // a class mean does not look at the image; its length check uses the model's width
            (None, false) => engine::tensor_file::RawTensor::zeros(vec![1, sae.config().decoder.latent_channels, 1, 1]),
        };
        let of = a.image.as_ref().map(|p| format!(" of {}", p.display())).unwrap_or_default();
        match (&a.towards, a.region, a.minus) {
            (Some(t), _, _) => {
                let (target, label) = portable_target(t, &sae, &latent, &a.model, a.dit.clone())?;
                (target, format!("{label}{of}"))
            }
            (None, Some(r), Some(m)) => {
                let grid = (latent.shape[2], latent.shape[3]);
                let size = ((grid.1 * 16) as f32, (grid.0 * 16) as f32);
                let (pa, pb) =
                    (engine::steer::patches_in_box(grid, size, r.0), engine::steer::patches_in_box(grid, size, m.0));
                if pa.is_empty() || pb.is_empty() {
                    bail!("--region and --minus must each hold a patch centre (centres at 8, 24, 40, ... px)");
                }
                let d = engine::directions::region_difference(&latent, &pa, &pb)?;
                (SteerTarget::Direction(d), format!("region {:?} minus region {:?}{of}", r.0, m.0))
            }
            _ => bail!("give --towards, or --region with --minus"),
        }
    };
    let d = SavedDirection::new(&a.name, &source, target)?;
    let path = lib.add(&d, a.force)?;
    println!("saved {} ({}, {}) -> {}", d.name, d.kind(), d.source, path.display());
    Ok(())
}
