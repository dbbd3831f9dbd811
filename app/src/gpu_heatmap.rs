//! GPU heatmap overlay: `shaders/heatmap.wgsl` through wgpu, offscreen (tests) or as an egui_wgpu paint callback
//! (the app, when eframe runs on wgpu). The CPU path (`heatmap::blend`) is the reference and the fallback.

use std::sync::Arc;

use eframe::egui_wgpu::{self, wgpu};
use wgpu::util::DeviceExt;

pub const SHADER: &str = include_str!("../../shaders/heatmap.wgsl");

/// What to draw.
#[derive(Clone, Debug)]
pub struct HeatmapJob {
    pub base: Arc<image::RgbImage>,
    pub values: Arc<Vec<f32>>,
    pub grid: (usize, usize),
    pub vmin: f32,
    pub vmax: f32,
    pub opacity: f32,
    pub bilinear: bool,
    /// Bumped whenever base or values change (resources are re-uploaded then).
    pub version: u64,
    /// Where the image is drawn, in framebuffer pixels (min, size); (0,0),(w,h) offscreen.
    pub rect_px: ([f32; 2], [f32; 2]),
}

fn params_bytes(job: &HeatmapJob, rect_min: [f32; 2], rect_size: [f32; 2], srgb: bool) -> Vec<u8> {
    let (w, h) = job.base.dimensions();
    let mut b = Vec::with_capacity(48);
    for u in [job.grid.0 as u32, job.grid.1 as u32, h, w] {
        b.extend(u.to_le_bytes());
    }
    for f in [rect_min[0], rect_min[1], rect_size[0], rect_size[1], job.vmin, job.vmax, job.opacity] {
        b.extend(f.to_le_bytes());
    }
    b.extend(u32::from(job.bilinear).to_le_bytes());
    for u in [u32::from(srgb), 0, 0, 0] {
        b.extend(u.to_le_bytes());
    }
    b
}

/// Pipeline and bind group layout for one colour format.
pub struct HeatmapPipeline {
    pub pipeline: wgpu::RenderPipeline,
    pub layout: wgpu::BindGroupLayout,
    pub srgb: bool,
}

impl HeatmapPipeline {
    pub fn new(device: &wgpu::Device, format: wgpu::TextureFormat) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("heatmap.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let tex = |binding| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Texture {
                sample_type: wgpu::TextureSampleType::Float { filterable: false },
                view_dimension: wgpu::TextureViewDimension::D2,
                multisampled: false,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("heatmap"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::FRAGMENT,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                tex(1),
                tex(2),
            ],
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("heatmap"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("heatmap"),
            layout: Some(&pl),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState { format, blend: None, write_mask: wgpu::ColorWrites::ALL })],
            }),
            multiview_mask: None,
            cache: None,
        });
        Self { pipeline, layout, srgb: format.is_srgb() }
    }

    /// Upload the job's textures and parameters; returns the bind group and its uniform buffer.
    pub fn bind(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        job: &HeatmapJob,
        rect_min: [f32; 2],
        rect_size: [f32; 2],
    ) -> (wgpu::BindGroup, wgpu::Buffer) {
        let (w, h) = job.base.dimensions();
        let rgba: Vec<u8> = job.base.pixels().flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        let size = wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 };
        let base = device.create_texture_with_data(
            queue,
            &wgpu::TextureDescriptor {
                label: Some("heatmap base"),
                size,
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba8Unorm,
                usage: wgpu::TextureUsages::TEXTURE_BINDING,
                view_formats: &[],
            },
            wgpu::util::TextureDataOrder::LayerMajor,
            &rgba,
        );
        let vals: Vec<u8> = job.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let values = device.create_texture_with_data(
            queue,
            &wgpu::TextureDescriptor {
                label: Some("heatmap values"),
                size: wgpu::Extent3d { width: job.grid.1 as u32, height: job.grid.0 as u32, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::R32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING,
                view_formats: &[],
            },
            wgpu::util::TextureDataOrder::LayerMajor,
            &vals,
        );
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("heatmap params"),
            contents: &params_bytes(job, rect_min, rect_size, self.srgb),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        });
        let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("heatmap"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: wgpu::BindingResource::TextureView(&base.create_view(&Default::default())),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::TextureView(&values.create_view(&Default::default())),
                },
            ],
        });
        (bg, uniform)
    }
}

