//! Our own format: save a model (safetensors + config.json) and load it back to the same function.

use burn::tensor::{Distribution, Tensor};
use engine::checkpoint::{load_sae, save_sae};
use engine::model::decoder::DecoderConfig;
use engine::model::sae::{DinoSae, SaeConfig};
use engine::model::vit::{Family, Ffn, VitConfig};
use engine::tensor_file::{Precision, RawTensor};

fn tiny() -> SaeConfig {
    let encoder = VitConfig {
        family: Family::Dinov2,
        dim: 64,
        depth: 2,
        heads: 2,
        ffn: Ffn::Mlp,
        ffn_hidden: 128,
        registers: 0,
        patch_size: 14,
        layer_norm_eps: 1e-6,
        layerscale: true,
        qkv_bias: true,
        rope_base: 100.0,
        pos_grid: 4,
        pos_antialias: false,
        pos_offset: 0.0,
    };
    let mut decoder = DecoderConfig::small(64);
    decoder.width_list = vec![8, 16, 32, 64, 64];
    decoder.depth_list = vec![1, 1, 1, 1, 1];
    SaeConfig { encoder, decoder, pixels: Default::default(), embed: Default::default() }
}

#[test]
fn save_then_load_gives_the_same_model() {
    let device = engine::cpu();
    let cfg = tiny();
    let (m, report) = DinoSae::random(&cfg, 42, &device).expect("random");
    assert!(report.random);
    let dir = std::env::temp_dir().join(format!("dino-sae-rt-{}", std::process::id()));
    save_sae(&m, &dir, Precision::F32).expect("save");
    let loaded = load_sae(&dir, &device, false).expect("load");
    assert!(loaded.report.is_complete() && loaded.report.unexpected.is_empty(), "{}", loaded.report.summary(10));
    assert_eq!(loaded.model.cfg, cfg);
    let x = Tensor::<4>::random([2, 3, 48, 80], Distribution::Normal(0.0, 1.0), &device);
    let a = m.encode(x.clone()).expect("a");
    let b = loaded.model.encode(x).expect("b");
    assert_eq!(a.grid(), (3, 5));
    assert_eq!(RawTensor::from_tensor(a.patches.clone()).expect("d"), RawTensor::from_tensor(b.patches).expect("d"));
    let ra = RawTensor::from_tensor(m.decode(a.patches.clone()).expect("dec")).expect("d");
    let rb = RawTensor::from_tensor(loaded.model.decode(a.patches).expect("dec")).expect("d");
    assert_eq!(ra.shape, vec![2, 3, 48, 80]);
    assert_eq!(ra, rb);
    // f16 storage: same function within half precision
    save_sae(&m, dir.join("f16"), Precision::F16).expect("save f16");
    let h = load_sae(dir.join("f16"), &device, false).expect("load f16");
    let x = Tensor::<4>::ones([1, 3, 32, 32], &device);
    let za = RawTensor::from_tensor(m.encode(x.clone()).expect("e").patches).expect("d");
    let zb = RawTensor::from_tensor(h.model.encode(x).expect("e").patches).expect("d");
    let err = za.data.iter().zip(&zb.data).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
    assert!(err < 2e-2 && err > 0.0, "f16 error {err}");
}
