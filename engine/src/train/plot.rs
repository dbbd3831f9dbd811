//! A loss-curve PNG drawn without a plotting library: one polyline per series, log-scaled y.

use image::{Rgb, RgbImage};

const COLORS: [[u8; 3]; 4] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]];

/// Redraw `out/loss.png` from `out/loss.csv`: one series per `(name, column index)`, from the rows that hold every
/// column asked for; series that never rise above zero (terms switched off) are left out.
pub fn curve_from_csv(out: &std::path::Path, columns: &[(&str, usize)]) -> crate::Result<()> {
    let s = std::fs::read_to_string(out.join("loss.csv")).unwrap_or_default();
    let need = columns.iter().map(|(_, i)| i + 1).max().unwrap_or(0);
    let mut cols: Vec<(String, Vec<f64>)> = columns.iter().map(|(n, _)| (n.to_string(), Vec::new())).collect();
    for line in s.lines().skip(1) {
        let v: Vec<f64> = line.split(',').filter_map(|x| x.parse().ok()).collect();
        if v.len() >= need {
            for ((_, series), (_, i)) in cols.iter_mut().zip(columns) {
                series.push(v[*i]);
            }
        }
    }
    cols.retain(|(_, v)| v.iter().any(|x| *x > 0.0));
    loss_curve(&out.join("loss.png"), &cols, 640, 360)
}

/// Draw `series` (name, values per logged step) into a `w x h` PNG at `path`.
pub fn loss_curve(path: &std::path::Path, series: &[(String, Vec<f64>)], w: u32, h: u32) -> crate::Result<()> {
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let vals: Vec<f64> =
        series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite() && *v > 0.0).collect();
    if vals.is_empty() {
        return crate::image_io::save_png(path, &img, &[]);
    }
    let (lo, hi) = vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v.ln()), b.max(v.ln())));
    let span = (hi - lo).max(1e-9);
    let (m, pw, ph) = (20.0, w as f64 - 40.0, h as f64 - 40.0);
    for (k, (_, v)) in series.iter().enumerate() {
        let c = Rgb(COLORS[k % COLORS.len()]);
        let n = v.len().max(2) as f64 - 1.0;
        let pt = |i: usize| {
            let y = v[i].max(1e-30).ln();
            (m + pw * i as f64 / n, m + ph * (1.0 - (y - lo) / span))
        };
        for i in 1..v.len() {
            let ((x0, y0), (x1, y1)) = (pt(i - 1), pt(i));
            let steps = ((x1 - x0).abs().max((y1 - y0).abs()) as usize).max(1);
            for s in 0..=steps {
                let t = s as f64 / steps as f64;
                let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
                if x >= 0.0 && y >= 0.0 && (x as u32) < w && (y as u32) < h {
                    img.put_pixel(x as u32, y as u32, c);
                }
            }
        }
        // legend swatch
        for dx in 0..12 {
            for dy in 0..4 {
                img.put_pixel(w - 30 + dx.min(11), 6 + 8 * k as u32 + dy, c);
            }
        }
    }
    let legend = series.iter().enumerate().map(|(k, (n, _))| format!("{k}={n}")).collect::<Vec<_>>().join(", ");
    crate::image_io::save_png(path, &img, &[("Series", legend), ("YScale", "log".into())])
}
