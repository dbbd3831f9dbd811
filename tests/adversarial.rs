//! Adversarial checkpoints, one test per class: pickles that try to run code (GLOBAL / STACK_GLOBAL + REDUCE,
//! NEWOBJ, BUILD, INST on os.system, subprocess, builtins eval/exec; nested inside tensors; protocols 0-5),
//! zip bombs (an entry that inflates to GBs, overlapping entries, a stored entry claiming 4 GiB), safetensors
//! headers claiming 2^60 bytes or offsets beyond the file, and shapes whose element count overflows.
//!
//! Each must be refused (or read as inert data) without executing anything (a marker file the payload would
//! create stays absent), without reading more than the file holds, and within a memory cap measured by a
//! counting allocator (64 MiB + 4 x the file), within seconds.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dino_sae_fuzz::{self as fuzz, CountingAlloc};
use engine::checkpoint::pickle::{Value, read_torch_zip, unpickle};
use engine::tensor_file::{latent_from_bytes, safetensors_from_bytes};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

static SERIAL: Mutex<()> = Mutex::new(());

/// The memory budget the checkpoint reader is given (the environment's, as `checkpoint::read` uses).
fn budget() -> u64 {
    engine::budget::Budget::from_env().bytes
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dino-sae-adversarial-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tmp");
    d.join(name)
}

/// Run `f` on a file of `len` bytes: it must finish within 10 s and allocate at most 64 MiB + 4 x len at its peak.
fn bounded<T>(what: &str, len: usize, f: impl FnOnce() -> T) -> T {
    let base = fuzz::reset_peak();
    let t0 = Instant::now();
    let r = f();
    let used = fuzz::peak().saturating_sub(base);
    let cap = (64 << 20) + 4 * len;
    assert!(t0.elapsed() < Duration::from_secs(10), "{what}: took {:?}", t0.elapsed());
    assert!(used <= cap, "{what}: allocated {used} bytes at its peak (cap {cap})");
    r
}

/// The marker a payload would create.
fn marker() -> PathBuf {
    tmp("pwned")
}

fn payload_cmd() -> String {
    format!("touch {}", marker().display())
}

/// A pickle is refused or read as inert data, and nothing ran.
fn assert_inert(what: &str, pkl: &[u8]) {
    let _ = std::fs::remove_file(marker());
    // refused, or an inert value (calls are kept as opaque records, never resolved)
    let _ = bounded(what, pkl.len(), || unpickle(pkl));
    // and as a torch checkpoint it loads no tensors / is refused
    let zip = fuzz::zip_entries(
        &[("archive/data.pkl".into(), pkl.to_vec()), ("archive/version".into(), b"3\n".to_vec())],
        false,
    );
    let z = bounded(what, zip.len(), || read_torch_zip(&zip, budget()));
    assert!(z.as_ref().map(|m| m.is_empty()).unwrap_or(true), "{what}: tensors from an attack: {z:?}");
    let p = tmp(&format!("{}.pth", what.replace(' ', "_")));
    std::fs::write(&p, &zip).expect("write");
    let e = engine::checkpoint::read(&p).expect_err("an attack pickle is no checkpoint");
    assert!(matches!(e, engine::EngineError::Checkpoint(_)), "{what}: {e}");
    assert!(!marker().exists(), "{what}: the payload ran");
}

fn short_str(s: &str) -> Vec<u8> {
    let mut v = vec![0x8c, s.len() as u8];
    v.extend(s.bytes());
    v
}

fn binunicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((s.len() as u32).to_le_bytes());
    v.extend(s.bytes());
    v
}

