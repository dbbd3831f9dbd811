//! A fuzz harness on stable Rust for every parser that reads user files.
//!
//! Seeded, structure-aware mutation of valid inputs: byte-level (truncate, splice, flip bits, overwrite with
//! boundary integers, duplicate or delete ranges) and format-level (safetensors header JSON: dtypes, shapes,
//! offsets, header length; pickle opcodes: lengths, integers, GLOBAL/REDUCE/BUILD/INST on dangerous callables,
//! deep nesting, memo bombs; zip: entries re-packed, renamed, truncated, nested, inflating; protobuf: varints,
//! lengths, nested messages; JSON configs: numbers, types, deep nesting; images: header sizes, EXIF).
//!
//! Every case runs under `catch_unwind` and a memory check: the bytes allocated at the case's peak (counted by
//! [`CountingAlloc`], which the fuzzing binaries install as their global allocator) must stay under the
//! target's cap. A panic or an excess is a crash. `engine/examples/fuzz.rs` runs for minutes (in a child
//! process it restarts, so an abort is caught too); `tests/fuzz.rs` runs a bounded number of cases per target
//! and replays `tests/fuzz-corpus/<target>/`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::error::Result;

// ---------------------------------------------------------------------------------------------------------------
// Counting allocator

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static SINGLE_CAP: AtomicUsize = AtomicUsize::new(usize::MAX);
static INSTALLED: AtomicUsize = AtomicUsize::new(0);

/// A global allocator over [`System`] that counts the bytes in use and their peak, and refuses (returns null
/// for) any single allocation above [`set_single_alloc_cap`]. Install with
/// `#[global_allocator] static A: engine::fuzz::CountingAlloc = engine::fuzz::CountingAlloc;`.
pub struct CountingAlloc;

fn note_alloc(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// The one unsafe block of the engine (the workspace denies unsafe code): a global allocator must implement
// this unsafe trait. Every method forwards its arguments unchanged to `System` and only updates counters.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > SINGLE_CAP.load(Ordering::Relaxed) {
            return std::ptr::null_mut();
        }
        INSTALLED.store(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > SINGLE_CAP.load(Ordering::Relaxed) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > SINGLE_CAP.load(Ordering::Relaxed) {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            note_alloc(new_size);
        }
        p
    }
}

/// True once [`CountingAlloc`] has served an allocation (it is the global allocator).
pub fn counting() -> bool {
    INSTALLED.load(Ordering::Relaxed) == 1
}

