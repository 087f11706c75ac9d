//! The examples a command works on: the dataset loaded with the resolved `[data]` settings and cut
//! into train / validation / test the same way by every command (`run`, `train`, `eval`, `audit`):
//! a given `split.json`, else the parts named by the split column (`[data.split] column`), else the
//! seeded stratified split of `[data.split]`.

use std::path::Path;

use anyhow::Context;
use config::Config;
use data::{Dataset, DatasetSpec, Part, Split};
use icd::CodeTable;
use types::Example;

/// Loads dataset `spec` with the config's columns, preset and policies.
pub fn load_dataset(spec: &str, config: &Config, table: &CodeTable) -> anyhow::Result<Dataset> {
    let parsed = DatasetSpec::parse(spec, config.data.preset.as_deref())?;
    data::load(&parsed, &config.data, table).with_context(|| format!("loading dataset {spec}"))
}

/// The split of `dataset`: read from `split_file` (checked against the dataset) when given, else
/// taken from the split column or drawn, as `[data.split]` says.
pub fn split_of(
    dataset: &Dataset,
    split_file: Option<&Path>,
    config: &Config,
) -> anyhow::Result<Split> {
    match split_file {
        Some(path) => {
            let split = Split::read(path)?;
            split.verify(dataset, path)?;
            Ok(split)
        }
        None => Ok(data::split(dataset, &config.data.split)?),
    }
}

/// The examples of one part of a split, owned.
pub fn part(split: &Split, dataset: &Dataset, part: Part) -> Vec<Example> {
    split.select(dataset, part).into_iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::console::Console;
    use crate::evaluate::{eval, EvalRequest};
    use crate::experiment::{run, Experiment, RunRequest};
    use crate::settings::Settings;

    /// Ten notes whose parts are named by the `part` column: 5 train, 2 dev, 3 test. A drawn
    /// 70/15/15 split of them could not give these parts, so only the column explains them.
    const CSV: &str = "id,text,codes,part\n\
        t1,fever and cough,R50.9,train\n\
        t2,cough for days,R05.1,train\n\
        t3,high fever,R50.9,train\n\
        t4,sore throat,J02.9,train\n\
        t5,dry cough,R05.1,train\n\
        v1,fever again,R50.9,DEV\n\
        v2,throat pain,J02.9,dev\n\
        s1,fever at night,R50.9,test\n\
        s2,cough at night,R05.1,Test\n\
        s3,painful throat,J02.9,test\n";

    struct Quiet;

    impl Console for Quiet {
        fn say(&self, _line: &str) {}
        fn note(&self, _line: &str) {}
    }

    fn settings(dir: &Path) -> Settings {
        let path = dir.join("notes.csv");
        std::fs::write(&path, CSV).unwrap();
        let mut config = Config::default();
        config.data.dataset = path.display().to_string();
        config.data.split.column = Some("part".into());
        config.eval.bootstrap_samples = 0;
        config.tracking.output_dir = dir.join("runs").display().to_string();
        Settings { config }
    }

    fn ids(examples: &[Example]) -> Vec<&str> {
        examples.iter().map(|e| e.id.as_str()).collect()
    }

    fn read_json(path: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// `split.json` of a command: the column's parts, and a record saying they came from it.
    fn assert_column_split(path: &Path) {
        let split = read_json(path);
        assert_eq!(split["method"], data::SPLIT_METHOD_COLUMN);
        assert_eq!(split["column"], "part");
        assert_eq!(split["test"], serde_json::json!(["s1", "s2", "s3"]));
        assert_eq!(split["validation"], serde_json::json!(["v1", "v2"]));
    }

    #[test]
    fn train_and_audit_take_the_parts_from_the_column_and_so_does_a_split_file_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let table = CodeTable::icd10cm();
        let dataset = load_dataset(&s.config.data.dataset, &s.config, &table).unwrap();
        let split = split_of(&dataset, None, &s.config).unwrap();
        assert_eq!(
            ids(&part(&split, &dataset, Part::Train)),
            ["t1", "t2", "t3", "t4", "t5"]
        );
        assert_eq!(ids(&part(&split, &dataset, Part::Validation)), ["v1", "v2"]);
        assert_eq!(ids(&part(&split, &dataset, Part::Test)), ["s1", "s2", "s3"]);
        let file = dir.path().join("split.json");
        split.write(&file).unwrap();
        assert_column_split(&file);
        assert_eq!(split_of(&dataset, Some(&file), &s.config).unwrap(), split);
    }

    #[test]
    fn eval_scores_the_test_part_of_the_column_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let out = dir.path().join("eval");
        let request = EvalRequest {
            model: "most-frequent".into(),
            adapter: None,
            train_dataset: None,
            split: None,
            split_file: None,
            top_k: None,
            out: out.clone(),
        };
        let done = eval(&s, &request, &Quiet).unwrap();
        assert_eq!(done.scored.info.n_eval, 3);
        assert_eq!(done.scored.info.n_train, 5);
        assert_eq!(done.scored.info.split, "test (column \"part\")");
        assert_column_split(&out.join("split.json"));

        let with_train_file = EvalRequest {
            train_dataset: Some(s.config.data.dataset.clone()),
            ..request
        };
        let err = eval(&s, &with_train_file, &Quiet)
            .err()
            .expect("--train-dataset with a split column is refused")
            .to_string();
        assert!(err.contains("drop the split column \"part\""), "{err}");
    }

    #[test]
    fn run_scores_every_arm_on_the_test_part_of_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        let request = RunRequest {
            experiment: Experiment::Full,
            skip_training: false,
            force: false,
        };
        let report = run(&s, &request, Default::default(), &Quiet).unwrap();
        let run_dir = report.parent().unwrap();
        assert_column_split(&run_dir.join("split.json"));
        for arm in ["tfidf", "most-frequent"] {
            let info = read_json(&run_dir.join(arm).join("model.json"));
            assert_eq!(info["split"], "test (column \"part\")", "{arm}");
            assert_eq!(info["n_eval"], 3, "{arm}");
        }
    }
}
