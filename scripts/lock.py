"""Write requirements/runtime.lock, dev.lock and encoder.lock with pip's own resolver.

    python scripts/lock.py                       # re-resolve, keeping today's pins where they still fit
    python scripts/lock.py --upgrade             # re-resolve from scratch: newest releases pyproject allows
    python scripts/lock.py --upgrade-package X   # only X (and what it drags) may move
    python scripts/lock.py --check               # resolve, compare with the files, write nothing

`make lock` runs the first form with the project's venv. Nothing is installed: each lock is the
`install` list of `pip install --dry-run --ignore-installed --report` for the project (`.` for
the runtime lock, `.[dev]` for the dev lock, `.[dev,encoder-export]` for the encoder lock), run with
this machine's pip configuration (its index, find-links and global constraints). The dev lock is
resolved first; the other two are then resolved under the dev pins, so no two disagree on a version.

The runtime and dev locks must hold no torch (the shipped encoder runs on onnxruntime). The
encoder lock (`make encoder`: producing and checking the ONNX file) must hold the CPU build of
torch, 2.13.0+cpu, which pip takes from this machine's wheel directory (find-links): where the
resolver would take another torch (a CUDA build from the index), this script refuses to write
rather than lock several GB of CUDA libraries.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK_DIR = ROOT / "requirements"
RUNTIME_LOCK = LOCK_DIR / "runtime.lock"
DEV_LOCK = LOCK_DIR / "dev.lock"
ENCODER_LOCK = LOCK_DIR / "encoder.lock"
PROJECT = "ai-assets"
TORCH = "2.13.0+cpu"
# Never in the runtime or dev locks: what the ONNX encoder replaced.
TORCH_STACK = ("torch", "sentence-transformers", "transformers")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> dict[str, str]:
    """{canonical name: version} of a lock written by this script (or any `name==version` list)."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.strip()
    return pins


def read_lock(path: Path) -> dict[str, str]:
    return parse_lock(path.read_text()) if path.exists() else {}


def resolve(target: str, constraints: list[Path]) -> tuple[list[tuple[str, str]], dict]:
    """[(name, version)] pip would install for `target` into an empty environment, and the
    report's environment (python version, platform) the answer holds for."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), target]
        for c in constraints:
            cmd += ["-c", str(c)]
        # pip prints a warning per empty folder of the local index mirrors: noise, not errors.
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        if proc.returncode != 0:
            errors = "\n".join(line for line in proc.stderr.splitlines() if "is ignored: it is neither" not in line)
            sys.exit(f"pip could not resolve {target!r}:\n{errors}\n"
                     "(if an existing pin is in the way, re-run with --upgrade or --upgrade-package NAME)")
        data = json.loads(report.read_text())
    pins = [(item["metadata"]["name"], item["metadata"]["version"]) for item in data["install"]
            if canonical(item["metadata"]["name"]) != PROJECT]
    return sorted(pins, key=lambda p: canonical(p[0])), data["environment"]


def pip_version() -> str:
    out = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


LOCKS = {  # target → (lock file, what it is, how to use it)
    ".": (RUNTIME_LOCK, "Runtime dependencies of ai_assets", "pip install -c requirements/runtime.lock ."),
    ".[dev]": (DEV_LOCK, "Runtime + dev dependencies of ai_assets (the [dev] extra)",
               "pip install -c requirements/dev.lock -e '.[dev]'"),
    ".[dev,encoder-export]": (ENCODER_LOCK, "Runtime + dev + encoder-export dependencies of ai_assets "
                              "(producing the ONNX encoder, its torch baseline: make encoder)",
                              "pip install -c requirements/encoder.lock -e '.[dev,encoder-export]'"),
}


def render(pins: list[tuple[str, str]], target: str, env: dict) -> str:
    _, what, use = LOCKS[target]
    how = ("the previous dev lock's pins passed as constraints (-c) where they still fit; --upgrade: none"
           if target == ".[dev]" else "resolved under the dev lock's pins (-c), so the locks agree on every version")
    torch_note = (f"""# torch=={TORCH} is the CPU build, which pip takes from this machine's wheel directory
