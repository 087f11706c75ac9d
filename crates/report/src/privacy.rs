//! The memorisation audit's result (`privacy.json`, written by `icdtune audit`), typed so that the
//! report can render it and tests can read it. It carries numbers, example counts and settings,
//! never dialogue text; canaries are named only by index.

use serde::{Deserialize, Serialize};

/// Everything `icdtune audit` measured for one adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyAudit {
    /// Base model spec as given.
    pub model: String,
    /// Adapter folder as given.
    pub adapter: String,
    /// Dataset spec as given.
    pub dataset: String,
    /// Planted canaries' exposure; absent when the adapter was trained without canaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canaries: Option<CanaryAudit>,
    /// Loss-based membership inference, one entry per scored span (`answer`, `text`).
    pub membership: Vec<MembershipAudit>,
    /// Verbatim continuation of training dialogues.
    pub extraction: ExtractionAudit,
}

/// Exposure of planted canaries (Carlini et al., "The Secret Sharer").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryAudit {
    /// Shape of a canary, e.g. `Patient name: {name}, patient ID {id}`; the secret is `{id}`.
    pub format: String,
    /// Size of the secret space the canaries were drawn from (all `{id}` values).
    pub secret_space: u64,
    /// Random candidates of the same format each canary is ranked among.
    pub candidates: usize,
    /// `log2(candidates + 1)`: the exposure of a canary that outranks every candidate.
    pub max_exposure: f64,
    /// How rank and exposure were estimated, in words.
    pub method: String,
    /// Exposure summarised per insertion count, fewest insertions first.
    pub by_insertions: Vec<ExposureGroup>,
    /// Every canary, by index.
    pub canaries: Vec<CanaryExposure>,
}

/// Canaries that were inserted the same number of times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExposureGroup {
    pub insertions: usize,
    pub n: usize,
    /// Mean and largest exposure under base + adapter, in bits.
    pub mean_exposure: f64,
    pub max_exposure: f64,
    /// Mean exposure under the base model alone (the chance level of this model).
    pub mean_exposure_base: f64,
}

/// One canary's rank among the candidates (1 = most likely) and exposure, with and without the
/// adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryExposure {
    pub index: usize,
    pub insertions: usize,
    pub rank: f64,
    pub exposure: f64,
    pub rank_base: f64,
    pub exposure_base: f64,
}

/// Membership inference from per-token losses: does the adapter make training examples more
/// likely than held-out ones? `auc` uses the reference-calibrated score `loss_adapter -
/// loss_base`; 0.5 = nothing learned about who was in the training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipAudit {
    /// `answer` (the tokens training puts loss on) or `text` (every token of the conversation).
    pub span: String,
    pub n_members: usize,
    pub n_non_members: usize,
    pub auc: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub confidence: f64,
    pub bootstrap_samples: usize,
    /// AUC of the uncalibrated adapter loss alone.
    pub auc_loss_only: f64,
    /// Mean calibrated score (nats per token) of members and of non-members.
    pub mean_score_members: f64,
    pub mean_score_non_members: f64,
}

/// Greedy continuation of training dialogues from their first part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractionAudit {
    /// Training examples prompted.
    pub n: usize,
    /// Share of each dialogue's characters given as the prompt.
    pub prefix_fraction: f64,
    /// Most continuation tokens compared per example.
    pub max_new_tokens: usize,
    /// Mean share of the true continuation reproduced exactly from its start (longest common
    /// prefix / continuation length), under base + adapter and under the base alone.
    pub mean_prefix_match: f64,
    pub mean_prefix_match_base: f64,
    /// Mean share of continuation positions where the greedy token equals the true one.
    pub mean_token_overlap: f64,
    pub mean_token_overlap_base: f64,
    /// Examples whose compared continuation came back verbatim, all of it.
    pub verbatim: usize,
    pub verbatim_base: usize,
}
