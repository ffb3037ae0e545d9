"""The web page (bulk_update.web) through aiohttp's test client, against the sandbox.

Flows (upload, mapping, preview, run, progress events, results), the safety rules (CSRF,
password, Host header, size cap, private uploads, one run at a time, secrets never sent to
the browser) and the small pure pieces. The real-browser test is test_web_browser.py.
"""

from __future__ import annotations

import re
import stat
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from openpyxl import Workbook, load_workbook

from bulk_update.auth import Credentials
from bulk_update.cli import main
from bulk_update.config import Settings
from bulk_update.errors import ConfigError
from bulk_update.journal import RunLock, read_runs
from bulk_update.models import Rate
from bulk_update.pipeline import load, plan
from bulk_update.report import OUTCOME_COLOURS
from bulk_update.sandbox import ThreadedSandbox, load_seed
from bulk_update.web import WebConfig, check_bind, create_app
from bulk_update.web.app import outcome_css
from bulk_update.web.preview import format_duration, shown_body
from bulk_update.web.security import LoginThrottle, Sessions, host_allowed, is_loopback
from bulk_update.web.state import STATE
from bulk_update.web.uploads import safe_name

from .conftest import SAMPLE, run_cli
from .test_e2e import make_state

CANDIDATES = (SAMPLE / "candidates.csv").read_bytes()
KEY = "web-test-key-7Qz1"
SECRET = "web-test-secret-Xy93-not-for-browsers"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(load_seed(), api_key=KEY, secret=SECRET) as sb:
        yield sb


@dataclass
class Page:
    """A test client that remembers the CSRF token and every byte it was sent."""

    client: TestClient[Any, Any]
    csrf: str = ""
    seen: list[str] = field(default_factory=list)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        async with self.client.get(path, **kwargs) as resp:
            text = await resp.text()
            self._saw(resp, text)
            found = re.search(r'name="csrf_token" value="([^"]+)"', text)
            if found:
                self.csrf = found.group(1)
            return resp.status, text

    async def post(self, path: str, data: Any = None, **kwargs: Any) -> tuple[int, str, str]:
        kwargs.setdefault("allow_redirects", False)
        async with self.client.post(path, data=data, **kwargs) as resp:
            text = await resp.text()
            self._saw(resp, text)
            return resp.status, resp.headers.get("Location", ""), text

    async def upload(self, name: str, content: bytes, token: str | None = None) -> Any:
        form = FormData()
        form.add_field("csrf_token", self.csrf if token is None else token)
        form.add_field("sheet", content, filename=name)
        return await self.post("/upload", form)

    def _saw(self, resp: Any, text: str) -> None:
        self.seen.append(text)
        self.seen.extend(f"{k}: {v}" for k, v in resp.headers.items())


def _settings(tmp_path: Path, base_url: str, **changes: Any) -> Settings:
    return Settings(
        base_url=base_url,
        state_dir=tmp_path / "state",
        max_attempts=2,
        retry_base_s=0.0,
        retry_max_s=0.0,
        **changes,
    )


@asynccontextmanager
async def page_for(config: WebConfig) -> AsyncIterator[Page]:
    app = create_app(config)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        page = Page(client)
        await page.get("/")
        yield page


def _config(tmp_path: Path, sandbox: ThreadedSandbox, **changes: Any) -> WebConfig:
    options: dict[str, Any] = {
        "settings": _settings(tmp_path, sandbox.base_url),
        "credentials": Credentials(KEY, SECRET),
        "files_dir": SAMPLE,
        "upload_parent": tmp_path / "uploads",
        "reports_dir": tmp_path / "reports",
        "sse_interval_s": 0.01,
    }
    options.update(changes)
    return WebConfig(**options)


def _counts(html: str, ident: str) -> dict[str, int]:
    block = html.split(f'id="{ident}"', 1)[1].split("</ul>", 1)[0]
    return {o: int(n) for o, n in re.findall(r'data-outcome="(\w+)" data-count="(\d+)"', block)}


async def _run_to_the_end(page: Page, run_path: str) -> list[str]:
    async with page.client.get(run_path + "/events") as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        body = (await resp.read()).decode()
    page.seen.append(body)
    return body.split("\n\n")


# --- flows ----------------------------------------------------------------------------------


