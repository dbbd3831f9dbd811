//! DINO-SAE Studio's UI, as a library so tests can drive it (egui_kittest). The engine runs on its own thread
//! (`engine::worker`); this crate only exchanges job messages, events and images with it.
pub mod actions;
pub mod app;
pub mod commands;
pub mod dialogs;
pub mod engine_link;
pub mod events;
pub mod export;
pub mod gpu_heatmap;
pub mod heatmap;
pub mod panels;
pub mod session_io;
pub mod state;
pub mod widgets;
