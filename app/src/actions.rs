//! What the user can do: open images (on a thread, as working copies), load models, steer, render, and the
//! commands of menus and shortcuts. Each sends jobs through the engine link; none waits for the engine.

use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;
use engine::steer::SteerEdit;
use engine::worker::{Job, JobKind, ModelSource};

use crate::app::Studio;
use crate::commands::AppCommand;
use crate::state::*;

impl Studio {
    /// Read `path` and make its working copy on a thread; the reconstruction follows.
    pub fn open_image(&mut self, path: &std::path::Path) {
        let p = path.to_path_buf();
        let side = self.settings.working_side;
        self.doc.opening = Some(poll_promise::Promise::spawn_thread("open-image", move || {
            let img = engine::image_io::load_rgb(&p).map_err(|e| e.to_string())?;
            let work = engine::image_io::working_copy(&img, side);
            Ok((Some(p), Arc::new(img), work))
        }));
    }

    /// Decode dropped bytes on a thread, like [`Self::open_image`].
    pub fn open_bytes(&mut self, bytes: Vec<u8>) {
        let side = self.settings.working_side;
        self.doc.opening = Some(poll_promise::Promise::spawn_thread("open-bytes", move || {
            let img = engine::image_io::decode_rgb(&bytes).map_err(|e| e.to_string())?;
            let work = engine::image_io::working_copy(&img, side);
            Ok((None, Arc::new(img), work))
        }));
    }

    pub(crate) fn poll_opening(&mut self) {
        let Some(p) = &self.doc.opening else { return };
        let Some(res) = p.ready() else { return };
        let res = res.clone();
        self.doc.opening = None;
        match res {
            Ok((path, original, work)) => {
                // results for the previous image are stale now
                for k in [JobKind::Steer, JobKind::Cosine, JobKind::TeacherCosine, JobKind::Lpips, JobKind::Render] {
                    self.commands.cancel(k);
                }
                self.doc.image = Some(OpenImage { path, original });
                self.render = RenderUi::default();
                self.submit_reconstruct(work);
            }
            Err(e) => self.messages.error = Some(e), // what the user had stays as it was
        }
    }

    /// Re-make the working copy of the open image (after the working size or the fit changed).
    pub(crate) fn rework(&mut self) {
        if let Some(img) = &self.doc.image {
            let work = engine::image_io::working_copy(&img.original, self.settings.working_side);
            self.submit_reconstruct(work);
        }
    }

    pub(crate) fn submit_reconstruct(&mut self, work: image::RgbImage) {
        if self.models.main.is_none() {
            self.doc.pending_work = Some(work);
            return;
        }
        self.commands.send(Job::Reconstruct { image: work, fit: self.settings.fit });
    }

    pub(crate) fn load_model(&mut self, src: ModelSource) {
        self.commands.send(Job::LoadModel(src));
    }

    /// The edit with its target resolved from the controls.
    pub(crate) fn resolved_edit(&self) -> SteerEdit {
        use engine::steer::SteerTarget;
        let mut e = self.steer.edit.clone();
        e.patches = self.steer.selection.clone();
        let random = SteerTarget::Random(e.noise_seed.wrapping_add(1));
        e.target = match self.steer.target_kind {
            TargetKind::Patch => SteerTarget::Patch(self.steer.target_patch),
            TargetKind::Random => random,
            TargetKind::ClassMean => {
                self.steer.class_mean.as_ref().map(|(_, d)| SteerTarget::Direction(d.clone())).unwrap_or(random)
            }
            TargetKind::Library => self.steer.directions.applied.as_ref().map(|(_, t)| t.clone()).unwrap_or(random),
            TargetKind::Pinned => {
                self.steer.pinned.as_ref().map(|(_, d)| SteerTarget::Direction(d.clone())).unwrap_or(random)
            }
            TargetKind::Pca(k, positive) => {
                match self.doc.current.as_ref().and_then(|c| engine::steer::pca_direction(&c.pca_axes, k, positive)) {
                    Some(d) => SteerTarget::Direction(d),
                    None => random,
                }
            }
        };
        e
    }

