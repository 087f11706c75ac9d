//! Speed and memory from the prediction records.

use types::Prediction;

use crate::bootstrap::quantile;
use crate::Performance;

/// Latency percentiles and throughputs over the sum of per-example latencies (the caller replaces the
/// basis by the wall-clock time when it has it, see `ModelMetrics::set_run_measurements`).
pub(crate) fn performance(preds: &[Prediction]) -> Performance {
    let mut latencies: Vec<f64> = preds.iter().map(|p| p.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    // Records default the latency to 0 when the predictor did not time itself.
    let timed = latencies.iter().any(|l| *l > 0.0);
    let pct = |q: f64| (timed && !latencies.is_empty()).then(|| quantile(&latencies, q));
    let total_ms: f64 = latencies.iter().sum();
    let elapsed_s = total_ms / 1e3;
    let prompt_tokens: u64 = preds.iter().map(|p| p.prompt_tokens).sum();
    let generated_tokens: u64 = preds.iter().map(|p| p.generated_tokens).sum();
    let rate = |x: f64| (elapsed_s > 0.0).then(|| x / elapsed_s);
    Performance {
        latency_ms_p50: pct(0.50),
        latency_ms_p95: pct(0.95),
        latency_ms_p99: pct(0.99),
        latency_ms_mean: (timed && !preds.is_empty()).then(|| total_ms / preds.len() as f64),
        elapsed_s,
        elapsed_basis: "sum_of_latencies".to_string(),
        examples_per_s: rate(preds.len() as f64),
        prompt_tokens,
        generated_tokens,
        prompt_tokens_per_s: rate(prompt_tokens as f64),
        generated_tokens_per_s: rate(generated_tokens as f64),
        peak_rss_bytes: None,
    }
}

/// Peak resident set size of this process (`VmHWM` of `/proc/self/status`); `None` where that file does
/// not exist (not Linux) or cannot be read.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let unit = match parts.next() {
        Some("kB") | Some("KB") => 1024,
        Some("mB") | Some("MB") => 1024 * 1024,
        None | Some("B") => 1,
        Some(_) => return None,
    };
    Some(value * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let status = "Name:\ticdtune\nVmPeak:\t  9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        #[cfg(target_os = "linux")]
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
