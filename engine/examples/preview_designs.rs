//! Times the preview-decoder presets (random weights) at 256x256 and 512x512 on the CPU device, with their FLOPs
//! and sizes: the measurement behind the default preset (docs/PERFORMANCE.md). `preview_designs [repeats]`.

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use engine::model::preview::{PRESETS, PreviewConfig, PreviewDecoder};

fn median_ms(repeats: usize, f: &mut dyn FnMut()) -> (f64, f64, f64) {
    f();
    let mut v: Vec<f64> = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() / 10], v[v.len() * 9 / 10])
}

fn main() {
    let repeats: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(9);
    let device = engine::cpu();
    // the full decoder of the default model in the same run, for the ratio
    if let Some(dir) = engine::dirs::default_model_dir() {
        let m = engine::checkpoint::load_sae(&dir, &device, false).expect("default model").model;
        let z = Tensor::<4>::random([1, 384, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let (med, p10, p90) = median_ms(repeats, &mut || {
            let _ = m.decode(z.clone()).expect("decode").into_data();
        });
        let f = engine::flops::decoder(&m.cfg.decoder, 16, 16);
        println!(
            "full decode (default model) | 256: {:.3} GFLOP, median {med:.1} ms (p10 {p10:.1}, p90 {p90:.1})",
            f / 1e9
        );
    }
    for name in PRESETS {
        let cfg = PreviewConfig::preset(name, 384).expect("preset");
        let (m, _) = PreviewDecoder::random(&cfg, 0, &device).expect("build");
        let mut line = format!(
            "{name:<7} {:>8.2} M params ({:>5.1} MB f16)",
            cfg.param_count() as f64 / 1e6,
            cfg.param_count() as f64 * 2.0 / 1e6
        );
        for size in [256usize, 512] {
            let g = size / 16;
            let z = Tensor::<4>::random([1, 384, g, g], Distribution::Normal(0.0, 1.0), &device);
            let (med, p10, p90) = median_ms(repeats, &mut || {
                let _ = m.forward(z.clone()).into_data();
            });
            let f = engine::flops::preview(&cfg, g, g);
            line += &format!(" | {size}: {:.3} GFLOP, median {med:.1} ms (p10 {p10:.1}, p90 {p90:.1})", f / 1e9);
        }
        println!("{line}");
    }
}
