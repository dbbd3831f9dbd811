//! Norms and activations as the two official builders (`model.py`'s and efficientvit's) make them.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::{relu, sigmoid};

use crate::error::{EngineError, Result};
use crate::model::host::silu;
use crate::model::nn::RmsNorm2d;
use crate::weights::{Init, WeightSource};

/// An activation as one of the two official builders makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Act {
    #[default]
    Identity,
    Relu,
    Relu6,
    Hswish,
    Silu,
    /// `nn.GELU(approximate="tanh")` (efficientvit's `gelu`)
    GeluTanh,
    Tanh,
    Sigmoid,
}

impl Act {
    /// `model.py`'s `build_act` (ResBlock, project_out): unknown names are an error there.
    pub fn model_py(name: Option<&str>) -> Result<Self> {
        Ok(match name.map(str::to_ascii_lowercase).as_deref() {
            None => Act::Identity,
            Some("relu") => Act::Relu,
            Some("silu") => Act::Silu,
            Some("tanh") => Act::Tanh,
            Some("sigmoid") => Act::Sigmoid,
            Some(o) => {
                return Err(EngineError::Config(format!(
                    "decoder: activation {o:?} (the official builder accepts relu, silu, tanh, sigmoid or null)"
                )));
            }
        })
    }

    /// efficientvit's `build_act` (inside EViT_GLU). A name it does not register gives `None` there, and the
    /// GLU gate then calls `None`: the official forward fails, so such a config is refused.
    pub fn efficientvit(name: Option<&str>) -> Result<Self> {
        Ok(match name.unwrap_or("") {
            "relu" => Act::Relu,
            "relu6" => Act::Relu6,
            "hswish" => Act::Hswish,
            "silu" => Act::Silu,
            "gelu" => Act::GeluTanh,
            o => {
                return Err(EngineError::Config(format!(
                    "decoder: EViT_GLU activation {o:?} (efficientvit registers relu, relu6, hswish, silu, gelu; \
                     with any other the official GLU gate fails)"
                )));
            }
        })
    }

    /// # Shapes
    /// - x: any -> same
    pub fn forward<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Act::Identity => x,
            Act::Relu => relu(x),
            Act::Relu6 => x.clamp(0.0, 6.0),
            Act::Hswish => x.clone() * x.add_scalar(3.0).clamp(0.0, 6.0).div_scalar(6.0),
            Act::Silu => silu(x),
            Act::GeluTanh => {
                let cube = x.clone() * x.clone() * x.clone();
                let inner = (x.clone() + cube.mul_scalar(0.044715)).mul_scalar((2.0 / std::f64::consts::PI).sqrt());
                x.mul_scalar(0.5) * inner.tanh().add_scalar(1.0)
            }
            Act::Tanh => x.tanh(),
            Act::Sigmoid => sigmoid(x),
        }
    }
}

/// Which norm a `ConvLayer` / project_out carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    None,
    /// DINO-SAE's RMSNorm2d (weight `[1, C, 1, 1]`)
    Rms,
    /// `nn.BatchNorm2d` in eval mode (running statistics, eps 1e-5)
    Batch,
    /// efficientvit's `LayerNorm2d` (over channels, eps 1e-5)
    Layer,
}

impl NormKind {
    /// `model.py`'s `build_norm` (ResBlock, project_out).
    pub fn model_py(name: Option<&str>) -> Result<Self> {
        Ok(match name.map(str::to_ascii_lowercase).as_deref() {
            None => NormKind::None,
            Some("trms2d") => NormKind::Rms,
            Some("bn2d") => NormKind::Batch,
            Some(o) => {
                return Err(EngineError::Config(format!(
                    "decoder: norm {o:?} (the official builder accepts trms2d, bn2d or null)"
                )));
            }
        })
    }

