//! Errors raised when an op is given tensors it cannot handle.

/// Why an op refused its inputs; converted into `candle_core::Error` at the public boundary so the
/// ops compose with candle's `Result`.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{op}: tensor `{tensor}` has shape {got:?}, expected {expected}")]
    Shape {
        op: &'static str,
        tensor: &'static str,
        got: Vec<usize>,
        expected: String,
    },
    #[error("{op}: tensor `{tensor}` has dtype {got:?}, expected {expected}")]
    DType {
        op: &'static str,
        tensor: &'static str,
        got: candle_core::DType,
        expected: String,
    },
    #[error("{op}: tensor `{tensor}` is on {device}; the CPU kernels need CPU tensors (the portable backend runs anywhere)")]
    Device {
        op: &'static str,
        tensor: &'static str,
        device: String,
    },
    #[error("{op}: {message}")]
    Invalid { op: &'static str, message: String },
}

impl From<KernelError> for candle_core::Error {
    fn from(e: KernelError) -> Self {
        candle_core::Error::wrap(e)
    }
}
