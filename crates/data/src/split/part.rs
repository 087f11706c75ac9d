//! The three parts of a split and their target shares: the vocabulary shared by the assignment, the
//! split file and the commands that select one part.

use config::SplitConfig;
use serde::{Deserialize, Serialize};

use crate::DataError;

/// One part of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    Train,
    Validation,
    Test,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Train, Part::Validation, Part::Test];

    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// `train`, `validation`, `test`; also accepts `val` and `dev` for validation.
    pub fn parse(name: &str) -> Option<Part> {
        match name.trim().to_ascii_lowercase().as_str() {
            "train" => Some(Part::Train),
            "validation" | "val" | "dev" => Some(Part::Validation),
            "test" => Some(Part::Test),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Validation => "validation",
            Part::Test => "test",
        }
    }
}

/// Target shares of the three parts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    pub train: f64,
    pub validation: f64,
    pub test: f64,
}

impl Ratios {
    pub(super) fn as_array(&self) -> [f64; 3] {
        [self.train, self.validation, self.test]
    }

    /// Same rules as the config: each in [0, 1], sum 1, train and test positive.
    pub fn check(&self) -> Result<(), DataError> {
        let parts = self.as_array();
        let err = |message: String| Err(DataError::Ratios { message });
        if parts
            .iter()
            .any(|p| !p.is_finite() || !(0.0..=1.0).contains(p))
        {
            return err(format!("each ratio must lie in [0, 1], got {parts:?}"));
        }
        let sum: f64 = parts.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return err(format!("train + validation + test must be 1, got {sum}"));
        }
        if self.train <= 0.0 || self.test <= 0.0 {
            return err("train and test ratios must be positive".into());
        }
        Ok(())
    }
}

impl From<&SplitConfig> for Ratios {
    fn from(c: &SplitConfig) -> Ratios {
        Ratios {
            train: c.train,
            validation: c.validation,
            test: c.test,
        }
    }
}
