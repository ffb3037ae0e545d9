"""TOML configuration -> one frozen, validated `Settings`; every problem reported at once.

Precedence: built-in defaults < the TOML file (`--config FILE`, else `./bulk_update.toml`
when present) < command-line flags. Unknown keys and wrong types are errors naming the key.
"""

from __future__ import annotations

import codecs
import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError
from .models import HIDDEN_CHOICES, Rate
from .network import ca_bundle_problem, proxy_problem

DEFAULT_BASE_URL = "https://api.comeet.co"
DEFAULT_CONFIG_NAME = "bulk_update.toml"
DEFAULT_RATE = Rate(100, 60.0)  # Comeet's documented limit


def default_state_dir() -> Path:
    """Where the journal lives by default, by each system's convention (platformdirs):
    `$XDG_STATE_HOME/bulk-update` (else `~/.local/state/bulk-update`) on Linux,
    `~/Library/Application Support/bulk-update` on macOS, `%LOCALAPPDATA%\\bulk-update` on
    Windows."""
    return Path(platformdirs.user_state_dir("bulk-update", appauthor=False))


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run needs to know besides the sheet and the credentials."""

    base_url: str = DEFAULT_BASE_URL
    timeout_s: float = 30.0
    token_ttl_s: float = 600.0
    #: `[api] proxy`: every request through this proxy; None: the environment's
    #: HTTPS_PROXY / HTTP_PROXY / NO_PROXY. Never shown whole: it may hold a password.
    proxy: str | None = field(default=None, repr=False)
    #: `[api] ca_bundle`: a CA file (PEM) trusted beside the system's; None: the system's.
    ca_bundle: Path | None = None
    #: Ignore every proxy (the in-process sandbox: no proxy could reach it).
    direct: bool = False
    rate: Rate = DEFAULT_RATE
    concurrency: int = 4
    max_attempts: int = 6
    retry_base_s: float = 0.5
    retry_max_s: float = 30.0
    #: `[limits] stop_after_rejected`: the brake (brake.py); this many rows in a row
    #: refused with the same 4xx error stop the run. 0: never.
    stop_after_rejected: int = 20
    #: `--backup`: read each candidate before its patch and keep what it replaces (undo
    #: sheet; contract section 11): two requests a row, which the dry run's estimate counts.
    backup: bool = False
    updated_by: Mapping[str, str] = field(default_factory=dict)
    columns: Mapping[str, str] = field(default_factory=dict)
    sheet: str | None = None
    ignore_columns: tuple[str, ...] = ()
    #: A CSV's encoding where the file does not say (`--encoding`, `[input] encoding`).
    encoding: str | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    #: What a real run does with an XLSX's hidden rows and columns: "send", "skip", or
    #: None (not said: such a sheet stops the run before sending).
    hidden: str | None = None
    #: `[journal] scope`: a name for the Comeet company, when one machine serves several
    #: on one base URL (each then has its own journal); None: the base URL alone.
    journal_scope: str | None = None
    #: `--compare`: read every row to send first and leave out what Comeet holds already
    #: (contract section 11); a dry run then previews against live data.
    compare: bool = False
    #: `--resolve-ids`: a uid cell of digits alone (the number in Comeet's web page address)
    #: is looked up with `IDENTIFIER_TYPE: REAL_ID` and the row sent to the uid it carries.
    resolve_ids: bool = False
    #: `[web] public_url` / `serve --public-url`: the page's address behind a reverse proxy
    #: (`scheme://host[:port]`, as `public_url` gives it), None: loopback only.
    public_url: str | None = None
    #: The config file these settings were read from (absolute), None for the defaults.
    #: Where they came from, not what they are: equality leaves it out.
    config_path: Path | None = field(default=None, compare=False)

    @property
    def config_said(self) -> str:
        """`config: <path>` or `config: none (defaults)`, as every run says it."""
        return f"config: {self.config_path or 'none (defaults)'}"

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given (non-None) values replaced and checked again."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        if isinstance(changes.get("rate"), str):
            changes["rate"] = Rate.parse(changes["rate"])
        if "encoding" in changes:
            changes["encoding"] = _codec(changes["encoding"], "--encoding")
        if "public_url" in changes:
            changes["public_url"] = public_url(changes["public_url"], "--public-url")
        updated = replace(self, **changes)
        _check(updated)
        return updated


# --- the file's schema --------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Api(_Section):
    base_url: str = DEFAULT_BASE_URL
    timeout_s: float = Field(default=30.0, gt=0)
    token_ttl_s: float = Field(default=600.0, ge=2)
    proxy: str | None = None
    ca_bundle: str | None = None


class _Limits(_Section):
    rate: str = "100/60"
    concurrency: int = Field(default=4, ge=1, le=256)
    max_attempts: int = Field(default=6, ge=1, le=100)
    retry_base_s: float = Field(default=0.5, ge=0)
    retry_max_s: float = Field(default=30.0, ge=0)
    stop_after_rejected: int = Field(default=20, ge=0)


class _UpdatedBy(_Section):
    type: Literal["user", "source_contact", "other", "app"] | None = None
    name: str | None = None
    email: str | None = None


class _Defaults(_Section):
    updated_by: _UpdatedBy = _UpdatedBy()


class _Input(_Section):
    sheet: str | None = None
    ignore_columns: list[str] = []
    hidden: Literal["send", "skip"] | None = None
    encoding: str | None = None


#: A `[journal] scope` name: short, plain, the same however it is typed or printed.
JOURNAL_SCOPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class _Journal(_Section):
    scope: str | None = None


class _Web(_Section):
    public_url: str | None = None


class _Run(_Section):
    """`[run]`: the safety net's switches, as the command line's flags (contract section 11)."""

    backup: bool = False
    compare: bool = False
    resolve_ids: bool = False


class _File(_Section):
    api: _Api = _Api()
    limits: _Limits = _Limits()
    defaults: _Defaults = _Defaults()
    columns: dict[str, str] = {}
    input: _Input = _Input()
    journal: _Journal = _Journal()
    web: _Web = _Web()
    run: _Run = _Run()


def _key(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if not str(p).startswith(("literal[", "function-"))]
    head = ".".join(parts[:-1])
    last = parts[-1] if parts else ""
    if "." in last or " " in last:  # a [columns] header: quote it as TOML would
        last = f'"{last}"'
    return f"{head}.{last}" if head else last


def _codec(name: str, where: str) -> str:
    """Python's name of the text encoding `name` (`Windows-1255` -> `cp1255`)."""
    try:
        b"a".decode(name, "replace")  # refuses codecs that are not text encodings (base64)
        return codecs.lookup(name).name
    except LookupError:
        raise ConfigError(
            f"{where} '{name}' is not an encoding Python knows",
            fix="use a name such as cp1255, cp1253, cp1251, cp1252, shift_jis or gb18030",
        ) from None


