//! DINO-SAE Studio: compare reconstructions, inspect and steer spherical latents.
//! The engine runs on its own thread (`engine::worker`); this crate only exchanges messages and images.

use dino_sae_studio::app::{StartOptions, Studio, StudioApp};

fn main() -> eframe::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let opts = StartOptions::from_args(&args[1..]);
    let native = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default().with_inner_size([1360.0, 820.0]).with_title("DINO-SAE Studio"),
        ..Default::default()
    };
    eframe::run_native(
        "DINO-SAE Studio",
        native,
        Box::new(move |cc| {
            let mut studio = Studio::new(cc.egui_ctx.clone(), opts);
            if let Some(st) = cc.storage.and_then(|s| eframe::get_value(s, "dino-sae-studio.settings")) {
                studio.apply_settings(st);
            }
            if let Some(rs) = &cc.wgpu_render_state {
                studio.enable_gpu(rs);
            }
            Ok(Box::new(StudioApp(studio)))
        }),
    )
}
