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

mod counting;
mod harness;
mod images;
mod json;
mod mutate;
mod onnx;
mod pickle;
mod tensors;
mod torch_zip;

use std::path::PathBuf;

pub use counting::*;
pub use harness::*;
pub use images::*;
pub use json::*;
pub use mutate::*;
pub use onnx::*;
pub use pickle::*;
pub use tensors::*;
pub use torch_zip::*;

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
