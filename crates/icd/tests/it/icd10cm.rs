//! The embedded ICD-10-CM April 1, 2026 table: contents, hierarchy, chapters, search.

use std::sync::OnceLock;

use icd::{Code, CodeTable};

fn table() -> &'static CodeTable {
    static TABLE: OnceLock<CodeTable> = OnceLock::new();
    TABLE.get_or_init(CodeTable::icd10cm)
}

fn leaves() -> &'static [&'static icd::Entry] {
    static LEAVES: OnceLock<Vec<&'static icd::Entry>> = OnceLock::new();
    LEAVES.get_or_init(|| table().leaves().collect())
}

fn code(s: &str) -> Code {
    Code::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn edition_metadata_names_the_source() {
    let e = table().edition();
    assert_eq!(e.name, "ICD-10-CM");
    assert_eq!(e.version, "April 1, 2026");
    assert_eq!(e.label(), "ICD-10-CM April 1, 2026");
    assert!(e.source.contains("simple-icd-10-cm 1.5.0"), "{}", e.source);
    assert!(
        e.source.contains("icd10c-tabular-April-1-2026.xml"),
        "{}",
        e.source
    );
    assert_eq!(
        e.source_sha256,
        "f161f8182aff3ce3a2a78e202f8259c08eaee2c670a9e45b0072445c52302935"
    );
    assert_eq!(e.generator.as_deref(), Some("scripts/gen_icd_table.py"));
    let date = e.generated.as_deref().expect("generation date");
    assert_eq!(date.len(), 10, "{date}");
    assert!(e
        .extra
        .iter()
        .any(|(k, v)| k == "wheel_sha256" && v.len() == 64));
}

#[test]
fn table_has_all_codes_and_74000_plus_leaves() {
    let t = table();
    assert!(t.leaf_count() >= 74_000, "{} leaves", t.leaf_count());
    assert_eq!(t.leaf_count(), t.leaves().count());
    assert_eq!(t.len(), t.entries().count());
    // The CDC's flat list in the same wheel has 98,466 distinct items: these codes, 22 chapter
    // numbers and the 297 block names, less 39 one-category blocks named like their category (B99).
    assert_eq!(t.len(), 98_466 - 22 - 297 + 39);
    assert_eq!(t.blocks().len(), 297);
    assert!(!t.is_empty());
}

#[test]
fn twenty_two_chapters_with_roman_numerals_and_ranges() {
    let chapters = table().chapters();
    assert_eq!(chapters.len(), 22);
    let roman = [
        "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII", "XIII", "XIV",
        "XV", "XVI", "XVII", "XVIII", "XIX", "XX", "XXI", "XXII",
    ];
    for (i, c) in chapters.iter().enumerate() {
        assert_eq!(c.number as usize, i + 1);
        assert_eq!(c.roman, roman[i]);
        assert!(!c.title.is_empty());
    }
    let ranges: Vec<String> = chapters.iter().map(|c| c.range()).collect();
    assert_eq!(
        ranges,
        [
            "A00-B99", "C00-D49", "D50-D89", "E00-E89", "F01-F99", "G00-G99", "H00-H59", "H60-H95",
            "I00-I99", "J00-J99", "K00-K95", "L00-L99", "M00-M99", "N00-N99", "O00-O9A", "P00-P96",
            "Q00-QA0", "R00-R99", "S00-T88", "V00-Y99", "Z00-Z99", "U00-U85"
        ]
    );
    assert_eq!(chapters[2].title, "Diseases of the blood and blood-forming organs and certain disorders involving the immune mechanism");
}

#[test]
fn acceptance_codes_have_descriptions_and_leaf_flags() {
    let t = table();
    let cases = [
        (
            "J06.9",
            "Acute upper respiratory infection, unspecified",
            true,
        ),
        ("I10", "Essential (primary) hypertension", true),
        (
            "D50.0",
            "Iron deficiency anemia secondary to blood loss (chronic)",
            true,
        ),
        ("H60.0", "Abscess of external ear", false),
        ("M25562", "Pain in left knee", true),
    ];
    for (c, desc, leaf) in cases {
        let c = code(c);
        assert!(t.is_valid(&c), "{c}");
        assert_eq!(t.description(&c), Some(desc), "{c}");
        assert_eq!(t.is_leaf(&c), leaf, "{c}");
        assert_eq!(t.get(&c).unwrap().code, c);
    }
    // H60.0 is not billable because more specific codes exist below it.
    let below: Vec<String> = t
        .descendants(&code("H60.0"))
        .map(|e| e.code.dotted())
        .collect();
    assert!(below.contains(&"H60.01".to_string()), "{below:?}");
    assert!(below.iter().all(|c| c.starts_with("H60.0")));
}

#[test]
fn true_chapters_of_the_acceptance_codes() {
    let t = table();
    let cases = [
        ("D50.0", "III", "D50-D89"),
        ("D49", "II", "C00-D49"),
        ("D49.9", "II", "C00-D49"),
        ("H60.0", "VIII", "H60-H95"),
        ("H59", "VII", "H00-H59"),
        ("J06.9", "X", "J00-J99"),
        ("I10", "IX", "I00-I99"),
        ("M25562", "XIII", "M00-M99"),
        ("C7A.00", "II", "C00-D49"),
        ("QA0.0101", "XVII", "Q00-QA0"),
        ("O9A.11", "XV", "O00-O9A"),
        ("U07.1", "XXII", "U00-U85"),
        ("T81.4XXA", "XIX", "S00-T88"),
    ];
    for (c, roman, range) in cases {
        let ch = t.chapter(&code(c)).unwrap_or_else(|| panic!("{c}"));
        assert_eq!(
            (ch.roman.as_str(), ch.range()),
            (roman, range.to_string()),
            "{c}"
        );
    }
}

#[test]
fn chapter_edges_and_gaps() {
    let t = table();
    for ch in t.chapters() {
        for edge in [&ch.first, &ch.last] {
            assert_eq!(
                t.chapter(&code(edge)).map(|c| c.number),
                Some(ch.number),
                "{edge}"
            );
        }
    }
    // Well-formed categories between or after the chapter ranges belong to no chapter.
    for c in ["E90", "F00.1", "H96", "K96", "P97", "QA1", "U86", "U99.9"] {
        assert!(t.chapter(&code(c)).is_none(), "{c}");
        assert!(t.block(&code(c)).is_none(), "{c}");
    }
}

#[test]
fn chapter_by_range_agrees_with_table_membership_for_every_item() {
    let t = table();
    let mut leaves = 0;
    for e in t.entries() {
        let listed = t.listed_chapter(&e.code).expect("items are listed");
        let by_range = t
            .chapter(&e.code)
            .unwrap_or_else(|| panic!("{} in no chapter", e.code));
        assert_eq!(by_range, listed, "chapter of {}", e.code);
        let block = t
            .block(&e.code)
            .unwrap_or_else(|| panic!("{} in no block", e.code));
        assert_eq!(Some(block), t.listed_block(&e.code), "block of {}", e.code);
        assert_eq!(block.chapter, listed.number);
        leaves += usize::from(e.leaf);
    }
    assert_eq!(leaves, t.leaf_count());
}

#[test]
fn blocks_are_the_narrowest_range() {
    let t = table();
    let b = t.block(&code("C00.0")).unwrap();
    assert_eq!((b.range(), b.chapter), ("C00-C14".to_string(), 2));
    let b = t.block(&code("D50.0")).unwrap();
    assert_eq!(b.range(), "D50-D53");
    assert_eq!(b.title, "Nutritional anemias");
    assert_eq!(t.block(&code("D49")).unwrap().range(), "D49");
    assert_eq!(t.block(&code("M25.562")).unwrap().range(), "M20-M25");
    assert!(t.blocks().iter().any(|b| b.range() == "C00-C96"));
    // Alphanumeric categories sit where the CDC lists them, not where character order would put them.
    assert_eq!(t.block(&code("C4A.0")).unwrap().range(), "C43-C44");
    assert_eq!(t.block(&code("M1A.00X0")).unwrap().range(), "M05-M14");
    assert_eq!(t.block(&code("Z3A.20")).unwrap().range(), "Z30-Z39");
    assert_eq!(t.block(&code("J47.9")).unwrap().range(), "J40-J4A");
    // A category the table lacks falls back to the narrowest range that holds it.
    assert_eq!(t.block(&code("C42.0")).unwrap().range(), "C00-C75");
}

#[test]
fn hierarchy_is_consistent() {
    let t = table();
    for e in t.entries() {
        let below = t.descendants(&e.code).count();
        assert_eq!(
            e.leaf,
            below == 0,
            "{} leaf={} below={below}",
            e.code,
            e.leaf
        );
        match t.parent(&e.code) {
            None => assert_eq!(e.code.as_str().len(), 3, "{} has no parent", e.code),
            Some(p) => {
                assert!(!p.leaf, "parent {} of {} is a leaf", p.code, e.code);
                assert!(e.code.as_str().starts_with(p.code.as_str()));
            }
        }
        assert_eq!(
            t.category(&e.code).map(|c| c.code.as_str()),
            Some(e.code.category())
        );
    }
}

#[test]
fn seventh_character_codes_are_expanded_with_placeholders() {
    let t = table();
    for c in [
        "S52.521A", "T84.50XA", "T84.50XD", "T84.50XS", "S06.1X7A", "T81.40XA",
    ] {
        assert!(t.is_leaf(&code(c)), "{c} should be a billable code");
    }
    assert_eq!(
        t.description(&code("S52.521A")),
        Some("Torus fracture of lower end of right radius, initial encounter for closed fracture")
    );
    assert_eq!(
        t.description(&code("T84.50XA")),
        Some("Infection and inflammatory reaction due to unspecified internal joint prosthesis, initial encounter")
    );
    // The base code is an item but not billable; the padded base is not an item at all.
    assert!(t.is_valid(&code("T84.50")) && !t.is_leaf(&code("T84.50")));
    assert!(!t.is_valid(&code("T84.50X")));
    assert_eq!(
        t.parent(&code("T84.50XA")).map(|e| e.code.dotted()),
        Some("T84.50".to_string())
    );
    // 7th characters inherited from the category (S52) reach its deepest subcategories, unless a
    // subcategory defines its own (torus fractures are closed: no B).
    assert!(t.is_leaf(&code("S52.501B")));
    assert!(!t.is_valid(&code("S52.521B")));
    // A prose note in S06 rules out D and S after 6th character 7 or 8.
    assert!(!t.is_valid(&code("S06.1X7D")) && !t.is_valid(&code("S06.1X8S")));
    assert!(t.is_valid(&code("S06.1X9D")));
}

#[test]
fn truncated_injury_code_is_well_formed_but_not_an_item() {
    let t = table();
    let c = code("T81.4XX");
    assert!(!t.is_valid(&c));
    assert!(!t.is_leaf(&c));
    assert_eq!(t.description(&c), None);
    assert_eq!(t.get(&c), None);
    assert_eq!(t.chapter(&c).map(|ch| ch.roman.as_str()), Some("XIX"));
    assert_eq!(t.listed_chapter(&c), None);
    assert_eq!(
        t.parent(&c).map(|e| e.code.dotted()),
        Some("T81.4".to_string())
    );
    assert!(!t.is_valid(&code("T81.4XXA")));
}

#[test]
fn search_finds_codes_by_words_and_by_prefix() {
    let t = table();
    let hits: Vec<String> = t
        .search("iron deficiency anemia blood loss", 5)
        .iter()
        .map(|e| e.code.dotted())
        .collect();
    assert_eq!(hits.first().map(String::as_str), Some("D50.0"), "{hits:?}");
    let hits = t.search("essential hypertension", 3);
    assert_eq!(hits[0].code.dotted(), "I10");
    let hits = t.search("j06.9", 3);
    assert_eq!(hits[0].code.dotted(), "J06.9");
    let hits = t.search("KNEE PAIN left", 10);
    assert!(hits.iter().any(|e| e.code.dotted() == "M25.562"));
    assert!(t
        .search("sezary", 3)
        .iter()
        .all(|e| e.code.category() == "C84"));
    assert_eq!(t.search("fracture", 7).len(), 7);
    assert!(t.search("qwertyuiop", 7).is_empty());
}

proptest::proptest! {
    /// Codes that are not in the table (a leaf with its tail changed) still get the chapter and block
    /// of the category they are written under.
    #[test]
    fn chapter_of_unlisted_codes_follows_their_category(
        pick in 0usize..100_000,
        tail in "[0-9A-Z]{0,3}",
    ) {
        let t = table();
        let leaf = leaves()[pick % leaves().len()];
        let s = format!("{}{tail}", leaf.code.category());
        let c = Code::parse(&s[..s.len().min(7)]).unwrap();
        proptest::prop_assert_eq!(t.chapter(&c), t.listed_chapter(&leaf.code));
        proptest::prop_assert_eq!(t.block(&c), t.listed_block(&leaf.code));
    }
}
