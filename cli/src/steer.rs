//! `dino-sae steer`: the studio's Steer tab from a shell. The image is encoded (like `encode`), the selected
//! patches are rotated along great circles towards a target by the engine's `steer::apply` (the function the studio's
//! worker runs), decoded, and written as a PNG whose text chunks hold the parameters, with the steered latent beside
//! it. Patch indices are row-major over the latent grid (the encoded image's size / 16): index = row * width + col.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use engine::image_io;
use engine::steer::{SteerEdit, SteerTarget};
use engine::tensor_file::{Precision, RawTensor, TensorMap, write_safetensors};
use image::RgbImage;

use crate::args::{FitArg, ModelArgs, PreviewArgs};
use crate::tiles::TileArgs;

/// The image a command encodes, and how it is brought to the model's grid.
#[derive(clap::Args, Clone, Debug)]
pub struct SourceArgs {
    /// The image (PNG, JPEG, TIFF, WebP, BMP; EXIF orientation applied).
    pub image: PathBuf,
    /// How to make H, W multiples of 16.
    #[arg(long, value_enum, default_value_t)]
    pub fit: FitArg,
    /// Work on a copy scaled so its longest side is at most this many pixels (the studio's working copy;
    /// Settings > working size), instead of the full image.
    #[arg(long, value_name = "PX", value_parser = clap::value_parser!(u32).range(16..))]
    pub working_size: Option<u32>,
}

impl SourceArgs {
    /// The image as the model sees it: EXIF-oriented, scaled to the working size if one is given, fitted to
    /// multiples of 16.
    pub fn load(&self) -> Result<RgbImage> {
        let img = image_io::load_rgb(&self.image).with_context(|| format!("reading {}", self.image.display()))?;
        let img = match self.working_size {
            Some(side) => image_io::working_copy(&img, side),
            None => img,
        };
        Ok(image_io::fit16(&img, self.fit.into()))
    }
}

/// Encode a fitted image to its latent `[1, C, h, w]`: one pass after the memory preflight, or in tiles
/// ([`crate::tiles`] decides).
pub fn encode(m: &engine::Sae, img: &RgbImage, how: &TileArgs) -> Result<RawTensor> {
    Ok(crate::tiles::encode(m, img, how)?.0)
}

/// A patch by row and column of the latent grid: `R,C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowCol {
    pub row: usize,
    pub col: usize,
}

impl FromStr for RowCol {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (r, c) = s.split_once(',').ok_or_else(|| format!("`{s}`: expected ROW,COL (e.g. 3,4)"))?;
        let n = |v: &str| v.trim().parse::<usize>().map_err(|_| format!("`{v}` in `{s}` is not a row/column number"));
        Ok(Self { row: n(r)?, col: n(c)? })
    }
}

impl RowCol {
    /// The row-major index on a `gh x gw` grid; an error names the grid when the patch lies outside it.
    pub fn index(self, (gh, gw): (usize, usize)) -> Result<usize> {
        if self.row >= gh || self.col >= gw {
            bail!(
                "patch {},{} is outside the {gh}x{gw} latent grid (rows 0..{gh}, columns 0..{gw})",
                self.row,
                self.col
            );
        }
        Ok(self.row * gw + self.col)
    }
}

/// Where the selected patches are rotated to (`--towards`).
#[derive(Clone, Debug, PartialEq)]
pub enum Towards {
    /// `patch:R,C`: the direction of the patch at row R, column C (of this image, or of `--target-image`).
    Patch(RowCol),
    /// `pca:K+` / `pca:K-`: principal axis K (1-3, as the studio labels them) of this image's patch directions.
    Pca { axis: usize, positive: bool },
    /// `class:NAME`: the mean direction of the generator's samples of a class (index, name, or name without its
    /// extension, as `sample --class`).
    Class(String),
    /// `random:SEED`: a random direction per patch.
    Random(u64),
    /// `dir:NAME`: a direction saved in the library (`dino-sae directions`).
    Library(String),
}

impl FromStr for Towards {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let usage = "expected patch:R,C | pca:K+ | pca:K- | class:NAME | random:SEED | dir:NAME";
        let (kind, v) = s.split_once(':').ok_or_else(|| format!("`{s}`: {usage}"))?;
        match kind {
            "patch" => Ok(Towards::Patch(v.parse()?)),
            "pca" => {
                let (k, positive) = match v.strip_suffix('+') {
                    Some(k) => (k, true),
                    None => {
                        (v.strip_suffix('-').ok_or_else(|| format!("`{s}`: pca needs a sign, e.g. pca:1+"))?, false)
                    }
                };
                match k.parse::<usize>() {
                    Ok(axis @ 1..=3) => Ok(Towards::Pca { axis, positive }),
                    _ => Err(format!("`{s}`: the principal axis is 1, 2 or 3")),
                }
            }
            "class" if !v.is_empty() => Ok(Towards::Class(v.to_string())),
            "random" => v.parse().map(Towards::Random).map_err(|_| format!("`{s}`: the seed is a whole number")),
            "dir" if !v.is_empty() => Ok(Towards::Library(v.to_string())),
            _ => Err(format!("`{s}`: {usage}")),
        }
    }
}

