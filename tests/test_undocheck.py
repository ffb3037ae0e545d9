"""An undo sheet held to the rules of its own run: a value Comeet held that the tool refuses
on input is `Not restorable`, with why, and never makes the rest of its row `invalid`."""

from __future__ import annotations

import asyncio
import copy
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook

import bulk_update as bu
from bulk_update.backup import EMPTY_BEFORE, BackedUpRow, Backup, BackupRecord, read_backup
from bulk_update.models import NOT_RESTORABLE, Patch
from bulk_update.readmodel import holds_same, parse_candidate
from bulk_update.sandbox import SandboxState, ThreadedSandbox
from bulk_update.undo import NOT_RESTORABLE_SHEET, restorable, write_undo_sheet
from bulk_update.undocheck import not_in_xlsx, refused

from .conftest import run_cli
from .test_backup import sheet_rows, write_csv
from .test_client import CompatResponse
from .test_messages import check
from .test_resume import CREDS

LINKEDIN_RULE = "is not a LinkedIn URL; write the full address"
EMAIL_RULE = "is not an email address; write it like jane@example.com"
STATUS_RULE = "is not a prospect status; use one of: Sourced"


def held(value: str, rule: str) -> str:
    """How `Not restorable` says that Comeet held `value`, which the run refuses by `rule`."""
    return f"Comeet held '{value}', which bulk-update does not send: '{value}' {rule}"


# --- the check on a table -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("linkedin_url", "www.linkedin.com/in/dana",
         held("www.linkedin.com/in/dana", LINKEDIN_RULE)),
        ("email", "dana@localhost", held("dana@localhost", EMAIL_RULE)),
        ("prospect_status", "Hired", held("Hired", STATUS_RULE)),
        ("phone", "9.72E+11", "Comeet held '9.72E+11', which bulk-update does not send: "
         "'9.72E+11': Excel turned this number into scientific notation"),
        ("email", "dana\u200b@example.com", "Comeet held 'dana\\u200b@example.com', which "
         "bulk-update does not send: 'dana\\u200b@example.com' holds an invisible character"),
        ("first_name", "#N/A", held("#N/A", "is a spreadsheet error")),
    ],
)  # fmt: skip
def test_a_value_the_run_refuses_is_said_and_the_rest_of_its_row_is_kept(
    tmp_path: Path, field: str, value: str, said: str
) -> None:
    table = [["uid", "first_name", field, NOT_RESTORABLE], ["AE.1", "Dana", value, ""]]
    if field == "first_name":
        table = [["uid", "last_name", field, NOT_RESTORABLE], ["AE.1", "Cohen", value, ""]]
    (why,) = refused(table, tmp_path)
    assert list(why) == [field]
    assert why[field].startswith(said)


@pytest.mark.parametrize(
    "value",
    [
        "interested",  # sent as Interested: the run normalises it, nothing is refused
        "  Not   Interested ",
        "dana@example.com\u200b",  # stripped at the edge, as the reader strips every cell
        "https://www.linkedin.com/in/dana",
    ],
)
def test_a_value_the_run_takes_as_it_is_or_normalised_is_no_refusal(
    tmp_path: Path, value: str
) -> None:
    field = "prospect_status" if "nterested" in value else "email"
    field = "linkedin_url" if "linkedin" in value else field
    assert refused([["uid", field], ["AE.1", value]], tmp_path) == [{}]


def test_a_source_contact_half_held_is_refused_whole_and_says_what_it_lacks(
    tmp_path: Path,
) -> None:
    header = ["uid", "first_name", "source_contact.full_name", "source_contact.email"]
    table = [
        header,
        ["AE.1", "Dana", "Ann Lee", ""],  # a name and no email
        ["AE.2", "Avi", "", "ann@example.com"],  # an email and no name
        ["AE.3", "Ron", "Ann Lee", "ann@localhost"],  # the email refused: its name goes too
        ["AE.4", "Tal", "Ann Lee", "ann@example.com"],  # both: restored
    ]
    one, two, three, four = refused(table, tmp_path)
    assert one == {
        "source_contact.full_name": "Comeet held 'Ann Lee', which bulk-update does not send "
        "without source_contact.email (required when source_contact is sent; fill it in on "
        "this row)"
    }
    assert list(two) == ["source_contact.email"]
    assert two["source_contact.email"].startswith(
        "Comeet held 'ann@example.com', which bulk-update does not send without "
        "source_contact.full_name"
    )
    assert three["source_contact.email"] == held("ann@localhost", EMAIL_RULE)
    assert three["source_contact.full_name"].startswith(
        "Comeet held 'Ann Lee', which bulk-update does not send without source_contact.email"
    )
    assert four == {}
    # Alone in the sheet (no column for the other half): the same.
    (alone,) = refused([["uid", "source_contact.email"], ["AE.2", "a@example.com"]], tmp_path)
    assert (
        "without source_contact.full_name (required when source_contact is sent; add "
        in (alone["source_contact.email"])
    )


