//! Long fuzz runs of the engine's parsers (the `dino-sae-fuzz` crate).
//!
//! ```text
//! cargo run --example fuzz -- --minutes 10 [--parser NAME|all] [--seed S] [--out DIR]
//! ```
//!
//! Each parser runs for `--minutes` in a child process (this binary with `--child`) that writes every input to
//! `DIR/<parser>/current.bin` before running it; a child that dies (an abort: stack overflow, an allocation
//! refused by the memory cap) is restarted with the next seed and its last input is kept as a crash. Panics
//! and memory excesses are caught inside the child. Crash inputs go to `DIR/<parser>/crash-*.bin` (copy them
//! to `tests/fuzz-corpus/<parser>/` with the fix). A markdown table of cases and crashes ends the run.

use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dino_sae_fuzz::{self as fuzz, CountingAlloc, Outcome};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

struct Args {
    minutes: f64,
    parser: String,
    seed: u64,
    out: PathBuf,
    child: bool,
}

fn args() -> Args {
    let mut a = Args {
        minutes: 1.0,
        parser: "all".into(),
        seed: 1,
        out: std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join("fuzz"),
        child: false,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--minutes" => a.minutes = next.parse().expect("--minutes N"),
            "--parser" => a.parser = next,
            "--seed" => a.seed = next.parse().expect("--seed S"),
            "--out" => a.out = PathBuf::from(next),
            "--child" => {
                a.child = true;
                i += 1;
                continue;
            }
            "--list" => {
                for t in fuzz::targets() {
                    println!("{}", t.name);
                }
                std::process::exit(0);
            }
            o => {
                eprintln!(
                    "unknown argument {o}; usage: fuzz --minutes N [--parser NAME|all] [--seed S] [--out DIR] [--list]"
                );
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

fn main() {
    let a = args();
    if a.child {
        child(&a);
        return;
    }
    let names: Vec<&'static str> =
        fuzz::targets().iter().map(|t| t.name).filter(|n| a.parser == "all" || a.parser == *n).collect();
    if names.is_empty() {
        eprintln!("no parser {}", a.parser);
        std::process::exit(2);
    }
    let exe = std::env::current_exe().expect("own path");
    let mut rows = Vec::new();
    for name in names {
        let dir = a.out.join(name);
        std::fs::create_dir_all(&dir).expect("out dir");
        let end = Instant::now() + Duration::from_secs_f64(a.minutes * 60.0);
        let (mut cases, mut accepted, mut refused, mut crashes, mut aborts) = (0usize, 0usize, 0usize, 0usize, 0usize);
        let mut seed = a.seed;
        let t0 = Instant::now();
        while Instant::now() < end {
            let left = end.saturating_duration_since(Instant::now()).as_secs_f64() / 60.0;
            let mut c = Command::new(&exe)
                .args(["--child", "--parser", name, "--seed", &seed.to_string(), "--minutes", &format!("{left:.4}")])
                .arg("--out")
                .arg(&a.out)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn child");
            let mut last = (0, 0, 0, 0);
            for line in BufReader::new(c.stdout.take().expect("stdout")).lines().map_while(|l| l.ok()) {
                // "progress cases accepted refused crashes"
                let f: Vec<usize> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                if line.starts_with("progress") && f.len() == 4 {
                    last = (f[0], f[1], f[2], f[3]);
                } else {
                    println!("{name}: {line}");
                }
            }
            let status = c.wait().expect("wait child");
            cases += last.0;
            accepted += last.1;
            refused += last.2;
            crashes += last.3;
            if !status.success() {
                aborts += 1;
                let cur = dir.join("current.bin");
                if let Ok(b) = std::fs::read(&cur) {
                    let p = fuzz::save_crash(&dir, &b).expect("save crash");
                    println!("{name}: child died ({status}); last input saved as {}", p.display());
                }
                cases += 1;
            }
            seed += 1000;
        }
        let _ = std::fs::remove_file(dir.join("current.bin"));
        rows.push((name, cases, accepted, refused, crashes, aborts, t0.elapsed().as_secs_f64()));
        println!(
            "{name}: {cases} cases ({accepted} accepted, {refused} refused), {crashes} crashes caught, {aborts} aborts"
        );
    }
    println!("\n| parser | minutes | cases | accepted | refused | crashes (panic / memory) | aborts |");
    println!("|---|---|---|---|---|---|---|");
    for (n, c, acc, r, cr, ab, secs) in rows {
        println!("| {n} | {:.1} | {c} | {acc} | {r} | {cr} | {ab} |", secs / 60.0);
    }
}

fn child(a: &Args) {
    let t = fuzz::target(&a.parser).expect("parser");
    let budget = engine::preflight::Budget::from_env().bytes as usize;
    fuzz::set_single_alloc_cap(budget.min(8 << 30));
    fuzz::quiet_panics();
    let dir = a.out.join(t.name);
    std::fs::create_dir_all(&dir).expect("out dir");
    let cur_path = dir.join("current.bin");
    let mut cur = std::fs::File::create(&cur_path).expect("current.bin");
    let end = Instant::now() + Duration::from_secs_f64(a.minutes * 60.0);
    let mut seed = a.seed;
    let (mut cases, mut accepted, mut refused, mut crashes) = (0usize, 0usize, 0usize, 0usize);
    let stdout = std::io::stdout();
    while Instant::now() < end {
        let st = fuzz::fuzz(&t, seed, 500, Some(end), |input| write_current(&mut cur, input));
        seed += 1;
        cases += st.cases;
        accepted += st.accepted;
        refused += st.refused;
        crashes += st.crashes.len();
        for (o, input) in &st.crashes {
            let p = fuzz::save_crash(&dir, input).map(|p| p.display().to_string()).unwrap_or_default();
            let what = match o {
                Outcome::Panic(m) => format!("panic: {m}"),
                Outcome::Memory(used, cap) => format!("memory: {used} bytes at the peak, cap {cap}"),
                _ => String::new(),
            };
            let _ = writeln!(stdout.lock(), "crash {what} -> {p}");
        }
        let _ = writeln!(stdout.lock(), "progress {cases} {accepted} {refused} {crashes}");
        if st.cases == 0 {
            break;
        }
    }
    let _ = std::fs::remove_file(&cur_path);
    let _ = Path::new(&cur_path);
}

fn write_current(f: &mut std::fs::File, input: &[u8]) {
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = f.write_all(input);
}
