"""Patch building: nesting, updated_by, the journal's last-applied fingerprints."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulk_update.models import Outcome, Patch
from bulk_update.patch import PatchShapes, body_fields, build_patch, fingerprint
from bulk_update.schema import (
    FIELDS,
    ISO_COUNTRY_CODES,
    PROSPECT_STATUSES,
    UPDATED_BY_TYPES,
)
from tests.api_body import CandidatePatch

DEFAULTS = {"type": "app", "name": "Spreadsheet sync", "email": "ops@example.com"}


def _patch(values: dict[str, Any], **kwargs: Any) -> Patch:
    result = build_patch(7, "AE.17934", values, **kwargs)
    assert isinstance(result, Patch), result
    return result


def test_dotted_paths_nest_and_uid_stays_in_the_url() -> None:
    patch = _patch(
        {
            "uid": "AE.17934",
            "first_name": "Jane",
            "address.country": "IL",
            "custom_fields.Team.Size": "12",
            "address.city": "Haifa",
            "phone": "+972 50",
        }
    )
    assert patch.row == 7
    assert patch.uid == "AE.17934"
    assert patch.body == {
        "first_name": "Jane",
        "address": {"country": "IL", "city": "Haifa"},
        "custom_fields": {"Team.Size": "12"},  # split on the first dot only
        "phone": "+972 50",
    }
    assert list(patch.body) == ["first_name", "address", "custom_fields", "phone"]
    assert patch.fields == (
        "first_name",
        "address.country",
        "address.city",
        "custom_fields.Team.Size",
        "phone",
    )


def test_files_and_links_are_fields_by_their_top_level_name() -> None:
    resume = {"name": "cv.pdf", "file": "JVBERg=="}
    patch = _patch({"resume": resume, "links": [{"url": "https://a.example"}], "files": [resume]})
    assert patch.body["resume"] == resume
    assert patch.fields == ("resume", "links", "files")


def test_updated_by_is_defaults_overridden_by_the_row_and_comes_last() -> None:
    patch = _patch(
        {"updated_by.name": "Kelly Lee", "note": "called", "updated_by.type": "user"},
        default_updated_by=DEFAULTS,
    )
    assert list(patch.body) == ["note", "updated_by"]
    assert patch.body["updated_by"] == {
        "type": "user",
        "name": "Kelly Lee",
        "email": "ops@example.com",
    }
    assert list(patch.body["updated_by"]) == ["type", "name", "email"]
    assert patch.fields == ("note",)


def test_no_updated_by_when_neither_defaults_nor_row_have_one() -> None:
    assert "updated_by" not in _patch({"note": "x"}).body


def test_empty_values_are_never_sent() -> None:
    patch = _patch(
        {"first_name": "", "last_name": "  ", "email": None, "links": [], "address.city": "X"},
        default_updated_by={"type": "app", "name": "Sync", "email": ""},
    )
    assert patch.body == {"address": {"city": "X"}, "updated_by": {"type": "app", "name": "Sync"}}


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"uid": "AE.1"},
        {"updated_by.type": "user", "updated_by.name": "Kelly"},
        {"updated_by.email": "k@x.io", "note": ""},
    ],
)
def test_only_uid_and_updated_by_is_skipped(values: dict[str, Any]) -> None:
    assert build_patch(2, "AE.1", values, default_updated_by=DEFAULTS) is Outcome.SKIPPED


def test_already_applied_fields_are_left_out() -> None:
    values = {"first_name": "Jane", "email": "jane@x.io", "address.country": "IL"}
    applied = {"first_name": fingerprint("Jane"), "address.country": fingerprint("GB")}
    patch = _patch(values, last_applied=applied, default_updated_by=DEFAULTS)
    assert patch.fields == ("email", "address.country")
    assert patch.body["address"] == {"country": "IL"}


def test_everything_already_applied_is_unchanged() -> None:
    values = {"note": "called on Monday", "custom_fields.Team": "Core", "updated_by.name": "K"}
    applied = {path: fingerprint(v) for path, v in values.items() if path != "updated_by.name"}
    assert build_patch(2, "AE.1", values, last_applied=applied) is Outcome.UNCHANGED


def test_the_same_note_is_never_added_twice_but_a_new_one_is() -> None:
    applied = {"note": fingerprint("called on Monday")}
    same = build_patch(2, "AE.1", {"note": "called on Monday"}, last_applied=applied)
    assert same is Outcome.UNCHANGED
    new = _patch({"note": "called on Tuesday"}, last_applied=applied)
    assert new.body == {"note": "called on Tuesday"}


def test_an_empty_last_applied_sends_everything() -> None:
    assert _patch({"note": "x"}, last_applied={}).fields == ("note",)


def test_the_fingerprints_compared_are_kept_for_the_fields_sent_but_the_note() -> None:
    values = {"first_name": "Jane", "email": "jane@x.io", "note": "hi", "updated_by.name": "K"}
    applied = {"first_name": fingerprint("Jane")}
    patch = _patch(values, last_applied=applied)
    assert patch.fields == ("email", "note")
    assert patch.fingerprints == {"email": fingerprint("jane@x.io")}
    assert _patch(values).fingerprints is None  # nothing compared, nothing kept
    # A file object's leaves are columns but not fields: its fingerprint is the journal's
    # to compute when the row is confirmed.
    resume = _patch({"resume.name": "cv.pdf", "resume.file": "eA=="}, last_applied={})
    assert resume.fields == ("resume",) and resume.fingerprints is None


def test_source_contact_keeps_its_required_parts_when_any_part_changes() -> None:
    values = {
        "source_contact.full_name": "Michael Rosen",
        "source_contact.email": "m@hunters.example",
        "source_contact.phone": "555 1234",
    }
    applied = {path: fingerprint(v) for path, v in values.items()}
    applied["source_contact.phone"] = fingerprint("555 0000")
    patch = _patch(values, last_applied=applied)
    assert patch.body == {"source_contact": values_nested(values)}
    CandidatePatch.model_validate(patch.body)


def values_nested(values: dict[str, str]) -> dict[str, str]:
    return {path.partition(".")[2]: v for path, v in values.items()}


def test_fingerprint_is_sha256_of_canonical_json() -> None:
    expected = hashlib.sha256('{"file":"eA==","name":"ü.pdf"}'.encode()).hexdigest()
    assert fingerprint({"name": "ü.pdf", "file": "eA=="}) == expected
    assert fingerprint({"file": "eA==", "name": "ü.pdf"}) == expected
    assert fingerprint("IL") != fingerprint("il")
    assert fingerprint([{"url": "a"}]) == fingerprint(({"url": "a"},))
    assert len(fingerprint("x")) == 64


def test_body_fields() -> None:
    body = {
        "email": "a@b.io",
        "resume": {"name": "cv.pdf", "file": "eA=="},
        "source_contact": {"full_name": "M", "email": "m@x.io"},
        "custom_fields": {"Team Size": "3"},
        "updated_by": {"type": "app", "name": "Sync"},
    }
    assert body_fields(body) == (
        "email",
        "resume",
        "source_contact.full_name",
        "source_contact.email",
        "custom_fields.Team Size",
    )


# --- properties -----------------------------------------------------------------------------

_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_TEXT = st.text(min_size=1, max_size=12)
_EMAIL = st.builds(lambda a, b: f"{a}@{b}.example", _WORD, _WORD)
_FILE = st.builds(lambda n, f: {"name": f"{n}.txt", "file": f}, _WORD, _WORD)
_EMPTY: st.SearchStrategy[Any] = st.sampled_from(["", " ", None, [], {}])

_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "email": _EMAIL,
    "linkedin_url": st.builds(lambda w: f"https://www.linkedin.com/in/{w}", _WORD),
    "prospect_status": st.sampled_from(PROSPECT_STATUSES),
    "resume": st.builds(lambda n, f: {"name": f"{n}.pdf", "file": f}, _WORD, _WORD),
    "picture": _FILE,
    "files": st.lists(_FILE, min_size=1, max_size=3),
    "links": st.lists(
        st.builds(lambda w: {"url": f"https://{w}.example"}, _WORD), min_size=1, max_size=3
    ),
    "updated_by.type": st.sampled_from(UPDATED_BY_TYPES),
    "updated_by.email": _EMAIL,
    "source_contact.email": _EMAIL,
    "address.country": st.sampled_from(sorted(ISO_COUNTRY_CODES)),
}
_PATHS = [*sorted(FIELDS - {"uid"}), "custom_fields.Team", "custom_fields.Team Size.2"]


@st.composite
def _rows(draw: st.DrawFn, data_fields: bool = True) -> dict[str, Any]:
    """A validated row's values: known paths in random order, some empty."""
    pool = _PATHS if data_fields else [p for p in _PATHS if p.startswith("updated_by.")]
    paths = draw(st.lists(st.sampled_from(pool), unique=True, max_size=len(pool)))
    values: dict[str, Any] = {}
    for path in paths:
        strategy = _VALUES.get(path, _TEXT)
        values[path] = draw(st.one_of(strategy, _EMPTY) if draw(st.booleans()) else strategy)
    # The API's rule, as validate_row enforces it: a source_contact has a name and an email.
    if any(p.startswith("source_contact.") and values[p] for p in values):
        values["source_contact.full_name"] = draw(_TEXT.filter(str.strip))
        values["source_contact.email"] = draw(_EMAIL)
    return values


