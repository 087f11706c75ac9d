//! `icdtune icd lookup|search` against the embedded ICD-10-CM table and a tiny table file.

use crate::cli::TestCommand;
use crate::fixtures::assert_mentions;

fn json(stdout: &[u8]) -> serde_json::Value {
    serde_json::from_slice(stdout).expect("stdout is JSON")
}

#[test]
fn acceptance_lookup_prints_codes_and_fails_for_xyz() {
    let t = TestCommand::new();
    let out = t.run(&[
        "icd", "lookup", "J06.9", "I10", "D50.0", "H60.0", "M25562", "XYZ",
    ]);
    assert!(
        !out.status.success(),
        "a malformed code must fail the command"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_mentions(
        &stderr,
        &[
            "XYZ: not an ICD-10 code: code \"XYZ\" must have a digit in position 2",
            "error: 1 of 6 codes are not valid ICD-10-CM April 1, 2026 codes: XYZ",
        ],
    );
    assert!(!stdout.contains("XYZ"), "{stdout}");
    insta::assert_snapshot!("lookup_acceptance", stdout);
}

#[test]
fn lookup_shows_true_chapters() {
    let t = TestCommand::new();
    let out = t.ok(&["icd", "lookup", "d50.0", "H60.0", "D49", "H59"]);
    let chapters: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("chapter"))
        .map(str::trim)
        .collect();
    assert_eq!(
        chapters,
        [
            "III (D50-D89)  Diseases of the blood and blood-forming organs and certain disorders involving the immune mechanism",
            "VIII (H60-H95)  Diseases of the ear and mastoid process",
            "II (C00-D49)  Neoplasms",
            "VII (H00-H59)  Diseases of the eye and adnexa",
        ]
    );
    assert!(out.contains("H60.0  valid, not billable ("), "{out}");
}

#[test]
fn lookup_json_reports_valid_unknown_and_malformed_codes() {
    let t = TestCommand::new();
    let out = t.run(&["icd", "lookup", "--json", "T84.50XA", "T81.4XX", "XYZ"]);
    assert!(!out.status.success());
    let doc = json(&out.stdout);
    assert_eq!(doc["edition"]["name"], "ICD-10-CM");
    assert_eq!(doc["edition"]["version"], "April 1, 2026");
    let codes = doc["codes"].as_array().unwrap();
    assert_eq!(codes.len(), 3);

    let t84 = &codes[0];
    assert_eq!(t84["code"], "T84.50XA");
    assert_eq!(
        (t84["valid"].as_bool(), t84["leaf"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(t84["parent"]["code"], "T84.50");
    assert_eq!(t84["chapter"]["roman"], "XIX");
    assert_eq!(t84["error"], serde_json::Value::Null);

    let t81 = &codes[1];
    assert_eq!(t81["input"], "T81.4XX");
    assert_eq!(t81["valid"], false);
    assert_eq!(t81["description"], serde_json::Value::Null);
    assert_eq!(t81["parent"]["code"], "T81.4");
    assert_eq!(t81["category"]["code"], "T81");
    assert_eq!(t81["chapter"]["first"], "S00");
    assert_eq!(t81["block"]["first"], "T80");
    assert!(t81["error"]
        .as_str()
        .unwrap()
        .contains("not a code of ICD-10-CM"));

    let xyz = &codes[2];
    assert_eq!(xyz["valid"], false);
    assert!(xyz["error"]
        .as_str()
        .unwrap()
        .starts_with("not an ICD-10 code: "));
}

#[test]
fn lookup_of_valid_codes_succeeds_in_any_spelling() {
    let t = TestCommand::new();
    let out = t.ok(&["icd", "lookup", " j069 ", "s52.521a", "QA0.0101"]);
    assert_mentions(
        &out,
        &[
            "J06.9  valid, billable",
            "S52.521A  valid, billable",
            "initial encounter for closed fracture",
            "XVII (Q00-QA0)",
        ],
    );
}

#[test]
fn search_ranks_matching_descriptions() {
    let t = TestCommand::new();
    let out = t.ok(&[
        "icd",
        "search",
        "iron",
        "deficiency",
        "anemia",
        "blood",
        "loss",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("code"), "{out}");
    assert!(lines[1].starts_with("D50.0     yes"), "{out}");
    let out = t.ok(&["icd", "search", "Iron Deficiency anemia", "--limit", "3"]);
    let codes: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(codes, ["D50", "D50.9", "D50.0"], "{out}");

    let doc = json(&t.run(&["icd", "search", "--json", "j06"]).stdout);
    assert_eq!(doc["query"], "j06");
    assert_eq!(doc["codes"][0]["code"], "J06");
    assert_eq!(doc["codes"][1]["code"], "J06.0");

    let out = t.run(&["icd", "search", "qwertyuiop"]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("matches \"qwertyuiop\""));
}

#[test]
fn another_edition_comes_from_a_table_file() {
    let t = TestCommand::new();
    let sha = "ab".repeat(32);
    let table = format!(
        "#icd-table\t1\n@name\tICD-10\n@version\t2019\n@source\ttest\n@source_sha256\t{sha}\n\
         C\t10\tX\tJ00\tJ99\tDiseases of the respiratory system\n\
         B\tJ00\tJ06\tAcute upper respiratory infections\n\
         E\tJ06\t0\tAcute upper respiratory infections of multiple and unspecified sites\n\
         E\tJ069\t1\tAcute upper respiratory infection, unspecified\n"
    );
    let path = t.write("who.tsv", table);
    let path = path.to_str().unwrap();
    let out = t.ok(&["icd", "--table", path, "lookup", "J06.9"]);
    assert!(out.contains("chapter      X (J00-J99)"), "{out}");
    let err = t.fails(&["icd", "--table", path, "lookup", "I10"]);
    assert!(
        err.contains("I10: well-formed, but not a code of ICD-10 2019"),
        "{err}"
    );

    let bad = t.write("bad.tsv", "code\tdescription\n");
    let err = t.fails(&["icd", "--table", bad.to_str().unwrap(), "search", "x"]);
    assert_mentions(&err, &["bad.tsv", "is not a code table"]);
}

#[test]
fn help_describes_both_subcommands() {
    let t = TestCommand::new();
    let out = t.ok(&["icd", "--help"]);
    assert_mentions(&out, &["lookup", "search"]);
    let out = t.ok(&["icd", "lookup", "--help"]);
    assert!(out.contains("--json"), "{out}");
    t.fails(&["icd", "lookup"]);
}
