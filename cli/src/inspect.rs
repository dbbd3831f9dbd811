//! `dino-sae inspect`: the studio's Inspect tab from a shell. The image is encoded (like `encode`) and every map the
//! studio shows is written to a folder, computed by the same engine functions (`engine::inspect`) and drawn with the
//! same colours (`engine::colormap`): |z| per patch, patch directions PCA -> RGB, cosine to one patch and, with a
//! teacher, student-vs-teacher cosine. Each map: a PNG (the map over the image, with a colour bar and its values
//! under it) and a CSV (one line per patch row, no header); one summary line per map on stdout.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use engine::colormap;
use engine::inspect;
use image::RgbImage;

use crate::args::ModelArgs;
use crate::steer::{RowCol, SourceArgs, encode, latin1, model_name};

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// The folder the maps are written to (created if missing).
    #[arg(short, long)]
    pub out: PathBuf,
    /// The patch the cosine map is computed to, ROW,COL (the studio's click; default: the grid's centre patch).
    #[arg(long, value_name = "R,C")]
    pub patch: Option<RowCol>,
    /// A teacher backbone (HF folder / checkpoint) for the student-vs-teacher cosine map (Models > Load teacher).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// Opacity of the maps over the image (1 = the map only; the studio's opacity slider).
    #[arg(long, default_value_t = 1.0, value_parser = opacity)]
    pub opacity: f32,
    /// Bilinear upsampling of the patch grid (the studio's GPU heatmap option) instead of nearest.
    #[arg(long)]
    pub bilinear: bool,
    #[command(flatten)]
    pub tiles: crate::tiles::TileArgs,
    /// Also decode: writes recon.png and error.png (|x - recon| x4 in false colour, the Compare tab's error view)
    /// and prints PSNR / SSIM.
    #[arg(long)]
    pub recon: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

