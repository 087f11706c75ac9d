//! Logging metrics, params and tags through `runs/log-batch`: MLflow's per-call and per-name limits,
//! validation of every name and value before anything is sent (so a bad key fails with the key named
//! instead of a server-side 400), and chunking of any number of values into calls within the limits.

use serde_json::json;

use super::transport::Body;
use super::{KeyValue, Metric, MlflowClient, API};
use crate::error::{Result, TrackError};

/// Per-call limits of `runs/log-batch` (MLflow REST API documentation).
pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_PER_BATCH: usize = 100;
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// MLflow's limits on names and parameter values.
pub const MAX_KEY_LEN: usize = 250;
pub const MAX_PARAM_VALUE_LEN: usize = 6000;

impl MlflowClient {
    /// One `runs/log-batch` call; the caller keeps within the per-call limits (see [`MlflowClient::log`]).
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<()> {
        let path = format!("{API}/runs/log-batch");
        if metrics.len() > MAX_METRICS_PER_BATCH
            || params.len() > MAX_PARAMS_PER_BATCH
            || tags.len() > MAX_TAGS_PER_BATCH
            || metrics.len() + params.len() + tags.len() > MAX_METRICS_PER_BATCH
        {
            return Err(TrackError::InvalidValue {
                what: "batch",
                key: path,
                reason: format!(
                    "{} metrics, {} params, {} tags exceed the per-call limits",
                    metrics.len(),
                    params.len(),
                    tags.len()
                ),
            });
        }
        let body = json!({
            "run_id": run_id,
            "metrics": metrics.iter().map(Metric::to_json).collect::<Vec<_>>(),
            "params": params,
            "tags": tags,
        });
        self.call("POST", &path, &[], Body::Json(body)).map(drop)
    }

    /// Logs any number of metrics, params and tags, validated, in as many batches as the limits need.
    pub fn log(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[KeyValue],
        tags: &[KeyValue],
    ) -> Result<()> {
        for m in metrics {
            check_key("metric", &m.key)?;
        }
        for p in params {
            check_key("param", &p.key)?;
            if p.value.chars().count() > MAX_PARAM_VALUE_LEN {
                return Err(TrackError::InvalidValue {
                    what: "param",
                    key: p.key.clone(),
                    reason: format!("value longer than {MAX_PARAM_VALUE_LEN} characters"),
                });
            }
        }
        for t in tags {
            check_key("tag", &t.key)?;
        }
        for chunk in params.chunks(MAX_PARAMS_PER_BATCH) {
            self.log_batch(run_id, &[], chunk, &[])?;
        }
        for chunk in tags.chunks(MAX_TAGS_PER_BATCH) {
            self.log_batch(run_id, &[], &[], chunk)?;
        }
        for chunk in metrics.chunks(MAX_METRICS_PER_BATCH) {
            self.log_batch(run_id, chunk, &[], &[])?;
        }
        Ok(())
    }
}

/// MLflow accepts names made of alphanumerics, `_ - . / ` and space, up to 250 characters.
pub(super) fn check_key(what: &'static str, key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        Some("empty".to_string())
    } else if key.len() > MAX_KEY_LEN {
        Some(format!("longer than {MAX_KEY_LEN} characters"))
    } else if !key
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' '))
    {
        Some("only letters, digits, '_', '-', '.', '/' and spaces are allowed".to_string())
    } else {
        None
    };
    match reason {
        Some(reason) => Err(TrackError::InvalidValue {
            what,
            key: key.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::MAX_PARAM_VALUE_LEN;
    use crate::mlflow::client::test_server::{fake_server, fast};
    use crate::mlflow::client::{KeyValue, Metric, MlflowClient};

    #[test]
    fn log_splits_into_batches_within_limits_and_encodes_non_finite_values() {
        let metrics: Vec<Metric> = (0..2500)
            .map(|i| Metric::now("train_loss", i as f64, i))
            .collect();
        let params: Vec<KeyValue> = (0..150)
            .map(|i| KeyValue::new(format!("p{i}"), "1"))
            .collect();
        let tags = vec![KeyValue::new("k", "v")];
        // 2 param batches + 1 tag batch + 3 metric batches.
        let (uri, seen) = fake_server(vec![(200, "{}"); 7]);
        let client = MlflowClient::new(&uri, fast()).unwrap();
        client.log("r", &metrics, &params, &tags).unwrap();
        client
            .log("r", &[Metric::now("val_loss", f64::NAN, 1)], &[], &[])
            .unwrap();
        let seen = seen.lock().unwrap();
        let bodies: Vec<Value> = seen
            .iter()
            .map(|s| serde_json::from_str(&s.body).unwrap())
            .collect();
        let count = |b: &Value, k: &str| b[k].as_array().unwrap().len();
        let shape: Vec<(usize, usize, usize)> = bodies
            .iter()
            .map(|b| (count(b, "metrics"), count(b, "params"), count(b, "tags")))
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, 100, 0),
                (0, 50, 0),
                (0, 0, 1),
                (1000, 0, 0),
                (1000, 0, 0),
                (500, 0, 0),
                (1, 0, 0)
            ]
        );
        assert_eq!(bodies[3]["metrics"][0]["key"], "train_loss");
        assert_eq!(bodies[5]["metrics"][499]["step"], 2499);
        assert_eq!(bodies[6]["metrics"][0]["value"], "NaN");
    }

    #[test]
    fn invalid_keys_and_long_values_are_refused_before_sending() {
        let client = MlflowClient::new("http://127.0.0.1:9", fast()).unwrap();
        let err = client
            .log("r", &[Metric::now("bad\"key", 1.0, 0)], &[], &[])
            .unwrap_err();
        assert!(err.to_string().contains("bad\\\"key"), "{err}");
        let long = "x".repeat(MAX_PARAM_VALUE_LEN + 1);
        let err = client
            .log("r", &[], &[KeyValue::new("lr", long)], &[])
            .unwrap_err();
        assert!(err.to_string().contains("\"lr\""), "{err}");
        let err = client
            .log_batch("r", &[], &vec![KeyValue::new("a", "b"); 101], &[])
            .unwrap_err();
        assert!(err.to_string().contains("limits"), "{err}");
    }
}
