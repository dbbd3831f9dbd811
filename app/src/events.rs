//! Applying the engine's events to the studio. The engine link has already dropped results that are not the
//! newest of their kind; results computed on an older latent (another image) are dropped here by version.

use eframe::egui::{self, TextureOptions};
use engine::worker::{Event, Job, JobKind};

use crate::app::{Studio, color_image};
use crate::heatmap;
use crate::state::*;

impl Studio {
    fn is_current(&self, version: u64) -> bool {
        self.doc.current.as_ref().is_some_and(|c| c.version == version)
    }

    pub(crate) fn on_event(&mut self, ev: Event) {
        match ev {
            Event::BackendReady(b) => {
                // UI snapshots must not depend on the machine (thread count, adapter name)
                self.view.backend = if self.view.stable_ui { b.generic_name } else { b.name }
            }
            Event::Loaded(l) => self.on_loaded(l),
            Event::Reconstructed(r) => self.on_reconstructed(*r),
            Event::CosineMap(c) => self.on_cosine_map(c),
            Event::TeacherCosine(t) => self.on_teacher_cosine(t),
            Event::Steered(s) => self.on_steered(s),
            Event::PatchDirection(p) => self.on_patch_direction(p),
            Event::Lpips(l) => self.on_lpips(l),
            Event::Progress(p) => self.on_progress(p),
            Event::Sampled(s) => self.on_sampled(s),
            Event::ClassMean(c) => self.on_class_mean(c),
            Event::Walked(w) => self.on_walked(w),
            Event::Exported(e) => self.files.last_export = Some(e.path),
            Event::Rendered(r) => self.on_rendered(r),
            Event::RegionDirection(r) => {
                let source = format!("{} patches minus {} patches", r.sizes.0, r.sizes.1);
                crate::panels::directions::save(self, source, engine::steer::SteerTarget::Direction(r.direction));
            }
            Event::Copied(c) => {
                self.steer.regen.copied = Some((c.patches, c.span));
                self.messages.status = Some(format!("copied {} patches", c.patches));
            }
            Event::Failed(f) => self.on_failed(f),
        }
    }

    fn on_loaded(&mut self, l: engine::worker::Loaded) {
        let had_generator = self.models.generator.clone();
        self.models = l.models;
        if self.models.generator != had_generator {
            if let Some(g) = &self.models.generator {
                // readable names (the generator stores its photos' file names)
                self.sample.classes = g.classes.iter().map(|c| engine::generate::class_label(c)).collect();
                self.sample.s_vae_default = g.s_vae;
                self.sample.s_vae = g.s_vae;
                self.sample.class = self.sample.class.min(g.classes.len().saturating_sub(1));
            } else {
                self.sample.classes.clear();
            }
        }
        self.messages.error = None;
        match l.kind {
            JobKind::LoadModel | JobKind::LoadCompare => {
                // the main model (or the compare set) changed: reconstruct what is open again
                if let Some(w) = self.doc.pending_work.take() {
                    self.submit_reconstruct(w);
                } else if l.kind == JobKind::LoadModel || self.doc.current.is_some() {
                    self.rework();
                }
                if l.kind == JobKind::LoadModel {
                    self.doc.current = None;
                    self.messages.status =
                        self.models.main.as_ref().map(|m| format!("loaded {}", crate::app::short_name(&m.name)));
                } else {
                    self.messages.status = Some("compare models updated".into());
                }
            }
            JobKind::LoadPreview => {
                self.messages.status = self.models.preview.as_ref().map(|p| {
                    format!("loaded preview decoder {}", crate::app::short_name(&p.path.display().to_string()))
                });
            }
            JobKind::LoadTeacher => {
                self.messages.status =
                    self.models.teacher.as_ref().map(|t| format!("loaded teacher {}", crate::app::short_name(t)));
                if self.doc.current.is_some() {
                    self.commands.send(Job::TeacherCosine);
                }
            }
            _ => self.messages.status = Some("generator loaded".into()),
        }
    }

    fn on_cosine_map(&mut self, c: engine::worker::CosineMap) {
        if self.is_current(c.version) {
            if let Some(cur) = &mut self.doc.current {
                cur.cosine = Some((c.patch, c.values));
            }
            self.inspect.heat = HeatMode::Cosine;
            self.inspect.show_heat = true;
            self.refresh_overlay();
        }
    }

