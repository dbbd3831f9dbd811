//! Parity with the PyTorch reference outputs in tests/fixtures (see tests/fixtures/PROVENANCE.md).
//! Tolerance: max|err| <= 1e-4 * max(1, max|ref|) (2e-4 where bicubic interpolation is involved), per tensor.

use std::path::PathBuf;

use engine::fixture::verify_dir;

fn fixtures(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

fn assert_all_ok(report: &engine::fixture::Report, required: &[&str]) {
    let fails: Vec<String> = report.failures().iter().map(|c| format!("{} err {:.3e} ref {:.3e}", c.name, c.max_abs, c.ref_max)).collect();
    assert!(fails.is_empty(), "failed checks:\n{}", fails.join("\n"));
    for r in required {
        assert!(report.get(r).is_some(), "required check `{r}` did not run; ran: {:?}", report.checks.iter().map(|c| &c.name).collect::<Vec<_>>());
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
    use engine::raw::{read_safetensors, RawTensor};
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

/// The fast paths of the CPU engine (folded upsample-convolution, 1x1 convolution as a matrix product) against
/// their definitions written with burn's plain ops: nearest x2 then a 3x3 convolution, and a 1x1 convolution.
/// Odd, non-square sizes; tolerance 1e-5 * max(1, max|ref|) (float reassociation only).
#[test]
fn fast_paths_equal_their_definitions() {
    use burn::module::Param;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Distribution, Tensor};
    use engine::model::nn::{nearest_up2, Conv2d};
    let device = engine::cpu();
    let close = |a: Tensor<4>, b: Tensor<4>, what: &str| {
        assert_eq!(a.dims(), b.dims(), "{what}");
        let a = a.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
        let b = b.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let err = a.iter().zip(&b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(err <= 1e-5 * scale, "{what}: max err {err:e} (scale {scale})");
    };
    for (c_in, c_out, h, w, bias) in [(3, 5, 5, 7, true), (8, 4, 1, 3, false), (16, 3, 6, 6, true)] {
        let x = Tensor::<4>::random([2, c_in, h, w], Distribution::Normal(0.0, 1.0), &device);
        let wt = Tensor::<4>::random([c_out, c_in, 3, 3], Distribution::Normal(0.0, 0.3), &device);
        let b = bias.then(|| Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device));
        let conv = Conv2d { weight: Param::from_tensor(wt.clone()), bias: b.clone().map(Param::from_tensor), stride: 1, padding: 1, groups: 1 };
        let want = conv2d(nearest_up2(x.clone()), wt, b, ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
        close(conv.forward_up2(x), want, &format!("upsample-conv {c_in}->{c_out} at {h}x{w}"));
    }
    for (c_in, c_out, h, w) in [(7, 5, 3, 4), (32, 96, 8, 8)] {
        let x = Tensor::<4>::random([2, c_in, h, w], Distribution::Normal(0.0, 1.0), &device);
        let wt = Tensor::<4>::random([c_out, c_in, 1, 1], Distribution::Normal(0.0, 0.3), &device);
        let b = Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device);
        let conv = Conv2d { weight: Param::from_tensor(wt.clone()), bias: Some(Param::from_tensor(b.clone())), stride: 1, padding: 0, groups: 1 };
        let want = conv2d(x.clone(), wt, Some(b), ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
        close(conv.forward(x), want, &format!("conv1x1 {c_in}->{c_out}"));
    }
}
