//! The fuzz harness (the `dino-sae-fuzz` crate) as part of the test command: a bounded, seeded run of every parser that
//! reads user files (a few thousand cases each where the parser is fast, a time cap per parser otherwise), the
//! replay of every former crash in `tests/fuzz-corpus/<parser>/`, and checks that the harness itself sees a
//! panic and a memory excess. Long runs: `cargo run --example fuzz -- --minutes N`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dino_sae_fuzz::{self as fuzz, CountingAlloc, Outcome, Rng, Target};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The allocation counter is process-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz-corpus")
}

/// Cases per parser, and the time cap per parser (a slow parser stops at the cap; the count it reached is
/// printed and must be at least `MIN_CASES`).
const CASES: usize = 2000;
const CAP: Duration = Duration::from_secs(4);
const MIN_CASES: usize = 150;

#[test]
fn every_parser_survives_a_bounded_fuzz_run() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    fuzz::quiet_panics();
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for t in fuzz::targets() {
        assert!(!t.seeds.is_empty(), "{}: no seeds", t.name);
        // every seed is a valid input the parser accepts (else the mutations start from garbage)
        for (i, s) in t.seeds.iter().enumerate() {
            let o = fuzz::run_case(&t, s);
            assert_eq!(o, Outcome::Accepted, "{} seed {i} ({} bytes)", t.name, s.len());
        }
        let t0 = Instant::now();
        let st = fuzz::fuzz(&t, 20261206, CASES, Some(Instant::now() + CAP), |_| {});
        lines.push(format!(
            "{:<15} {:>5} cases in {:.1} s: {} accepted, {} refused, {} crashes; slowest case {:.0} ms, peak {:.1} MiB",
            t.name,
            st.cases,
            t0.elapsed().as_secs_f64(),
            st.accepted,
            st.refused,
            st.crashes.len(),
            st.slowest.as_secs_f64() * 1e3,
            st.peak_bytes as f64 / 1048576.0
        ));
        if st.cases < MIN_CASES {
            failures.push(format!("{}: only {} cases in {CAP:?}", t.name, st.cases));
        }
        if st.accepted + st.refused == 0 {
            failures.push(format!("{}: no case ran to completion", t.name));
        }
        for (o, input) in &st.crashes {
            let saved = fuzz::save_crash(&std::env::temp_dir().join("dino-sae-fuzz-crashes").join(t.name), input)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            failures.push(format!("{}: {o:?} (input saved as {saved})", t.name));
        }
    }
    println!("{}", lines.join("\n"));
    assert!(failures.is_empty(), "{}\n{}", lines.join("\n"), failures.join("\n"));
}

#[test]
fn every_former_crash_in_the_corpus_is_refused_cleanly() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    fuzz::quiet_panics();
    let mut n = 0;
    let mut bad = Vec::new();
    for t in fuzz::targets() {
        for (p, o) in fuzz::replay_dir(&t, &corpus().join(t.name)) {
            n += 1;
            if o.is_crash() {
                bad.push(format!("{}: {o:?}", p.display()));
            }
        }
    }
    println!("{n} corpus files replayed");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    // every corpus folder names a parser
    let names: Vec<&str> = fuzz::targets().iter().map(|t| t.name).collect();
    for e in std::fs::read_dir(corpus()).expect("tests/fuzz-corpus").flatten() {
        if e.path().is_dir() {
            let n = e.file_name().to_string_lossy().to_string();
            assert!(names.contains(&n.as_str()), "tests/fuzz-corpus/{n} is not a parser ({names:?})");
        }
    }
}

#[test]
fn the_harness_sees_panics_and_memory_excesses() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    fuzz::quiet_panics();
    assert!(fuzz::counting(), "CountingAlloc is the global allocator here");
    let panicky = Target::new(
        "panicky",
        vec![vec![1, 2, 3]],
        fuzz::mutate_bytes,
        |b| {
            if b.len() % 2 == 0 {
                panic!("even length {}", b.len());
            }
            Ok(())
        },
        |_| 1 << 30,
    );
    assert!(matches!(fuzz::run_case(&panicky, &[1, 2]), Outcome::Panic(m) if m.contains("even length 2")));
    assert_eq!(fuzz::run_case(&panicky, &[1]), Outcome::Accepted);
    let st = fuzz::fuzz(&panicky, 7, 200, None, |_| {});
    assert!(!st.crashes.is_empty() && st.accepted > 0, "{st:?}");
    let hog = Target::new(
        "hog",
        vec![vec![0]],
        fuzz::mutate_bytes,
        |b| {
            let v = vec![1u8; 8 << 20];
            std::hint::black_box(&v);
            if b.is_empty() { Err(engine::EngineError::Data("empty".into())) } else { Ok(()) }
        },
        |_| 4 << 20,
    );
    assert!(matches!(fuzz::run_case(&hog, &[1]), Outcome::Memory(used, cap) if used >= 8 << 20 && cap == 4 << 20));
}

#[test]
fn mutators_are_seeded_and_structure_aware() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // same seed, same mutants
    let t = fuzz::target("safetensors").expect("target");
    let a: Vec<Vec<u8>> = {
        let mut r = Rng::new(5);
        (0..20).map(|_| t.mutate(&mut r, &t.seeds[1])).collect()
    };
    let b: Vec<Vec<u8>> = {
        let mut r = Rng::new(5);
        (0..20).map(|_| t.mutate(&mut r, &t.seeds[1])).collect()
    };
    assert_eq!(a, b);
    // most safetensors mutants keep a parseable header (structure-aware), and some differ from the seed in it
    let parsed = a.iter().filter(|m| fuzz::split_safetensors(m).is_some()).count();
    assert!(parsed >= 10, "{parsed}/20 mutants keep a JSON header");
    // the pickle splitter walks the whole seed
    let p = fuzz::target("pickle").expect("target");
    let ops = fuzz::pickle_ops(&p.seeds[0]);
    assert_eq!(ops.last().map(|o| p.seeds[0][o.0]), Some(b'.'), "the opcode walk reaches STOP");
}
