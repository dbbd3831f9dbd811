//! DINO-SAE Studio: compare reconstructions, inspect and steer spherical latents, sample.
//! `dino-sae-studio [IMAGE|SESSION.json] [--model PATH] [--backend auto|cpu|wgpu] [--working-size PX]`

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use dino_sae_studio::app::{SETTINGS_KEY, StartOptions, Studio, StudioApp};
use dino_sae_studio::state::{Settings, Tab};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BackendArg {
    /// wgpu on a hardware GPU, else the CPU
    Auto,
    Cpu,
    Wgpu,
}

#[derive(Parser, Debug)]
#[command(name = "dino-sae-studio", about = "See and steer the spherical latents of a DINO-SAE")]
struct Cli {
    /// An image, or a session file (.json) saved by File > Save session.
    open: Option<PathBuf>,
    /// A DINO-SAE checkpoint (our folder, or an official state dict); default: the embedded default model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// An image to open (same as the positional argument).
    #[arg(long, conflicts_with = "open")]
    image: Option<PathBuf>,
    /// Random weights of a preset (pipeline demo only).
    #[arg(long)]
    random_preset: Option<String>,
    #[arg(long, value_enum)]
    tab: Option<Tab>,
    /// Where the engine computes (default: $DINO_SAE_BACKEND, else auto).
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Longest side of the working copy of opened images, pixels (64..=4096; default: remembered, else 384).
    #[arg(long, value_parser = clap::value_parser!(u32).range(64..=4096))]
    working_size: Option<u32>,
    /// Memory budget for every job: 8GiB, 512MiB, or a fraction of the available memory such as 0.5
    /// (default: $DINO_SAE_MEMORY_BUDGET, else 0.6).
    #[arg(long, value_parser = parse_budget)]
    memory_budget: Option<engine::preflight::Budget>,
}

fn parse_budget(s: &str) -> Result<engine::preflight::Budget, String> {
    engine::preflight::Budget::parse(s).map_err(|e| e.to_string())
}

/// A variable that is set must be valid: a typo is an error, not a silent fallback.
fn check_env() -> Result<(), String> {
    if let Ok(v) = std::env::var("DINO_SAE_BACKEND") {
        v.parse::<engine::backend::BackendChoice>().map_err(|e| format!("DINO_SAE_BACKEND: {e}"))?;
    }
    if let Ok(v) = std::env::var("DINO_SAE_MEMORY_BUDGET")
        && !v.trim().is_empty()
    {
        engine::preflight::Budget::parse(&v).map_err(|e| format!("DINO_SAE_MEMORY_BUDGET: {e}"))?;
    }
    Ok(())
}

fn main() -> eframe::Result<()> {
    let cli = Cli::parse();
    if let Err(e) = check_env() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let backend = match cli.backend {
        Some(BackendArg::Auto) => engine::backend::BackendChoice::Auto,
        Some(BackendArg::Cpu) => engine::backend::BackendChoice::Cpu,
        Some(BackendArg::Wgpu) => engine::backend::BackendChoice::Wgpu,
        None => engine::backend::BackendChoice::from_env(),
    };
    let tab = cli.tab;
    let opts = StartOptions {
        no_restore: cli.open.is_some() || cli.image.is_some(),
        open: cli.open.or(cli.image),
        model: cli.model,
        random_preset: cli.random_preset,
        tab,
        backend,
        working_side: cli.working_size,
        stable_ui: false,
        memory_budget: cli.memory_budget,
        data_dir: None,
    };
    let native = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_inner_size([1360.0, 820.0])
            .with_title("DINO-SAE Studio"),
        ..Default::default()
    };
    eframe::run_native(
        "DINO-SAE Studio",
        native,
        Box::new(move |cc| {
            let settings: Settings = cc.storage.and_then(|s| eframe::get_value(s, SETTINGS_KEY)).unwrap_or_default();
            let mut studio = Studio::with_settings(cc.egui_ctx.clone(), opts, settings);
            if let Some(rs) = &cc.wgpu_render_state {
                studio.enable_gpu(rs);
            }
            Ok(Box::new(StudioApp(studio)))
        }),
    )
}
