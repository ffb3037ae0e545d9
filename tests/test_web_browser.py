"""The web page in a real browser: Playwright driving Debian's Chromium, headless.

The whole flow against `serve --sandbox` (a subprocess, as a newcomer would start it):
upload sample_data/candidates.csv, preview counts equal to the command line's dry run,
confirm, follow the progress, download the results sheet; a sheet with an unknown column
through the mapping step; a file that is not a sheet; a POST without the CSRF token; and
`serve --host 0.0.0.0` without a password. Screenshots of each step go to a temporary
folder, or to the folder BULK_UPDATE_SCREENSHOTS names (`BULK_UPDATE_SCREENSHOTS=docs` renews
the README's pictures): a test run leaves the tracked docs/ alone.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from playwright.sync_api import Page, expect, sync_playwright

from .conftest import ROOT, SAMPLE, require_program, run_cli, without_backoff

#: Where _shot puts the screenshots (set for each test by the `shots` fixture).
SHOTS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COMEET_") and k != "BULK_UPDATE_WEB_PASSWORD"
    }
    env["PYTHONPATH"] = str(ROOT)
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return env


@contextmanager
def _serve(tmp_path: Path, rate: str) -> Iterator[str]:
    """`bulk-update serve --sandbox --port 0 --rate RATE` in a subprocess; yields its URL."""
    without_backoff(tmp_path)  # the seed's failing row: its retries go at once
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulk_update", "serve", "--sandbox", "--port", "0", "--rate", rate],
        cwd=tmp_path,
        env=_clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Bulk update page at http://127.0.0.1:"), first
        yield first.split()[4].rstrip("/")
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            proc.kill()


@pytest.fixture
def page_url(tmp_path: Path) -> Iterator[str]:
    """The page at 8 requests a second: the progress is there to be seen for a few seconds."""
    with _serve(tmp_path, "8/1") as url:
        yield url


@pytest.fixture
def quick_page_url(tmp_path: Path) -> Iterator[str]:
    """The page at 100 requests a second: for steps whose progress is not what is shown."""
    with _serve(tmp_path, "100/1") as url:
        yield url


def _counts(page: Page, selector: str) -> dict[str, int]:
    items = page.locator(f"{selector} [data-outcome]")
    return {
        items.nth(i).get_attribute("data-outcome") or "": int(
            items.nth(i).get_attribute("data-count") or 0
        )
        for i in range(items.count())
    }


@pytest.fixture(autouse=True)
def chromium() -> None:
    require_program(CHROMIUM, "Debian's Chromium: apt-get install chromium")


@pytest.fixture(autouse=True)
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    global SHOTS
    wanted = os.environ.get("BULK_UPDATE_SCREENSHOTS")
    SHOTS = Path(wanted).resolve() if wanted else tmp_path_factory.mktemp("screenshots")
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield SHOTS


@contextmanager
def desktop_page() -> Iterator[Page]:
    """A page of headless Chromium at a desktop's size, downloads accepted."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport=DESKTOP, accept_downloads=True).new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


def _upload(page: Page, page_url: str, sheet: Path) -> None:
    """From the upload form to the sheet's preview."""
    page.goto(page_url + "/")
    page.set_input_files("#sheet-input", str(sheet))
    page.click("#upload-button")
    page.wait_for_url("**/preview")