/// Bytes in use now (0 without [`CountingAlloc`]).
pub fn allocated() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// Start a new peak window at the bytes in use now; returns them.
pub fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// Largest bytes in use since the last [`reset_peak`].
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Refuse single allocations above `bytes` (the process then aborts with "memory allocation failed"): the
/// fuzzing binaries set it to the memory budget so an unforeseen allocation is a visible crash, not swap.
pub fn set_single_alloc_cap(bytes: usize) {
    SINGLE_CAP.store(bytes, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------------------------
// Random numbers

/// SplitMix64: small, seeded, reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when n == 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// Integers that break length and shape arithmetic.
const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    7,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 60,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

fn interesting(r: &mut Rng) -> u64 {
    if r.chance(0.8) { *r.pick(&INTERESTING) } else { r.next_u64() >> r.below(64) }
}

// ---------------------------------------------------------------------------------------------------------------
// Byte-level mutations

/// One byte-level mutation: truncate, flip bits, set bytes, insert/delete/duplicate a range, overwrite an integer
/// with a boundary value (LE/BE, 1-8 bytes), or splice in a piece of another seed.
pub fn mutate_bytes(r: &mut Rng, data: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = data.to_vec();
    let rounds = 1 + r.below(4);
    for _ in 0..rounds {
        let n = d.len();
        match r.below(9) {
            0 => {
                let keep = if r.chance(0.5) { r.below(n + 1) } else { n.saturating_sub(1 + r.below(16)) };
                d.truncate(keep);
            }
            1 if n > 0 => {
                for _ in 0..1 + r.below(8) {
                    let i = r.below(n);
                    d[i] ^= 1 << r.below(8);
                }
            }
            2 if n > 0 => {
                let i = r.below(n);
                d[i] = r.next_u64() as u8;
            }
            3 => {
                let i = r.below(n + 1);
                let k = 1 + r.below(32);
                let ins: Vec<u8> = (0..k).map(|_| r.next_u64() as u8).collect();
                d.splice(i..i, ins);
            }
            4 if n > 0 => {
                let i = r.below(n);
                let k = 1 + r.below((n - i).min(256));
                d.drain(i..i + k);
            }
            5 if n > 0 => {
                let i = r.below(n);
                let k = 1 + r.below((n - i).min(256));
                let piece = d[i..i + k].to_vec();
                let at = r.below(n + 1);
                d.splice(at..at, piece);
            }
            6 if n > 0 => {
                let width = *r.pick(&[1usize, 2, 4, 8]);
                let i = r.below(n);
                let v = interesting(r);
                let bytes = if r.chance(0.5) { v.to_le_bytes() } else { v.to_be_bytes() };
                let src = if r.chance(0.5) { &bytes[..width] } else { &bytes[8 - width..] };
                for (k, b) in src.iter().enumerate() {
                    if i + k < d.len() {
                        d[i + k] = *b;
                    }
                }
            }
            7 if !seeds.is_empty() => {
                let other = r.pick(seeds);
                if !other.is_empty() {
                    let a = r.below(other.len());
                    let b = a + r.below((other.len() - a).min(4096) + 1);
                    let at = r.below(n + 1);
                    let cut = at + r.below(n - at + 1);
                    d.splice(at..cut, other[a..b].iter().copied());
                }
            }
            _ => {
                // a run of one byte (long strings, zero fills)
                let i = r.below(n + 1);
                let k = 1 + r.below(512);
                let b = r.next_u64() as u8;
                d.splice(i..i, std::iter::repeat_n(b, k));
            }
        }
    }
    d
}

// ---------------------------------------------------------------------------------------------------------------
// JSON (configs, safetensors headers)

fn json_number(r: &mut Rng) -> Json {
    match r.below(6) {
        0 => Json::from(interesting(r)),
        1 => Json::from(-(r.below(1 << 20) as i64) - 1),
        2 => serde_json::Number::from_f64(*r.pick(&[0.0, -0.0, 0.5, 1e-300, 1e300, 1.7976931348623157e308, -1e9]))
            .map(Json::Number)
            .unwrap_or(Json::Null),
        3 => Json::from(r.below(8)),
        4 => Json::from(r.below(5000)),
        _ => Json::from(1u64 << r.below(64)),
    }
}

const WORDS: [&str; 24] = [
    "F32",
    "F16",
    "BF16",
    "F64",
    "I64",
    "U8",
    "BOOL",
    "F8_E4M3",
    "C64",
    "ResBlock",
    "EViT_GLU",
    "ConvPixelShuffle",
    "InterpolateConv",
    "duplicating",
    "trms2d",
    "silu",
    "relu",
    "dinov2",
    "dinov3",
    "mlp",
    "swiglu",
    "dino_sae",
    "",
    "x",
];

fn json_leaf(r: &mut Rng) -> Json {
    match r.below(5) {
        0 => Json::Null,
        1 => Json::Bool(r.chance(0.5)),
        2 => Json::String(r.pick(&WORDS).to_string()),
        3 => Json::String("\u{0}é\u{202e}".repeat(1 + r.below(4))),
        _ => json_number(r),
    }
}

/// All paths to nodes of `v` (object keys and array indices).
fn json_paths(v: &Json, path: &mut Vec<JsonKey>, out: &mut Vec<Vec<JsonKey>>) {
    out.push(path.clone());
    if out.len() > 4096 || path.len() > 32 {
        return;
    }
    match v {
        Json::Object(m) => {
            for (k, c) in m {
                path.push(JsonKey::Key(k.clone()));
                json_paths(c, path, out);
                path.pop();
            }
        }
        Json::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                path.push(JsonKey::Index(i));
                json_paths(c, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum JsonKey {
    Key(String),
    Index(usize),
}

fn json_at<'a>(v: &'a mut Json, path: &[JsonKey]) -> Option<&'a mut Json> {
    let mut cur = v;
    for k in path {
        cur = match (cur, k) {
            (Json::Object(m), JsonKey::Key(s)) => m.get_mut(s)?,
            (Json::Array(a), JsonKey::Index(i)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Structure-aware JSON mutation: replace a node's value (boundary numbers, other types, words), resize arrays,
/// drop or add keys, wrap a node in deep nesting.
pub fn mutate_json(r: &mut Rng, v: &mut Json) {
    for _ in 0..1 + r.below(3) {
        let mut paths = Vec::new();
        json_paths(v, &mut Vec::new(), &mut paths);
        let path = r.pick(&paths).clone();
        let Some(node) = json_at(v, &path) else { continue };
        match r.below(8) {
            0 | 1 => {
                if node.is_number() || r.chance(0.3) {
                    *node = json_number(r);
                } else {
                    *node = json_leaf(r);
                }
            }
            2 => {
                if let Json::Array(a) = node {
                    match r.below(3) {
                        0 => a.clear(),
                        1 if !a.is_empty() => {
                            let x = a[r.below(a.len())].clone();
                            for _ in 0..1 + r.below(8) {
                                a.push(x.clone());
                            }
                        }
                        _ => {
                            let l = a.len();
                            a.truncate(r.below(l + 1));
                        }
                    }
                } else {
                    *node = Json::Array((0..r.below(6)).map(|_| json_number(r)).collect());
                }
            }
            3 => {
                if let Json::Object(m) = node {
                    let keys: Vec<String> = m.keys().cloned().collect();
                    if !keys.is_empty() {
                        m.remove(r.pick(&keys));
                    }
                }
            }
            4 => {
                if let Json::Object(m) = node {
                    m.insert(r.pick(&WORDS).to_string(), json_leaf(r));
                }
            }
            5 => {
                // nest: {"a": {"a": ... x}} or [[[x]]]
                let depth = if r.chance(0.2) { 1 + r.below(300) } else { 1 + r.below(8) };
                let mut x = node.take();
                for _ in 0..depth {
                    x = if r.chance(0.5) { Json::Array(vec![x]) } else { serde_json::json!({ "a": x }) };
                }
                *node = x;
            }
            6 => {
                if let Json::Object(m) = node {
                    let keys: Vec<String> = m.keys().cloned().collect();
                    if keys.len() >= 2 {
                        let (a, b) = (r.pick(&keys).clone(), r.pick(&keys).clone());
                        let va = m.get(&a).cloned();
                        let vb = m.get(&b).cloned();
                        if let (Some(va), Some(vb)) = (va, vb) {
                            m.insert(a, vb);
                            m.insert(b, va);
                        }
                    }
                }
            }
            _ => {
                if let Json::Number(n) = node {
                    let x = n.as_i64().unwrap_or(1);
                    *node = Json::from(
                        x.wrapping_mul(*r.pick(&[2i64, 16, 1 << 20, -1, 0])).wrapping_add(r.below(3) as i64 - 1),
                    );
                } else {
                    *node = json_leaf(r);
                }
            }
        }
    }
}

/// Mutate JSON text: structure-aware when it parses (3 in 4), byte-level otherwise.
pub fn mutate_json_text(r: &mut Rng, data: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    if r.chance(0.75)
        && let Ok(mut v) = serde_json::from_slice::<Json>(data)
    {
        mutate_json(r, &mut v);
        return serde_json::to_vec_pretty(&v).unwrap_or_default();
    }
    mutate_bytes(r, data, seeds)
}

// ---------------------------------------------------------------------------------------------------------------
// safetensors

/// Split a safetensors file into (header JSON, data).
pub fn split_safetensors(b: &[u8]) -> Option<(Json, &[u8])> {
    let n = u64::from_le_bytes(b.get(..8)?.try_into().ok()?) as usize;
    let h = b.get(8..8usize.checked_add(n)?)?;
    Some((serde_json::from_slice(h).ok()?, &b[8 + n..]))
}

/// Join a header and data into a safetensors file (`len_delta` skews the header length field).
pub fn join_safetensors(h: &Json, data: &[u8], len_delta: i64) -> Vec<u8> {
    let hb = serde_json::to_vec(h).unwrap_or_default();
    let mut out = ((hb.len() as i64 + len_delta) as u64).to_le_bytes().to_vec();
    out.extend(hb);
    out.extend(data);
    out
}

/// safetensors-aware: rewrite a tensor's dtype, shape or data offsets (boundary values, swapped, beyond the
/// file), the header length, nested metadata; else byte-level.
pub fn mutate_safetensors(r: &mut Rng, data: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let Some((mut h, body)) = split_safetensors(data).filter(|_| r.chance(0.8)) else {
        return mutate_bytes(r, data, seeds);
    };
    let mut body = body.to_vec();
    if !h.is_object() {
        mutate_json(r, &mut h);
        return join_safetensors(&h, &body, 0);
    }
    let names: Vec<String> = h
        .as_object()
        .map(|m| m.iter().filter(|(k, v)| *k != "__metadata__" && v.is_object()).map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let mut delta = 0i64;
    let pick = |r: &mut Rng| if names.is_empty() { String::new() } else { r.pick(&names).clone() };
    match r.below(8) {
        0 if !names.is_empty() => {
            let n = pick(r);
            if let Some(t) = h.get_mut(&n).and_then(Json::as_object_mut) {
                t.insert("dtype".into(), Json::String(r.pick(&WORDS[..9]).to_string()));
            }
        }
        1 if !names.is_empty() => {
            let n = pick(r);
            if let Some(s) = h.get_mut(&n).and_then(|t| t.get_mut("shape")).and_then(Json::as_array_mut) {
                let dims: Vec<u64> = s.iter().filter_map(Json::as_u64).collect();
                match r.below(6) {
                    0 if !s.is_empty() => {
                        let i = r.below(s.len());
                        s[i] = Json::from(interesting(r));
                    }
                    1 => s.push(Json::from(interesting(r))),
                    2 => s.clear(),
                    // same element count, other layout: flattened, reversed, unit dims added or dropped
                    3 | 4 if dims.len() == s.len() => {
                        let mut d = dims.clone();
                        match r.below(4) {
                            0 => d = vec![dims.iter().fold(1u64, |a, &x| a.wrapping_mul(x))],
                            1 => d.reverse(),
                            2 => d.insert(r.below(d.len() + 1), 1),
                            _ => d.retain(|&x| x != 1),
                        }
                        *s = d.into_iter().map(Json::from).collect();
                    }
                    _ => {
                        // a product that overflows usize
                        *s = vec![Json::from(1u64 << 32), Json::from(1u64 << 32), Json::from(16u64)];
                    }
                }
            }
        }
        2 if !names.is_empty() => {
            let n = pick(r);
            let len = body.len() as u64;
            if let Some(o) = h.get_mut(&n).and_then(|t| t.get_mut("data_offsets")).and_then(Json::as_array_mut)
                && o.len() == 2
            {
                match r.below(4) {
                    0 => o.swap(0, 1),
                    1 => o[1] = Json::from(interesting(r)),
                    2 => o[0] = Json::from(interesting(r)),
                    _ => o[1] = Json::from(len + 1 + r.below(1 << 20) as u64),
                }
            }
        }
        3 => delta = *r.pick(&[-1i64, 1, -8, 8, 1 << 30, -(1 << 20)]),
        4 => {
            let mut nest = Json::String("x".into());
            for _ in 0..r.below(300) {
                nest = serde_json::json!({ "k": nest });
            }
            if let Some(m) = h.as_object_mut() {
                m.insert("__metadata__".into(), serde_json::json!({ "source": nest.to_string() }));
            }
        }
        5 => body.truncate(r.below(body.len() + 1)),
        6 if names.len() >= 2 => {
            // two tensors over the same bytes, or one over another's range
            let (a, b) = (pick(r), pick(r));
            let offsets = h.get(&b).and_then(|t| t.get("data_offsets")).cloned();
            if let (Some(o), Some(t)) = (offsets, h.get_mut(&a).and_then(Json::as_object_mut)) {
                t.insert("data_offsets".into(), o);
            }
        }
        _ => {
            mutate_json(r, &mut h);
        }
    }
    join_safetensors(&h, &body, delta)
}

// ---------------------------------------------------------------------------------------------------------------
// pickle

/// Argument layout of a pickle opcode: bytes of its argument, or a length prefix, or a newline-terminated line.
fn pickle_arg(op: u8) -> Option<PickleArg> {
    use PickleArg::*;
    Some(match op {
        b'(' | b'.' | b'0' | b'1' | b'2' | b'a' | b'b' | b'd' | b'e' | b'l' | b'N' | b'o' | b'Q' | b'R' | b's'
        | b't' | b'u' | b'}' | b']' | b')' | 0x81 | 0x85 | 0x86 | 0x87 | 0x88 | 0x89 | 0x91 | 0x92 | 0x93 | 0x94
        | 0x97 | 0x98 | 0x90 => Fixed(0),
        b'K' | b'h' | b'q' | 0x80 => Fixed(1),
        b'M' => Fixed(2),
        b'J' | b'j' | b'r' => Fixed(4),
        b'G' | 0x95 => Fixed(8),
        0x8c | b'C' | b'U' | 0x8a => Len1,
        b'X' | b'B' | b'T' | 0x8b => Len4,
        0x8d | 0x8e | 0x96 => Len8,
        b'c' | b'i' => Lines(2),
        b'I' | b'L' | b'F' | b'S' | b'V' | b'P' | b'g' | b'p' => Lines(1),
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum PickleArg {
    Fixed(usize),
    Len1,
    Len4,
    Len8,
    Lines(usize),
}

/// Split a pickle stream into opcodes (each with its argument bytes); stops at the first unknown opcode.
pub fn pickle_ops(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut p = 0;
    while p < b.len() {
        let Some(a) = pickle_arg(b[p]) else { break };
        let start = p;
        p += 1;
        let len = match a {
            PickleArg::Fixed(n) => n,
            PickleArg::Len1 => b.get(p).map(|&n| 1 + n as usize).unwrap_or(1),
            PickleArg::Len4 => {
                b.get(p..p + 4).map(|s| 4 + u32::from_le_bytes(s.try_into().expect("4")) as usize).unwrap_or(4)
            }
            PickleArg::Len8 => b
                .get(p..p + 8)
                .map(|s| 8usize.saturating_add(u64::from_le_bytes(s.try_into().expect("8")) as usize))
                .unwrap_or(8),
            PickleArg::Lines(k) => {
                let mut q = p;
                for _ in 0..k {
                    while q < b.len() && b[q] != b'\n' {
                        q += 1;
                    }
                    q += 1;
                }
                q - p
            }
        };
        p = p.saturating_add(len).min(b.len());
        out.push((start, p));
        if b[start] == b'.' {
            break;
        }
    }
    out
}

/// Pickle fragments an attacker would write, and structure that stresses the machine.
fn pickle_fragment(r: &mut Rng) -> Vec<u8> {
    let callables: [(&str, &str); 8] = [
        ("os", "system"),
        ("posix", "system"),
        ("subprocess", "Popen"),
        ("subprocess", "check_output"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("__builtin__", "eval"),
        ("builtins", "__import__"),
    ];
    let (m, n) = *r.pick(&callables);
    let cmd = b"touch /tmp/dino-sae-pwned";
    let mut f = Vec::new();
    match r.below(10) {
        0 => {
            // GLOBAL + REDUCE
            f.extend(format!("c{m}\n{n}\n").bytes());
            f.push(b'(');
            f.push(0x8c);
            f.push(cmd.len() as u8);
            f.extend(cmd);
            f.extend(b"tR");
        }
        1 => {
            // STACK_GLOBAL + NEWOBJ + BUILD
            for s in [m, n] {
                f.push(0x8c);
                f.push(s.len() as u8);
                f.extend(s.bytes());
            }
            f.push(0x93);
            f.extend(b")\x81}b");
        }
        2 => {
            // INST
            f.extend(format!("(i{m}\n{n}\n").bytes());
        }
        3 => {
            // deep nesting: ]]]...aaa
            let k = 1 + r.below(20000);
            f.extend(std::iter::repeat_n(b']', k));
            f.extend(std::iter::repeat_n(b'a', k - 1));
        }
        4 => {
            // a memo bomb: x = [x, x] thirty times
            f.extend(b"]\x94");
            for i in 0..30u32 {
                f.push(b'j');
                f.extend(i.to_le_bytes());
                f.push(b'j');
                f.extend(i.to_le_bytes());
                f.push(0x86);
                f.push(0x94);
            }
        }
        5 => {
            // marks without ends, tuples of everything
            f.extend(std::iter::repeat_n(b'(', 1 + r.below(1000)));
            f.push(b't');
        }
        6 => {
            // a length that claims more than there is
            f.push(*r.pick(&[b'X', b'B', 0x8d, 0x8e, 0x96]));
            f.extend(interesting(r).to_le_bytes());
        }
        7 => {
            // a persistent id with a huge / odd storage
            f.extend(b"(\x8c\x07storagectorch\nFloatStorage\n\x8c\x010\x8c\x03cpu");
            f.push(0x8a);
            f.push(8);
            f.extend(interesting(r).to_le_bytes());
            f.extend(b"tQ");
        }
        8 => {
            // _rebuild_tensor_v2 with boundary sizes / strides
            f.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
            f.extend(b"(\x8c\x07storagectorch\nFloatStorage\n\x8c\x010\x8c\x03cpuK\x04tQ");
            f.extend(b"K\x00(");
            for _ in 0..1 + r.below(3) {
                f.push(0x8a);
                f.push(8);
                f.extend(interesting(r).to_le_bytes());
            }
            f.extend(b"t(K\x01tK\x00\x89tR");
        }
        _ => {
            f.push(*r.pick(&[
                b'h', b'j', b'g', b'p', b'I', b'L', b'F', b'S', b'V', 0x8a, 0x8b, b'0', b'1', b'2', 0x97, 0x98, 0x91,
                0x92,
            ]));
            f.extend((0..r.below(9)).map(|_| r.next_u64() as u8));
            if r.chance(0.5) {
                f.push(b'\n');
            }
        }
    }
    f
}

/// Opcode-aware pickle mutation: insert attack fragments, rewrite an integer or a length, delete / duplicate /
/// swap opcodes, change the protocol; else byte-level.
pub fn mutate_pickle(r: &mut Rng, data: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let ops = pickle_ops(data);
    if ops.is_empty() || r.chance(0.2) {
        return mutate_bytes(r, data, seeds);
    }
    let mut d = data.to_vec();
    let (s, e) = *r.pick(&ops);
    match r.below(7) {
        0 | 1 => {
            let f = pickle_fragment(r);
            let at = if r.chance(0.5) { s } else { e };
            d.splice(at..at, f);
        }
        2 => {
            // rewrite the argument bytes with a boundary integer
            if e > s + 1 {
                let v = interesting(r).to_le_bytes();
                for (k, b) in (s + 1..e).zip(v.iter().cycle()) {
                    d[k] = *b;
                }
            }
        }
        3 => {
            d.drain(s..e);
        }
        4 => {
            let piece = d[s..e].to_vec();
            for _ in 0..1 + r.below(4) {
                d.splice(e..e, piece.iter().copied());
            }
        }
        5 => {
            if d.len() >= 2 && d[0] == 0x80 {
                d[1] = r.below(7) as u8;
            }
        }
        _ => {
            let (s2, e2) = *r.pick(&ops);
            if s2 >= e {
                let a = d[s..e].to_vec();
                let b = d[s2..e2].to_vec();
                d.splice(s2..e2, a);
                d.splice(s..e, b);
            }
        }
    }
    d
}

// ---------------------------------------------------------------------------------------------------------------
// zip (torch checkpoints)

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

fn zip_stored(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
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

// ---------------------------------------------------------------------------------------------------------------
// protobuf (ONNX)

fn varint(mut v: u64, out: &mut Vec<u8>) {
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
fn pb_fields(b: &[u8]) -> Vec<(usize, usize, u64, u8, usize)> {
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

// ---------------------------------------------------------------------------------------------------------------
// images

/// Image-aware: a PNG's IHDR width / height / depth / colour type (CRC fixed), a JPEG's SOF size, EXIF
/// orientation values; else byte-level.
pub fn mutate_image(r: &mut Rng, data: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = data.to_vec();
    if d.starts_with(b"\x89PNG") && d.len() > 33 && r.chance(0.6) {
        match r.below(3) {
            0 => d[16..20].copy_from_slice(&(interesting(r) as u32).to_be_bytes()),
            1 => d[20..24].copy_from_slice(&(interesting(r) as u32).to_be_bytes()),
            _ => {
                d[24] = *r.pick(&[1u8, 2, 4, 8, 16, 0, 3]);
                d[25] = *r.pick(&[0u8, 2, 3, 4, 6, 7]);
            }
        }
        let crc = crc32(&d[12..29]);
        d[29..33].copy_from_slice(&crc.to_be_bytes());
        return d;
    }
    if d.starts_with(&[0xff, 0xd8]) && r.chance(0.6) {
        // SOF0/SOF2: ff c0/c2 len(2) precision(1) height(2) width(2)
        if let Some(p) = d.windows(2).position(|w| w[0] == 0xff && (w[1] == 0xc0 || w[1] == 0xc2))
            && p + 9 <= d.len()
        {
            let v = (interesting(r) as u16).to_be_bytes();
            let at = p + 5 + 2 * r.below(2);
            d[at..at + 2].copy_from_slice(&v);
            return d;
        }
    }
    mutate_bytes(r, data, seeds)
}

/// CRC-32 (PNG chunks, zip).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

// ---------------------------------------------------------------------------------------------------------------
// Targets

type Mutator = Box<dyn Fn(&mut Rng, &[u8], &[Vec<u8>]) -> Vec<u8> + Send + Sync>;
type Runner = Box<dyn Fn(&[u8]) -> Result<()> + Send + Sync>;

/// One parser under test.
pub struct Target {
    pub name: &'static str,
    pub seeds: Vec<Vec<u8>>,
    mutate: Mutator,
    run: Runner,
    /// Memory cap of one case: bytes allocated at its peak, given the input length.
    cap: fn(usize) -> usize,
}

impl Target {
    /// A target from its parts (the harness's own tests build failing ones).
    pub fn new(
        name: &'static str,
        seeds: Vec<Vec<u8>>,
        mutate: impl Fn(&mut Rng, &[u8], &[Vec<u8>]) -> Vec<u8> + Send + Sync + 'static,
        run: impl Fn(&[u8]) -> Result<()> + Send + Sync + 'static,
        cap: fn(usize) -> usize,
    ) -> Self {
        Self { name, seeds, mutate: Box::new(mutate), run: Box::new(run), cap }
    }
    pub fn mutate(&self, r: &mut Rng, data: &[u8]) -> Vec<u8> {
        (self.mutate)(r, data, &self.seeds)
    }
    /// Run one input (panics propagate; see [`run_case`]).
    pub fn run(&self, data: &[u8]) -> Result<()> {
        (self.run)(data)
    }
    pub fn cap(&self, len: usize) -> usize {
        (self.cap)(len)
    }
}

/// What one case did.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Accepted,
    Refused(String),
    /// A panic (message and where).
    Panic(String),
    /// The case's allocation peak went over the cap (bytes, cap).
    Memory(usize, usize),
}

impl Outcome {
    pub fn is_crash(&self) -> bool {
        matches!(self, Outcome::Panic(_) | Outcome::Memory(..))
    }
}

thread_local! {
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

static HOOKED: std::sync::Once = std::sync::Once::new();

/// Install (once per process) a panic hook that, inside a fuzz case, records where the panic happened instead
/// of printing it; other panics (a failing test) go to the previous hook.
pub fn quiet_panics() {
    HOOKED.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(|c| c.get()) {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                PANIC_AT.with(|p| *p.borrow_mut() = Some(at));
            } else {
                prev(info);
            }
        }));
    });
}

/// Run one input of `t` under `catch_unwind` and the memory check.
pub fn run_case(t: &Target, data: &[u8]) -> Outcome {
    let base = reset_peak();
    PANIC_AT.with(|p| *p.borrow_mut() = None);
    IN_CASE.with(|c| c.set(true));
    let r = catch_unwind(AssertUnwindSafe(|| t.run(data)));
    IN_CASE.with(|c| c.set(false));
    let used = peak().saturating_sub(base);
    match r {
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            let at = PANIC_AT.with(|p| p.borrow_mut().take()).unwrap_or_default();
            Outcome::Panic(format!("{msg} at {at}"))
        }
        Ok(_) if counting() && used > t.cap(data.len()) => Outcome::Memory(used, t.cap(data.len())),
        Ok(Ok(())) => Outcome::Accepted,
        Ok(Err(e)) => Outcome::Refused(e.to_string()),
    }
}

/// Counts of a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub cases: usize,
    pub accepted: usize,
    pub refused: usize,
    pub crashes: Vec<(Outcome, Vec<u8>)>,
    pub slowest: Duration,
    pub peak_bytes: usize,
}

/// Fuzz `t` for `cases` cases or until `until`, whichever comes first, from `seed`: each case mutates a seed
/// or an earlier accepted/refused input (a small pool of recent inputs) 1-3 times. Crashes are kept (at most
/// 20, with their input).
pub fn fuzz(t: &Target, seed: u64, cases: usize, until: Option<Instant>, mut on_case: impl FnMut(&[u8])) -> Stats {
    let mut r = Rng::new(seed);
    let mut st = Stats::default();
    let mut pool: Vec<Vec<u8>> = t.seeds.clone();
    for i in 0..cases {
        if until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        let base = if r.chance(0.6) || pool.len() <= t.seeds.len() {
            r.pick(&t.seeds).clone()
        } else {
            r.pick(&pool[t.seeds.len()..]).clone()
        };
        let mut input = t.mutate(&mut r, &base);
        if r.chance(0.3) {
            input = t.mutate(&mut r, &input);
        }
        if input.len() > 64 << 20 {
            input.truncate(64 << 20);
        }
        on_case(&input);
        let t0 = Instant::now();
        let before = reset_peak();
        let out = run_case(t, &input);
        st.peak_bytes = st.peak_bytes.max(peak().saturating_sub(before));
        st.slowest = st.slowest.max(t0.elapsed());
        st.cases += 1;
        match &out {
            Outcome::Accepted => st.accepted += 1,
            Outcome::Refused(_) => st.refused += 1,
            _ => {
                if st.crashes.len() < 20 {
                    st.crashes.push((out.clone(), input.clone()));
                }
            }
        }
        if !out.is_crash() && input.len() < (4 << 20) {
            if pool.len() < t.seeds.len() + 64 {
                pool.push(input);
            } else {
                let k = t.seeds.len() + i % 64;
                pool[k] = input;
            }
        }
    }
    st
}

/// Replay every file of `dir` (a corpus of former crashes) through `t`: (file, outcome).
pub fn replay_dir(t: &Target, dir: &Path) -> Vec<(PathBuf, Outcome)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| !n.starts_with('.') && !n.ends_with(".md")))
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_default();
            let o = run_case(t, &b);
            (p, o)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// The targets

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(repo().join(rel)).unwrap_or_default()
}

/// A scratch folder of this process and thread.
fn scratch(sub: &str) -> PathBuf {
    let id = format!("{:?}", std::thread::current().id()).chars().filter(char::is_ascii_digit).collect::<String>();
    let d = std::env::temp_dir().join(format!("dino-sae-fuzz-{}-{id}", std::process::id())).join(sub);
    let _ = std::fs::create_dir_all(&d);
    d
}

const MIB: usize = 1 << 20;

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

fn first_pickle(zip: &[u8]) -> Vec<u8> {
    unzip_all(zip)
        .and_then(|e| e.into_iter().find(|(n, _)| n.ends_with("data.pkl")).map(|(_, b)| b))
        .unwrap_or_default()
}

fn png_seed(w: u32, h: u32, color: image::ColorType) -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 5) as u8, (x ^ y) as u8])
    }));
    let img = match color {
        image::ColorType::La8 => image::DynamicImage::ImageLumaA8(img.to_luma_alpha8()),
        image::ColorType::Rgba16 => image::DynamicImage::ImageRgba16(img.to_rgba16()),
        _ => img,
    };
    let mut c = std::io::Cursor::new(Vec::new());
    let _ = img.write_to(&mut c, image::ImageFormat::Png);
    c.into_inner()
}

