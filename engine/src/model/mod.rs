//! The models of the paper, one file per concept.
pub mod decoder;
pub mod dinov2;
pub mod dinov3;
pub mod host;
pub mod nn;
pub mod sae;
pub mod stem;
pub mod vit;
pub mod dit;
pub mod preview;
