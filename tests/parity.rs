//! Parity with the PyTorch reference outputs in tests/fixtures (see tests/fixtures/PROVENANCE.md).
//! Tolerance: max|err| <= 1e-4 * max(1, max|ref|) (2e-4 where bicubic interpolation is involved), per tensor.

use std::path::PathBuf;

use engine::verify::verify_dir;

fn fixtures(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn assert_all_ok(report: &engine::verify::Report, required: &[&str]) {
    let unexpected: Vec<String> = report.unexpected_skips().iter().map(|(k, why)| format!("{k}: {why}")).collect();
    assert!(unexpected.is_empty(), "reference tensors not compared:\n{}", unexpected.join("\n"));
    let fails: Vec<String> =
        report.failures().iter().map(|c| format!("{} err {:.3e} ref {:.3e}", c.name, c.max_abs, c.ref_max)).collect();
    assert!(fails.is_empty(), "failed checks:\n{}", fails.join("\n"));
    for r in required {
        assert!(
            report.get(r).is_some(),
            "required check `{r}` did not run; ran: {:?}",
            report.checks.iter().map(|c| &c.name).collect::<Vec<_>>()
        );
    }
}

#[test]
fn dinov3_sae_and_sphere_fixtures_match() {
    let report = verify_dir(fixtures("dinosae-setA"), &engine::cpu()).expect("fixture runs");
    assert_all_ok(
        &report,
        &[
            // DINOv3, HF naming and official naming, per-block states, RoPE tables
            "dinov3/hf:last_hidden_state",
            "dinov3/hf:prenorm",
            "dinov3/hf:hidden_states.1",
            "dinov3/hf:layer0.attn.q_rope",
            "dinov3/hf:rope_sin",
            "dinov3/hf:rope_cos",
            "dinov3/official:last_hidden_state",
            "dinov3/official:pooler_output",
            "dinov3/official(.pth):last_hidden_state",
            // stem, decoder (ResBlock + ConvPixelShuffle), full chain
            "sae:stem.cnn.0_out",
            "sae:stem_out_nhwc",
            "sae:patch_tokens",
            "sae:decoder.stages.4_out",
            "sae:recon",
            // float64 sphere references
            "sphere(f64):r1.slerp",
            "sphere(f64):r8.log_x0_x1",
            "sphere(f64):r8.euler_proj_step",
        ],
    );
    assert!(report.checks.len() >= 80, "only {} checks ran", report.checks.len());
}

#[test]
fn dinov2_evit_and_chain_fixtures_match() {
    let report = verify_dir(fixtures("dinov2-evit-setA"), &engine::cpu()).expect("fixture runs");
    assert_all_ok(
        &report,
        &[
            // DINOv2: interpolation without antialias, the official +0.1 variant, registers with antialias
            "dinov2:pos_embed_interp",
            "dinov2:last_hidden_state",
            "dinov2:pos_embed_interp_official_offset0.1",
            "dinov2:last_hidden_state_official_offset0.1",
            "dinov2_reg:last_hidden_state",
            "dinov2_reg:extra.pos_embed_interp",
            "dinov2_reg:extra.last_hidden_state",
            // EViT_GLU decoder: linear and quadratic attention branches
            "decoder:evit.stages.0.op_list.0.attn_out_pre_proj",
            "decoder:output",
            "decoder:small.output",
            // stem on DINOv2 vs the teacher
            "chain:stem_out_nhwc",
            "chain:student_last_hidden_state",
            "chain:teacher_pixel_values",
            "chain:teacher_last_hidden_state",
            "chain:cos_patch",
            "chain:recon",
        ],
    );
}

/// The checks can fail: the wrong interpolation kernel (antialias flipped) is caught by a wide margin.
#[test]
fn wrong_interpolation_variant_is_detected() {
    use burn::tensor::Tensor;
    use engine::model::nn::Probe;
    use engine::tensor_file::{RawTensor, read_safetensors};
    let dir = fixtures("dinov2-evit-setA/dinov2");
    let io = read_safetensors(dir.join("io.safetensors")).expect("io");
    let device = engine::cpu();
    let mut loaded = engine::checkpoint::load_backbone(dir.join("hf"), &device, false).expect("load");
    loaded.model.pos.as_mut().expect("pos").antialias = true;
    let x: Tensor<4> = io["pixel_values"].to_tensor(&device).expect("x");
    let mut probe = Probe::on();
    let _ = loaded.model.forward(x, &mut probe);
    let ours: &RawTensor = &probe.out["pos_embed_interp"];
    let reference = &io["pos_embed_interp"];
    let err = ours.data.iter().zip(&reference.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(err > 0.1, "antialiased table should differ from HF Dinov2Model's by > 0.1, got {err}");
}

/// `a` equals the reference `b` to 1e-5 * max(1, max|b|), with the same shape.
fn assert_close(a: burn::tensor::Tensor<4>, b: burn::tensor::Tensor<4>, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}");
    let a = a.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
    let b = b.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(err <= 1e-5 * scale, "{what}: max err {err:e} (scale {scale})");
}

/// The fast paths of the CPU engine (folded upsample-convolution, 1x1 convolution as a matrix product) against
/// their definitions written with burn's plain ops: nearest x2 then a 3x3 convolution, and a 1x1 convolution.
/// Odd, non-square sizes; tolerance 1e-5 * max(1, max|ref|) (float reassociation only).
#[test]
fn fast_paths_equal_their_definitions() {
    use burn::module::Param;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Distribution, Tensor};
    use engine::model::nn::{Conv2d, nearest_up2};
    let device = engine::cpu();
    for (c_in, c_out, h, w, bias) in [(3, 5, 5, 7, true), (8, 4, 1, 3, false), (16, 3, 6, 6, true)] {
        let x = Tensor::<4>::random([2, c_in, h, w], Distribution::Normal(0.0, 1.0), &device);
        let wt = Tensor::<4>::random([c_out, c_in, 3, 3], Distribution::Normal(0.0, 0.3), &device);
        let b = bias.then(|| Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device));
        let conv = Conv2d {
            weight: Param::from_tensor(wt.clone()),
            bias: b.clone().map(Param::from_tensor),
            stride: 1,
            padding: 1,
            groups: 1,
        };
        let want = conv2d(nearest_up2(x.clone()), wt, b, ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
        assert_close(conv.forward_up2(x), want, &format!("upsample-conv {c_in}->{c_out} at {h}x{w}"));
    }
    for (c_in, c_out, h, w) in [(7, 5, 3, 4), (32, 96, 8, 8)] {
        let x = Tensor::<4>::random([2, c_in, h, w], Distribution::Normal(0.0, 1.0), &device);
        let wt = Tensor::<4>::random([c_out, c_in, 1, 1], Distribution::Normal(0.0, 0.3), &device);
        let b = Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device);
        let conv = Conv2d {
            weight: Param::from_tensor(wt.clone()),
            bias: Some(Param::from_tensor(b.clone())),
            stride: 1,
            padding: 0,
            groups: 1,
        };
        let want = conv2d(x.clone(), wt, Some(b), ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
        assert_close(conv.forward(x), want, &format!("conv1x1 {c_in}->{c_out}"));
    }
}

