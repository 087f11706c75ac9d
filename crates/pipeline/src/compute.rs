//! Where models run: the resolved `[compute]` section (with `--device` already on top, see
//! [`crate::settings`]) turned into a candle device and dtype.
//!
//! The one place that rule lives, so `predict`, `eval`, `serve`, `train`, `audit` and `run` cannot
//! disagree about what `dtype = "auto"` means. The training forward needs no rule here: the fast
//! forward runs on every device (`[compute] kernels` picks CPU kernels or portable tensor ops).

use anyhow::Context;
use candle_core::{DType, Device};
use config::{ComputeConfig, ComputeDtype};

/// A resolved `[compute]` section.
#[derive(Debug, Clone)]
pub struct Compute {
    pub device: Device,
    pub dtype: DType,
}

impl Compute {
    /// The device and dtype `compute` names. Asking for a GPU in a CPU-only build is an error with
    /// the build hint (from `lm::parse_device`), never a silent run on the CPU.
    pub fn resolve(compute: &ComputeConfig) -> anyhow::Result<Compute> {
        let device = lm::parse_device(&compute.device)
            .with_context(|| format!("[compute] device = {:?}", compute.device))?;
        let dtype = match compute.dtype {
            // bf16 is slower than f32 on the CPU (CANDLE.md); on a GPU it halves memory.
            ComputeDtype::Auto if device.is_cpu() => DType::F32,
            ComputeDtype::Auto => DType::BF16,
            ComputeDtype::F32 => DType::F32,
            ComputeDtype::Bf16 => DType::BF16,
            ComputeDtype::F16 => DType::F16,
        };
        Ok(Compute { device, dtype })
    }

    /// How `lm::Model::load` materialises weights here.
    pub fn load_options(&self, quantization: Option<lm::Quantization>) -> lm::LoadOptions {
        lm::LoadOptions {
            dtype: self.dtype,
            device: self.device.clone(),
            quantization,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compute(device: &str, dtype: ComputeDtype) -> anyhow::Result<Compute> {
        Compute::resolve(&ComputeConfig {
            device: device.into(),
            dtype,
            ..ComputeConfig::default()
        })
    }

    #[test]
    fn auto_dtype_is_f32_on_the_cpu() {
        let c = compute("cpu", ComputeDtype::Auto).unwrap();
        assert!(c.device.is_cpu());
        assert_eq!(c.dtype, DType::F32);
        assert_eq!(
            compute("cpu", ComputeDtype::Bf16).unwrap().dtype,
            DType::BF16
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn gpu_in_a_cpu_build_names_the_feature() {
        let err = compute("cuda", ComputeDtype::Auto).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("--features cuda"), "{msg}");
        assert!(msg.contains("[compute] device"), "{msg}");
    }
}
