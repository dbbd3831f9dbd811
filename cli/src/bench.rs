//! `bench`: time encode, decode, the preview decoder, a steer preview, a DiT step and 25-step sampling; `--profile`
//! adds per-layer timings.

use std::time::Instant;

use anyhow::{Context, Result};
use engine::checkpoint::load_sae;
use engine::model::sae::{DinoSae, SaeConfig};

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long, default_value = "small")]
    preset: String,
    /// cpu, wgpu or auto (wgpu on a hardware GPU, else cpu).
    #[arg(long, default_value = "cpu")]
    backend: String,
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    #[arg(long, default_value_t = 256)]
    size: usize,
    #[arg(long)]
    json: bool,
    /// Also time every decoder layer, the encoder's parts and plain matrix products (medians of the repeats).
    #[arg(long)]
    profile: bool,
}

pub fn run(a: BenchArgs) -> Result<()> {
    bench(&a.preset, &a.backend, a.repeats, a.size, a.json)?;
    if a.profile {
        profile_all(&a.preset, a.repeats, a.size)?;
    }
    Ok(())
}

fn bench(preset: &str, backend: &str, repeats: usize, size: usize, json: bool) -> Result<()> {
    let backend_choice: engine::backend::BackendChoice = backend.parse()?;
    let backend = engine::backend::Backend::select(backend_choice)?;
    let device = backend.device.clone();
    let tag = backend.tag();
    if !json {
        println!("backend: {backend}");
    }
    // `default`: the embedded default model (and its generator); else a random-weight preset.
    let (m, dit) = if preset == "default" {
        let dir = engine::worker::require_default_model_dir()?;
        let m = load_sae(&dir, &device, false)?.model;
        let dit = engine::worker::default_dit_dir().map(|d| engine::generate::load_dit(&d, &device)).transpose()?;
        (m, dit)
    } else {
        let cfg =
            SaeConfig::preset(preset).with_context(|| format!("unknown preset {preset} (default, small, released)"))?;
        (DinoSae::random(&cfg, 0, &device)?.0, None)
    };
    let x =
        burn::tensor::Tensor::<4>::random([1, 3, size, size], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let g = size / 16;
    let times = |name: &str, flops: Option<f64>, f: &mut dyn FnMut()| {
        f(); // warm-up
        let mut v: Vec<f64> = (0..repeats.max(1))
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        let rss = engine::flops::peak_rss_mb();
        let name = format!("{name}_{preset}");
        if json {
            let num = |x: Option<f64>| x.map(|v| format!("{v:.1}")).unwrap_or_else(|| "null".into());
            println!(
                "{{\"name\":\"{name}\",\"backend\":\"{tag}\",\"median_ms\":{:.3},\"p10_ms\":{:.3},\"p90_ms\":{:.3},\"flops\":{},\"peak_rss_mb\":{}}}",
                q(0.5),
                q(0.1),
                q(0.9),
                num(flops),
                num(rss)
            );
        } else {
            let rate = flops
                .map(|f| format!(", {:.2} GFLOP -> {:.1} GFLOP/s", f / 1e9, f / 1e9 / (q(0.5) / 1e3)))
                .unwrap_or_default();
            println!(
                "{name:<24} median {:.1} ms (p10 {:.1}, p90 {:.1}, n={}){rate}, peak RSS {:.0} MiB",
                q(0.5),
                q(0.1),
                q(0.9),
                v.len(),
                rss.unwrap_or(f64::NAN)
            );
        }
    };
    let fe = match m.cfg.embed {
        engine::model::sae::EmbedKind::Stem => engine::flops::encoder(&m.cfg.encoder, size, size, true),
        // the resized patchify sees (size/16 * p) pixels
        engine::model::sae::EmbedKind::Patchify => {
            let s = size / 16 * m.cfg.encoder.patch_size;
            engine::flops::encoder(&m.cfg.encoder, s, s, false)
        }
    };
    let fd = engine::flops::decoder(&m.cfg.decoder, g, g);
    let lat = m.encode(x.clone())?;
    times(&format!("encode_{size}"), Some(fe), &mut || {
        let l = m.encode(x.clone()).expect("encode");
        let _ = l.patches.into_data();
    });
    times(&format!("decode_{size}"), Some(fd), &mut || {
        let y = m.decode(lat.patches.clone()).expect("decode");
        let _ = y.into_data();
    });
    // the preview decoder (issue 17): the default model's shipped one, else the `small` preset at random weights
    let preview = match engine::model::preview::default_preview_dir().filter(|_| preset == "default") {
        Some(d) => engine::model::preview::PreviewDecoder::load(&d, &device)?.0,
        None => {
            let cfg = engine::model::preview::PreviewConfig::preset("small", m.cfg.decoder.latent_channels)?;
            engine::model::preview::PreviewDecoder::random(&cfg, 0, &device)?.0
        }
    };
    let mut psizes = vec![size];
    if size != 512 {
        psizes.push(512);
    }
    for ps in psizes {
        let pg = ps / 16;
        let zp = burn::tensor::Tensor::<4>::random(
            [1, m.cfg.decoder.latent_channels, pg, pg],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        times(&format!("preview_{ps}"), Some(engine::flops::preview(&preview.cfg, pg, pg)), &mut || {
            let _ = preview.forward(zp.clone()).into_data();
        });
    }
    // steer command -> preview image event, through the studio's engine thread (its own overhead included)
    steer_preview_row(preset, backend_choice, size, &preview, &times)?;
    if let Some(b) = &dit {
        // At the generator's training grid, and at the bench size (the DiT rebuilds its tables per grid).
        let mut grids = vec![b.meta.grid];
        if b.meta.grid != [g, g] {
            grids.push([g, g]);
        }
        for grid in grids {
            let px = 16 * grid[0];
            let ff = engine::flops::dit_step(&b.model.cfg, grid[0], grid[1]);
            let z = burn::tensor::Tensor::<4>::random(
                [1, b.meta.channels, grid[0], grid[1]],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let t = burn::tensor::Tensor::<1>::from_floats([0.5f32].as_slice(), &device);
            let y = burn::tensor::Tensor::<1, burn::tensor::Int>::from_ints([0i64].as_slice(), &device);
            times(&format!("dit_step_{px}"), Some(ff), &mut || {
                let v = b.model.forward(z.clone(), t.clone(), y.clone(), &mut engine::model::nn::Probe::default());
                let _ = v.into_data();
            });
            let spec = engine::generate::SampleSpec { steps: 25, count: 1, grid: Some(grid), ..Default::default() };
            let fdec = engine::flops::decoder(&m.cfg.decoder, grid[0], grid[1]);
            times(&format!("sample25_{px}"), Some(25.0 * ff + fdec), &mut || {
                let z = engine::generate::sample_latents(b, &spec).expect("sample");
                let y = m.decode(z).expect("decode");
                let _ = y.into_data();
            });
        }
    }
    Ok(())
}

/// Times one benchmark row: name, FLOPs of one call (if known), the call.
type TimeRow<'a> = dyn Fn(&str, Option<f64>, &mut dyn FnMut()) + 'a;

/// `steer_preview_{size}`: the time from a steer command to the preview image event in the worker (the studio's
/// engine thread: queue, edit on the sphere, preview decode, image conversion, PSNR), on a `size x size` image.
fn steer_preview_row(
    preset: &str,
    choice: engine::backend::BackendChoice,
    size: usize,
    preview: &engine::model::preview::PreviewDecoder,
    times: &TimeRow<'_>,
) -> Result<()> {
    use engine::worker::{Event, Job, ModelSource, Ticket, Worker};
    let w = Worker::spawn_on(choice, || {});
    let wait = |w: &Worker| -> Result<Event> {
        loop {
            match w.recv_timeout(std::time::Duration::from_secs(600)).context("the engine thread stopped answering")? {
                Event::BackendReady(_) | Event::Progress(_) => continue,
                Event::Failed(f) if f.id.is_none() => continue,
                Event::Failed(f) => anyhow::bail!("steer bench: {}", f.error),
                e => return Ok(e),
            }
        }
    };
    let src = if preset == "default" { ModelSource::Default } else { ModelSource::RandomPreset(preset.to_string()) };
    w.submit(Ticket::new(1), Job::LoadModel(src));
    let Event::Loaded(l) = wait(&w)? else { anyhow::bail!("steer bench: model not loaded") };
    let tmp = std::env::temp_dir().join(format!("dino-sae-bench-preview-{}", std::process::id()));
    if l.models.preview.is_none() {
        preview.save(&tmp, engine::raw::Precision::F32, 0, "")?;
        w.submit(Ticket::new(2), Job::LoadPreview(tmp.clone()));
        wait(&w)?;
    }
    let img = image::RgbImage::from_fn(size as u32, size as u32, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x ^ y) % 256) as u8])
    });
    w.submit(Ticket::new(3), Job::Reconstruct { image: img, fit: engine::image_io::Fit::Crop });
    wait(&w)?;
    let mut id = 10;
    times(
        &format!("steer_preview_{size}"),
        Some(engine::flops::preview(&preview.cfg, size / 16, size / 16)),
        &mut || {
            id += 1;
            let edit = engine::steer::SteerEdit { angle_deg: (id % 90) as f32, ..Default::default() };
            w.submit(Ticket::new(id), Job::SteerPreview { edit });
            let _ = wait(&w).expect("steer preview");
        },
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Timings by name over repeated passes; the first pass is a warm-up and is not recorded. Each timed call reads
/// one element of its result, so the work is finished when the clock stops.
struct Stopwatch {
    rows: Vec<(String, Vec<f64>)>,
    pass: usize,
    k: usize,
}

impl Stopwatch {
    fn new() -> Self {
        Self { rows: Vec::new(), pass: 0, k: 0 }
    }

    /// Start pass `pass` (0 = warm-up).
    fn start_pass(&mut self, pass: usize) {
        self.pass = pass;
        self.k = 0;
    }

    fn time<const D: usize>(
        &mut self,
        name: impl Into<String>,
        f: impl FnOnce() -> burn::tensor::Tensor<D>,
    ) -> burn::tensor::Tensor<D> {
        let t0 = Instant::now();
        let y = f();
        let _ = y.clone().flatten::<1>(0, D - 1).slice(0..1).into_data();
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if self.pass > 0 {
            if self.rows.len() <= self.k {
                self.rows.push((name.into(), Vec::new()));
            }
            self.rows[self.k].1.push(ms);
        }
        self.k += 1;
        y
    }

    fn medians(&self) -> Vec<(&str, f64)> {
        self.rows.iter().map(|(n, v)| (n.as_str(), median_ms(&mut v.clone()))).collect()
    }
}

/// Where the time of an encode and a decode goes (CPU, medians of `repeats`): every decoder layer, the parts of
/// an EViT_GLU block, the encoder's stem and one block split into its parts, and plain matrix products.
fn profile_all(preset: &str, repeats: usize, size: usize) -> Result<()> {
    let device = engine::cpu();
    let m = if preset == "default" {
        load_sae(&engine::worker::require_default_model_dir()?, &device, false)?.model
    } else {
        DinoSae::random(&SaeConfig::preset(preset).with_context(|| format!("unknown preset {preset}"))?, 0, &device)?.0
    };
    profile_decoder(&m, repeats, size, &device);
    profile_encoder(&m, repeats, size, &device);
    profile_matmul(repeats, &device);
    Ok(())
}

fn profile_decoder(m: &DinoSae, repeats: usize, size: usize, device: &burn::tensor::Device) {
    use burn::tensor::activation::relu;
    use engine::model::decoder::{DecBlock, OutHead};
    use engine::model::host::silu;
    use engine::model::nn::Probe;
    let d = &m.decoder;
    let g = size / 16;
    let z = burn::tensor::Tensor::<4>::random(
        [1, m.cfg.decoder.latent_channels, g, g],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    );
    let mut sw = Stopwatch::new();
    // the inside of the first EViT_GLU block of each stage that has one: (title, timings)
    let mut evit: Vec<(String, Stopwatch)> = Vec::new();
    for pass in 0..=repeats.max(1) {
        sw.start_pass(pass);
        let mut ei = 0;
        let mut x = sw.time("project_in", || d.project_in.forward(z.clone()));
        for (ki, st) in d.stages.iter().enumerate() {
            if let Some(up) = &st.up {
                let dims = x.dims();
                x = sw.time(format!("stages.{ki} upsample {}x{} -> x2", dims[1], dims[2]), || up.forward(x.clone()));
            }
            if let Some(DecBlock::Evit(e)) = st.blocks.first() {
                let dims = x.dims();
                if pass == 0 {
                    evit.push((
                        format!("inside stages.{ki}.0 EViT_GLU {}ch {}x{}", dims[1], dims[2], dims[3]),
                        Stopwatch::new(),
                    ));
                }
                let e_sw = &mut evit[ei].1;
                ei += 1;
                e_sw.start_pass(pass);
                let _ = e_sw.time("qkv conv1x1", || e.qkv.forward(x.clone()));
                let att = e_sw.time("attention (incl. qkv)", || e.attention(x.clone(), &mut Probe::default(), ""));
                let p = e_sw.time("proj conv1x1", || e.proj.forward(att));
                let x2 = x.clone() + p;
                let inv = e_sw.time("inverted conv1x1 + silu", || silu(e.inverted.forward(x2)));
                let y = e_sw.time("depthwise conv3x3", || e.depth.forward(inv));
                let mid = y.dims()[1] / 2;
                let gated = e_sw.time("GLU gate", || y.clone().narrow(1, 0, mid) * silu(y.clone().narrow(1, mid, mid)));
                let _ = e_sw.time("point conv1x1", || e.point.forward(gated));
            }
            for (j, b) in st.blocks.iter().enumerate() {
                let dims = x.dims();
                let what = match b {
                    DecBlock::Res(_) => "ResBlock",
                    DecBlock::Evit(_) => "EViT_GLU",
                };
                x = sw.time(format!("stages.{ki}.{j} {what} {}ch {}x{}", dims[1], dims[2], dims[3]), || match b {
                    DecBlock::Res(r) => r.forward(x.clone()),
                    DecBlock::Evit(e) => e.forward(x.clone(), &mut Probe::default(), ""),
                });
            }
        }
        x = sw.time("out norm + relu", || relu(d.out_norm.forward(x.clone())));
        let _ = sw.time("project_out", || match &d.out {
            OutHead::Conv(c) => c.forward(x.clone()),
            OutHead::Up(u) => u.forward(x.clone()),
        });
    }
    let rows = sw.medians();
    let total: f64 = rows.iter().map(|(_, v)| v).sum();
    println!("decoder layers at {size}x{size} (median of {repeats}), total {total:.1} ms:");
    for (name, v) in &rows {
        println!("  {name:<44} {v:>8.1} ms  {:>5.1}%", 100.0 * v / total);
    }
    for (title, e_sw) in &evit {
        println!("  {title}:");
        for (name, v) in e_sw.medians() {
            println!("    {name:<42} {v:>8.1} ms");
        }
    }
}

fn profile_encoder(m: &DinoSae, repeats: usize, size: usize, device: &burn::tensor::Device) {
    use burn::tensor::activation::softmax;
    use engine::model::host::gelu;
    use engine::model::nn::Probe;
    use engine::model::vit::FeedForward;
    let enc = &m.encoder;
    let x = burn::tensor::Tensor::<4>::random([1, 3, size, size], burn::tensor::Distribution::Normal(0.0, 1.0), device);
    let mut sw = Stopwatch::new();
    for pass in 0..=repeats.max(1) {
        sw.start_pass(pass);
        let (tokens, (gh, gw)) = enc.embed(x.clone(), &mut Probe::default());
        let _ = sw.time("embed (stem + position table)", || enc.embed(x.clone(), &mut Probe::default()).0);
        if let Some(pos) = &enc.pos {
            let _ = sw.time("  position table for the grid", || pos.for_grid(gh, gw));
        }
        let _ = sw.time("all blocks", || {
            let mut t = tokens.clone();
            for b in &enc.blocks {
                t = b.forward(t, None, enc.cfg.n_prefix(), &mut Probe::default(), "");
            }
            t
        });
        let b0 = &enc.blocks[0];
        let [bb, t, d] = tokens.dims();
        let (hh, dh) = (b0.attn.heads, d / b0.attn.heads);
        let n1 = sw.time("  block: norm1", || b0.norm1.forward(tokens.clone()));
        let qkv = sw.time("  block: qkv", || b0.attn.qkv.forward(n1.clone()));
        let _ = sw.time("  block: attention core (heads split, softmax, matmuls, merge)", || {
            let q5 = qkv.reshape([bb, t, 3, hh, dh]).permute([2, 0, 3, 1, 4]);
            let q = q5.clone().narrow(0, 0, 1).reshape([bb, hh, t, dh]);
            let k = q5.clone().narrow(0, 1, 1).reshape([bb, hh, t, dh]);
            let v = q5.narrow(0, 2, 1).reshape([bb, hh, t, dh]);
            let a = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (dh as f64).sqrt()), 3).matmul(v);
            a.swap_dims(1, 2).reshape([bb, t, d])
        });
        if let FeedForward::Mlp(mlp) = &b0.mlp {
            let hdn = sw.time("  block: fc1", || mlp.fc1.forward(n1.clone()));
            let g = sw.time("  block: exact GELU", || gelu(hdn));
            let _ = sw.time("  block: fc2", || mlp.fc2.forward(g));
        }
    }
    println!("encoder at {size}x{size}:");
    for (name, v) in sw.medians() {
        println!("  {name:<62} {v:>8.2} ms");
    }
}

