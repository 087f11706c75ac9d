//! Device names as users write them: `cpu`, `cuda`, `cuda:N`.
//!
//! The CUDA backend exists only in builds with the `cuda` feature (candle's CUDA kernels need the
//! toolkit's `nvcc` at build time); elsewhere asking for a GPU is an error with a hint, never a
//! silent fall back to the CPU.

use candle_core::Device;

use crate::error::{LmError, Result};

/// The device `name` stands for. The inference forward runs on any candle device (CPU-only fast
/// paths fall back to stock ops elsewhere); the training kernels are CPU-only and refuse others.
pub fn parse_device(name: &str) -> Result<Device> {
    let lower = name.trim().to_ascii_lowercase();
    let ordinal = match lower.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => {
                return Err(LmError::Input(format!(
                    "unknown device {name:?} (cpu, cuda, cuda:N)"
                )))
            }
        },
    };
    Device::new_cuda(ordinal).map_err(|e| {
        LmError::Input(format!(
            "device {name:?}: {e}\nhint: build with `cargo build --release --features cuda` on a machine with the CUDA toolkit (nvcc)"
        ))
    })
}
