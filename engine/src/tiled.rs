//! Full-resolution rendering in tiles: an image too large for one pass (a 6000x4000 camera photo) is encoded
//! as overlapping tiles (each patch taken from the tile where it lies deepest inside), and a large latent is
//! decoded as overlapping tiles blended at the seams with linear ramps (weights that sum to one everywhere).
//! Progress with an ETA after every tile; cooperative cancel between tiles and inside each tile's forward.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::Device;
use image::RgbImage;

use crate::error::{EngineError, Result};
use crate::metrics::RgbF32;
use crate::model::sae::DinoSae;
use crate::preflight::{self, Budget};
use crate::tensor_file::RawTensor;

/// Tile size and overlap, in patches (16 px each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tiling {
    pub tile: usize,
    pub overlap: usize,
}

impl Default for Tiling {
    /// 512 px tiles overlapping by 64 px.
    fn default() -> Self {
        Self { tile: 32, overlap: 4 }
    }
}

/// Progress of a tiled job.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileProgress {
    pub done: usize,
    pub of: usize,
    pub eta_secs: f64,
}

/// Tiles `(start, len)` covering `0..n` (tile `tile`, consecutive tiles overlapping by at least `overlap`; the last
/// tile ends at `n`). One tile when `n <= tile`.
pub fn axis_tiles(n: usize, tile: usize, overlap: usize) -> Vec<(usize, usize)> {
    let tile = tile.max(1);
    if n <= tile {
        return vec![(0, n)];
    }
    let overlap = overlap.min(tile / 2);
    let step = (tile - overlap).max(1);
    let mut out = Vec::new();
    let mut s = 0;
    loop {
        if s + tile >= n {
            out.push((n - tile, tile));
            break;
        }
        out.push((s, tile));
        s += step;
    }
    out
}

/// Blend weights of each tile along one axis at `scale` samples per unit (16 for pixels, 1 for patches): a ramp
/// of `ramp` samples on every side that has a neighbour, normalised so the weights of all tiles sum to 1 at
/// every sample.
pub fn axis_weights(n: usize, tiles: &[(usize, usize)], scale: usize, ramp: usize) -> Vec<Vec<f64>> {
    let total = n * scale;
    let ramp = ramp.max(1) as f64;
    let last = tiles.len().saturating_sub(1);
    let mut w: Vec<Vec<f64>> = tiles
        .iter()
        .enumerate()
        .map(|(i, &(_, l))| {
            (0..l * scale)
                .map(|k| {
                    let left = if i > 0 { (k as f64 + 0.5) / ramp } else { 1.0 };
                    let right = if i < last { ((l * scale - k) as f64 - 0.5) / ramp } else { 1.0 };
                    left.min(right).min(1.0)
                })
                .collect()
        })
        .collect();
    let mut sum = vec![0f64; total];
    for (t, &(s, _)) in w.iter().zip(tiles) {
        for (k, v) in t.iter().enumerate() {
            sum[s * scale + k] += v;
        }
    }
    for (t, &(s, _)) in w.iter_mut().zip(tiles) {
        for (k, v) in t.iter_mut().enumerate() {
            *v /= sum[s * scale + k];
        }
    }
    w
}

/// For every position along an axis, the tile where it lies deepest inside (distance to the nearest tile edge that
/// is not an edge of the whole axis).
fn owners(n: usize, tiles: &[(usize, usize)]) -> Vec<usize> {
    let last = tiles.len().saturating_sub(1);
    (0..n)
        .map(|p| {
            let mut best = (0, -1.0f64);
            for (i, &(s, l)) in tiles.iter().enumerate() {
                if p >= s && p < s + l {
                    let left = if i == 0 { f64::INFINITY } else { (p - s) as f64 };
                    let right = if i == last { f64::INFINITY } else { (s + l - 1 - p) as f64 };
                    let depth = left.min(right);
                    if depth > best.1 {
                        best = (i, depth);
                    }
                }
            }
            best.0
        })
        .collect()
}

