"""The web page's "Undo this run" and the undo sheet's download (contract section 11, issue
16): the run's undo sheet goes through the same preview and confirm steps as any sheet, and
puts back every field that had a value, the resume byte for byte."""

from __future__ import annotations

import asyncio
import base64
import re
import sqlite3
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from html import unescape
from io import BytesIO
from pathlib import Path

import pytest
from openpyxl import load_workbook

from bulk_update.journal import JOURNAL_FILE
from bulk_update.sandbox import SandboxState, ThreadedSandbox
from bulk_update.undo import backup_path

from .conftest import run_cli
from .test_backup import BEFORE, HEADER, NEW_CV, OLD_CV, READABLE, ROWS, make_state, write_csv
from .test_web import KEY, SECRET, Page, _config, _counts, _run_to_the_end, page_for


async def test_undo_this_run_previews_the_undo_sheet_then_puts_everything_back(
    tmp_path: Path,
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "new.pdf").write_bytes(NEW_CV)
    sheet = write_csv(tmp_path / "people.csv", HEADER, ROWS).read_bytes()
    state = make_state()
    with ThreadedSandbox(state, api_key=KEY, secret=SECRET) as sb:
        async with page_for(_config(tmp_path, sb, files_dir=files)) as page:
            _, where, _ = await page.upload("people.csv", sheet)
            _, run_path, _ = await page.post(
                where.replace("/preview", "/run"), {"csrf_token": page.csrf, "backup": "on"}
            )
            await _run_to_the_end(page, run_path)
            assert state.candidates["AE.1"]["first_name"] == "Dina"
            assert base64.b64decode(state.candidates["AE.1"]["resume"]["file"]) == NEW_CV
            _, html = await page.get(run_path)
            assert f'action="{run_path}/undo"' in html and 'id="undo-button"' in html

            # The download: the sheet and its resumes' folder, in one zip.
            async with page.client.get(run_path + "/undo") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "application/zip"
                assert resp.headers["Content-Disposition"].endswith("people.undo.zip")
                bundle = zipfile.ZipFile(BytesIO(await resp.read()))
            names = bundle.namelist()
            assert names[0] == "people.undo.xlsx"
            (cv,) = (n for n in names if n.endswith("dana-cv.pdf"))
            assert bundle.read(cv) == OLD_CV
            ws = load_workbook(BytesIO(bundle.read(names[0]))).worksheets[0]
            lines = [list(r) for r in ws.iter_rows(values_only=True)]
            assert lines[1][lines[0].index("resume")] == cv  # relative: found once unpacked

            # Asked for by several at once, the zip is made once and whole for each.
            for made in (tmp_path / "reports").glob("*.undo.zip"):
                made.unlink()

            async def fetch() -> bytes:
                async with page.client.get(run_path + "/undo") as resp:
                    assert resp.status == 200
                    return await resp.read()

            assert len(set(await asyncio.gather(*(fetch() for _ in range(6))))) == 1
            assert not [p for p in (tmp_path / "reports").iterdir() if p.suffix == ".tmp"]

            # Without the page's token nothing happens.
            status, _, refused = await page.post(run_path + "/undo", {})
            assert status == 403 and "security token" in refused

            # Undo this run: the undo sheet's preview, like any sheet's; nothing sent yet.
            state.requests.clear()
            status, undo_where, _ = await page.post(run_path + "/undo", {"csrf_token": page.csrf})
            assert status == 303 and undo_where.endswith("/preview")
            _, html = await page.get(undo_where)
            assert state.requests == []
            assert "people.undo.xlsx" in html and "preview-worksheet" not in html
            assert "The undo sheet of <strong>people.csv</strong>" in html
            assert _counts(html, "preview-counts") == {"would_update": 2}
            shown = unescape(html.split('id="first-patches"', 1)[1])
            assert '"first_name": "Dana"' in shown and '"name": "dana-cv.pdf"' in shown
            _, undo_run, _ = await page.post(
                undo_where.replace("/preview", "/run"), {"csrf_token": page.csrf}
            )
            await _run_to_the_end(page, undo_run)
            _, html = await page.get(undo_run)
            assert _counts(html, "run-counts") == {"updated": 2}

    assert [r.method for r in state.requests] == ["PATCH", "PATCH"]  # no backup asked
    for uid, before in BEFORE.items():
        for path in READABLE:
            if before.get(path):
                assert state.candidates[uid][path] == before[path], (uid, path)
    assert base64.b64decode(state.candidates["AE.1"]["resume"]["file"]) == OLD_CV
    assert state.candidates["AE.1"]["resume"]["name"] == "dana-cv.pdf"