    fn on_teacher_cosine(&mut self, t: engine::worker::TeacherCosine) {
        if self.is_current(t.version) {
            if let Some(cur) = &mut self.doc.current {
                cur.teacher_cosine = Some(t.values);
            }
            self.refresh_overlay();
        }
    }

    fn on_steered(&mut self, s: engine::worker::Steered) {
        // a preview never replaces a full decode of the same edit that arrived first
        let full_newer = s.preview && self.steer.full_pending.is_none() && !self.link.is_running(JobKind::Steer);
        if let Some(c) = self
            .doc
            .current
            .as_mut()
            .filter(|c| c.version == s.version && !(full_newer && !c.steered_is_preview && c.steered.is_some()))
        {
            c.tex_steered = Some(self.ctx.load_texture("steered", color_image(&s.image), TextureOptions::NEAREST));
            c.steered = Some((s.image, s.psnr, s.millis));
            c.steered_is_preview = s.preview;
            if s.preview {
                self.steer.previews_shown += 1;
            }
        }
    }

    fn on_patch_direction(&mut self, p: engine::worker::PatchDirection) {
        let n = self.doc.recent.len();
        self.steer.pinned = Some((format!("patch {} of image {n}", p.patch), p.direction));
        self.steer.target_kind = TargetKind::Pinned;
        self.send_steer();
    }

    fn on_lpips(&mut self, l: engine::worker::LpipsScores) {
        if let Some(c) = self.doc.current.as_mut().filter(|c| c.version == l.version) {
            c.lpips = Some((l.main, l.others));
            c.lpips_note = format!("LPIPS-VGG-like at {}x{}", l.size.0, l.size.1);
        }
    }

    fn on_progress(&mut self, p: engine::worker::Progress) {
        if let (JobKind::Inpaint, Some(img)) = (p.kind, &p.preview) {
            self.steer.regen.preview =
                Some(self.ctx.load_texture("regen-preview", color_image(img), TextureOptions::NEAREST));
        }
        if let (JobKind::Sample, Some(img)) = (p.kind, p.preview) {
            self.sample.preview =
                Some(self.ctx.load_texture("sample-preview", color_image(&img), TextureOptions::NEAREST));
            self.sample.preview_fast = p.fast;
        }
    }

    fn on_sampled(&mut self, s: engine::worker::Sampled) {
        match engine::generate::tile(&s.images) {
            Ok(grid) => {
                let t = self.ctx.load_texture("sample-result", color_image(&grid), TextureOptions::NEAREST);
                self.sample.result = Some((t, s.cancelled, s.steps_done, s.millis));
                self.sample.result_image = Some(grid);
            }
            Err(e) => self.messages.error = Some(e.to_string()),
        }
    }

    fn on_class_mean(&mut self, c: engine::worker::ClassMean) {
        self.steer.class_mean = Some((c.class, c.direction));
        self.steer.target_kind = TargetKind::ClassMean;
        self.send_steer();
    }

    fn on_walked(&mut self, w: engine::worker::Walked) {
        self.sample.walk_tex = w
            .frames
            .iter()
            .enumerate()
            .map(|(i, f)| self.ctx.load_texture(format!("walk{i}"), color_image(f), TextureOptions::NEAREST))
            .collect();
        let same = self.sample.walk.len() == w.frames.len() && self.sample.walk_is_preview && !w.preview;
        self.sample.walk = w.frames;
        self.sample.walk_is_preview = w.preview;
        if !same {
            self.sample.walk_pos = 0; // the full frames replace the preview ones where playback is
        }
    }

    fn on_rendered(&mut self, r: engine::worker::Rendered) {
        if self.is_current(r.version) {
            self.render.texture = Some(self.ctx.load_texture("render", color_image(&r.image), TextureOptions::LINEAR));
            self.render.result = Some((r.image, r.millis, r.tiles));
            self.render.note = None;
        }
    }

    fn on_failed(&mut self, f: engine::worker::Failed) {
        if f.kind == Some(JobKind::Inpaint) {
            self.steer.regen.preview = None;
        }
        match (f.kind, f.cancelled) {
            (Some(JobKind::Render), true) => {
                self.render.note = Some(if self.render.result.is_some() {
                    "cancelled; the previous render is kept".into()
                } else {
                    "cancelled".into()
                });
            }
            (_, true) => {} // superseded or cancelled on purpose: nothing to say
            (Some(JobKind::Lpips), false) => {
                // not an error of anything the user did: say it where the score would be
                if let Some(c) = &mut self.doc.current {
                    c.lpips_note = f.error;
                }
            }
            (Some(JobKind::Render), false) => {
                self.render.note = Some(f.error.clone());
                self.messages.error = Some(f.error);
            }
            _ => self.messages.error = Some(f.error), // what the user had stays as it was
        }
    }

