//! The privacy section: a typed audit (`privacy.json` as `icdtune audit` writes it) round-trips
//! through `results.json` and renders as readable tables.

use metrics::MetricsConfig;
use report::{
    assemble, load_run, render_html, CanaryAudit, CanaryExposure, ExposureGroup, ExtractionAudit,
    MembershipAudit, PrivacyAudit,
};

use crate::fixture::fixture_run;

fn audit() -> PrivacyAudit {
    PrivacyAudit {
        model: "smollm2".into(),
        adapter: "run/smollm2/adapter".into(),
        dataset: "medsynth".into(),
        canaries: Some(CanaryAudit {
            format: "Patient name: {name}, patient ID {id}".into(),
            secret_space: 9_000_000,
            candidates: 1000,
            max_exposure: 1001f64.log2(),
            method: "ranked among sampled candidates".into(),
            by_insertions: vec![ExposureGroup {
                insertions: 10,
                n: 1,
                mean_exposure: 7.25,
                max_exposure: 7.25,
                mean_exposure_base: 1.5,
            }],
            canaries: vec![CanaryExposure {
                index: 0,
                insertions: 10,
                rank: 7.0,
                exposure: 7.25,
                rank_base: 350.0,
                exposure_base: 1.5,
            }],
        }),
        membership: vec![MembershipAudit {
            span: "answer".into(),
            n_members: 200,
            n_non_members: 150,
            auc: 0.625,
            ci_low: 0.56,
            ci_high: 0.69,
            confidence: 0.95,
            bootstrap_samples: 1000,
            auc_loss_only: 0.6,
            mean_score_members: -0.4,
            mean_score_non_members: -0.1,
        }],
        extraction: ExtractionAudit {
            n: 20,
            prefix_fraction: 0.5,
            max_new_tokens: 32,
            mean_prefix_match: 0.125,
            mean_prefix_match_base: 0.03,
            mean_token_overlap: 0.2,
            mean_token_overlap_base: 0.1,
            verbatim: 1,
            verbatim_base: 0,
        },
    }
}

#[test]
fn a_typed_audit_round_trips_and_renders_as_tables() {
    let dir = fixture_run();
    let written = audit();
    std::fs::write(
        dir.path().join("privacy.json"),
        serde_json::to_string_pretty(&written).unwrap(),
    )
    .unwrap();
    let run = load_run(dir.path()).unwrap();
    let results = assemble(vec![run], &MetricsConfig::default(), "test", None).unwrap();
    let back: PrivacyAudit =
        serde_json::from_value(results.privacy.clone().expect("privacy kept")).unwrap();
    assert_eq!(back, written);
    let html = render_html(&results).unwrap();
    for id in [
        "privacy-membership",
        "privacy-canaries",
        "privacy-extraction",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
    assert!(html.contains("0.625"), "AUC shown");
    assert!(html.contains("7.25"), "exposure shown");
    assert!(!html.contains("Not run: no memorisation audit"));
}
