"""A fresh, runtime-only install imports every module of ai_assets.

    python scripts/check_fresh_install.py [--keep] [--no-upgrade-pip]      (make check-install)

1. creates an empty venv in a temp dir (with the Python that runs this script),
2. `pip install -c requirements/runtime.lock .`: a non-editable install of the runtime
   dependencies only, no dev extra, with this machine's pip configuration, from a copy of the
   work tree (so the build's build/ and egg-info land in the temp dir, not in the repo),
3. from a working directory outside the repo, with `python -I` (no PYTHONPATH, no script dir,
   no user site), walks the *installed* ai_assets with pkgutil.walk_packages and imports every
   module, checking that ai_assets really came from the venv's site-packages,
4. prints a JSON summary (modules imported, failures, seconds, venv size) and exits 1 on any
   failure. A dev-only import (pytest, aiosmtpd, ai_assets_tests) in a shipped module fails here,
   and so does torch, sentence-transformers or transformers among the installed distributions,
   or a shipped encoder that cannot encode one text.

The venv is removed afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"

# Not importable on their own, skipped by name:
SKIP = {
    # Alembic's env script: it reads `alembic.context.config`, which exists only while Alembic runs
    # a migration (importing it elsewhere raises). The migrations are exercised by the tests.
    "ai_assets.ops_db.migrations.env",
}

# Runs inside the fresh venv. Prints one JSON object on its last line.
IMPORT_ALL = r"""
import importlib, json, pkgutil, sys, time, traceback
skip = set(json.loads(sys.argv[1]))
site = sys.argv[2]
t0 = time.perf_counter()
import ai_assets
imported, failures, skipped = [], {}, []
def onerror(name):
    failures[name] = "walk: " + traceback.format_exc().strip().splitlines()[-1]
# walk_packages imports each package to find its children: most of the time is spent here.
names = ["ai_assets"] + [m.name for m in pkgutil.walk_packages(ai_assets.__path__, "ai_assets.", onerror=onerror)]
for name in names:
    if name in skip:
        skipped.append(name)
        continue
    try:
        importlib.import_module(name)
    except BaseException:
        failures[name] = traceback.format_exc().strip().splitlines()[-1]
    else:
        imported.append(name)
# The shipped encoder's files came with the install: one text through the ONNX graph.
try:
    from ai_assets.serving.intent.text_encoders import default_encoder
    encoded = list(default_encoder().encode(["my card has not arrived"]).shape)
except BaseException:
    failures["encode one text"] = traceback.format_exc().strip().splitlines()[-1]
    encoded = None
print(json.dumps({
    "encoded_shape": encoded,
    "origin": ai_assets.__file__, "from_site_packages": ai_assets.__file__.startswith(site),
    "modules_found": len(names), "modules_imported": len(imported), "skipped": skipped,
    "failures": failures, "import_seconds": round(time.perf_counter() - t0, 2),
}))
"""


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, capture_output=True, **kwargs)


def du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.stat(p).st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and print its path")
    parser.add_argument("--no-upgrade-pip", action="store_true",
                        help="install with the venv's bundled pip (default: upgrade it first, as `make install` does)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ai_assets_fresh_"))
    venv, work, src = tmp / "venv", tmp / "cwd", tmp / "src"
    work.mkdir()
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache"))
    py = venv / "bin" / "python"
    # Outside the repo, so nothing resolves against the source tree; the Makefile exports these
    # into the repo's var/, which a check of the installed package must not touch.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(DAGSTER_HOME=str(tmp / "dagster_home"), AI_ASSETS_DATA_DIR=str(tmp / "data"),
               GX_ANALYTICS_ENABLED="false", HF_HUB_OFFLINE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    summary: dict = {"python": sys.version.split()[0], "lock": str(RUNTIME_LOCK.relative_to(ROOT))}
    failed_step = None
    try:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        if not args.no_upgrade_pip:
            proc = run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], cwd=work, env=env)
            if proc.returncode:
                failed_step = ("upgrade pip", proc)
        summary["pip"] = run([str(py), "-m", "pip", "--version"], env=env).stdout.split()[1]
        if not failed_step:
            proc = run([str(py), "-m", "pip", "install", "--quiet", "-c", str(RUNTIME_LOCK), str(src)],
                       cwd=work, env=env)
            if proc.returncode:
                failed_step = ("pip install", proc)
        summary["install_seconds"] = round(time.perf_counter() - t0, 1)
        if not failed_step:
            freeze = run([str(py), "-m", "pip", "list", "--format=json"], env=env).stdout
            installed = {p["name"].lower(): p["version"] for p in json.loads(freeze)}
            summary["distributions_installed"] = len(installed)
            # The local model's encoder runs on onnxruntime: a runtime install must pull no torch.
            summary["torch_stack_present"] = sorted(set(installed) & {"torch", "sentence-transformers",
                                                                      "transformers"})
            summary["dev_only_present"] = sorted(set(installed) & {"pytest", "playwright", "aiosmtpd", "ruff"})
            purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
            site = run([str(py), "-c", purelib], env=env).stdout.strip()
            proc = run([str(py), "-I", "-c", IMPORT_ALL, json.dumps(sorted(SKIP)), site], cwd=work, env=env)
            try:
                summary.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            except (IndexError, json.JSONDecodeError):
                failed_step = ("import", proc)
        summary["venv_mb"] = round(du(venv) / 2**20)
        summary["seconds"] = round(time.perf_counter() - t0, 1)
    finally:
        if args.keep:
            summary["kept"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ok = (not failed_step and not summary.get("failures") and summary.get("from_site_packages")
          and not summary.get("dev_only_present") and not summary.get("torch_stack_present"))
    if failed_step:
        step, proc = failed_step
        summary["failed_step"] = step
        summary["stderr_tail"] = proc.stderr.strip().splitlines()[-15:]
    summary["ok"] = bool(ok)
    print(json.dumps(summary, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