async def test_upload_preview_run_download_and_the_journal(
    tmp_path: Path, sandbox: ThreadedSandbox
) -> None:
    config = _config(tmp_path, sandbox)
    expected = plan(load(SAMPLE / "candidates.csv")).counts(dry_run=True)
    async with page_for(config) as page:
        status, where, _ = await page.upload("candidates.csv", CANDIDATES)
        assert status == 303 and where.endswith("/preview")
        status, html = await page.get(where)
        assert status == 200
        assert _counts(html, "preview-counts") == {o.value: n for o, n in expected.items() if n}
        assert "PATCH /candidates/AE.17934" in html and "bytes, base64" in html
        assert "Hot lead" in html  # an invalid row's message, from the library
        status, run_path, _ = await page.post(
            where.replace("/preview", "/run"), {"csrf_token": page.csrf}
        )
        assert status == 303 and run_path.startswith("/runs/")
        events = await _run_to_the_end(page, run_path)
        assert events[0].startswith("event: progress")
        assert '"total": 31' in events[-3] and '"over": true' in events[-3]
        assert events[-2] == "event: end\ndata: {}"
        status, html = await page.get(run_path)
        assert "Finished" in html and _counts(html, "run-counts")["updated"] == 27
        async with page.client.get(run_path + "/report") as resp:
            assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
            report = load_workbook(BytesIO(await resp.read()), read_only=True)["Results"]
        outcomes = Counter(r[2] for r in list(report.iter_rows(values_only=True))[1:])
        assert outcomes == {
            "updated": 27,
            "skipped": 1,
            "invalid": 8,
            "not_found": 1,
            "rejected": 2,
            "failed": 1,
        }
        # The run is in the journal, with its report; the runs page lists it once.
        (record,) = read_runs(tmp_path / "state")
        assert record.status == "finished" and record.counts["updated"] == 27
        assert record.report is not None and record.report.parent == tmp_path / "reports"
        status, html = await page.get("/runs")
        assert html.count("candidates.csv") == 1 and "27 updated" in html
        async with page.client.get(f"/journal/{record.id}/report") as resp:
            assert resp.status == 200 and resp.content_type.endswith("spreadsheetml.sheet")
        async with page.client.get(f"/journal/{record.id + 1}/report") as resp:
            assert resp.status == 404

        # The same sheet again: the journal knows what was applied, so the preview says so.
        await page.get("/")
        _, where, _ = await page.upload("candidates.csv", CANDIDATES)
        _, html = await page.get(where)
        again = _counts(html, "preview-counts")
        assert again["unchanged"] == 27 and again["would_update"] == 4
    assert not any(config.upload_parent.iterdir())  # type: ignore[union-attr]


async def test_the_runs_page_links_the_copy_kept_in_the_state_dir(
    tmp_path: Path, sandbox: ThreadedSandbox
) -> None:
    """A run from the command line, its report beside the sheet replaced afterwards: the
    page still gives the results sheet of that run, kept under its number."""
    sheet = tmp_path / "s.csv"
    sheet.write_text("uid,First Name\nAE.17934,Dana\n", encoding="utf-8")
    done = run_cli(
        "run", sheet, "--base-url", sandbox.base_url, "--state-dir", tmp_path / "state",
        env={"COMEET_API_KEY": KEY, "COMEET_SECRET": SECRET}, cwd=tmp_path,
    )  # fmt: skip
    assert done.code == 0, done.err
    (tmp_path / "s.results.xlsx").write_bytes(b"replaced since")
    (record,) = read_runs(tmp_path / "state")
    kept = tmp_path / "state" / "runs" / str(record.id) / "s.results.xlsx"
    assert record.kept_report == kept
    async with page_for(_config(tmp_path, sandbox)) as page:
        status, html = await page.get("/runs")
        assert status == 200
        assert f'href="/journal/{record.id}/report" download title="{kept}"' in html
        async with page.client.get(f"/journal/{record.id}/report") as resp:
            assert resp.status == 200
            body = await resp.read()
    assert body == kept.read_bytes()
    results = load_workbook(BytesIO(body), read_only=True)["Results"]
    assert [r[2] for r in list(results.iter_rows(values_only=True))[1:]] == ["updated"]


async def test_unknown_columns_go_through_the_mapping_step(
    tmp_path: Path, sandbox: ThreadedSandbox
) -> None:
    sheet = (
        b"UID,E-mail address,Desk,Team size\n"
        b"C1.9D2E4,eitan@example.com,3F,12\n"
        b"B4.B5F21,noa@example.com,,8\n"
    )
    async with page_for(_config(tmp_path, sandbox)) as page:
        status, where, _ = await page.upload("team.csv", sheet)
        assert status == 303 and where.endswith("/mapping")
        _, html = await page.get(where)
        for header in ("E-mail address", "Desk", "Team size"):
            assert f'data-header="{header}"' in html
        assert "eitan@example.com" in html  # the first values help say what a column is
        # A value that is no choice for that column is refused.
        form = {"csrf_token": page.csrf, "column-0": "email", "column-1": "password"}
        status, _, html = await page.post(where, form)
        assert status == 400 and "choose what column" in html
        # Two columns into one field: the library's own rule, shown on the mapping page.
        form = {"csrf_token": page.csrf, "column-0": "email", "column-1": "email"}
        form["column-2"] = "__ignore__"
        status, _, html = await page.post(where, form)
        assert status == 400 and "both feed the field email" in html
        form["column-1"] = "__ignore__"
        form["column-2"] = "custom_fields.Team size"
        status, preview, _ = await page.post(where, form)
        assert status == 303 and preview.endswith("/preview")
        _, html = await page.get(preview)
        assert _counts(html, "preview-counts") == {"would_update": 2}
        assert "&#34;email&#34;: &#34;eitan@example.com&#34;" in html
        # The ignored Desk column sends nothing (its value quoted as a body's would be; a bare
        # "3F" may be part of the page's random CSRF token).
        assert "&#34;Team size&#34;: &#34;12&#34;" in html and "&#34;3F&#34;" not in html