/// A pixel box `x0,y0,x1,y1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PixelBox(pub [f32; 4]);

impl FromStr for PixelBox {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let v: Vec<f32> = s
            .split(',')
            .map(|t| t.trim().parse::<f32>().ok().filter(|x| x.is_finite()))
            .collect::<Option<_>>()
            .ok_or_else(|| format!("`{s}`: expected four pixel coordinates x0,y0,x1,y1"))?;
        <[f32; 4]>::try_from(v).map(PixelBox).map_err(|_| format!("`{s}`: expected four pixel coordinates x0,y0,x1,y1"))
    }
}

/// Which patches are steered (exactly one of the three).
#[derive(clap::Args, Clone, Debug)]
#[group(required = true, multiple = false)]
pub struct Selection {
    /// Row-major patch indices, comma-separated (index = row * grid width + column; the grid is the encoded
    /// image's size / 16, printed on stderr).
    #[arg(long, value_delimiter = ',', num_args = 1, value_name = "I,J,...")]
    pub patches: Option<Vec<usize>>,
    /// The patches whose centres lie in this box, in pixels of the encoded image (after --fit / --working-size),
    /// borders included: the studio's box drag.
    #[arg(long = "box", value_name = "X0,Y0,X1,Y1")]
    pub bbox: Option<PixelBox>,
    /// Every patch (the studio's "All patches").
    #[arg(long)]
    pub all: bool,
}

#[derive(clap::Args, Debug)]
pub struct SteerArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The steered image (PNG; the parameters are in its text chunks).
    #[arg(short, long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub selection: Selection,
    /// The target direction: patch:R,C | pca:K+ | pca:K- (K = 1, 2, 3) | class:NAME | random:SEED | dir:NAME (a
    /// direction saved with `dino-sae directions add`).
    #[arg(long)]
    pub towards: Towards,
    /// With `--towards patch:R,C`: take that patch of this image (encoded the same way) - the studio's
    /// "Pin as target", which steers one image towards a patch of another.
    #[arg(long, value_name = "IMAGE")]
    pub target_image: Option<PathBuf>,
    /// Rotation towards the target along the great circle, degrees.
    #[arg(long, allow_negative_numbers = true)]
    pub angle: f32,
    /// Magnitude multiplier of the steered patches (1 = unchanged).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f32,
    /// Angular noise: a random tangent rotation per steered patch, degrees.
    #[arg(long, default_value_t = 0.0)]
    pub noise: f32,
    /// Seed of the angular noise.
    #[arg(long, default_value_t = 0)]
    pub noise_seed: u64,
    /// Where the steered latent goes (safetensors, key `latent`); default: OUT with the extension .safetensors.
    #[arg(long, value_name = "PATH")]
    pub save_latent: Option<PathBuf>,
    /// A steering sweep: N frames from 0 degrees to --angle (the same edit otherwise), decoded each, written as a
    /// looping animation to --gif.
    #[arg(long, value_name = "N", requires = "gif", value_parser = clap::value_parser!(u32).range(2..=240))]
    pub sweep: Option<u32>,
    /// The sweep's animation: FILE.gif (GIF) or FILE.png / FILE.apng (APNG).
    #[arg(long, value_name = "FILE", requires = "sweep")]
    pub gif: Option<PathBuf>,
    /// Frames per second of the sweep.
    #[arg(long, default_value_t = 12.0)]
    pub fps: f32,
    /// Generator for `class:NAME` (default: the default model's, when no --model is named).
    #[arg(long)]
    pub dit: Option<PathBuf>,
    #[command(flatten)]
    pub tiles: TileArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub preview: PreviewArgs,
}

/// The command line as one string (arguments with spaces quoted), for the PNG's text chunk.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| if a.contains(char::is_whitespace) || a.is_empty() { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ")
}

/// PNG tEXt holds Latin-1: other characters become `?`.
pub fn latin1(s: &str) -> String {
    s.chars().map(|c| if (c as u32) < 256 && c != '\0' { c } else { '?' }).collect()
}

/// The model a command ran, for text chunks and summaries.
pub fn model_name(m: &ModelArgs) -> String {
    match (&m.random_preset, m.path()) {
        (Some(p), _) => format!("RANDOM weights ({})", crate::args::value_name(p)),
        (None, Ok(p)) if m.model.is_none() => format!("default model ({})", p.display()),
        (None, Ok(p)) => p.display().to_string(),
        (None, Err(e)) => format!("? ({e})"),
    }
}