/// The host paths of the CPU engine (engine::model::host) against burn's own ops on the same device: convolutions
/// lowered to matrix products in both layouts (pixels as rows when C_out <= 128 and C_in >= 8, channels as rows
/// otherwise), banded into several chunks and whole, strides 1-2, kernels 2-7, batch 2, odd non-square maps; the
/// folded upsample-convolution with and without bias; SiLU and exact GELU. Tolerance 1e-5 * max(1, max|ref|)
/// (reassociation and the activations' polynomial approximations, <= 3e-7 relative, only).
#[test]
fn host_paths_equal_burns_ops() {
    use burn::module::Param;
    use burn::tensor::activation::{gelu, silu};
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Distribution, Tensor};
    use engine::model::host;
    use engine::model::nn::{Conv2d, nearest_up2};
    let device = engine::cpu();
    assert!(host::eligible(&Tensor::<1>::zeros([1], &device)), "CPU inference tensors take the host paths");
    assert!(!host::eligible(&Tensor::<1>::zeros([1], &device.clone().autodiff())), "autodiff tensors never do");
    // (c_in, c_out, h, w, k, stride, pad): both layouts, stem-like strided kernels, 2x2 kernels of the folded upsample
    let cases = [
        (16, 12, 9, 13, 3, 1, 1),
        (5, 140, 7, 6, 3, 1, 1),
        (3, 8, 17, 11, 7, 2, 3),
        (12, 20, 10, 9, 3, 2, 1),
        (9, 6, 5, 8, 2, 1, 1),
        (4, 3, 3, 3, 3, 1, 0),
    ];
    for (c_in, c_out, h, w, k, stride, pad) in cases {
        let x = Tensor::<4>::random([2, c_in, h, w], Distribution::Normal(0.0, 1.0), &device);
        let wt = Tensor::<4>::random([c_out, c_in, k, k], Distribution::Normal(0.0, 0.3), &device);
        let b = Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device);
        let want = conv2d(x.clone(), wt.clone(), Some(b.clone()), ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1));
        let g = host::conv_geom(&x, &wt, stride, pad).expect("host geometry");
        let layout = if host::pixels_as_rows(c_in, c_out) { "pixels as rows" } else { "channels as rows" };
        for budget in [1, c_in * k * k * w * 2, usize::MAX / 4] {
            let got = host::conv2d_banded(x.clone(), wt.clone(), Some(b.clone()), g, budget);
            assert_close(
                got,
                want.clone(),
                &format!("conv {c_in}->{c_out} k{k} s{stride} p{pad} at {h}x{w}, {layout}, budget {budget}"),
            );
        }
        // batch 1, no bias (the single-band shortcut of the channels-as-rows form)
        let x1 = x.clone().narrow(0, 0, 1);
        let want1 = conv2d(x1.clone(), wt.clone(), None, ConvOptions::new([stride; 2], [pad; 2], [1, 1], 1));
        assert_close(host::conv2d(x1, wt, None, g), want1, &format!("conv {c_in}->{c_out} k{k}, batch 1, no bias"));
    }
    for (c_in, c_out, h, w, bias) in [(7, 5, 5, 9, true), (130, 3, 3, 2, false)] {
        let x = Tensor::<4>::random([2, c_in, h, w], Distribution::Normal(0.0, 1.0), &device);
        let wt = Tensor::<4>::random([c_out, c_in, 3, 3], Distribution::Normal(0.0, 0.3), &device);
        let b = bias.then(|| Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device));
        let want = conv2d(nearest_up2(x.clone()), wt.clone(), b.clone(), ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
        let conv = Conv2d {
            weight: Param::from_tensor(wt),
            bias: b.map(Param::from_tensor),
            stride: 1,
            padding: 1,
            groups: 1,
        };
        assert_close(conv.forward_up2(x), want, &format!("host upsample-conv {c_in}->{c_out} at {h}x{w}"));
    }
    let x = Tensor::<4>::random([2, 3, 50, 77], Distribution::Normal(0.0, 4.0), &device);
    assert_close(host::silu(x.clone()), silu(x.clone()), "SiLU");
    assert_close(host::gelu(x.clone()), gelu(x), "GELU");
    let nan = Tensor::<4>::from_floats([[[[f32::NAN, 1.0]]]], &device);
    assert!(host::silu(nan.clone()).into_data().iter::<f32>().next().is_some_and(f32::is_nan), "NaN stays NaN");
    assert!(host::gelu(nan).into_data().iter::<f32>().next().is_some_and(f32::is_nan), "NaN stays NaN");
}

