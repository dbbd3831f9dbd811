//! The models of the paper, one file per concept.
pub mod decoder;
pub mod dinov2;
pub mod dinov3;
pub mod dit;
pub mod host;
pub mod hybrid;
pub mod nn;
pub mod preview;
pub mod sae;
pub mod stem;
pub mod vit;
pub mod vit_config;
