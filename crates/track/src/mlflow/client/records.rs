//! The values MLflow's REST API exchanges (runs, metrics, params and tags, artifact listings), kept
//! apart from the HTTP code so the tracker and the tests can name them without the transport.
//!
//! MLflow answers in protobuf JSON, which may spell int64 as a string and non-finite doubles as
//! `"NaN"` / `"Infinity"`; the lenient deserializers here accept both spellings.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

/// A run as MLflow describes it (`RunInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    #[serde(default)]
    pub run_name: Option<String>,
    pub status: String,
    /// `mlflow-artifacts:/<experiment>/<run>/artifacts` on a server that proxies artifacts.
    #[serde(default)]
    pub artifact_uri: String,
    #[serde(default, deserialize_with = "lenient_opt_i64")]
    pub start_time: Option<i64>,
    #[serde(default, deserialize_with = "lenient_opt_i64")]
    pub end_time: Option<i64>,
}

/// A run with its data (`Run`): latest metric values, params and tags.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Run {
    pub info: RunInfo,
    #[serde(default)]
    pub data: RunData,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RunData {
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub params: Vec<KeyValue>,
    #[serde(default)]
    pub tags: Vec<KeyValue>,
}

impl Run {
    pub fn tag(&self, key: &str) -> Option<&str> {
        value_of(&self.data.tags, key)
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        value_of(&self.data.params, key)
    }

    /// Latest value of metric `key`.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.data
            .metrics
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.value)
    }
}

/// The value stored under `key`, if any.
fn value_of<'a>(pairs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|p| p.key == key)
        .map(|p| p.value.as_str())
}

/// A param or tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// One metric value at one step.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Metric {
    pub key: String,
    #[serde(deserialize_with = "lenient_f64")]
    pub value: f64,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub step: i64,
    /// Milliseconds since the Unix epoch.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timestamp: i64,
}

impl Metric {
    /// A value stamped with the current time.
    pub fn now(key: impl Into<String>, value: f64, step: i64) -> Metric {
        Metric {
            key: key.into(),
            value,
            step,
            timestamp: now_ms(),
        }
    }

    /// Protobuf JSON spells non-finite doubles as strings; a diverged loss must still be recordable.
    pub(super) fn to_json(&self) -> Value {
        let value = if self.value.is_nan() {
            json!("NaN")
        } else if self.value.is_infinite() {
            json!(if self.value > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            })
        } else {
            json!(self.value)
        };
        json!({"key": self.key, "value": value, "step": self.step, "timestamp": self.timestamp})
    }
}

/// An entry of `artifacts/list`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FileInfo {
    pub path: String,
    #[serde(default)]
    pub is_dir: bool,
    #[serde(default, deserialize_with = "lenient_opt_i64")]
    pub file_size: Option<i64>,
}

/// Final state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Finished,
    Failed,
    Killed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }
}

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Protobuf JSON may write int64 as a string.
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("not an integer")),
        Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        other => Err(serde::de::Error::custom(format!(
            "expected integer, got {other}"
        ))),
    }
}

fn lenient_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => lenient_i64(v).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Doubles may come as `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn lenient_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| serde::de::Error::custom("not a number")),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(serde::de::Error::custom),
        },
        other => Err(serde::de::Error::custom(format!(
            "expected number, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_with_string_numbers_and_nan_parse() {
        let m: Metric = serde_json::from_value(
            json!({"key":"l","value":"NaN","step":"3","timestamp":"1700000000000"}),
        )
        .unwrap();
        assert!(m.value.is_nan());
        assert_eq!((m.step, m.timestamp), (3, 1_700_000_000_000));
        let r: RunInfo = serde_json::from_value(
            json!({"run_id":"a","experiment_id":"0","status":"RUNNING","end_time":null}),
        )
        .unwrap();
        assert_eq!(r.end_time, None);
    }
}
