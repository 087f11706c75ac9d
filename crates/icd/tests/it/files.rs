//! Tables from disk: another edition in the same format loads without code changes, and broken files
//! fail with an error that names the file and line.

use std::io::Write;
use std::path::PathBuf;

use icd::{Code, CodeTable, TableError};

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A two-chapter WHO-style edition: enough structure to exercise every record type.
fn tiny_table() -> String {
    format!(
        "#icd-table\t1\n\
         @name\tICD-10\n\
         @version\t2019\n\
         @source\thand-written test fixture\n\
         @source_sha256\t{SHA}\n\
         @license_note\tnone\n\
         # comments and blank lines are ignored\n\
         \n\
         C\t1\tI\tA00\tB99\tCertain infectious and parasitic diseases\n\
         B\tA00\tA09\tIntestinal infectious diseases\n\
         E\tA00\t0\tCholera\n\
         E\tA000\t1\tCholera due to Vibrio cholerae 01, biovar cholerae\n\
         E\tA009\t1\tCholera, unspecified\n\
         C\t10\tX\tJ00\tJ99\tDiseases of the respiratory system\n\
         B\tJ00\tJ06\tAcute upper respiratory infections\n\
         E\tJ06\t0\tAcute upper respiratory infections of multiple and unspecified sites\n\
         E\tJ069\t1\tAcute upper respiratory infection, unspecified\n"
    )
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn load_err(text: &str) -> (String, TableError) {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "bad.tsv", text.as_bytes());
    let err = CodeTable::from_path(&p).expect_err("broken table must not load");
    let msg = err.to_string();
    assert!(
        msg.contains("bad.tsv"),
        "error does not name the file: {msg}"
    );
    (msg, err)
}

#[test]
fn another_edition_loads_from_plain_and_gzip_files() {
    let dir = tempfile::tempdir().unwrap();
    let plain = write(&dir, "who.tsv", tiny_table().as_bytes());
    let packed = write(&dir, "who.tsv.gz", &gzip(tiny_table().as_bytes()));
    for path in [plain, packed] {
        let t = CodeTable::from_path(&path).unwrap();
        assert_eq!(t.edition().label(), "ICD-10 2019");
        assert_eq!(t.edition().source_sha256, SHA);
        assert_eq!(t.edition().generated, None);
        assert_eq!(
            t.edition().extra,
            [("license_note".to_string(), "none".to_string())]
        );
        assert_eq!((t.len(), t.leaf_count(), t.chapters().len()), (5, 3, 2));
        let j069 = Code::parse("J06.9").unwrap();
        assert!(t.is_leaf(&j069));
        assert_eq!(t.chapter(&j069).unwrap().roman, "X");
        assert_eq!(t.block(&j069).unwrap().chapter, 10);
        assert_eq!(t.description(&Code::parse("a00").unwrap()), Some("Cholera"));
        let found: Vec<String> = t
            .search("cholera", 10)
            .iter()
            .map(|e| e.code.dotted())
            .collect();
        assert_eq!(found, ["A00", "A00.9", "A00.0"]);
    }
}

#[test]
fn missing_file_names_the_path() {
    let err = CodeTable::from_path(std::path::Path::new("/nonexistent/who.tsv")).unwrap_err();
    assert!(matches!(err, TableError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/who.tsv"), "{err}");
}

#[test]
fn wrong_first_line_is_not_a_table() {
    let (msg, err) = load_err("code\tdescription\nA00\tCholera\n");
    assert!(matches!(err, TableError::NotATable { .. }), "{msg}");
}

#[test]
fn broken_records_name_their_line() {
    let cases = [
        ("E\tA000\t1\t", "E\tA000\tyes\tCholera", 12, "leaf flag"),
        (
            "E\tA009\t1\tCholera, unspecified",
            "E\tA009",
            13,
            "3 fields",
        ),
        ("B\tJ00\tJ06\t", "B\tK00\tK01\t", 15, "outside chapter"),
        (
            "C\t10\tX\tJ00\tJ99",
            "C\tten\tX\tJ00\tJ99\tResp",
            14,
            "chapter number",
        ),
        (
            "C\t10\tX\tJ00\tJ99",
            "C\t10\tX\tJ99\tJ00\tResp",
            14,
            "range",
        ),
        ("E\tJ06\t0\t", "Q\tJ06\t0\t", 16, "unknown record"),
    ];
    for (old, new, line, reason) in cases {
        let text = tiny_table();
        let pos = text.find(old).unwrap_or_else(|| panic!("{old:?}"));
        let end = text[pos..].find('\n').unwrap() + pos;
        let broken = format!("{}{new}{}", &text[..pos], &text[end..]);
        let (msg, err) = load_err(&broken);
        assert!(
            matches!(err, TableError::Line { line: l, .. } if l == line),
            "{new:?}: {msg}"
        );
        assert!(msg.contains(reason), "{new:?}: {msg}");
    }
}

#[test]
fn malformed_and_duplicate_codes_are_rejected() {
    let (msg, err) = load_err(&tiny_table().replace("E\tJ069\t", "E\tJ0-9\t"));
    assert!(matches!(err, TableError::Code { line: 17, .. }), "{msg}");
    assert!(msg.contains("J0-9"), "{msg}");
    let (msg, err) = load_err(&tiny_table().replace("E\tA009\t", "E\tA00.0\t"));
    assert!(
        matches!(
            err,
            TableError::Duplicate {
                line: 13,
                first_line: 12,
                ..
            }
        ),
        "{msg}"
    );
}

#[test]
fn header_must_be_complete_and_come_first() {
    let (msg, err) = load_err(&tiny_table().replace("@source\thand-written test fixture\n", ""));
    assert!(
        matches!(err, TableError::MissingHeader { key: "source", .. }),
        "{msg}"
    );
    let (msg, _) = load_err(&tiny_table().replace(SHA, "abc"));
    assert!(msg.contains("source_sha256"), "{msg}");
    let (msg, _) = load_err(&format!("{}@late\tx\n", tiny_table()));
    assert!(msg.contains("after the first chapter"), "{msg}");
    let (msg, err) = load_err(&tiny_table().replace("E\t", "#E\t"));
    assert!(matches!(err, TableError::Empty { .. }), "{msg}");
}

#[test]
fn corrupt_bytes_fail_without_panic() {
    let packed = gzip(tiny_table().as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "cut.tsv.gz", &packed[..packed.len() / 2]);
    let err = CodeTable::from_path(&p).unwrap_err();
    assert!(matches!(err, TableError::Gzip { .. }), "{err}");
    assert!(err.to_string().contains("cut.tsv.gz"), "{err}");

    let mut bytes = tiny_table().into_bytes();
    bytes.extend_from_slice(b"E\tJ09\t1\t\xff\xfe\n");
    let p = write(&dir, "latin1.tsv", &bytes);
    let err = CodeTable::from_path(&p).unwrap_err();
    assert!(matches!(err, TableError::Utf8 { .. }), "{err}");
}

#[test]
fn embedded_bytes_round_trip_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = CodeTable::icd10cm();
    let path = dir.path().join("copy.tsv.gz");
    std::fs::write(
        &path,
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/icd10cm-2026.tsv.gz"
        ))
        .unwrap(),
    )
    .unwrap();
    let loaded = CodeTable::from_path(&path).unwrap();
    assert_eq!(loaded.edition(), embedded.edition());
    assert_eq!(loaded.len(), embedded.len());
    assert!(loaded.entries().eq(embedded.entries()));
}
