//! One command enum feeds the menus, the keyboard shortcuts, the help overlay and the tests. Shortcuts are
//! read once per frame and never while a text field has keyboard focus (typing "2" into a path stays typing).
//!
//! Every user intent (a command, a job for the engine, a cancel) is pushed on one [`CommandQueue`] by whatever
//! widget saw it and applied once per frame by `Studio::apply_commands` (rerun's `CommandSender` /
//! `SystemCommand`): no panel talks to the engine link itself.

use std::collections::VecDeque;

use eframe::egui::{self, Key, KeyboardShortcut, Modifiers};
use engine::worker::{Job, JobKind};

use crate::panels::Tab;

/// A user intent, queued by a widget and applied at the end of the frame.
#[derive(Debug)]
pub enum Command {
    /// A menu / shortcut command.
    App(AppCommand),
    /// A job for the engine thread (its kind's previous request is cancelled).
    Engine(Job),
    /// Cancel the running request of a kind.
    Cancel(JobKind),
}

impl From<AppCommand> for Command {
    fn from(c: AppCommand) -> Self {
        Command::App(c)
    }
}

impl From<Job> for Command {
    fn from(j: Job) -> Self {
        Command::Engine(j)
    }
}

/// The one queue of user intents (first in, first applied).
#[derive(Debug, Default)]
pub struct CommandQueue(VecDeque<Command>);

impl CommandQueue {
    pub fn send(&mut self, c: impl Into<Command>) {
        self.0.push_back(c.into());
    }

    pub fn cancel(&mut self, kind: JobKind) {
        self.0.push_back(Command::Cancel(kind));
    }

    pub fn pop(&mut self) -> Option<Command> {
        self.0.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppCommand {
    OpenImage,
    OpenSession,
    SaveSession,
    ExportImage,
    ExportLatent,
    RenderFull,
    CancelRender,
    /// Show a central panel.
    Show(Tab),
    ToggleHeatmap,
    ResetSteer,
    Undo,
    Redo,
    ToggleTheme,
    ToggleHelp,
}

impl AppCommand {
    /// Every command: the fixed ones, then one `Show` per tab of the registry.
    pub fn all() -> Vec<AppCommand> {
        let fixed = [
            AppCommand::OpenImage,
            AppCommand::OpenSession,
            AppCommand::SaveSession,
            AppCommand::ExportImage,
            AppCommand::ExportLatent,
            AppCommand::RenderFull,
            AppCommand::CancelRender,
            AppCommand::ToggleHeatmap,
            AppCommand::ResetSteer,
            AppCommand::Undo,
            AppCommand::Redo,
            AppCommand::ToggleTheme,
            AppCommand::ToggleHelp,
        ];
        fixed.into_iter().chain(Tab::ALL.map(AppCommand::Show)).collect()
    }

    pub fn label(self) -> &'static str {
        match self {
            AppCommand::OpenImage => "Open image",
            AppCommand::OpenSession => "Open session...",
            AppCommand::SaveSession => "Save session...",
            AppCommand::ExportImage => "Export PNG",
            AppCommand::ExportLatent => "Export latent",
            AppCommand::RenderFull => "Render full resolution",
            AppCommand::CancelRender => "Cancel render",
            AppCommand::Show(tab) => tab.label(),
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
        matches!(self, AppCommand::Show(_) | AppCommand::ToggleHeatmap | AppCommand::ToggleTheme)
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
            AppCommand::Show(tab) => KeyboardShortcut::new(n, tab.key()),
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
        let mut all = Self::all();
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
        let all = AppCommand::all();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.shortcut(), b.shortcut(), "{a:?} and {b:?}");
            }
        }
    }

    #[test]
    fn every_command_has_a_label() {
        let all = AppCommand::all();
        let mut labels: Vec<&str> = all.iter().map(|c| c.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), all.len());
        assert_eq!(all.len(), 13 + Tab::ALL.len(), "one Show per tab");
    }
}
