//! Colour maps for per-patch maps as RGB buffers (no GUI): the viridis-like colormap, heatmap overlays on an image,
//! the CPU reference of the studio's WGSL heatmap shader, and colour bars with their values written under them
//! (a 3x5 pixel digit font), so the studio and `dino-sae inspect` draw the same colours.

use image::{Rgb, RgbImage};

/// The colormap's control points (viridis-like, 5 stops, linear in between); `shaders/heatmap.wgsl` holds the same.
pub const STOPS: [[f32; 3]; 5] =
    [[0.267, 0.005, 0.329], [0.229, 0.322, 0.546], [0.128, 0.567, 0.551], [0.369, 0.789, 0.383], [0.993, 0.906, 0.144]];

/// Map t in [0, 1] to RGB8 (NaN maps like 0).
pub fn colormap(t: f32) -> [u8; 3] {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f32;
    let mut out = [0u8; 3];
    for (c, o) in out.iter_mut().enumerate() {
        *o = ((STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f) * 255.0).round() as u8;
    }
    out
}

/// (min, max) of the values (infinite when empty).
pub fn value_range(values: &[f32]) -> (f32, f32) {
    values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)))
}

/// The grid cell under pixel (x, y) of a `w x h` image, nearest (row-major index).
fn cell(x: u32, y: u32, w: u32, h: u32, grid: (usize, usize)) -> usize {
    let gy = (y as usize * grid.0 / h as usize).min(grid.0 - 1);
    let gx = (x as usize * grid.1 / w as usize).min(grid.1 - 1);
    gy * grid.1 + gx
}

/// Overlay a `gh x gw` grid of values (normalised to [min, max]) on an RGB image, nearest upsampling.
pub fn overlay(img: &RgbImage, values: &[f32], grid: (usize, usize), opacity: f32) -> (RgbImage, f32, f32) {
    let (min, max) = value_range(values);
    let span = (max - min).max(1e-12);
    let (w, h) = img.dimensions();
    let mut out = img.clone();
    for (x, y, p) in out.enumerate_pixels_mut() {
        let c = colormap((values[cell(x, y, w, h, grid)] - min) / span);
        for k in 0..3 {
            p[k] = (p[k] as f32 * (1.0 - opacity) + c[k] as f32 * opacity).round() as u8;
        }
    }
    (out, min, max)
}

/// Per-pixel absolute error, amplified x4, in false colour.
pub fn error_image(a: &RgbImage, b: &RgbImage) -> RgbImage {
    RgbImage::from_fn(a.width(), a.height(), |x, y| {
        let (p, q) = (a.get_pixel(x, y), b.get_pixel(x, y));
        let e = (0..3).map(|c| (p[c] as f32 - q[c] as f32).abs()).sum::<f32>() / (3.0 * 255.0);
        Rgb(colormap((e * 4.0).min(1.0)))
    })
}

/// Overlay with a fixed value range (e.g. cosine in [-1, 1]).
pub fn overlay_range(img: &RgbImage, values: &[f32], grid: (usize, usize), lo: f32, hi: f32) -> RgbImage {
    let colors: Vec<[u8; 3]> = values.iter().map(|v| colormap((v - lo) / (hi - lo).max(1e-12))).collect();
    overlay_colors(img, &colors, grid)
}

/// Paint one colour per grid cell (nearest upsampling), fully opaque.
pub fn overlay_colors(img: &RgbImage, colors: &[[u8; 3]], grid: (usize, usize)) -> RgbImage {
    blend_colors(img, colors, grid, 1.0)
}

/// One colour per grid cell (nearest upsampling) blended over the image with `opacity` (1 = the colours only).
pub fn blend_colors(img: &RgbImage, colors: &[[u8; 3]], grid: (usize, usize), opacity: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let c = colors[cell(x, y, w, h, grid)];
        if opacity >= 1.0 {
            return Rgb(c);
        }
        let p = img.get_pixel(x, y);
        Rgb(std::array::from_fn(|k| (p[k] as f32 * (1.0 - opacity) + c[k] as f32 * opacity).round() as u8))
    })
}

/// `bins` equal-width bins: (lower edge, count).
pub fn histogram(values: &[f32], bins: usize) -> Vec<(f32, usize)> {
    let (lo, hi) = value_range(values);
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
    img: &RgbImage,
    values: &[f32],
    grid: (usize, usize),
    vmin: f32,
    vmax: f32,
    opacity: f32,
    bilinear: bool,
) -> RgbImage {
    let (w, h) = img.dimensions();
    let (gh, gw) = grid;
    let at = |y: i64, x: i64| values[(y.clamp(0, gh as i64 - 1) as usize) * gw + x.clamp(0, gw as i64 - 1) as usize];
    RgbImage::from_fn(w, h, |x, y| {
        let v = if !bilinear {
            values[cell(x, y, w, h, grid)]
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
        for (k, ok) in o.iter_mut().enumerate() {
            let c = STOPS[i][k] * (1.0 - f) + STOPS[i + 1][k] * f;
            let b0 = p[k] as f32 / 255.0;
            *ok = ((b0 * (1.0 - opacity) + c * opacity) * 255.0).round() as u8;
        }
        Rgb(o)
    })
}

/// 3x5 glyphs (rows top to bottom, 3 bits each, most significant = left) of the characters numbers need.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '+' => [0, 2, 7, 2, 0],
        'e' => [0, 3, 7, 4, 3],
        ' ' => [0, 0, 0, 0, 0],
        _ => return None,
    })
}

