//! File > Save session / Open session: what is open (image path, working resolution, models), the edit and the
//! sampler settings as JSON (`engine::worker::session`), the current latent as safetensors beside it (written by the
//! engine). The last session is written on exit and offered on the next start.

use std::path::{Path, PathBuf};

use eframe::egui;
use engine::worker::session::Session;
use engine::worker::{Job, ModelSource};

use crate::app::Studio;
use crate::state::SessionUi;

/// `${XDG_STATE_HOME:-$HOME/.local/state}/dino-sae-studio/last.session.json`.
pub fn last_session_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("dino-sae-studio/last.session.json"))
}

impl Studio {
    /// The session describing what is open now.
    pub fn session(&self) -> Session {
        let ui = SessionUi {
            tab: self.view.tab,
            heat: self.inspect.heat,
            target_kind: self.steer.target_kind,
            target_patch: self.steer.target_patch,
            pinned: self.steer.pinned.clone(),
            class_mean: self.steer.class_mean.clone(),
            exp_map: self.sample.exp_map,
        };
        Session {
            image: self.doc.image.as_ref().and_then(|i| i.path.clone()),
            working_side: self.settings.working_side,
            fit: self.settings.fit,
            model: self.models.main.as_ref().map(|m| m.source.clone()),
            compare: self
                .models
                .compare
                .iter()
                .filter_map(|m| match &m.source {
                    ModelSource::Path(p) => Some(p.clone()),
                    _ => None,
                })
                .collect(),
            teacher: self.models.teacher.as_ref().map(PathBuf::from),
            generator: self.models.generator.as_ref().and_then(|g| g.path.clone()),
            edit: self.resolved_edit(),
            sample: self.sample.spec(self.sample.count),
            latents: None,
            ui: serde_json::to_value(ui).unwrap_or_default(),
            ..Default::default()
        }
    }

    /// Save the session at `path`; the engine writes the current latent beside it.
    pub fn save_session(&mut self, path: &Path) {
        let mut s = self.session();
        if self.doc.current.is_some() {
            let lp = Session::latents_path(path);
            s.latents = lp.file_name().map(|f| f.to_string_lossy().to_string());
            self.commands.send(Job::ExportLatent { path: lp, edit: None });
        }
        match s.save(path, None) {
            Ok(()) => {
                self.settings.remember_session(path.to_path_buf());
                self.messages.status = Some(format!("session saved to {}", path.display()));
            }
            Err(e) => self.messages.error = Some(e.to_string()),
        }
    }

    /// Written on exit (JSON only; the image is opened again from its path).
    pub fn save_last_session(&mut self) {
        if self.doc.image.as_ref().and_then(|i| i.path.as_ref()).is_none() {
            return;
        }
        if let Some(p) = last_session_path() {
            let _ = self.session().save(&p, None);
        }
    }

    /// Open a session: load the models it names (those not loaded yet), then its image (or, when the image is
    /// gone, its saved latent), then apply its edit. A bad file changes nothing.
    pub fn open_session(&mut self, path: &Path) {
        let (s, latents) = match Session::load(path) {
            Ok(x) => x,
            Err(e) => {
                self.messages.error = Some(e.to_string());
                return;
            }
        };
        self.files.offer_restore = None;
        self.settings.remember_session(path.to_path_buf());
        self.settings.working_side = s.working_side.clamp(64, 4096);
        self.settings.fit = s.fit;
        if let Some(m) = &s.model
            && self.models.main.as_ref().map(|x| &x.source) != Some(m)
        {
            self.load_model(m.clone());
        }
        let have: Vec<ModelSource> = self.models.compare.iter().map(|m| m.source.clone()).collect();
        for c in &s.compare {
            if !have.contains(&ModelSource::Path(c.clone())) {
                self.commands.send(Job::AddCompareModel(c.clone()));
            }
        }
        if let Some(t) = &s.teacher
            && self.models.teacher.as_deref() != Some(&t.display().to_string())
        {
            self.commands.send(Job::LoadTeacher(t.clone()));
        }
        if let Some(g) = &s.generator
            && self.models.generator.as_ref().and_then(|x| x.path.as_ref()) != Some(g)
        {
            self.commands.send(Job::LoadGenerator(g.clone()));
        }
        let ui: SessionUi = serde_json::from_value(s.ui.clone()).unwrap_or_default();
        self.view.tab = ui.tab;
        self.inspect.heat = ui.heat;
        self.steer.target_kind = ui.target_kind;
        self.steer.target_patch = ui.target_patch;
        self.steer.pinned = ui.pinned;
        self.steer.class_mean = ui.class_mean;
        self.sample.apply_spec(&s.sample);
        self.sample.exp_map = ui.exp_map;
        self.doc.pending_edit = Some(s.edit.clone());
        match (&s.image, latents.and_then(|mut l| l.remove("latent"))) {
            (Some(img), _) if img.exists() => {
                self.settings.image_path = img.display().to_string();
                self.open_image(img);
            }
            (_, Some(lat)) => {
                self.doc.image = None;
                self.commands.send(Job::LoadLatent { latent: lat });
                self.messages.status = Some("the session's image is gone: showing its saved latent".into());
            }
            (Some(img), None) => {
                self.messages.error =
                    Some(format!("the session's image {} is gone and it saved no latent", img.display()))
            }
            (None, None) => {}
        }
    }
}

/// The offer to restore the last session, above the central panel.
pub fn restore_banner(s: &mut Studio, ui: &mut egui::Ui, path: &Path) {
    ui.horizontal(|ui| {
        ui.label("Last session found.");
        if ui.button("Restore last session").clicked() {
            s.open_session(path);
            s.files.offer_restore = None;
        }
        if ui.button("Dismiss").clicked() {
            s.files.offer_restore = None;
        }
    });
    ui.separator();
}