def test_a_resume_the_run_would_refuse_is_said_with_its_file(tmp_path: Path) -> None:
    folder = tmp_path / "u resumes" / "row 2"
    folder.mkdir(parents=True)
    (folder / "cv.rtf").write_bytes(b"{\\rtf1 old}")
    (folder / "cv.pdf").write_bytes(b"%PDF old")
    table = [
        ["uid", "first_name", "resume"],
        ["AE.1", "Dana", "u resumes/row 2/cv.rtf"],
        ["AE.2", "Avi", "u resumes/row 2/cv.pdf"],
    ]
    assert refused(table, tmp_path) == [
        {
            "resume": "Comeet held 'u resumes/row 2/cv.rtf', which bulk-update does not send: "
            "'u resumes/row 2/cv.rtf' is not a resume file; use a .pdf, .doc or .docx file"
        },
        {},
    ]


def test_a_value_an_xlsx_cell_cannot_hold_is_said_there_and_a_csv_puts_it_back(
    tmp_path: Path,
) -> None:
    before = {"first_name": "Da\x01na", "last_name": "Cohen", "middle_name": "x" * 40_000}
    rows = [BackedUpRow(2, "AE.1", before, {"custom_fields.T\x02eam": "not read"})]
    record = BackupRecord(tmp_path / "u.xlsx", tmp_path / "u resumes", "run 7", rows=rows)
    (line,) = sheet_rows(write_undo_sheet(record, tmp_path / "u.xlsx"))
    assert line["last_name"] == "Cohen" and "first_name" not in line  # no row has it
    lost = not_in_xlsx("run 7")
    assert line[NOT_RESTORABLE] == (
        f"custom_fields.Team: not read; first_name: {lost}; middle_name: {lost}"
    )
    assert lost.endswith(
        "write the undo sheet as a .csv: bulk-update undo-sheet --run 7 --undo-sheet FILE.csv"
    )
    # The worksheet saying so opens too, though a field's name held a control character.
    listed = load_workbook(tmp_path / "u.xlsx")[NOT_RESTORABLE_SHEET].iter_rows(values_only=True)
    assert [path for _, _, path, _ in list(listed)[1:]] == [
        "custom_fields.Team", "first_name", "middle_name",
    ]  # fmt: skip
    (line,) = sheet_rows(write_undo_sheet(record, tmp_path / "u.csv"))
    assert (line["first_name"], line["middle_name"]) == ("Da\x01na", "x" * 40_000)


def test_a_carriage_return_an_xlsx_cell_keeps_as_a_line_feed_is_not_sent_changed(
    tmp_path: Path,
) -> None:
    # An .xlsx cell stores CR and CRLF as LF: its run would send 'Levi\nX' for 'Levi\r\nX'.
    before = {"first_name": "'=Dana", "last_name": "Levi\r\nX", "middle_name": "Ann\rB"}
    rows = [BackedUpRow(2, "AE.1", before, {})]
    record = BackupRecord(tmp_path / "u.xlsx", tmp_path / "u resumes", "run 7", rows=rows)
    written = write_undo_sheet(record, tmp_path / "u.xlsx")
    (patch,) = bu.plan(bu.load(written)).patches
    # The apostrophe the .xlsx gets before '=Dana comes off again as it is loaded: no loss.
    assert patch.body == {"first_name": "'=Dana"}
    lost = not_in_xlsx("run 7")
    assert sheet_rows(written)[0][NOT_RESTORABLE] == f"last_name: {lost}; middle_name: {lost}"
    (patch,) = bu.plan(bu.load(write_undo_sheet(record, tmp_path / "u.csv"))).patches
    assert patch.body == before


def test_the_reasons_are_in_the_readmes_catalogue(tmp_path: Path) -> None:
    table = [
        ["uid", "linkedin_url", "source_contact.full_name", "source_contact.email"],
        ["AE.1", "www.linkedin.com/in/dana", "Ann Lee", ""],
    ]
    (why,) = refused(table, tmp_path)
    assert len(why) == 2
    check(*why.values(), not_in_xlsx("run 7"), not_in_xlsx(""))


# --- the round trip on the sandbox ----------------------------------------------------------

