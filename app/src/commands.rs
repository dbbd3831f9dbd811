//! One command enum feeds the menus, the keyboard shortcuts, the help overlay and the tests. Shortcuts are
//! read once per frame and never while a text field has keyboard focus (typing "2" into a path stays typing).

use eframe::egui::{self, Key, KeyboardShortcut, Modifiers};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppCommand {
    OpenImage,
    OpenSession,
    SaveSession,
    ExportImage,
    ExportLatent,
    RenderFull,
    CancelRender,
    ShowCompare,
    ShowInspect,
    ShowSteer,
    ShowSample,
    ShowModels,
    ToggleHeatmap,
    ResetSteer,
    Undo,
    Redo,
    ToggleTheme,
    ToggleHelp,
}

impl AppCommand {
    pub const ALL: [AppCommand; 18] = [
        AppCommand::OpenImage,
        AppCommand::OpenSession,
        AppCommand::SaveSession,
        AppCommand::ExportImage,
        AppCommand::ExportLatent,
        AppCommand::RenderFull,
        AppCommand::CancelRender,
        AppCommand::ShowCompare,
        AppCommand::ShowInspect,
        AppCommand::ShowSteer,
        AppCommand::ShowSample,
        AppCommand::ShowModels,
        AppCommand::ToggleHeatmap,
        AppCommand::ResetSteer,
        AppCommand::Undo,
        AppCommand::Redo,
        AppCommand::ToggleTheme,
        AppCommand::ToggleHelp,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AppCommand::OpenImage => "Open image",
            AppCommand::OpenSession => "Open session...",
            AppCommand::SaveSession => "Save session...",
            AppCommand::ExportImage => "Export PNG",
            AppCommand::ExportLatent => "Export latent",
            AppCommand::RenderFull => "Render full resolution",
            AppCommand::CancelRender => "Cancel render",
            AppCommand::ShowCompare => "Compare",
            AppCommand::ShowInspect => "Inspect",
            AppCommand::ShowSteer => "Steer",
            AppCommand::ShowSample => "Sample",
            AppCommand::ShowModels => "Models",
            AppCommand::ToggleHeatmap => "Toggle heatmap",
            AppCommand::ResetSteer => "Reset steering",
            AppCommand::Undo => "Undo",
            AppCommand::Redo => "Redo",
            AppCommand::ToggleTheme => "Dark / light theme",
            AppCommand::ToggleHelp => "Keyboard shortcuts",
        }
    }

    /// The View menu's entries.
    pub fn in_view_menu(self) -> bool {
        matches!(
            self,
            AppCommand::ShowCompare
                | AppCommand::ShowInspect
                | AppCommand::ShowSteer
                | AppCommand::ShowSample
                | AppCommand::ShowModels
                | AppCommand::ToggleHeatmap
                | AppCommand::ToggleTheme
        )
    }

    pub fn shortcut(self) -> KeyboardShortcut {
        let c = Modifiers::COMMAND;
        let cs = Modifiers::COMMAND | Modifiers::SHIFT;
        let n = Modifiers::NONE;
        match self {
            AppCommand::OpenImage => KeyboardShortcut::new(c, Key::O),
            AppCommand::OpenSession => KeyboardShortcut::new(cs, Key::O),
            AppCommand::SaveSession => KeyboardShortcut::new(c, Key::S),
            AppCommand::ExportImage => KeyboardShortcut::new(c, Key::E),
            AppCommand::ExportLatent => KeyboardShortcut::new(cs, Key::E),
            AppCommand::RenderFull => KeyboardShortcut::new(c, Key::R),
            AppCommand::CancelRender => KeyboardShortcut::new(n, Key::Escape),
            AppCommand::ShowCompare => KeyboardShortcut::new(n, Key::Num1),
            AppCommand::ShowInspect => KeyboardShortcut::new(n, Key::Num2),
            AppCommand::ShowSteer => KeyboardShortcut::new(n, Key::Num3),
            AppCommand::ShowSample => KeyboardShortcut::new(n, Key::Num4),
            AppCommand::ShowModels => KeyboardShortcut::new(n, Key::Num5),
            AppCommand::ToggleHeatmap => KeyboardShortcut::new(n, Key::H),
            AppCommand::ResetSteer => KeyboardShortcut::new(n, Key::R),
            AppCommand::Undo => KeyboardShortcut::new(c, Key::Z),
            AppCommand::Redo => KeyboardShortcut::new(cs, Key::Z),
            AppCommand::ToggleTheme => KeyboardShortcut::new(c, Key::T),
            AppCommand::ToggleHelp => KeyboardShortcut::new(n, Key::F1),
        }
    }

    /// The commands whose shortcut was pressed this frame. Nothing fires while a widget that takes text has
    /// keyboard focus: the keys belong to it (its own undo included).
    pub fn pressed(ctx: &egui::Context) -> Vec<AppCommand> {
        if ctx.egui_wants_keyboard_input() {
            return Vec::new();
        }
        // longer modifier sets first, so Ctrl+Shift+Z is not also read as Ctrl+Z
        let mut all = Self::ALL.to_vec();
        all.sort_by_key(|c| std::cmp::Reverse(modifier_count(c.shortcut().modifiers)));
        all.into_iter().filter(|c| ctx.input_mut(|i| i.consume_shortcut(&c.shortcut()))).collect()
    }
}

fn modifier_count(m: Modifiers) -> u8 {
    m.alt as u8 + m.shift as u8 + (m.ctrl || m.command || m.mac_cmd) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_commands_share_a_shortcut() {
        for (i, a) in AppCommand::ALL.iter().enumerate() {
            for b in &AppCommand::ALL[i + 1..] {
                assert_ne!(a.shortcut(), b.shortcut(), "{a:?} and {b:?}");
            }
        }
    }

    #[test]
    fn every_command_has_a_label() {
        let mut labels: Vec<&str> = AppCommand::ALL.iter().map(|c| c.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), AppCommand::ALL.len());
    }
}
