"""Secrets never leave the process: not in output, logs, reports, the journal or exceptions.

The contract (section 2) says credentials are never printed, logged, written to a report or
put into an exception message; issue 4 adds tokens, `--log-format json` and a refused
secret. Both the API key and the secret are treated as secret here, and so is any JWT.

The command line is run for real, as cron would, against the sandbox on 127.0.0.1 with
faults, and every byte it leaves behind is scanned: standard output and error, the CSV
report, every XML part of the XLSX report, and every file of the state dir.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bulk_update.auth import Credentials, TokenMinter
from bulk_update.client import ComeetClient, Kind
from bulk_update.errors import BulkUpdateError, ConfigError, CredentialsError
from bulk_update.sandbox import Faults, SandboxState, ThreadedSandbox

from .conftest import ROOT, CliResult, run_cli

#: The runs fixture makes every kind of run once per module: once, on one worker.
pytestmark = pytest.mark.xdist_group("secrets-runs")

# Long and distinctive, so that any 8 characters of them found in output mean a leak.
API_KEY = "bu-api-key-Vb3Nc8Xz1Mq6Wt4Ry9Uo2Pi7"
SECRET = "bu-partner-secret-Qx7Zr2Wv9Lm4Tn8Kp3Hs6Jd1Fg5"
WRONG_SECRET = "bu-wrong-secret-Ae5Sd2Fg8Hj4Kl1Zx7Cv3Bn6"
CREDS = {"COMEET_API_KEY": API_KEY, "COMEET_SECRET": SECRET}
# The distinctive tails: a leak of a fragment (a value cut short) is a leak too.
_CORES = [value.rsplit("-", 1)[1] for value in (API_KEY, SECRET, WRONG_SECRET)]
FRAGMENTS = sorted({core[i : i + 8] for core in _CORES for i in range(len(core) - 7)})
JWT = re.compile(rb"eyJ[A-Za-z0-9_-]+\.")

UIDS = [f"SC.{i}" for i in range(12)]
CONFIG = """\
[api]
timeout_s = 5
[limits]
rate = "1000/0.2"
concurrency = 4
max_attempts = 20
retry_base_s = 0.01
retry_max_s = 0.05
"""


def leaks(blob: bytes) -> list[str]:
    """Every secret, fragment of one, or token found in `blob`."""
    found = [f for f in FRAGMENTS if f.encode() in blob]
    found += [m.group().decode() for m in JWT.finditer(blob)]
    return found


def leaks_in(text: str) -> list[str]:
    return leaks(text.encode("utf-8"))


def test_the_scan_finds_what_it_looks_for() -> None:
    """The scanner itself: a planted secret, a cut one, a token are all found."""
    token = TokenMinter(Credentials(API_KEY, SECRET)).token()
    assert leaks(b"nothing to see") == []
    assert leaks(f"x {SECRET} y".encode())
    assert leaks(API_KEY[:-5].encode())  # cut short
    assert leaks(f"Bearer {token}".encode())
    assert leaks_in(f"message: {WRONG_SECRET}")


# --------------------------------------------------------------------------- the runs


@dataclass
class Runs:
    """What the runs printed and left behind, each blob with a label saying where it is."""

    results: dict[str, CliResult] = field(default_factory=dict)
    blobs: list[tuple[str, bytes]] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    applied: int = 0

    def cli(self, name: str, *args: str | Path, env: dict[str, str], cwd: Path) -> CliResult:
        result = run_cli(*args, env=env, cwd=cwd)
        self.results[name] = result
        self.blobs.append((f"{name}: stdout", result.out.encode()))
        self.blobs.append((f"{name}: stderr", result.err.encode()))
        return result

    def add_file(self, path: Path) -> None:
        data = path.read_bytes()
        self.blobs.append((str(path), data))
        if path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    self.blobs.append((f"{path}!{member}", archive.read(member)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    """Every kind of run once; the tests below look at what they left."""
    tmp = tmp_path_factory.mktemp("secrets")
    sheet = tmp / "cands.csv"
    lines = ["uid,first_name,phone,note"]
    lines += [f"{uid},Name {i},+972-52-555-01{i:02d},note {i}" for i, uid in enumerate(UIDS)]
    sheet.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = tmp / "bulk_update.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    state_dir = tmp / "state"
    state = SandboxState()
    for uid in UIDS:
        state.candidates[uid] = {"uid": uid, "first_name": "Old"}
    faults = Faults(error_5xx=0.2, drop=0.1, rate_429=0.1, seed=4)
    out = Runs()
    wrong = {"COMEET_API_KEY": API_KEY, "COMEET_SECRET": WRONG_SECRET}
    common = ("--config", cfg, "--state-dir", state_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("BULK_UPDATE_DEBUG", raising=False)  # the traceback-free path users get
        mp.setenv("XDG_STATE_HOME", str(tmp / "xdg"))
        with ThreadedSandbox(state, api_key=API_KEY, secret=SECRET, faults=faults) as sb:
            url = ("--base-url", sb.base_url)
            reports = {
                "ok-text": tmp / "ok.csv",
                "ok-json": tmp / "ok.xlsx",
                "refused-text": tmp / "refused.xlsx",
                "refused-json": tmp / "refused.csv",
                "dry-text": tmp / "dry.xlsx",
                "dry-json": tmp / "dry.csv",
            }
            for name, extra, env in [
                ("ok-text", (), CREDS),
                ("ok-json", ("--full", "--log-format", "json"), CREDS),
                ("refused-text", ("--full",), wrong),
                ("refused-json", ("--full", "--log-format", "json"), wrong),
                ("dry-text", ("--dry-run", "--full"), CREDS),
                ("dry-json", ("--dry-run", "--full", "--log-format", "json"), CREDS),
            ]:
                out.cli(
                    name,
                    "run",
                    sheet,
                    *common,
                    *url,
                    "--report",
                    reports[name],
                    *extra,
                    env=env,
                    cwd=tmp,
                )
        snapshot = sb.state
        out.statuses = Counter(r.status for r in snapshot.requests)
        out.applied = len(snapshot.applied)
        for fmt in ("text", "json"):
            env = {"COMEET_API_KEY": API_KEY, "COMEET_SECRET": "  \n"}  # refused: blank
            out.cli(f"refused-secret-{fmt}", "run", sheet, "--log-format", fmt, env=env, cwd=tmp)
            out.cli(
                f"history-{fmt}",
                "history",
                "--state-dir",
                state_dir,
                "--log-format",
                fmt,
                env=CREDS,
                cwd=tmp,
            )
    for path in reports.values():
        out.add_file(path)
    for path in sorted(p for p in tmp.glob("*/**/*") if p.is_file()):  # state dir, XDG
        out.add_file(path)
    yield out


def test_the_runs_did_what_they_should(runs: Runs) -> None:
    """The scan means something only if the runs sent tokens through real faults."""
    codes = {name: result.code for name, result in runs.results.items()}
    assert codes == {
        "ok-text": 0,
        "ok-json": 0,
        "refused-text": 3,
        "refused-json": 3,
        "dry-text": 0,
        "dry-json": 0,
        "refused-secret-text": 2,
        "history-text": 0,
        "refused-secret-json": 2,
        "history-json": 0,
    }, {n: r.err[-500:] for n, r in runs.results.items()}
    assert runs.statuses[200] == runs.applied == 2 * len(UIDS)  # both good runs, every row
    assert runs.statuses[401] >= 2  # the refused runs were refused by the server
    assert runs.statuses[0] and runs.statuses[429] and any(s >= 500 for s in runs.statuses)
    labels = {label for label, _ in runs.blobs}
    assert any(label.endswith("!xl/worksheets/sheet1.xml") for label in labels)
    assert any(label.endswith("journal.sqlite3") for label in labels), labels
    # The refused secret is named by its variable, never shown.
    assert "COMEET_SECRET" in runs.results["refused-secret-text"].err
    assert "COMEET_SECRET" in runs.results["refused-secret-json"].out
    assert "COMEET_SECRET" in runs.results["refused-text"].err


def test_no_secret_or_token_in_anything_a_run_leaves(runs: Runs) -> None:
    found = {label: leaks(blob) for label, blob in runs.blobs}
    assert {label: hits for label, hits in found.items() if hits} == {}


def test_no_traceback_on_any_path(runs: Runs) -> None:
    for name, result in runs.results.items():
        assert "Traceback" not in result.err + result.out, name


# --------------------------------------------------------------------------- unit level


def test_credentials_repr_and_str_hide_both_values() -> None:
    creds = Credentials(API_KEY, SECRET)
    minter = TokenMinter(creds)
    minter.token()
    for text in (repr(creds), str(creds), f"{creds}", repr(minter), str([creds, minter])):
        assert leaks_in(text) == [], text


@pytest.mark.parametrize(
    "env",
    [
        {"COMEET_API_KEY": API_KEY, "COMEET_SECRET": ""},
        {"COMEET_API_KEY": API_KEY, "COMEET_SECRET": " \t\n"},
        {"COMEET_API_KEY": "", "COMEET_SECRET": SECRET},
        {"COMEET_API_KEY": "  ", "COMEET_SECRET": SECRET},
        {"COMEET_SECRET": SECRET},
    ],
)
def test_a_refused_credential_is_named_never_shown(env: dict[str, str]) -> None:
    with pytest.raises(CredentialsError) as info:
        Credentials.from_env(env)
    error = info.value
    missing = [k for k in ("COMEET_API_KEY", "COMEET_SECRET") if not env.get(k, "").strip()]
    assert all(name in error.message for name in missing)
    for text in (str(error), repr(error), error.message, error.fix or "", str(error.args)):
        assert leaks_in(text) == [], text


def test_config_error_of_the_token_minter_holds_no_secret() -> None:
    with pytest.raises(ConfigError) as info:
        TokenMinter(Credentials(API_KEY, SECRET), ttl_s=0)
    assert isinstance(info.value, BulkUpdateError)
    assert leaks_in(str(info.value) + repr(info.value)) == []


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    """A misbehaving server on 127.0.0.1: its error bodies echo the request's headers.

    Proxies and debug pages do this; `/drop` cuts the connection instead of answering.
    """

    async def echo(request: web.Request) -> web.StreamResponse:
        if request.match_info["uid"] == "drop":
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        return web.Response(status=400, text=f"Bad request. Headers: {dict(request.headers)}")

    app = web.Application()
    app.router.add_route("PATCH", "/candidates/{uid}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_dropped_connection_is_reported_without_the_token(echo_server: str) -> None:
    async with aiohttp.ClientSession() as session:
        client = ComeetClient(
            session, echo_server, TokenMinter(Credentials(API_KEY, SECRET)), user_agent="t"
        )
        response = await client.patch("drop", {"first_name": "x"})
    assert response.kind is Kind.RETRY and response.error == "connection_error"
    assert leaks_in(f"{response} {response.message}") == []


async def test_a_connection_error_naming_the_token_is_scrubbed() -> None:
    """aiohttp names hosts, not headers; if an error ever carried the token, it is cut."""
    minter = TokenMinter(Credentials(API_KEY, SECRET), clock=lambda: 2_000_000_000.0)
    token = TokenMinter(Credentials(API_KEY, SECRET), clock=lambda: 2_000_000_000.0).token()

    class Boom:
        def patch(self, *args: object, **kwargs: object) -> object:
            raise aiohttp.ClientConnectionError(f"refused; Authorization: Bearer {token}")

    client = ComeetClient(Boom(), "http://127.0.0.1:9", minter, user_agent="t")  # type: ignore[arg-type]
    response = await client.patch("AE.1", {})
    assert response.kind is Kind.RETRY
    assert leaks_in(response.message) == []


async def test_an_error_body_echoing_the_token_does_not_reach_the_report(
    echo_server: str,
) -> None:
    async with aiohttp.ClientSession() as session:
        client = ComeetClient(
            session, echo_server, TokenMinter(Credentials(API_KEY, SECRET)), user_agent="t"
        )
        response = await client.patch("AE.1", {"first_name": "x"})
    assert response.status == 400
    assert leaks_in(f"{response.error} {response.message}") == []


# --------------------------------------------------------------------------- the env file

#: What the README's example `~/.comeet-env` is meant to hold, character for character.
README_KEY = "ak_0123456789abcdef"
README_SECRET = 's3cr$uT2 #not a comment! "quoted" \\ too'
SHELLS = [sh for sh in ("sh", "bash") if shutil.which(sh)]


def readme_env_recipe() -> tuple[str, str]:
    """The README's example env file, and the crontab line's command that loads it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    (env_file,) = re.findall(r"```sh\n(# ~/\.comeet-env\n.*?)```", text, re.DOTALL)
    (loads,) = re.findall(r"^30 2 \* \* \*  (set -a; [^;]+; set \+a;) ", text, re.MULTILINE)
    return env_file, loads


