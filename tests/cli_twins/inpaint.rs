//! `dino-sae inpaint`: the parameters in the PNG, the latent beside it, every unselected patch exactly the encoded
//! one, the region new, the same seed the same output, and clear refusals.

use std::ffi::OsStr;

use super::{dino_sae, latent, png_text, root, tmp_dir};

#[test]
fn inpaint_regenerates_the_box_keeps_the_rest_and_repeats_with_its_seed() {
    let dir = tmp_dir("inpaint");
    // the sample photo at 256 px wide (a 10 x 16 grid after the crop to multiples of 16)
    let src = engine::image_io::load_rgb(root().join("assets/samples/chelsea.png")).expect("photo");
    let photo = dir.join("chelsea-256.png");
    engine::image_io::working_copy(&src, 256).save(&photo).expect("write the working copy");
    let common = |extra: &[&str]| -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = vec![photo.clone().into()];
        v.extend(extra.iter().map(|s| (*s).into()));
        v
    };
    let run = |cmd: &str, extra: &[&str]| {
        let mut args: Vec<std::ffi::OsString> = vec![cmd.into()];
        args.extend(common(extra));
        let refs: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        dino_sae(&refs)
    };
    let enc = dir.join("encoded.safetensors");
    let (code, so, se) = run("encode", &["-o", enc.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{so}\n{se}");
    let (shape, z) = latent(&enc);
    let (gh, gw) = (shape[2], shape[3]);
    assert!(gh >= 8 && gw >= 8, "{shape:?}");
    // a 3 x 3 box of patches around the middle, given as patch indices
    let (r0, c0) = (gh / 2 - 1, gw / 2 - 1);
    let sel: Vec<usize> = (r0..r0 + 3).flat_map(|r| (c0..c0 + 3).map(move |c| r * gw + c)).collect();
    let list = sel.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let out = |name: &str| dir.join(name).to_str().expect("utf8").to_string();
    let args = |o: &str, seed: &str| {
        vec!["-o".to_string(), o.to_string(), "--patches".into(), list.clone(), "--class".into(), "1".into()]
            .into_iter()
            .chain(["--seed".into(), seed.into(), "--steps".into(), "6".into()])
            .collect::<Vec<String>>()
    };
    let call = |o: &str, seed: &str| {
        let a = args(o, seed);
        let r: Vec<&str> = a.iter().map(String::as_str).collect();
        run("inpaint", &r)
    };
    let (code, so, se) = call(&out("a.png"), "5");
    assert_eq!(code, 0, "{so}\n{se}");
    assert!(so.contains("regenerated 9 of"), "{so}");
    let text = png_text(&dir.join("a.png"));
    let params = text.iter().find(|(k, _)| k == "dino-sae:inpaint").map(|(_, v)| v.clone()).expect("parameters chunk");
    let p: serde_json::Value = serde_json::from_str(&params).expect("json");
    assert_eq!(p["seed"], 5);
    assert_eq!(p["steps"], 6);
    assert_eq!(p["patches"].as_array().map(Vec::len), Some(9));
    let (shape_a, a) = latent(&dir.join("a.safetensors"));
    assert_eq!(shape_a, shape);
    let hw = gh * gw;
    let c = shape[1];
    let mut changed = 0.0f64;
    for q in 0..hw {
        let col = |v: &[f32]| (0..c).map(|k| v[k * hw + q] as f64).collect::<Vec<f64>>();
        let (old, new) = (col(&z), col(&a));
        if sel.contains(&q) {
            let dot: f64 = old.iter().zip(&new).map(|(x, y)| x * y).sum();
            let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
            changed += 1.0 - dot / (n(&old) * n(&new));
        } else {
            assert_eq!(old, new, "patch {q} is not selected: it must be the encoded one exactly");
        }
    }
    assert!(changed / 9.0 > 0.05, "the region did not change (mean 1 - cos {:.4})", changed / 9.0);
    // the same seed gives the same latent; another seed another one
    let (code, so, se) = call(&out("b.png"), "5");
    assert_eq!(code, 0, "{so}\n{se}");
    assert_eq!(latent(&dir.join("b.safetensors")).1, a, "same seed, same output");
    let (code, so, se) = call(&out("c.png"), "6");
    assert_eq!(code, 0, "{so}\n{se}");
    assert_ne!(latent(&dir.join("c.safetensors")).1, a, "another seed, another region");
    // refusals: a patch outside the grid, a selection wider than the generator's window, an unknown class
    let (code, _, se) = run("inpaint", &["-o", &out("x.png"), "--patches", "100000"]);
    assert_eq!(code, 1);
    assert!(se.contains("outside"), "{se}");
    let (code, _, se) = run("inpaint", &["-o", &out("x.png"), "--all"]);
    assert_eq!(code, 1);
    assert!(se.contains("window"), "{se}");
    let (code, _, se) = run("inpaint", &["-o", &out("x.png"), "--patches", "0", "--class", "no-such-class"]);
    assert_eq!(code, 1);
    assert!(se.contains("class"), "{se}");
    assert!(!dir.join("x.png").exists(), "a refused job writes nothing");
}
