//! Steer: select patches (click, box, Shift+drag brush), pick a target (random, a patch, a principal axis, a
//! class mean, a pinned patch of any image), rotate along great circles, rescale magnitudes, add angular noise;
//! every change decodes the cached latent live (newest request wins); undo / redo / reset.

use eframe::egui::{self, Color32};
use engine::steer::SteerEdit;
use engine::worker::{Job, JobKind};

use crate::app::Studio;
use crate::commands::AppCommand;
use crate::state::TargetKind;
use crate::widgets::{overlay, patch_grid};

/// The Steer panel's state: the edit, its target, the selected patches and their undo history.
#[derive(Default)]
pub struct SteerUi {
    pub edit: SteerEdit,
    pub target_kind: TargetKind,
    pub target_patch: usize,
    pub selection: Vec<usize>,
    pub undoer: egui::util::undoer::Undoer<SteerEdit>,
    /// Where a box selection started.
    pub box_start: Option<egui::Pos2>,
    pub class_mean: Option<(usize, Vec<f32>)>,
    pub pinned: Option<(String, Vec<f32>)>,
    /// The edit waiting for its full decode (sent once input has been still for
    /// [`crate::app::FULL_DECODE_AFTER`]), and when it last changed.
    pub full_pending: Option<f64>,
    /// Steer previews shown so far (the status line and tests read it).
    pub previews_shown: u64,
    pub regen: RegenUi,
    /// The Inspect panel's map over the image here too (H on this tab).
    pub show_heat: bool,
    /// The library of directions (its own section of the panel).
    pub directions: crate::panels::directions::DirectionsUi,
}

/// "Regenerate selection" (spherical inpainting): its settings, its live preview and how many regenerations can
/// be undone.
pub struct RegenUi {
    /// Generator class of the new patches (`None`: unconditional).
    pub class: Option<usize>,
    pub seed: u64,
    pub steps: usize,
    pub cfg: f64,
    /// The preview decoder's view of the running regeneration.
    pub preview: Option<egui::TextureHandle>,
    /// Regenerations of the current image that can be undone.
    pub depth: usize,
    /// The last inpainting job sent was an undo.
    pub undo_sent: bool,
    /// Patches copied for a transplant: how many, and the rows x columns they span.
    pub copied: Option<(usize, (usize, usize))>,
    /// Where the copied patches' top-left one goes (row, column).
    pub paste_at: (usize, usize),
}

impl Default for RegenUi {
    fn default() -> Self {
        Self {
            class: None,
            seed: 0,
            steps: 25,
            cfg: 1.5,
            preview: None,
            depth: 0,
            undo_sent: false,
            copied: None,
            paste_at: (0, 0),
        }
    }
}

/// Regenerate the selected patches with the generator (the rest held to the image), its undo and cancel.
fn regenerate_row(s: &mut Studio, ui: &mut egui::Ui) {
    let classes = s.sample.classes.clone();
    let running = s.link.is_running(JobKind::Inpaint);
    ui.horizontal(|ui| {
        ui.label("Regenerate:");
        let name = |k: Option<usize>| match k {
            None => "no class (unconditional)".to_string(),
            Some(k) => classes.get(k).cloned().unwrap_or_default(),
        };
        egui::ComboBox::from_id_salt("regen-class").selected_text(name(s.steer.regen.class)).show_ui(ui, |ui| {
            ui.selectable_value(&mut s.steer.regen.class, None, name(None));
            for k in 0..classes.len() {
                ui.selectable_value(&mut s.steer.regen.class, Some(k), name(Some(k)));
            }
        });
        ui.add(egui::DragValue::new(&mut s.steer.regen.seed).prefix("seed "));
        ui.add(egui::DragValue::new(&mut s.steer.regen.steps).range(1..=100).suffix(" steps"));
        let can = !s.steer.selection.is_empty() && !classes.is_empty() && !running;
        let hint = if classes.is_empty() {
            "load a generator (Sample tab) first"
        } else {
            "select the patches to regenerate; the others are held to the image"
        };
        if ui.add_enabled(can, egui::Button::new("Regenerate selection")).on_disabled_hover_text(hint).clicked() {
            let spec = engine::generate::InpaintSpec {
                patches: s.steer.selection.clone(),
                class: s.steer.regen.class,
                seed: s.steer.regen.seed,
                steps: s.steer.regen.steps.max(1),
                cfg_scale: s.steer.regen.cfg,
                method: Default::default(),
            };
            s.steer.regen.undo_sent = false;
            s.steer.regen.preview = None;
            s.commands.send(Job::Inpaint { spec });
        }
        if running && ui.button("Cancel regenerate").clicked() {
            s.commands.cancel(JobKind::Inpaint);
        }
        if ui.add_enabled(s.steer.regen.depth > 0 && !running, egui::Button::new("Undo regenerate / paste")).clicked() {
            s.steer.regen.undo_sent = true;
            s.commands.send(Job::UndoInpaint);
        }
    });
    transplant_row(s, ui);
}