/// Resolve `--towards` into the engine's target, with a label for the summary.
fn target(a: &SteerArgs, m: &engine::Sae, latent: &RawTensor) -> Result<(SteerTarget, String)> {
    let grid = (latent.shape[2], latent.shape[3]);
    if a.target_image.is_some() && !matches!(a.towards, Towards::Patch(_)) {
        bail!("--target-image names the image of a patch:R,C target; --towards is {:?}", a.towards);
    }
    match (&a.towards, &a.target_image) {
        (Towards::Patch(rc), None) => Ok((SteerTarget::Patch(rc.index(grid)?), format!("patch {},{}", rc.row, rc.col))),
        (Towards::Patch(_), Some(other)) => {
            let src = SourceArgs { image: other.clone(), ..a.source.clone() };
            let z = encode(m, &src.load()?, &a.tiles)?;
            let (t, label) = portable_target(&a.towards, m, &z, &a.model, a.dit.clone())
                .with_context(|| format!("in {}", other.display()))?;
            Ok((t, format!("{label} of {}", other.display())))
        }
        (towards, _) => portable_target(towards, m, latent, &a.model, a.dit.clone()),
    }
}

/// A target that means the same for any image: a patch of `latent` (as its direction), a PCA axis of `latent`, a
/// generator class's mean direction, a random direction per patch, or a direction of the library.
pub fn portable_target(
    towards: &Towards,
    m: &engine::Sae,
    latent: &RawTensor,
    model: &ModelArgs,
    dit: Option<PathBuf>,
) -> Result<(SteerTarget, String)> {
    let grid = (latent.shape[2], latent.shape[3]);
    Ok(match towards {
        Towards::Patch(rc) => {
            let d = engine::steer::patch_direction(latent, rc.index(grid)?)?;
            (SteerTarget::Direction(d), format!("patch {},{}", rc.row, rc.col))
        }
        Towards::Pca { axis, positive } => {
            let pca = engine::inspect::Pca::fit(&[latent]).context("PCA needs at least two patches")?;
            let d =
                engine::steer::pca_direction(&pca.axes_f32(), axis - 1, *positive).context("no such principal axis")?;
            (SteerTarget::Direction(d), format!("PCA {axis}{}", if *positive { "+" } else { "-" }))
        }
        Towards::Class(name) => {
            let (_, dit) = crate::args::default_sae_and_dit(model.model.clone(), dit)?;
            let dit = dit.context("class:NAME needs a generator: name one with --dit")?;
            let b = engine::generate::load_dit(&dit, &engine::cpu())
                .with_context(|| format!("loading generator {}", dit.display()))?;
            engine::generate::check_sae(&b.meta, m.model())?;
            let k = engine::generate::resolve_class(&b.meta, name)?;
            let d = engine::generate::class_mean_direction(&b, k, engine::steer::CLASS_MEAN_SAMPLES)?;
            (SteerTarget::Direction(d), format!("class mean of {} (class {k})", b.meta.classes[k]))
        }
        Towards::Random(seed) => (SteerTarget::Random(*seed), format!("random (seed {seed})")),
        Towards::Library(name) => {
            let lib = engine::directions::Library::user();
            let d = lib.get(name)?;
            if let Some(c) = d.channels().filter(|&c| c != latent.shape[1]) {
                bail!("direction {name:?} has {c} channels; this model's latents have {}", latent.shape[1]);
            }
            (d.target, format!("library direction {name} ({})", d.source))
        }
    })
}

/// The selected patches as the engine's list (empty = all), checked against the grid.
pub fn selection(sel: &Selection, grid: (usize, usize), size: (u32, u32)) -> Result<Vec<usize>> {
    let (gh, gw) = grid;
    if let Some(p) = &sel.patches {
        if let Some(bad) = p.iter().find(|&&i| i >= gh * gw) {
            bail!(
                "patch {bad} is outside the {gh}x{gw} latent grid (row-major indices 0..{}, index = row * {gw} + column)",
                gh * gw
            );
        }
        if p.is_empty() {
            bail!("--patches lists no patch");
        }
        return Ok(p.clone());
    }
    if let Some(PixelBox(r)) = sel.bbox {
        let p = engine::steer::patches_in_box(grid, (size.0 as f32, size.1 as f32), r);
        if p.is_empty() {
            bail!(
                "the box {r:?} holds no patch centre (the encoded image is {}x{}; centres at 8, 24, 40, ... px)",
                size.0,
                size.1
            );
        }
        return Ok(p);
    }
    Ok(Vec::new())
}