def _applied(data: st.DataObject, values: dict[str, Any]) -> dict[str, str] | None:
    draw = data.draw
    if draw(st.booleans()):
        return None
    applied: dict[str, str] = {}
    for path, value in values.items():
        choice = draw(st.sampled_from(["same", "other", "absent"]))
        if choice == "same":
            applied[path] = fingerprint(value)
        elif choice == "other":
            applied[path] = fingerprint(["something else", value])
    return applied


# source_contact's required parts go along whenever any of it is sent, applied or not.
_COMPANIONS = ("source_contact.full_name", "source_contact.email")


def _data(values: dict[str, Any]) -> dict[str, Any]:
    """The data fields a row really carries: no updated_by.*, no empty values."""
    return {
        path: value
        for path, value in values.items()
        if not path.startswith("updated_by.")
        and not (
            value is None or value in ([], {}) or (isinstance(value, str) and not value.strip())
        )
    }


@given(st.data())
def test_property_patches_are_minimal_and_valid(data: st.DataObject) -> None:
    values = data.draw(_rows())
    applied = _applied(data, values)
    defaults = data.draw(st.sampled_from([{}, {"type": "app", "name": "Sync"}]))
    if any(p.startswith("updated_by.") and values[p] for p in values):
        defaults = {"type": "app", "name": "Sync"}  # validate_row insists on type and name
    result = build_patch(3, "AE.1", values, default_updated_by=defaults, last_applied=applied)
    data_values = _data(values)
    if result is Outcome.SKIPPED:
        assert not data_values
        return
    if result is Outcome.UNCHANGED:
        assert applied is not None
        assert data_values
        assert all(applied.get(p) == fingerprint(v) for p, v in data_values.items())
        return
    assert isinstance(result, Patch)
    body = result.body
    CandidatePatch.model_validate(body)  # no empty value, nothing the API would refuse
    assert result.fields == body_fields(body)
    assert "uid" not in body
    for path in result.fields:
        head, dot, leaf = path.partition(".")
        sent = body[head][leaf] if dot else body[path]
        assert sent == values[path]
        if applied and applied.get(path) == fingerprint(sent):
            assert path in _COMPANIONS
    # Nothing that changed is left out.
    missing = {p for p, v in data_values.items() if not applied or applied.get(p) != fingerprint(v)}
    assert missing <= set(result.fields)
    assert list(body)[-1] == "updated_by" or "updated_by" not in body


