//! The menu bar (File, View, Help) and the tab strip; every entry is an `AppCommand` with its shortcut shown.

use eframe::egui;

use crate::app::Studio;
use crate::commands::AppCommand;
use crate::dialogs::DialogFor;
use crate::state::Tab;

fn item(s: &mut Studio, ui: &mut egui::Ui, cmd: AppCommand, enabled: bool) {
    let b = egui::Button::new(cmd.label()).shortcut_text(ui.ctx().format_shortcut(&cmd.shortcut()));
    if ui.add_enabled(enabled, b).clicked() {
        s.commands.send(cmd);
        ui.close();
    }
}

pub fn show(s: &mut Studio, ui: &mut egui::Ui) {
    egui::MenuBar::new().ui(ui, |ui| {
        ui.menu_button("File", |ui| {
            item(s, ui, AppCommand::OpenImage, true);
            if ui.button("Browse image...").clicked() {
                s.ask(DialogFor::Image);
                ui.close();
            }
            ui.separator();
            if ui.button("Open session...").clicked() {
                s.ask(DialogFor::OpenSession);
                ui.close();
            }
            if ui.button("Save session...").clicked() {
                s.ask(DialogFor::SaveSession);
                ui.close();
            }
            ui.menu_button("Open recent", |ui| {
                let recent = s.settings.recent_sessions.clone();
                if recent.is_empty() {
                    ui.label("(none yet)");
                }
                for p in recent {
                    if ui.button(p.display().to_string()).clicked() {
                        s.files.session_path = p.display().to_string();
                        s.open_session(&p);
                        ui.close();
                    }
                }
            });
            ui.separator();
            let has = s.doc.current.is_some();
            item(s, ui, AppCommand::ExportImage, has);
            item(s, ui, AppCommand::ExportLatent, has);
            item(s, ui, AppCommand::RenderFull, has && s.doc.image.is_some());
        });
        ui.menu_button("View", |ui| {
            for cmd in AppCommand::all().into_iter().filter(|c| c.in_view_menu()) {
                item(s, ui, cmd, true);
            }
        });
        ui.menu_button("Help", |ui| item(s, ui, AppCommand::ToggleHelp, true));
        ui.separator();
        for tab in Tab::ALL {
            ui.selectable_value(&mut s.view.tab, tab, tab.label());
        }
    });
}
