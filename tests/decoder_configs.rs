//! Every kind of DC-AE decoder configuration the official `DCAE_Decoder` builds (empty first / last / middle
//! stages, ConvPixelShuffle and InterpolateConv, duplicating / InterpolateConv / no shortcuts, in_shortcut null,
//! upsample_match_channel false, mixed ResBlock / EViT_GLU, per-stage norms and activations), against reference
//! outputs of the official code (`tests/fixtures/decoder-configs-*`, made by `scripts/make_decoder_fixtures.py`).
//!
//! 1. each set passes `engine::verify::verify_dir` (the code of `dino-sae verify-fixture`);
//! 2. the config inferred from the state dict's keys alone decodes the references too (except the set whose
//!    activations are not the defaults: activations leave no keys; there the keys must still fix every shape);
//! 3. an official DINO-SAE state dict (`dino_model.*` of `dinosae-setA` + each decoder under `decoder.`) loads
//!    through `load_sae` (keys alone, or with the official `config.json` beside it), decodes the references, and
//!    `dino-sae inspect-checkpoint` / `dino-sae reconstruct -m` accept it.

use std::path::PathBuf;
use std::process::Command;

use engine::checkpoint::{guess_decoder, load_sae};
use engine::model::decoder::{Decoder, DecoderConfig};
use engine::model::nn::Probe;
use engine::tensor_file::{Precision, RawTensor, TensorMap, read_safetensors, write_safetensors};
use engine::verify::{TOL, verify_dir};
use engine::weights::WeightSource;