fn check_cancel(cancel: &Arc<AtomicBool>) -> Result<()> {
    if cancel.load(Ordering::Relaxed) { Err(EngineError::Cancelled) } else { Ok(()) }
}

fn eta(t0: Instant, done: usize, of: usize) -> f64 {
    t0.elapsed().as_secs_f64() / done.max(1) as f64 * (of - done) as f64
}

/// Encode an image of any size (sides multiples of 16) tile by tile into a latent `[1, C, H/16, W/16]`.
/// Images that fit one tile are encoded in one pass (identical to [`DinoSae::encode`]).
pub fn encode_tiled(
    model: &DinoSae,
    img: &RgbImage,
    tiling: Tiling,
    budget: &Budget,
    device: &Device,
    cancel: &Arc<AtomicBool>,
    progress: &mut dyn FnMut(TileProgress),
) -> Result<RawTensor> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w % 16 != 0 || h % 16 != 0 || w == 0 || h == 0 {
        return Err(EngineError::Shape(format!("tiled encode needs sides that are multiples of 16, got {w}x{h}")));
    }
    let (gh, gw) = (h / 16, w / 16);
    let c = model.cfg.decoder.latent_channels;
    let ty = axis_tiles(gh, tiling.tile, tiling.overlap);
    let tx = axis_tiles(gw, tiling.tile, tiling.overlap);
    let (th, tw) = (ty.iter().map(|t| t.1).max().unwrap_or(1), tx.iter().map(|t| t.1).max().unwrap_or(1));
    preflight::check_encode(&model.cfg, 1, tw * 16, th * 16, budget)?;
    let whole = (c * gh * gw) as f64 * 8.0;
    preflight::check(
        &format!("the latent of {w}x{h}"),
        &preflight::Estimate { bytes: whole, flops: 0.0 },
        budget,
        || "use a smaller working resolution".into(),
    )?;
    let (oy, ox) = (owners(gh, &ty), owners(gw, &tx));
    let mut out = RawTensor::zeros(vec![1, c, gh, gw]);
    let of = ty.len() * tx.len();
    let t0 = Instant::now();
    let mut done = 0;
    for (iy, &(sy, ly)) in ty.iter().enumerate() {
        for (ix, &(sx, lx)) in tx.iter().enumerate() {
            check_cancel(cancel)?;
            let crop =
                image::imageops::crop_imm(img, (sx * 16) as u32, (sy * 16) as u32, (lx * 16) as u32, (ly * 16) as u32)
                    .to_image();
            let x = crate::image_io::to_tensor(&[&crop], &model.cfg.pixels, device)?;
            let lat = RawTensor::from_tensor(model.encode_cancellable(x, cancel)?.patches)?;
            for py in 0..ly {
                if oy[sy + py] != iy {
                    continue;
                }
                for px in 0..lx {
                    if ox[sx + px] != ix {
                        continue;
                    }
                    for ch in 0..c {
                        out.data[(ch * gh + sy + py) * gw + sx + px] = lat.data[(ch * ly + py) * lx + px];
                    }
                }
            }
            done += 1;
            progress(TileProgress { done, of, eta_secs: eta(t0, done, of) });
        }
    }
    Ok(out)
}

