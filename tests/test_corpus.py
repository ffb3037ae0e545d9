"""The tests/data corpus: every tricky or hostile sheet gives its rows or its message.

tests/data/corpus.json (written by tests/data/make_corpus.py) lists each file with the rows
read_sheet must give, or a fragment of the message it must refuse it with. A refused file
is also run through the real command line (`run FILE --dry-run`): exit 2, the message, no
traceback. Hostile files are made at test time and read in a child process whose time and
peak memory are measured. The csv-spectrum corpus is read by tests/test_reader.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from bulk_update.errors import InputError
from bulk_update.reader import read_sheet
from tests.conftest import ROOT, require_program, run_cli
from tests.data import make_corpus

#: The files made at test time (`made`) are made once per module: once, on one worker.
pytestmark = pytest.mark.xdist_group("corpus-made")

DATA = Path(__file__).resolve().parent / "data"
ENTRIES: list[dict[str, Any]] = json.loads((DATA / "corpus.json").read_text(encoding="utf-8"))[
    "entries"
]

#: Limits from issue 4: a hostile file is answered within 10 s and 500 MB.
MAX_SECONDS = 10
MAX_RSS_MB = 500


def _id(entry: dict[str, Any]) -> str:
    return entry["file"] + (f"[{entry['sheet']}]" if "sheet" in entry else "")


def _kind(entry: dict[str, Any]) -> str:
    if "rows" in entry:
        return "rows"
    return "hostile" if entry.get("hostile") else "error"


def _select(*kinds: str) -> list[Any]:
    return [pytest.param(e, id=_id(e)) for e in ENTRIES if _kind(e) in kinds]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files of the corpus made at test time (bombs, 100 MB cells), all at once."""
    folder = tmp_path_factory.mktemp("made")
    for entry in ENTRIES:
        if "make" in entry:
            make_corpus.MAKERS[entry["make"]](folder / entry["file"])
    return folder


def path_of(entry: dict[str, Any], made: Path) -> Path:
    return (made if "make" in entry else DATA) / entry["file"]


def check_rows(path: Path, entry: dict[str, Any]) -> None:
    """read_sheet gives exactly the rows (and row numbers, numeric cells) of `entry`."""
    sheet = read_sheet(path, sheet=entry.get("sheet"))
    got = [dict(zip(sheet.headers, row.values, strict=True)) for row in sheet.rows]
    assert got == entry["rows"]
    assert sheet.header_row == entry.get("header_row", 1)
    numbers = entry.get("row_numbers", list(range(2, 2 + len(got))))
    assert [row.number for row in sheet.rows] == numbers
    numeric = [sorted(sheet.headers[i] for i in row.numeric) for row in sheet.rows]
    assert numeric == [sorted(n) for n in entry.get("numeric", [[] for _ in got])]
    assert sheet.sheet_name == entry.get("sheet_name", sheet.sheet_name)
    if path.suffix == ".xlsx":
        assert sheet.sheet_name is not None
    else:
        assert sheet.sheet_name is None


# --------------------------------------------------------------------------- the corpus


def test_the_corpus_lists_every_file() -> None:
    """Every committed data file has an entry, and every entry's file is there or made."""
    listed = {e["file"] for e in ENTRIES if "make" not in e}
    tooling = {"corpus.json", "make_corpus.py", "__init__.py", ".gitattributes"}
    present = {p.name for p in DATA.iterdir() if p.is_file()} - tooling
    assert present == listed
    assert {e["make"] for e in ENTRIES if "make" in e} == set(make_corpus.MAKERS)
    assert json.loads((DATA / "corpus.json").read_text(encoding="utf-8")) == {
        "entries": json.loads(json.dumps(make_corpus.ENTRIES))
    }, "corpus.json is out of date: run python tests/data/make_corpus.py"


@pytest.mark.parametrize("entry", _select("rows"))
def test_rows(entry: dict[str, Any]) -> None:
    check_rows(DATA / entry["file"], entry)


@pytest.mark.parametrize("entry", _select("error", "hostile"))
def test_error_from_the_library(entry: dict[str, Any], made: Path) -> None:
    with pytest.raises(InputError) as caught:
        read_sheet(path_of(entry, made), sheet=entry.get("sheet"))
    error = caught.value
    assert entry["error"] in error.message
    assert entry["file"] in error.message
    assert error.fix
    assert entry.get("fix", error.fix) == error.fix
    assert error.__cause__ is None


