//! Thread count of candle's element-wise CPU ops.
//!
//! candle runs element-wise ops (residual adds, gradient sums, activations) on a pool of
//! busy-waiting workers sized by `CANDLE_NUM_THREADS`, separate from the rayon pool that runs the
//! GEMMs and our kernels. With both pools sized to all cores the spinning workers take CPU time
//! from the GEMM threads. Measured on a 2-core machine with SmolLM2-135M: LoRA training 217 vs
//! 179 tokens/s, prefill 1186 vs 1080 tokens/s, constrained evaluation 2.74 vs 2.22 dialogues/s
//! with one element-wise thread against the default (bench/train.sh, bench/run.sh).

/// The variable candle reads once, when its element-wise pool is first used.
pub const ELEMENTWISE_THREADS_VAR: &str = "CANDLE_NUM_THREADS";

/// Sets one element-wise thread unless the user chose a count. Call it at program start, before
/// any tensor op and before other threads exist (it writes the process environment).
pub fn prefer_single_elementwise_thread() {
    if std::env::var_os(ELEMENTWISE_THREADS_VAR).is_none() {
        std::env::set_var(ELEMENTWISE_THREADS_VAR, "1");
    }
}
