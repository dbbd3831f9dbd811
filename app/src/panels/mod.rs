//! One module per panel. Each `show` takes the studio and draws into its area; none touches tensors.

pub mod compare;
pub mod inspect;
pub mod menu;
pub mod models;
pub mod sample;
pub mod side;
pub mod status;
pub mod steer;