@pytest.mark.parametrize("entry", _select("error", "hostile"))
def test_error_on_the_command_line(entry: dict[str, Any], made: Path, tmp_path: Path) -> None:
    """`bulk-update run FILE --dry-run` for every refused file."""
    args: list[str | Path] = ["run", path_of(entry, made), "--dry-run"]
    args += ["--report", tmp_path / "r.xlsx"]
    if "sheet" in entry:
        args += ["--sheet", entry["sheet"]]
    result = run_cli(*args, cwd=tmp_path, env={"NO_COLOR": "1"})
    output = result.out + result.err
    assert result.code == 2, output
    assert entry["error"] in result.err
    assert "Fix:" in result.err
    assert "Traceback" not in output
    assert "would_update" not in output  # stopped before any row was planned


# --------------------------------------------------------------------------- time and memory

#: Reads one file, as the command line would, and prints what it was refused with.
_READ = """
import sys
from pathlib import Path
from bulk_update.errors import InputError
from bulk_update.reader import read_sheet
try:
    read_sheet(Path(sys.argv[1]))
except InputError as exc:
    print(exc.message)
else:
    print("read without an error")
"""

#: Runs _READ in a child of its own and reports the child's time and peak memory. This
#: process is a fresh, small interpreter: a child's ru_maxrss starts from its parent's size
#: at fork, so measured straight from pytest (hundreds of MB by then) it would say little.
_MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
child = subprocess.run(
    [sys.executable, "-c", sys.argv[1], sys.argv[2]], capture_output=True, text=True, timeout=60
)
seconds = time.perf_counter() - started
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kB on Linux
print(json.dumps({"output": child.stdout + child.stderr, "seconds": seconds, "peak_kb": peak_kb}))
"""


def measure(path: Path) -> tuple[str, float, float]:
    """Read `path` in a child process: (its output, seconds, peak RSS in MB)."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, _READ, str(path)],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    return report["output"], report["seconds"], report["peak_kb"] / 1024


@pytest.mark.parametrize("entry", _select("hostile"))
def test_hostile_file_is_refused_fast_in_bounded_memory(entry: dict[str, Any], made: Path) -> None:
    output, seconds, peak_mb = measure(path_of(entry, made))
    assert entry["error"] in output, output
    assert "Traceback" not in output
    assert seconds < MAX_SECONDS, f"{entry['file']}: {seconds:.1f} s"
    assert peak_mb < MAX_RSS_MB, f"{entry['file']}: {peak_mb:.0f} MB"


def test_measure_sees_a_large_peak(tmp_path: Path) -> None:
    # The measurement could be blind: a legitimate 20 MB CSV must show in the peak.
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    small.write_text("uid\nAE.1\n", encoding="utf-8")
    with big.open("w", encoding="utf-8") as out:
        out.write("uid,note\n")
        out.writelines(f"AE.{i},{'n' * 200}\n" for i in range(100_000))
    (small_output, _, small_mb), (big_output, _, big_mb) = measure(small), measure(big)
    assert "read without an error" in small_output and "read without an error" in big_output
    assert big_mb - small_mb > 25, (small_mb, big_mb)


# --------------------------------------------------------------------------- reproducible


def test_make_corpus_writes_the_same_files(tmp_path: Path) -> None:
    """The script makes every committed file of its own; they read as the corpus says."""
    written = make_corpus.write_python_files(tmp_path)
    assert {p.name for p in written} == {e["file"] for e in ENTRIES if e.get("made_by") == "python"}
    for entry in ENTRIES:
        if entry.get("made_by") != "python":
            continue
        path = tmp_path / entry["file"]
        if "rows" in entry:
            check_rows(path, entry)
            if path.suffix != ".xlsx":  # text byte for byte; workbooks carry time stamps
                assert path.read_bytes() == (DATA / path.name).read_bytes(), path.name
        else:
            with pytest.raises(InputError, match=re.escape(entry["error"])):
                read_sheet(path, sheet=entry.get("sheet"))


def test_libreoffice_makes_the_same_workbooks(tmp_path: Path) -> None:
    """The lo_* workbooks, made again by LibreOffice from lo_src/, read as committed."""
    require_program("soffice", "LibreOffice: apt-get install libreoffice-calc-nogui")
    made = make_corpus.soffice_xlsx(tmp_path)
    assert {p.name for p in made} == {e["file"] for e in ENTRIES if e.get("made_by") == "soffice"}
    for entry in ENTRIES:
        if entry.get("made_by") == "soffice":
            check_rows(tmp_path / entry["file"], entry)
    # The formula =1+1 of lo_features comes through as its cached value, not its text.
    workbook = openpyxl.load_workbook(tmp_path / "lo_features.xlsx")
    sheet = workbook["Candidates"]
    assert sheet["H4"].value == "=1+1"
    assert read_sheet(tmp_path / "lo_features.xlsx").rows[0].values[7] == "2"