fn encoded(w: u32, h: u32, f: image::ImageFormat) -> Vec<u8> {
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 9) as u8, (y * 3) as u8, 128])
    }));
    let mut c = std::io::Cursor::new(Vec::new());
    let _ = img.write_to(&mut c, f);
    c.into_inner()
}

/// A tiny DINO-SAE in our folder format (config.json + model.safetensors bytes), fast to load.
pub fn tiny_sae_folder() -> (Vec<u8>, Vec<u8>) {
    let dir = scratch("tiny-sae-seed");
    let cfg = tiny_sae_config();
    let device = crate::cpu();
    if let Ok((m, _)) = crate::model::sae::DinoSae::random(&cfg, 0, &device) {
        let _ = crate::checkpoint::save_sae(&m, &dir, crate::raw::Precision::F16);
    }
    (
        std::fs::read(dir.join("config.json")).unwrap_or_default(),
        std::fs::read(dir.join("model.safetensors")).unwrap_or_default(),
    )
}

/// The config of [`tiny_sae_folder`]: a DINOv2-style ViT of dim 16 with one block and the patchify embedding; a five-stage (x16) ResBlock
/// decoder of widths 8-16.
pub fn tiny_sae_config() -> crate::model::sae::SaeConfig {
    let mut cfg = crate::model::sae::SaeConfig::small_dinov2();
    cfg.encoder.dim = 16;
    cfg.encoder.depth = 1;
    cfg.encoder.heads = 2;
    cfg.encoder.ffn_hidden = 32;
    cfg.encoder.registers = 1;
    cfg.encoder.pos_grid = 2;
    // the resized patchify instead of the stem: a file of a few hundred kB that loads in milliseconds
    cfg.embed = crate::model::sae::EmbedKind::Patchify;
    cfg.decoder = crate::model::decoder::DecoderConfig::small(16);
    cfg.decoder.width_list = vec![8, 8, 16, 16, 16];
    cfg.decoder.depth_list = vec![0, 1, 1, 1, 1];
    cfg.decoder.block_type = vec![crate::model::decoder::BlockType::ResBlock];
    cfg
}

