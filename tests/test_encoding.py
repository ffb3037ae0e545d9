"""A CSV's encoding found, not assumed; text is text (reader/encoding.py, reader/csvfile.py).

Every sheet here is written by tests/encoding_corpus.py into a temporary folder: the same
candidates sheet in the encodings Excel's plain "CSV" uses around the world.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bulk_update.columnar import dry_run_csv
from bulk_update.config import Settings, parse_config
from bulk_update.errors import ConfigError, InputError
from bulk_update.reader import csvfile as csvfile_module
from bulk_update.reader import read_sheet, sniff_csv
from bulk_update.sandbox import ThreadedSandbox
from tests.encoding_corpus import ENCODINGS, LANGUAGES, sheet_rows, sheet_text, write_sheet

from .conftest import run_cli
from .test_messages import check
from .test_web import _config, _settings, page_for, sandbox  # noqa: F401 (the fixture)

#: Sheets Excel writes in other Latin code pages, which must never be read as cp1252.
MORE = {"cp1250": "central", "cp1254": "turkish"}


def read_or_refusal(path: Path, encoding: str | None = None) -> list[tuple[str, ...]] | str:
    """The header and rows read, or the refusal's message."""
    try:
        sheet = read_sheet(path, encoding=encoding)
    except InputError as exc:
        return exc.message
    return [sheet.headers, *(row.values for row in sheet.rows)]


def named_encodings_decode(message: str, data: bytes, text: str) -> bool:
    """True when one of the encodings a refusal names reads `data` as `text` exactly."""
    named = message.split("it may be ", 1)[1].replace(" or ", ", ").split(", ")
    for name in named:
        try:
            if data.decode(name) == text:
                return True
        except UnicodeDecodeError:
            continue
    return False


@pytest.mark.parametrize("rows", [3, 30])
@pytest.mark.parametrize("encoding", [*ENCODINGS, *MORE])
def test_the_same_sheet_in_every_encoding_reads_exactly_or_is_refused(
    tmp_path: Path, encoding: str, rows: int
) -> None:
    language = ENCODINGS.get(encoding) or MORE[encoding]
    path = tmp_path / "candidates.csv"
    path.write_bytes(sheet_text(language, rows).encode(encoding))
    got = read_or_refusal(path)
    if isinstance(got, str):
        # Refused: only a short sheet, naming the encoding that would read it right.
        assert rows < 30, got
        assert "cannot be told for sure" in got
        assert named_encodings_decode(got, path.read_bytes(), sheet_text(language, rows))
    else:
        assert got == sheet_rows(language, rows)  # never read wrong


def test_a_western_sheet_reads_as_cp1252_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "western.csv"
    written = write_sheet(path, "cp1252", 30)
    sheet = read_sheet(path)
    assert sheet.encoding == "cp1252 (detected)"
    assert [sheet.headers, *(r.values for r in sheet.rows)] == written
    assert any("Øyvind" in row for row in written) and any("Müller" in row for row in written)


