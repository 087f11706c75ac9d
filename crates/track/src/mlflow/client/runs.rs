//! Experiments and the run lifecycle: find or create an experiment, create a run, end or reopen it,
//! and the read-side queries (a run, a search over runs, a metric's history) that the tracker uses to
//! resume and the tests use to check what the server stored.

use serde_json::{json, Value};

use super::batch::check_key;
use super::records::now_ms;
use super::transport::{parse_at, str_at, Body};
use super::{KeyValue, Metric, MlflowClient, Run, RunInfo, RunStatus, API};
use crate::error::{Result, TrackError};

impl MlflowClient {
    /// Experiment id for `name`, or `None` when no such experiment exists.
    pub fn experiment_id_by_name(&self, name: &str) -> Result<Option<String>> {
        let path = format!("{API}/experiments/get-by-name");
        match self.call("GET", &path, &[("experiment_name", name)], Body::None) {
            Ok(v) => Ok(Some(str_at(&v, "/experiment/experiment_id", &path)?)),
            Err(TrackError::Http { status: 404, .. }) => Ok(None),
            Err(TrackError::Http {
                error_code: Some(code),
                ..
            }) if code == "RESOURCE_DOES_NOT_EXIST" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Experiment id for `name`, creating the experiment when missing (tolerates a concurrent create).
    pub fn get_or_create_experiment(&self, name: &str) -> Result<String> {
        if let Some(id) = self.experiment_id_by_name(name)? {
            return Ok(id);
        }
        let path = format!("{API}/experiments/create");
        match self.call("POST", &path, &[], Body::Json(json!({ "name": name }))) {
            Ok(v) => str_at(&v, "/experiment_id", &path),
            Err(TrackError::Http {
                error_code: Some(code),
                ..
            }) if code == "RESOURCE_ALREADY_EXISTS" => self
                .experiment_id_by_name(name)?
                .ok_or_else(|| TrackError::BadResponse {
                    path,
                    reason: "experiment reported as existing but not found by name".into(),
                }),
            Err(e) => Err(e),
        }
    }

    /// Creates a run (status RUNNING) with `mlflow.runName` and the given tags.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        tags: &[KeyValue],
    ) -> Result<RunInfo> {
        let mut all_tags = vec![KeyValue::new("mlflow.runName", run_name)];
        all_tags.extend(tags.iter().filter(|t| t.key != "mlflow.runName").cloned());
        for t in &all_tags {
            check_key("tag", &t.key)?;
        }
        let path = format!("{API}/runs/create");
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": now_ms(),
            "tags": all_tags,
        });
        let v = self.call("POST", &path, &[], Body::Json(body))?;
        parse_at(&v, "/run/info", &path)
    }

    /// Ends a run with `status` now.
    pub fn update_run(&self, run_id: &str, status: RunStatus) -> Result<()> {
        let path = format!("{API}/runs/update");
        let body = json!({"run_id": run_id, "status": status.as_str(), "end_time": now_ms()});
        self.call("POST", &path, &[], Body::Json(body)).map(drop)
    }

    /// Marks an ended run RUNNING again (a resumed `icdtune run` continues its MLflow runs instead of
    /// starting duplicates) and returns its current info.
    pub fn reopen_run(&self, run_id: &str) -> Result<RunInfo> {
        let path = format!("{API}/runs/update");
        let body = json!({"run_id": run_id, "status": "RUNNING"});
        self.call("POST", &path, &[], Body::Json(body))?;
        Ok(self.get_run(run_id)?.info)
    }

    pub fn get_run(&self, run_id: &str) -> Result<Run> {
        let path = format!("{API}/runs/get");
        let v = self.call("GET", &path, &[("run_id", run_id)], Body::None)?;
        parse_at(&v, "/run", &path)
    }

    /// All runs of the experiments matching an MLflow filter string, e.g.
    /// `tags.mlflow.parentRunId = '<id>'` (every page).
    pub fn search_runs(&self, experiment_ids: &[&str], filter: &str) -> Result<Vec<Run>> {
        let path = format!("{API}/runs/search");
        let mut runs = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body =
                json!({"experiment_ids": experiment_ids, "filter": filter, "max_results": 1000});
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let v = self.call("POST", &path, &[], Body::Json(body))?;
            token = read_page(&v, "runs", &path, &mut runs)?;
            if token.is_none() {
                return Ok(runs);
            }
        }
    }

    /// Every logged value of metric `key` (every page).
    pub fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        let path = format!("{API}/metrics/get-history");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", "25000"),
            ];
            if let Some(t) = &token {
                query.push(("page_token", t));
            }
            let v = self.call("GET", &path, &query, Body::None)?;
            token = read_page(&v, "metrics", &path, &mut out)?;
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}

/// Appends the items under `key` of one page of a paged answer (from `path`) to `out`; returns
/// the token of the next page, `None` on the last.
fn read_page<T: serde::de::DeserializeOwned>(
    v: &Value,
    key: &str,
    path: &str,
    out: &mut Vec<T>,
) -> Result<Option<String>> {
    if let Some(page) = v.get(key) {
        out.extend(parse_at::<Vec<T>>(page, "", path)?);
    }
    Ok(v.get("next_page_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use crate::mlflow::client::test_server::{fake_server, fast};
    use crate::mlflow::client::MlflowClient;

    #[test]
    fn missing_experiment_is_none_and_create_follows() {
        let (uri, seen) = fake_server(vec![
            (404, r#"{"error_code":"RESOURCE_DOES_NOT_EXIST"}"#),
            (200, r#"{"experiment_id":"3"}"#),
        ]);
        let client = MlflowClient::new(&uri, fast()).unwrap();
        assert_eq!(client.get_or_create_experiment("exp").unwrap(), "3");
        let seen = seen.lock().unwrap();
        assert!(seen[1]
            .line
            .starts_with("POST /api/2.0/mlflow/experiments/create"));
        assert_eq!(seen[1].body, r#"{"name":"exp"}"#);
    }
}