/// Decode a latent `[1, C, h, w]` of any size tile by tile, blending overlapping tiles with linear ramps over the
/// overlap. A latent that fits one tile is decoded in one pass (identical to [`DinoSae::decode`]).
pub fn decode_tiled(
    model: &DinoSae,
    z: &RawTensor,
    tiling: Tiling,
    budget: &Budget,
    device: &Device,
    cancel: &Arc<AtomicBool>,
    progress: &mut dyn FnMut(TileProgress),
) -> Result<RgbF32> {
    if z.shape.len() != 4 || z.shape[0] != 1 {
        return Err(EngineError::Shape(format!("tiled decode expects a [1, C, h, w] latent, got {:?}", z.shape)));
    }
    let (c, gh, gw) = (z.shape[1], z.shape[2], z.shape[3]);
    let ty = axis_tiles(gh, tiling.tile, tiling.overlap);
    let tx = axis_tiles(gw, tiling.tile, tiling.overlap);
    let (th, tw) = (ty.iter().map(|t| t.1).max().unwrap_or(1), tx.iter().map(|t| t.1).max().unwrap_or(1));
    preflight::check_decode(&model.cfg, 1, th, tw, budget)?;
    let (h, w) = (gh * 16, gw * 16);
    let whole = (h * w * 3) as f64 * 8.0;
    preflight::check(&format!("a {w}x{h} image"), &preflight::Estimate { bytes: whole, flops: 0.0 }, budget, || {
        "decode a smaller latent".into()
    })?;
    let ramp = tiling.overlap.max(1) * 16;
    let (wy, wx) = (axis_weights(gh, &ty, 16, ramp), axis_weights(gw, &tx, 16, ramp));
    let mut acc = vec![0f32; h * w * 3];
    let of = ty.len() * tx.len();
    let t0 = Instant::now();
    let mut done = 0;
    for (iy, &(sy, ly)) in ty.iter().enumerate() {
        for (ix, &(sx, lx)) in tx.iter().enumerate() {
            check_cancel(cancel)?;
            let mut part = vec![0f32; c * ly * lx];
            for ch in 0..c {
                for py in 0..ly {
                    let src = (ch * gh + sy + py) * gw + sx;
                    part[(ch * ly + py) * lx..(ch * ly + py + 1) * lx].copy_from_slice(&z.data[src..src + lx]);
                }
            }
            let t = RawTensor::new(vec![1, c, ly, lx], part)?.to_tensor::<4>(device)?;
            let rec = crate::image_io::from_tensor(model.decode_cancellable(t, cancel)?, &model.cfg.pixels)?;
            let r = &rec[0];
            for (y, &wyv) in wy[iy].iter().enumerate().take(ly * 16) {
                let gy = sy * 16 + y;
                let wyv = wyv as f32;
                for (x, &wxv) in wx[ix].iter().enumerate().take(lx * 16) {
                    let gx = sx * 16 + x;
                    let wv = wyv * wxv as f32;
                    let (o, s) = ((gy * w + gx) * 3, (y * lx * 16 + x) * 3);
                    for k in 0..3 {
                        acc[o + k] += wv * r.data[s + k];
                    }
                }
            }
            done += 1;
            progress(TileProgress { done, of, eta_secs: eta(t0, done, of) });
        }
    }
    Ok(RgbF32 { width: w, height: h, data: acc })
}

/// Whole-image jobs whose preflight estimate exceeds this many seconds at [`PLAN_GFLOPS`] go to tiles by
/// themselves (`dino-sae reconstruct/encode/decode/steer/inspect` without `--tiled` or `--whole`).
pub const AUTO_TILE_SECS: f64 = 60.0;

/// The throughput the time guess assumes: a 2-core laptop's whole-job average (docs/PERFORMANCE.md measures
/// 109-191 GFLOP/s inside the products; 60 leaves room for the rest).
pub const PLAN_GFLOPS: f64 = 60.0;

/// How a whole-image job should run.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// One pass: it fits the budget and is quick enough.
    Whole(preflight::Estimate),
    /// In tiles, and why (over the memory budget, or estimated above [`AUTO_TILE_SECS`]).
    Tiled(String),
}

impl Plan {
    pub fn is_tiled(&self) -> bool {
        matches!(self, Plan::Tiled(_))
    }
}