/// Patch transplant: copy the selected patches (of this image), then paste them, here or onto another image
/// opened since, with their top-left patch at a row and column.
fn transplant_row(s: &mut Studio, ui: &mut egui::Ui) {
    let grid = s.doc.current.as_ref().map_or((1, 1), |c| c.grid);
    let running = s.link.is_running(JobKind::Inpaint);
    ui.horizontal(|ui| {
        ui.label("Transplant:");
        if ui.add_enabled(!s.steer.selection.is_empty(), egui::Button::new("Copy selection")).clicked() {
            s.commands.send(Job::CopyPatches { patches: s.steer.selection.clone() });
        }
        let (rows, cols) = s.steer.regen.copied.map_or((1, 1), |(_, span)| span);
        let at = &mut s.steer.regen.paste_at;
        ui.add(egui::DragValue::new(&mut at.0).range(0..=grid.0.saturating_sub(rows)).prefix("row "));
        ui.add(egui::DragValue::new(&mut at.1).range(0..=grid.1.saturating_sub(cols)).prefix("column "));
        let can = s.steer.regen.copied.is_some() && !running;
        if ui.add_enabled(can, egui::Button::new("Paste patches")).clicked() {
            s.steer.regen.undo_sent = false;
            s.commands.send(Job::PastePatches { to: s.steer.regen.paste_at });
        }
        match s.steer.regen.copied {
            Some((n, (r, c))) => ui.label(format!("{n} patches copied ({r}x{c})")),
            None => ui.label("select patches, then Copy"),
        };
    });
}

pub fn show(s: &mut Studio, ui: &mut egui::Ui) {
    if s.doc.current.is_none() {
        ui.label("Open an image first.");
        return;
    }
    let mut changed = false;
    ui.horizontal(|ui| {
        ui.label("Selection:");
        if ui.button("All patches").clicked() {
            s.steer.selection.clear();
            changed = true;
        }
        ui.label(if s.steer.selection.is_empty() {
            "all (click patches to toggle, drag a box, Shift+drag to brush)".to_string()
        } else {
            format!("{} patches (click to toggle, drag a box, Shift+drag to brush)", s.steer.selection.len())
        });
    });
    ui.horizontal(|ui| {
        ui.label("Target:");
        changed |= ui.radio_value(&mut s.steer.target_kind, TargetKind::Random, "random direction").changed();
        changed |= ui.radio_value(&mut s.steer.target_kind, TargetKind::Patch, "patch").changed();
        for k in 0..3 {
            for (positive, sign) in [(true, "+"), (false, "-")] {
                changed |= ui
                    .radio_value(&mut s.steer.target_kind, TargetKind::Pca(k, positive), format!("PCA {}{sign}", k + 1))
                    .changed();
            }
        }
    });
    changed |= targets_row(s, ui);
    regenerate_row(s, ui);
    crate::panels::directions::show(s, ui);
    let before = s.steer.edit.clone();
    let r1 = ui.add(egui::Slider::new(&mut s.steer.edit.angle_deg, 0.0..=180.0).text("rotate (degrees)"));
    let r2 = ui.add(egui::Slider::new(&mut s.steer.edit.magnitude_scale, 0.0..=3.0).text("magnitude scale"));
    let r3 = ui.add(egui::Slider::new(&mut s.steer.edit.noise_deg, 0.0..=90.0).text("angular noise (degrees)"));
    let mut settled = false;
    for r in [&r1, &r2, &r3] {
        // an undo point before every drag or discrete change (keyboard, typed value, accessibility) and after it
        if r.drag_started() || (r.changed() && !r.dragged()) {
            s.steer.undoer.add_undo(&before);
        }
        settled |= r.drag_stopped() || (r.changed() && !r.dragged());
        changed |= r.changed();
    }
    ui.horizontal(|ui| {
        for cmd in [AppCommand::Undo, AppCommand::Redo, AppCommand::ResetSteer] {
            let enabled = match cmd {
                AppCommand::Undo => s.can_undo(),
                AppCommand::Redo => s.can_redo(),
                _ => true,
            };
            if ui.add_enabled(enabled, egui::Button::new(cmd.label())).clicked() {
                s.commands.send(cmd);
            }
        }
    });
    if changed {
        s.send_steer();
    }
    if settled {
        // after send_steer, which resolves the target into the edit
        s.push_undo();
    }
    let size = overlay::fit_size(s.doc.current.as_ref().map(|c| &c.input), ui, 2.0, 60.0);
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            ui.label("Original (click patches to select)");
            if let Some(resp) = s.show_overlay(ui, size, s.steer.show_heat) {
                select(s, ui, resp);
            }
        });
        ui.vertical(|ui| {
            let Some(c) = s.doc.current.as_ref() else { return };
            if let (true, Some(t)) = (s.link.is_running(JobKind::Inpaint), &s.steer.regen.preview) {
                ui.label("Regenerating (preview decoder)");
                ui.image((t.id(), size));
                return;
            }
            match (&c.tex_steered, &c.steered) {
                (Some(t), Some((_, psnr, ms))) => {
                    let timing = if s.view.stable_ui { String::new() } else { format!(" ({ms:.0} ms)") };
                    let kind =
                        if c.steered_is_preview { "Steered preview (full decode follows)" } else { "Steered decode" };
                    ui.label(format!("{kind}: PSNR vs original {psnr:.2} dB{timing}"));
                    ui.image((t.id(), size));
                }
                _ => {
                    ui.label("Steered decode: move a slider");
                    ui.image((c.tex_recon.id(), size));
                }
            }
        });
    });
}