/// Render a job offscreen at the base image's size and read it back (RGB).
pub fn render_offscreen(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    job: &HeatmapJob,
    format: wgpu::TextureFormat,
) -> Result<image::RgbImage, String> {
    let (w, h) = job.base.dimensions();
    let pipe = HeatmapPipeline::new(device, format);
    let (bg, _u) = pipe.bind(device, queue, job, job.rect_px.0, job.rect_px.1);
    let target = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("heatmap target"),
        size: wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let view = target.create_view(&Default::default());
    let row = (w * 4).div_ceil(256) * 256;
    let buf = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: (row * h) as u64,
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut enc = device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_render_pass(&wgpu::RenderPassDescriptor {
            label: Some("heatmap"),
            color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                view: &view,
                depth_slice: None,
                resolve_target: None,
                ops: wgpu::Operations { load: wgpu::LoadOp::Clear(wgpu::Color::BLACK), store: wgpu::StoreOp::Store },
            })],
            depth_stencil_attachment: None,
            timestamp_writes: None,
            occlusion_query_set: None,
            multiview_mask: None,
        });
        pass.set_pipeline(&pipe.pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.draw(0..3, 0..1);
    }
    enc.copy_texture_to_buffer(
        wgpu::TexelCopyTextureInfo {
            texture: &target,
            mip_level: 0,
            origin: wgpu::Origin3d::ZERO,
            aspect: wgpu::TextureAspect::All,
        },
        wgpu::TexelCopyBufferInfo {
            buffer: &buf,
            layout: wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(row), rows_per_image: Some(h) },
        },
        wgpu::Extent3d { width: w, height: h, depth_or_array_layers: 1 },
    );
    queue.submit([enc.finish()]);
    let slice = buf.slice(..);
    slice.map_async(wgpu::MapMode::Read, |_| {});
    let _ = device.poll(wgpu::PollType::wait_indefinitely());
    let data = slice.get_mapped_range().map_err(|e| format!("reading the rendered image back: {e:?}"))?;
    let mut out = image::RgbImage::new(w, h);
    for y in 0..h {
        for x in 0..w {
            let i = (y * row + x * 4) as usize;
            out.put_pixel(x, y, image::Rgb([data[i], data[i + 1], data[i + 2]]));
        }
    }
    Ok(out)
}

/// Per-frame resources kept in egui_wgpu's callback resources.
pub struct HeatmapResources {
    pub pipeline: HeatmapPipeline,
    pub bound: Option<(u64, wgpu::BindGroup, wgpu::Buffer)>,
}

/// An egui paint callback drawing a job into its rect.
pub struct HeatmapCallback(pub HeatmapJob);

impl egui_wgpu::CallbackTrait for HeatmapCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &egui_wgpu::ScreenDescriptor,
        _enc: &mut wgpu::CommandEncoder,
        res: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(r) = res.get_mut::<HeatmapResources>() {
            let fresh = r.bound.as_ref().is_some_and(|(v, _, _)| *v == self.0.version);
            if !fresh {
                let (bg, u) = r.pipeline.bind(device, queue, &self.0, self.0.rect_px.0, self.0.rect_px.1);
                r.bound = Some((self.0.version, bg, u));
            } else if let Some((_, _, u)) = &r.bound {
                // the rect (layout, opacity) may change every frame: rewrite the parameters only
                queue.write_buffer(u, 0, &params_bytes(&self.0, self.0.rect_px.0, self.0.rect_px.1, r.pipeline.srgb));
            }
        }
        Vec::new()
    }

    fn paint(
        &self,
        info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        res: &egui_wgpu::CallbackResources,
    ) {
        let Some(r) = res.get::<HeatmapResources>() else { return };
        let Some((_, bg, _)) = &r.bound else { return };
        let _ = info;
        pass.set_pipeline(&r.pipeline.pipeline);
        pass.set_bind_group(0, bg, &[]);
        pass.draw(0..3, 0..1);
    }
}