#[test]
fn pickles_that_try_to_run_code_are_inert() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cmd = payload_cmd();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // protocol 0 (text): GLOBAL + MARK + STRING + TUPLE + REDUCE
    for (m, n) in [
        ("os", "system"),
        ("posix", "system"),
        ("subprocess", "call"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("__builtin__", "eval"),
    ] {
        cases.push((format!("p0 GLOBAL REDUCE {m}.{n}"), format!("c{m}\n{n}\n(S'{cmd}'\ntR.").into_bytes()));
    }
    // protocol 0 INST: instantiate a class with arguments in one opcode
    cases.push(("p0 INST subprocess.Popen".into(), format!("(S'{cmd}'\nisubprocess\nPopen\n.").into_bytes()));
    cases.push(("p0 INST os.system".into(), format!("(S'{cmd}'\nios\nsystem\n.").into_bytes()));
    // protocol 1: binary GLOBAL + BINSTRING + TUPLE1 + REDUCE
    {
        let mut p = b"cos\nsystem\n".to_vec();
        p.push(b'T');
        p.extend((cmd.len() as u32).to_le_bytes());
        p.extend(cmd.bytes());
        p.extend([0x85, b'R', b'.']);
        cases.push(("p1 GLOBAL BINSTRING REDUCE os.system".into(), p));
    }
    // protocols 2 and 3: PROTO + GLOBAL + BINUNICODE + TUPLE1 + REDUCE, and NEWOBJ + BUILD (__setstate__)
    for proto in [2u8, 3] {
        for (m, n) in [("os", "system"), ("subprocess", "check_output"), ("builtins", "exec")] {
            let mut p = vec![0x80, proto];
            p.extend(format!("c{m}\n{n}\n").bytes());
            p.extend(binunicode(&cmd));
            p.extend([0x85, b'R', b'.']);
            cases.push((format!("p{proto} GLOBAL REDUCE {m}.{n}"), p));
        }
        let mut p = vec![0x80, proto];
        p.extend(b"csubprocess\nPopen\n");
        p.extend(binunicode(&cmd));
        p.extend([0x85, 0x81]); // NEWOBJ
        p.push(b'}');
        p.extend(binunicode("__setstate__"));
        p.extend(b"cbuiltins\nexec\n");
        p.extend([b's', b'b', b'.']); // BUILD with a state that names exec
        cases.push((format!("p{proto} NEWOBJ BUILD subprocess.Popen"), p));
    }
    // protocol 4: FRAME + SHORT_BINUNICODE + STACK_GLOBAL + MEMOIZE + REDUCE
    for (m, n) in [("os", "system"), ("builtins", "eval"), ("subprocess", "run")] {
        let mut body = Vec::new();
        body.extend(short_str(m));
        body.push(0x94);
        body.extend(short_str(n));
        body.push(0x94);
        body.push(0x93); // STACK_GLOBAL
        body.push(0x94);
        body.extend(short_str(&cmd));
        body.extend([0x85, b'R', 0x94, b'.']);
        let mut p = vec![0x80, 4, 0x95];
        p.extend((body.len() as u64).to_le_bytes());
        p.extend(body);
        cases.push((format!("p4 STACK_GLOBAL REDUCE {m}.{n}"), p));
    }
    // protocol 5: BYTEARRAY8 / NEXT_BUFFER / READONLY_BUFFER around an exec
    {
        let mut p = vec![0x80, 5];
        p.extend(short_str("builtins"));
        p.extend(short_str("exec"));
        p.push(0x93);
        p.push(0x96); // BYTEARRAY8
        p.extend((cmd.len() as u64).to_le_bytes());
        p.extend(cmd.bytes());
        p.extend([0x85, b'R', 0x97, 0x98, b'.']);
        cases.push(("p5 BYTEARRAY8 NEXT_BUFFER exec".into(), p));
    }
    // nested: a torch state dict whose tensor storage is built by os.system, and whose value is eval(...)
    {
        let mut p = vec![0x80, 2];
        p.extend(b"ccollections\nOrderedDict\n)R(");
        p.extend(binunicode("weight"));
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend(b"cos\nsystem\n");
        p.extend(binunicode(&cmd));
        p.extend([0x85, b'R']); // the "storage" is a call of os.system
        p.extend(b"K\x00(K\x02tK\x01\x85\x89ccollections\nOrderedDict\n)RtR");
        p.extend(binunicode("bias"));
        p.extend(b"cbuiltins\neval\n");
        p.extend(binunicode("__import__('os').system('true')"));
        p.extend([0x85, b'R', b'u', b'.']);
        cases.push(("nested REDUCE inside a tensor".into(), p));
    }
    for (what, p) in &cases {
        assert_inert(what, p);
    }
    // GLOBAL + REDUCE is kept as an opaque record, never resolved: the value says what it would have called
    let v = unpickle(b"cos\nsystem\n(S'x'\ntR.");
    if let Ok(Value::Opaque(f, _)) = &v {
        assert!(matches!(&**f, Value::Global(m, n) if m == "os" && n == "system"), "{v:?}");
    }
    // the same machinery still reads real checkpoints at every binary protocol
    for proto in [2u8, 3, 4, 5] {
        let z = fuzz::torch_zip(&[("w", vec![2, 3], (0..6).map(|i| i as f32).collect())], proto);
        let t = read_torch_zip(&z, budget()).unwrap_or_else(|e| panic!("protocol {proto}: {e}"));
        assert_eq!(t["w"].data, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0], "protocol {proto}");
    }
    println!("{} attack pickles refused or inert", cases.len());
}

