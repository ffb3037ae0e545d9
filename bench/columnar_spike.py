"""Spike: a columnar (pyarrow) dry run of a large CSV, measured against pandas.read_csv.

Issue 5: a dry run of a 1,000,000-row x 12-column CSV to a CSV report in at most 3x the time
of `pandas.read_csv(path, dtype=str, keep_default_na=False)`. This script measures whether
a columnar path reaches that:

1. read the sheet with `pyarrow.csv.open_csv` (every column as text, a block at a time);
2. strip every cell as Python's `str.strip` does (`utf8_trim` with exactly the characters
   `str.isspace` accepts) and check each column with vectorized kernels that only ever
   ACCEPT what `schema.RowValidator` accepts unchanged;
3. send every row some check does not accept to the real `RowValidator` + `build_patch`;
4. write the report a block at a time: REPORT_COLUMNS then the input cells, each defused
   like `report.defuse_csv_cell` and quoted like `csv.writer` (QUOTE_MINIMAL, CRLF), the
   lines joined by arrow and their bytes written straight from arrow's buffer.

Duplicate uids need the whole sheet: a first pass reads the uid column alone.

Needs pyarrow, which the tool does not depend on (the `bench` extra installs it). From the
repository root::

    /work/venv/bin/python bench/columnar_spike.py \
        [--rows 1000000] [--repeat 2] [--sheet FILE] [--check-rows 20000]

The pandas baseline runs exactly as bench/size.py runs it, under this interpreter unless
--baseline-python names another. The correctness check runs the real tool
(`python -m bulk_update run ... --dry-run --report out.csv`) with that interpreter on a
clean and on a "dirty" sheet of --check-rows rows and compares the two reports cell by cell.

What the spike does not handle (it says so and stops, where a real implementation would
fall back to today's path for the whole sheet): a delimiter other than `,`, a file that is
not UTF-8, short rows (fewer cells than headers), empty or padded headers, a re-uploaded
results sheet, more than 62 data columns, a config with [defaults.updated_by] or
[columns]/[input] settings.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from size import HEADERS, PANDAS, run_child, write_sheet  # noqa: E402  (bench/ is not a package)

BLOCK_BYTES = 4 << 20
# Every character str.isspace() (hence str.strip() and re's \s) treats as white space.
PY_SPACE = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
_SPACE_CLASS = "".join(f"\\x{{{ord(c):04x}}}" for c in PY_SPACE)


class Unsupported(Exception):
    """The sheet has a shape the columnar path does not handle exactly."""


# ------------------------------------------------------------------ the columnar dry run


def _re2(pattern: str) -> str:
    r"""A Python `re` pattern for fullmatch as an anchored RE2 pattern.

    Python's `\s` is Unicode white space; RE2's is ASCII only, so it is spelled out. Only
    `\s` inside a character class is translated; anything else with a backslash-s fails.
    """
    translated = pattern.replace("[^@\\s]", f"[^@{_SPACE_CLASS}]")
    translated = translated.replace("[^@\\s.]", f"[^@{_SPACE_CLASS}.]")
    if "\\s" in translated:
        raise AssertionError(f"cannot translate {pattern!r} to RE2 exactly")
    return f"^(?:{translated})$"


# Accepts a subset of what schema._linkedin_url accepts: lower-case http(s) scheme, a
# lower-case host of non-empty [a-z0-9-] labels that is linkedin.com or ends in
# .linkedin.com, then nothing or a path of printable ASCII without white space. urlsplit
# gives exactly that host for these (netloc ends at the first '/'; no '@', ':' or '[').
# Anything else (upper case, ports, user info, IDNs) goes to the exact validator.
_LINKEDIN_RE2 = r"^https?://(?:[a-z0-9-]+\.)*linkedin\.com(?:/[A-Za-z0-9._~%!$&'()*+,;=:@/?#-]*)?$"


def _plan_checks(columns: Sequence[Any]) -> list[tuple[int, str, Any]]:
    """Per data column: (index, kind, argument); kind is text, regex, set or fallback."""
    from bulk_update import schema

    checks: list[tuple[int, str, Any]] = []
    for column in columns:
        field = column.field
        if field is None:
            continue
        if field == "uid":
            checks.append((column.index, "uid", _re2(schema._UID.pattern)))
        elif field.startswith(("updated_by.", "source_contact.")) or field in schema._CALLED:
            # Row-level rules (required together) or files/links: the exact validator.
            checks.append((column.index, "fallback", None))
        elif field in ("email",):
            checks.append((column.index, "regex", _re2(schema._EMAIL.pattern)))
        elif field == "prospect_status":
            checks.append((column.index, "set", list(schema.PROSPECT_STATUSES)))
        elif field == "address.country":
            checks.append((column.index, "set", sorted(schema.ISO_COUNTRY_CODES)))
        elif field == "linkedin_url":
            checks.append((column.index, "regex", _LINKEDIN_RE2))
        elif field in schema._CELL_RULES:
            checks.append((column.index, "fallback", None))  # a rule not translated
        else:
            checks.append((column.index, "text", None))  # free text: anything non-empty
    return checks


def _csv_options(headers: Sequence[str] | None, include: Sequence[str] | None = None) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pv

    bad: list[Any] = []

    def invalid(row: Any) -> str:
        bad.append(row)
        return "skip"

    read = pv.ReadOptions(block_size=BLOCK_BYTES, use_threads=True)
    parse = pv.ParseOptions(
        newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=invalid
    )
    convert = pv.ConvertOptions(
        column_types=dict.fromkeys(headers or (), pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        null_values=[],
        include_columns=list(include) if include else None,
    )
    return read, parse, convert, bad


def _headers(path: Path) -> list[str]:
    import pyarrow.csv as pv

    read, parse, convert, _ = _csv_options(None)
    reader = pv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    names = list(reader.schema.names)
    if any(not h or h != h.strip() for h in names) or len(set(names)) != len(names):
        raise Unsupported("empty, padded or repeated headers")
    return names


def _duplicates(path: Path, headers: list[str], uid_header: str) -> list[str]:
    """Pass 1: the uids typed on more than one row (the uid column alone)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pv

    read, parse, convert, bad = _csv_options(headers, [uid_header])
    reader = pv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    uids = [pc.utf8_trim(batch.column(0), characters=PY_SPACE) for batch in reader]
    if bad:
        raise Unsupported(f"{len(bad)} rows do not have {len(headers)} cells")
    if not uids:
        return []
    counts = pc.value_counts(pa.chunked_array(uids))
    many = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    return [u for u in many.to_pylist() if u]