    /// What an EViT_GLU block of a stage with this `norm` gets (efficientvit's `build_norm`; `trms2d` arrives
    /// as a module instance and gives none).
    pub fn evit(name: Option<&str>) -> Result<Self> {
        Ok(match name.unwrap_or("") {
            "bn2d" => NormKind::Batch,
            "ln2d" => NormKind::Layer,
            "ln" => {
                return Err(EngineError::Config(
                    "decoder: EViT_GLU with norm \"ln\" (a LayerNorm over the width axis) is not supported".into(),
                ));
            }
            _ => NormKind::None,
        })
    }
}

/// Eval-mode `BatchNorm2d`.
#[derive(Module, Debug)]
pub struct BatchNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: Param<Tensor<1>>,
    pub running_var: Param<Tensor<1>>,
}

/// efficientvit's `LayerNorm2d`: per pixel over channels, affine.
#[derive(Module, Debug)]
pub struct LayerNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
}

const BN_EPS: f64 = 1e-5;
const LN_EPS: f64 = 1e-5;

/// A 2D norm of any supported kind (none: identity).
#[derive(Module, Debug)]
pub struct Norm2d {
    pub rms: Option<RmsNorm2d>,
    pub batch: Option<BatchNorm2d>,
    pub layer: Option<LayerNorm2d>,
}

impl Norm2d {
    /// Load the norm module at `key` (e.g. `...conv2.norm`) of kind `kind` for `c` channels.
    pub fn load(ws: &mut WeightSource, key: &str, kind: NormKind, c: usize) -> Self {
        let mut n = Self { rms: None, batch: None, layer: None };
        match kind {
            NormKind::None => {}
            NormKind::Rms => n.rms = Some(RmsNorm2d::load(ws, &format!("{key}.weight"), c)),
            NormKind::Batch => {
                n.batch = Some(BatchNorm2d {
                    weight: ws.param(&format!("{key}.weight"), [c], Init::Ones),
                    bias: ws.param(&format!("{key}.bias"), [c], Init::Zeros),
                    running_mean: ws.param(&format!("{key}.running_mean"), [c], Init::Zeros),
                    running_var: ws.param(&format!("{key}.running_var"), [c], Init::Ones),
                });
                // a buffer with no effect in eval mode
                let nbt = format!("{key}.num_batches_tracked");
                if ws.contains(&nbt) && !ws.is_random() {
                    let shape = ws.shape_of(&nbt).unwrap_or_default();
                    ws.raw(&nbt, &shape, Init::Zeros);
                }
            }
            NormKind::Layer => {
                n.layer = Some(LayerNorm2d {
                    weight: ws.param(&format!("{key}.weight"), [c], Init::Ones),
                    bias: ws.param(&format!("{key}.bias"), [c], Init::Zeros),
                })
            }
        }
        n
    }

    pub fn kind(&self) -> NormKind {
        if self.rms.is_some() {
            NormKind::Rms
        } else if self.batch.is_some() {
            NormKind::Batch
        } else if self.layer.is_some() {
            NormKind::Layer
        } else {
            NormKind::None
        }
    }

    /// # Shapes
    /// - x: `[B, C, H, W]` -> same
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(r) = &self.rms {
            return r.forward(x);
        }
        if let Some(b) = &self.batch {
            let c = b.weight.dims()[0];
            let scale = b.weight.val() / b.running_var.val().add_scalar(BN_EPS).sqrt();
            let shift = b.bias.val() - b.running_mean.val() * scale.clone();
            return x * scale.reshape([1, c, 1, 1]) + shift.reshape([1, c, 1, 1]);
        }
        if let Some(l) = &self.layer {
            let c = l.weight.dims()[0];
            let centred = x.clone() - x.mean_dim(1);
            let var = centred.clone().square().mean_dim(1);
            let y = centred / var.add_scalar(LN_EPS).sqrt();
            return y * l.weight.val().reshape([1, c, 1, 1]) + l.bias.val().reshape([1, c, 1, 1]);
        }
        x
    }
}