async def test_a_run_without_an_undo_sheet_offers_no_undo(tmp_path: Path) -> None:
    state = make_state()
    sheet = b"uid,first_name\nAE.1,Dina\n"
    with ThreadedSandbox(state, api_key=KEY, secret=SECRET) as sb:
        async with page_for(_config(tmp_path, sb)) as page:
            _, where, _ = await page.upload("names.csv", sheet)
            _, run_path, _ = await page.post(
                where.replace("/preview", "/run"), {"csrf_token": page.csrf, "backup": "on"}
            )
            await _run_to_the_end(page, run_path)
            # An undo sheet without resumes is downloaded as it is.
            async with page.client.get(run_path + "/undo") as resp:
                assert resp.headers["Content-Disposition"].endswith("names.undo.xlsx")
            _, where, _ = await page.upload("names.csv", b"uid,first_name\nAE.1,Dana\n")
            _, plain, _ = await page.post(
                where.replace("/preview", "/run"), {"csrf_token": page.csrf}
            )
            await _run_to_the_end(page, plain)
            _, html = await page.get(plain)
            assert "undo-button" not in html
            status, _, _ = await page.post(plain + "/undo", {"csrf_token": page.csrf})
            assert status == 404
            status, _, _ = await page.post("/runs/not-a-run/undo", {"csrf_token": page.csrf})
            assert status == 404


def _cli_run(tmp_path: Path, url: str, name: str, *extra: str) -> None:
    """`bulk-update run people.csv --backup` with first_name `name` for AE.1, journaled in
    tmp_path/state."""
    sheet = write_csv(tmp_path / "people.csv", ["uid", "First Name"], [["AE.1", name]])
    res = run_cli(
        "run", sheet, "--base-url", url, "--backup", "--state-dir", tmp_path / "state",
        "--rate", "1000/1", *extra, env={"COMEET_API_KEY": KEY, "COMEET_SECRET": SECRET},
        cwd=tmp_path,
    )  # fmt: skip
    assert res.code == 0, res.err


@dataclass
class Sandboxes:
    """Two sandboxes: this page's Comeet (`state`, `sb`) and another one."""

    state: SandboxState
    sb: ThreadedSandbox
    elsewhere: SandboxState
    other: ThreadedSandbox


# The command-line runs a test needs are made by sync fixtures, before the test's event loop
# runs: there, run_cli runs in process (from an async test it would start a process each).
@pytest.fixture
def sandboxes() -> Iterator[Sandboxes]:
    state, elsewhere = make_state(), make_state()  # AE.1 is Dana in both
    with (
        ThreadedSandbox(state, api_key=KEY, secret=SECRET) as sb,
        ThreadedSandbox(elsewhere, api_key=KEY, secret=SECRET) as other,
    ):
        yield Sandboxes(state, sb, elsewhere, other)


@pytest.fixture
def two_runs_of_one_sheet(tmp_path: Path, sandboxes: Sandboxes) -> Sandboxes:
    _cli_run(tmp_path, sandboxes.sb.base_url, "Dina")  # run 1: Dana -> Dina
    _cli_run(tmp_path, sandboxes.sb.base_url, "Dora")  # run 2: Dina -> Dora, same undo sheet
    return sandboxes


@pytest.fixture
def runs_of_four_kinds(tmp_path: Path, sandboxes: Sandboxes) -> Sandboxes:
    _cli_run(tmp_path, sandboxes.sb.base_url, "Dina")  # 1: this page's account
    _cli_run(tmp_path, sandboxes.other.base_url, "Dina")  # 2: another Comeet
    (tmp_path / "bulk_update.toml").write_text('[journal]\nscope = "globex"\n')
    _cli_run(tmp_path, sandboxes.sb.base_url, "Dina")  # 3: the same Comeet, another company
    (tmp_path / "bulk_update.toml").unlink()
    _cli_run(tmp_path, sandboxes.sb.base_url, "Dora")  # 4: still sending, says the journal
    with sqlite3.connect(tmp_path / "state" / JOURNAL_FILE) as conn:
        conn.execute("UPDATE runs SET status = 'running' WHERE id = 4")
    conn.close()
    return sandboxes


