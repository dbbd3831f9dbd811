//! Times the preview-decoder presets (random weights) at 256x256 and 512x512 on the CPU device, with their FLOPs
//! and sizes: the measurement behind the default preset (docs/PERFORMANCE.md). `preview_designs [repeats]`.

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use engine::model::preview::{PRESETS, PreviewConfig, PreviewDecoder};

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(9);
    let device = engine::cpu();
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
            let _ = m.forward(z.clone()).into_data();
            let mut v: Vec<f64> = (0..repeats)
                .map(|_| {
                    let t = Instant::now();
                    let _ = m.forward(z.clone()).into_data();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            v.sort_by(f64::total_cmp);
            let f = engine::flops::preview(&cfg, g, g);
            line += &format!(
                " | {size}: {:.3} GFLOP, median {:.1} ms (p10 {:.1}, p90 {:.1})",
                f / 1e9,
                v[v.len() / 2],
                v[v.len() / 10],
                v[v.len() * 9 / 10]
            );
        }
        println!("{line}");
    }
}