def public_url(url: str, where: str) -> str:
    """The page's public address as `scheme://host[:port]` (lower case, no trailing `/`).

    Only an address: a path would need the page to know its prefix, which it does not.
    """
    parts = urlsplit(url.strip())
    try:
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError:
        parts = urlsplit("")
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where} '{url}' is not an http(s) URL",
            fix="give the address people open in the browser, like https://bulk.example.com",
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigError(
            f"{where} '{url}' must be an address alone, without a path, query or user",
            fix="give the address people open in the browser, like https://bulk.example.com "
            "(the page must be at the root of its address)",
        )
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _check(settings: Settings) -> None:
    problems = _base_url_problems(settings.base_url)
    if settings.concurrency < 1:
        problems.append("concurrency must be at least 1")
    if settings.max_attempts < 1:
        problems.append("max_attempts must be at least 1")
    if settings.stop_after_rejected < 0:
        problems.append("stop_after_rejected must be 0 (never stop) or more")
    if settings.hidden not in (None, *HIDDEN_CHOICES):
        problems.append(f"input.hidden '{settings.hidden}' must be send or skip")
    if settings.proxy is not None and (problem := proxy_problem(settings.proxy)):
        problems.append(problem)
    if settings.ca_bundle is not None and (problem := ca_bundle_problem(settings.ca_bundle)):
        problems.append(problem)
    if problems:
        raise ConfigError("; ".join(problems), fix="correct the value and run again")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _base_url_problems(url: str) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"api.base_url '{url}' is not an http(s) URL"]
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return [f"api.base_url '{url}' must use https (plain http only for 127.0.0.1/localhost)"]
    return []


