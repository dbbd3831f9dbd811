//! A horizontal colour bar of the heatmap colormap with its end values and midpoint.

use eframe::egui::{self, Color32};

pub fn show(ui: &mut egui::Ui, lo: f32, hi: f32) {
    ui.horizontal(|ui| {
        ui.label(format!("colour scale {lo:.2}"));
        let (rect, _) = ui.allocate_exact_size(egui::vec2(220.0, 14.0), egui::Sense::hover());
        let n = 48;
        for i in 0..n {
            let t = (i as f32 + 0.5) / n as f32;
            let [r, g, b] = crate::heatmap::colormap(t);
            let x0 = rect.left() + rect.width() * i as f32 / n as f32;
            let x1 = rect.left() + rect.width() * (i + 1) as f32 / n as f32 + 0.5;
            let cell = egui::Rect::from_min_max(egui::pos2(x0, rect.top()), egui::pos2(x1, rect.bottom()));
            ui.painter().rect_filled(cell, 0.0, Color32::from_rgb(r, g, b));
        }
        ui.label(format!("{hi:.2}  (mid {:.2})", 0.5 * (lo + hi)));
    });
}
