//! Code normalisation under a byte fuzzer (issue #14): no input panics, over-allocates, or
//! echoes more than a short value in its error; an accepted code is canonical and round-trips.

use std::path::Path;

use icd::Code;

#[test]
fn code_parse_never_panics_and_keeps_errors_short() {
    let corpus = fuzzing::corpus(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/code"));
    let report = fuzzing::fuzz("code", &corpus, fuzzing::Budget::from_env(), |bytes| {
        let input = String::from_utf8_lossy(bytes);
        match Code::parse(&input) {
            Ok(code) => {
                let again = Code::parse(&code.dotted()).expect("a dotted code parses");
                assert_eq!(again, code);
                assert!(code.as_str().len() <= 7);
            }
            Err(e) => {
                let message = e.to_string();
                assert!(message.len() < 200, "{} bytes: {message}", message.len());
            }
        }
    });
    assert_eq!(report.corpus, corpus.len());
    assert!(corpus.len() >= 10, "the corpus was found");
}

#[test]
#[should_panic(expected = "asked for one allocation")]
fn the_fuzzer_catches_an_unbounded_allocation() {
    let budget = fuzzing::Budget {
        time: std::time::Duration::ZERO,
        ..fuzzing::Budget::from_env()
    };
    fuzzing::fuzz(
        "self-check",
        &[("tiny".into(), b"x".to_vec())],
        budget,
        |bytes| {
            let claimed = std::hint::black_box(vec![0u8; 200 << 20]);
            assert!(claimed.len() > bytes.len());
        },
    );
}