    /// Decode the current edit: with a preview decoder, the preview at once and the full decode once input has
    /// been still for [`crate::app::FULL_DECODE_AFTER`] (a full decode in flight is stale now: cancelled);
    /// without one, the full decode at once.
    pub(crate) fn send_steer(&mut self) {
        if self.doc.current.is_none() {
            return;
        }
        self.steer.edit = self.resolved_edit();
        if self.models.preview.is_some() {
            self.commands.cancel(JobKind::Steer);
            self.commands.send(Job::SteerPreview { edit: self.steer.edit.clone() });
            self.steer.full_pending = Some(self.ctx.input(|i| i.time));
            self.ctx.request_repaint_after(std::time::Duration::from_secs_f64(crate::app::FULL_DECODE_AFTER));
        } else {
            self.commands.send(Job::Steer { edit: self.steer.edit.clone() });
        }
    }

    /// Send the full decode of a settled edit.
    pub(crate) fn poll_full_decode(&mut self, now: f64) {
        let Some(t) = self.steer.full_pending else { return };
        let dragging = self.ctx.input(|i| i.pointer.any_down());
        if now - t >= crate::app::FULL_DECODE_AFTER && !dragging {
            self.steer.full_pending = None;
            self.commands.send(Job::Steer { edit: self.steer.edit.clone() });
        } else {
            self.ctx.request_repaint_after(std::time::Duration::from_millis(30));
        }
    }

    pub(crate) fn push_undo(&mut self) {
        self.steer.undoer.add_undo(&self.steer.edit);
    }

    pub(crate) fn can_undo(&self) -> bool {
        self.steer.undoer.has_undo(&self.steer.edit)
    }

    pub(crate) fn can_redo(&self) -> bool {
        self.steer.undoer.has_redo(&self.steer.edit)
    }

    /// Start the full-resolution render of the current edit.
    pub(crate) fn start_render(&mut self) {
        let (Some(img), Some(_)) = (&self.doc.image, &self.doc.current) else { return };
        let job = Job::Render {
            original: img.original.clone(),
            fit: self.settings.fit,
            edit: self.resolved_edit(),
            tiling: Default::default(),
        };
        self.render.note = None;
        self.commands.send(job);
    }

    /// Run a command (menus, shortcuts and tests all come here).
    pub fn run(&mut self, cmd: AppCommand) {
        match cmd {
            AppCommand::OpenImage => {
                let p = PathBuf::from(self.settings.image_path.trim());
                self.open_image(&p);
            }
            AppCommand::OpenSession => {
                let p = PathBuf::from(self.files.session_path.trim());
                self.open_session(&p);
            }
            AppCommand::SaveSession => {
                let p = PathBuf::from(self.files.session_path.trim());
                self.save_session(&p);
            }
            AppCommand::ExportImage => self.export_image(),
            AppCommand::ExportLatent => {
                let p = PathBuf::from(self.settings.export_path.trim()).with_extension("safetensors");
                self.commands.send(Job::ExportLatent { path: p, edit: Some(self.resolved_edit()) });
            }
            AppCommand::RenderFull => self.start_render(),
            AppCommand::CancelRender => self.commands.cancel(JobKind::Render),
            AppCommand::Show(tab) => self.view.tab = tab,
            AppCommand::ToggleHeatmap => match self.view.tab {
                Tab::Steer => self.steer.show_heat = !self.steer.show_heat,
                _ => self.inspect.show_heat = !self.inspect.show_heat,
            },
            AppCommand::ResetSteer => {
                self.push_undo();
                self.steer.edit = SteerEdit::default();
                self.steer.selection.clear();
                self.push_undo();
                self.send_steer();
            }
            AppCommand::Undo => {
                if let Some(e) = self.steer.undoer.undo(&self.steer.edit).cloned() {
                    self.steer.selection = e.patches.clone();
                    self.steer.edit = e;
                    self.send_steer();
                }
            }
            AppCommand::Redo => {
                if let Some(e) = self.steer.undoer.redo(&self.steer.edit).cloned() {
                    self.steer.selection = e.patches.clone();
                    self.steer.edit = e;
                    self.send_steer();
                }
            }
            AppCommand::ToggleTheme => {
                self.settings.dark = !self.settings.dark;
                self.ctx.set_visuals(if self.settings.dark { egui::Visuals::dark() } else { egui::Visuals::light() });
            }
            AppCommand::ToggleHelp => self.view.help = !self.view.help,
        }
    }
}