/// Every target: `torch-zip`, `pickle`, `safetensors`, `checkpoint` (our folder: model.safetensors through the
/// whole loader), `onnx`, `config` (our config.json), `decoder-config` (the official `decoder_config` layout),
/// `latent`, `image`, and `session` when the engine has one.
pub fn targets() -> Vec<Target> {
    let mut v = vec![torch_zip_target(), pickle_target(), safetensors_target(), checkpoint_target(), onnx_target()];
    v.extend([config_target(), decoder_config_target(), latent_target(), image_target(), session_target()]);
    v
}

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    targets().into_iter().find(|t| t.name == name)
}

fn torch_zip_target() -> Target {
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
            let t = crate::checkpoint::pickle::read_torch_zip(b)?;
            // what looks like a backbone goes on through the whole loader
            if crate::checkpoint::detect(&t).is_ok() {
                let p = scratch("torch-zip").join("model.pth");
                std::fs::write(&p, b).map_err(|e| crate::EngineError::io(&p, e))?;
                crate::checkpoint::load_backbone(&p, &crate::cpu(), false)?;
            }
            Ok(())
        }),
        // tensors as f32 (x2 for f16 storages), the storages read once, one copy into the model
        cap: |n| 64 * MIB + 12 * n,
    }
}

fn pickle_target() -> Target {
    let fixture = first_pickle(&read("tests/fixtures/dinosae-setA/dinov3/official/model.pth"));
    let mut seeds = vec![fixture];
    for proto in [2u8, 4, 5] {
        seeds.push(first_pickle(&torch_zip(
            &[("a.weight", vec![2, 3], vec![1.0; 6]), ("b", vec![3], vec![2.0; 3])],
            proto,
        )));
    }
    // protocol 2 pickle of plain data: a dict of a list (int, float, None, bools, bytes, a LONG1), memo reuse
    seeds.push(b"\x80\x02}q\x00(X\x03\x00\x00\x00keyq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00N\x88\x89C\x02abM\x00\x01\x8a\x02\xff\x7feh\x01h\x02u.".to_vec());
    Target {
        name: "pickle",
        seeds: seeds.into_iter().filter(|s| !s.is_empty()).collect(),
        mutate: Box::new(mutate_pickle),
        run: Box::new(|b| crate::checkpoint::pickle::unpickle(b).map(|_| ())),
        cap: |n| 64 * MIB + 64 * n,
    }
}

