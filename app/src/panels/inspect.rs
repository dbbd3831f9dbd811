//! Inspect: |z| heatmap, PCA -> RGB, cosine to a clicked patch, student-vs-teacher cosine; hover values, colour
//! bar, nearest patches, histogram of |z|.

use eframe::egui::{self, Color32};
use engine::worker::Job;

use crate::app::Studio;
use crate::heatmap;
use crate::state::HeatMode;
use crate::widgets::{colour_bar, overlay, patch_grid};

/// The Inspect panel's view: which map, and whether it is drawn over the image (it is, from the start: the
/// panel exists to show the maps).
#[derive(Clone, Debug)]
pub struct InspectUi {
    pub heat: HeatMode,
    pub show_heat: bool,
}

impl Default for InspectUi {
    fn default() -> Self {
        Self { heat: HeatMode::Magnitude, show_heat: true }
    }
}

pub fn show(s: &mut Studio, ui: &mut egui::Ui) {
    if s.doc.current.is_none() {
        ui.label("Open an image first.");
        return;
    }
    ui.horizontal(|ui| {
        let before = s.inspect.heat;
        ui.selectable_value(&mut s.inspect.heat, HeatMode::Magnitude, "Magnitude |z|");
        ui.selectable_value(&mut s.inspect.heat, HeatMode::Pca, "Direction (PCA -> RGB)");
        ui.selectable_value(&mut s.inspect.heat, HeatMode::Cosine, "Cosine to clicked patch");
        let has_teacher = s.doc.current.as_ref().is_some_and(|c| c.teacher_cosine.is_some());
        ui.add_enabled_ui(has_teacher, |ui| {
            ui.selectable_value(&mut s.inspect.heat, HeatMode::Teacher, "Student vs teacher");
        });
        if before != s.inspect.heat {
            s.inspect.show_heat = true;
            s.refresh_overlay();
        }
        ui.checkbox(&mut s.inspect.show_heat, "overlay");
        ui.add(egui::Slider::new(&mut s.settings.opacity, 0.0..=1.0).text("opacity"));
    });
    // room below the image for the colour scale, the nearest patches and the histogram
    let size = overlay::fit_size(s.doc.current.as_ref().map(|c| &c.input), ui, 1.6, 280.0);
    let Some(resp) = s.show_overlay(ui, size, s.inspect.show_heat) else { return };
    let Some(c) = s.doc.current.as_ref() else { return };
    let grid = c.grid;
    if let Some(p) = resp.hover_pos().and_then(|pos| patch_grid::patch_at(resp.rect, pos, grid)) {
        let mut tip = format!(
            "patch ({}, {})  |z| = {:.3}",
            p / grid.1,
            p % grid.1,
            c.magnitude.get(p).copied().unwrap_or(f32::NAN)
        );
        if let Some(v) = c.cosine.as_ref().and_then(|(q, v)| v.get(p).map(|x| (q, x))) {
            tip.push_str(&format!("\ncos to patch {}: {:.3}", v.0, v.1));
        }
        if let Some(v) = c.teacher_cosine.as_ref().and_then(|v| v.get(p)) {
            tip.push_str(&format!("\nangle to the teacher: {:.1} deg", v.clamp(-1.0, 1.0).acos().to_degrees()));
        }
        resp.clone().on_hover_text(tip);
    }
    if let Some(p) = resp
        .interact_pointer_pos()
        .filter(|_| resp.clicked())
        .and_then(|pos| patch_grid::patch_at(resp.rect, pos, grid))
    {
        s.commands.send(Job::PatchCosine { patch: p });
    }
    let Some(c) = s.doc.current.as_ref() else { return };
    let (lo, hi) = match s.inspect.heat {
        HeatMode::Magnitude => {
            c.magnitude.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(*v), b.max(*v)))
        }
        _ => (-1.0, 1.0),
    };
    if s.inspect.heat != HeatMode::Pca {
        colour_bar::show(ui, lo, hi);
    }
    if let Some(v) = &c.teacher_cosine {
        let mean = v.iter().sum::<f32>() / v.len().max(1) as f32;
        ui.label(format!("mean student-vs-teacher cosine: {mean:.3}"));
    }
    if let Some((q, v)) = &c.cosine {
        ui.label(format!("cosine map of patch {q} (click another patch to change)"));
        let mut order: Vec<usize> = (0..v.len()).filter(|&i| i != *q).collect();
        order.sort_by(|a, b| v[*b].total_cmp(&v[*a]));
        let near: Vec<String> =
            order.iter().take(5).map(|&i| format!("({}, {}) {:.3}", i / c.grid.1, i % c.grid.1, v[i])).collect();
        ui.label(format!("nearest patches: {}", near.join(", ")));
    }
    histogram(ui, &c.magnitude, c.cosine.as_ref().and_then(|(q, _)| c.magnitude.get(*q)).map(|v| *v as f64));
}

/// Histogram of the patch norms (egui_plot), with the mean and, when one is clicked, the chosen patch.
fn histogram(ui: &mut egui::Ui, magnitude: &[f32], picked: Option<f64>) {
    let bins = heatmap::histogram(magnitude, 24);
    let width = bins.get(1).map(|b| (b.0 - bins[0].0) as f64).unwrap_or(1.0);
    let mean = magnitude.iter().sum::<f32>() as f64 / magnitude.len().max(1) as f64;
    egui::CollapsingHeader::new("Histogram of |z|").default_open(true).show(ui, |ui| {
        ui.label(format!("{} patches, mean |z| {mean:.2}", magnitude.len()));
        let bars: Vec<egui_plot::Bar> = bins
            .iter()
            .map(|(lo, n)| egui_plot::Bar::new(*lo as f64 + width / 2.0, *n as f64).width(width * 0.95))
            .collect();
        egui_plot::Plot::new("norm_histogram")
            .height(130.0)
            .allow_zoom(false)
            .allow_drag(false)
            .allow_scroll(false)
            .x_axis_label("|z|")
            .y_axis_label("patches")
            .show(ui, |p| {
                p.bar_chart(egui_plot::BarChart::new("|z|", bars).color(Color32::from_rgb(90, 150, 230)));
                p.vline(egui_plot::VLine::new("mean", mean).color(Color32::from_rgb(240, 200, 60)));
                if let Some(v) = picked {
                    p.vline(egui_plot::VLine::new("clicked patch", v).color(Color32::from_rgb(230, 80, 80)));
                }
            });
    });
}
