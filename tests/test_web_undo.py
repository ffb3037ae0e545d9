"""The web page's "Undo this run" and the undo sheet's download (contract section 11, issue
16): the run's undo sheet goes through the same preview and confirm steps as any sheet, and
puts back every field that had a value, the resume byte for byte."""

from __future__ import annotations

import base64
import zipfile
from html import unescape
from io import BytesIO
from pathlib import Path

import pytest
from openpyxl import load_workbook

from bulk_update.sandbox import ThreadedSandbox
from bulk_update.undo import backup_path

from .conftest import run_cli
from .test_backup import BEFORE, HEADER, NEW_CV, OLD_CV, READABLE, ROWS, make_state, write_csv
from .test_web import KEY, SECRET, _config, _counts, _run_to_the_end, page_for


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


async def test_a_command_line_runs_undo_sheet_is_offered_on_the_runs_list(tmp_path: Path) -> None:
    sheet = write_csv(tmp_path / "people.csv", ["uid", "First Name"], [["AE.1", "Dina"]])
    state, elsewhere = make_state(), make_state()
    env = {"COMEET_API_KEY": KEY, "COMEET_SECRET": SECRET}
    with (
        ThreadedSandbox(state, api_key=KEY, secret=SECRET) as sb,
        ThreadedSandbox(elsewhere, api_key=KEY, secret=SECRET) as other,
    ):
        for url in (sb.base_url, other.base_url):  # runs #1 and #2, each with an undo sheet
            res = run_cli(
                "run", sheet, "--base-url", url, "--backup", "--state-dir", tmp_path / "state",
                "--rate", "1000/1", env=env, cwd=tmp_path,
            )  # fmt: skip
            assert res.code == 0, res.err
        assert state.candidates["AE.1"]["first_name"] == "Dina"
        async with page_for(_config(tmp_path, sb)) as page:
            _, html = await page.get("/runs")
            # Run #2 went to another Comeet: its undo is not offered from this page.
            assert 'data-undo="1"' in html and 'data-undo="2"' not in html
            async with page.client.get("/journal/1/undo") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Disposition"].endswith("people.undo.xlsx")
            for refused in ("/journal/2/undo", "/journal/9/undo"):
                async with page.client.get(refused) as resp:
                    assert resp.status == 404
                status, _, _ = await page.post(refused, {"csrf_token": page.csrf})
                assert status == 404
            state.requests.clear()
            status, where, _ = await page.post("/journal/1/undo", {"csrf_token": page.csrf})
            assert status == 303 and where.endswith("/preview")
            _, html = await page.get(where)
            assert "people.undo.xlsx" in html and state.requests == []
            assert _counts(html, "preview-counts") == {"would_update": 1}
            _, run_path, _ = await page.post(
                where.replace("/preview", "/run"), {"csrf_token": page.csrf}
            )
            await _run_to_the_end(page, run_path)
    assert state.candidates["AE.1"]["first_name"] == "Dana"
    assert elsewhere.candidates["AE.1"]["first_name"] == "Dina"  # untouched by the undo


@pytest.mark.parametrize("how", ["deleted", "never written"])
async def test_an_undo_sheet_not_on_disk_is_written_from_the_runs_backup(
    tmp_path: Path, how: str
) -> None:
    sheet = write_csv(tmp_path / "people.csv", ["uid", "First Name"], [["AE.1", "Dina"]])
    state = make_state()
    env = {"COMEET_API_KEY": KEY, "COMEET_SECRET": SECRET}
    with ThreadedSandbox(state, api_key=KEY, secret=SECRET) as sb:
        res = run_cli(
            "run", sheet, "--base-url", sb.base_url, "--backup", "--state-dir", tmp_path / "state",
            "--rate", "1000/1", env=env, cwd=tmp_path,
        )  # fmt: skip
        assert res.code == 0, res.err
        undo = tmp_path / "people.undo.xlsx"
        undo.unlink()
        if how == "never written":  # as a run killed before its end leaves its backup
            kept = backup_path(tmp_path / "state", 1)
            lines = kept.read_text().splitlines(keepends=True)
            kept.write_text("".join(line for line in lines if '"written"' not in line))
        async with page_for(_config(tmp_path, sb)) as page:
            _, html = await page.get("/runs")
            assert 'data-undo="1"' in html
            status, where, _ = await page.post("/journal/1/undo", {"csrf_token": page.csrf})
            assert status == 303 and where.endswith("/preview")
            _, html = await page.get(where)
            assert _counts(html, "preview-counts") == {"would_update": 1}
    assert undo.is_file()  # where the run meant to write it, as `undo-sheet --run 1` does
    assert backup_path(tmp_path / "state", 1).read_text().count('"written"') == 1 + (
        how == "deleted"
    )
