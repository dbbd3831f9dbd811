//! The Studio window: model panel, Compare (original | reconstruction | error), |z| heatmap, status bar.

use std::path::PathBuf;

use eframe::egui::{self, ColorImage, TextureHandle, TextureOptions};
use engine::image_io::Fit;
use engine::worker::{Command, Event, ModelInfo, ModelSource, Worker};

use crate::heatmap;

/// Command-line options: `--model PATH`, `--image PATH`, `--random-preset NAME`.
#[derive(Default, Clone)]
pub struct StartOptions {
    pub model: Option<PathBuf>,
    pub image: Option<PathBuf>,
    pub random_preset: Option<String>,
}

impl StartOptions {
    pub fn from_args(args: &[String]) -> Self {
        let mut o = Self::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--model" => o.model = it.next().map(PathBuf::from),
                "--image" => o.image = it.next().map(PathBuf::from),
                "--random-preset" => o.random_preset = it.next().cloned(),
                _ => {}
            }
        }
        o
    }
}

struct Result_ {
    input: TextureHandle,
    recon: TextureHandle,
    error: TextureHandle,
    heat: TextureHandle,
    input_img: image::RgbImage,
    magnitude: Vec<f32>,
    grid: (usize, usize),
    psnr: f64,
    ssim: f64,
    millis: f64,
    mag_range: (f32, f32),
}

#[derive(PartialEq, Clone, Copy)]
enum RightView {
    Reconstruction,
    Error,
}

pub struct Studio {
    worker: Worker,
    model: Option<ModelInfo>,
    result: Option<Result_>,
    last_sent: u64,
    busy: bool,
    error: Option<String>,
    image_path: String,
    model_path: String,
    fit: Fit,
    heat_opacity: f32,
    show_heat: bool,
    right: RightView,
    pending_image: Option<image::RgbImage>,
}

fn to_color_image(img: &image::RgbImage) -> ColorImage {
    ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw())
}

impl Studio {
    pub fn new(cc: &eframe::CreationContext<'_>, opts: StartOptions) -> Self {
        let ctx = cc.egui_ctx.clone();
        let worker = Worker::spawn(move || ctx.request_repaint());
        let src = match (&opts.model, &opts.random_preset) {
            (Some(p), _) => ModelSource::Path(p.clone()),
            (None, Some(p)) => ModelSource::RandomPreset(p.clone()),
            _ => ModelSource::Default,
        };
        worker.send(Command::LoadModel(src));
        let mut s = Self {
            worker,
            model: None,
            result: None,
            last_sent: 0,
            busy: true,
            error: None,
            image_path: opts.image.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            model_path: String::new(),
            fit: Fit::Crop,
            heat_opacity: 0.6,
            show_heat: true,
            right: RightView::Reconstruction,
            pending_image: None,
        };
        // Open on a sample photo unless told otherwise.
        let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/samples/astronaut.png");
        if let Some(p) = opts.image.or(sample.exists().then_some(sample)) {
            s.image_path = p.display().to_string();
            s.open_image(&p);
        }
        s
    }

    fn open_image(&mut self, path: &std::path::Path) {
        match engine::image_io::load_rgb(path) {
            Ok(img) => self.submit(img),
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    fn open_bytes(&mut self, bytes: &[u8]) {
        match engine::image_io::decode_rgb(bytes) {
            Ok(img) => self.submit(img),
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    fn submit(&mut self, img: image::RgbImage) {
        if self.model.is_none() {
            self.pending_image = Some(img);
            return;
        }
        self.last_sent += 1;
        self.busy = true;
        self.worker.send(Command::Reconstruct { id: self.last_sent, image: img, fit: self.fit });
    }

    fn handle_events(&mut self, ctx: &egui::Context) {
        while let Some(ev) = self.worker.try_recv() {
            match ev {
                Event::Loaded(info) => {
                    self.model = Some(info);
                    self.busy = false;
                    self.error = None;
                    if let Some(img) = self.pending_image.take() {
                        self.submit(img);
                    } else if let Some(r) = &self.result {
                        let img = r.input_img.clone();
                        self.submit(img);
                    }
                }
                Event::Reconstructed { id, input, recon, psnr, ssim, magnitude, grid, millis } => {
                    if id != self.last_sent {
                        continue; // stale: a newer request is on its way
                    }
                    self.busy = false;
                    let opts = TextureOptions::NEAREST;
                    let err = heatmap::error_image(&input, &recon);
                    let (heat, lo, hi) = heatmap::overlay(&input, &magnitude, grid, 1.0);
                    self.result = Some(Result_ {
                        input: ctx.load_texture("input", to_color_image(&input), opts),
                        recon: ctx.load_texture("recon", to_color_image(&recon), opts),
                        error: ctx.load_texture("error", to_color_image(&err), opts),
                        heat: ctx.load_texture("heat", to_color_image(&heat), opts),
                        input_img: input,
                        magnitude,
                        grid,
                        psnr,
                        ssim,
                        millis,
                        mag_range: (lo, hi),
                    });
                }
                Event::Failed { error, .. } => {
                    self.busy = false;
                    self.error = Some(error); // everything the user had stays as it was
                }
            }
        }
    }

    fn model_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Model");
        match &self.model {
            Some(m) => {
                if m.random {
                    ui.colored_label(egui::Color32::from_rgb(230, 120, 40), "RANDOM weights: pipeline demo only");
                }
                ui.label(format!("{}\n{:.1} M parameters", m.name, m.params as f64 / 1e6));
                ui.collapsing("Key report", |ui| ui.monospace(&m.report));
                ui.collapsing("Config", |ui| {
                    egui::ScrollArea::vertical().max_height(200.0).show(ui, |ui| ui.monospace(&m.config))
                });
            }
            None => {
                ui.label("No model loaded.");
            }
        }
        ui.separator();
        ui.label("Checkpoint (our folder or an official DINO-SAE state dict):");
        ui.text_edit_singleline(&mut self.model_path);
        if ui.button("Load model").clicked() && !self.model_path.is_empty() {
            self.busy = true;
            self.worker.send(Command::LoadModel(ModelSource::Path(PathBuf::from(self.model_path.trim()))));
        }
        if ui.button("Load default model").clicked() {
            self.busy = true;
            self.worker.send(Command::LoadModel(ModelSource::Default));
        }
        if ui.button("Random small model (demo)").clicked() {
            self.busy = true;
            self.worker.send(Command::LoadModel(ModelSource::RandomPreset("small".into())));
        }
        ui.separator();
        ui.heading("Image");
        ui.label("Path (or drop a file on the window):");
        ui.text_edit_singleline(&mut self.image_path);
        if ui.button("Open image").clicked() && !self.image_path.is_empty() {
            let p = PathBuf::from(self.image_path.trim());
            self.open_image(&p);
        }
        egui::ComboBox::from_label("Fit to x16")
            .selected_text(format!("{:?}", self.fit))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut self.fit, Fit::Crop, "Crop");
                ui.selectable_value(&mut self.fit, Fit::Pad, "Pad");
                ui.selectable_value(&mut self.fit, Fit::Resize, "Resize");
            });
        ui.separator();
        ui.heading("Inspect");
        ui.checkbox(&mut self.show_heat, "|z| heatmap");
        ui.add(egui::Slider::new(&mut self.heat_opacity, 0.0..=1.0).text("opacity"));
    }

