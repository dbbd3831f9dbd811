//! The x2 upsampling block (ConvPixelShuffle or InterpolateConv) and its shortcuts.

use burn::module::Module;
use burn::tensor::Tensor;

use super::config::{SHORTCUT_DUPLICATING, SHORTCUT_INTERPOLATE, UpsampleType};
use crate::model::nn::{Conv2d, pixel_shuffle2, repeat_interleave_channels};
use crate::weights::WeightSource;

/// Upsample x2 (main path) plus, optionally, a shortcut (duplicating, or its own InterpolateConv).
#[derive(Module, Debug)]
pub struct Upsample {
    pub conv: Conv2d,
    #[module(skip)]
    pub pixel_shuffle: bool,
    /// `Some(r)`: shortcut = pixel_shuffle(repeat_interleave(x, r)).
    #[module(skip)]
    pub shortcut_repeat: Option<usize>,
    /// shortcut = conv3x3(nearest_up2(x)) (`upsample_shortcut: InterpolateConv`).
    pub shortcut_conv: Option<Conv2d>,
}

impl Upsample {
    /// `key` is the upsample layer's module path (e.g. `stages.1.op_list.0` or `project_out.op_list.2`);
    /// `shortcut`: the official shortcut name, None for a bare layer.
    pub(super) fn load(
        ws: &mut WeightSource,
        key: &str,
        kind: UpsampleType,
        c_in: usize,
        c_out: usize,
        shortcut: Option<&str>,
    ) -> Self {
        let ps = kind == UpsampleType::ConvPixelShuffle;
        let conv_out = if ps { 4 * c_out } else { c_out };
        let main = if shortcut.is_some() { format!("{key}.main.conv.conv") } else { format!("{key}.conv.conv") };
        let shortcut_conv = (shortcut == Some(SHORTCUT_INTERPOLATE))
            .then(|| Conv2d::load(ws, &format!("{key}.shortcut.conv.conv"), c_in, c_out, 3, 1, 1, true));
        Self {
            conv: Conv2d::load(ws, &main, c_in, conv_out, 3, 1, 1, true),
            pixel_shuffle: ps,
            shortcut_repeat: (shortcut == Some(SHORTCUT_DUPLICATING)).then_some(4 * c_out / c_in),
            shortcut_conv,
        }
    }

    /// # Shapes
    /// - x: `[B, C_in, H, W]` -> `[B, C_out, 2H, 2W]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let main = if self.pixel_shuffle {
            pixel_shuffle2(self.conv.forward(x.clone()))
        } else {
            self.conv.forward_up2(x.clone())
        };
        if let Some(r) = self.shortcut_repeat {
            return main + pixel_shuffle2(repeat_interleave_channels(x, r));
        }
        if let Some(c) = &self.shortcut_conv {
            return main + c.forward_up2(x);
        }
        main
    }
}
