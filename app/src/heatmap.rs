//! CPU colormap for per-patch heatmaps (viridis-like, 5 control points, linear in between).

const STOPS: [[f32; 3]; 5] =
    [[0.267, 0.005, 0.329], [0.229, 0.322, 0.546], [0.128, 0.567, 0.551], [0.369, 0.789, 0.383], [0.993, 0.906, 0.144]];

/// Map t in [0, 1] to RGB8.
pub fn colormap(t: f32) -> [u8; 3] {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f32;
    let mut out = [0u8; 3];
    for c in 0..3 {
        out[c] = ((STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f) * 255.0).round() as u8;
    }
    out
}

/// Overlay a `gh x gw` grid of values (normalised to [min, max]) on an RGB image, nearest upsampling.
pub fn overlay(
    img: &image::RgbImage,
    values: &[f32],
    grid: (usize, usize),
    opacity: f32,
) -> (image::RgbImage, f32, f32) {
    let (min, max) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    let span = (max - min).max(1e-12);
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    for (x, y, p) in out.enumerate_pixels_mut() {
        let gy = (y as usize * grid.0 / h as usize).min(grid.0 - 1);
        let gx = (x as usize * grid.1 / w as usize).min(grid.1 - 1);
        let c = colormap((values[gy * grid.1 + gx] - min) / span);
        for k in 0..3 {
            p[k] = (p[k] as f32 * (1.0 - opacity) + c[k] as f32 * opacity).round() as u8;
        }
    }
    (out, min, max)
}

/// Per-pixel absolute error, amplified x4, in false colour.
pub fn error_image(a: &image::RgbImage, b: &image::RgbImage) -> image::RgbImage {
    image::RgbImage::from_fn(a.width(), a.height(), |x, y| {
        let (p, q) = (a.get_pixel(x, y), b.get_pixel(x, y));
        let e = (0..3).map(|c| (p[c] as f32 - q[c] as f32).abs()).sum::<f32>() / (3.0 * 255.0);
        image::Rgb(colormap((e * 4.0).min(1.0)))
    })
}

/// Overlay with a fixed value range (e.g. cosine in [-1, 1]).
pub fn overlay_range(img: &image::RgbImage, values: &[f32], grid: (usize, usize), lo: f32, hi: f32) -> image::RgbImage {
    let norm: Vec<f32> = values.iter().map(|v| (v - lo) / (hi - lo).max(1e-12)).collect();
    let colors: Vec<[u8; 3]> = norm.iter().map(|t| colormap(*t)).collect();
    overlay_colors(img, &colors, grid)
}

/// Paint one colour per grid cell (nearest upsampling), fully opaque.
pub fn overlay_colors(img: &image::RgbImage, colors: &[[u8; 3]], grid: (usize, usize)) -> image::RgbImage {
    let (w, h) = img.dimensions();
    image::RgbImage::from_fn(w, h, |x, y| {
        let gy = (y as usize * grid.0 / h as usize).min(grid.0 - 1);
        let gx = (x as usize * grid.1 / w as usize).min(grid.1 - 1);
        image::Rgb(colors[gy * grid.1 + gx])
    })
}

/// `bins` equal-width bins: (lower edge, count).
pub fn histogram(values: &[f32], bins: usize) -> Vec<(f32, usize)> {
    let (lo, hi) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
    if !lo.is_finite() || bins == 0 {
        return Vec::new();
    }
    let w = ((hi - lo) / bins as f32).max(1e-12);
    let mut counts = vec![0usize; bins];
    for v in values {
        counts[(((v - lo) / w) as usize).min(bins - 1)] += 1;
    }
    counts.into_iter().enumerate().map(|(i, n)| (lo + i as f32 * w, n)).collect()
}

/// CPU reference of `shaders/heatmap.wgsl`: values normalised by [vmin, vmax], colormap, blended with `opacity`,
/// nearest or bilinear (cell centres, clamped borders) upsampling. Unrounded colormap, one rounding at the end.
pub fn blend(
    img: &image::RgbImage,
    values: &[f32],
    grid: (usize, usize),
    vmin: f32,
    vmax: f32,
    opacity: f32,
    bilinear: bool,
) -> image::RgbImage {
    let (w, h) = img.dimensions();
    let (gh, gw) = grid;
    let at = |y: i64, x: i64| values[(y.clamp(0, gh as i64 - 1) as usize) * gw + x.clamp(0, gw as i64 - 1) as usize];
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = if !bilinear {
            let gy = (y as usize * gh / h as usize).min(gh - 1);
            let gx = (x as usize * gw / w as usize).min(gw - 1);
            values[gy * gw + gx]
        } else {
            let sy = (y as f32 + 0.5) * gh as f32 / h as f32 - 0.5;
            let sx = (x as f32 + 0.5) * gw as f32 / w as f32 - 0.5;
            let (y0, x0) = (sy.floor(), sx.floor());
            let (fy, fx) = (sy - y0, sx - x0);
            let (y0, x0) = (y0 as i64, x0 as i64);
            let a = at(y0, x0) * (1.0 - fx) + at(y0, x0 + 1) * fx;
            let b = at(y0 + 1, x0) * (1.0 - fx) + at(y0 + 1, x0 + 1) * fx;
            a * (1.0 - fy) + b * fy
        };
        let t = ((v - vmin) / (vmax - vmin).max(1e-12)).clamp(0.0, 1.0);
        let xk = t * 4.0;
        let i = (xk.floor() as usize).min(3);
        let f = xk - i as f32;
        let p = img.get_pixel(x, y);
        let mut o = [0u8; 3];
        for k in 0..3 {
            let c = STOPS[i][k] * (1.0 - f) + STOPS[i + 1][k] * f;
            let b0 = p[k] as f32 / 255.0;
            o[k] = ((b0 * (1.0 - opacity) + c * opacity) * 255.0).round() as u8;
        }
        image::Rgb(o)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormap_endpoints_and_monotone_luminance() {
        assert_eq!(colormap(0.0), [68, 1, 84]);
        assert_eq!(colormap(1.0), [253, 231, 37]);
        assert_eq!(colormap(f32::NAN), colormap(0.0));
        let lum = |c: [u8; 3]| 0.2126 * c[0] as f32 + 0.7152 * c[1] as f32 + 0.0722 * c[2] as f32;
        let mut last = -1.0;
        for i in 0..=20 {
            let l = lum(colormap(i as f32 / 20.0));
            assert!(l > last, "luminance must increase");
            last = l;
        }
    }

    #[test]
    fn overlay_maps_grid_cells_to_pixel_blocks() {
        let img = image::RgbImage::from_pixel(32, 16, image::Rgb([0, 0, 0]));
        let (o, min, max) = overlay(&img, &[1.0, 3.0], (1, 2), 1.0);
        assert_eq!((min, max), (1.0, 3.0));
        assert_eq!(o.get_pixel(0, 0).0, colormap(0.0));
        assert_eq!(o.get_pixel(31, 15).0, colormap(1.0));
    }
}