    fn compare_panel(&mut self, ui: &mut egui::Ui) {
        let Some(r) = &self.result else {
            ui.centered_and_justified(|ui| ui.label("Open an image (path on the left, or drop a file here)."));
            return;
        };
        ui.horizontal(|ui| {
            ui.label(format!(
                "PSNR {:.2} dB   SSIM {:.4}   {}x{} px, {}x{} patches   {:.0} ms",
                r.psnr,
                r.ssim,
                r.input_img.width(),
                r.input_img.height(),
                r.grid.1,
                r.grid.0,
                r.millis
            ));
            ui.separator();
            ui.selectable_value(&mut self.right, RightView::Reconstruction, "Reconstruction");
            ui.selectable_value(&mut self.right, RightView::Error, "Error (x4)");
        });
        let avail = ui.available_size();
        let [w, h] = r.input.size();
        let scale = ((avail.x / 2.0 - 8.0) / w as f32).min((avail.y - 40.0) / h as f32).max(0.05);
        let size = egui::vec2(w as f32 * scale, h as f32 * scale);
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.label("Original");
                let resp = ui.image((r.input.id(), size));
                if self.show_heat {
                    let tint = egui::Color32::from_white_alpha((self.heat_opacity * 255.0) as u8);
                    ui.painter().image(r.heat.id(), resp.rect, egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0)), tint);
                    if let Some(pos) = resp.hover_pos() {
                        let gx = (((pos.x - resp.rect.left()) / resp.rect.width()) * r.grid.1 as f32) as usize;
                        let gy = (((pos.y - resp.rect.top()) / resp.rect.height()) * r.grid.0 as f32) as usize;
                        if gx < r.grid.1 && gy < r.grid.0 {
                            resp.on_hover_text(format!("patch ({gy}, {gx})  |z| = {:.3}", r.magnitude[gy * r.grid.1 + gx]));
                        }
                    }
                }
            });
            ui.vertical(|ui| {
                match self.right {
                    RightView::Reconstruction => {
                        ui.label("Reconstruction");
                        ui.image((r.recon.id(), size));
                    }
                    RightView::Error => {
                        ui.label("|original - reconstruction| x4");
                        ui.image((r.error.id(), size));
                    }
                }
            });
        });
        if self.show_heat {
            ui.label(format!("|z| colour scale: {:.2} (dark) .. {:.2} (yellow)", r.mag_range.0, r.mag_range.1));
        }
    }
}

impl eframe::App for Studio {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        self.handle_events(&ctx);
        let dropped: Vec<_> = ctx.input(|i| i.raw.dropped_files.clone());
        for f in dropped {
            match f.bytes() {
                Ok(b) => self.open_bytes(&b),
                Err(e) => self.error = Some(format!("{}: {e}", f.path().display())),
            }
        }
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label("backend: CPU (burn Flex)");
                ui.separator();
                if self.busy {
                    ui.spinner();
                    ui.label("working…");
                }
                if let Some(e) = &self.error {
                    ui.colored_label(egui::Color32::from_rgb(220, 60, 60), format!("error: {e}"));
                }
            });
        });
        egui::Panel::left("model").resizable(true).default_size(300.0).show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| self.model_panel(ui));
        });
        egui::CentralPanel::default().show(ui, |ui| self.compare_panel(ui));
    }
}
