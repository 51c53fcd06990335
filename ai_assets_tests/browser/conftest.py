"""A real `dagster dev` on the workspace, in a throwaway DAGSTER_HOME and data directory, and a
headless Chromium page (Debian's chromium through Playwright; no browser download).

The server's process group is always killed at the end, whatever the test did.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ai_assets_tests.conftest import REPO_ROOT, require_chromium

BIN = Path(sys.executable).parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SERVER_START_TIMEOUT_S = 120
REPOSITORY = {"repositoryLocationName": "ai_assets", "repositoryName": "__repository__"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DagsterDev:
    """A running `dagster dev`: its URL, its instance and data directories, and a GraphQL client."""

    url: str
    home: Path
    data_dir: Path
    log: Path
    env: dict[str, str] = field(repr=False)
    process: subprocess.Popen = field(repr=False)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            out = json.loads(response.read())
        if out.get("errors"):
            raise AssertionError(f"GraphQL errors: {out['errors']}")
        return out["data"]

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def assert_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")

    def cli(self, *args: str) -> str:
        """Run the project's `ai-assets` command against this server's data directory."""
        done = subprocess.run([str(BIN / "ai-assets"), *args], cwd=REPO_ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"ai-assets {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout


def _wait_until_serving(server: DagsterDev) -> None:
    """The webserver answers and the ai_assets code location has loaded without error."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        server.assert_alive()
        try:
            with urllib.request.urlopen(f"{server.url}/server_info", timeout=5) as response:
                response.read()
            entries = server.graphql(
                "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus"
                " locationOrLoadError { __typename ... on PythonError { message } } } } } }"
            )["workspaceOrError"]["locationEntries"]
            last = json.dumps(entries)
            loaded = [e for e in entries if e["name"] == "ai_assets" and e["loadStatus"] == "LOADED"]
            if loaded:
                if loaded[0]["locationOrLoadError"]["__typename"] == "PythonError":
                    raise AssertionError(f"code location failed to load: {last}")
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise AssertionError(f"dagster dev did not serve within {SERVER_START_TIMEOUT_S}s ({last}):\n"
                         f"{server.log_tail()}")


def _stop(process: subprocess.Popen) -> None:
    """Ask `dagster dev` to shut down like Ctrl-C does, then kill its whole process group
    (webserver, daemon, code servers and any run workers) so nothing outlives the test."""
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)


@pytest.fixture
def dagster_dev(tmp_path: Path) -> Iterator[DagsterDev]:
    home, data_dir = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    data_dir.mkdir()
    # The project's instance config: SQLite storage, telemetry and the first-visit dialog off.
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items()
           if k not in ("AI_ASSETS_LANDING_DIR", "AI_ASSETS_STORAGE_DIR", "DAGSTER_HOME")}
    env.update({
        "DAGSTER_HOME": str(home),
        "AI_ASSETS_DATA_DIR": str(data_dir),
        "GX_ANALYTICS_ENABLED": "false",
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
    })
    port = free_port()
    log = tmp_path / "dagster_dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-p", str(port), "-h", "127.0.0.1"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = DagsterDev(f"http://127.0.0.1:{port}", home, data_dir, log, env, process)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        _stop(process)


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the test saves a screenshot of each step (kept by pytest under its basetemp)."""
    folder = Path(os.environ.get("AI_ASSETS_SCREENSHOT_DIR", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_page(screenshots: Path):
    chromium = require_chromium()
    from playwright.sync_api import expect, sync_playwright

    # Assertions wait as long as actions do: on a loaded 2-core machine a UI change that goes
    # through the server (a sensor toggled by a GraphQL mutation) has taken more than
    # expect's 5 s default.
    expect.set_options(timeout=30_000)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.set_default_navigation_timeout(60_000)
            # A first visit may open "Join the Dagster community": skip it whenever it shows.
            page.add_locator_handler(page.get_by_role("button", name="Skip", exact=True),
                                     lambda skip: skip.click())
            yield page
            try:
                page.screenshot(path=str(screenshots / "zz_last.png"), full_page=True)
            except Exception:  # noqa: BLE001 - a failed last screenshot must not hide the result
                pass
        finally:
            browser.close()