# (find-links); elsewhere add --extra-index-url https://download.pytorch.org/whl/cpu.
""" if target == ".[dev,encoder-export]" else "# No torch: the local model's encoder runs on onnxruntime.\n")
    header = f"""\
# {what}, pinned with ==.
# Generated by scripts/lock.py, not by pip freeze: do not edit by hand.
# Produced by pip's own resolver (pip {pip_version()}), installing nothing:
#   pip install --dry-run --ignore-installed --quiet --report <file> '{target}'
# with this machine's pip configuration (index, find-links, global constraints),
# {how}.
# Resolved for CPython {env["python_version"]} on {env["sys_platform"]} {env["platform_machine"]}.
{torch_note}# Regenerate: make lock   (python scripts/lock.py [--upgrade | --upgrade-package NAME | --check])
# Use: {use}
"""
    return header + "".join(f"{name}=={version}\n" for name, version in pins)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upgrade", action="store_true", help="ignore today's pins, take the newest allowed")
    parser.add_argument("--upgrade-package", action="append", default=[], metavar="NAME",
                        help="let this package move (repeatable); the other pins stay")
    parser.add_argument("--check", action="store_true", help="exit 1 if the lock files would change; write nothing")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        constraints: list[Path] = []
        kept = {} if args.upgrade else read_lock(DEV_LOCK)
        for name in args.upgrade_package:
            kept.pop(canonical(name), None)
        if kept:
            previous = Path(tmp) / "previous.txt"
            previous.write_text("".join(f"{n}=={v}\n" for n, v in kept.items()))
            constraints.append(previous)

        dev, env = resolve(".[dev]", constraints)
        dev_pins = Path(tmp) / "dev-pins.txt"
        dev_pins.write_text("".join(f"{n}=={v}\n" for n, v in dev))
        runtime, _ = resolve(".", [dev_pins])
        encoder_kept = Path(tmp) / "encoder-previous.txt"
        previous_encoder = {} if args.upgrade else read_lock(ENCODER_LOCK)
        moving = {canonical(n) for n in args.upgrade_package}
        encoder_kept.write_text("".join(f"{n}=={v}\n" for n, v in previous_encoder.items() if n not in moving))
        encoder, _ = resolve(".[dev,encoder-export]", [dev_pins, encoder_kept])

    resolved = {".": runtime, ".[dev]": dev, ".[dev,encoder-export]": encoder}
    for target, pins in resolved.items():
        names = {canonical(n): v for n, v in pins}
        if target == ".[dev,encoder-export]":
            if names.get("torch") != TORCH:
                sys.exit(f"the encoder resolution took torch {names.get('torch')}, not {TORCH}: is the CPU wheel "
                         "in pip's find-links? Not writing a lock with a CUDA torch.")
        elif any(name in names for name in TORCH_STACK):
            sys.exit(f"the {target!r} resolution took {[n for n in TORCH_STACK if n in names]}: the runtime "
                     "must not need torch")

    dev_map = dict(dev)
    for pins in (runtime, encoder):
        assert all(dev_map.get(n, v) == v for n, v in pins), "a lock disagrees with the dev pins"

    outputs = {LOCKS[target][0]: render(pins, target, env) for target, pins in resolved.items()}
    changed = [path for path, text in outputs.items() if read_lock(path) != parse_lock(text)]
    if args.check:
        for path in changed:
            print(f"{path.relative_to(ROOT)} is out of date: run `make lock`", file=sys.stderr)
        stale = [str(p.relative_to(ROOT)) for p in changed]
        print(json.dumps({"runtime": len(runtime), "dev": len(dev), "encoder": len(encoder), "out_of_date": stale}))
        sys.exit(1 if changed else 0)
    LOCK_DIR.mkdir(exist_ok=True)
    for path, text in outputs.items():
        if path in changed or not path.exists():
            path.write_text(text)
    written = [str(p.relative_to(ROOT)) for p in changed]
    print(json.dumps({"runtime": len(runtime), "dev": len(dev), "encoder": len(encoder), "written": written}))


if __name__ == "__main__":
    main()