#[test]
fn deeply_nested_and_self_copying_pickles_are_refused() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 1,000,000 lists on the stack, to be nested into each other (]]]...aaa): refused by the stack limit
    let n = 1_000_000;
    let mut p = vec![0x80, 2];
    p.extend(std::iter::repeat_n(b']', n));
    p.extend(std::iter::repeat_n(b'a', n - 1));
    p.push(b'.');
    let e = bounded("a million lists", p.len(), || unpickle(&p)).expect_err("refused");
    assert!(e.to_string().contains("on the stack"), "{e}");
    // nesting with a small stack: x = [x] 100,000 times through the memo; dropping or printing such a value
    // would overflow the thread's stack
    let mut p = vec![0x80, 2, b']', b'q', 0];
    for _ in 0..100_000 {
        p.extend([b']', b'h', 0, b'a', b'q', 0]);
    }
    p.push(b'.');
    let e = bounded("deep nesting", p.len(), || unpickle(&p)).expect_err("refused");
    assert!(e.to_string().contains("nested deeper"), "{e}");
    // "billion laughs": x = (x, x) forty times through the memo (2^40 copies)
    let mut p = vec![0x80, 2, b']', b'q', 0];
    for i in 0..40u8 {
        p.extend([b'h', i, b'h', i, 0x86, b'q', i + 1]);
    }
    p.push(b'.');
    let e = bounded("billion laughs", p.len(), || unpickle(&p)).expect_err("refused");
    assert!(e.to_string().contains("memo"), "{e}");
}

/// A zip file written by hand: local headers + data, central directory entries (each naming a local header
/// offset), end record. Sizes and methods are whatever the caller claims.
struct RawZip {
    out: std::io::BufWriter<std::fs::File>,
    pos: u64,
    central: Vec<u8>,
    entries: u16,
}

impl RawZip {
    fn new(path: &std::path::Path) -> Self {
        Self {
            out: std::io::BufWriter::new(std::fs::File::create(path).expect("create")),
            pos: 0,
            central: Vec::new(),
            entries: 0,
        }
    }
    fn put(&mut self, b: &[u8]) {
        self.out.write_all(b).expect("write");
        self.pos += b.len() as u64;
    }
    /// A local header; returns its offset. The data follows through `put`.
    fn local(&mut self, name: &str, method: u16, crc: u32, compressed: u32, size: u32) -> u32 {
        let off = self.pos as u32;
        let mut h = vec![0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0];
        h.extend(method.to_le_bytes());
        h.extend([0, 0, 0x21, 0]); // time, date
        h.extend(crc.to_le_bytes());
        h.extend(compressed.to_le_bytes());
        h.extend(size.to_le_bytes());
        h.extend((name.len() as u16).to_le_bytes());
        h.extend(0u16.to_le_bytes());
        h.extend(name.bytes());
        self.put(&h);
        off
    }
    fn central(&mut self, name: &str, method: u16, crc: u32, compressed: u32, size: u32, offset: u32) {
        let c = &mut self.central;
        c.extend([0x50, 0x4b, 0x01, 0x02, 20, 0, 20, 0, 0, 0]);
        c.extend(method.to_le_bytes());
        c.extend([0, 0, 0x21, 0]);
        c.extend(crc.to_le_bytes());
        c.extend(compressed.to_le_bytes());
        c.extend(size.to_le_bytes());
        c.extend((name.len() as u16).to_le_bytes());
        c.extend([0; 12]); // extra, comment, disk, internal attrs, external attrs (4)
        c.extend(offset.to_le_bytes());
        c.extend(name.bytes());
        self.entries += 1;
    }
    fn finish(mut self) -> u64 {
        let cd_off = self.pos as u32;
        let cd = std::mem::take(&mut self.central);
        self.put(&cd);
        let mut e = vec![0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0];
        e.extend(self.entries.to_le_bytes());
        e.extend(self.entries.to_le_bytes());
        e.extend((cd.len() as u32).to_le_bytes());
        e.extend(cd_off.to_le_bytes());
        e.extend(0u16.to_le_bytes());
        self.put(&e);
        self.out.flush().expect("flush");
        self.pos
    }
}