@pytest.fixture
def one_run(tmp_path: Path, sandboxes: Sandboxes) -> Sandboxes:
    _cli_run(tmp_path, sandboxes.sb.base_url, "Dina")
    return sandboxes


async def _undo_from_runs_list(page: Page, number: int) -> None:
    """Runs list -> Undo… of journal run `number` -> its preview -> Confirm, to the end."""
    status, where, _ = await page.post(f"/journal/{number}/undo", {"csrf_token": page.csrf})
    assert status == 303 and where.endswith("/preview")
    _, html = await page.get(where)
    assert "people.undo.xlsx" in html and "The undo sheet of <strong>people.csv</strong>" in html
    assert _counts(html, "preview-counts") == {"would_update": 1}
    _, run_path, _ = await page.post(where.replace("/preview", "/run"), {"csrf_token": page.csrf})
    await _run_to_the_end(page, run_path)


async def test_each_command_line_run_is_undone_from_its_own_backup(
    tmp_path: Path, two_runs_of_one_sheet: Sandboxes
) -> None:
    state, sb = two_runs_of_one_sheet.state, two_runs_of_one_sheet.sb
    beside = (tmp_path / "people.undo.xlsx").read_bytes()  # run 2's, beside the input
    async with page_for(_config(tmp_path, sb)) as page:
        _, html = await page.get("/runs")
        assert 'data-undo="1"' in html and 'data-undo="2"' in html
        async with page.client.get("/journal/1/undo") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Disposition"].endswith("people.undo.xlsx")
            sheet = load_workbook(BytesIO(await resp.read())).worksheets[0]
        assert list(sheet.iter_rows(values_only=True))[1][:2] == ("AE.1", "Dana")
        await _undo_from_runs_list(page, 1)
        assert state.candidates["AE.1"]["first_name"] == "Dana"  # run 1's, not run 2's
        state.candidates["AE.1"]["first_name"] = "Dora"
        await _undo_from_runs_list(page, 2)
        assert state.candidates["AE.1"]["first_name"] == "Dina"
    # The page wrote each in its run's folder of the state dir, never beside the input, and
    # left the runs' backups as they were (no line added).
    assert (tmp_path / "people.undo.xlsx").read_bytes() == beside
    for n in (1, 2):
        assert (tmp_path / "state" / "runs" / str(n) / "undo" / "people.undo.xlsx").is_file()
        assert backup_path(tmp_path / "state", n).read_text().count('"written"') == 1


async def test_only_runs_of_the_pages_account_that_ended_are_offered(
    tmp_path: Path, runs_of_four_kinds: Sandboxes
) -> None:
    sb = runs_of_four_kinds.sb
    # The page's base URL written with a slash at its end: the same account.
    settings = replace(_config(tmp_path, sb).settings, base_url=sb.base_url + "/")
    async with page_for(_config(tmp_path, sb, settings=settings)) as page:
        _, html = await page.get("/runs")
        assert re.findall(r'data-undo="(\d+)"', html) == ["1"]
        for refused in (2, 3, 4, 9):
            async with page.client.get(f"/journal/{refused}/undo") as resp:
                assert resp.status == 404
            status, _, _ = await page.post(f"/journal/{refused}/undo", {"csrf_token": page.csrf})
            assert status == 404
    assert runs_of_four_kinds.elsewhere.candidates["AE.1"]["first_name"] == "Dina"


async def test_an_undo_sheet_that_cannot_be_made_is_said_in_the_page(
    tmp_path: Path, one_run: Sandboxes
) -> None:
    # Where the page writes the run's undo sheet, a file stands (a damaged state dir).
    (tmp_path / "state" / "runs" / "1" / "undo").write_text("not a folder")
    async with page_for(_config(tmp_path, one_run.sb)) as page:
        async with page.client.get("/journal/1/undo") as resp:
            assert resp.status == 500
            text = await resp.text()
        status, _, posted = await page.post("/journal/1/undo", {"csrf_token": page.csrf})
    for answer in (text, posted):
        assert "The undo sheet could not be made" in answer and "Traceback" not in answer
        assert "undo-sheet --run N" in answer
    assert status == 500
