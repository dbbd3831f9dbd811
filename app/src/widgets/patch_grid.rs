//! Mapping between screen positions over a drawn image and its grid of 16x16-pixel patches.

use eframe::egui::{self, Color32};

/// Row-major indices of the grid cells whose centres lie inside `r` (screen coordinates over `img`): the engine's
/// [`engine::steer::patches_in_box`] (what `dino-sae steer --box` runs) in coordinates relative to the image.
pub fn patches_in(img: egui::Rect, r: egui::Rect, grid: (usize, usize)) -> Vec<usize> {
    let rel = [r.min.x - img.min.x, r.min.y - img.min.y, r.max.x - img.min.x, r.max.y - img.min.y];
    engine::steer::patches_in_box(grid, (img.width(), img.height()), rel)
}

/// The patch under `pos`, if it is over the image.
pub fn patch_at(img: egui::Rect, pos: egui::Pos2, grid: (usize, usize)) -> Option<usize> {
    let gx = ((pos.x - img.left()) / img.width() * grid.1 as f32).floor();
    let gy = ((pos.y - img.top()) / img.height() * grid.0 as f32).floor();
    (gx >= 0.0 && gy >= 0.0 && (gx as usize) < grid.1 && (gy as usize) < grid.0)
        .then(|| gy as usize * grid.1 + gx as usize)
}

/// Outline the selected patches.
pub fn outline(painter: &egui::Painter, img: egui::Rect, grid: (usize, usize), selection: &[usize]) {
    let (gh, gw) = grid;
    let (cw, ch) = (img.width() / gw as f32, img.height() / gh as f32);
    for &p in selection {
        let (y, x) = (p / gw, p % gw);
        let r = egui::Rect::from_min_size(img.min + egui::vec2(x as f32 * cw, y as f32 * ch), egui::vec2(cw, ch));
        painter.rect_stroke(r, 0.0, egui::Stroke::new(1.5, Color32::YELLOW), egui::StrokeKind::Inside);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_map_to_patches() {
        let img = egui::Rect::from_min_size(egui::pos2(10.0, 20.0), egui::vec2(160.0, 80.0));
        // a 4 x 8 grid of 20 x 20 point cells
        assert_eq!(patch_at(img, egui::pos2(10.0, 20.0), (4, 8)), Some(0));
        assert_eq!(patch_at(img, egui::pos2(169.9, 99.9), (4, 8)), Some(31));
        assert_eq!(patch_at(img, egui::pos2(55.0, 45.0), (4, 8)), Some(8 + 2));
        assert_eq!(patch_at(img, egui::pos2(9.0, 45.0), (4, 8)), None);
        let sel = patches_in(img, egui::Rect::from_min_max(egui::pos2(10.0, 20.0), egui::pos2(51.0, 61.0)), (4, 8));
        assert_eq!(sel, vec![0, 1, 8, 9]);
    }
}