def _checked(
    value: str | None, check: Callable[[str, str], str], key: str, problems: list[str]
) -> str | None:
    """`check(value, key)` (the value as the settings keep it), or `value` with the check's
    ConfigError added to `problems`, so that every problem of the file is said at once."""
    if value is None:
        return None
    try:
        return check(value, key)
    except ConfigError as exc:
        problems.append(exc.message)
        return value


def parse_config(
    data: Mapping[str, Any], *, source: str = "config", folder: Path | None = None
) -> Settings:
    """Validate a parsed TOML document into Settings, reporting every problem at once.

    A relative `[api] ca_bundle` is taken from `folder` (the config file's), else the
    current folder.
    """
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = _key(err["loc"])
            if err["type"] == "extra_forbidden":
                lines.append(f"{key}: unknown key")
            else:
                lines.append(f"{key}: {err['msg']}")
        raise ConfigError(
            f"{source} has problems:\n  " + "\n  ".join(dict.fromkeys(lines)),
            fix="see config.example.toml for every key and its type",
        ) from None
    problems = _base_url_problems(parsed.api.base_url)
    try:
        rate = Rate.parse(parsed.limits.rate)
    except ConfigError:
        problems.append(f"limits.rate '{parsed.limits.rate}' is not of the form N/SECONDS")
        rate = Rate(100, 60.0)
    updated_by = {k: v for k, v in parsed.defaults.updated_by.model_dump().items() if v}
    encoding = _checked(parsed.input.encoding, _codec, "input.encoding", problems)
    proxy = parsed.api.proxy
    if proxy is not None and (problem := proxy_problem(proxy)):
        problems.append(problem)
    ca_bundle = None
    if parsed.api.ca_bundle is not None:
        ca_bundle = Path(parsed.api.ca_bundle).expanduser()
        if folder is not None and not ca_bundle.is_absolute():
            ca_bundle = folder / ca_bundle
        # The file itself is checked with the other settings (`with_overrides`), before a
        # run: the example's value is a path no machine need have.
    scope = parsed.journal.scope
    if scope is not None and not JOURNAL_SCOPE.fullmatch(scope):
        problems.append(
            f"journal.scope '{scope}' must be 1 to 64 letters, digits, '.', '_' or '-'"
            " (starting with a letter or digit)"
        )
    site = _checked(parsed.web.public_url, public_url, "web.public_url", problems)
    if problems:
        raise ConfigError(
            f"{source} has problems:\n  " + "\n  ".join(problems),
            fix="see config.example.toml for every key and its type",
        )
    return Settings(
        base_url=parsed.api.base_url,
        timeout_s=parsed.api.timeout_s,
        token_ttl_s=parsed.api.token_ttl_s,
        proxy=proxy,
        ca_bundle=ca_bundle,
        rate=rate,
        concurrency=parsed.limits.concurrency,
        max_attempts=parsed.limits.max_attempts,
        retry_base_s=parsed.limits.retry_base_s,
        retry_max_s=parsed.limits.retry_max_s,
        stop_after_rejected=parsed.limits.stop_after_rejected,
        backup=parsed.run.backup,
        compare=parsed.run.compare,
        resolve_ids=parsed.run.resolve_ids,
        updated_by=updated_by,
        columns=dict(parsed.columns),
        sheet=parsed.input.sheet,
        ignore_columns=tuple(parsed.input.ignore_columns),
        hidden=parsed.input.hidden,
        encoding=encoding,
        journal_scope=scope,
        public_url=site,
    )


def load_config(path: Path | None = None, *, cwd: Path | None = None) -> Settings:
    """Read `path`, else `./bulk_update.toml` if present, else return the defaults."""
    if path is None:
        candidate = (cwd or Path.cwd()) / DEFAULT_CONFIG_NAME
        if not candidate.is_file():
            return Settings()
        path = candidate
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"config file '{path}' does not exist", fix="check the --config path"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"config file '{path}' cannot be read: {exc.strerror}", fix="check its permissions"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"config file '{path}' is not valid TOML: {exc}",
            fix="compare it with config.example.toml",
        ) from None
    settings = parse_config(data, source=f"config file '{path.name}'", folder=path.parent)
    return replace(settings, config_path=path.resolve())