pub fn run(a: SteerArgs) -> Result<()> {
    let m = a.model.open()?;
    let img = a.source.load()?;
    let latent = encode(&m, &img, &a.tiles)?;
    let grid = (latent.shape[2], latent.shape[3]);
    eprintln!("latent grid {}x{} ({} patches, row-major)", grid.0, grid.1, grid.0 * grid.1);
    let patches = selection(&a.selection, grid, img.dimensions())?;
    let (target, target_label) = target(&a, &m, &latent)?;
    let edit = SteerEdit {
        patches,
        target,
        angle_deg: a.angle,
        magnitude_scale: a.scale,
        noise_deg: a.noise,
        noise_seed: a.noise_seed,
    };
    if let (Some(n), Some(gif)) = (a.sweep, &a.gif) {
        engine::animation::Format::of(gif)?;
        let mut frames = Vec::with_capacity(n as usize);
        for k in 0..n {
            let angle = a.angle * k as f32 / (n - 1) as f32;
            let step = SteerEdit { angle_deg: angle, ..edit.clone() };
            frames.push(image_io::f32_to_rgb8(&decode(&a, &m, &m.steer(&latent, &step)?)?));
            eprintln!("sweep: frame {}/{n} ({angle:.1} degrees)", k + 1);
        }
        let f = engine::animation::write(gif, &frames, a.fps)?;
        println!("wrote {} ({f:?}, {n} frames, 0 to {} degrees at {} fps)", gif.display(), a.angle, a.fps);
    }
    let edited = m.steer(&latent, &edit)?;
    let rec = decode(&a, &m, &edited)?;
    let out_img = image_io::f32_to_rgb8(&rec);
    let psnr = engine::metrics::psnr(&image_io::rgb8_to_f32(&img), &rec);
    let latent_path = a.save_latent.clone().unwrap_or_else(|| a.out.with_extension("safetensors"));
    let edit_json = serde_json::to_string(&edit_summary(&edit, &target_label, grid))?;
    let model = model_name(&a.model);
    let text = [
        ("Software", format!("dino-sae {} (engine {})", env!("CARGO_PKG_VERSION"), engine::VERSION)),
        ("Source", a.source.image.display().to_string()),
        ("dino-sae:command", command_line()),
        ("dino-sae:model", model.clone()),
        ("dino-sae:engine-version", engine::VERSION.to_string()),
        ("dino-sae:steer", edit_json.clone()),
        ("dino-sae:latent", latent_path.display().to_string()),
    ];
    let text: Vec<(&str, String)> = text.iter().map(|(k, v)| (*k, latin1(v))).collect();
    image_io::save_png(&a.out, &out_img, &text)?;
    let mut t = TensorMap::new();
    t.insert("latent".into(), edited);
    let meta = [
        ("source".to_string(), a.source.image.display().to_string()),
        ("model".to_string(), model),
        ("steer".to_string(), edit_json),
    ]
    .into_iter()
    .collect();
    write_safetensors(&latent_path, &t, &meta, Precision::F32)?;
    let n = if edit.patches.is_empty() { grid.0 * grid.1 } else { edit.patches.len() };
    println!(
        "steered {n} of {} patches towards {target_label} by {} deg (scale {}, noise {} deg) -> {} ({}x{}, PSNR vs input {psnr:.2} dB); latent -> {}",
        grid.0 * grid.1,
        a.angle,
        a.scale,
        a.noise,
        a.out.display(),
        out_img.width(),
        out_img.height(),
        latent_path.display()
    );
    Ok(())
}

/// What the text chunk and the latent file record of an edit: the engine's edit, plus the grid and a readable target.
fn edit_summary(edit: &SteerEdit, target: &str, grid: (usize, usize)) -> serde_json::Value {
    serde_json::json!({
        "grid": [grid.0, grid.1],
        "patches": if edit.patches.is_empty() { serde_json::json!("all") } else { serde_json::json!(edit.patches) },
        "towards": target,
        "angle_deg": edit.angle_deg,
        "magnitude_scale": edit.magnitude_scale,
        "noise_deg": edit.noise_deg,
        "noise_seed": edit.noise_seed,
    })
}

/// Decode the steered latent: with the preview decoder (one pass), else whole or in tiles ([`crate::tiles`]).
fn decode(a: &SteerArgs, m: &engine::Sae, z: &RawTensor) -> Result<engine::metrics::RgbF32> {
    if a.preview.preview {
        let (gh, gw) = (z.shape[2], z.shape[3]);
        a.tiles.decide(|| m.plan_decode(gh, gw), Some("--preview"))?;
        let x = a.model.load_preview(a.preview.preview_dir.as_deref())?.decode(z.to_tensor(m.device())?)?;
        return Ok(image_io::from_tensor(x, &m.config().pixels)?.remove(0));
    }
    crate::tiles::decode(m, z, &a.tiles)
}
