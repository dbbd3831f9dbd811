//! Times the parts of encode/decode for the small preset (developer tool).
use burn::tensor::{Distribution, Tensor};
use engine::model::nn::Probe;
use engine::model::sae::{DinoSae, SaeConfig};
use std::time::Instant;

fn main() {
    let device = engine::cpu();
    let (m, _) = DinoSae::random(&SaeConfig::small_dinov2(), 0, &device).expect("model");
    let x = Tensor::<4>::random([1, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
    let t = |name: &str, f: &dyn Fn()| {
        f();
        let s = Instant::now();
        for _ in 0..3 {
            f();
        }
        println!("{name:<12} {:.1} ms", s.elapsed().as_secs_f64() * 1e3 / 3.0);
    };
    let patch_embed_ref = &m.encoder.patch_embed;
    t("stem", &|| {
        let _ = patch_embed_ref.forward(x.clone(), &mut Probe::default()).into_data();
    });
    let (tok, _) = m.encoder.embed(x.clone(), &mut Probe::default());
    t("block", &|| {
        let _ = m.encoder.blocks[0].forward(tok.clone(), None, 1, &mut Probe::default(), "b").into_data();
    });
    let a = Tensor::<3>::random([1, 197, 384], Distribution::Normal(0.0, 1.0), &device);
    let w = Tensor::<2>::random([384, 1536], Distribution::Normal(0.0, 1.0), &device);
    t("matmul fc1", &|| {
        let _ = a.clone().matmul(w.clone().unsqueeze::<3>()).into_data();
    });
    t("linear fc1", &|| {
        let _ = burn::tensor::module::linear(a.clone(), w.clone(), None).into_data();
    });
    let s = Tensor::<4>::random([1, 6, 197, 197], Distribution::Normal(0.0, 1.0), &device);
    t("softmax", &|| {
        let _ = burn::tensor::activation::softmax(s.clone(), 3).into_data();
    });
    t("gelu", &|| {
        let _ = burn::tensor::activation::gelu(Tensor::<3>::random(
            [1, 197, 1536],
            Distribution::Normal(0.0, 1.0),
            &device,
        ))
        .into_data();
    });
    let z = m.encode(x.clone()).expect("enc").patches;
    t("decode", &|| {
        let _ = m.decode(z.clone()).expect("d").into_data();
    });
}