fn safetensors_target() -> Target {
    let mut seeds = vec![read("tests/fixtures/dinosae-setA/dinov3/hf/model.safetensors")];
    let mut t = crate::raw::TensorMap::new();
    t.insert("a".into(), crate::raw::RawTensor { shape: vec![2, 3], data: vec![1.0; 6] });
    t.insert("b".into(), crate::raw::RawTensor { shape: vec![4], data: vec![0.5; 4] });
    for p in [crate::raw::Precision::F32, crate::raw::Precision::F16] {
        let f = scratch("st-seed").join("s.safetensors");
        if crate::raw::write_safetensors(&f, &t, &[("k".to_string(), "v".to_string())].into_iter().collect(), p).is_ok()
        {
            seeds.push(std::fs::read(&f).unwrap_or_default());
        }
    }
    Target {
        name: "safetensors",
        seeds: seeds.into_iter().filter(|s| !s.is_empty()).collect(),
        mutate: Box::new(mutate_safetensors),
        run: Box::new(|b| crate::raw::safetensors_from_bytes(b).map(|_| ())),
        // every dtype becomes f32: at most 4 x (u8 / bool), plus the header
        cap: |n| 16 * MIB + 6 * n,
    }
}

fn checkpoint_target() -> Target {
    let (_, tiny) = tiny_sae_folder();
    let seeds = vec![tiny, read("tests/fixtures/dinosae-setA/dinov3/hf/model.safetensors")];
    Target {
        name: "checkpoint",
        seeds: seeds.into_iter().filter(|s| !s.is_empty()).collect(),
        mutate: Box::new(mutate_safetensors),
        run: Box::new(|b| {
            let p = scratch("checkpoint").join("model.safetensors");
            std::fs::write(&p, b).map_err(|e| crate::EngineError::io(&p, e))?;
            let src = crate::checkpoint::read(&p)?;
            match src.format {
                crate::checkpoint::Format::DinoSae => crate::checkpoint::load_sae(&p, &crate::cpu(), false).map(|_| ()),
                crate::checkpoint::Format::Decoder => {
                    crate::checkpoint::guess_decoder(&crate::checkpoint::to_internal(&src)?.tensors, "").map(|_| ())
                }
                _ => crate::checkpoint::load_backbone(&p, &crate::cpu(), false).map(|_| ()),
            }
        }),
        cap: |n| 64 * MIB + 16 * n,
    }
}

