//! shaders/heatmap.wgsl rendered through wgpu (Mesa lavapipe works without a GPU) equals the CPU reference
//! `heatmap::blend` pixel by pixel, within 1 level of 255 (float vs. rounding order), nearest and bilinear.

use std::sync::Arc;

use dino_sae_studio::gpu_heatmap::{HeatmapJob, render_offscreen};
use dino_sae_studio::heatmap::blend;
use eframe::egui_wgpu::wgpu;

fn device() -> (wgpu::Device, wgpu::Queue, String) {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
        .expect("no wgpu adapter: install mesa-vulkan-drivers (scripts/setup.sh --gui)");
    let name = adapter.get_info().name;
    let (d, q) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).expect("device");
    (d, q, name)
}

#[test]
fn wgsl_heatmap_matches_the_cpu_reference() {
    let (d, q, name) = device();
    let base =
        image::RgbImage::from_fn(67, 45, |x, y| image::Rgb([(x * 3) as u8, (y * 5) as u8, ((x * y) % 251) as u8]));
    let grid = (3, 5);
    let values: Vec<f32> = (0..15).map(|i| (i as f32 * 0.37).sin() * 2.0).collect();
    for bilinear in [false, true] {
        for opacity in [0.0, 0.6, 1.0] {
            let job = HeatmapJob {
                base: Arc::new(base.clone()),
                values: Arc::new(values.clone()),
                grid,
                vmin: -1.5,
                vmax: 1.8,
                opacity,
                bilinear,
                version: 1,
                rect_px: ([0.0, 0.0], [67.0, 45.0]),
            };
            let gpu = render_offscreen(&d, &q, &job, wgpu::TextureFormat::Rgba8Unorm).expect("render");
            // an sRGB target (what eframe often uses) must show the same values
            let gpu_srgb = render_offscreen(&d, &q, &job, wgpu::TextureFormat::Rgba8UnormSrgb).expect("render srgb");
            let cpu = blend(&base, &values, grid, -1.5, 1.8, opacity, bilinear);
            let worst =
                gpu.as_raw().iter().zip(cpu.as_raw()).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap_or(0);
            assert!(worst <= 1, "{name}: bilinear={bilinear} opacity={opacity}: worst channel difference {worst}");
            let worst_srgb = gpu_srgb
                .as_raw()
                .iter()
                .zip(cpu.as_raw())
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .max()
                .unwrap_or(0);
            assert!(worst_srgb <= 1, "{name}: sRGB target: worst channel difference {worst_srgb}");
        }
    }
}
