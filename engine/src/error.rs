//! Engine error type. Every fallible public function returns [`Result`].

/// Errors the engine reports. Messages are written for users: they say what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("image: {0}")]
    Image(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("weights incomplete or wrong (refusing to run on random weights):\n{0}")]
    IncompleteWeights(String),
    #[error("shape: {0}")]
    Shape(String),
    #[error("config: {0}")]
    Config(String),
    #[error("non-finite values (NaN/Inf): {0}")]
    NonFinite(String),
    #[error("cancelled")]
    Cancelled,
    /// The memory preflight refused a job (estimate > budget); `advice` says what would fit.
    #[error("{what} needs about {estimate} of memory, over the budget of {budget}: {advice}")]
    TooBig { what: String, estimate: String, budget: String, advice: String },
    #[error("tensor data: {0}")]
    Data(String),
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl EngineError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        EngineError::Io { path: path.as_ref().display().to_string(), source }
    }
}
