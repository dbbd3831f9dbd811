//! Times the CPU host paths (engine::model::host) against burn's own ops at the default model's shapes
//! (developer tool: `cargo run --example host_paths`; figures in docs/PERFORMANCE.md).
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor};
use engine::model::host;
use std::time::Instant;

fn main() {
    let device = engine::cpu();
    let t = |name: &str, flop: f64, f: &dyn Fn()| {
        f();
        f();
        let s = Instant::now();
        for _ in 0..10 {
            f();
        }
        let ms = s.elapsed().as_secs_f64() * 1e3 / 10.0;
        println!("{name:<40} {ms:7.2} ms {:6.1} GFLOP/s", flop / ms / 1e6);
    };
    let x = Tensor::<4>::random([1, 1536, 32, 32], Distribution::Normal(0.0, 1.0), &device);
    t("burn silu 1.5M (fresh)", 0.0, &|| {
        let _ = burn::tensor::activation::silu(x.clone() + 0.5).into_data();
    });
    t("host silu 1.5M (fresh)", 0.0, &|| {
        let _ = host::silu(x.clone() + 0.5).into_data();
    });
    t("x + 0.5 only", 0.0, &|| {
        let _ = (x.clone() + 0.5).into_data();
    });
    t("host gelu 1.5M (fresh)", 0.0, &|| {
        let _ = host::gelu(x.clone() + 0.5).into_data();
    });
    for (c, hh) in [(96usize, 64usize), (48, 128)] {
        let norm = engine::model::nn::RmsNorm2d {
            weight: burn::module::Param::from_tensor(Tensor::<4>::random(
                [1, c, 1, 1],
                Distribution::Normal(1.0, 0.1),
                &device,
            )),
        };
        let xx = Tensor::<4>::random([1, c, hh, hh], Distribution::Normal(0.0, 1.0), &device);
        t(&format!("RmsNorm2d {c}x{hh}x{hh}"), 0.0, &|| {
            let _ = norm.forward(xx.clone()).into_data();
        });
        t(&format!("x + x {c}x{hh}x{hh}"), 0.0, &|| {
            let _ = (xx.clone() + xx.clone()).into_data();
        });
    }
    let y = Tensor::<4>::random([1, 768, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let x3 = Tensor::<4>::random([1, 384, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    t("pixel_shuffle2 768x16x16", 0.0, &|| {
        let _ = engine::model::nn::pixel_shuffle2(y.clone() + 0.5).into_data();
    });
    t("x+0.5 768x16x16", 0.0, &|| {
        let _ = (y.clone() + 0.5).into_data();
    });
    t("shortcut 384x16x16 r2", 0.0, &|| {
        let _ =
            engine::model::nn::pixel_shuffle2(engine::model::nn::repeat_interleave_channels(x3.clone(), 2)).into_data();
    });
    {
        let wt = Tensor::<4>::random([192, 384, 3, 3], Distribution::Normal(0.0, 0.1), &device);
        let wv = wt.clone().into_data().try_to_vec::<f32>().expect("f32");
        t("weight into_data (shared)", 0.0, &|| {
            let _ = wt.clone().into_data();
        });
        t("fold_up2_weights 192x384", 0.0, &|| {
            let _ = kernels::fold_up2_weights(&wv, 192, 384);
        });
        let y: Vec<f32> = (0..768 * 17 * 17).map(|i| i as f32).collect();
        t("assemble_up2 192 16x16", 0.0, &|| {
            let _ = kernels::assemble_up2(&y, 192, 16, 16);
        });
        let f = kernels::fold_up2_weights(&wv, 192, 384);
        t("from_data folded", 0.0, &|| {
            let _ = Tensor::<4>::from_data(burn::tensor::TensorData::new(f.clone(), [768, 384, 2, 2]), &device);
        });
    }
    for (ci, co, hh) in [(384usize, 192usize, 16usize), (192, 96, 32), (96, 48, 64), (48, 3, 128)] {
        let conv = engine::model::nn::Conv2d {
            weight: burn::module::Param::from_tensor(Tensor::<4>::random(
                [co, ci, 3, 3],
                Distribution::Normal(0.0, 0.1),
                &device,
            )),
            bias: Some(burn::module::Param::from_tensor(Tensor::<1>::random(
                [co],
                Distribution::Normal(0.0, 0.1),
                &device,
            ))),
            stride: 1,
            padding: 1,
            groups: 1,
        };
        let xx = Tensor::<4>::random([1, ci, hh, hh], Distribution::Normal(0.0, 1.0), &device);
        let flop = 2.0 * (4 * co * ci * 4 * (hh + 1) * (hh + 1)) as f64;
        t(&format!("forward_up2 {ci}->{co} at {hh}"), flop, &|| {
            let _ = conv.forward_up2(xx.clone()).into_data();
        });
    }
    for &(cin, cout, h, k, s, pad) in &[
        (384usize, 768usize, 16usize, 3usize, 1usize, 1usize),
        (96, 96, 64, 3, 1, 1),
        (48, 48, 128, 3, 1, 1),
        (384, 384, 16, 3, 1, 1),
        (96, 192, 64, 2, 1, 1),
        (192, 384, 32, 2, 1, 1),
        (384, 768, 16, 2, 1, 1),
        (48, 12, 128, 2, 1, 1),
        (3, 64, 256, 7, 2, 3),
        (64, 128, 128, 3, 2, 1),
        (128, 256, 64, 3, 2, 1),
        (256, 384, 32, 3, 2, 1),
    ] {
        let oh = (h + 2 * pad - k) / s + 1;
        let flop = 2.0 * (cout * cin * k * k * oh * oh) as f64;
        let x = Tensor::<4>::random([1, cin, h, h], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<4>::random([cout, cin, k, k], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<1>::random([cout], Distribution::Normal(0.0, 1.0), &device);
        t(&format!("burn conv2d {cin}->{cout} {h}x{h} k{k} s{s}"), flop, &|| {
            let _ = conv2d(x.clone(), w.clone(), Some(b.clone()), ConvOptions::new([s, s], [pad, pad], [1, 1], 1))
                .into_data();
        });
        let g = host::conv_geom(&x, &w, s, pad).expect("geom");
        t(&format!("host conv2d {cin}->{cout} {h}x{h} k{k} s{s}"), flop, &|| {
            let _ = host::conv2d(x.clone(), w.clone(), Some(b.clone()), g).into_data();
        });
    }
}
