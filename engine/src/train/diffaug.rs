//! DiffAugment (Zhao et al. 2020) for the discriminator's inputs: differentiable colour (brightness, saturation,
//! contrast), translation by up to 1/8 of the side with zero fill, and cutout of a half-side square. Parameters are
//! drawn per sample on the host; real and fake batches are augmented by separate calls, as in the original.

use burn::tensor::{Tensor, TensorData};
use rand::{Rng, rngs::StdRng};

/// The random parameters of one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct AugParams {
    /// Added to every value, in [-0.5, 0.5].
    pub brightness: f32,
    /// Factor on the deviation from the per-pixel channel mean, in [0, 2].
    pub saturation: f32,
    /// Factor on the deviation from the image mean, in [0.5, 1.5].
    pub contrast: f32,
    /// Shift (rows, cols), each in [-side/8, side/8].
    pub shift: (i64, i64),
    /// Cutout square: top-left (row, col), side.
    pub cutout: (usize, usize, usize),
}

impl AugParams {
    /// The identity (for tests).
    pub fn identity() -> Self {
        Self { brightness: 0.0, saturation: 1.0, contrast: 1.0, shift: (0, 0), cutout: (0, 0, 0) }
    }

    pub fn draw(rng: &mut StdRng, h: usize, w: usize) -> Self {
        let (sh, sw) = ((h / 8) as i64, (w / 8) as i64);
        let (ch, cw) = (h / 2, w / 2);
        let side = ch.min(cw);
        Self {
            brightness: rng.random_range(-0.5..0.5),
            saturation: rng.random_range(0.0..2.0),
            contrast: rng.random_range(0.5..1.5),
            shift: (rng.random_range(-sh..=sh), rng.random_range(-sw..=sw)),
            cutout: (rng.random_range(0..=h - side), rng.random_range(0..=w - side), side),
        }
    }
}

/// Shift `x` by `s` along `axis` (2 = rows, 3 = cols), filling with zeros.
fn shift_axis(x: Tensor<4>, axis: usize, s: i64) -> Tensor<4> {
    let n = x.dims()[axis];
    let k = s.unsigned_abs() as usize;
    if k == 0 {
        return x;
    }
    if k >= n {
        return x.zeros_like();
    }
    let mut zshape = x.dims();
    zshape[axis] = k;
    let z = Tensor::<4>::zeros(zshape, &x.device());
    if s > 0 {
        Tensor::cat(vec![z, x.narrow(axis, 0, n - k)], axis)
    } else {
        Tensor::cat(vec![x.narrow(axis, k, n - k), z], axis)
    }
}

/// Apply `params` (one per sample).
///
/// # Shapes
/// - x: `[B, 3, H, W]` in [0, 1] -> same
pub fn apply(x: Tensor<4>, params: &[AugParams]) -> Tensor<4> {
    let [b, _, h, w] = x.dims();
    assert_eq!(params.len(), b, "one parameter set per sample");
    let dev = x.device();
    let per = |f: &dyn Fn(&AugParams) -> f32| {
        Tensor::<4>::from_data(TensorData::new(params.iter().map(f).collect::<Vec<f32>>(), vec![b, 1, 1, 1]), &dev)
    };
    let x = x + per(&|p| p.brightness);
    let m = x.clone().mean_dim(1);
    let x = (x - m.clone()) * per(&|p| p.saturation) + m;
    let m = x.clone().mean_dim(1).mean_dim(2).mean_dim(3);
    let x = (x - m.clone()) * per(&|p| p.contrast) + m;
    let shifted: Vec<Tensor<4>> = params
        .iter()
        .enumerate()
        .map(|(i, p)| shift_axis(shift_axis(x.clone().narrow(0, i, 1), 2, p.shift.0), 3, p.shift.1))
        .collect();
    let x = Tensor::cat(shifted, 0);
    let mut mask = vec![1.0f32; b * h * w];
    for (i, p) in params.iter().enumerate() {
        let (r0, c0, s) = p.cutout;
        for r in r0..(r0 + s).min(h) {
            for cc in c0..(c0 + s).min(w) {
                mask[i * h * w + r * w + cc] = 0.0;
            }
        }
    }
    x * Tensor::<4>::from_data(TensorData::new(mask, vec![b, 1, h, w]), &dev)
}

/// Draw parameters for a batch and apply them.
pub fn diff_augment(x: Tensor<4>, rng: &mut StdRng) -> Tensor<4> {
    let [b, _, h, w] = x.dims();
    let params: Vec<AugParams> = (0..b).map(|_| AugParams::draw(rng, h, w)).collect();
    apply(x, &params)
}
