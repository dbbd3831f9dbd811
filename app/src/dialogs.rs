//! Native file dialogs (rfd through the XDG portal) on their own thread; typed paths always work as well.

use std::path::PathBuf;

use engine::worker::{Job, ModelSource};

use crate::app::Studio;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogFor {
    Image,
    Model,
    ModelFolder,
    Export,
    Generator,
    OpenSession,
    SaveSession,
}

impl Studio {
    /// Ask the desktop for a path without blocking the UI.
    pub(crate) fn ask(&mut self, what: DialogFor) {
        if self.files.dialog.is_some() {
            return;
        }
        let promise = poll_promise::Promise::spawn_thread("file-dialog", move || {
            let d = rfd::FileDialog::new();
            match what {
                DialogFor::Image => {
                    d.add_filter("images", &["png", "jpg", "jpeg", "tif", "tiff", "webp", "bmp"]).pick_file()
                }
                DialogFor::Model => d.add_filter("checkpoints", &["safetensors", "pth", "pt", "bin"]).pick_file(),
                DialogFor::ModelFolder | DialogFor::Generator => d.pick_folder(),
                DialogFor::Export => d.add_filter("PNG", &["png"]).set_file_name("export.png").save_file(),
                DialogFor::OpenSession => d.add_filter("session", &["json"]).pick_file(),
                DialogFor::SaveSession => {
                    d.add_filter("session", &["json"]).set_file_name("studio.session.json").save_file()
                }
            }
        });
        self.files.dialog = Some((what, promise));
    }

    pub(crate) fn poll_dialog(&mut self) {
        let Some((what, p)) = &self.files.dialog else { return };
        let Some(answer) = p.ready() else { return };
        let (what, answer): (DialogFor, Option<PathBuf>) = (*what, answer.clone());
        self.files.dialog = None;
        let Some(path) = answer else { return }; // cancelled, or no portal available
        let text = path.display().to_string();
        match what {
            DialogFor::Image => {
                self.settings.image_path = text;
                self.open_image(&path);
            }
            DialogFor::Model | DialogFor::ModelFolder => {
                self.settings.model_path = text;
                self.load_model(ModelSource::Path(path));
            }
            DialogFor::Export => {
                self.settings.export_path = text;
                self.export_image();
            }
            DialogFor::Generator => {
                self.sample.dit_path = text;
                self.commands.send(Job::LoadGenerator(path));
            }
            DialogFor::OpenSession => {
                self.files.session_path = text;
                self.open_session(&path);
            }
            DialogFor::SaveSession => {
                self.files.session_path = text;
                self.save_session(&path);
            }
        }
    }
}
