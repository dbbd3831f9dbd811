//! DINO-SAE Studio: compare reconstructions and inspect per-patch latent magnitudes.
//! The engine runs on its own thread (`engine::worker`); this crate only exchanges messages and images.

mod app;
mod heatmap;

fn main() -> eframe::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let opts = app::StartOptions::from_args(&args[1..]);
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_inner_size([1280.0, 800.0]).with_title("DINO-SAE Studio"),
        ..Default::default()
    };
    eframe::run_native("DINO-SAE Studio", native, Box::new(move |cc| Ok(Box::new(app::Studio::new(cc, opts)))))
}