    fn on_reconstructed(&mut self, r: engine::worker::Reconstruction) {
        // a regeneration (or its undo) replaces the latent of the same image; anything else starts afresh
        self.steer.regen.depth = match (r.kind, self.steer.regen.undo_sent) {
            (JobKind::Inpaint, false) => self.steer.regen.depth + 1,
            (JobKind::Inpaint, true) => self.steer.regen.depth.saturating_sub(1),
            _ => 0,
        };
        self.steer.regen.preview = None;
        if self.doc.recent.last() != Some(&r.input) && !r.from_latent {
            self.doc.recent.push(r.input.clone());
            if self.doc.recent.len() > 6 {
                self.doc.recent.remove(0);
            }
        }
        let err = heatmap::error_image(&r.input, &r.recon);
        let o = self.tex_options();
        let others = r
            .others
            .into_iter()
            .enumerate()
            .map(|(i, x)| {
                (x.name, self.ctx.load_texture(format!("other{i}"), color_image(&x.image), o), x.psnr, x.ssim)
            })
            .collect();
        let same_grid = self.doc.current.as_ref().is_some_and(|c| c.grid == r.grid);
        self.doc.current = Some(Current {
            version: r.version,
            tex_input: self.ctx.load_texture("input", color_image(&r.input), o),
            tex_recon: self.ctx.load_texture("recon", color_image(&r.recon), o),
            tex_error: self.ctx.load_texture("error", color_image(&err), o),
            tex_overlay: None,
            tex_steered: None,
            input: r.input,
            recon: r.recon,
            psnr: r.psnr,
            ssim: r.ssim,
            millis: r.millis,
            grid: r.grid,
            magnitude: r.magnitude,
            pca_rgb: r.pca_rgb,
            pca_axes: r.pca_axes,
            teacher_cosine: None,
            others,
            cosine: None,
            steered: None,
            steered_is_preview: false,
            lpips: None,
            lpips_note: "LPIPS-VGG-like: computing...".into(),
            from_latent: r.from_latent,
        });
        if !same_grid {
            self.steer.selection.clear();
        }
        let n = r.grid.0 * r.grid.1;
        self.steer.target_patch = self.steer.target_patch.min(n.saturating_sub(1));
        self.refresh_overlay();
        if let Some(e) = self.doc.pending_edit.take() {
            self.steer.selection = e.patches.iter().copied().filter(|&p| p < n).collect();
            self.steer.edit = e;
            self.push_undo();
            self.send_steer();
        }
        // the perceptual distance and the teacher's cosines run as their own (background / interactive) jobs
        self.commands.send(Job::Lpips);
        if self.models.teacher.is_some() {
            self.commands.send(Job::TeacherCosine);
        }
    }

    pub(crate) fn reload_textures(&mut self) {
        let o = self.tex_options();
        if let Some(c) = &mut self.doc.current {
            c.tex_input.set(color_image(&c.input), o);
            c.tex_recon.set(color_image(&c.recon), o);
            let err = heatmap::error_image(&c.input, &c.recon);
            c.tex_error.set(color_image(&err), o);
        }
    }

    fn overlay_texture(&self, c: &Current) -> Option<egui::ColorImage> {
        let img = match self.inspect.heat {
            HeatMode::Magnitude => heatmap::overlay(&c.input, &c.magnitude, c.grid, 1.0).0,
            HeatMode::Cosine => {
                let (_, v) = c.cosine.as_ref()?;
                heatmap::overlay_range(&c.input, v, c.grid, -1.0, 1.0)
            }
            HeatMode::Teacher => heatmap::overlay_range(&c.input, c.teacher_cosine.as_ref()?, c.grid, -1.0, 1.0),
            HeatMode::Pca => {
                if c.pca_rgb.is_empty() {
                    return None;
                }
                heatmap::overlay_colors(&c.input, &c.pca_rgb, c.grid)
            }
        };
        Some(color_image(&img))
    }

    pub(crate) fn refresh_overlay(&mut self) {
        self.view.overlay_version += 1;
        let tex = self.doc.current.as_ref().and_then(|c| self.overlay_texture(c));
        if let Some(c) = &mut self.doc.current {
            c.tex_overlay = tex.map(|t| self.ctx.load_texture("overlay", t, TextureOptions::NEAREST));
        }
    }
}
