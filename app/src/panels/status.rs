//! The status bar: backend, heatmap renderer, every running job with its progress, the last error or message.

use eframe::egui;

use crate::app::Studio;

pub fn show(s: &mut Studio, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.label(format!("backend: {}", s.view.backend));
        ui.separator();
        ui.label(if s.view.gpu_heatmap { "heatmaps: GPU (WGSL)" } else { "heatmaps: CPU" });
        ui.separator();
        if s.doc.opening.is_some() {
            ui.spinner();
            ui.label("opening image...");
        }
        let running: Vec<String> = s
            .link
            .running()
            .iter()
            .map(|(k, slot)| match slot.progress {
                Some((d, of, eta)) => format!("{} {d}/{of} (ETA {eta:.0} s)", k.label()),
                None => k.label().to_string(),
            })
            .collect();
        if !running.is_empty() {
            ui.spinner();
            ui.label(running.join(", "));
            ui.separator();
        }
        if let Some(e) = &s.messages.error {
            ui.colored_label(Studio::error_colour(), format!("error: {e}"));
            if ui.small_button("x").on_hover_text("dismiss").clicked() {
                s.messages.error = None;
            }
        } else if let Some(m) = &s.messages.status {
            ui.label(m);
        }
    });
}