/// Width in pixels of `text` drawn at `scale` (4 columns per character: 3 + 1 space).
pub fn text_width(text: &str, scale: u32) -> u32 {
    (text.chars().count() as u32 * 4).saturating_sub(1) * scale
}

/// Draw `text` (digits, `.`, `-`, `+`, `e`, space; other characters are skipped) with its top-left at (x, y);
/// pixels outside the image are clipped.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32, colour: [u8; 3]) {
    for (i, ch) in text.chars().enumerate() {
        let Some(g) = glyph(ch) else { continue };
        let x0 = x + i as u32 * 4 * scale;
        for (row, bits) in g.iter().enumerate() {
            for col in 0..3u32 {
                if bits & (4 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (x0 + col * scale + dx, y + row as u32 * scale + dy);
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, Rgb(colour));
                        }
                    }
                }
            }
        }
    }
}

/// A value as a short label: 3 significant decimals, scientific for very large or small magnitudes.
pub fn label(v: f32) -> String {
    let a = v.abs();
    if a != 0.0 && !(0.01..10_000.0).contains(&a) { format!("{v:.2e}") } else { format!("{v:.3}") }
}

/// `map` with a colour bar of the colormap from `lo` to `hi` under it and the values at its ends and midpoint
/// written below the bar (white on dark grey).
pub fn with_colour_bar(map: &RgbImage, lo: f32, hi: f32) -> RgbImage {
    let (w, h) = map.dimensions();
    let scale = if w >= 256 { 2 } else { 1 };
    let (gap, bar_h, text_h) = (4 * scale, 8 * scale, 5 * scale);
    let total = h + gap + bar_h + gap + text_h + gap;
    let mut out = RgbImage::from_pixel(w, total, Rgb([32, 32, 32]));
    image::imageops::replace(&mut out, map, 0, 0);
    let margin = 2 * scale;
    let bar_w = w.saturating_sub(2 * margin).max(1);
    for x in 0..bar_w {
        let c = colormap((x as f32 + 0.5) / bar_w as f32);
        for y in 0..bar_h {
            if margin + x < w {
                out.put_pixel(margin + x, h + gap + y, Rgb(c));
            }
        }
    }
    let ty = h + gap + bar_h + gap;
    let white = [240, 240, 240];
    let (l, m, r) = (label(lo), label(0.5 * (lo + hi)), label(hi));
    let (lw, mw, rw) = (text_width(&l, scale), text_width(&m, scale), text_width(&r, scale));
    draw_text(&mut out, margin, ty, &l, scale, white);
    if lw + rw + 4 * scale <= bar_w {
        draw_text(&mut out, (margin + bar_w).saturating_sub(rw), ty, &r, scale, white);
    }
    let mx = (margin + bar_w / 2).saturating_sub(mw / 2);
    if mx >= margin + lw + 4 * scale && mx + mw + 4 * scale <= (margin + bar_w).saturating_sub(rw) {
        draw_text(&mut out, mx, ty, &m, scale, white);
    }
    out
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
        let img = RgbImage::from_pixel(32, 16, Rgb([0, 0, 0]));
        let (o, min, max) = overlay(&img, &[1.0, 3.0], (1, 2), 1.0);
        assert_eq!((min, max), (1.0, 3.0));
        assert_eq!(o.get_pixel(0, 0).0, colormap(0.0));
        assert_eq!(o.get_pixel(31, 15).0, colormap(1.0));
        // half opacity over white: the mean of white and the colour, per channel
        let white = RgbImage::from_pixel(32, 16, Rgb([255, 255, 255]));
        let b = blend_colors(&white, &[[0, 100, 200], [10, 20, 30]], (1, 2), 0.5);
        assert_eq!(b.get_pixel(3, 3).0, [128, 178, 228]);
        assert_eq!(b.get_pixel(20, 3).0, [133, 138, 143]);
    }

    #[test]
    fn colour_bar_runs_from_lo_to_hi_colour_under_the_map() {
        let map = RgbImage::from_pixel(300, 40, Rgb([1, 2, 3]));
        let out = with_colour_bar(&map, -1.0, 1.0);
        assert_eq!(out.width(), 300);
        assert!(out.height() > 40 + 16);
        assert_eq!(out.get_pixel(150, 20).0, [1, 2, 3], "the map is kept as it was");
        // scale 2: bar from x = 4 to 296, rows 48..64
        let first = out.get_pixel(4, 50).0;
        let last = out.get_pixel(295, 50).0;
        assert_eq!(first, colormap(0.5 / 292.0));
        assert_eq!(last, colormap(291.5 / 292.0));
        // some label pixels are drawn below the bar (white), none over the map
        let white =
            (0..300).flat_map(|x| (68..78).map(move |y| (x, y))).filter(|&(x, y)| out.get_pixel(x, y).0 == [240; 3]);
        assert!(white.count() > 20);
    }

    #[test]
    fn labels_use_only_drawable_characters() {
        for v in [0.0, -1.0, 0.5, 1234.5, 1e-5, -3.2e7, 15.25] {
            let l = label(v);
            assert!(l.chars().all(|c| glyph(c).is_some()), "{l}");
            assert!((l.parse::<f32>().expect("a number") - v).abs() <= v.abs() * 0.01 + 1e-3, "{l} vs {v}");
        }
    }
}