def _shot(page: Page, name: str, *, full_page: bool = True) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def test_the_whole_flow_in_chromium(tmp_path: Path, page_url: str) -> None:
    # What the command line's dry run says about the same sheet.
    dry = run_cli(
        "run",
        SAMPLE / "candidates.csv",
        "--dry-run",
        "--sandbox",
        "--report",
        tmp_path / "dry.xlsx",
        "--log-format",
        "json",
        env={"XDG_STATE_HOME": str(tmp_path / "state")},
    )
    cli_counts = {o: n for o, n in json.loads(dry.out.splitlines()[-1])["counts"].items() if n}
    assert cli_counts["would_update"] > 20 and cli_counts["invalid"] == 8

    # A workbook of two worksheets, the candidates' with columns the tool does not know: it
    # goes through the worksheet and the mapping steps.
    book = Workbook()
    readme = book.active
    assert readme is not None
    readme.title = "Read me"
    readme.append(["Instructions"])
    readme.append(["One row per new hire; the uid is in the candidate's Comeet page"])
    hires = book.create_sheet("New hires")
    for row in (
        ("UID", "Mail", "Recruiter notes", "Prospect Status"),
        ("C1.9D2E4", "eitan@example.com", "call back", "Contacted"),
        ("B4.B5F21", "noa@example.com", "met at fair", "Interested"),
        ("9B.C0DE5", "not-an-email", None, "Responded"),
    ):
        hires.append(row)
    unknown = tmp_path / "new-hires.xlsx"
    book.save(unknown)
    not_a_sheet = tmp_path / "headshot.csv"
    not_a_sheet.write_bytes((SAMPLE / "files" / "maya-peretz.png").read_bytes())

    with desktop_page() as page:
        # -- a file that is not a sheet: a clear message in the page ---------------------
        page.goto(page_url + "/")
        page.set_input_files("#sheet-input", str(not_a_sheet))
        page.click("#upload-button")
        error = page.locator("#page-error")
        expect(error).to_contain_text("headshot.csv")
        expect(error).to_contain_text("How to fix")

        # -- the worksheet step, then the mapping step -------------------------------------
        page.set_input_files("#sheet-input", str(unknown))
        page.click("#upload-button")
        page.wait_for_url("**/worksheet")
        expect(page.locator("input[name=worksheet]")).to_have_count(2)
        # The worksheet with a uid column is chosen already.
        expect(page.locator('input[value="New hires"]')).to_be_checked()
        _shot(page, "web-worksheet")
        page.click("#worksheet-button")
        page.wait_for_url("**/mapping")
        expect(page.locator("select[data-header]")).to_have_count(2)
        page.select_option('select[data-header="Mail"]', "email")
        page.select_option('select[data-header="Recruiter notes"]', "__ignore__")
        _shot(page, "web-mapping")
        page.click("#mapping-button")
        page.wait_for_url("**/preview")
        assert _counts(page, "#preview-counts") == {"would_update": 2, "invalid": 1}
        expect(page.locator("#invalid-rows")).to_contain_text("Mail: 'not-an-email'")
        expect(page.locator("#first-patches")).to_contain_text('"email": "eitan@example.com"')
        expect(page.locator("#first-patches")).not_to_contain_text("call back")
        page.click("#confirm-button")
        expect(page.locator("#run")).to_have_attribute("data-over", "true")
        assert _counts(page, "#run-counts") == {"updated": 2, "invalid": 1}
        page.click("text=Upload another sheet")
        page.wait_for_url(page_url + "/")

        # -- upload the sample sheet: the preview equals the command line's dry run -------
        page.set_input_files("#sheet-input", str(SAMPLE / "candidates.csv"))
        expect(page.locator("#chosen-file")).to_contain_text("candidates.csv")
        _shot(page, "web-upload")
        page.click("#upload-button")
        page.wait_for_url("**/preview")
        assert _counts(page, "#preview-counts") == cli_counts
        expect(page.locator("#preview-summary")).to_contain_text(
            f"{cli_counts['would_update']} to send"
        )
        expect(page.locator("#invalid-rows tbody tr")).to_have_count(cli_counts["invalid"])
        expect(page.locator("#first-patches")).to_contain_text("PATCH /candidates/AE.17934")
        _shot(page, "web-preview")
        page.set_viewport_size(PHONE)
        _shot(page, "web-preview-phone", full_page=False)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= PHONE["width"], f"the preview is {wide}px wide on a phone"
        page.set_viewport_size(DESKTOP)

        # -- a POST without the CSRF token is refused ------------------------------------
        preview_url = page.url
        refused = page.request.post(preview_url.replace("/preview", "/run"), form={})
        assert refused.status == 403
        assert "security token" in refused.text()

        # -- confirm, follow the progress, download the results --------------------------
        page.click("#confirm-button")
        page.wait_for_url("**/runs/*")
        expect(page.locator("#run-state")).to_have_text("Sending")
        # (The page's Content-Security-Policy forbids the eval of wait_for_function.)
        expect(page.locator("#run-done")).to_have_text(re.compile(r"^(9|[1-3][0-9])$"))
        _shot(page, "web-progress")
        expect(page.locator("#run")).to_have_attribute("data-over", "true", timeout=40_000)
        expect(page.locator("#run-state")).to_have_text("Finished")
        _shot(page, "web-done")
        with page.expect_download() as download_info:
            page.click("#download-report")
        results = tmp_path / "results.xlsx"
        download_info.value.save_as(results)
        sheet = load_workbook(results, read_only=True)["Results"]
        rows = list(sheet.iter_rows(values_only=True))
        assert rows[0][:3] == ("row", "uid", "outcome")
        outcome_of = {int(r[0]): r[2] for r in rows[1:]}
        assert Counter(outcome_of.values()) == {
            "updated": 27,
            "skipped": 1,
            "invalid": 8,
            "not_found": 1,
            "rejected": 2,
            "failed": 1,
        }
        assert (outcome_of[38], outcome_of[39], outcome_of[41]) == (
            "not_found",
            "rejected",
            "failed",
        )
        shown = _counts(page, "#run-counts")
        assert shown == dict(Counter(outcome_of.values()))

        # -- the runs list -----------------------------------------------------------------
        page.click("nav >> text=Runs")
        expect(page.locator("#runs-table tbody tr")).to_have_count(2)
        expect(page.locator("#runs-table")).to_contain_text("candidates.csv")
        expect(page.locator("#runs-table")).to_contain_text("27 updated")
        _shot(page, "web-runs")


