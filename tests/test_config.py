"""config.py: TOML -> Settings, every problem named by its key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bulk_update.config import Settings, _File, default_state_dir, load_config, parse_config
from bulk_update.errors import ConfigError
from bulk_update.models import Rate
from bulk_update.pipeline import load, plan

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = load_config(None, cwd=tmp_path)
    assert settings.base_url == "https://api.comeet.co"
    assert settings.rate == Rate(100, 60.0)
    assert settings.concurrency == 4
    assert settings.max_attempts == 6
    assert settings.token_ttl_s == 600
    assert settings.stop_after_rejected == 20
    assert settings.updated_by == {}


def test_reads_bulk_update_toml_from_the_working_folder(tmp_path: Path) -> None:
    (tmp_path / "bulk_update.toml").write_text('[limits]\nrate = "20/1"\n')
    assert load_config(None, cwd=tmp_path).rate == Rate(20, 1.0)


EXAMPLE = ROOT / "config.example.toml"
#: A value commented out: `# key = value`, a `[columns]` header quoted (prose has no ` = `).
_COMMENTED_VALUE = re.compile(r'^# ((?:[a-z_]+|"[^"]+") = .*)$', re.MULTILINE)


def uncommented(text: str) -> str:
    """The example with every value commented out taken in, as a user would edit it."""
    return _COMMENTED_VALUE.sub(r"\1", text)


def schema_keys(model: type[BaseModel] = _File, prefix: str = "") -> set[str]:
    """Every key the file may have, dotted (`[columns]`, whose keys are free, as one)."""
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            keys |= schema_keys(kind, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def keys_of(data: Mapping[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in data.items():
        if isinstance(value, dict) and name != "columns":
            keys |= keys_of(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_example_config_documents_every_key_with_a_valid_value() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    data = tomllib.loads(uncommented(text))
    # every key the schema knows appears in the example, and nothing else
    assert keys_of(data) == schema_keys()
    assert len(_COMMENTED_VALUE.findall(text)) == len(keys_of(data)) + 1  # 2 [columns]
    settings = parse_config(data)
    assert settings.updated_by == {
        "type": "app",
        "name": "Spreadsheet sync",
        "email": "ops@example.com",
    }
    assert settings.columns == {"Candidate UID": "uid", "Team": "custom_fields.Team"}
    assert settings.sheet == "Candidates"
    assert settings.ignore_columns == ("Internal notes",)
    assert settings.hidden == "skip"
    assert settings.encoding == "cp1255"
    assert settings.public_url == "https://bulk.example.com"
    # the values marked "default" are the defaults
    section = ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line
        elif line.startswith("# ") and line.endswith("# default"):
            one = tomllib.loads(f"{section}\n{line[2:]}")
            assert parse_config(one) == Settings(), line


def test_example_config_as_it_is_holds_no_value() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    empty = {
        **{"api": {}, "limits": {}, "defaults": {"updated_by": {}}, "columns": {}},
        **{"input": {}, "journal": {}, "web": {}, "run": {}},
    }
    assert data == empty
    assert parse_config(data) == Settings()


def test_a_copy_of_the_example_changes_no_patch_of_the_demo_sheet(tmp_path: Path) -> None:
    (tmp_path / "bulk_update.toml").write_bytes(EXAMPLE.read_bytes())
    copied = load_config(None, cwd=tmp_path)
    assert copied.config_path == tmp_path.resolve() / "bulk_update.toml"
    assert copied == Settings()
    sheet = ROOT / "sample_data" / "candidates.csv"
    with_copy = plan(load(sheet, copied), copied)
    without = plan(load(sheet, Settings()), Settings())
    assert len(with_copy.patches) > 20
    assert [(p.row, p.uid, p.body) for p in with_copy.patches] == [
        (p.row, p.uid, p.body) for p in without.patches
    ]
    assert with_copy.rows == without.rows


def test_every_problem_is_reported_at_once_naming_the_key() -> None:
    data = {
        "api": {"base_url": "https://api.comeet.co", "timeout": 5},
        "limits": {"concurrency": "four", "max_attempts": 0},
        "defaults": {"updated_by": {"type": "robot"}},
        "colums": {},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    text = str(info.value)
    assert "api.timeout: unknown key" in text
    assert "limits.concurrency" in text
    assert "limits.max_attempts" in text
    assert "defaults.updated_by.type" in text
    assert "colums: unknown key" in text
    assert "Fix:" in text


def test_stop_after_rejected_is_read_and_must_not_be_negative() -> None:
    assert parse_config({"limits": {"stop_after_rejected": 0}}).stop_after_rejected == 0
    assert parse_config({"limits": {"stop_after_rejected": 5}}).stop_after_rejected == 5
    with pytest.raises(ConfigError, match=r"limits\.stop_after_rejected"):
        parse_config({"limits": {"stop_after_rejected": -1}})
    with pytest.raises(ConfigError, match="stop_after_rejected must be 0"):
        Settings().with_overrides(stop_after_rejected=-3)


def test_the_safety_nets_switches_are_read_from_run() -> None:
    assert (Settings().backup, Settings().compare, Settings().resolve_ids) == (False,) * 3
    got = parse_config({"run": {"backup": True, "compare": True, "resolve_ids": True}})
    assert (got.backup, got.compare, got.resolve_ids) == (True, True, True)
    assert parse_config({"run": {"compare": True}}).backup is False
    with pytest.raises(ConfigError, match=r"run\.backup"):
        parse_config({"run": {"backup": "yes"}})  # a switch is true or false, never text
    with pytest.raises(ConfigError, match=r"run\.undo"):
        parse_config({"run": {"undo": True}})


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://api.comeet.co", True),
        ("http://127.0.0.1:8765", True),
        ("http://localhost:1", True),
        ("http://[::1]:8080", True),
        ("http://api.comeet.co", False),
        ("ftp://api.comeet.co", False),
        ("api.comeet.co", False),
    ],
)
def test_base_url_https_only_except_loopback(url: str, ok: bool) -> None:
    if ok:
        assert parse_config({"api": {"base_url": url}}).base_url == url
    else:
        with pytest.raises(ConfigError, match=r"api\.base_url"):
            parse_config({"api": {"base_url": url}})


def test_bad_rate_is_named() -> None:
    with pytest.raises(ConfigError, match=r"limits\.rate '100 per minute'"):
        parse_config({"limits": {"rate": "100 per minute"}})


def test_overrides_win_and_are_checked() -> None:
    settings = Settings().with_overrides(rate="5/2", concurrency=8, base_url=None)
    assert settings.rate == Rate(5, 2.0)
    assert settings.concurrency == 8
    assert settings.base_url == "https://api.comeet.co"
    with pytest.raises(ConfigError):
        Settings().with_overrides(base_url="http://example.com")
    with pytest.raises(ConfigError):
        Settings().with_overrides(concurrency=0)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[api\nbase_url = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_state_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "bulk-update"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_state_dir().parts[-3:] == (".local", "state", "bulk-update")


_AS_ON = """
import importlib, sys
import platformdirs
from bulk_update.config import default_state_dir
sys.platform = {platform!r}  # as platformdirs sees it when it picks a system's rules
if sys.platform == "win32":
    sys.modules["ctypes"] = None  # no Windows API here: platformdirs reads LOCALAPPDATA
    sys.modules["winreg"] = None
importlib.reload(platformdirs)
print(default_state_dir())
"""


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("darwin", "{home}/Library/Application Support/bulk-update"),
        ("win32", "{local}/bulk-update"),
        ("linux", "{home}/.local/state/bulk-update"),
    ],
)
def test_state_dir_follows_each_systems_convention(
    tmp_path: Path, platform: str, expected: str
) -> None:
    home, local = tmp_path / "home", tmp_path / "AppData" / "Local"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env.update(HOME=str(home), LOCALAPPDATA=str(local), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", _AS_ON.format(platform=platform)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    # Windows' separator is its own; the folder is what matters.
    shown = done.stdout.strip().replace("\\", "/")
    assert shown == expected.format(home=home, local=local)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("100/60", Rate(100, 60.0)), ("20/1", Rate(20, 1.0)), (" 5 / 0.5 ", Rate(5, 0.5))],
)
def test_rate_parse(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["0/60", "100/0", "100", "a/b", "-1/5", "100/60/2"])
def test_rate_parse_refuses(text: str) -> None:
    with pytest.raises(ConfigError):
        Rate.parse(text)