def _raw(col: Any) -> tuple[Any, Any]:
    """A string array's offsets (rebased to 0) and its bytes, as numpy views (no copy)."""
    import numpy as np

    _, offsets_buf, data_buf = col.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[col.offset : col.offset + len(col) + 1]
    if data_buf is None or not len(col):
        return offsets - offsets[0], np.empty(0, np.uint8)
    data = np.frombuffer(data_buf, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return offsets - offsets[0], data


_SPECIAL = tuple(c.encode() for c in '",\r\n')


def _csv_field(col: Any) -> Any:
    """Cells as csv.writer (QUOTE_MINIMAL, ',') writes them: quoted when holding , " CR LF."""
    import pyarrow.compute as pc

    # One memchr per character over the column's bytes settles nearly every column.
    data = _raw(col)[1].tobytes()
    if not any(data.find(ch) >= 0 for ch in _SPECIAL):
        return col
    needs = pc.match_substring_regex(col, '[",\r\n]')
    quoted = pc.binary_join_element_wise(
        '"', pc.replace_substring(col, '"', '""'), '"', ""
    )  # fmt: skip
    return pc.if_else(needs, quoted, col)


_DEFUSE_PATTERN = r"^('*[=+\-@\t\r])"  # report._NEEDS_QUOTE at the start, one ' more
_FIRST_BYTES = frozenset(b"=+-@\t\r'")


def _defuse(col: Any) -> Any:
    """`defuse_csv_cell` on every cell; the regex runs only on a column that may need it."""
    import numpy as np
    import pyarrow.compute as pc

    offsets, data = _raw(col)
    starts = offsets[:-1][offsets[1:] > offsets[:-1]]
    table = np.zeros(256, dtype=bool)
    table[list(_FIRST_BYTES)] = True
    if not table[data[starts]].any():
        return col
    return pc.replace_substring_regex(col, pattern=_DEFUSE_PATTERN, replacement="'\\1")


def _write_lines(fh: Any, cols: list[Any]) -> None:
    """One CSV line per row, joined by arrow; the bytes go from arrow's buffer to the file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    cells = [_csv_field(c) for c in cols]
    cells[-1] = pc.binary_join_element_wise(cells[-1], "\r\n", "")
    lines = pc.binary_join_element_wise(*cells, ",")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    _, offsets_buf, data = lines.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    fh.write(memoryview(data)[start:end])


def columnar_dry_run(sheet: Path, report: Path) -> dict[str, Any]:
    """The dry run's report for `sheet` written to `report`; returns counts."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pv

    from bulk_update.models import REPORT_COLUMNS, Outcome, SheetRow
    from bulk_update.patch import build_patch
    from bulk_update.report import defuse_csv_cell
    from bulk_update.schema import InvalidRow, RowValidator, resolve_columns

    headers = _headers(sheet)
    if tuple(headers[: len(REPORT_COLUMNS)]) == REPORT_COLUMNS:
        raise Unsupported("a re-uploaded results sheet (cells to restore)")
    columns = resolve_columns(headers)
    checks = _plan_checks(columns)
    data_cols = [c for c in columns if c.field is not None and c.field != "uid"]
    if len(data_cols) > 62:
        raise Unsupported("more than 62 data columns")
    uid_col = next(c for c in columns if c.field == "uid")
    started = time.perf_counter()
    duplicates = _duplicates(sheet, headers, uid_col.header)
    pass1_s = time.perf_counter() - started
    validate = RowValidator(columns, base_dir=sheet.resolve().parent, duplicate_uids=duplicates)

    # A row's `fields` and outcome follow from which data columns it fills in (its shape):
    # build_patch runs once per shape, on the same keys RowValidator would give it.
    shapes: dict[int, tuple[str, str]] = {}

    def shape_result(mask: int) -> tuple[str, str]:
        if mask not in shapes:
            values = {c.field: "x" for i, c in enumerate(data_cols) if mask >> i & 1}
            built = build_patch(0, "x", values)
            shapes[mask] = (
                (str(Outcome.SKIPPED), "")
                if isinstance(built, Outcome)
                else (str(Outcome.WOULD_UPDATE), ",".join(built.fields))
            )
        return shapes[mask]

    read, parse, convert, bad = _csv_options(headers)
    reader = pv.open_csv(sheet, read_options=read, parse_options=parse, convert_options=convert)
    header_line = io.StringIO()
    csv.writer(header_line).writerow(
        [defuse_csv_cell(h) for h in (*REPORT_COLUMNS, *headers)]
    )  # fmt: skip
    dup_set = pa.array(duplicates, pa.string())
    next_row = 2  # the header is row 1 (a blank line before it is unsupported, see _headers)
    written = fallback = blank = 0
    outcomes: Counter[str] = Counter()
    tmp = report.with_name(f".{report.name}.spike.tmp")
    with tmp.open("wb") as fh:
        fh.write(("\ufeff" + header_line.getvalue()).encode("utf-8"))
        for batch in reader:
            n = batch.num_rows
            numbers = pa.array(np.arange(next_row, next_row + n, dtype=np.int64))
            next_row += n
            cells = [
                pc.utf8_trim(batch.column(i), characters=PY_SPACE) for i in range(len(headers))
            ]
            lengths = [np.diff(_raw(c)[0]) for c in cells]
            np_filled = [length > 0 for length in lengths]
            filled = [pa.array(f) for f in np_filled]
            any_cell = pa.array(np.logical_or.reduce(np_filled))
            np_mask = np.zeros(n, dtype=np.int64)
            for bit, c in enumerate(data_cols):
                np_mask |= np_filled[c.index].astype(np.int64) << bit
            mask = pa.array(np_mask)
            ok = pc.invert(pc.is_in(cells[uid_col.index], value_set=dup_set))
            for index, kind, arg in checks:
                col = cells[index]
                if kind == "uid":
                    good = pc.match_substring_regex(col, arg)
                elif kind == "text":
                    continue
                elif kind == "regex":
                    good = pc.or_(pc.invert(filled[index]), pc.match_substring_regex(col, arg))
                elif kind == "set":
                    good = pc.or_(pc.invert(filled[index]), pc.is_in(col, value_set=pa.array(arg)))
                else:
                    good = pc.invert(filled[index])
                ok = pc.and_(ok, good)
            # Rows with no cell at all are skipped by the reader: no report line.
            if not pc.all(any_cell).as_py():
                blank += n - pc.sum(any_cell).as_py()
                cells = [pc.filter(c, any_cell) for c in cells]
                numbers, mask, ok = (pc.filter(x, any_cell) for x in (numbers, mask, ok))
            n = len(numbers)
            uniq = pc.unique(mask)
            results = [shape_result(m) for m in uniq.to_pylist()]
            where = pc.index_in(mask, value_set=uniq)
            outcome = pc.take(pa.array([r[0] for r in results]), where)
            fields = pc.take(pa.array([r[1] for r in results]), where)
            message = pa.array([""] * n) if n else pa.array([], pa.string())
            uid_out = cells[uid_col.index]
            rejected = pc.invert(ok)
            count = pc.sum(rejected).as_py() or 0
            if count:
                fallback += count
                picked = pc.indices_nonzero(rejected)
                rows = zip(
                    pc.take(numbers, picked).to_pylist(),
                    *(pc.take(c, picked).to_pylist() for c in cells),
                    strict=True,
                )
                fb_outcome, fb_fields, fb_message = [], [], []
                for number, *values in rows:
                    check = validate(SheetRow(number, tuple(values)))
                    if isinstance(check, InvalidRow):
                        fb_outcome.append(str(Outcome.INVALID))
                        fb_fields.append("")
                        fb_message.append("; ".join(str(p) for p in check.problems))
                        continue
                    built = build_patch(number, check.uid, check.values)
                    if isinstance(built, Outcome):
                        fb_outcome.append(str(built))
                        fb_fields.append("")
                    else:
                        fb_outcome.append(str(Outcome.WOULD_UPDATE))
                        fb_fields.append(",".join(built.fields))
                    fb_message.append("")
                outcome = pc.replace_with_mask(outcome, rejected, pa.array(fb_outcome))
                fields = pc.replace_with_mask(fields, rejected, pa.array(fb_fields))
                message = pc.replace_with_mask(message, rejected, pa.array(fb_message))
            counted = pc.value_counts(outcome)
            outcomes.update(
                dict(
                    zip(
                        counted.field("values").to_pylist(),
                        counted.field("counts").to_pylist(),
                        strict=True,
                    )
                )
            )
            empty = pa.array([""] * n, pa.string())
            own = [
                numbers.cast(pa.string()),
                _defuse(uid_out),
                outcome,
                empty,  # http_status: none in a dry run
                empty,  # error
                _defuse(message),
                pa.array(["0"] * n, pa.string()),  # attempts
                _defuse(fields),
            ]
            if n:
                _write_lines(fh, own + [_defuse(c) for c in cells])
            written += n
    if bad:
        tmp.unlink()
        raise Unsupported(f"{len(bad)} rows do not have {len(headers)} cells")
    os.replace(tmp, report)
    return {
        "rows": written,
        "fallback_rows": fallback,
        "blank_rows": blank,
        "outcomes": {str(k): int(v) for k, v in outcomes.items()},
        "pass1_s": round(pass1_s, 3),
        "shapes": len(shapes),
    }


# ------------------------------------------------------------------ measuring


def _child_main(sheet: Path, report: Path, stats: Path) -> int:
    started = time.perf_counter()
    try:
        result = columnar_dry_run(sheet, report)
    except Unsupported as exc:
        result = {"unsupported": str(exc)}
    result["in_process_s"] = round(time.perf_counter() - started, 3)
    stats.write_text(json.dumps(result), encoding="utf-8")
    return 0 if "unsupported" not in result else 2


def dirty_sheet(clean: Path, path: Path, seed: int = 5) -> None:
    """`clean` with realistic mistakes and awkward cells mixed in, for the exactness check."""
    rng = random.Random(seed)
    with clean.open(newline="", encoding="utf-8") as fh:
        lines = list(csv.reader(fh))
    head, body = lines[0], lines[1:]
    col = {h: i for i, h in enumerate(head)}
    edits = [
        ("Prospect Status", lambda v: v.lower()),
        ("Prospect Status", lambda v: f"  {v.upper()}  "),
        ("Prospect Status", lambda v: "Maybe"),
        ("Email", lambda v: v.replace("@", " at ")),
        ("Email", lambda v: f"\u00a0{v}\u3000"),
        ("Email", lambda v: '=HYPERLINK("http://x")'),
        ("Address.Country", lambda v: v.lower()),
        ("Address.Country", lambda v: "XX"),
        ("UID", lambda v: v.replace("SZ.", "")),
        ("UID", lambda v: ""),
        ("UID", lambda v: "SZ.1"),
        ("UID", lambda v: "=cmd|' /C calc'!A0"),
        ("LinkedIn URL", lambda v: "HTTPS://WWW.LINKEDIN.COM/in/x"),
        ("LinkedIn URL", lambda v: "https://linkedin.com.evil.io/in/x"),
        ("LinkedIn URL", lambda v: "https://www.linkedin.com:443/in/x"),
        ("Note", lambda v: '-5 days, "urgent"\r\nsecond line'),
        ("Note", lambda v: "'@mention"),
        ("Note", lambda v: "\t+tab"),
        ("Note", lambda v: " \x1c "),
        ("custom_fields.Team", lambda v: '@team, "core"'),
        ("First Name", lambda v: "\x85José\x85"),
    ]
    out = []
    for n, row in enumerate(body):
        if n % 50 == 7:
            header, edit = rng.choice(edits)
            row[col[header]] = edit(row[col[header]])
        if n % 997 == 3:
            out.append([""] * len(head))  # a row of empty cells: no report line
        if n % 1499 == 5:
            out.append([])  # an empty line: counted as a row, no report line
        if n % 2003 == 9:
            out.append([" "] + [""] * (len(head) - 1))  # white space only: blank too
        out.append(row)
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([head, *out])


def compare(expected: Path, got: Path) -> list[str]:
    """Every difference between two CSV reports, by class (column and a sample)."""
    if expected.read_bytes() == got.read_bytes():
        return []
    with (
        expected.open(newline="", encoding="utf-8") as a,
        got.open(newline="", encoding="utf-8") as b,
    ):
        left, right = list(csv.reader(a)), list(csv.reader(b))
    diffs: Counter[str] = Counter()
    samples: dict[str, str] = {}
    if len(left) != len(right):
        diffs[f"line count {len(left)} vs {len(right)}"] += 1
    for i, (x, y) in enumerate(zip(left, right, strict=False)):
        if len(x) != len(y):
            diffs["cell count"] += 1
            samples.setdefault("cell count", f"line {i + 1}")
            continue
        for j, (p, q) in enumerate(zip(x, y, strict=True)):
            if p != q:
                name = left[0][j] if j < len(left[0]) else str(j)
                diffs[f"column {name!r}"] += 1
                samples.setdefault(f"column {name!r}", f"line {i + 1}: {p!r} vs {q!r}")
    if not diffs:
        diffs["same cells, different bytes (quoting, line ends or BOM)"] += 1
    return [f"{k}: {v} ({samples.get(k, '')})" for k, v in diffs.most_common()]


def check(rows: int, tmp: Path, tool_python: str, env: dict[str, str]) -> bool:
    clean = tmp / "check.csv"
    write_sheet(clean, rows)
    dirty = tmp / "dirty.csv"
    dirty_sheet(clean, dirty)
    all_same = True
    for sheet in (clean, dirty):
        expected, got = tmp / f"{sheet.stem}.tool.csv", tmp / f"{sheet.stem}.spike.csv"
        tool = [
            tool_python, "-m", "bulk_update", "run", str(sheet), "--dry-run", "--report",
            str(expected), "--quiet", "--state-dir", str(tmp / "state"),
        ]  # fmt: skip
        proc = subprocess.run(tool, cwd=tmp, env=env, capture_output=True, text=True)
        if proc.returncode not in (0, 1):
            print(f"the tool failed on {sheet.name} ({proc.returncode}): {proc.stderr[-500:]}")
            return False
        stats = columnar_dry_run(sheet, got)
        diffs = compare(expected, got)
        all_same = all_same and not diffs
        verdict = "byte-identical" if not diffs else f"{len(diffs)} difference classes"
        print(
            f"check {sheet.name}: {stats['rows']:,} report lines, {stats['fallback_rows']:,} "
            f"rows to the validator, outcomes {stats['outcomes']} -> {verdict}"
        )
        for line in diffs:
            print(f"    {line}")
    return all_same


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the best counts")
    parser.add_argument("--sheet", type=Path, help="use this CSV instead of generating one")
    parser.add_argument("--check-rows", type=int, default=20_000, help="0: no check")
    parser.add_argument("--baseline-python", default=sys.executable)
    parser.add_argument("--child", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child_main(*args.child)

    env = {k: v for k, v in os.environ.items() if not k.startswith("COMEET_")}
    env["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory(prefix="bench-columnar-") as tmp_name:
        tmp = Path(tmp_name)
        ok = True
        if args.check_rows:
            ok = check(args.check_rows, tmp, args.baseline_python, env)
        sheet = args.sheet or tmp / "sheet.csv"
        if args.sheet is None:
            write_sheet(sheet, args.rows)
        size = sheet.stat().st_size
        rows = args.rows if args.sheet is None else -1
        print(f"sheet: {sheet.name}, {size:,} B ({len(HEADERS)} columns in bench/size.py)")
        report, stats_path = tmp / "out.csv", tmp / "stats.json"
        pandas_argv = [args.baseline_python, "-c", PANDAS, str(sheet), str(rows)]
        if rows < 0:  # an own sheet: do not assert the row count
            pandas_argv[2] = PANDAS.replace("assert len(frame) ==", "len(frame) !=")
        spike_argv = [sys.executable, __file__, "--child", str(sheet), str(report), str(stats_path)]
        bases, spikes = [], []
        for _ in range(args.repeat):
            bases.append(run_child(pandas_argv, tmp, env))
            spikes.append(run_child(spike_argv, tmp, env))
        failed = [c for c in bases + spikes if c.code != 0]
        stats = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.exists() else {}
        if failed:
            print(f"a child failed (exit {failed[0].code}): {stats} {failed[0].stderr[-2000:]}")
            return 1
        base = min(c.wall_s for c in bases)
        spike = min(c.wall_s for c in spikes)
        print(f"{'':34} {'best wall s':>11} {'all runs':>16} {'peak RSS':>10}")
        for name, runs in (("pandas.read_csv (baseline)", bases), ("columnar dry run", spikes)):
            walls = " ".join(f"{c.wall_s:.2f}" for c in runs)
            peak = max(c.max_rss_kib for c in runs) / 1024
            print(f"{name:34} {min(c.wall_s for c in runs):11.2f} {walls:>16} {peak:7.0f} MiB")
        print(f"ratio columnar / pandas: {spike / base:.2f} (goal <= 3)")
        print(f"columnar child: {stats}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