def quoted_as_the_readme_says(value: str) -> str:
    """Single quotes; a value holding one: double quotes, with \\ before " \\ $ and `."""
    if "'" not in value:
        return f"'{value}'"
    return '"' + re.sub(r'(["\\$`])', r"\\\1", value) + '"'


def sent_with(shell: str, env_file: str, secret: str, tmp_path: Path) -> CliResult:
    """Run the README's cron recipe in `shell`; the sandbox takes only `secret`'s tokens."""
    (tmp_path / ".comeet-env").write_text(env_file, encoding="utf-8")
    sheet = tmp_path / "s.csv"
    sheet.write_text("uid,first_name\nEV.1,Ann\n", encoding="utf-8")
    _, loads = readme_env_recipe()
    state = SandboxState(candidates={"EV.1": {"uid": "EV.1"}})
    with ThreadedSandbox(state, api_key=README_KEY, secret=secret) as sb:
        command = " ".join(
            shlex.quote(str(part))
            for part in (sys.executable, "-m", "bulk_update", "run", sheet, "--base-url",
                         sb.base_url, "--state-dir", tmp_path / "state", "--quiet")
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMEET_")}
        proc = subprocess.run(
            [shell, "-c", f"{loads} {command}"],
            env={**env, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert (proc.returncode == 0) == (state.applied == [("EV.1", {"first_name": "Ann"})])
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("shell", SHELLS)
def test_the_readme_env_file_recipe_keeps_every_character_of_the_secret(
    shell: str, tmp_path: Path
) -> None:
    env_file, _ = readme_env_recipe()
    assert quoted_as_the_readme_says(README_SECRET) in env_file  # the example holds it so
    result = sent_with(shell, env_file, README_SECRET, tmp_path)
    assert result.code == 0, result.err


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    "secret",
    # 32 bytes or more: HS256 keys shorter than that make PyJWT warn.
    [
        f"{s} and enough more to make 32 bytes"
        for s in ("it's $uT2", "$uT2#!x", "a 'b' \"c\" \\d `e` $(f) ${g}", "  spaces  inside")
    ],
)
def test_any_secret_quoted_as_the_readme_says_arrives_unchanged(
    shell: str, secret: str, tmp_path: Path
) -> None:
    env_file = (
        f"COMEET_API_KEY={quoted_as_the_readme_says(README_KEY)}\n"
        f"COMEET_SECRET={quoted_as_the_readme_says(secret)}\n"
    )
    # Spaces around the value are dropped (said in the README): the sandbox expects so.
    result = sent_with(shell, env_file, secret.strip(), tmp_path)
    assert result.code == 0, result.err


def test_the_old_unquoted_recipe_mangled_such_a_secret(tmp_path: Path) -> None:
    # Why the quotes: `COMEET_SECRET=s3cr$uT2 #...` is `s3cr`, and Comeet refuses its tokens.
    env_file = f"COMEET_API_KEY={README_KEY}\nCOMEET_SECRET={README_SECRET}\n"
    result = sent_with(SHELLS[0], env_file, README_SECRET, tmp_path)
    assert result.code == 3
    assert "the API refused the credentials twice (401)" in result.err