fn onnx_target() -> Target {
    Target {
        name: "onnx",
        seeds: vec![onnx_seed()],
        mutate: Box::new(mutate_protobuf),
        run: Box::new(|b| crate::checkpoint::onnx::read_onnx(b).map(|_| ())),
        cap: |n| 16 * MIB + 8 * n,
    }
}

fn config_target() -> Target {
    let (cfg, model) = tiny_sae_folder();
    let dir = scratch("config-target");
    let _ = std::fs::write(dir.join("model.safetensors"), &model);
    Target {
        name: "config",
        seeds: vec![cfg],
        mutate: Box::new(mutate_json_text),
        run: Box::new(move |b| {
            let dir = scratch("config-target");
            if !dir.join("model.safetensors").exists() {
                let _ = std::fs::write(dir.join("model.safetensors"), &model);
            }
            let p = dir.join("config.json");
            std::fs::write(&p, b).map_err(|e| crate::EngineError::io(&p, e))?;
            crate::checkpoint::load_sae(&dir, &crate::cpu(), false).map(|_| ())
        }),
        cap: |n| 64 * MIB + 64 * n,
    }
}

fn decoder_config_target() -> Target {
    let seeds = vec![
        read("tests/fixtures/dinov2-evit-setA/decoder/config.json"),
        read("tests/fixtures/dinosae-setA/sae/config.json"),
    ];
    let weights =
        crate::raw::read_safetensors(repo().join("tests/fixtures/dinov2-evit-setA/decoder/model.safetensors"))
            .unwrap_or_default();
    let numel: usize = weights.values().map(|t| t.numel()).sum();
    Target {
        name: "decoder-config",
        seeds: seeds.into_iter().filter(|s| !s.is_empty()).collect(),
        mutate: Box::new(mutate_json_text),
        run: Box::new(move |b| {
            let cfg = decoder_config_from_json(b)?;
            crate::preflight::check_weights_match(
                "decoder_config",
                crate::preflight::decoder_numel(&cfg),
                numel,
                &crate::preflight::Budget::from_env(),
            )?;
            let mut ws = crate::weights::WeightSource::from_map(weights.clone(), &crate::cpu());
            crate::model::decoder::Decoder::load(&mut ws, "", &cfg)?;
            // the config is what is fuzzed: a report of missing / mismatched weights is a fine outcome
            let _report = ws.finish();
            Ok(())
        }),
        cap: |n| 96 * MIB + 64 * n,
    }
}