def test_the_safety_net_in_chromium(tmp_path: Path, quick_page_url: str) -> None:
    page_url = quick_page_url
    # Two of the sandbox's candidates: Dana's email, status and resume change; Noa's row
    # holds what Comeet holds already. (The sandbox page finds files in sample_data.)
    (tmp_path / "safety.csv").write_text(
        "UID,First Name,Email,Prospect Status,Resume\n"
        "AE.17934,Dana,dana@new.example,Interested,files/reference-letter.pdf\n"
        "B4.B5F21,Noa,noa.levi@example.net,Responded,\n",
        encoding="utf-8",
    )
    # Thirty rows whose uid column holds something else: every one is not found.
    (tmp_path / "wrong-ids.csv").write_text(
        "UID,First Name\n" + "".join(f"ZZ.{i:04d},Name{i}\n" for i in range(30)),
        encoding="utf-8",
    )
    with desktop_page() as page:
        _upload(page, page_url, tmp_path / "safety.csv")
        assert _counts(page, "#preview-counts") == {"would_update": 2}
        expect(page.locator("#compare-time")).to_have_text("a few seconds")

        # -- Compare with Comeet: reads only, old -> new per field -------------------------
        page.click("#compare-button")
        page.wait_for_url("**/preview")
        assert _counts(page, "#preview-counts") == {"would_update": 1, "unchanged": 1}
        changes = page.locator("#preview-changes")
        expect(changes).to_contain_text("email: dana.cohen@example.com → dana@new.example")
        expect(changes).to_contain_text("prospect_status: Sourced → Interested")
        expect(changes).not_to_contain_text("B4.B5F21")
        _shot(page, "web-compare")

        # -- Keep an undo sheet: offered with both times, ticked for a short run ----------
        expect(page.locator("#backup")).to_be_checked()
        expect(page.locator("#backup-with")).to_have_text("a few seconds")
        page.click("#confirm-button")
        page.wait_for_url("**/runs/*")
        expect(page.locator("#run")).to_have_attribute("data-over", "true", timeout=40_000)
        assert _counts(page, "#run-counts") == {"updated": 1, "unchanged": 1}
        # Noa's row was read, found unchanged: sent as far as progress goes.
        expect(page.locator("#run-done")).to_have_text("2")
        expect(page.locator("#run-total")).to_have_text("2")
        with page.expect_download() as download_info:
            page.click("#download-undo")
        bundle = tmp_path / "undo.zip"
        download_info.value.save_as(bundle)
        assert download_info.value.suggested_filename == "safety.undo.zip"
        with zipfile.ZipFile(bundle) as zf:
            cv = next(n for n in zf.namelist() if n.endswith("dana-cohen-cv-2023.pdf"))
            assert zf.read(cv).startswith(b"%PDF-1.4\n% Dana Cohen: the CV Comeet held")
            undo_rows = list(
                load_workbook(BytesIO(zf.read("safety.undo.xlsx"))).worksheets[0].values
            )
        head = list(undo_rows[0])
        assert undo_rows[1][head.index("email")] == "dana.cohen@example.com"
        assert undo_rows[1][head.index("prospect_status")] == "Sourced"
        expect(page.locator("#undo-button")).to_be_visible()
        _shot(page, "web-undo")

        # -- Undo this run: the undo sheet's preview, then its confirm, like any sheet -----
        page.click("#undo-button")
        page.wait_for_url("**/preview")
        expect(page.locator("h1")).to_contain_text("safety.undo.xlsx")
        expect(page.locator("#preview-undo")).to_contain_text("The undo sheet of safety.csv")
        assert _counts(page, "#preview-counts") == {"would_update": 1}
        patches = page.locator("#first-patches")
        expect(patches).to_contain_text('"email": "dana.cohen@example.com"')
        expect(patches).to_contain_text('"name": "dana-cohen-cv-2023.pdf"')
        _shot(page, "web-undo-preview")
        page.click("#compare-button")  # what Comeet holds now, against the undo sheet
        page.wait_for_url("**/preview")
        expect(page.locator("#preview-changes")).to_contain_text(
            "email: dana@new.example → dana.cohen@example.com"
        )
        page.click("#confirm-button")
        page.wait_for_url("**/runs/*")
        expect(page.locator("#run")).to_have_attribute("data-over", "true", timeout=40_000)
        assert _counts(page, "#run-counts") == {"updated": 1}

        # -- the first sheet again, compared: Comeet holds the old values once more -------
        _upload(page, page_url, tmp_path / "safety.csv")
        page.click("#compare-button")
        page.wait_for_url("**/preview")
        expect(page.locator("#preview-changes")).to_contain_text(
            "email: dana.cohen@example.com → dana@new.example"
        )

        # -- the brake: a uid column of something else stops after 20 rows -------------
        _upload(page, page_url, tmp_path / "wrong-ids.csv")
        page.uncheck("#backup")
        page.click("#confirm-button")
        page.wait_for_url("**/runs/*")
        expect(page.locator("#run")).to_have_attribute("data-over", "true", timeout=40_000)
        expect(page.locator("#brake-stop")).to_contain_text(
            "Stopped after 20 rows in a row were not found in Comeet for the same reason: "
            "Candidate not found. Check that the uid column holds Comeet's candidate uids, "
            "then upload again."
        )
        counts = _counts(page, "#run-counts")
        assert 20 <= counts["not_found"] < 30 and counts["not_sent"] == 30 - counts["not_found"]
        expect(page.locator("#run-done")).to_have_text(str(counts["not_found"]))
        _shot(page, "web-brake")


def test_serve_on_every_address_without_a_password_refuses_to_start(tmp_path: Path) -> None:
    res = run_cli("serve", "--host", "0.0.0.0", "--port", "0", env=_clean_env(tmp_path))
    assert res.code == 2
    assert "refusing to serve on 0.0.0.0 without a password" in res.err
    assert "BULK_UPDATE_WEB_PASSWORD" in res.err