/// (set name, whether its activations are the defaults, so that the keys alone decode it)
const SETS: [(&str, bool); 6] = [
    ("empty-first", true),
    ("empty-last", true),
    ("both-empty-interp-shortcut", true),
    ("nomatch-noshortcut", true),
    ("empty-middle-6stage", true),
    ("acts-norms", false),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn set_dir(name: &str) -> PathBuf {
    root().join(format!("tests/fixtures/decoder-configs-{name}"))
}

fn official_config(name: &str) -> DecoderConfig {
    let p = set_dir(name).join("decoder/config.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).expect("config.json")).expect("json");
    serde_json::from_value(v["decoder_config"].clone()).expect("decoder_config parses")
}

/// `max|ours - ref|` and the allowed `TOL * max(1, max|ref|)`.
fn err(ours: &RawTensor, reference: &RawTensor) -> (f64, f64) {
    assert_eq!(ours.shape, reference.shape);
    let e = ours.data.iter().zip(&reference.data).map(|(a, b)| (*a as f64 - *b as f64).abs()).fold(0.0, f64::max);
    (e, TOL * (reference.max_abs() as f64).max(1.0))
}

/// Decode every `latent` / `small.latent` of the set's io with `decode` and compare with the reference output.
fn check_outputs(name: &str, what: &str, mut decode: impl FnMut(&RawTensor) -> RawTensor) -> f64 {
    let io = read_safetensors(set_dir(name).join("decoder/io.safetensors")).expect("io");
    let mut worst: f64 = 0.0;
    for prefix in ["", "small."] {
        let z = &io[&format!("{prefix}latent")];
        let (e, tol) = err(&decode(z), &io[&format!("{prefix}output")]);
        assert!(e <= tol, "{name} ({what}) {prefix}output: max err {e:.3e} > {tol:.3e}");
        worst = worst.max(e);
    }
    worst
}

#[test]
fn every_decoder_config_set_passes_verify_fixture() {
    let device = engine::cpu();
    for (name, _) in SETS {
        let report = verify_dir(set_dir(name), &device).unwrap_or_else(|e| panic!("{name}: {e}"));
        let worst = report.checks.iter().map(|c| c.max_abs).fold(0.0, f64::max);
        println!("{name}: {} checks, worst max err {worst:.2e}, {} skipped", report.checks.len(), report.skipped.len());
        for (k, why) in &report.skipped {
            println!("  skipped {k}: {why}");
        }
        assert!(report.ok(), "{name}: {:?}", report.failures());
        // every reference tensor was compared (intermediates included)
        assert!(report.skipped.is_empty(), "{name}: {:?}", report.skipped);
    }
}

#[test]
fn configs_inferred_from_keys_alone_decode_the_references() {
    let device = engine::cpu();
    for (name, default_acts) in SETS {
        let t = read_safetensors(set_dir(name).join("decoder/model.safetensors")).expect("weights");
        let guessed = guess_decoder(&t, "").unwrap_or_else(|e| panic!("{name}: {e}"));
        let official = official_config(name);
        assert_eq!(guessed.upsampling(), official.upsampling(), "{name}: {guessed:?}");
        assert_eq!(guessed.latent_channels, official.latent_channels, "{name}");
        assert_eq!(guessed.in_channels, official.in_channels, "{name}");
        // the key inference finds the norms even where the activations are not in the keys
        let norms = |c: &DecoderConfig| {
            (0..c.stages())
                .filter(|&i| c.depth_list[i] > 0)
                .map(|i| (c.block_of(i), c.norm_of(i).map(str::to_string)))
                .collect::<Vec<_>>()
        };
        assert_eq!(norms(&guessed), norms(&official), "{name}");
        assert_eq!(guessed.out_norm, official.out_norm, "{name}");
        let mut ws = WeightSource::from_map(t.clone(), &device);
        let dec = Decoder::load(&mut ws, "", &guessed).unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = ws.finish();
        assert!(report.is_complete(), "{name}: the guessed config must use every key: {}", report.summary(8));
        if !default_acts {
            continue;
        }
        let worst = check_outputs(name, "keys alone", |z| {
            RawTensor::from_tensor(dec.forward(z.to_tensor(&device).expect("latent"), &mut Probe::default()))
                .expect("out")
        });
        println!("{name}: keys alone -> {guessed:?}\n  worst output err {worst:.2e}");
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dino-sae-decoder-configs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// `dinosae-setA`'s backbone (`dino_model.*`, stem included, width 64) + the set's decoder under `decoder.`,
/// written as an official DINO-SAE state dict; with `with_config`, the official config.json beside it.
fn official_sae(name: &str, with_config: bool) -> PathBuf {
    let sae_dir = root().join("tests/fixtures/dinosae-setA/sae");
    let mut t: TensorMap = read_safetensors(sae_dir.join("model.safetensors"))
        .expect("setA")
        .into_iter()
        .filter(|(k, _)| k.starts_with("dino_model."))
        .collect();
    for (k, v) in read_safetensors(set_dir(name).join("decoder/model.safetensors")).expect("decoder") {
        t.insert(format!("decoder.{k}"), v);
    }
    let dir = tmp(name);
    write_safetensors(dir.join("model.safetensors"), &t, &Default::default(), Precision::F32).expect("write");
    if with_config {
        let mut cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(sae_dir.join("config.json")).expect("config")).expect("json");
        let dec: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(set_dir(name).join("decoder/config.json")).expect("decoder config"),
        )
        .expect("json");
        cfg["decoder_config"] = dec["decoder_config"].clone();
        std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg).expect("json")).expect("write");
    }
    dir
}

