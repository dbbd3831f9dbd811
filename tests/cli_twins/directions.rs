//! `dino-sae directions` and `steer --towards dir:NAME`: a library in a private folder (`DINO_SAE_DATA`); the saved
//! vectors checked against float64 maths on the encoded latent (PCA axis sign, region means), steering with a
//! saved direction against the great-circle formula, and every way a library entry can be wrong.

use std::ffi::OsStr;
use std::path::Path;

use super::{dino_sae_env, latent, root, tmp_dir};

fn run(data: &Path, args: &[&str]) -> (i32, String, String) {
    let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    dino_sae_env(&a, &[("DINO_SAE_DATA", data.as_os_str())])
}

fn ok(data: &Path, args: &[&str]) -> String {
    let (code, so, se) = run(data, args);
    assert_eq!(code, 0, "dino-sae {args:?}\n{so}\n{se}");
    so
}

/// Column `p` of a `[1, C, h, w]` latent as float64.
fn col(z: &[f32], c: usize, n: usize, p: usize) -> Vec<f64> {
    (0..c).map(|k| z[k * n + p] as f64).collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[test]
fn save_list_apply_rename_export_import_and_remove_directions() {
    let dir = tmp_dir("directions");
    let data = dir.join("data");
    let photo = root().join("assets/samples/chelsea.png");
    let photo = photo.to_str().expect("utf8");
    assert!(ok(&data, &["directions", "list"]).contains("no directions saved yet"));
    ok(&data, &["directions", "add", "r7", "--towards", "random:7"]);
    ok(
        &data,
        &[
            "directions",
            "add",
            "sky-minus-fur",
            "--image",
            photo,
            "--region",
            "0,0,447,63",
            "--minus",
            "160,160,300,287",
        ],
    );
    ok(&data, &["directions", "add", "fur", "--image", photo, "--towards", "patch:12,14"]);
    let listed = ok(&data, &["directions", "list"]);
    let names: Vec<&str> = listed.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ["fur", "r7", "sky-minus-fur"], "{listed}");
    assert!(listed.contains("random (seed 7)"));
    // the saved vectors against float64 maths on the image's own latent (the same encode as `encode`)
    let enc = dir.join("chelsea.safetensors");
    ok(&data, &["encode", photo, "-o", enc.to_str().expect("utf8")]);
    let (shape, z) = latent(&enc);
    let (c, gh, gw) = (shape[1], shape[2], shape[3]);
    let n = gh * gw;
    let lib = engine::directions::Library::at(data.join("directions"));
    let vec_of = |name: &str| match lib.get(name).expect("saved").target {
        engine::steer::SteerTarget::Direction(v) => v.iter().map(|x| *x as f64).collect::<Vec<f64>>(),
        t => panic!("{name}: {t:?}"),
    };
    let fur = vec_of("fur");
    let p = 12 * gw + 14;
    let want = col(&z, c, n, p);
    let nw = norm(&want);
    assert!(
        fur.iter().zip(&want).all(|(a, b)| (a - b / nw).abs() < 1e-5),
        "patch:12,14 saves that patch's unit direction"
    );
    let mean_dir = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
        let mut m = vec![0f64; c];
        let mut k = 0.0;
        for r in rows {
            for q in cols.clone() {
                let v = col(&z, c, n, r * gw + q);
                let nv = norm(&v);
                m.iter_mut().zip(&v).for_each(|(a, b)| *a += b / nv);
                k += 1.0;
            }
        }
        m.into_iter().map(|x| x / k).collect::<Vec<f64>>()
    };
    // centres at 8 + 16 i: the box 0..447 x 0..63 holds rows 0-3 and every column; 160..300 x 160..287 rows 10-17,
    // columns 10-18
    let (a, b) = (mean_dir(0..4, 0..gw), mean_dir(10..18, 10..19));
    let diff = vec_of("sky-minus-fur");
    assert!(diff.iter().zip(a.iter().zip(&b)).all(|(d, (x, y))| (d - (x - y)).abs() < 1e-5), "region minus region");
    // steering 90 degrees towards a saved direction lands on the great circle through it (float64 formula)
    let work = dir.join("steered.png");
    ok(
        &data,
        &[
            "steer",
            photo,
            "-o",
            work.to_str().expect("utf8"),
            "--patches",
            &p.to_string(),
            "--towards",
            "dir:sky-minus-fur",
            "--angle",
            "90",
        ],
    );
    let (_, s) = latent(&work.with_extension("safetensors"));
    let v = col(&z, c, n, p);
    let nv = norm(&v);
    let u: Vec<f64> = v.iter().map(|x| x / nv).collect();
    let dot: f64 = diff.iter().zip(&u).map(|(x, y)| x * y).sum();
    let t: Vec<f64> = diff.iter().zip(&u).map(|(d, y)| d - dot * y).collect();
    let nt = norm(&t);
    let got = col(&s, c, n, p);
    let worst = got.iter().zip(&t).map(|(g, ti)| (g - nv * ti / nt).abs()).fold(0.0, f64::max);
    assert!(worst < 2e-4 * nv, "90 degrees towards the saved direction: worst {worst:.2e}");
    for q in (0..n).filter(|&q| q != p) {
        assert_eq!(col(&s, c, n, q), col(&z, c, n, q), "unselected patch {q} unchanged");
    }
    // rename, export, remove, import
    ok(&data, &["directions", "rename", "sky-minus-fur", "sky"]);
    let (code, _, se) = run(
        &data,
        &[
            "steer",
            photo,
            "-o",
            work.to_str().expect("utf8"),
            "--all",
            "--towards",
            "dir:sky-minus-fur",
            "--angle",
            "10",
        ],
    );
    assert_eq!(code, 1);
    assert!(se.contains("no direction named"), "{se}");
    let file = dir.join("sky.direction.safetensors");
    ok(&data, &["directions", "export", "sky", "-o", file.to_str().expect("utf8")]);
    ok(&data, &["directions", "rm", "sky"]);
    assert!(!ok(&data, &["directions", "list"]).contains("sky"));
    ok(&data, &["directions", "import", file.to_str().expect("utf8")]);
    assert_eq!(vec_of("sky"), diff, "export + import keep the vector exactly");
    // refusals: a bad name, a duplicate, a file that is not a direction, a direction for another latent width
    let (code, _, se) = run(&data, &["directions", "add", "a/b", "--towards", "random:1"]);
    assert_eq!(code, 1);
    assert!(se.contains("name"), "{se}");
    let (code, _, se) = run(&data, &["directions", "add", "r7", "--towards", "random:8"]);
    assert_eq!(code, 1);
    assert!(se.contains("exists already"), "{se}");
    ok(&data, &["directions", "add", "r7", "--towards", "random:8", "--force"]);
    let (code, _, se) = run(&data, &["directions", "import", enc.to_str().expect("utf8")]);
    assert_eq!(code, 1);
    assert!(se.contains("not a saved direction"), "{se}");
    let narrow =
        engine::directions::SavedDirection::new("narrow", "test", engine::steer::SteerTarget::Direction(vec![1.0; 8]))
            .expect("direction");
    lib.add(&narrow, false).expect("add");
    let (code, _, se) = run(
        &data,
        &["steer", photo, "-o", work.to_str().expect("utf8"), "--all", "--towards", "dir:narrow", "--angle", "10"],
    );
    assert_eq!(code, 1);
    assert!(se.contains("8 channels"), "{se}");
    // a damaged file in the library is reported and the others still list
    std::fs::write(data.join("directions/broken.safetensors"), b"not a safetensors file").expect("write");
    let (code, so, se) = run(&data, &["directions", "list"]);
    assert_eq!(code, 0);
    assert!(so.contains("sky") && so.contains("r7") && se.contains("broken"), "{so}\n{se}");
    let _ = std::fs::remove_dir_all(&dir);
}