def test_a_hebrew_sheet_reads_as_cp1255(tmp_path: Path) -> None:
    path = tmp_path / "hebrew.csv"
    write_sheet(path, "cp1255", 30)
    sheet = read_sheet(path)
    assert sheet.encoding == "cp1255 (detected)"
    assert sheet.rows[0].values[1:3] == ("עדי", "כהן")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_unicode_files_say_their_encoding(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / "all.csv"
    write_sheet(path, encoding, 3)
    assert read_sheet(path).encoding == f"{encoding} (detected)"


@settings(max_examples=60, deadline=None)
@given(
    encoding=st.sampled_from(sorted(set(ENCODINGS) - {"utf-8", "utf-8-sig", "utf-16"} | set(MORE))),
    names=st.lists(st.integers(0, 1000), min_size=1, max_size=40),
)
# Three Japanese names charset-normalizer finds too chaotic in every code page: refused as
# an encoding that cannot be told, not as binary data.
@example(encoding="shift_jis", names=[532, 819, 819])
def test_never_read_wrong(encoding: str, names: list[int]) -> None:
    # Any handful of a language's names, cities and notes, in its code page: read exactly
    # or refused, never anything else.
    language = ENCODINGS.get(encoding) or MORE[encoding]
    firsts, lasts, cities, notes = LANGUAGES[language]
    lines = ["uid,first_name,last_name,custom_fields.City,note"]
    for i, n in enumerate(names):
        note = notes[n % len(notes)] if n % 2 else ""
        lines.append(
            f"AE.{i},{firsts[n % len(firsts)]},{lasts[n // 7 % len(lasts)]},"
            f"{cities[n // 3 % len(cities)]},{note}"
        )
    text = "\r\n".join(lines) + "\r\n"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.csv"
        path.write_bytes(text.encode(encoding))
        got = read_or_refusal(path)
    if isinstance(got, str):
        assert "cannot be told for sure" in got, got
    else:
        assert got == [tuple(line.split(",")) for line in lines]


# --------------------------------------------------------------------------- overrides


def _short_hebrew(tmp_path: Path) -> Path:
    # One short name: its bytes are as good Greek or Cyrillic letters.
    path = tmp_path / "short.csv"
    path.write_bytes("uid,first_name\r\nAE.1,עדי\r\n".encode("cp1255"))
    return path


def test_a_short_sheet_is_refused_naming_the_likely_encodings(tmp_path: Path) -> None:
    path = _short_hebrew(tmp_path)
    with pytest.raises(InputError) as info:
        read_sheet(path)
    assert "short.csv is not UTF-8 and its encoding cannot be told for sure" in info.value.message
    check(info.value.message)
    assert "cp1255" in info.value.message
    assert info.value.fix and "CSV UTF-8" in info.value.fix and "--encoding" in info.value.fix


def test_encoding_given_reads_and_says_so(tmp_path: Path) -> None:
    sheet = read_sheet(_short_hebrew(tmp_path), encoding="cp1255")
    assert sheet.rows[0].values == ("AE.1", "עדי")
    assert sheet.encoding == "cp1255 (given)"


def test_a_bom_or_utf8_is_read_as_such_whatever_is_given(tmp_path: Path) -> None:
    # A standing `[input] encoding` must not garble the day's CSV UTF-8.
    for encoding in ("utf-8-sig", "utf-8"):
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes("uid,first_name\r\nAE.1,עדי\r\n".encode(encoding))
        sheet = read_sheet(path, encoding="cp1255")
        assert sheet.rows[0].values == ("AE.1", "עדי")
        assert sheet.encoding == f"{encoding} (detected)"


def test_utf16_without_bom_reads_when_given(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_bytes("uid\tcity\r\nAE.1\tחיפה\r\n".encode("utf-16-le"))
    with pytest.raises(InputError, match="binary data"):
        read_sheet(path)
    assert read_sheet(path, encoding="utf-16-le").rows[0].values == ("AE.1", "חיפה")


def test_a_byte_the_given_encoding_does_not_decode_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"uid,first_name\r\nAE.1,\xf2\xe3\xe9\r\nAE.2,\xff\r\nAE.3,x\r\n")
    with pytest.raises(InputError) as info:
        read_sheet(path, encoding="cp1255")
    assert info.value.message.startswith("bad.csv, row 3: not valid cp1255 text")
    check(info.value.message)


def test_a_late_byte_the_detected_encoding_does_not_decode_names_the_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Detection reads a bounded sample; a byte past it that cp1255 lacks is refused.
    monkeypatch.setattr(csvfile_module, "_SAMPLE_BYTES", 2048)
    monkeypatch.setattr(csvfile_module, "SCAN_BYTES", 1024)
    text = sheet_text("hebrew", 200)
    path = tmp_path / "late.csv"
    path.write_bytes(text.encode("cp1255") + b"AE.x,\xff\r\n")
    with pytest.raises(InputError) as info:
        read_sheet(path)
    assert info.value.message.startswith("late.csv, row 202: not valid cp1255 text")
    check(info.value.message)


def test_config_encoding_and_unknown_names(tmp_path: Path) -> None:
    assert parse_config({"input": {"encoding": "Windows-1255"}}).encoding == "cp1255"
    with pytest.raises(ConfigError, match=r"input\.encoding 'klingon' is not an encoding") as info:
        parse_config({"input": {"encoding": "klingon"}}, source="config file 'b.toml'")
    check(info.value.message)
    with pytest.raises(ConfigError, match="'base64' is not an encoding"):
        Settings().with_overrides(encoding="base64")
    with pytest.raises(ConfigError, match="'klingon' is not an encoding"):
        read_sheet(_short_hebrew(tmp_path), encoding="klingon")  # the Python API too


def test_columnar_dry_run_steps_aside_for_anything_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    write_sheet(path, "cp1255", 30)
    assert sniff_csv(path).encoding == "cp1255"
    assert dry_run_csv(path, report_path=tmp_path / "r.csv") is None
    short = _short_hebrew(tmp_path)
    assert dry_run_csv(short, Settings(encoding="cp1255"), report_path=tmp_path / "r.csv") is None
    ascii_only = tmp_path / "a.csv"
    ascii_only.write_bytes(b"uid,first_name\r\nAE.1,Dana\r\n")
    assert sniff_csv(ascii_only, "cp1255").label == "utf-8 (detected)"


def test_cli_encoding_flag_config_and_dry_run_line(tmp_path: Path) -> None:
    path = _short_hebrew(tmp_path)
    refused = run_cli("run", path, "--dry-run", cwd=tmp_path)
    assert refused.code == 2 and "cannot be told for sure" in refused.err
    res = run_cli("run", path, "--dry-run", "--encoding", "cp1255", cwd=tmp_path)
    assert res.code == 0, res.err
    assert "encoding: cp1255 (given)" in res.out
    assert "(encoding: cp1255 (given))" in res.err  # the log
    (tmp_path / "bulk_update.toml").write_text('[input]\nencoding = "cp1255"\n', encoding="utf-8")
    res = run_cli("run", path, "--dry-run", cwd=tmp_path)
    assert res.code == 0 and "encoding: cp1255 (given)" in res.out
    unknown = run_cli("run", path, "--dry-run", "--encoding", "klingon", cwd=tmp_path)
    assert unknown.code == 2 and "--encoding 'klingon' is not an encoding" in unknown.err
    utf8 = tmp_path / "u.csv"
    utf8.write_text("uid,first_name\nAE.1,Dana\n", encoding="utf-8")
    res = run_cli("run", utf8, "--dry-run", cwd=tmp_path)  # the columnar path
    assert res.code == 0 and "encoding: utf-8 (detected)" in res.out


async def test_web_upload_ambiguous_shows_the_message_and_config_applies(
    tmp_path: Path,
    sandbox: ThreadedSandbox,  # noqa: F811
) -> None:
    data = _short_hebrew(tmp_path).read_bytes()
    async with page_for(_config(tmp_path / "a", sandbox)) as page:
        status, _, html = await page.upload("short.csv", data)
        assert status == 400 and "cannot be told for sure" in html and "How to fix" in html
    given = _settings(tmp_path / "b", sandbox.base_url, encoding="cp1255")
    async with page_for(_config(tmp_path / "b", sandbox, settings=given)) as page:
        status, where, _ = await page.upload("short.csv", data)
        assert status == 303 and where.endswith("/preview")
        status, html = await page.get(where)
        assert status == 200 and "Encoding <strong>cp1255 (given)</strong>" in html
        assert "עדי" in html


# --------------------------------------------------------------------------- text is text


@pytest.mark.parametrize("rows", [1, 50])
def test_control_characters_in_quoted_cells_are_text(tmp_path: Path, rows: int) -> None:
    path = tmp_path / "vt.csv"
    body = "".join(f'AE.{i},"line\x0bone\x0cand two"\r\n' for i in range(rows))
    path.write_bytes(("uid,note\r\n" + body).encode())
    assert rows > 1 or len(path.read_bytes()) < 45  # the 40-byte file
    sheet = read_sheet(path)
    assert len(sheet.rows) == rows
    assert sheet.rows[0].values == ("AE.0", "line\x0bone\x0cand two")


@pytest.mark.parametrize(
    "data",
    [
        b"uid,note\r\nAE.1,a\x00b\r\n",  # a NUL byte
        random.Random(4).randbytes(4096),  # random bytes, NULs among them
        bytes(b for b in random.Random(5).randbytes(4096) if b),  # ... and without
    ],
)
def test_nul_bytes_and_random_binary_are_refused(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(data)
    with pytest.raises(InputError, match=r"bin\.csv is not a text CSV file"):
        read_sheet(path)


def test_a_text_file_named_xlsx_is_still_named_for_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "t.xlsx"
    path.write_bytes(b'uid,note\r\nAE.1,"a\x0bb"\r\n')
    with pytest.raises(InputError, match="really a text file"):
        read_sheet(path)
    path.write_bytes(bytes(b for b in random.Random(5).randbytes(4096) if b))
    with pytest.raises(InputError, match=r"not a readable \.xlsx workbook"):
        read_sheet(path)
