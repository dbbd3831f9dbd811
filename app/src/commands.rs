//! One command enum feeds the menus, the keyboard shortcuts, the help overlay and the tests.

use eframe::egui::{Key, KeyboardShortcut, Modifiers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppCommand {
    OpenImage,
    ExportImage,
    ExportLatent,
    ShowCompare,
    ShowInspect,
    ShowSteer,
    ToggleHeatmap,
    ResetSteer,
    Undo,
    Redo,
    ToggleTheme,
    ToggleHelp,
}

impl AppCommand {
    pub const ALL: [AppCommand; 12] = [
        AppCommand::OpenImage,
        AppCommand::ExportImage,
        AppCommand::ExportLatent,
        AppCommand::ShowCompare,
        AppCommand::ShowInspect,
        AppCommand::ShowSteer,
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
            AppCommand::ExportImage => "Export PNG",
            AppCommand::ExportLatent => "Export latent",
            AppCommand::ShowCompare => "Compare",
            AppCommand::ShowInspect => "Inspect",
            AppCommand::ShowSteer => "Steer",
            AppCommand::ToggleHeatmap => "Toggle heatmap",
            AppCommand::ResetSteer => "Reset steering",
            AppCommand::Undo => "Undo",
            AppCommand::Redo => "Redo",
            AppCommand::ToggleTheme => "Dark / light theme",
            AppCommand::ToggleHelp => "Keyboard shortcuts",
        }
    }

    pub fn shortcut(self) -> KeyboardShortcut {
        let c = Modifiers::COMMAND;
        let n = Modifiers::NONE;
        match self {
            AppCommand::OpenImage => KeyboardShortcut::new(c, Key::O),
            AppCommand::ExportImage => KeyboardShortcut::new(c, Key::E),
            AppCommand::ExportLatent => KeyboardShortcut::new(c | Modifiers::SHIFT, Key::E),
            AppCommand::ShowCompare => KeyboardShortcut::new(n, Key::Num1),
            AppCommand::ShowInspect => KeyboardShortcut::new(n, Key::Num2),
            AppCommand::ShowSteer => KeyboardShortcut::new(n, Key::Num3),
            AppCommand::ToggleHeatmap => KeyboardShortcut::new(n, Key::H),
            AppCommand::ResetSteer => KeyboardShortcut::new(n, Key::R),
            AppCommand::Undo => KeyboardShortcut::new(c, Key::Z),
            AppCommand::Redo => KeyboardShortcut::new(c | Modifiers::SHIFT, Key::Z),
            AppCommand::ToggleTheme => KeyboardShortcut::new(c, Key::T),
            AppCommand::ToggleHelp => KeyboardShortcut::new(n, Key::F1),
        }
    }
}
