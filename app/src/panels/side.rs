//! The left panel: the main model in brief, the image (path, fit, working resolution), the full-resolution
//! render, exports and sessions.

use eframe::egui;
use engine::image_io::Fit;
use engine::worker::{JobKind, ModelSource};

use crate::app::Studio;
use crate::commands::AppCommand;
use crate::dialogs::DialogFor;

/// A labelled single-line text field (the label names it for screen readers and tests).
pub fn path_field(ui: &mut egui::Ui, label: &str, text: &mut String) -> egui::Response {
    let l = ui.label(label);
    ui.add(egui::TextEdit::singleline(text).desired_width(f32::INFINITY)).labelled_by(l.id)
}

pub fn show(s: &mut Studio, ui: &mut egui::Ui) {
    ui.heading("Model");
    match &s.models.main {
        Some(m) => {
            if m.random {
                ui.colored_label(egui::Color32::from_rgb(230, 120, 40), "RANDOM weights: pipeline demo only");
            }
            ui.label(format!(
                "{}\n{:.1} M parameters on {}",
                crate::app::short_name(&m.name),
                m.params as f64 / 1e6,
                s.view.backend
            ))
            .on_hover_text(&m.name);
            if !s.models.compare.is_empty() {
                ui.small(format!("+ {} compare model(s); see the Models tab", s.models.compare.len()));
            }
        }
        None if s.link.is_running(JobKind::LoadModel) => {
            ui.label("loading...");
        }
        None => {
            ui.label("No model loaded.");
        }
    }
    path_field(ui, "Model path", &mut s.settings.model_path);
    ui.horizontal(|ui| {
        if ui.button("Load model").clicked() && !s.settings.model_path.trim().is_empty() {
            s.load_model(ModelSource::Path(s.settings.model_path.trim().into()));
        }
        if ui.button("Default model").clicked() {
            s.load_model(ModelSource::Default);
        }
        if ui.button("Browse...").clicked() {
            s.ask(DialogFor::Model);
        }
        if ui.button("Folder...").clicked() {
            s.ask(DialogFor::ModelFolder);
        }
    });
    ui.separator();
    ui.heading("Image");
    let r = path_field(ui, "Image path", &mut s.settings.image_path);
    let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    ui.horizontal(|ui| {
        if ui.button(AppCommand::OpenImage.label()).clicked() || enter {
            s.commands.send(AppCommand::OpenImage);
        }
        if ui.button("Browse image...").clicked() {
            s.ask(DialogFor::Image);
        }
    });
    ui.small("or drop a file on the window");
    let fit_before = s.settings.fit;
    egui::ComboBox::from_label("Fit to x16").selected_text(format!("{:?}", s.settings.fit)).show_ui(ui, |ui| {
        ui.selectable_value(&mut s.settings.fit, Fit::Crop, "Crop");
        ui.selectable_value(&mut s.settings.fit, Fit::Pad, "Pad");
        ui.selectable_value(&mut s.settings.fit, Fit::Resize, "Resize");
    });
    let r = ui.add(
        egui::Slider::new(&mut s.settings.working_side, 64..=2048)
            .step_by(16.0)
            .text("working size (longest side, px)"),
    );
    let r = r.on_hover_text("Every opened image is edited as a copy of this size so that steering stays live; render the full resolution below.");
    let side_done = r.drag_stopped() || (r.changed() && !r.dragged());
    if fit_before != s.settings.fit || side_done {
        s.rework();
    }
    if let (Some(img), Some(c)) = (&s.doc.image, &s.doc.current) {
        ui.small(format!(
            "original {}x{}, working copy {}x{} ({}x{} patches)",
            img.original.width(),
            img.original.height(),
            c.input.width(),
            c.input.height(),
            c.grid.1,
            c.grid.0
        ));
    }
    ui.separator();
    render_section(s, ui);
    ui.separator();
    ui.heading("Export");
    path_field(ui, "Export path", &mut s.settings.export_path);
    ui.horizontal(|ui| {
        for cmd in [AppCommand::ExportImage, AppCommand::ExportLatent] {
            if ui.add_enabled(s.doc.current.is_some(), egui::Button::new(cmd.label())).clicked() {
                s.commands.send(cmd);
            }
        }
    });
    if ui.button("Export PNG as...").clicked() {
        s.ask(DialogFor::Export);
    }
    if let Some(p) = &s.files.last_export {
        ui.small(format!("saved {}", p.display()));
    }
    ui.separator();
    ui.heading("Session");
    path_field(ui, "Session file", &mut s.files.session_path);
    ui.horizontal(|ui| {
        if ui.button("Save session").clicked() {
            s.commands.send(AppCommand::SaveSession);
        }
        if ui.button("Open session").clicked() {
            s.commands.send(AppCommand::OpenSession);
        }
    });
    if !s.view.stable_ui
        && let Some(b) = engine::preflight::rss_bytes()
    {
        ui.small(format!("memory in use: {}", engine::preflight::human(b as f64)));
    }
}

fn render_section(s: &mut Studio, ui: &mut egui::Ui) {
    ui.heading("Full resolution");
    let running = s.link.is_running(JobKind::Render);
    ui.horizontal(|ui| {
        let can = s.doc.current.is_some() && s.doc.image.is_some() && !running;
        if ui.add_enabled(can, egui::Button::new(AppCommand::RenderFull.label())).clicked() {
            s.commands.send(AppCommand::RenderFull);
        }
        if ui.add_enabled(running, egui::Button::new(AppCommand::CancelRender.label())).clicked() {
            s.commands.send(AppCommand::CancelRender);
        }
    });
    if running {
        let (d, of, eta) = s.link.slot(JobKind::Render).and_then(|x| x.progress).unwrap_or((0, 1, 0.0));
        let text = if d == 0 { "starting...".to_string() } else { format!("tile {d}/{of}, ETA {eta:.0} s") };
        ui.add(egui::ProgressBar::new(d as f32 / of.max(1) as f32).text(text));
    }
    if let Some(n) = &s.render.note {
        ui.small(n.clone());
    }
    let mut export = false;
    if let (Some((img, ms, tiles)), Some(t)) = (&s.render.result, &s.render.texture) {
        let label = if s.view.stable_ui {
            format!("render {}x{} ({tiles} tiles)", img.width(), img.height())
        } else {
            format!("render {}x{} ({tiles} tiles, {:.1} s)", img.width(), img.height(), ms / 1e3)
        };
        ui.label(label);
        let w = ui.available_width().min(260.0);
        let h = w * img.height() as f32 / img.width().max(1) as f32;
        ui.image((t.id(), egui::vec2(w, h)));
        export = ui.button("Export full resolution").clicked();
    }
    if export {
        s.export_render();
    }
}
