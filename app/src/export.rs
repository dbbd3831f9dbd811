//! Writing files off the UI thread: PNG exports (with the parameters in text chunks) and walk frames.

use std::path::PathBuf;

use crate::app::Studio;
use crate::state::Tab;

type Write = poll_promise::Promise<Result<PathBuf, String>>;

/// Background writes in flight; each reports the path written or why not.
#[derive(Default)]
pub struct Exporter {
    jobs: Vec<Write>,
}

impl Exporter {
    /// Write `img` as PNG with `text` chunks on a thread.
    pub fn png(&mut self, path: PathBuf, img: image::RgbImage, text: Vec<(&'static str, String)>) {
        self.jobs.push(poll_promise::Promise::spawn_thread("export-png", move || {
            engine::image_io::save_png(&path, &img, &text).map(|()| path.clone()).map_err(|e| e.to_string())
        }));
    }

    /// Write frames as `dir/frame_000.png`... on a thread; reports the folder.
    pub fn frames(&mut self, dir: PathBuf, frames: Vec<image::RgbImage>, label: String) {
        self.jobs.push(poll_promise::Promise::spawn_thread("export-frames", move || {
            let n = frames.len();
            for (i, f) in frames.iter().enumerate() {
                let text = vec![
                    ("Software", "DINO-SAE Studio".to_string()),
                    ("Walk", format!("{label}, frame {i}/{}, slerp per patch", n.saturating_sub(1))),
                ];
                engine::image_io::save_png(dir.join(format!("frame_{i:03}.png")), f, &text)
                    .map_err(|e| e.to_string())?;
            }
            Ok(dir)
        }));
    }

    /// Write frames as a looping GIF or APNG (by the file's extension) at `fps` on a thread.
    pub fn animation(&mut self, path: PathBuf, frames: Vec<image::RgbImage>, fps: f32) {
        self.jobs.push(poll_promise::Promise::spawn_thread("export-animation", move || {
            engine::animation::write(&path, &frames, fps).map(|_| path.clone()).map_err(|e| e.to_string())
        }));
    }

    pub fn is_idle(&self) -> bool {
        self.jobs.is_empty()
    }

    /// One finished write, if any.
    pub fn poll(&mut self) -> Option<Result<PathBuf, String>> {
        let i = self.jobs.iter().position(|p| p.ready().is_some())?;
        let p = self.jobs.remove(i);
        Some(p.block_and_take())
    }
}

impl Studio {
    /// The parameters written into every exported PNG.
    fn export_text(&self, what: &str) -> Vec<(&'static str, String)> {
        let model = self.models.main.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let s = &self.sample;
        vec![
            ("Software", "DINO-SAE Studio".to_string()),
            ("Model", model),
            ("Kind", what.to_string()),
            (
                "Source",
                self.doc
                    .image
                    .as_ref()
                    .and_then(|i| i.path.as_ref())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ),
            ("Steer", serde_json::to_string(&self.resolved_edit()).unwrap_or_default()),
            (
                "Sample",
                format!(
                    "class={} seed={} steps={} sampler={} cfg={} s_vae={} n={}",
                    s.classes.get(s.class).cloned().unwrap_or_default(),
                    s.seed,
                    s.steps,
                    if s.exp_map { "exp-map" } else { "euler-proj" },
                    s.cfg,
                    s.s_vae,
                    s.count
                ),
            ),
        ]
    }

    /// Export what the current tab shows (samples, the steered decode, or the reconstruction).
    pub(crate) fn export_image(&mut self) {
        if self.view.tab == Tab::Steer && self.doc.current.as_ref().is_some_and(|c| c.steered_is_preview) {
            // exports always use the full decoder
            self.messages.status = Some("the full decode of this edit is on its way: export again in a moment".into());
            if self.steer.full_pending.take().is_some() || !self.link.is_running(engine::worker::JobKind::Steer) {
                self.commands.send(engine::worker::Job::Steer { edit: self.resolved_edit() });
            }
            return;
        }
        let (img, what) = match (&self.sample.result_image, &self.doc.current, self.view.tab) {
            (Some(g), _, Tab::Sample) => (g.clone(), "samples"),
            (_, Some(c), Tab::Steer) if c.steered.is_some() => {
                (c.steered.as_ref().map(|s| s.0.clone()).unwrap_or_default(), "steered")
            }
            (_, Some(c), _) => (c.recon.clone(), "reconstruction"),
            _ => return,
        };
        let text = self.export_text(what);
        self.files.exporter.png(std::path::PathBuf::from(self.settings.export_path.trim()), img, text);
    }

    /// Export the last full-resolution render (at the original's size).
    pub(crate) fn export_render(&mut self) {
        let Some((img, _, _)) = &self.render.result else { return };
        let img = img.clone();
        let text = self.export_text("full-resolution render");
        let p = std::path::PathBuf::from(self.settings.export_path.trim());
        let stem = p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "export".into());
        self.files.exporter.png(p.with_file_name(format!("{stem}-full.png")), img, text);
    }

    /// Write the walk's frames as a looping animation (GIF or APNG, by the file name) at the walk's frame rate.
    pub(crate) fn export_walk_animation(&mut self) {
        let path = PathBuf::from(self.sample.animation_path.trim());
        if let Err(e) = engine::animation::Format::of(&path) {
            self.messages.error = Some(e.to_string());
            return;
        }
        self.files.exporter.animation(path, self.sample.walk.clone(), self.sample.fps);
    }

    /// Write the walk's frames as PNGs with the parameters in text chunks.
    pub(crate) fn export_walk(&mut self) {
        let dir = PathBuf::from(self.sample.frames_dir.trim());
        self.files.exporter.frames(dir, self.sample.walk.clone(), self.sample.walk_label.clone());
    }
}