/// Deflate stream (fixed Huffman) of one zero byte then `matches` copies of 258 bytes at distance 1: it inflates
/// to 1 + 258 * matches zeros from 13 bits per match. Written in pieces (streaming), returns the bytes written.
fn deflate_zeros(z: &mut RawZip, matches: u64) -> u64 {
    let (mut acc, mut nbits, mut written) = (0u64, 0u32, 0u64);
    let mut buf = Vec::with_capacity(1 << 16);
    let mut bits = |v: u64, n: u32, buf: &mut Vec<u8>, z: &mut RawZip| {
        acc |= v << nbits;
        nbits += n;
        while nbits >= 8 {
            buf.push(acc as u8);
            acc >>= 8;
            nbits -= 8;
        }
        if buf.len() >= 1 << 16 {
            z.put(buf);
            written += buf.len() as u64;
            buf.clear();
        }
    };
    // Huffman codes go most significant bit first: reverse them into the LSB-first stream
    let rev = |code: u64, n: u32| (0..n).fold(0u64, |a, i| a | (((code >> i) & 1) << (n - 1 - i)));
    bits(1, 1, &mut buf, z); // BFINAL
    bits(1, 2, &mut buf, z); // BTYPE = 01 (fixed)
    bits(rev(0x30, 8), 8, &mut buf, z); // literal 0
    let len258 = rev(0b1100_0101, 8); // length code 285
    for _ in 0..matches {
        bits(len258, 8, &mut buf, z);
        bits(0, 5, &mut buf, z); // distance code 0 = 1
    }
    bits(0, 7, &mut buf, z); // end of block (256)
    bits(0, 7, &mut buf, z); // flush
    z.put(&buf);
    written + buf.len() as u64
}

