//! Small reusable widgets: the patch grid geometry, the colour bar, the heatmap-overlaid image.

pub mod colour_bar;
pub mod layout;
pub mod overlay;
pub mod patch_grid;