fn plan(est: Result<preflight::Estimate>, what: &str) -> Result<Plan> {
    match est {
        Ok(e) if e.seconds_at(PLAN_GFLOPS) > AUTO_TILE_SECS => Ok(Plan::Tiled(format!(
            "one pass over the whole {what} would take roughly {:.0} s ({:.0} GFLOP); tiles take time in proportion \
             to the area",
            e.seconds_at(PLAN_GFLOPS),
            e.flops / 1e9
        ))),
        Ok(e) => Ok(Plan::Whole(e)),
        Err(EngineError::TooBig { estimate, budget, .. }) => Ok(Plan::Tiled(format!(
            "one pass over the whole {what} needs about {estimate} of memory, over the budget of {budget}"
        ))),
        Err(e) => Err(e),
    }
}

/// Encode (and decode back, `reconstruct`) of a `w x h` image: one pass or tiles.
pub fn plan_image(
    cfg: &crate::model::sae::SaeConfig,
    w: usize,
    h: usize,
    decode_too: bool,
    budget: &Budget,
) -> Result<Plan> {
    let est = if decode_too {
        preflight::check_reconstruct(cfg, w, h, budget)
    } else {
        preflight::check_encode(cfg, 1, w, h, budget)
    };
    plan(est, &format!("{w}x{h} image"))
}

/// Decode of one `gh x gw` latent: one pass or tiles.
pub fn plan_decode(cfg: &crate::model::sae::SaeConfig, gh: usize, gw: usize, budget: &Budget) -> Result<Plan> {
    plan(preflight::check_decode(cfg, 1, gh, gw, budget), &format!("{gh}x{gw} latent"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_and_weights_sum_to_one() {
        for n in [1, 5, 16, 32, 33, 40, 70, 100, 250, 375] {
            for (tile, overlap) in [(32, 4), (16, 2), (8, 3), (32, 0)] {
                let t = axis_tiles(n, tile, overlap);
                assert_eq!(t[0].0, 0);
                let (s, l) = *t.last().expect("tiles");
                assert_eq!(s + l, n, "n {n}");
                for p in t.windows(2) {
                    assert!(p[1].0 <= p[0].0 + p[0].1, "gap in {t:?}");
                    assert!(p[1].0 > p[0].0, "no progress in {t:?}");
                }
                let w = axis_weights(n, &t, 16, overlap.max(1) * 16);
                let mut sum = vec![0f64; n * 16];
                for (wt, &(s, _)) in w.iter().zip(&t) {
                    for (k, v) in wt.iter().enumerate() {
                        assert!(*v >= 0.0);
                        sum[s * 16 + k] += v;
                    }
                }
                assert!(sum.iter().all(|s| (s - 1.0).abs() < 1e-12), "n {n} tile {tile}");
                let own = owners(n, &t);
                for (p, &i) in own.iter().enumerate() {
                    assert!(p >= t[i].0 && p < t[i].0 + t[i].1);
                }
            }
        }
    }

    /// The plan follows the estimate: a small image runs whole; a camera photo (6000x4000) goes to tiles because
    /// of time even under an unlimited memory budget, and a modest one goes to tiles when the budget is small.
    #[test]
    fn whole_or_tiled_follows_the_preflight() {
        let cfg = crate::model::sae::SaeConfig::small_dinov2();
        let big = Budget::bytes(1 << 50);
        assert!(matches!(plan_image(&cfg, 256, 256, true, &big).expect("plan"), Plan::Whole(_)));
        let camera = plan_image(&cfg, 6000, 4000, true, &big).expect("plan");
        assert!(matches!(&camera, Plan::Tiled(why) if why.contains("roughly")), "{camera:?}");
        let tight = Budget::bytes(64 << 20);
        let p = plan_image(&cfg, 1024, 1024, false, &tight).expect("plan");
        assert!(matches!(&p, Plan::Tiled(why) if why.contains("memory")), "{p:?}");
        let p = plan_decode(&cfg, 400, 400, &big).expect("plan");
        assert!(p.is_tiled(), "a 400x400-patch latent: {p:?}");
        assert!(!plan_decode(&cfg, 16, 16, &big).expect("plan").is_tiled());
    }
}
