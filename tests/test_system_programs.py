"""Tests that drive a system program (LibreOffice, Chromium) on a machine without it."""

from __future__ import annotations

import sys

import pytest

from .conftest import require_program


def test_a_missing_program_skips_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"no-such-program is not installed \(how\)"):
        require_program("no-such-program", "how")


def test_in_ci_a_missing_program_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI runs every test"):
        require_program("/nowhere/chromium", "apt-get install chromium")


def test_a_program_that_is_there_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    require_program(sys.executable, "")  # a path
    require_program("python3", "")  # a name on PATH
