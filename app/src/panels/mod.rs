//! One module per panel. Each `show` takes the studio and draws into its area; none touches tensors.
//!
//! [`Tab`] is the registry of the central panels: a new panel is one variant here (its label, its shortcut key and
//! the call to its `show`) and one file beside this one. Menus, the tab strip, shortcuts, the help overlay and the
//! `--tab` option all read [`Tab::ALL`].

use eframe::egui::{self, Key};
use serde::{Deserialize, Serialize};

use crate::app::Studio;

pub mod compare;
pub mod directions;
pub mod inspect;
pub mod menu;
pub mod models;
pub mod sample;
pub mod side;
pub mod status;
pub mod steer;

/// The central panels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default, clap::ValueEnum)]
pub enum Tab {
    #[default]
    Compare,
    Inspect,
    Steer,
    Sample,
    Models,
}

impl Tab {
    pub const ALL: [Tab; 5] = [Tab::Compare, Tab::Inspect, Tab::Steer, Tab::Sample, Tab::Models];

    pub fn label(self) -> &'static str {
        match self {
            Tab::Compare => "Compare",
            Tab::Inspect => "Inspect",
            Tab::Steer => "Steer",
            Tab::Sample => "Sample",
            Tab::Models => "Models",
        }
    }

    /// The key that shows it (no modifier; never while typing).
    pub fn key(self) -> Key {
        match self {
            Tab::Compare => Key::Num1,
            Tab::Inspect => Key::Num2,
            Tab::Steer => Key::Num3,
            Tab::Sample => Key::Num4,
            Tab::Models => Key::Num5,
        }
    }

    /// Draw the panel into the central area.
    pub fn show(self, s: &mut Studio, ui: &mut egui::Ui) {
        match self {
            Tab::Compare => compare::show(s, ui),
            Tab::Inspect => inspect::show(s, ui),
            Tab::Steer => steer::show(s, ui),
            Tab::Sample => {
                egui::ScrollArea::vertical().show(ui, |ui| sample::show(s, ui));
            }
            Tab::Models => {
                egui::ScrollArea::vertical().show(ui, |ui| models::show(s, ui));
            }
        }
    }
}