/// The official layout: `{"decoder_config": {...}, ...}` (or the bare config), as the fixtures and released
/// checkpoints write it; validated.
pub fn decoder_config_from_json(b: &[u8]) -> Result<crate::model::decoder::DecoderConfig> {
    let bad = |e: String| crate::EngineError::Config(format!("decoder_config: {e}"));
    let v: Json = serde_json::from_slice(b).map_err(|e| bad(e.to_string()))?;
    let dc = v.get("decoder_config").cloned().unwrap_or(v);
    let cfg: crate::model::decoder::DecoderConfig = serde_json::from_value(dc).map_err(|e| bad(e.to_string()))?;
    cfg.validate()?;
    Ok(cfg)
}

fn latent_target() -> Target {
    let mut t = crate::raw::TensorMap::new();
    t.insert(
        "latent".into(),
        crate::raw::RawTensor { shape: vec![1, 16, 3, 4], data: (0..192).map(|i| (i as f32).sin()).collect() },
    );
    t.insert("cls".into(), crate::raw::RawTensor { shape: vec![1, 16], data: vec![0.1; 16] });
    let f = scratch("latent-seed").join("l.safetensors");
    let mut seeds = Vec::new();
    for p in [crate::raw::Precision::F32, crate::raw::Precision::F16] {
        if crate::raw::write_safetensors(&f, &t, &Default::default(), p).is_ok() {
            seeds.push(std::fs::read(&f).unwrap_or_default());
        }
    }
    Target {
        name: "latent",
        seeds,
        mutate: Box::new(mutate_safetensors),
        run: Box::new(|b| {
            let z = crate::raw::latent_from_bytes(b, Some(16))?;
            let cfg = tiny_sae_config();
            crate::preflight::check_decode(
                &cfg,
                z.shape[0],
                z.shape[2],
                z.shape[3],
                &crate::preflight::Budget::bytes(256 << 20),
            )?;
            Ok(())
        }),
        cap: |n| 16 * MIB + 6 * n,
    }
}

