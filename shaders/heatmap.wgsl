// Per-patch heatmap over an image: value -> colormap (the same 5 stops as app/src/heatmap.rs), blended over the
// base image with an opacity, nearest or bilinear upsampling of the patch grid.
// Drawn as one full-viewport triangle; `rect` maps framebuffer pixels to the image.

struct Params {
    grid: vec2<u32>,      // (h, w) of the patch grid
    img: vec2<u32>,       // (h, w) of the base image in texels
    rect_min: vec2<f32>,  // framebuffer position of the image's top-left corner (pixels)
    rect_size: vec2<f32>, // framebuffer size of the drawn image (pixels)
    vmin: f32,
    vmax: f32,
    opacity: f32,
    bilinear: u32,
    // 1 when the render target is an sRGB format: the output is converted to linear so the target's
    // encoding restores the sRGB values the CPU path produces.
    srgb_target: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
};

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var base: texture_2d<f32>;
@group(0) @binding(2) var values: texture_2d<f32>;

@vertex
fn vs_main(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    let x = f32((i << 1u) & 2u) * 2.0 - 1.0;
    let y = f32(i & 2u) * 2.0 - 1.0;
    return vec4<f32>(x, y, 0.0, 1.0);
}

fn colormap(t_in: f32) -> vec3<f32> {
    let stops = array<vec3<f32>, 5>(
        vec3<f32>(0.267, 0.005, 0.329),
        vec3<f32>(0.229, 0.322, 0.546),
        vec3<f32>(0.128, 0.567, 0.551),
        vec3<f32>(0.369, 0.789, 0.383),
        vec3<f32>(0.993, 0.906, 0.144),
    );
    let t = clamp(t_in, 0.0, 1.0);
    let x = t * 4.0;
    let i = min(u32(floor(x)), 3u);
    let f = x - f32(i);
    return stops[i] * (1.0 - f) + stops[i + 1u] * f;
}

fn value_at(gy: i32, gx: i32) -> f32 {
    let y = clamp(gy, 0, i32(params.grid.x) - 1);
    let x = clamp(gx, 0, i32(params.grid.y) - 1);
    return textureLoad(values, vec2<i32>(x, y), 0).r;
}

@fragment
fn fs_main(@builtin(position) pos: vec4<f32>) -> @location(0) vec4<f32> {
    let uv = (pos.xy - params.rect_min) / params.rect_size;
    if (uv.x < 0.0 || uv.y < 0.0 || uv.x >= 1.0 || uv.y >= 1.0) {
        discard;
    }
    let px = min(u32(floor(uv.x * f32(params.img.y))), params.img.y - 1u);
    let py = min(u32(floor(uv.y * f32(params.img.x))), params.img.x - 1u);
    var v: f32;
    if (params.bilinear == 0u) {
        let gy = min(py * params.grid.x / params.img.x, params.grid.x - 1u);
        let gx = min(px * params.grid.y / params.img.y, params.grid.y - 1u);
        v = value_at(i32(gy), i32(gx));
    } else {
        // sample position in grid cells, cell centres at +0.5, clamped at the borders
        let sy = (f32(py) + 0.5) * f32(params.grid.x) / f32(params.img.x) - 0.5;
        let sx = (f32(px) + 0.5) * f32(params.grid.y) / f32(params.img.y) - 0.5;
        let y0 = floor(sy);
        let x0 = floor(sx);
        let fy = sy - y0;
        let fx = sx - x0;
        let a = value_at(i32(y0), i32(x0)) * (1.0 - fx) + value_at(i32(y0), i32(x0) + 1) * fx;
        let b = value_at(i32(y0) + 1, i32(x0)) * (1.0 - fx) + value_at(i32(y0) + 1, i32(x0) + 1) * fx;
        v = a * (1.0 - fy) + b * fy;
    }
    let t = (v - params.vmin) / max(params.vmax - params.vmin, 1e-12);
    let c = colormap(t);
    let b0 = textureLoad(base, vec2<i32>(i32(px), i32(py)), 0).rgb;
    var out = b0 * (1.0 - params.opacity) + c * params.opacity;
    if (params.srgb_target == 1u) {
        let lo = out / 12.92;
        let hi = pow((out + 0.055) / 1.055, vec3<f32>(2.4));
        out = select(hi, lo, out <= vec3<f32>(0.04045));
    }
    return vec4<f32>(out, 1.0);
}
