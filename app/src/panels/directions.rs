//! The library of directions (inside the Steer panel): save the current target under a name (a random seed, a
//! pinned patch, a PCA axis of this image, a class mean) or "this region minus that region"; list, apply to any
//! image, rename, delete, export to a file and import one. Stored by `engine::directions` in the user's data
//! folder (`dino-sae directions` reads the same files).

use std::path::PathBuf;

use eframe::egui;
use engine::directions::{Library, SavedDirection};
use engine::steer::SteerTarget;
use engine::worker::Job;

use crate::app::Studio;
use crate::state::TargetKind;

/// The library's panel state: the folder, what is in it, the name and file fields, the stored region.
pub struct DirectionsUi {
    pub library: Library,
    /// The directions in the library (read when the panel first shows, and after every change).
    pub saved: Vec<SavedDirection>,
    /// Files of the library that could not be read.
    pub problems: Vec<String>,
    pub loaded: bool,
    /// Name for Save / Rename.
    pub name: String,
    /// File for Export / Import.
    pub file: String,
    /// Region A of "selection minus region A" (patch indices of the current grid).
    pub region_a: Vec<usize>,
    /// The direction applied as the steering target (name and target).
    pub applied: Option<(String, SteerTarget)>,
}

impl DirectionsUi {
    pub fn new(data_dir: Option<PathBuf>) -> Self {
        let library = data_dir.map_or_else(Library::user, |d| Library::at(d.join("directions")));
        Self {
            library,
            saved: Vec::new(),
            problems: Vec::new(),
            loaded: false,
            name: String::new(),
            file: std::env::temp_dir().join("direction.safetensors").display().to_string(),
            region_a: Vec::new(),
            applied: None,
        }
    }

    pub fn reload(&mut self) {
        (self.saved, self.problems) = self.library.list();
        self.loaded = true;
    }
}

impl Default for DirectionsUi {
    fn default() -> Self {
        Self::new(None)
    }
}

/// What the current target is, for the saved file ("PCA 1+ of chelsea.png").
fn describe(s: &Studio) -> String {
    let image = s
        .doc
        .image
        .as_ref()
        .and_then(|i| i.path.as_ref())
        .and_then(|p| p.file_name())
        .map(|n| format!(" of {}", n.to_string_lossy()))
        .unwrap_or_default();
    match &s.steer.target_kind {
        TargetKind::Random => format!("random (seed {})", s.steer.edit.noise_seed.wrapping_add(1)),
        TargetKind::Pca(k, positive) => format!("PCA {}{}{image}", k + 1, if *positive { "+" } else { "-" }),
        TargetKind::ClassMean => {
            let k = s.steer.class_mean.as_ref().map(|(k, _)| *k).unwrap_or(0);
            format!("class mean of {}", s.sample.classes.get(k).cloned().unwrap_or_default())
        }
        TargetKind::Pinned => s.steer.pinned.as_ref().map(|(l, _)| format!("pinned {l}")).unwrap_or_default(),
        TargetKind::Library => {
            s.steer.directions.applied.as_ref().map(|(n, _)| format!("copy of {n}")).unwrap_or_default()
        }
        TargetKind::Patch => format!("patch {}{image}", s.steer.target_patch),
    }
}

/// Save `target` under the name field (a message says what happened).
pub fn save(s: &mut Studio, source: String, target: SteerTarget) {
    let name = s.steer.directions.name.trim().to_string();
    let res = SavedDirection::new(&name, &source, target).and_then(|d| s.steer.directions.library.add(&d, false));
    match res {
        Ok(p) => {
            s.messages.status = Some(format!("saved direction {name} -> {}", p.display()));
            s.messages.error = None;
        }
        Err(e) => s.messages.error = Some(e.to_string()),
    }
    s.steer.directions.reload();
}