/// Class-mean and pinned-patch targets. Returns whether the target changed.
fn targets_row(s: &mut Studio, ui: &mut egui::Ui) -> bool {
    let mut changed = false;
    ui.horizontal(|ui| {
        let classes = s.sample.classes.clone();
        ui.add_enabled_ui(!classes.is_empty(), |ui| {
            let name = classes.get(s.sample.class).cloned().unwrap_or_else(|| "(load a generator)".into());
            if ui.button(format!("Target: class mean of {name}")).clicked() {
                s.commands.send(Job::ClassMean { class: s.sample.class, count: engine::steer::CLASS_MEAN_SAMPLES });
            }
        });
        if let Some((k, _)) = &s.steer.class_mean {
            let selected = s.steer.target_kind == TargetKind::ClassMean;
            if ui
                .radio(selected, format!("class mean ({})", s.sample.classes.get(*k).cloned().unwrap_or_default()))
                .clicked()
            {
                s.steer.target_kind = TargetKind::ClassMean;
                changed = true;
            }
        }
        if s.steer.target_kind == TargetKind::Patch {
            let n = s.doc.current.as_ref().map(|c| c.grid.0 * c.grid.1).unwrap_or(1);
            changed |= ui
                .add(egui::DragValue::new(&mut s.steer.target_patch).range(0..=n.saturating_sub(1)).prefix("patch "))
                .changed();
            // keep this patch's direction as the target, also after another image is opened
            if ui
                .button("Pin as target")
                .on_hover_text("keep this patch's direction; open another image to steer it there")
                .clicked()
            {
                s.commands.send(Job::PatchDirection { patch: s.steer.target_patch });
            }
        }
        if let Some((label, _)) = &s.steer.pinned {
            let selected = s.steer.target_kind == TargetKind::Pinned;
            if ui.radio(selected, format!("pinned: {label}")).clicked() {
                s.steer.target_kind = TargetKind::Pinned;
                changed = true;
            }
        }
        if let Some((name, _)) = &s.steer.directions.applied {
            let selected = s.steer.target_kind == TargetKind::Library;
            if ui.radio(selected, format!("library: {name}")).clicked() {
                s.steer.target_kind = TargetKind::Library;
                changed = true;
            }
        }
    });
    changed
}

/// Clicks toggle a patch, a drag selects a box, Shift+drag paints with a brush; each sends a steer.
fn select(s: &mut Studio, ui: &mut egui::Ui, resp: egui::Response) {
    let Some(grid) = s.doc.current.as_ref().map(|c| c.grid) else { return };
    let resp = resp.interact(egui::Sense::click_and_drag());
    let brush = ui.ctx().input(|i| i.modifiers.shift);
    if brush && resp.dragged() {
        if let Some(p) = resp.interact_pointer_pos().and_then(|pos| patch_grid::patch_at(resp.rect, pos, grid))
            && !s.steer.selection.contains(&p)
        {
            s.steer.selection.push(p);
        }
        if resp.drag_stopped() {
            s.send_steer();
        }
    } else if resp.drag_started() {
        // where the button went down, not where the drag was recognised
        s.steer.box_start = ui.ctx().input(|i| i.pointer.press_origin()).or(resp.interact_pointer_pos());
    }
    if let (Some(a), Some(b)) = (s.steer.box_start, resp.interact_pointer_pos()) {
        if resp.dragged() {
            ui.painter().rect_stroke(
                egui::Rect::from_two_pos(a, b),
                0.0,
                egui::Stroke::new(1.0, Color32::WHITE),
                egui::StrokeKind::Inside,
            );
        }
        if resp.drag_stopped() {
            s.steer.selection = patch_grid::patches_in(resp.rect, egui::Rect::from_two_pos(a, b), grid);
            s.steer.box_start = None;
            s.send_steer();
        }
    }
    if let Some(p) = resp
        .interact_pointer_pos()
        .filter(|_| resp.clicked())
        .and_then(|pos| patch_grid::patch_at(resp.rect, pos, grid))
    {
        match s.steer.selection.iter().position(|&q| q == p) {
            Some(i) => {
                s.steer.selection.remove(i);
            }
            None => s.steer.selection.push(p),
        }
        s.send_steer();
    }
}
