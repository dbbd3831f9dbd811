//! `dino-sae transplant A B --patches .. --to R,C`: the pasted patches are A's encoded ones exactly, every other
//! patch B's, the layout kept; the PNG records the parameters; a paste that would not fit is refused.

use std::ffi::OsStr;

use super::{dino_sae, latent, png_text, root, tmp_dir};

#[test]
fn transplant_pastes_a_block_of_patches_and_keeps_everything_else() {
    let dir = tmp_dir("transplant");
    let work = |name: &str, out: &str| {
        let src = engine::image_io::load_rgb(root().join("assets/samples").join(name)).expect("photo");
        let p = dir.join(out);
        engine::image_io::working_copy(&src, 160).save(&p).expect("write");
        p.to_str().expect("utf8").to_string()
    };
    let (a, b) = (work("chelsea.png", "a.png"), work("astronaut.png", "b.png"));
    let s = |name: &str| dir.join(name).to_str().expect("utf8").to_string();
    let run = |args: &[&str]| {
        let v: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        dino_sae(&v)
    };
    for (img, out) in [(&a, "za.safetensors"), (&b, "zb.safetensors")] {
        let (code, so, se) = run(&["encode", img, "-o", &s(out)]);
        assert_eq!(code, 0, "{so}\n{se}");
    }
    let ((sa, za), (sb, zb)) = (latent(&dir.join("za.safetensors")), latent(&dir.join("zb.safetensors")));
    let (c, aw) = (sa[1], sa[3]);
    let (bh, bw) = (sb[2], sb[3]);
    // a 2 x 2 block at rows 1-2, columns 2-3 of A, pasted with its top-left patch at row 3, column 5 of B
    let sel = [aw + 2, aw + 3, 2 * aw + 2, 2 * aw + 3];
    let list = sel.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
    let out = s("t.png");
    let (code, so, se) = run(&["transplant", &a, &b, "-o", &out, "--patches", &list, "--to", "3,5"]);
    assert_eq!(code, 0, "{so}\n{se}");
    assert!(so.contains("pasted 4 patches"), "{so}");
    let (st, t) = latent(&dir.join("t.safetensors"));
    assert_eq!(st, sb, "the result has the target's grid");
    let (an, bn) = (sa[2] * aw, bh * bw);
    let mut pasted = 0;
    for r in 0..bh {
        for q in 0..bw {
            let p = r * bw + q;
            let from_a = (3..5).contains(&r) && (5..7).contains(&q);
            for ch in 0..c {
                let want = if from_a { za[ch * an + (r - 3 + 1) * aw + (q - 5 + 2)] } else { zb[ch * bn + p] };
                assert_eq!(t[ch * bn + p], want, "patch ({r}, {q}) channel {ch}");
            }
            pasted += from_a as usize;
        }
    }
    assert_eq!(pasted, 4);
    let text = png_text(&dir.join("t.png"));
    assert!(text.iter().any(|(k, v)| k == "dino-sae:transplant" && v.contains("\"to\":[3,5]")), "{text:?}");
    // a paste that would run off the target's grid is refused and writes nothing
    let far = format!("{},{}", bh - 1, bw - 1);
    let (code, _, se) = run(&["transplant", &a, &b, "-o", &s("x.png"), "--patches", &list, "--to", &far]);
    assert_eq!(code, 1);
    assert!(se.contains("does not fit"), "{se}");
    assert!(!dir.join("x.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
