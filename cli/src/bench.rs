//! `bench`: time encode, decode, the preview decoder, a steer preview, a DiT step and 25-step sampling; `--profile`
//! adds per-layer timings.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::ValueEnum;
use engine::checkpoint::load_sae;
use engine::model::sae::DinoSae;

use crate::args::{BackendArg, SaePreset, value_name};
use crate::progress::Progress;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The model timed: the embedded default model (with its generator and preview decoder), or a
    /// random-weight preset.
    #[arg(long, value_enum, default_value_t)]
    preset: BenchPreset,
    /// Where it runs (auto: wgpu on a hardware GPU, else the CPU).
    #[arg(long, value_enum, default_value_t)]
    backend: BackendArg,
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

/// What `bench` times.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BenchPreset {
    /// The embedded default model, its generator and its preview decoder.
    #[default]
    Default,
    /// Random weights of the `small` preset.
    Small,
    /// Random weights of the released model's architecture.
    Released,
}

impl BenchPreset {
    /// The random-weight preset, none for the default model.
    fn random(self) -> Option<SaePreset> {
        match self {
            BenchPreset::Default => None,
            BenchPreset::Small => Some(SaePreset::Small),
            BenchPreset::Released => Some(SaePreset::Released),
        }
    }
}

pub fn run(a: BenchArgs) -> Result<()> {
    bench(a.preset, a.backend, a.repeats, a.size, a.json)?;
    if a.profile {
        profile_all(a.preset, a.repeats, a.size)?;
    }
    Ok(())
}

/// The autoencoder of `preset` on `device`, and the default model's generator with the default model.
fn load_models(
    preset: BenchPreset,
    device: &burn::tensor::Device,
    say: bool,
) -> Result<(DinoSae, Option<engine::generate::DitBundle>)> {
    match preset.random() {
        None => {
            let dir = engine::dirs::require_default_model_dir()?;
            if say {
                println!("model: the default model ({})", dir.display());
            }
            let m = load_sae(&dir, device, false).with_context(|| format!("loading {}", dir.display()))?.model;
            let dit = engine::dirs::default_dit_dir().map(|d| engine::generate::load_dit(&d, device)).transpose()?;
            Ok((m, dit))
        }
        Some(p) => {
            if say {
                println!("model: RANDOM weights of the {} preset", value_name(&p));
            }
            Ok((DinoSae::random(&p.config(), 0, device)?.0, None))
        }
    }
}

