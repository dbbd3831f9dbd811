//! Protobuf (ONNX) mutations: varints, lengths, nested messages; the ONNX seed and target.

use crate::MIB;
use crate::harness::Target;
use crate::mutate::{Rng, interesting, mutate_bytes};

pub(super) fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Encode a protobuf length-delimited field.
pub fn pb_bytes(tag: u64, b: &[u8], out: &mut Vec<u8>) {
    varint(tag << 3 | 2, out);
    varint(b.len() as u64, out);
    out.extend(b);
}

/// Encode a protobuf varint field.
pub fn pb_varint(tag: u64, v: u64, out: &mut Vec<u8>) {
    varint(tag << 3, out);
    varint(v, out);
}

/// A small ONNX model: a graph with a MatMul node and float / f16 / int64 initialisers (raw and typed data).
pub fn onnx_seed() -> Vec<u8> {
    let tensor = |name: &str, dims: &[u64], dtype: u64, raw: Option<Vec<u8>>, floats: &[f32]| {
        let mut t = Vec::new();
        for d in dims {
            pb_varint(1, *d, &mut t);
        }
        pb_varint(2, dtype, &mut t);
        if !floats.is_empty() {
            let packed: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
            pb_bytes(4, &packed, &mut t);
        }
        pb_bytes(8, name.as_bytes(), &mut t);
        if let Some(r) = raw {
            pb_bytes(9, &r, &mut t);
        }
        t
    };
    let mut g = Vec::new();
    let mut node = Vec::new();
    pb_bytes(1, b"x", &mut node);
    pb_bytes(1, b"w", &mut node);
    pb_bytes(2, b"y", &mut node);
    pb_bytes(3, b"/blocks.0/MatMul", &mut node);
    pb_bytes(4, b"MatMul", &mut node);
    pb_bytes(1, &node, &mut g);
    let w: Vec<u8> = (0..12).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    pb_bytes(5, &tensor("w", &[3, 4], 1, Some(w), &[]), &mut g);
    pb_bytes(5, &tensor("b", &[4], 1, None, &[1.0, 2.0, 3.0, 4.0]), &mut g);
    let h: Vec<u8> = (0..6).flat_map(|i| half::f16::from_f32(i as f32).to_le_bytes()).collect();
    pb_bytes(5, &tensor("h", &[2, 3], 10, Some(h), &[]), &mut g);
    let l: Vec<u8> = (0..2i64).flat_map(|i| i.to_le_bytes()).collect();
    pb_bytes(5, &tensor("shape", &[2], 7, Some(l), &[]), &mut g);
    pb_bytes(2, b"graph", &mut g);
    let mut m = Vec::new();
    pb_varint(1, 8, &mut m); // ir_version
    pb_bytes(2, b"dino-sae-fuzz", &mut m);
    pb_bytes(7, &g, &mut m);
    m
}

/// Fields of one protobuf message: (start, end, tag, wire type, payload start) spans, best effort.
pub(super) fn pb_fields(b: &[u8]) -> Vec<(usize, usize, u64, u8, usize)> {
    let mut out = Vec::new();
    let mut p = 0usize;
    let rd = |p: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for s in (0..64).step_by(7) {
            let x = *b.get(*p)?;
            *p += 1;
            v |= ((x & 0x7f) as u64) << s;
            if x & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    while p < b.len() {
        let start = p;
        let Some(key) = rd(&mut p) else { break };
        let wt = (key & 7) as u8;
        let payload = p;
        let ok = match wt {
            0 => rd(&mut p).is_some(),
            1 => {
                p += 8;
                p <= b.len()
            }
            2 => match rd(&mut p) {
                Some(n) if (n as usize) <= b.len() - p.min(b.len()) => {
                    p += n as usize;
                    true
                }
                _ => false,
            },
            5 => {
                p += 4;
                p <= b.len()
            }
            _ => false,
        };
        if !ok {
            break;
        }
        out.push((start, p, key >> 3, wt, payload));
    }
    out
}

/// Protobuf-aware mutation: descend into nested messages, rewrite a varint (dims, dtype, lengths) or a length
/// prefix, duplicate / drop a field, nest a message in itself; else byte-level.
pub fn mutate_protobuf(r: &mut Rng, data: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    if r.chance(0.2) {
        return mutate_bytes(r, data, seeds);
    }
    fn go(r: &mut Rng, b: &[u8], depth: usize) -> Vec<u8> {
        let fields = pb_fields(b);
        if fields.is_empty() {
            return b.to_vec();
        }
        let i = r.below(fields.len());
        let (s, e, tag, wt, pl) = fields[i];
        let mut out = b[..s].to_vec();
        match (wt, r.below(6)) {
            (2, 0..=2) if depth < 4 => {
                // descend into a nested message (or rewrite bytes)
                let mut len_start = pl;
                while b[len_start] & 0x80 != 0 {
                    len_start += 1;
                }
                let inner = &b[len_start + 1..e];
                let new =
                    if pb_fields(inner).is_empty() { mutate_bytes(r, inner, &[]) } else { go(r, inner, depth + 1) };
                pb_bytes(tag, &new, &mut out);
            }
            (2, 3) => {
                // a length prefix that lies
                varint(tag << 3 | 2, &mut out);
                varint(interesting(r), &mut out);
                out.extend(&b[pl..e]);
            }
            (0, _) => {
                varint(tag << 3, &mut out);
                varint(interesting(r), &mut out);
            }
            (_, 4) => {
                out.extend(&b[s..e]);
                for _ in 0..1 + r.below(3) {
                    out.extend(&b[s..e]);
                }
            }
            (_, 5) => {
                // nest the whole message inside this field
                pb_bytes(tag, b, &mut out);
            }
            _ => {}
        }
        out.extend(&b[e..]);
        out
    }
    go(r, data, 0)
}

pub(super) fn onnx_target() -> Target {
    Target {
        name: "onnx",
        seeds: vec![onnx_seed()],
        mutate: Box::new(mutate_protobuf),
        run: Box::new(|b| engine::checkpoint::onnx::read_onnx(b).map(|_| ())),
        cap: |n| 16 * MIB + 8 * n,
    }
}
