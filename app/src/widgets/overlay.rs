//! The working image with its heatmap overlay (WGSL paint callback on wgpu, else a CPU texture) and the
//! selected patches outlined. Returns the response for clicks and drags.

use eframe::egui::{self, Color32};

use crate::state::{Current, HeatMode};

/// What the overlay draws: the current image and its maps, which map (if any) over it, how, and the selection.
pub struct Overlay<'a> {
    pub current: &'a Current,
    /// The map drawn over the image (`None`: the image alone).
    pub heat: Option<HeatMode>,
    pub opacity: f32,
    pub bilinear: bool,
    /// Draw scalar maps with the WGSL pipeline (registered with eframe's wgpu renderer).
    pub gpu: bool,
    /// Bumped when the values change (the GPU pipeline re-uploads them).
    pub version: u64,
    pub selection: &'a [usize],
}

pub fn show(ui: &mut egui::Ui, o: &Overlay, size: egui::Vec2) -> egui::Response {
    let c = o.current;
    let resp = ui.add(egui::Image::new((c.tex_input.id(), size)).sense(egui::Sense::click()));
    let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
    if let Some(heat) = o.heat {
        let scalar = match heat {
            HeatMode::Magnitude => {
                let (lo, hi) =
                    c.magnitude.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
                Some((c.magnitude.clone(), lo, hi))
            }
            HeatMode::Cosine => c.cosine.as_ref().map(|(_, v)| (v.clone(), -1.0, 1.0)),
            HeatMode::Teacher => c.teacher_cosine.as_ref().map(|v| (v.clone(), -1.0, 1.0)),
            HeatMode::Pca => None,
        };
        match scalar.filter(|(v, _, _)| o.gpu && v.len() == c.grid.0 * c.grid.1) {
            Some((values, vmin, vmax)) => {
                let ppp = ui.ctx().pixels_per_point();
                let job = crate::gpu_heatmap::HeatmapJob {
                    base: std::sync::Arc::new(c.input.clone()),
                    values: std::sync::Arc::new(values),
                    grid: c.grid,
                    vmin,
                    vmax,
                    opacity: o.opacity,
                    bilinear: o.bilinear,
                    version: o.version,
                    rect_px: (
                        [resp.rect.min.x * ppp, resp.rect.min.y * ppp],
                        [resp.rect.width() * ppp, resp.rect.height() * ppp],
                    ),
                };
                ui.painter().add(eframe::egui_wgpu::Callback::new_paint_callback(
                    resp.rect,
                    crate::gpu_heatmap::HeatmapCallback(job),
                ));
            }
            None => {
                if let Some(t) = &c.tex_overlay {
                    ui.painter().image(t.id(), resp.rect, uv, Color32::from_white_alpha((o.opacity * 255.0) as u8));
                }
            }
        }
    }
    crate::widgets::patch_grid::outline(ui.painter(), resp.rect, c.grid, o.selection);
    resp
}

/// Image size for `cols` images of `image`'s shape side by side, leaving `below` points of height for what follows.
pub fn fit_size(image: Option<&image::RgbImage>, ui: &egui::Ui, cols: f32, below: f32) -> egui::Vec2 {
    let Some(img) = image else { return egui::Vec2::ZERO };
    let avail = ui.available_size();
    let (w, h) = (img.width() as f32, img.height() as f32);
    let k = ((avail.x / cols - 12.0) / w).min((avail.y - below).max(120.0) / h).max(0.05);
    egui::vec2(w * k, h * k)
}