/// Inputs of the reference runs (fed to our code, not outputs to compare), by key without its `extra.` / `small.` /
/// `rN.` prefix: images and their preprocessing source, latents, DiT inputs and labels, the sphere formulas'
/// operands, the flow-matching draws.
const REFERENCE_INPUTS: &[&str] = &[
    "pixel_values",
    "input_image_u8",
    "latent",
    "x",
    "y",
    "t",
    "cfg_x",
    "cfg_y",
    "cfg_t",
    "cfg_scale",
    "x0",
    "x1",
    "v",
    "dt",
    "radius",
    "a",
    "e",
    "lam",
    "logitnormal_draw",
    "shift_t_base",
    "z",
    "x0_noise",
    "x1_data",
];

/// Every tensor of every reference file of every fixture set (found by listing the folders, independently of the
/// verifier's own bookkeeping) is the subject of a check that ran, an input, or on the verifier's allow-list: a
/// renamed probe key or a new reference tensor cannot shrink the parity check silently. Weights files are inputs.
#[test]
fn every_reference_tensor_of_every_fixture_set_is_checked() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let mut sets: Vec<(PathBuf, engine::verify::Report)> = std::fs::read_dir(&root)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("README.md").exists())
        // folders of other kinds (lpips, teacher) have no layout verify-fixture knows
        .filter_map(|p| verify_dir(&p, &engine::cpu()).ok().map(|r| (p, r)))
        .collect();
    sets.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(sets.len() >= 9, "fixture sets found: {:?}", sets.iter().map(|s| &s.0).collect::<Vec<_>>());
    fn files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else if p.extension().is_some_and(|x| x == "safetensors") {
                out.push(p);
            }
        }
    }
    let weights = ["model.safetensors", "state_dict.safetensors", "stem.safetensors"];
    let mut total = 0;
    for (set, report) in &sets {
        assert!(
            report.ok(),
            "{}: failures {:?}, unexpected skips {:?}",
            set.display(),
            report.failures(),
            report.unexpected_skips()
        );
        let checked: std::collections::BTreeSet<String> = report
            .checks
            .iter()
            .filter_map(|c| c.name.split_once(':').map(|(_, k)| k.split(" (").next().unwrap_or(k).to_string()))
            .collect();
        let mut refs = Vec::new();
        files(set, &mut refs);
        for f in refs.iter().filter(|f| !weights.iter().any(|w| f.ends_with(w))) {
            for key in engine::tensor_file::read_safetensors(f).expect("reference file").keys() {
                total += 1;
                let bare = key.strip_prefix("extra.").or_else(|| key.strip_prefix("small.")).unwrap_or(key);
                let bare = match bare.split_once('.') {
                    Some((r, rest)) if r.starts_with('r') && r[1..].parse::<u32>().is_ok() => rest,
                    _ => bare,
                };
                let covered = checked.contains(key.as_str())
                    || REFERENCE_INPUTS.contains(&bare)
                    || report
                        .skipped
                        .iter()
                        .any(|(k, _)| k.ends_with(&format!(":{key}")) && engine::verify::allowed_skip(k).is_some());
                assert!(covered, "{}: `{key}` is neither checked, an input, nor allowed to be skipped", f.display());
            }
        }
    }
    assert!(total > 400, "only {total} reference tensors found");
}
