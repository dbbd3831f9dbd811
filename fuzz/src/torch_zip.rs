//! Torch zip checkpoints: the seed writer, zip mutations (entries re-packed, renamed, truncated, nested,
//! inflating) and the torch-zip target.

use std::io::{Read, Write};

use crate::harness::Target;
use crate::mutate::{Rng, mutate_bytes};
use crate::pickle::mutate_pickle;
use crate::{MIB, read, scratch};

/// Entries of a zip archive (name, bytes), or None.
pub fn unzip_all(b: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(b)).ok()?;
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).ok()?;
        let mut v = Vec::new();
        f.by_ref().take(64 << 20).read_to_end(&mut v).ok()?;
        out.push((f.name().to_string(), v));
    }
    Some(out)
}

/// Write entries as a stored zip (torch's layout). With `lie`, each local header is followed by a second
/// copy of the central directory's claims skewed (sizes and offsets), by editing the bytes after writing.
pub fn zip_entries(entries: &[(String, Vec<u8>)], lie: bool) -> Vec<u8> {
    let out = zip_stored(entries);
    if !lie {
        return out;
    }
    // skew every central-directory size field (offset 20/24 of each 0x02014b50 record) to 4 GiB - 1
    let mut out = out;
    let mut i = 0;
    while i + 46 <= out.len() {
        if out[i..i + 4] == [0x50, 0x4b, 0x01, 0x02] {
            out[i + 24..i + 28].copy_from_slice(&u32::MAX.to_le_bytes());
            i += 46;
        } else {
            i += 1;
        }
    }
    out
}

pub(super) fn zip_stored(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (n, b) in entries {
        if w.start_file(n.as_str(), opts).is_err() || w.write_all(b).is_err() {
            continue;
        }
    }
    w.finish().map(|c| c.into_inner()).unwrap_or_default()
}

/// Torch-zip-aware: mutate data.pkl as a pickle, a storage as bytes (truncate it), rename / drop / duplicate
/// entries, nest the archive inside itself, re-pack deflated; else byte-level (central directory offsets).
pub fn mutate_torch_zip(r: &mut Rng, data: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let Some(mut entries) = unzip_all(data).filter(|e| !e.is_empty() && r.chance(0.8)) else {
        return mutate_bytes(r, data, seeds);
    };
    let pkl = entries.iter().position(|(n, _)| n.ends_with("data.pkl"));
    match r.below(7) {
        0..=2 if pkl.is_some() => {
            let i = pkl.expect("checked");
            entries[i].1 = mutate_pickle(r, &entries[i].1, &[]);
        }
        3 => {
            let i = r.below(entries.len());
            entries[i].1 = if r.chance(0.5) {
                let l = entries[i].1.len();
                entries[i].1[..r.below(l + 1)].to_vec()
            } else {
                mutate_bytes(r, &entries[i].1, &[])
            };
        }
        4 => {
            let i = r.below(entries.len());
            match r.below(3) {
                0 => {
                    entries.remove(i);
                }
                1 => {
                    let e = entries[i].clone();
                    entries.push(e);
                }
                _ => entries[i].0 = format!("{}{}", entries[i].0, *r.pick(&["x", "/../../etc/passwd", "\u{0}", ""])),
            }
        }
        5 => {
            let inner = data.to_vec();
            let name =
                entries.first().map(|(n, _)| n.split('/').next().unwrap_or("archive").to_string()).unwrap_or_default();
            entries.push((format!("{name}/data/nested.zip"), inner));
            if let Some(i) = pkl {
                entries[i].1 = data.to_vec();
            }
        }
        _ => {
            // many central-directory entries over the same bytes (an overlapping-entries zip bomb)
            let i = r.below(entries.len());
            let e = entries[i].clone();
            for k in 0..1 + r.below(64) {
                entries.push((format!("{}{k}", e.0), e.1.clone()));
            }
        }
    }
    zip_entries(&entries, r.chance(0.1))
}

/// Pickle writer for seeds and adversarial tests: a state dict `{name: tensor}` of f32 tensors in torch's zip
/// layout, pickled at `protocol` (2-5; framed from 4).
pub fn torch_zip(tensors: &[(&str, Vec<usize>, Vec<f32>)], protocol: u8) -> Vec<u8> {
    let mut p = vec![0x80, protocol];
    let short = |s: &str, p: &mut Vec<u8>| {
        if protocol >= 4 && s.len() < 256 {
            p.push(0x8c);
            p.push(s.len() as u8);
        } else {
            p.push(b'X');
            p.extend((s.len() as u32).to_le_bytes());
        }
        p.extend(s.bytes());
    };
    p.extend(b"ccollections\nOrderedDict\n)R(");
    for (i, (name, shape, data)) in tensors.iter().enumerate() {
        short(name, &mut p);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend(b"(");
        short("storage", &mut p);
        p.extend(b"ctorch\nFloatStorage\n");
        short(&i.to_string(), &mut p);
        short("cpu", &mut p);
        p.push(b'J');
        p.extend((data.len() as u32).to_le_bytes());
        p.extend(b"tQ");
        p.extend(b"K\x00(");
        for s in shape {
            p.push(b'J');
            p.extend((*s as u32).to_le_bytes());
        }
        p.push(b't');
        let mut stride = vec![1usize; shape.len()];
        for k in (0..shape.len().saturating_sub(1)).rev() {
            stride[k] = stride[k + 1] * shape[k + 1];
        }
        p.push(b'(');
        for s in stride {
            p.push(b'J');
            p.extend((s as u32).to_le_bytes());
        }
        p.extend(b"t\x89ccollections\nOrderedDict\n)RtR");
    }
    p.extend(b"u.");
    let mut entries = vec![("archive/data.pkl".to_string(), p)];
    for (i, (_, _, data)) in tensors.iter().enumerate() {
        entries.push((format!("archive/data/{i}"), data.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    entries.push(("archive/version".into(), b"3\n".to_vec()));
    zip_entries(&entries, false)
}

pub(super) fn torch_zip_target() -> Target {
    let small = torch_zip(
        &[
            ("head.bias", vec![1, 1, 4], vec![0.5; 4]),
            ("head.weight", vec![12, 4], (0..48).map(|i| i as f32).collect()),
        ],
        2,
    );
    let seeds = vec![read("tests/fixtures/dinosae-setA/dinov3/official/model.pth"), small];
    Target {
        name: "torch-zip",
        seeds: seeds.into_iter().filter(|s| !s.is_empty()).collect(),
        mutate: Box::new(mutate_torch_zip),
        run: Box::new(|b| {
            let t = engine::checkpoint::pickle::read_torch_zip(b, engine::budget::Budget::from_env().bytes)?;
            // what looks like a backbone goes on through the whole loader
            if engine::checkpoint::detect(&t).is_ok() {
                let p = scratch("torch-zip").join("model.pth");
                std::fs::write(&p, b).map_err(|e| engine::EngineError::io(&p, e))?;
                engine::checkpoint::load_backbone(&p, &engine::cpu(), false)?;
            }
            Ok(())
        }),
        // tensors as f32 (x2 for f16 storages), the storages read once, one copy into the model
        cap: |n| 64 * MIB + 12 * n,
    }
}