fn opacity(s: &str) -> std::result::Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}`: the opacity is a number from 0 to 1")),
    }
}

/// min, mean, max of a map.
fn stats(v: &[f32]) -> (f32, f32, f32) {
    let (lo, hi) = colormap::value_range(v);
    (lo, v.iter().map(|x| *x as f64).sum::<f64>() as f32 / v.len().max(1) as f32, hi)
}

struct Writer<'a> {
    dir: &'a Path,
    img: &'a RgbImage,
    grid: (usize, usize),
    opacity: f32,
    bilinear: bool,
    text: Vec<(&'static str, String)>,
}

impl Writer<'_> {
    /// A scalar map: PNG (colormap over [lo, hi] + colour bar) and CSV; returns the two paths.
    fn scalar(&self, name: &str, values: &[f32], lo: f32, hi: f32) -> Result<(PathBuf, PathBuf)> {
        let map = colormap::blend(self.img, values, self.grid, lo, hi, self.opacity, self.bilinear);
        self.write(name, &colormap::with_colour_bar(&map, lo, hi), &inspect::grid_csv(values, self.grid), (lo, hi))
    }

    fn write(&self, name: &str, png: &RgbImage, csv: &str, range: (f32, f32)) -> Result<(PathBuf, PathBuf)> {
        let (p, c) = (self.dir.join(format!("{name}.png")), self.dir.join(format!("{name}.csv")));
        let mut text: Vec<(&str, String)> = self.text.iter().map(|(k, v)| (*k, latin1(v))).collect();
        text.push(("dino-sae:map", name.to_string()));
        text.push(("dino-sae:colour-range", format!("{} {}", range.0, range.1)));
        engine::image_io::save_png(&p, png, &text)?;
        engine::tensor_file::atomic_write(&c, csv.as_bytes())?;
        Ok((p, c))
    }
}

pub fn run(a: InspectArgs) -> Result<()> {
    let m = a.model.open()?;
    let img = a.source.load()?;
    let latent = encode(&m, &img, &a.tiles)?;
    let grid = (latent.shape[2], latent.shape[3]);
    let n = grid.0 * grid.1;
    let patch = a.patch.unwrap_or(RowCol { row: grid.0 / 2, col: grid.1 / 2 });
    let p = patch.index(grid).context("--patch")?;
    let teacher = match &a.teacher {
        Some(t) => Some(
            engine::checkpoint::load_backbone(t, &engine::cpu(), false)
                .with_context(|| format!("loading teacher {}", t.display()))?
                .model,
        ),
        None => None,
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let w = Writer {
        dir: &a.out,
        img: &img,
        grid,
        opacity: a.opacity,
        bilinear: a.bilinear,
        text: vec![
            ("Software", format!("dino-sae {} (engine {})", env!("CARGO_PKG_VERSION"), engine::VERSION)),
            ("Source", a.source.image.display().to_string()),
            ("dino-sae:command", crate::steer::command_line()),
            ("dino-sae:model", model_name(&a.model)),
        ],
    };
    let grid_s = format!("{}x{}", grid.0, grid.1);
    let show = |(png, csv): &(PathBuf, PathBuf)| format!("{}, {}", png.display(), csv.display());

    // |z|: colours over the map's own range, as the studio
    let mag = inspect::magnitudes(&latent);
    let (lo, mean, hi) = stats(&mag);
    let files = w.scalar("magnitude", &mag, lo, hi)?;
    println!("magnitude: {grid_s} patches, |z| min {lo:.4} mean {mean:.4} max {hi:.4} -> {}", show(&files));
    let hist = colormap::histogram(&mag, 24);
    let hist_csv: String = hist.iter().map(|(edge, count)| format!("{edge},{count}\n")).collect();
    let hist_path = a.out.join("magnitude_histogram.csv");
    engine::tensor_file::atomic_write(&hist_path, format!("lower_edge,patches\n{hist_csv}").as_bytes())?;

    // PCA of the patch directions of this image -> RGB (components scaled by their range over the image)
    let pca = inspect::Pca::fit(&[&latent]).context("PCA needs at least two patches")?;
    let rgb = pca.rgb(&latent);
    let comps = pca.components(&latent);
    let csv: String = comps
        .chunks(grid.1)
        .map(|row| row.iter().map(|c| format!("{} {} {}", c[0], c[1], c[2])).collect::<Vec<_>>().join(",") + "\n")
        .collect();
    let map = colormap::blend_colors(&img, &rgb, grid, a.opacity);
    let files = w.write("pca", &map, &csv, (0.0, 0.0))?;
    let spread: Vec<String> = pca.range.iter().map(|(l, h)| format!("[{l:.3}, {h:.3}]")).collect();
    println!(
        "pca: {grid_s} patches, components 1-3 (R, G, B) span {}; CSV cells: three components -> {}",
        spread.join(" "),
        show(&files)
    );

    // cosine to one patch, colours over [-1, 1] as the studio
    let v = inspect::patch_rows(&latent).swap_remove(p);
    let cos = inspect::cosine_to(&latent, &v);
    let (lo, mean, hi) = stats(&cos);
    let files = w.scalar("cosine", &cos, -1.0, 1.0)?;
    let mut order: Vec<usize> = (0..n).filter(|&i| i != p).collect();
    order.sort_by(|x, y| cos[*y].total_cmp(&cos[*x]));
    let near: Vec<String> =
        order.iter().take(5).map(|&i| format!("({},{}) {:.3}", i / grid.1, i % grid.1, cos[i])).collect();
    println!(
        "cosine: {grid_s} patches to patch {},{} (index {p}), min {lo:.4} mean {mean:.4} max {hi:.4}; nearest {} -> {}",
        patch.row,
        patch.col,
        near.join(" "),
        show(&files)
    );

    if a.recon {
        let rec = crate::tiles::decode(&m, &latent, &a.tiles)?;
        let orig = engine::image_io::rgb8_to_f32(&img);
        let (psnr, ssim) = (engine::metrics::psnr(&orig, &rec), engine::metrics::ssim(&orig, &rec));
        let rec8 = engine::image_io::f32_to_rgb8(&rec);
        let (rp, ep) = (a.out.join("recon.png"), a.out.join("error.png"));
        engine::image_io::save_png(&rp, &rec8, &[("Source", latin1(&a.source.image.display().to_string()))])?;
        engine::image_io::save_png(&ep, &colormap::error_image(&img, &rec8), &[("dino-sae:map", "error x4".into())])?;
        println!(
            "recon: PSNR {psnr:.2} dB, SSIM {ssim:.4} -> {}, error |x - recon| x4 -> {}",
            rp.display(),
            ep.display()
        );
    }

    if let Some(t) = &teacher {
        let cancel = Arc::new(AtomicBool::new(false));
        let tc = inspect::teacher_cosine(t, m.config(), &img, &latent, m.budget(), &cancel, m.device())?;
        if tc.len() != n {
            bail!("teacher cosine has {} values for {n} patches", tc.len());
        }
        let (lo, mean, hi) = stats(&tc);
        let files = w.scalar("teacher", &tc, -1.0, 1.0)?;
        println!(
            "teacher: {grid_s} patches, student-vs-teacher cosine min {lo:.4} mean {mean:.4} max {hi:.4} -> {}",
            show(&files)
        );
    }
    Ok(())
}
