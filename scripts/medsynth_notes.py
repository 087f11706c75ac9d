"""MedSynth notes as a measurement set: the label leak taken out of each note.

MedSynth's SOAP notes state the diagnosis they are labelled with: the code's description in the
Assessment ("Enterocolitis due to Clostridium difficile"), often the code itself ("(ICD-10: A41.9)").
A model scored on them would be reading the answer. This writes a JSONL (fields id, note, code) in
which every case-insensitive occurrence of the gold code's description, every "ICD-10: <code>"
mention, every dotted ICD-10 code and the gold code undotted are replaced by "[removed]", and
prints how many notes had each kind removed. What is left still names findings, tests and drugs,
which is what a coder reads.

Usage: python3 scripts/medsynth_notes.py IN.jsonl[.gz] OUT.jsonl
IN has the fields of ../shared/data/medsynth_partial_hima_notes500 (hima_index, ICD10, ICD10_desc,
Note). Standard library only.
"""
import gzip
import json
import re
import sys

MARK = "[removed]"
# "(ICD-10: A41.9)", "ICD-10-CM code B18.2", "ICD10 A64": the mention with its code.
ICD_MENTION = re.compile(r"\(?\bICD[- ]?10(?:[- ]?CM)?(?:\s+code)?:?\s*[A-Z]\d[0-9A-Z]{0,2}(?:\.[0-9A-Z]{1,4})?\)?", re.I)
# Any dotted ICD-10 code (A41.9, B97.89), with or without the mention.
DOTTED = re.compile(r"\b[A-Z]\d[0-9A-Z]\.[0-9A-Z]{1,4}\b")


def scrub(note, code, desc):
    """The note with the label leak replaced, and which kinds were found."""
    found = []
    for name, pattern in (
        ("description", re.compile(re.escape(desc.strip()), re.I) if desc.strip() else None),
        ("icd mention", ICD_MENTION),
        ("dotted code", DOTTED),
        ("gold code", re.compile(r"\b" + re.escape(code) + r"\b")),
    ):
        if pattern is None:
            continue
        note, n = pattern.subn(MARK, note)
        if n:
            found.append(name)
    return note, found


def main():
    src, dst = sys.argv[1], sys.argv[2]
    opener = gzip.open if src.endswith(".gz") else open
    counts = {}
    rows = 0
    with opener(src, "rt", encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                code, desc, note = row["ICD10"], row["ICD10_desc"], row["Note"]
            except (ValueError, KeyError) as e:
                sys.exit(f"{src}: line {line_no}: {e!r}")
            note, found = scrub(note, code, desc)
            for kind in found:
                counts[kind] = counts.get(kind, 0) + 1
            out.write(json.dumps({"id": str(row.get("hima_index", line_no)), "note": note, "code": code}) + "\n")
            rows += 1
    print(f"{rows} notes written to {dst}")
    for kind, n in sorted(counts.items()):
        print(f"  {kind}: removed from {n} notes")


if __name__ == "__main__":
    main()
