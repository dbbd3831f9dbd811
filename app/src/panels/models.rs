//! Models: every loaded model (main and compare) with its config, parameter count, memory and key report, the
//! backend; which model the views use (make a compare model the main one, remove one); teacher and generator.

use eframe::egui;
use engine::worker::{Job, ModelInfo};

use crate::app::Studio;
use crate::panels::side::path_field;

/// The Models panel's text fields.
#[derive(Clone, Debug)]
pub struct ModelsUi {
    pub teacher_path: String,
    pub preview_path: String,
}

impl Default for ModelsUi {
    fn default() -> Self {
        Self { teacher_path: engine::dirs::teacher_dir().display().to_string(), preview_path: String::new() }
    }
}

fn card(ui: &mut egui::Ui, m: &ModelInfo, id: &str) {
    if m.random {
        ui.colored_label(egui::Color32::from_rgb(230, 120, 40), "RANDOM weights: pipeline demo only");
    }
    ui.label(format!(
        "{:.2} M parameters, {} in memory",
        m.params as f64 / 1e6,
        engine::preflight::human(m.bytes as f64)
    ));
    egui::CollapsingHeader::new("Key report").id_salt(format!("{id}-report")).show(ui, |ui| ui.monospace(&m.report));
    egui::CollapsingHeader::new("Config").id_salt(format!("{id}-config")).show(ui, |ui| {
        egui::ScrollArea::vertical()
            .id_salt(format!("{id}-cfg-scroll"))
            .max_height(220.0)
            .show(ui, |ui| ui.monospace(&m.config))
    });
}

pub fn show(s: &mut Studio, ui: &mut egui::Ui) {
    ui.heading("Models");
    ui.label(format!("Engine backend: {}", s.view.backend));
    ui.label("Compare, Inspect, Steer, Sample and the full-resolution render use the main model; compare models are shown beside it in Compare.");
    ui.separator();
    match s.models.main.clone() {
        Some(m) => {
            ui.strong(format!("Main: {}", m.name));
            card(ui, &m, "main");
        }
        None => {
            ui.label("No main model loaded.");
        }
    }
    ui.add_space(4.0);
    ui.strong("Preview decoder (live steering previews)");
    match &s.models.preview {
        Some(p) => {
            ui.label(format!(
                "{:.2} M parameters, {:.2} GFLOP at 256x256, from {}",
                p.params as f64 / 1e6,
                p.gflop_256,
                p.path.display()
            ));
        }
        None => {
            ui.label(
                "This model has no preview decoder: steering shows the full decode only. Distil one (best on a GPU): \
                 dino-sae train-preview --model MODEL --photos PHOTOS -o MODEL/preview",
            );
        }
    }
    path_field(ui, "Preview decoder folder", &mut s.models_ui.preview_path);
    if ui.button("Load preview decoder").clicked() && !s.models_ui.preview_path.trim().is_empty() {
        s.commands.send(Job::LoadPreview(s.models_ui.preview_path.trim().into()));
    }
    let compare = s.models.compare.clone();
    for (i, m) in compare.iter().enumerate() {
        ui.separator();
        ui.strong(format!("Compare {}: {}", i + 1, m.name));
        card(ui, m, &format!("compare{i}"));
        ui.horizontal(|ui| {
            if ui.button(format!("Use compare {} as the main model", i + 1)).clicked() {
                s.commands.send(Job::PromoteCompareModel(i));
            }
            if ui.button(format!("Remove compare {}", i + 1)).clicked() {
                s.commands.send(Job::RemoveCompareModel(i));
            }
        });
    }
    ui.separator();
    ui.label("Add a model to compare (uses the Model path on the left):");
    if ui.button("Add model to compare").clicked() && !s.settings.model_path.trim().is_empty() {
        s.commands.send(Job::AddCompareModel(s.settings.model_path.trim().into()));
    }
    ui.separator();
    ui.strong("Teacher (for student-vs-teacher cosines)");
    ui.label(s.models.teacher.clone().unwrap_or_else(|| "none loaded".into()));
    path_field(ui, "Teacher path", &mut s.models_ui.teacher_path);
    if ui.button("Load teacher").clicked() && !s.models_ui.teacher_path.trim().is_empty() {
        s.commands.send(Job::LoadTeacher(s.models_ui.teacher_path.trim().into()));
    }
    ui.separator();
    ui.strong("Generator");
    match &s.models.generator {
        Some(g) => {
            ui.label(format!(
                "{} classes, latent grid {}x{}, s_vae {:.2}{}",
                g.classes.len(),
                g.grid[0],
                g.grid[1],
                g.s_vae,
                g.path.as_ref().map(|p| format!(", from {}", p.display())).unwrap_or_default()
            ));
        }
        None => {
            ui.label("none loaded (Sample tab)");
        }
    }
}
