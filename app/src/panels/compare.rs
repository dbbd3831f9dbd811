//! Compare: original | reconstruction | error side by side (and every compare model's reconstruction), PSNR /
//! SSIM / LPIPS-VGG-like, swipe divider, hold-Space flicker, synchronised zoom and pan, Fit / 1:1.

use eframe::egui::{self, Color32, TextureHandle};

use crate::app::Studio;
use crate::widgets::layout::grid_fit;

/// The Compare panel's view: where the swipe divider is and how the synchronised images are panned.
#[derive(Clone, Debug, Default)]
pub struct CompareUi {
    pub swipe: f32,
    pub pan: egui::Vec2,
}

pub fn show(s: &mut Studio, ui: &mut egui::Ui) {
    let Some(c) = &s.doc.current else {
        ui.label(if s.doc.opening.is_some() {
            "Opening the image..."
        } else {
            "Open an image (path on the left, or drop a file here)."
        });
        return;
    };
    let lp = match &c.lpips {
        Some((v, _)) => format!("LPIPS-VGG-like {v:.4}"),
        None => c.lpips_note.clone(),
    };
    let timing = if s.view.stable_ui { String::new() } else { format!("   {:.0} ms", c.millis) };
    let from = if c.from_latent { "   (decoded from a saved latent: no original)" } else { "" };
    ui.label(format!(
        "PSNR {:.2} dB   SSIM {:.4}   {lp}   {}x{} px, {}x{} patches{timing}{from}",
        c.psnr,
        c.ssim,
        c.input.width(),
        c.input.height(),
        c.grid.1,
        c.grid.0
    ));
    ui.horizontal(|ui| {
        ui.add(egui::Slider::new(&mut s.compare.swipe, 0.0..=1.0).text("swipe (original on the left)"));
        let before = s.settings.linear;
        ui.checkbox(&mut s.settings.linear, "linear filtering");
        if before != s.settings.linear {
            s.reload_textures();
        }
        ui.label("hold Space: flicker to the original");
    });
    ui.horizontal(|ui| {
        ui.add(
            egui::Slider::new(&mut s.settings.zoom, 1.0..=16.0).logarithmic(true).text("zoom (all views; drag to pan)"),
        );
        if ui.button("Fit").clicked() {
            s.settings.zoom = 1.0;
            s.compare.pan = egui::Vec2::ZERO;
        }
        if ui.button("1:1").clicked() {
            let views = 3 + s.doc.current.as_ref().map_or(0, |c| c.others.len());
            let (_, fit) = fit(s, ui, views);
            if let Some(c) = &s.doc.current {
                s.settings.zoom = (c.input.width() as f32 / fit.x.max(1.0)).max(1.0);
            }
        }
    });
    let views = 3 + s.doc.current.as_ref().map_or(0, |c| c.others.len());
    let (cols, size) = fit(s, ui, views);
    let flicker = !ui.ctx().egui_wants_keyboard_input() && ui.ctx().input(|i| i.key_down(egui::Key::Space));
    // the same uv window for every view: zoom around the centre, shifted by the pan
    let half = 0.5 / s.settings.zoom.max(1.0);
    let lim = 0.5 - half;
    s.compare.pan = egui::vec2(s.compare.pan.x.clamp(-lim, lim), s.compare.pan.y.clamp(-lim, lim));
    let centre = egui::pos2(0.5 + s.compare.pan.x, 0.5 + s.compare.pan.y);
    let uv = egui::Rect::from_center_size(centre, egui::vec2(2.0 * half, 2.0 * half));
    let mut drag = egui::Vec2::ZERO;
    let mut view = |ui: &mut egui::Ui, tex: &TextureHandle| {
        let r = ui.add(egui::Image::new((tex.id(), size)).uv(uv).sense(egui::Sense::drag()));
        drag += r.drag_delta() / size;
        r
    };
    let Some(c) = &s.doc.current else { return };
    let swipe = s.compare.swipe;
    // every view, laid out in the grid that shows them largest (the whole central panel)
    let mut views: Vec<(String, &TextureHandle, bool)> = vec![
        ("Original".into(), &c.tex_input, false),
        (
            if flicker { "Original (Space held)".into() } else { "Reconstruction".into() },
            if flicker { &c.tex_input } else { &c.tex_recon },
            !flicker,
        ),
        ("Error |x - recon| x4".into(), &c.tex_error, false),
    ];
    for (i, (name, tex, p, q)) in c.others.iter().enumerate() {
        let short = std::path::Path::new(name).file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
        let lp = c
            .lpips
            .as_ref()
            .and_then(|(_, o)| o.get(i))
            .map(|v| format!(", LPIPS-VGG-like {v:.4}"))
            .unwrap_or_default();
        views.push((format!("{short}: PSNR {p:.2} dB, SSIM {q:.4}{lp}"), tex, false));
    }
    for row in views.chunks(cols) {
        ui.horizontal(|ui| {
            for (label, tex, swiped) in row {
                ui.vertical(|ui| {
                    ui.label(label.as_str());
                    let resp = view(ui, tex);
                    if *swiped && swipe > 0.0 {
                        // the original over the left part, split at the divider
                        let r = resp.rect;
                        let split = r.left() + r.width() * swipe;
                        let left = egui::Rect::from_min_max(r.min, egui::pos2(split, r.bottom()));
                        let uv_left =
                            egui::Rect::from_min_max(uv.min, egui::pos2(uv.min.x + uv.width() * swipe, uv.max.y));
                        ui.painter().image(c.tex_input.id(), left, uv_left, Color32::WHITE);
                        ui.painter().vline(split, r.y_range(), egui::Stroke::new(2.0, Color32::WHITE));
                    }
                });
            }
        });
    }
    // dragging any view pans all of them
    s.compare.pan -= drag * uv.width();
}

/// Columns and view size that show `n` views of the current image as large as the panel allows.
fn fit(s: &Studio, ui: &egui::Ui, n: usize) -> (usize, egui::Vec2) {
    let Some(c) = &s.doc.current else { return (1, egui::Vec2::ZERO) };
    let avail = ui.available_size();
    let img = (c.input.width() as f32, c.input.height() as f32);
    let (cols, (w, h)) = grid_fit(n, img, (avail.x, avail.y - 4.0), 22.0, 10.0);
    (cols, egui::vec2(w, h))
}
