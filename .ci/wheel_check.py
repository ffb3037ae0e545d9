"""The installed wheel, from a folder outside the clone: the sandbox demo and the page.

Run by .ci/run with the wheel's own venv: `python .ci/wheel_check.py SAMPLE_SHEET`.
"""

from __future__ import annotations

import importlib.resources
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

here = Path.cwd()
sheet = Path(sys.argv[1])
bulk_update = Path(sys.executable).parent / "bulk-update"

package = importlib.resources.files("bulk_update")
assert str(package).startswith(sys.prefix), f"bulk_update imported from {package}, not the venv"
assert (package / "py.typed").is_file(), "the wheel ships no py.typed"

# The demo: the sample sheet against the in-process sandbox. The sheet holds 8 rows with
# problems on purpose, so the run finishes with exit 1 and a report.
report = here / "demo.results.xlsx"
run = subprocess.run(
    [bulk_update, "run", sheet, "--sandbox", "--report", report, "--state-dir", here / "state"],
    capture_output=True,
    text=True,
    timeout=300,
)
assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
assert report.is_file() and "updated" in run.stdout, run.stdout
print(run.stdout.strip().splitlines()[-1])

# The page: `serve --sandbox` answers on loopback.
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
server = subprocess.Popen(
    [bulk_update, "serve", "--sandbox", "--port", str(port), "--state-dir", here / "state"],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
)
try:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                page = answer.read().decode("utf-8")
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve --sandbox did not answer: {server.stderr}") from None
            time.sleep(0.3)
    assert "Bulk update" in page, page[:500]
    print(f"serve --sandbox answered on port {port}")
finally:
    server.terminate()
    server.wait(timeout=30)
