//! The memory preflight against measured peak RSS: for a few shapes of encode, decode and reconstruct on the
//! default model and the fixture model, `dino-sae preflight --measure` runs the job in a process of its own
//! (peak RSS reset through /proc/self/clear_refs after the model is loaded) and reports the increase of the
//! peak next to the estimate. The estimate must never be below the measured increase and within a factor of 2
//! of it. Plus the refusals: what the preflight names as fitting does fit.

use std::path::PathBuf;
use std::process::Command;

use engine::model::sae::SaeConfig;
use engine::preflight::{self, Budget};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Measured {
    estimate: f64,
    measured: f64,
    reset: bool,
    seconds: f64,
}

fn num(json: &str, key: &str) -> Option<f64> {
    let rest = json.split(&format!("\"{key}\":")).nth(1)?;
    rest.split([',', '}']).next()?.trim().parse().ok()
}

fn measure(model: &std::path::Path, op: &str, w: usize, h: usize) -> Measured {
    let o = Command::new(env!("CARGO_BIN_EXE_dino-sae"))
        .args(["preflight", "--measure", "--json", "--op", op, "--size", &format!("{w}x{h}"), "-m"])
        .arg(model)
        .env("DINO_SAE_MEMORY_BUDGET", "16GiB")
        .output()
        .expect("run dino-sae preflight");
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{op} {w}x{h}: {out}\n{err}");
    let line = out.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON line: {out}"));
    Measured {
        estimate: num(line, "estimate_bytes").expect("estimate"),
        measured: num(line, "measured_bytes").expect("measured"),
        reset: line.contains("\"hwm_reset\":true"),
        seconds: num(line, "seconds").unwrap_or(0.0),
    }
}

#[test]
fn estimates_bound_the_measured_peak_within_a_factor_of_2() {
    let default = root().join("assets/default-model");
    let fixture = root().join("tests/fixtures/dinosae-setA/sae");
    let shapes: [(&PathBuf, &str, &str, usize, usize); 7] = [
        (&default, "default", "encode", 256, 256),
        (&default, "default", "encode", 512, 384),
        (&default, "default", "decode", 256, 256),
        (&default, "default", "decode", 512, 512),
        (&default, "default", "reconstruct", 384, 384),
        (&fixture, "fixture", "encode", 1024, 1024),
        (&fixture, "fixture", "decode", 1024, 768),
    ];
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for (model, name, op, w, h) in shapes {
        let m = measure(model, op, w, h);
        let ratio = m.estimate / m.measured.max(1.0);
        rows.push(format!(
            "{name:<8} {op:<12} {w:>5}x{h:<5} estimate {:>8.1} MiB  measured {:>8.1} MiB  ratio {ratio:.2}  ({:.1} s{})",
            m.estimate / 1048576.0,
            m.measured / 1048576.0,
            m.seconds,
            if m.reset { "" } else { ", peak not reset: measured is an upper bound" }
        ));
        if m.reset && m.estimate < m.measured {
            bad.push(format!("{name} {op} {w}x{h}: estimate below the measured increase"));
        }
        if ratio > 2.0 {
            bad.push(format!("{name} {op} {w}x{h}: estimate more than 2x the measured increase"));
        }
    }
    println!("{}", rows.join("\n"));
    assert!(bad.is_empty(), "{}\n{}", rows.join("\n"), bad.join("\n"));
}

#[test]
fn what_the_refusal_names_fits_and_a_little_more_does_not() {
    let cfg = SaeConfig::small_dinov2();
    for budget in [Budget::bytes(2 << 30), Budget::bytes(4 << 30)] {
        for (w, h) in [(6000, 4000), (4000, 6000), (4500, 4500)] {
            let e = preflight::check_reconstruct(&cfg, w, h, &budget).expect_err("too big");
            let (fw, fh) = preflight::largest_fitting(w, h, &budget, |sw, sh| {
                preflight::reconstruct(&cfg, 1, sh, sw, budget.attention)
            })
            .expect("fits");
            assert!(e.to_string().contains(&preflight::thousands(fw)), "{e}");
            assert!(preflight::check_reconstruct(&cfg, fw, fh, &budget).is_ok());
            assert!(preflight::check_reconstruct(&cfg, fw + 64, fh + 64, &budget).is_err());
        }
        let e = preflight::check_decode(&cfg, 1, 400, 400, &budget).expect_err("400x400 grid");
        assert!(e.to_string().contains("tiled render") && e.to_string().contains("grid fits"), "{e}");
    }
}

#[test]
fn a_config_larger_than_its_weights_is_refused_before_allocating() {
    let cfg = SaeConfig::small_dinov2();
    let n = preflight::sae_numel(&cfg);
    let b = Budget::bytes(64 << 30);
    // the right file passes, a file with a tenth of the values does not
    assert!(preflight::check_weights_match("config.json", n, n as usize, &b).is_ok());
    let e = preflight::check_weights_match("config.json", n, (n / 10.0) as usize, &b).expect_err("mismatch");
    assert!(e.to_string().contains("do not belong together"), "{e}");
}

#[test]
fn the_parameter_count_matches_real_models() {
    // the formula against the values the default model's and the fixture's files hold
    for dir in [root().join("assets/default-model"), root().join("tests/fixtures/dinosae-setA/sae")] {
        let l = engine::checkpoint::load_sae(&dir, &engine::cpu(), false).expect("load");
        let file: usize = engine::tensor_file::read_safetensors(dir.join("model.safetensors"))
            .expect("read")
            .values()
            .map(|t| t.numel())
            .sum();
        let n = preflight::sae_numel(&l.model.cfg);
        let r = n / file as f64;
        println!("{}: config {:.3} M, file {:.3} M, ratio {r:.3}", dir.display(), n / 1e6, file as f64 / 1e6);
        assert!((0.9..=1.1).contains(&r), "{}: {r}", dir.display());
    }
}
