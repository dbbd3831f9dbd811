//! Canvas fitting: how many images of one shape go in a row so that they come out as large as the area allows.

/// The columns and the image size (points) that show `n` images of `img` (w, h) in `avail` (w, h) as large as
/// possible, keeping their aspect: each row also holds a `label` of height `label` and `gap` between images.
pub fn grid_fit(n: usize, img: (f32, f32), avail: (f32, f32), label: f32, gap: f32) -> (usize, (f32, f32)) {
    let n = n.max(1);
    let (w, h) = (img.0.max(1.0), img.1.max(1.0));
    let mut best = (1, 0.0f32);
    for cols in 1..=n {
        let rows = n.div_ceil(cols);
        let kw = (avail.0 - gap * cols as f32) / cols as f32 / w;
        let kh = (avail.1 - (label + gap) * rows as f32) / rows as f32 / h;
        let k = kw.min(kh);
        if k > best.1 {
            best = (cols, k);
        }
    }
    let k = best.1.max(0.05);
    (best.0, (w * k, h * k))
}

#[cfg(test)]
mod tests {
    use super::grid_fit;

    #[test]
    fn the_layout_is_the_one_that_shows_the_images_largest() {
        // three 384 x 240 images in a wide, tall area: two columns (a 2 x 2 grid) beat three in a row
        let (cols, (w, h)) = grid_fit(3, (384.0, 240.0), (930.0, 800.0), 20.0, 8.0);
        assert_eq!(cols, 2);
        assert!((w / h - 1.6).abs() < 1e-4, "aspect kept");
        assert!(w > 400.0 && 2.0 * w + 16.0 <= 930.0 + 1e-3, "fills the width: {w}");
        // a short, wide strip: all in one row
        assert_eq!(grid_fit(3, (384.0, 240.0), (1800.0, 300.0), 20.0, 8.0).0, 3);
        // a tall, narrow area: one column
        assert_eq!(grid_fit(3, (384.0, 240.0), (400.0, 1200.0), 20.0, 8.0).0, 1);
        // no image is ever larger than its cell
        for n in 1..8 {
            let (cols, (w, h)) = grid_fit(n, (300.0, 500.0), (900.0, 700.0), 20.0, 8.0);
            let rows = n.div_ceil(cols) as f32;
            assert!(w * cols as f32 <= 900.0 && (h + 28.0) * rows <= 700.0 + 1e-3, "n {n}");
        }
    }
}