@given(st.data())
def test_property_skipped_exactly_when_only_updated_by(data: st.DataObject) -> None:
    only_updated_by = data.draw(st.booleans())
    values = data.draw(_rows(data_fields=not only_updated_by))
    applied = _applied(data, values)
    result = build_patch(3, "AE.1", values, default_updated_by=DEFAULTS, last_applied=applied)
    assert (result is Outcome.SKIPPED) == (not _data(values))


@given(
    st.lists(
        st.sampled_from(
            ["first_name", "email", "address.city", "note", "address.country", "updated_by.name"]
        ),
        unique=True,
    )
)
def test_patch_shapes_says_what_build_patch_would_without_building_bodies(
    paths: list[str],
) -> None:
    shapes = PatchShapes()
    values = dict.fromkeys(paths, "x")
    built = build_patch(2, "AE.1", values)
    expected = built if isinstance(built, Outcome) else built.fields
    assert shapes.sends(values) == expected
    assert shapes.sends(values) == expected  # remembered, still the same


def test_patch_shapes_are_per_instance_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import bulk_update.patch as patch_module

    monkeypatch.setattr(patch_module, "SHAPES_KEPT", 3)
    shapes, other = PatchShapes(), PatchShapes()
    for i in range(10):
        assert shapes.sends({f"custom_fields.f{i}": "x"}) == (f"custom_fields.f{i}",)
        assert len(shapes._known) <= 3
    assert not other._known  # nothing shared between plans: no module-level memory


def test_patch_shapes_work_out_a_whole_object_from_its_value_every_time() -> None:
    shapes = PatchShapes()
    assert shapes.sends({"address": {"city": "Haifa"}}) == ("address.city",)
    assert shapes.sends({"address": {"zip": "1"}}) == ("address.zip",)
