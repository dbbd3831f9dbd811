//! Per-patch heatmaps on the CPU: the engine's colour maps (`engine::colormap`), shared with `dino-sae inspect` so
//! the studio and the command line draw the same colours. `blend` is the reference of `shaders/heatmap.wgsl`.

pub use engine::colormap::{blend, colormap, error_image, histogram, overlay, overlay_colors, overlay_range};