def _workbook(**sheets: list[list[str]]) -> bytes:
    workbook = Workbook()
    workbook.remove(workbook.worksheets[0])
    for title, rows in sheets.items():
        worksheet = workbook.create_sheet(title.replace("_", " "))
        for row in rows:
            worksheet.append(row)
    buffer = BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


async def test_a_workbook_of_several_worksheets_asks_which_one(
    tmp_path: Path, sandbox: ThreadedSandbox
) -> None:
    book = _workbook(
        Read_me=[["Instructions"], ["Fill in one row per candidate"]],
        Candidates=[["UID", "Email"], ["C1.9D2E4", "eitan@example.com"], ["B4.B5F21", ""]],
        Archive=[],
    )
    async with page_for(_config(tmp_path, sandbox)) as page:
        status, where, _ = await page.upload("book.xlsx", book)
        assert status == 303 and where.endswith("/worksheet")
        _, html = await page.get(where)
        for name in ("Read me", "Candidates", "Archive"):
            assert f'data-worksheet="{name}"' in html
        assert "Instructions" in html and "empty" in html  # each one's first row
        discard = html.split('id="discard-form"', 1)[1].split("</form>", 1)[0]
        assert f'value="{page.csrf}"' in discard  # "Start over" carries the token
        # The worksheet with a uid column is chosen already.
        assert re.search(r'value="Candidates"\s+checked', html)
        assert not re.search(r'value="Read me"\s+checked', html)
        status, _, html = await page.post(where, {"csrf_token": page.csrf, "worksheet": "Nope"})
        assert status == 400 and "choose one of the workbook" in html
        status, _, _ = await page.post(where, {"worksheet": "Candidates"})
        assert status == 403
        # A worksheet of other columns goes on to the mapping step, as any sheet would.
        form = {"csrf_token": page.csrf, "worksheet": "Read me"}
        status, mapping, _ = await page.post(where, form)
        assert status == 303 and mapping.endswith("/mapping")
        _, html = await page.get(mapping)
        assert 'data-header="Instructions"' in html
        # From the mapping step the recruiter can still go back and choose another worksheet.
        assert f'href="{where}"' in html and "<strong>Read me</strong>" in html
        _, html = await page.get(where)
        assert re.search(r'value="Read me"\s+checked', html)
        form = {"csrf_token": page.csrf, "worksheet": "Candidates"}
        status, preview, _ = await page.post(where, form)
        assert status == 303 and preview.endswith("/preview")
        _, html = await page.get(preview)
        assert _counts(html, "preview-counts") == {"would_update": 1, "skipped": 1}
        status, where, _ = await page.upload("book.xlsx", book)
        form = {"csrf_token": page.csrf, "worksheet": "Candidates"}
        status, preview, _ = await page.post(where, form)
        assert status == 303 and preview.endswith("/preview")
        _, html = await page.get(preview)
        assert _counts(html, "preview-counts") == {"would_update": 1, "skipped": 1}
        assert 'id="preview-worksheet"' in html and "<strong>Candidates</strong> (of 3)" in html
        _, again = await page.get(where)
        assert "Which worksheet" not in again  # read already: on to the preview
    # With [input] sheet set in the config, every upload reads that worksheet.
    settings = _settings(tmp_path, sandbox.base_url, sheet="Candidates")
    async with page_for(_config(tmp_path, sandbox, settings=settings)) as page:
        status, where, _ = await page.upload("book.xlsx", book)
        assert status == 303 and where.endswith("/preview")


