//! DinoSae = HCPE stem + frozen DINO blocks + final LayerNorm (encoder) and the DC-AE decoder.
//!
//! `encode(pixels) -> Latent` (normed patch tokens as a `[B, C, h, w]` map, plus CLS);
//! `decode(latent) -> pixels`. Any H, W multiple of 16, any batch.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::decoder::{Decoder, DecoderConfig};
use super::hybrid::HybridEmbed;
use super::nn::Probe;
use super::stem::Stem;
use super::vit::{PatchEmbed, Vit, VitConfig, VitOutput};
use crate::error::{EngineError, Result};
use crate::weights::{LoadReport, ParamNames, WeightSource};

pub use crate::image_io::{IMAGENET_MEAN, IMAGENET_STD, OutputRange, PixelConfig};

/// What turns the 16-px patches into tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedKind {
    /// DINO-SAE's hierarchical convolutional stem (the paper).
    #[default]
    Stem,
    /// The backbone's one-shot patchify on the image resized by p/16 (the ablation without the stem).
    Patchify,
    /// That patchify plus the stem as a residual branch whose last convolution starts at zero (ours, issue 26):
    /// an untrained student is the teacher, and the stem learns what the patchify loses.
    Hybrid,
}

impl EmbedKind {
    /// Whether the HCPE stem (`patch_embed.cnn.*`) is part of the embedding.
    pub fn has_stem(self) -> bool {
        matches!(self, Self::Stem | Self::Hybrid)
    }
    /// Whether the backbone's patchify (`patch_embed.proj.*`) is part of the embedding.
    pub fn has_patchify(self) -> bool {
        matches!(self, Self::Patchify | Self::Hybrid)
    }
    /// The kind whose keys these are: the stem's, the patchify's, or both.
    pub fn from_keys(stem: bool, patchify: bool) -> Self {
        match (stem, patchify) {
            (true, true) => Self::Hybrid,
            (false, true) => Self::Patchify,
            _ => Self::Stem,
        }
    }
}

/// Full autoencoder configuration (our `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaeConfig {
    pub encoder: VitConfig,
    pub decoder: DecoderConfig,
    #[serde(default)]
    pub pixels: PixelConfig,
    /// Stem (default) or resized patchify.
    #[serde(default)]
    pub embed: EmbedKind,
}

impl SaeConfig {
    /// The released DINO-SAE: DINOv3 ViT-L/16 + the released decoder.
    pub fn released() -> Self {
        let encoder = super::dinov3::preset("dinov3_vitl16").expect("preset");
        Self {
            decoder: DecoderConfig::released(encoder.dim),
            encoder,
            pixels: PixelConfig::default(),
            embed: EmbedKind::Stem,
        }
    }

    /// Our default model's layout: DINOv2-S/14 blocks with the stem + the small decoder.
    pub fn small_dinov2() -> Self {
        let encoder = super::dinov2::preset("dinov2_vits14").expect("preset");
        Self {
            decoder: DecoderConfig::small(encoder.dim),
            encoder,
            pixels: PixelConfig::default(),
            embed: EmbedKind::Stem,
        }
    }

    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "released" | "dino-sae-l16" => Some(Self::released()),
            "small" | "small-dinov2" => Some(Self::small_dinov2()),
            _ => None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.encoder.validate()?;
        self.decoder.validate()?;
        if self.decoder.latent_channels != self.encoder.dim {
            return Err(EngineError::Config(format!(
                "decoder expects {} latent channels, encoder gives {}",
                self.decoder.latent_channels, self.encoder.dim
            )));
        }
        if self.decoder.upsampling() != 16 {
            return Err(EngineError::Config(format!(
                "decoder upsamples x{}, the stem downsamples x16",
                self.decoder.upsampling()
            )));
        }
        Ok(())
    }
}

/// A latent: one vector per 16x16 patch.
#[derive(Debug, Clone)]
pub struct Latent {
    /// `[B, C, h, w]` normed patch tokens.
    pub patches: Tensor<4>,
    /// `[B, C]` normed CLS.
    pub cls: Tensor<2>,
}

impl Latent {
    pub fn grid(&self) -> (usize, usize) {
        let [_, _, h, w] = self.patches.dims();
        (h, w)
    }
}

/// Token sequence `[B, N, C]` -> map `[B, C, h, w]`.
pub fn tokens_to_map(tokens: Tensor<3>, (h, w): (usize, usize)) -> Tensor<4> {
    let [b, _, c] = tokens.dims();
    tokens.swap_dims(1, 2).reshape([b, c, h, w])
}

#[derive(Module, Debug)]
pub struct DinoSae {
    pub encoder: Vit,
    pub decoder: Decoder,
    #[module(skip)]
    pub cfg: SaeConfig,
    /// Internal key of every parameter (for saving).
    #[module(skip)]
    pub names: ParamNames,
}