fn image_target() -> Target {
    let seeds = vec![
        png_seed(24, 17, image::ColorType::Rgb8),
        png_seed(9, 12, image::ColorType::La8),
        png_seed(5, 6, image::ColorType::Rgba16),
        encoded(32, 24, image::ImageFormat::Jpeg),
        encoded(13, 7, image::ImageFormat::Bmp),
        encoded(16, 9, image::ImageFormat::Tiff),
        encoded(12, 12, image::ImageFormat::WebP),
        read("tests/data/cmyk_red.jpg"),
    ];
    Target {
        name: "image",
        seeds: seeds.into_iter().filter(|s| !s.is_empty()).collect(),
        mutate: Box::new(mutate_image),
        run: Box::new(|b| crate::image_io::decode_rgb(b).map(|_| ())),
        // the decoder's own allocation limit (MAX_PIXELS x 8 bytes) plus the RGB copy
        cap: |n| crate::image_io::MAX_PIXELS as usize * 12 + 16 * MIB + 4 * n,
    }
}

fn session_target() -> Target {
    let mut s = crate::session::Session {
        image: Some("photo.jpg".into()),
        latents: Some("s.latents.safetensors".into()),
        ..Default::default()
    };
    s.edit.patches = vec![1, 2, 3];
    s.ui = serde_json::json!({ "tab": "steer", "zoom": 1.5 });
    let seed = serde_json::to_vec_pretty(&s).unwrap_or_default();
    let plain = serde_json::to_vec_pretty(&crate::session::Session::default()).unwrap_or_default();
    let latents = latent_target().seeds.first().cloned().unwrap_or_default();
    Target {
        name: "session",
        seeds: vec![seed, plain],
        mutate: Box::new(mutate_json_text),
        run: Box::new(move |b| {
            let dir = scratch("session");
            let _ = std::fs::write(dir.join("s.latents.safetensors"), &latents);
            let p = dir.join("s.json");
            std::fs::write(&p, b).map_err(|e| crate::EngineError::io(&p, e))?;
            crate::session::Session::load(&p).map(|_| ())
        }),
        cap: |n| 16 * MIB + 64 * n,
    }
}

/// Save a crash input to `dir/<name>` (name from a hash of the bytes); returns the path.
pub fn save_crash(dir: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let h = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let p = dir.join(format!("crash-{h:016x}.bin"));
    std::fs::write(&p, data)?;
    Ok(p)
}