BEFORE: dict[str, dict[str, Any]] = {
    "AE.1": {
        "uid": "AE.1", "first_name": "Dana", "last_name": "Cohen",
        "linkedin_url": "www.linkedin.com/in/dana", "email": "dana@localhost",
        "prospect_status": "Hired", "phone": "03-555-0100",
        "source_contact": {"full_name": "Ann Lee", "email": "ann@example.com"},
    },
    "AE.2": {  # a status the run normalises; a source contact with a name only
        "uid": "AE.2", "first_name": "Avi", "last_name": "Levi",
        "linkedin_url": "https://www.linkedin.com/in/avi", "email": "avi\u200b@example.com",
        "prospect_status": "contacted", "phone": "9.72E+11",
        "source_contact": {"full_name": "Ron Gal", "email": ""},
    },
}  # fmt: skip
HEADER = [
    "uid", "First Name", "Last Name", "LinkedIn URL", "Email", "Prospect Status", "Phone",
    "source_contact.full_name", "source_contact.email",
]  # fmt: skip
ROWS = [
    ["AE.1", "Dina", "Kahn", "https://www.linkedin.com/in/dina", "dina@new.example",
     "Interested", "03-555-0999", "Noa Bar", "noa@new.example"],
    ["AE.2", "Avraham", "Levy", "https://www.linkedin.com/in/avraham", "avraham@new.example",
     "Responded", "03-555-0299", "Noa Bar", "noa@new.example"],
]  # fmt: skip
#: (uid, field) -> the start of why it cannot be put back.
REFUSED = {
    ("AE.1", "linkedin_url"): held("www.linkedin.com/in/dana", LINKEDIN_RULE),
    ("AE.1", "email"): held("dana@localhost", EMAIL_RULE),
    ("AE.1", "prospect_status"): held("Hired", STATUS_RULE),
    ("AE.2", "email"): "Comeet held 'avi\\u200b@example.com', which bulk-update does not send: "
    "'avi\\u200b@example.com' holds an invisible character",
    ("AE.2", "phone"): "Comeet held '9.72E+11', which bulk-update does not send: '9.72E+11': "
    "Excel turned this number into scientific notation",
    ("AE.2", "source_contact.full_name"): "Comeet held 'Ron Gal', which bulk-update does not "
    "send without source_contact.email",
    ("AE.2", "source_contact.email"): EMPTY_BEFORE,
}


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_an_undo_run_puts_back_every_field_but_those_comeet_held_and_the_tool_refuses(
    tmp_path: Path, suffix: str
) -> None:
    sheet = write_csv(tmp_path / "people.csv", HEADER, ROWS)
    undo = tmp_path / f"people.undo{suffix}"
    env = {**CREDS, "XDG_STATE_HOME": str(tmp_path / "state")}
    state = SandboxState()
    state.candidates.update(copy.deepcopy(BEFORE))
    with ThreadedSandbox(state) as sb:
        args = ("--base-url", sb.base_url, "--rate", "1000/1")
        res = run_cli("run", sheet, *args, "--backup", "--undo-sheet", undo, env=env)
        assert res.code == 0, res.err
        changed = sb.snapshot().candidates

        lines = {line["uid"]: line for line in sheet_rows(undo)}
        said = {
            (uid, part.split(": ", 1)[0]): part.split(": ", 1)[1]
            for uid, line in lines.items()
            for part in re.split(r"; (?=[a-z_.]+: )", line[NOT_RESTORABLE])
            if part
        }
        assert said.keys() == REFUSED.keys()
        for key, start in REFUSED.items():
            assert said[key].startswith(start), key
            assert lines[key[0]].get(key[1], "") == ""  # its cell stays empty
        if suffix == ".xlsx":
            listed = list(load_workbook(undo)["Not restorable"].iter_rows(values_only=True))
            assert {(uid, path): why for _, uid, path, why in listed[1:]} == said

        res = run_cli("run", undo, *args, "--report", tmp_path / "undo.out.csv", env=env)
        assert res.code == 0, res.err + res.out  # no row invalid
        back = sb.snapshot().candidates
    for uid, before in BEFORE.items():
        for path in (
            "first_name",
            "last_name",
            "linkedin_url",
            "email",
            "prospect_status",
            "phone",
        ):
            expected = changed[uid][path] if (uid, path) in REFUSED else before[path]
            if path == "prospect_status" and (uid, path) not in REFUSED:
                expected = before[path].capitalize()  # normalised as any sheet's status
            assert back[uid][path] == expected, (uid, path)
    assert back["AE.1"]["source_contact"] == BEFORE["AE.1"]["source_contact"]
    assert back["AE.2"]["source_contact"] == changed["AE.2"]["source_contact"]


# --- any candidate the read model can return --------------------------------------------------

