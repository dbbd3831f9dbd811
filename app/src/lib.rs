//! DINO-SAE Studio's UI, as a library so tests can drive it (egui_kittest).
pub mod app;
pub mod commands;
pub mod gpu_heatmap;
pub mod heatmap;
