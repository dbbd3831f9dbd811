//! `verify-fixture`: our implementation against a folder of PyTorch reference outputs.

use std::path::PathBuf;

use anyhow::Result;

use crate::args::BackendArg;

#[derive(clap::Args)]
pub struct VerifyArgs {
    dir: PathBuf,
    /// Print every check, not only the summary and failures.
    #[arg(long, short)]
    verbose: bool,
    /// Where the comparison runs.
    #[arg(long, value_enum, default_value_t)]
    backend: BackendArg,
}

/// Prints a table of the comparisons; exits with code 2 when any fails or a reference tensor went unchecked
/// without an entry on the engine's allow-list.
pub fn run(a: VerifyArgs) -> Result<()> {
    let VerifyArgs { dir, verbose, backend } = a;
    let backend = engine::backend::Backend::select(backend.into())?;
    println!("backend {backend}");
    let report = engine::verify::verify_dir(&dir, &backend.device)?;
    for p in &report.parts {
        println!("part  {p}");
    }
    println!("{:<72} {:>12} {:>12} {:>9}", "tensor", "max_abs_err", "err/max|ref|", "status");
    for c in &report.checks {
        if verbose || !c.ok() {
            println!(
                "{:<72} {:>12.3e} {:>12.3e} {:>9}",
                c.name,
                c.max_abs,
                c.rel(),
                if c.ok() { "ok" } else { "FAIL" }
            );
        }
    }
    let unexpected = report.unexpected_skips();
    for (k, why) in &report.skipped {
        match engine::verify::allowed_skip(k) {
            Some(allowed) if verbose => println!("{k:<72} not compared (allowed: {allowed})"),
            Some(_) => {}
            None => println!("{k:<72} NOT COMPARED: {why}"),
        }
    }
    let worst = report.checks.iter().map(|c| c.max_abs / c.ref_max.max(1.0)).fold(0.0, f64::max);
    let fails = report.failures().len();
    println!(
        "{} reference tensors not compared ({} on the allow-list, {} unexpected); worst max_abs/max(1,|ref|) = {worst:.3e}",
        report.skipped.len(),
        report.skipped.len() - unexpected.len(),
        unexpected.len()
    );
    println!(
        "verify-fixture: {} passed, {} failed, {} unexpected skips",
        report.checks.len() - fails,
        fails,
        unexpected.len()
    );
    if !report.ok() {
        std::process::exit(2);
    }
    Ok(())
}