TEXT_FIELDS = ("first_name", "middle_name", "last_name", "email", "phone", "mobile_phone",
               "linkedin_url", "prospect_status", "id_number")  # fmt: skip
#: Every write field a read gives a value for: what a patch of every readable field keeps.
READABLE = (
    "first_name", "middle_name", "last_name", "email", "phone", "mobile_phone",
    "linkedin_url", "prospect_status", "national_id", "source_contact.full_name",
    "source_contact.email", "resume",
)  # fmt: skip
#: Values near the rules' edges, besides any text at all.
EDGY = [
    "Dana", "dana@example.com", "dana@localhost", "https://www.linkedin.com/in/dana",
    "www.linkedin.com/in/dana", "interested", "Hired", "9.72E+11", "+972-3-555-0100",
    "#N/A", "Err:502", "a\u200bb", "dana@example.com\u200b", " ", "=1+1", "'=x", "012345678",
    "a;b", "line\nbreak",
]  # fmt: skip
_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)  # JSON: no surrogates
_VALUE = st.one_of(st.none(), st.sampled_from(EDGY), _TEXT)


@st.composite
def candidates(draw: st.DrawFn) -> dict[str, Any]:
    """A candidate object as a read may return it (comeet-api.md section 10)."""
    data: dict[str, Any] = {}
    for name in TEXT_FIELDS:
        if draw(st.booleans()):
            data[name] = draw(_VALUE)
    if draw(st.booleans()):
        contact = {
            k: draw(_VALUE) for k in ("first_name", "last_name", "email") if draw(st.booleans())
        }
        data["source_contact"] = draw(st.one_of(st.none(), st.just(contact)))
    if draw(st.booleans()):
        name = draw(st.one_of(st.sampled_from(["cv.pdf", "cv.txt", "", ".pdf", "a;b.docx"]), _TEXT))
        data["resume"] = {"name": name, "url": "https://files.example/cv"}
    return data


async def _backed_up(people: list[dict[str, Any]], path: Path, undo: Path) -> None:
    async with aiohttp.ClientSession() as session:
        backup = Backup(path, undo_sheet=undo, session=session)
        try:
            for row, data in enumerate(people, start=2):
                uid = f"AE.{row}"
                patch = Patch(row, uid, {}, READABLE)
                await backup.keep(patch, parse_candidate({**data, "uid": uid}))
        finally:
            backup.close()


@settings(max_examples=50)
@given(people=st.lists(candidates(), min_size=1, max_size=6))
def test_no_candidate_comeet_returns_makes_an_undo_row_invalid(
    tmp_path_factory: pytest.TempPathFactory, people: list[dict[str, Any]]
) -> None:
    folder = tmp_path_factory.mktemp("undo")
    with aioresponses() as mocked:
        mocked.get(
            "https://files.example/cv",
            body=b"%PDF the old cv",
            repeat=True,
            response_class=CompatResponse,
        )
        asyncio.run(_backed_up(people, folder / "backup.jsonl", folder / "u.xlsx"))
    record = read_backup(folder / "backup.jsonl")
    for suffix in (".xlsx", ".csv"):
        undo = write_undo_sheet(record, folder / f"u{suffix}")
        the_plan = bu.plan(bu.load(undo))
        assert [r.problems for r in the_plan.rows if r.outcome is bu.Outcome.INVALID] == []
        rows = {r.uid: r for r in the_plan.rows}
        said = {(row.uid, path) for row in restorable(record, undo).rows for path in row.lost}
        if suffix == ".xlsx":
            listed = load_workbook(undo)[NOT_RESTORABLE_SHEET].iter_rows(values_only=True)
            assert {(uid, path) for _, uid, path, _ in list(listed)[1:]} == said
        for row, data in enumerate(people, start=2):
            uid = f"AE.{row}"
            candidate = parse_candidate({**data, "uid": uid})
            sent = rows[uid].patch.fields if rows[uid].patch is not None else ()
            # Every readable field is either sent or said, never both...
            assert sorted(sent) == sorted(f for f in READABLE if (uid, f) not in said)
            # ...and what is sent is what Comeet held, as the run sends it.
            body = rows[uid].patch.body if rows[uid].patch is not None else {}
            for path in sent:
                if path == "resume":
                    continue  # a file, not text: test_backup holds it to the bytes
                head, _, leaf = path.partition(".")
                value = body[head][leaf] if leaf else body[head]
                if suffix == ".xlsx" and "\r" in str(candidate.held(path)):
                    continue  # an XLSX cell holds a line break as LF: the sheet shows it so
                assert holds_same(path, candidate.held(path), value), (uid, path, value)