fn run_cli(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_dino-sae")).args(args).output().expect("run dino-sae");
    let text = format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

#[test]
fn official_sae_state_dicts_with_every_decoder_config_load_and_reconstruct() {
    let device = engine::cpu();
    let image = root().join("assets/samples/chelsea.png");
    for (name, default_acts) in SETS {
        // keys alone where they suffice; the official config.json beside the weights where they do not
        for with_config in [false, true] {
            if !default_acts && !with_config {
                continue;
            }
            let dir = official_sae(name, with_config);
            let path = dir.join("model.safetensors");
            let what =
                if with_config { "official state dict + config.json" } else { "official state dict, keys alone" };
            let loaded = load_sae(&path, &device, false).unwrap_or_else(|e| panic!("{name} ({what}): {e}"));
            assert!(loaded.report.is_complete(), "{name}: {}", loaded.report.summary(8));
            let m = &loaded.model;
            let worst = check_outputs(name, what, |z| {
                RawTensor::from_tensor(m.decode(z.to_tensor(&device).expect("latent")).expect("decode")).expect("out")
            });
            println!("{name} ({what}): worst output err {worst:.2e}");

            let (ok, text) = run_cli(&["inspect-checkpoint".as_ref(), path.as_os_str()]);
            assert!(ok && text.contains("DINO-SAE"), "{name} ({what}) inspect-checkpoint:\n{text}");
            assert!(!text.contains("upsamples x"), "{text}");
            let out = dir.join("recon.png");
            let (ok, text) = run_cli(&[
                "reconstruct".as_ref(),
                image.as_os_str(),
                "-m".as_ref(),
                path.as_os_str(),
                "-o".as_ref(),
                out.as_os_str(),
            ]);
            assert!(ok, "{name} ({what}) reconstruct -m:\n{text}");
            let img = image::open(&out).expect("reconstruction written");
            assert_eq!((img.width(), img.height()), (448, 288), "{name}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[test]
fn the_bare_decoder_state_dicts_are_recognised() {
    for (name, _) in SETS {
        let src = engine::checkpoint::read(set_dir(name).join("decoder/model.safetensors")).expect("read");
        assert_eq!(src.format, engine::checkpoint::Format::Decoder, "{name}");
    }
}

/// Opt-in sweep over many random configurations (`cargo test --workspace --test decoder_configs -- --ignored`
/// with `DINO_SAE_DECODER_SWEEP` naming a folder of sets made by
/// `scripts/make_decoder_fixtures.py --random N --out DIR`): each passes `verify_dir`, its keys alone give a config
/// that uses every key, and, where its activations are the defaults the keys imply, decodes the references.
#[test]
#[ignore]
fn random_configuration_sweep() {
    let Some(dir) = std::env::var_os("DINO_SAE_DECODER_SWEEP") else {
        println!("DINO_SAE_DECODER_SWEEP not set: nothing to sweep");
        return;
    };
    let device = engine::cpu();
    let mut sets: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("sweep folder").filter_map(|e| e.ok().map(|e| e.path())).collect();
    sets.sort();
    let (mut verified, mut decoded) = (0, 0);
    for set in &sets {
        let name = set.display().to_string();
        let report = verify_dir(set, &device).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(report.ok() && report.skipped.is_empty(), "{name}: {:?} {:?}", report.failures(), report.skipped);
        verified += 1;
        let t = read_safetensors(set.join("decoder/model.safetensors")).expect("weights");
        let guessed = guess_decoder(&t, "").unwrap_or_else(|e| panic!("{name}: {e}"));
        let cfg = std::fs::read_to_string(set.join("decoder/config.json")).expect("config");
        let v: serde_json::Value = serde_json::from_str(&cfg).expect("json");
        let official: DecoderConfig = serde_json::from_value(v["decoder_config"].clone()).expect("config");
        let mut ws = WeightSource::from_map(t, &device);
        let dec = Decoder::load(&mut ws, "", &guessed).unwrap_or_else(|e| panic!("{name}: {e}"));
        let rep = ws.finish();
        assert!(rep.is_complete(), "{name}: {}\n{guessed:?}", rep.summary(8));
        let used = |c: &DecoderConfig| {
            (0..c.stages())
                .filter(|&i| c.depth_list[i] > 0)
                .map(|i| c.act_of(i).map(str::to_string))
                .collect::<Vec<_>>()
        };
        if used(&guessed) != used(&official) || guessed.out_act != official.out_act {
            continue;
        }
        let io = read_safetensors(set.join("decoder/io.safetensors")).expect("io");
        for prefix in ["", "small."] {
            let z = io[&format!("{prefix}latent")].to_tensor(&device).expect("latent");
            let ours = RawTensor::from_tensor(dec.forward(z, &mut Probe::default())).expect("out");
            let (e, tol) = err(&ours, &io[&format!("{prefix}output")]);
            assert!(e <= tol, "{name} (keys alone) {prefix}output: {e:.3e} > {tol:.3e}\n{guessed:?}");
        }
        decoded += 1;
    }
    println!("{verified} sets verified, {decoded} decoded from their keys alone");
}