async def test_a_file_that_is_not_a_sheet_gets_the_readers_message(
    tmp_path: Path, sandbox: ThreadedSandbox
) -> None:
    picture = (SAMPLE / "files" / "maya-peretz.png").read_bytes()
    async with page_for(_config(tmp_path, sandbox)) as page:
        status, _, html = await page.upload("people.csv", picture)
        assert status == 400
        assert "people.csv is really a picture (PNG)" in html and "How to fix" in html
        status, _, html = await page.upload("cv.pdf", b"%PDF-1.4 ...")
        assert status == 400 and "cannot read a file with &#39;.pdf&#39;" in html
        status, _, html = await page.upload("empty.csv", b"")
        assert status == 400 and "empty.csv is empty" in html
        assert not any(page.client.app[STATE].uploads.root.iterdir())  # type: ignore[index]


async def test_uploads_are_size_capped(tmp_path: Path, sandbox: ThreadedSandbox) -> None:
    config = _config(tmp_path, sandbox, max_upload_bytes=2000)
    async with page_for(config) as page:
        status, _, html = await page.upload("candidates.csv", CANDIDATES)
        assert status == 413 and "larger than" in html and "bulk-update run" in html
        assert 'data-max-bytes="2000"' in html  # the page checks before sending, too
        assert not any(page.client.app[STATE].uploads.root.iterdir())  # type: ignore[index]
        status, _, _ = await page.upload("small.csv", b"uid\nAE.17934\n")
        assert status == 303


async def test_uploads_are_private_and_cleaned_up(tmp_path: Path, sandbox: ThreadedSandbox) -> None:
    config = _config(tmp_path, sandbox)
    app = create_app(config)
    root = app[STATE].uploads.root
    async with TestClient(TestServer(app)) as client:
        page = Page(client)
        await page.get("/")
        _, where, _ = await page.upload("../../evil name.csv", CANDIDATES)
        upload_id = where.split("/")[2]
        upload = app[STATE].uploads.get(upload_id, next(iter(app[STATE].sessions._by_token)))
        assert upload is not None and upload.folder.parent == root
        assert "/" not in upload.name and upload.name.endswith("evil_20name.csv")
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert stat.S_IMODE(upload.folder.stat().st_mode) == 0o700
        assert not upload.path.exists()  # read, then deleted: the rows are in memory
        assert app[STATE].uploads.get(upload_id, "another session") is None
        status, where, _ = await page.post(
            f"/uploads/{upload_id}/discard", {"csrf_token": page.csrf}
        )
        assert status == 303 and not upload.folder.exists()
    assert not root.exists()  # the server stopped: nothing left behind


async def test_a_run_can_be_stopped_and_its_report_says_what_was_not_sent(
    tmp_path: Path, sandbox: ThreadedSandbox
) -> None:
    settings = _settings(tmp_path, sandbox.base_url, rate=Rate(4, 1.0))
    async with page_for(_config(tmp_path, sandbox, settings=settings)) as page:
        _, where, _ = await page.upload("candidates.csv", CANDIDATES)
        _, run_path, _ = await page.post(
            where.replace("/preview", "/run"), {"csrf_token": page.csrf}
        )
        status, again, _ = await page.post(run_path + "/stop", {"csrf_token": page.csrf})
        assert status == 303 and again == run_path
        await _run_to_the_end(page, run_path)
        _, html = await page.get(run_path)
        assert "The run was stopped" in html
        counts = _counts(html, "run-counts")
        assert counts["not_sent"] > 20 and sum(counts.values()) == 40


async def test_the_brakes_stop_is_said_in_a_recruiters_words(tmp_path: Path) -> None:
    uids = [f"AE.{i}" for i in range(30)]
    state = make_state(uids)  # custom fields Team and Start date only: no "Teem"
    sheet = "uid,first_name,custom_fields.Teem\n" + "".join(f"{u},N,Core\n" for u in uids)
    with ThreadedSandbox(state, api_key=KEY, secret=SECRET) as sb:
        settings = _settings(tmp_path, sb.base_url, stop_after_rejected=5)
        async with page_for(_config(tmp_path, sb, settings=settings)) as page:
            _, where, _ = await page.upload("teem.csv", sheet.encode())
            _, run_path, _ = await page.post(
                where.replace("/preview", "/run"), {"csrf_token": page.csrf}
            )
            await _run_to_the_end(page, run_path)
            _, html = await page.get(run_path)
    words = html.split('id="brake-stop">', 1)[1].split("</strong>", 1)[0]
    assert words == (
        "Stopped after 5 rows in a row were refused for the same reason: "
        "There is no custom candidate field named &#39;Teem&#39;. Fix the &#39;Teem&#39; "
        "column and upload the sheet again; rows already sent will not be sent twice."
    )
    counts = _counts(html, "run-counts")
    assert 5 <= counts["rejected"] <= 8 and counts["not_sent"] == 30 - counts["rejected"]
    assert state.applied == []