/// Matrix products of the ViT-S blocks' shapes, issued as `linear` on `[1, T, d]` and as a plain 2-D product.
fn profile_matmul(repeats: usize, device: &burn::tensor::Device) {
    use burn::tensor::{Distribution, Tensor, module::linear};
    let t = 257;
    for (din, dout) in [(384usize, 1152usize), (384, 1536), (1536, 384)] {
        let x3 = Tensor::<3>::random([1, t, din], Distribution::Normal(0.0, 1.0), device);
        let w = Tensor::<2>::random([din, dout], Distribution::Normal(0.0, 1.0), device);
        let b = Tensor::<1>::random([dout], Distribution::Normal(0.0, 1.0), device);
        let x2 = x3.clone().reshape([t, din]);
        let mut sw = Stopwatch::new();
        for pass in 0..=repeats.max(3) {
            sw.start_pass(pass);
            let _ = sw.time("linear 3-D", || linear(x3.clone(), w.clone(), Some(b.clone())));
            let _ = sw.time("plain 2-D", || x2.clone().matmul(w.clone()));
        }
        let gf = 2.0 * (t * din * dout) as f64 / 1e9;
        let line: Vec<String> =
            sw.medians().iter().map(|(n, ms)| format!("{n} {ms:.2} ms ({:.0} GFLOP/s)", gf / ms * 1e3)).collect();
        println!("  matmul {t}x{din} @ {din}x{dout}: {}", line.join(", "));
    }
}

fn median_ms(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
