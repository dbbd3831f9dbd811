//! The working image with its heatmap overlay (WGSL paint callback on wgpu, else a CPU texture) and the
//! selected patches outlined. Returns the response for clicks and drags.

use eframe::egui::{self, Color32};

use crate::app::Studio;
use crate::state::HeatMode;

pub fn show(s: &mut Studio, ui: &mut egui::Ui, size: egui::Vec2) -> Option<egui::Response> {
    let c = s.current.as_ref()?;
    let resp = ui.add(egui::Image::new((c.tex_input.id(), size)).sense(egui::Sense::click()));
    s.last_image_rect = Some(resp.rect);
    let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
    if s.show_heat {
        let scalar = match s.heat {
            HeatMode::Magnitude => {
                let (lo, hi) =
                    c.magnitude.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)));
                Some((c.magnitude.clone(), lo, hi))
            }
            HeatMode::Cosine => c.cosine.as_ref().map(|(_, v)| (v.clone(), -1.0, 1.0)),
            HeatMode::Teacher => c.teacher_cosine.as_ref().map(|v| (v.clone(), -1.0, 1.0)),
            HeatMode::Pca => None,
        };
        match scalar.filter(|(v, _, _)| s.gpu_heatmap && v.len() == c.grid.0 * c.grid.1) {
            Some((values, vmin, vmax)) => {
                let ppp = ui.ctx().pixels_per_point();
                let job = crate::gpu_heatmap::HeatmapJob {
                    base: std::sync::Arc::new(c.input.clone()),
                    values: std::sync::Arc::new(values),
                    grid: c.grid,
                    vmin,
                    vmax,
                    opacity: s.settings.opacity,
                    bilinear: s.settings.linear,
                    version: s.overlay_version,
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
                    ui.painter().image(
                        t.id(),
                        resp.rect,
                        uv,
                        Color32::from_white_alpha((s.settings.opacity * 255.0) as u8),
                    );
                }
            }
        }
    }
    crate::widgets::patch_grid::outline(ui.painter(), resp.rect, c.grid, &s.selection);
    Some(resp)
}

/// Image size for `cols` images side by side, leaving `below` points of height for what follows.
pub fn fit_size(s: &Studio, ui: &egui::Ui, cols: f32, below: f32) -> egui::Vec2 {
    let Some(c) = &s.current else { return egui::Vec2::ZERO };
    let avail = ui.available_size();
    let (w, h) = (c.input.width() as f32, c.input.height() as f32);
    let k = ((avail.x / cols - 12.0) / w).min((avail.y - below).max(120.0) / h).max(0.05);
    egui::vec2(w * k, h * k)
}
