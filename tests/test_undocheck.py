"""An undo sheet held to the rules of its own run: a value Comeet held that the tool refuses
on input is `Not restorable`, with why, and never makes the rest of its row `invalid`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulk_update.models import NOT_RESTORABLE
from bulk_update.undocheck import refused

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