pub fn show(s: &mut Studio, ui: &mut egui::Ui) {
    egui::CollapsingHeader::new("Directions library").default_open(false).show(ui, |ui| {
        if !s.steer.directions.loaded {
            s.steer.directions.reload();
        }
        ui.horizontal(|ui| {
            let l = ui.label("Direction name");
            ui.add(egui::TextEdit::singleline(&mut s.steer.directions.name).desired_width(160.0)).labelled_by(l.id);
            let target = s.resolved_edit().target;
            let portable = !matches!(target, SteerTarget::Patch(_));
            if ui
                .add_enabled(portable, egui::Button::new("Save target"))
                .on_disabled_hover_text("a patch of this image: Pin as target first, then save the pinned direction")
                .clicked()
            {
                let source = describe(s);
                save(s, source, target);
            }
        });
        ui.horizontal(|ui| {
            if ui.add_enabled(!s.steer.selection.is_empty(), egui::Button::new("Use selection as region A")).clicked() {
                s.steer.directions.region_a = s.steer.selection.clone();
            }
            let can = !s.steer.directions.region_a.is_empty() && !s.steer.selection.is_empty();
            if ui.add_enabled(can, egui::Button::new("Save selection minus region A")).clicked() {
                // the worker reads the latents; the answer is saved under the name field (events.rs)
                s.commands.send(Job::RegionDifference {
                    a: s.steer.selection.clone(),
                    b: s.steer.directions.region_a.clone(),
                });
            }
            if !s.steer.directions.region_a.is_empty() {
                ui.label(format!("region A: {} patches", s.steer.directions.region_a.len()));
            }
        });
        let saved = s.steer.directions.saved.clone();
        if saved.is_empty() {
            ui.label(format!("(none saved yet in {})", s.steer.directions.library.dir().display()));
        }
        for d in saved {
            ui.horizontal(|ui| {
                ui.label(format!("{}  {}  {}", d.name, d.kind(), d.source));
                if ui.button(format!("Apply {}", d.name)).clicked() {
                    s.steer.directions.applied = Some((d.name.clone(), d.target.clone()));
                    s.steer.target_kind = TargetKind::Library;
                    s.send_steer();
                }
                if ui.button(format!("Rename {}", d.name)).on_hover_text("to the name in the field").clicked() {
                    let new = s.steer.directions.name.trim().to_string();
                    if let Err(e) = s.steer.directions.library.rename(&d.name, &new) {
                        s.messages.error = Some(e.to_string());
                    }
                    s.steer.directions.reload();
                }
                if ui.button(format!("Export {}", d.name)).on_hover_text("to the file below").clicked() {
                    let to = PathBuf::from(s.steer.directions.file.trim());
                    match s.steer.directions.library.export(&d.name, &to) {
                        Ok(()) => s.messages.status = Some(format!("exported {} -> {}", d.name, to.display())),
                        Err(e) => s.messages.error = Some(e.to_string()),
                    }
                }
                if ui.button(format!("Delete {}", d.name)).clicked() {
                    if let Err(e) = s.steer.directions.library.remove(&d.name) {
                        s.messages.error = Some(e.to_string());
                    }
                    s.steer.directions.reload();
                }
            });
        }
        for p in &s.steer.directions.problems {
            ui.colored_label(Studio::error_colour(), p);
        }
        ui.horizontal(|ui| {
            // a bounded width: an unbounded field would widen the panel past the window
            let l = ui.label("Direction file");
            ui.add(egui::TextEdit::singleline(&mut s.steer.directions.file).desired_width(420.0)).labelled_by(l.id);
            if ui.button("Import direction").clicked() {
                let from = PathBuf::from(s.steer.directions.file.trim());
                let name = Some(s.steer.directions.name.trim()).filter(|n| !n.is_empty()).map(str::to_string);
                match s.steer.directions.library.import(&from, name.as_deref(), false) {
                    Ok(d) => s.messages.status = Some(format!("imported direction {}", d.name)),
                    Err(e) => s.messages.error = Some(e.to_string()),
                }
                s.steer.directions.reload();
            }
        });
    });
}