#[test]
fn zip_bombs_are_refused_without_inflating() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 1. data.pkl deflated: 2 GiB of zeros in ~13 MB
    let p = tmp("bomb-deflate.pth");
    let mut z = RawZip::new(&p);
    let matches = (2u64 << 30) / 258;
    let inflated = 1 + 258 * matches;
    // sizes are patched into the central directory; the local header carries the same claims
    let compressed = (matches * 13 + 8 + 3 + 14) / 8 + 1;
    let off = z.local("archive/data.pkl", 8, 0, compressed as u32, inflated as u32);
    let written = deflate_zeros(&mut z, matches);
    z.central("archive/data.pkl", 8, 0, written as u32, inflated as u32, off);
    let len = z.finish();
    assert!(len < 20 << 20 && inflated > 2_000_000_000, "a {len}-byte file inflating to {inflated}");
    let bytes = std::fs::read(&p).expect("read");
    let e = bounded("deflate bomb", bytes.len(), || read_torch_zip(&bytes, budget())).expect_err("refused");
    println!("deflate bomb ({len} bytes -> {inflated}): {e}");
    let e = bounded("deflate bomb via the loader", bytes.len(), || engine::checkpoint::read(&p)).expect_err("refused");
    assert!(matches!(e, engine::EngineError::Checkpoint(_)), "{e}");

    // 2. overlapping entries: 300 storages named by the pickle, every central-directory entry over the same
    //    1 MiB of the file
    let n = 300;
    let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let pkl300 = {
        let small: Vec<(&str, Vec<usize>, Vec<f32>)> =
            names.iter().map(|a| (a.as_str(), vec![1usize << 18], vec![0.0; 1])).collect();
        let e = fuzz::unzip_all(&fuzz::torch_zip(&small, 2)).expect("zip");
        e.into_iter().find(|(n, _)| n.ends_with("data.pkl")).expect("pkl").1
    };
    // the pickle says numel 1 per storage in its persistent id, but the shapes ask for 2^18 values each
    let p = tmp("bomb-overlap.pth");
    let mut z = RawZip::new(&p);
    let data = vec![0u8; 1 << 20];
    let (crc_d, crc_p) = (fuzz::crc32(&data), fuzz::crc32(&pkl300));
    let off_data = z.local("archive/data/0", 0, crc_d, data.len() as u32, data.len() as u32);
    z.put(&data);
    let off_pkl = z.local("archive/data.pkl", 0, crc_p, pkl300.len() as u32, pkl300.len() as u32);
    z.put(&pkl300);
    z.central("archive/data.pkl", 0, crc_p, pkl300.len() as u32, pkl300.len() as u32, off_pkl);
    for i in 0..n {
        z.central(&format!("archive/data/{i}"), 0, crc_d, data.len() as u32, data.len() as u32, off_data);
    }
    let len = z.finish();
    let bytes = std::fs::read(&p).expect("read");
    let e = bounded("overlapping entries", bytes.len(), || read_torch_zip(&bytes, budget())).expect_err("refused");
    assert!(e.to_string().contains("archive holds") || e.to_string().contains("beyond"), "{e}");
    println!("overlapping entries ({len} bytes, {n} x 1 MiB claimed): {e}");

    // 3. a stored storage whose headers claim 4 GiB - 1 but hold 16 bytes
    let p = tmp("bomb-claim.pth");
    let mut z = RawZip::new(&p);
    let off_d = z.local("archive/data/0", 0, 0, u32::MAX, u32::MAX);
    z.put(&[0u8; 16]);
    let pk = fuzz::unzip_all(&fuzz::torch_zip(&[("w", vec![4], vec![1.0; 4])], 2)).expect("zip");
    let pk = pk.into_iter().find(|(n, _)| n.ends_with("data.pkl")).expect("pkl").1;
    let crc = fuzz::crc32(&pk);
    let off_p = z.local("archive/data.pkl", 0, crc, pk.len() as u32, pk.len() as u32);
    z.put(&pk);
    z.central("archive/data.pkl", 0, crc, pk.len() as u32, pk.len() as u32, off_p);
    z.central("archive/data/0", 0, 0, u32::MAX, u32::MAX, off_d);
    z.finish();
    let bytes = std::fs::read(&p).expect("read");
    let e = bounded("4 GiB claim", bytes.len(), || read_torch_zip(&bytes, budget())).expect_err("refused");
    println!("stored entry claiming 4 GiB: {e}");
}

/// A safetensors file from a header JSON and data bytes.
fn st(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend(header.bytes());
    v.extend(data);
    v
}

