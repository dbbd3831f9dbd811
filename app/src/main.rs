fn main() { eprintln!("dino-sae-studio: the desktop app is not built yet (see README)"); std::process::exit(1); }