async def test_keep_an_undo_sheet_is_offered_with_both_times_and_downloaded_by_run_id(
    tmp_path: Path,
) -> None:
    uids = [f"AE.{i}" for i in range(10)]
    state = make_state(uids)
    sheet = ("uid,first_name\n" + "".join(f"{u},New{i}\n" for i, u in enumerate(uids))).encode()
    with ThreadedSandbox(state, api_key=KEY, secret=SECRET) as sb:
        # 10 rows at 1 request a minute: 9 min without the reads, 19 min with them: off.
        slow = _settings(tmp_path, sb.base_url, rate=Rate(1, 60.0))
        async with page_for(_config(tmp_path, sb, settings=slow)) as page:
            _, where, _ = await page.upload("names.csv", sheet)
            _, html = await page.get(where)
        box = html.split('id="backup"', 1)[1].split(">", 1)[0]
        assert "checked" not in box
        assert 'id="backup-with">about 19 min</span>' in html
        assert 'id="backup-without">about 9 min</span>' in html

        async with page_for(_config(tmp_path, sb)) as page:
            _, where, _ = await page.upload("names.csv", sheet)
            _, html = await page.get(where)
            assert "checked" in html.split('id="backup"', 1)[1].split(">", 1)[0]
            # Without the box ticked (a form without `backup`): no reads, no undo sheet.
            form = {"csrf_token": page.csrf}
            _, plain, _ = await page.post(where.replace("/preview", "/run"), form)
            await _run_to_the_end(page, plain)
            _, html = await page.get(plain)
            assert "download-undo" not in html
            async with page.client.get(plain + "/undo") as resp:
                assert resp.status == 404
            assert [r.method for r in state.requests] == ["PATCH"] * 10

            # Ticked, with other names (the journal knows the first ones were applied).
            state.requests.clear()
            _, where, _ = await page.upload("names.csv", sheet.replace(b",New", b",Newer"))
            _, run_path, _ = await page.post(
                where.replace("/preview", "/run"), {"csrf_token": page.csrf, "backup": "on"}
            )
            await _run_to_the_end(page, run_path)
            _, html = await page.get(run_path)
            assert f'id="download-undo" href="{run_path}/undo"' in html
            async with page.client.get(run_path + "/undo") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Disposition"].endswith("names.undo.xlsx")
                undo = load_workbook(BytesIO(await resp.read()), read_only=True).worksheets[0]
            async with page.client.get("/runs/not-a-run/undo") as resp:
                assert resp.status == 404
    rows = [tuple(r[:2]) for r in undo.iter_rows(values_only=True)]
    assert rows[0] == ("uid", "first_name")
    assert sorted(rows[1:]) == sorted((u, f"New{i}") for i, u in enumerate(uids))
    assert Counter(r.method for r in state.requests) == {"GET": 10, "PATCH": 10}
    assert all(state.candidates[u]["first_name"] == f"Newer{i}" for i, u in enumerate(uids))
    (written,) = (tmp_path / "reports").glob("names.*.undo.xlsx")  # beside the results
    assert stat.S_IMODE(written.stat().st_mode) == 0o600


async def test_compare_with_comeet_reads_only_and_shows_old_to_new(tmp_path: Path) -> None:
    uids = [f"AE.{i}" for i in range(4)]
    state = make_state(uids)  # every first_name is "Old"
    sheet = "uid,first_name\nAE.0,Old\n" + "".join(f"AE.{i},New{i}\n" for i in range(1, 4))
    with ThreadedSandbox(state, api_key=KEY, secret=SECRET) as sb:
        async with page_for(_config(tmp_path, sb)) as page:
            _, where, _ = await page.upload("names.csv", sheet.encode())
            _, html = await page.get(where)
            assert 'id="compare-time">a few seconds</span>' in html  # 4 reads
            assert "preview-changes" not in html and not state.requests
            status, again, _ = await page.post(
                where.replace("/preview", "/compare"), {"csrf_token": page.csrf}
            )
            assert status == 303 and again == where
            _, html = await page.get(where)
            assert [r.method for r in state.requests] == ["GET"] * 4  # no PATCH
            assert _counts(html, "preview-counts") == {"unchanged": 1, "would_update": 3}
            assert "compare-button" not in html
            table = html.split('id="preview-changes"', 1)[1].split("</table>", 1)[0]
            for i in range(1, 4):
                assert f"<td>AE.{i}</td><td>first_name: Old → New{i}</td>" in table
            assert "AE.0" not in table
            # The run compares too: the row Comeet holds already is not sent.
            state.requests.clear()
            _, run_path, _ = await page.post(
                where.replace("/preview", "/run"), {"csrf_token": page.csrf}
            )
            await _run_to_the_end(page, run_path)
            _, html = await page.get(run_path)
    assert _counts(html, "run-counts") == {"updated": 3, "unchanged": 1}
    assert sorted(r.method for r in state.requests) == ["GET"] * 4 + ["PATCH"] * 3
    assert [state.candidates[u]["first_name"] for u in uids] == ["Old", "New1", "New2", "New3"]