impl DinoSae {
    /// Build from a source holding internal names: `dino_model.*` (backbone with `patch_embed.cnn.*`, or
    /// `patch_embed.proj.*` for [`EmbedKind::Patchify`]) and `decoder.*`.
    pub fn load(ws: &mut WeightSource, cfg: &SaeConfig) -> Result<Self> {
        cfg.validate()?;
        let mut encoder = Vit::load(ws, "dino_model", &cfg.encoder, cfg.embed == EmbedKind::Stem);
        if let PatchEmbed::Conv(c) = encoder.patch_embed {
            encoder.patch_embed = match cfg.embed {
                EmbedKind::Hybrid => PatchEmbed::Hybrid(HybridEmbed {
                    patchify: c,
                    stem: Stem::load(ws, "dino_model.patch_embed", cfg.encoder.dim),
                }),
                _ => PatchEmbed::Resized(c),
            };
        }
        let decoder = Decoder::load(ws, "decoder", &cfg.decoder)?;
        Ok(Self { encoder, decoder, cfg: cfg.clone(), names: ws.names() })
    }

    /// Random weights (for timing and tests only; the report says `random`).
    pub fn random(cfg: &SaeConfig, seed: u64, device: &Device) -> Result<(Self, LoadReport)> {
        let mut ws = WeightSource::random(seed, device);
        let m = Self::load(&mut ws, cfg)?;
        Ok((m, ws.finish()))
    }

    /// Check the input size.
    pub fn check_input(&self, dims: [usize; 4]) -> Result<()> {
        let [_, c, h, w] = dims;
        if c != 3 || h == 0 || w == 0 || h % 16 != 0 || w % 16 != 0 {
            return Err(EngineError::Shape(format!(
                "encoder input must be [B, 3, H, W] with H, W multiples of 16, got {dims:?}"
            )));
        }
        Ok(())
    }

    /// Encoder forward with all states.
    ///
    /// # Shapes
    /// - x: `[B, 3, H, W]` normalised pixels
    pub fn encode_full(&self, x: Tensor<4>, probe: &mut Probe) -> Result<VitOutput> {
        self.check_input(x.dims())?;
        Ok(self.encoder.forward(x, probe))
    }

    /// # Shapes
    /// - x: `[B, 3, H, W]` -> latent `[B, C, H/16, W/16]`
    pub fn encode(&self, x: Tensor<4>) -> Result<Latent> {
        self.encode_probed(x, &mut Probe::default())
    }

    /// [`Self::encode`] with a probe (its cancel flag is checked between blocks).
    ///
    /// # Shapes
    /// - x: `[B, 3, H, W]` -> latent `[B, C, H/16, W/16]`
    pub fn encode_probed(&self, x: Tensor<4>, probe: &mut Probe) -> Result<Latent> {
        let out = self.encode_full(x, probe)?;
        if probe.cancelled() {
            return Err(EngineError::Cancelled);
        }
        Ok(Latent { patches: tokens_to_map(out.patch_tokens(), out.grid), cls: out.cls() })
    }

    /// Encode, stopping between blocks when `cancel` is set (then `Err(Cancelled)`).
    ///
    /// # Shapes
    /// - x: `[B, 3, H, W]` -> latent `[B, C, H/16, W/16]`
    pub fn encode_cancellable(
        &self,
        x: Tensor<4>,
        cancel: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Latent> {
        self.encode_probed(x, &mut Probe::cancellable(cancel.clone()))
    }

    /// Decode, stopping between decoder blocks when `cancel` is set (then `Err(Cancelled)`).
    ///
    /// # Shapes
    /// - z: `[B, C, h, w]` -> `[B, 3, 16h, 16w]`
    pub fn decode_cancellable(
        &self,
        z: Tensor<4>,
        cancel: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<Tensor<4>> {
        self.decode_probed(z, &mut Probe::cancellable(cancel.clone()))
    }

    /// # Shapes
    /// - z: `[B, C, h, w]` -> `[B, 3, 16h, 16w]` (in the `pixels.output` convention)
    pub fn decode(&self, z: Tensor<4>) -> Result<Tensor<4>> {
        self.decode_probed(z, &mut Probe::default())
    }

    pub fn decode_probed(&self, z: Tensor<4>, probe: &mut Probe) -> Result<Tensor<4>> {
        let [_, c, h, w] = z.dims();
        if c != self.cfg.decoder.latent_channels || h == 0 || w == 0 {
            return Err(EngineError::Shape(format!(
                "latent must be [B, {}, h, w], got {:?}",
                self.cfg.decoder.latent_channels,
                z.dims()
            )));
        }
        let out = self.decoder.forward(z, probe);
        if probe.cancelled() {
            return Err(EngineError::Cancelled);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_build() {
        for name in ["released", "small"] {
            let cfg = SaeConfig::preset(name).expect("preset");
            cfg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // the small preset builds and maps 32x48 px to a 2x3 latent and back
        let device = crate::cpu();
        let (m, _) = DinoSae::random(&SaeConfig::small_dinov2(), 1, &device).expect("build");
        let lat = m.encode(Tensor::<4>::zeros([1, 3, 32, 48], &device)).expect("encode");
        assert_eq!(lat.patches.dims(), [1, 384, 2, 3]);
        assert_eq!(m.decode(lat.patches).expect("decode").dims(), [1, 3, 32, 48]);
    }
}
