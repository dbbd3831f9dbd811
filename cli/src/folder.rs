//! Commands that take an image or a folder of images (`reconstruct`, `eval`): the images of a folder, and a loop
//! that prints one row per image, reports a failing image and goes on, and fails at the end if any did.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// File extensions read as images (case-insensitive); other files in a folder are left alone.
const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "tif", "tiff", "webp", "bmp"];

/// The image files of `dir` (by extension), sorted by name.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        })
        .collect();
    v.sort();
    if v.is_empty() {
        bail!("{} holds no images ({})", dir.display(), IMAGE_EXTENSIONS.join(", "));
    }
    Ok(v)
}

/// The file name of `p` for a row.
pub fn name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| p.display().to_string())
}

/// `(input, output)` pairs: the image itself and `out`, or every image of the folder `input` and
/// `out/<stem>.<ext>` (the folder `out` is created).
pub fn pairs(input: &Path, out: &Path, ext: &str) -> Result<Vec<(PathBuf, PathBuf)>> {
    if !input.is_dir() {
        return Ok(vec![(input.to_path_buf(), out.to_path_buf())]);
    }
    if out.is_file() {
        bail!(
            "{} is a folder of images: -o names a folder for the outputs, and {} is a file",
            input.display(),
            out.display()
        );
    }
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    Ok(images_in(input)?
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            let o = out.join(format!("{stem}.{ext}"));
            (p, o)
        })
        .collect())
}

/// Run `f` on every pair; `f` returns the row of its image. One image: its row, its error is the command's. A
/// folder: `name  row` per image, a failure printed as `name  FAILED: error` and skipped; an error at the end
/// when any failed.
pub fn each(
    pairs: &[(PathBuf, PathBuf)],
    folder: bool,
    mut f: impl FnMut(&Path, &Path) -> Result<String>,
) -> Result<()> {
    if !folder {
        let (i, o) = &pairs[0];
        println!("{}", f(i, o)?);
        return Ok(());
    }
    let width = pairs.iter().map(|(i, _)| name(i).len()).max().unwrap_or(0);
    let mut failed = Vec::new();
    for (i, o) in pairs {
        match f(i, o) {
            Ok(row) => println!("{:<width$}  {row}", name(i)),
            Err(e) => {
                println!("{:<width$}  FAILED: {e:#}", name(i));
                failed.push(name(i));
            }
        }
    }
    if !failed.is_empty() {
        bail!("{} of {} images failed: {}", failed.len(), pairs.len(), failed.join(", "));
    }
    Ok(())
}