# --- safety ---------------------------------------------------------------------------------


async def test_requests_without_the_csrf_token_are_refused(
    tmp_path: Path, sandbox: ThreadedSandbox
) -> None:
    async with page_for(_config(tmp_path, sandbox)) as page:
        _, where, _ = await page.upload("candidates.csv", CANDIDATES)
        confirm = where.replace("/preview", "/run")
        for data in ({}, {"csrf_token": "forged"}):
            status, _, html = await page.post(confirm, data)
            assert status == 403 and "security token" in html
        status, _, _ = await page.upload("candidates.csv", CANDIDATES, token="forged")
        assert status == 403
        status, _, _ = await page.post("/upload", {"sheet": "uid\nAE.17934\n"})
        assert status == 403
        status, _, html = await page.post(
            confirm, {"csrf_token": page.csrf}, headers={"Origin": "https://evil.example"}
        )
        assert status == 403 and "another site" in html
        assert page.client.app[STATE].runs.active() is None  # type: ignore[index]
        # The header works as well as the field (for scripts).
        status, run_path, _ = await page.post(confirm, headers={"X-CSRF-Token": page.csrf})
        assert status == 303
        await _run_to_the_end(page, run_path)


async def test_the_password_is_asked_and_checked(tmp_path: Path, sandbox: ThreadedSandbox) -> None:
    clock = Clock()
    config = _config(tmp_path, sandbox, password="correct horse", host="0.0.0.0", clock=clock)
    async with page_for(config) as page:
        async with page.client.get("/", allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/login"
        status, _, _ = await page.upload("candidates.csv", CANDIDATES)
        assert status == 403
        status, html = await page.get("/login")
        assert status == 200 and 'type="password"' in html
        status, _, _ = await page.post("/login", {"password": "correct horse"})
        assert status == 403  # no CSRF token: refused before the password is looked at
        status, _, html = await page.post("/login", {"csrf_token": page.csrf, "password": "nope"})
        assert status == 401 and "not the password" in html
        old = page.client.session.cookie_jar.filter_cookies(page.client.make_url("/"))
        status, where, _ = await page.post(
            "/login", {"csrf_token": page.csrf, "password": "correct horse"}
        )
        assert status == 303 and where == "/"
        new = page.client.session.cookie_jar.filter_cookies(page.client.make_url("/"))
        assert new["bulk_update_session"].value != old["bulk_update_session"].value
        status, html = await page.get("/")
        assert status == 200 and "Sign out" in html
        status, where, _ = await page.post("/logout", {"csrf_token": page.csrf})
        assert where == "/login"
        # Five wrong passwords in a minute: the next try waits.
        await page.get("/login")
        for _ in range(5):
            await page.post("/login", {"csrf_token": page.csrf, "password": "guess"})
        status, _, html = await page.post("/login", {"csrf_token": page.csrf, "password": "x"})
        assert status == 429 and "Try again in" in html
        clock.now += 61
        status, _, _ = await page.post(
            "/login", {"csrf_token": page.csrf, "password": "correct horse"}
        )
        assert status == 303


async def test_only_loopback_host_headers_are_answered(
    tmp_path: Path, sandbox: ThreadedSandbox
) -> None:
    async with page_for(_config(tmp_path, sandbox)) as page:
        async with page.client.get("/", headers={"Host": "rebind.evil.example:8080"}) as resp:
            assert resp.status == 421
        page.client.session.cookie_jar.clear()
        async with page.client.get("/", headers={"Host": "localhost:8080"}) as resp:
            assert resp.status == 200
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
            assert "; HttpOnly; Path=/; SameSite=Strict" in resp.headers["Set-Cookie"]


async def test_one_run_at_a_time_per_api_key(tmp_path: Path, sandbox: ThreadedSandbox) -> None:
    config = _config(tmp_path, sandbox)
    async with page_for(config) as page:
        _, where, _ = await page.upload("candidates.csv", CANDIDATES)
        with RunLock(tmp_path / "state", api_key=KEY):  # a run from a terminal, say
            status, _, html = await page.post(
                where.replace("/preview", "/run"), {"csrf_token": page.csrf}
            )
        assert status == 409 and "another run (process" in html and "How to fix" in html


async def test_the_preview_of_a_csv_goes_a_column_at_a_time_when_it_can(
    tmp_path: Path, sandbox: ThreadedSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a journal to compare with (no credentials here), as `run --dry-run` without
    COMEET_API_KEY: the column-at-a-time engine, with the general engine's counts."""
    from bulk_update import wiring
    from bulk_update.columnar import dry_run_csv

    used: list[object] = []

    def spy(*args: Any, **kwargs: Any) -> object:
        used.append(dry_run_csv(*args, **kwargs))
        return used[-1]

    monkeypatch.setattr(wiring, "dry_run_csv", spy)
    sheet = b"uid,first_name,email\nAE.1,Ada,ada@example.com\nAE.2,Bob,not-an-email\n"
    expected = {"would_update": 1, "invalid": 1}
    async with page_for(_config(tmp_path, sandbox, credentials=None)) as page:
        _, where, _ = await page.upload("plain.csv", sheet)
        _, html = await page.get(where)
        assert _counts(html, "preview-counts") == expected
        assert used and used[-1] is not None
        assert "email: &#39;not-an-email&#39; is not an email address" in html
    # With credentials the journal is read: the general engine, as on the command line.
    used.clear()
    async with page_for(_config(tmp_path, sandbox)) as page:
        _, where, _ = await page.upload("plain.csv", sheet)
        _, html = await page.get(where)
        assert _counts(html, "preview-counts") == expected and not used


async def test_without_credentials_the_page_previews_but_does_not_send(
    tmp_path: Path, sandbox: ThreadedSandbox
) -> None:
    async with page_for(_config(tmp_path, sandbox, credentials=None)) as page:
        _, where, _ = await page.upload("candidates.csv", CANDIDATES)
        status, html = await page.get(where)
        assert status == 200 and 'id="confirm-button" disabled' in html
        status, _, html = await page.post(
            where.replace("/preview", "/run"), {"csrf_token": page.csrf}
        )
        assert status == 409 and "COMEET_API_KEY" in html


async def test_secrets_never_reach_the_browser(tmp_path: Path, sandbox: ThreadedSandbox) -> None:
    async with page_for(_config(tmp_path, sandbox)) as page:
        _, where, _ = await page.upload("candidates.csv", CANDIDATES)
        await page.get(where)
        _, run_path, _ = await page.post(
            where.replace("/preview", "/run"), {"csrf_token": page.csrf}
        )
        await _run_to_the_end(page, run_path)
        for path in (run_path, "/runs", "/", "/static/app.js", "/outcomes.css", where):
            await page.get(path)
        async with page.client.get(run_path + "/report") as resp:
            page.seen.append((await resp.read()).decode("latin-1"))
        assert sandbox.snapshot().requests  # the run did talk to the API with them
    everything = "\n".join(page.seen)
    assert len(everything) > 10_000
    for secret in (KEY, SECRET, "Bearer", "eyJ"):
        assert secret not in everything


# --- the command line -----------------------------------------------------------------------


def test_serve_refuses_other_addresses_without_a_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BULK_UPDATE_WEB_PASSWORD", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without a password" in err
    assert "Fix: set BULK_UPDATE_WEB_PASSWORD" in err


# --- the pure parts -------------------------------------------------------------------------


def test_check_bind_and_host_headers() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError):
            check_bind(host, None)
        check_bind(host, "a password")
    assert host_allowed("127.0.0.1:8080", "127.0.0.1")
    assert host_allowed("[::1]:8080", "127.0.0.1")
    assert host_allowed("localhost", "127.0.0.1")
    assert not host_allowed("evil.example:8080", "127.0.0.1")
    assert not host_allowed(None, "127.0.0.1")
    assert host_allowed("hr-tools.internal:8080", "0.0.0.0")


def test_sessions_expire_and_compare_in_constant_time() -> None:
    clock = Clock()
    sessions = Sessions("pw", ttl_s=100, limit=3, clock=clock)
    first = sessions.new()
    assert not first.authenticated and sessions.password_required
    assert sessions.get(first.token) is first
    assert first.csrf_ok(first.csrf) and not first.csrf_ok("x") and not first.csrf_ok(None)
    assert sessions.password_ok("pw") and not sessions.password_ok("pW")
    logged = sessions.login(first)
    assert logged.authenticated and sessions.get(first.token) is None
    clock.now += 101
    assert sessions.get(logged.token) is None
    many = [sessions.new() for _ in range(4)]
    assert sessions.get(many[0].token) is None and sessions.get(many[-1].token) is not None
    assert "pw" not in repr(sessions)
    assert Sessions(None).new().authenticated


def test_login_throttle_forgets_after_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(3, 60, clock=clock)
    for _ in range(3):
        assert throttle.blocked_for("1.2.3.4") == 0
        throttle.failed("1.2.3.4")
        clock.now += 1
    assert throttle.blocked_for("1.2.3.4") == pytest.approx(57)
    assert throttle.blocked_for("5.6.7.8") == 0
    clock.now += 57
    assert throttle.blocked_for("1.2.3.4") == 0
    throttle.failed("1.2.3.4")
    throttle.succeeded("1.2.3.4")
    assert throttle.blocked_for("1.2.3.4") == 0


def test_safe_names_and_display_helpers() -> None:
    assert safe_name("C:\\Users\\rita\\Q3 hires.xlsx") == "Q3 hires.xlsx"
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name(".hidden.csv") == "hidden.csv"
    assert safe_name("a<b>|c.csv") == "a_b_c.csv"
    assert safe_name("") == "sheet"
    assert len(safe_name("x" * 500 + ".csv")) == 120
    assert format_duration(0) == "a few seconds"
    assert format_duration(45) == "about 45 s"
    assert format_duration(200) == "about 3 min 20 s"
    assert format_duration(3900) == "about 1 h 05 min"
    body = shown_body({"resume": {"name": "cv.pdf", "file": "QUJD" * 10}, "note": "hi"})
    assert "<30 bytes, base64>" in body and "QUJD" not in body
    css = outcome_css()
    for outcome, colour in OUTCOME_COLOURS.items():
        assert f".outcome-{outcome.value} {{ --outcome: #{colour}; }}" in css


def _hidden_workbook() -> bytes:
    """A hidden old export first; the candidates with rows 3 and 5 filtered out of view and
    column C (custom_fields.Team) hidden."""
    workbook = Workbook()
    old = workbook.active
    assert old is not None
    old.title = "Old export"
    old.append(["uid", "first_name"])
    old.append(["AE.17934", "Stale"])
    old.sheet_state = "hidden"
    sheet = workbook.create_sheet("Candidates")
    sheet.append(["uid", "first_name", "custom_fields.Team"])
    for uid, name, team in [
        ("AE.17934", "Dana", "Red"),
        ("B4.B5F21", "Noa", "Blue"),
        ("FC.C9A3E", "Maya", "Green"),
        ("3A.1F07B", "Avi", "Gold"),
    ]:
        sheet.append([uid, name, team])
    sheet.auto_filter.ref = "A1:C5"
    sheet.row_dimensions[3].hidden = True
    sheet.row_dimensions[5].hidden = True
    sheet.column_dimensions["C"].hidden = True
    workbook.active = 1
    buffer = BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


async def test_hidden_worksheets_rows_and_columns_are_asked_about(
    tmp_path: Path, sandbox: ThreadedSandbox
) -> None:
    async with page_for(_config(tmp_path, sandbox)) as page:
        status, where, _ = await page.upload("hidden.xlsx", _hidden_workbook())
        assert status == 303 and where.endswith("/worksheet")
        _, html = await page.get(where)
        # The hidden worksheet is shown, marked, and not chosen, though it has a uid column.
        assert 'data-worksheet="Old export" data-hidden="true"' in html
        assert "(hidden in the workbook)" in html
        assert re.search(r'value="Candidates"\s+checked', html)
        assert not re.search(r'value="Old export"\s+checked', html)
        form = {"csrf_token": page.csrf, "worksheet": "Candidates"}
        status, preview, _ = await page.post(where, form)
        assert status == 303 and preview.endswith("/preview")
        _, html = await page.get(preview)
        assert 'data-hidden-rows="2" data-hidden-columns="1" data-choice=""' in html
        assert "2 rows hidden or filtered out of view and 1 hidden column" in html
        assert _counts(html, "preview-counts") == {"would_update": 4}  # counted as sent
        assert re.search(r'id="confirm-button"\s+disabled', html)
        # Confirming without an answer is refused, and nothing is sent.
        sent_before = len(sandbox.state.requests)
        run_path = preview.replace("/preview", "/run")
        status, _, html = await page.post(run_path, {"csrf_token": page.csrf})
        assert status == 409 and "whether to send or skip the hidden rows" in html
        assert len(sandbox.state.requests) == sent_before
        hidden_path = preview.replace("/preview", "/hidden")
        status, _, html = await page.post(hidden_path, {"csrf_token": page.csrf, "hidden": "x"})
        assert status == 400
        form = {"csrf_token": page.csrf, "hidden": "skip"}
        status, again, _ = await page.post(hidden_path, form)
        assert status == 303 and again == preview
        _, html = await page.get(preview)
        assert 'data-choice="skip"' in html
        assert _counts(html, "preview-counts") == {"would_update": 2, "skipped": 2}
        assert not re.search(r'id="confirm-button"\s+disabled', html)
        status, run_path, _ = await page.post(run_path, {"csrf_token": page.csrf})
        assert status == 303 and run_path.startswith("/runs/")
        await _run_to_the_end(page, run_path)
    sent = sandbox.state.requests[sent_before:]
    assert {r.uid: r.body for r in sent} == {
        "AE.17934": {"first_name": "Dana"},
        "FC.C9A3E": {"first_name": "Maya"},
    }
