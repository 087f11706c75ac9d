//! Integration tests of the track crate. The MLflow tier needs a real tracking server: start one with
//! `scripts/mlflow-server.sh start` and set `ICDTUNE_MLFLOW_URI=http://127.0.0.1:5000`.

mod mlflow;