#[test]
fn safetensors_claiming_more_than_the_file_are_refused() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = [0u8; 64];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("header length 2^60", {
            let mut v = (1u64 << 60).to_le_bytes().to_vec();
            v.extend(b"{}");
            v
        }),
        ("header length u64::MAX", {
            let mut v = u64::MAX.to_le_bytes().to_vec();
            v.extend(b"{}");
            v
        }),
        (
            "a tensor of 2^60 bytes",
            st(
                r#"{"latent":{"dtype":"F32","shape":[268435456,1073741824],"data_offsets":[0,1152921504606846976]}}"#,
                &data,
            ),
        ),
        (
            "offsets beyond the file",
            st(r#"{"latent":{"dtype":"F32","shape":[1,16,4,4],"data_offsets":[0,1024]}}"#, &data),
        ),
        ("end before start", st(r#"{"latent":{"dtype":"F32","shape":[4],"data_offsets":[32,16]}}"#, &data)),
        (
            "offsets past u64",
            st(
                r#"{"latent":{"dtype":"F32","shape":[4],"data_offsets":[18446744073709551615,18446744073709551615]}}"#,
                &data,
            ),
        ),
    ];
    for (what, b) in &cases {
        let e = bounded(what, b.len(), || safetensors_from_bytes(b)).expect_err(what);
        assert!(matches!(e, engine::EngineError::Checkpoint(_)), "{what}: {e}");
        assert!(bounded(what, b.len(), || latent_from_bytes(b, None)).is_err(), "{what}");
        let p = tmp("claim.safetensors");
        std::fs::write(&p, b).expect("write");
        assert!(bounded(what, b.len(), || engine::checkpoint::read(&p)).is_err(), "{what}");
        println!("{what}: {e}");
    }
}

#[test]
fn shapes_whose_element_count_overflows_are_refused() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let big = 1u64 << 32;
    // safetensors: 2^32 x 2^32 x 16 elements over 64 bytes
    let b =
        st(&format!(r#"{{"latent":{{"dtype":"F32","shape":[{big},{big},16],"data_offsets":[0,64]}}}}"#), &[0u8; 64]);
    assert!(bounded("safetensors overflow", b.len(), || safetensors_from_bytes(&b)).is_err());
    assert!(bounded("latent overflow", b.len(), || latent_from_bytes(&b, None)).is_err());
    // torch pickle: _rebuild_tensor_v2 with size (2^32, 2^32, 16)
    let mut p = vec![0x80, 2];
    p.extend(b"}(");
    p.extend(binunicode("w"));
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    p.extend(binunicode("storage"));
    p.extend(b"ctorch\nFloatStorage\n");
    p.extend(binunicode("0"));
    p.extend(binunicode("cpu"));
    p.extend(b"K\x10tQK\x00(");
    for v in [big, big, 16] {
        p.push(0x8a);
        p.push(8);
        p.extend(v.to_le_bytes());
    }
    p.extend(b"t(K\x00K\x00K\x01t\x89ccollections\nOrderedDict\n)RtRu.");
    let zip = fuzz::zip_entries(&[("archive/data.pkl".into(), p), ("archive/data/0".into(), vec![0u8; 64])], false);
    let e = bounded("pickle overflow", zip.len(), || read_torch_zip(&zip, budget())).expect_err("refused");
    assert!(e.to_string().contains("overflow") || e.to_string().contains("values"), "{e}");
    // stride products that overflow: size (3, 3), stride (2^62, 2^62)
    let mut p = vec![0x80, 2];
    p.extend(b"}(");
    p.extend(binunicode("w"));
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    p.extend(binunicode("storage"));
    p.extend(b"ctorch\nFloatStorage\n");
    p.extend(binunicode("0"));
    p.extend(binunicode("cpu"));
    p.extend(b"K\x10tQK\x00(K\x03K\x03t(");
    for _ in 0..2 {
        p.push(0x8a);
        p.push(8);
        p.extend((1u64 << 62).to_le_bytes());
    }
    p.extend(b"t\x89ccollections\nOrderedDict\n)RtRu.");
    let zip = fuzz::zip_entries(&[("archive/data.pkl".into(), p), ("archive/data/0".into(), vec![0u8; 64])], false);
    assert!(bounded("stride overflow", zip.len(), || read_torch_zip(&zip, budget())).is_err());
    // ONNX: an initialiser with dims (2^32, 2^32, 16) and 64 bytes of raw data is not a weight
    let mut t = Vec::new();
    for d in [big, big, 16] {
        fuzz::pb_varint(1, d, &mut t);
    }
    fuzz::pb_varint(2, 1, &mut t);
    fuzz::pb_bytes(8, b"w", &mut t);
    fuzz::pb_bytes(9, &[0u8; 64], &mut t);
    let mut g = Vec::new();
    fuzz::pb_bytes(5, &t, &mut g);
    let mut m = Vec::new();
    fuzz::pb_bytes(7, &g, &mut m);
    let graph = bounded("onnx overflow", m.len(), || engine::checkpoint::onnx::read_onnx(&m)).expect("parses");
    assert!(graph.initializers.is_empty(), "an overflowing shape must not become a weight");
    // a config asking for a model far larger than its weights (and than any budget): refused before allocating
    let mut cfg = fuzz::tiny_sae_config();
    cfg.encoder.dim = 1 << 20;
    cfg.encoder.depth = 1 << 10;
    let n = engine::preflight::sae_numel(&cfg);
    assert!(n > 1e15, "{n}");
    let e = engine::preflight::check_weights_match("config.json", n, 1000, &engine::preflight::Budget::bytes(8 << 30))
        .expect_err("refused");
    assert!(e.to_string().contains("budget"), "{e}");
}