fn bench(preset: BenchPreset, backend: BackendArg, repeats: usize, size: usize, json: bool) -> Result<()> {
    let backend_choice: engine::backend::BackendChoice = backend.into();
    let backend = engine::backend::Backend::select(backend_choice)?;
    let device = backend.device.clone();
    let tag = backend.tag();
    if !json {
        println!("backend: {backend}");
    }
    let (m, dit) = load_models(preset, &device, !json)?;
    let preset_name = value_name(&preset);
    let x =
        burn::tensor::Tensor::<4>::random([1, 3, size, size], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let g = size / 16;
    let times = |name: &str, flops: Option<f64>, f: &mut dyn FnMut()| {
        let mut bar = Progress::terminal_only(format!("{name}_{preset_name}"), repeats.max(1) + 1);
        f(); // warm-up
        bar.set(1, "warm-up");
        let mut v: Vec<f64> = (0..repeats.max(1))
            .map(|k| {
                let t = Instant::now();
                f();
                bar.set(k + 2, "");
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        bar.clear();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        let rss = engine::flops::peak_rss_mb();
        let name = format!("{name}_{preset_name}");
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
    let fe = engine::flops::sae_encoder(&m.cfg, size, size);
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
    let preview = match engine::model::preview::default_preview_dir().filter(|_| preset == BenchPreset::Default) {
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
    preset: BenchPreset,
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
    let src = match preset.random() {
        None => ModelSource::Default,
        Some(p) => ModelSource::RandomPreset(value_name(&p)),
    };
    w.submit(Ticket::new(1), Job::LoadModel(src));
    let Event::Loaded(l) = wait(&w)? else { anyhow::bail!("steer bench: model not loaded") };
    let tmp = std::env::temp_dir().join(format!("dino-sae-bench-preview-{}", std::process::id()));
    if l.models.preview.is_none() {
        preview.save(&tmp, engine::tensor_file::Precision::F32, 0, "")?;
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

/// Where the time of an encode and a decode goes (CPU, medians of `repeats`): the forwards timed between their
/// own probe points (engine::model::nn::time_parts), and plain matrix products of the ViT-S blocks' shapes.
fn profile_all(preset: BenchPreset, repeats: usize, size: usize) -> Result<()> {
    use burn::tensor::{Distribution, Tensor};
    use engine::model::nn::time_parts;
    let device = engine::cpu();
    let m = load_models(preset, &device, false)?.0;
    let g = size / 16;
    let z = Tensor::<4>::random([1, m.cfg.decoder.latent_channels, g, g], Distribution::Normal(0.0, 1.0), &device);
    let rows = time_parts(repeats, |p| {
        let y = m.decoder.forward(z.clone(), p);
        p.mark("project_out", &y);
    });
    print_parts(&format!("decoder at {size}x{size} (median of {repeats})"), &rows);
    let x = Tensor::<4>::random([1, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
    let rows = time_parts(repeats, |p| {
        if let Ok(out) = m.encode_full(x.clone(), p) {
            p.mark("end", &out.normed);
        }
    });
    print_parts(&format!("encoder at {size}x{size} (median of {repeats}), every block"), &by_block_part(&rows));
    profile_matmul(repeats, &device);
    Ok(())
}

/// Timed parts with their share of the total.
fn print_parts(title: &str, rows: &[(String, Vec<usize>, f64)]) {
    let total: f64 = rows.iter().map(|r| r.2).sum();
    println!("{title}, total {total:.1} ms (each part: the time since the previous probe point):");
    for (name, shape, ms) in rows {
        println!("  {name:<44} {:<18} {ms:>8.2} ms  {:>5.1}%", format!("{shape:?}"), 100.0 * ms / total.max(1e-9));
    }
}

/// Encoder parts summed over its blocks: `layer7.attn.sdpa_out` counts as `layer*.attn.sdpa_out`; other points
/// (stem, norms) stay as they are.
fn by_block_part(rows: &[(String, Vec<usize>, f64)]) -> Vec<(String, Vec<usize>, f64)> {
    let mut out: Vec<(String, Vec<usize>, f64)> = Vec::new();
    for (name, shape, ms) in rows {
        let key = match name.strip_prefix("layer").and_then(|r| r.split_once('.')) {
            Some((i, rest)) if i.chars().all(|c| c.is_ascii_digit()) => format!("layer*.{rest}"),
            _ if name.starts_with("hidden_states.") => "layer*.residual_out".to_string(),
            _ => name.clone(),
        };
        match out.iter_mut().find(|r| r.0 == key) {
            Some(r) => r.2 += ms,
            None => out.push((key, shape.clone(), *ms)),
        }
    }
    out
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
        let rows = engine::model::nn::time_parts(repeats.max(3), |p| {
            p.mark("start", &x2);
            let y = linear(x3.clone(), w.clone(), Some(b.clone()));
            p.mark("linear 3-D", &y);
            let y = x2.clone().matmul(w.clone());
            p.mark("plain 2-D", &y);
        });
        let gf = 2.0 * (t * din * dout) as f64 / 1e9;
        let line: Vec<String> =
            rows.iter().skip(1).map(|(n, _, ms)| format!("{n} {ms:.2} ms ({:.0} GFLOP/s)", gf / ms * 1e3)).collect();
        println!("  matmul {t}x{din} @ {din}x{dout}: {}", line.join(", "));
    }
}
