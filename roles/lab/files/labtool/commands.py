"""Running a command (``ip -batch``, ``ip -j``) and writing a file only when its content changed.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from labtool.errors import LabError


def run(argv: list[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv[:6])} failed (rc={proc.returncode}): {proc.stderr.strip()}",
                       argv=argv, stdin=stdin, stderr=proc.stderr)
    return proc


def ip_batch(commands: list[str], *, netns: str | None = None, check: bool = True) -> str:
    """Run `ip [-n NS] -batch -` with the commands, one per line; returns stdout."""
    if not commands:
        return ""
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-batch", "-"]
    return run(argv, stdin="\n".join(commands) + "\n", check=check).stdout


def ip_json(args: list[str], *, netns: str | None = None) -> list[dict]:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-j"] + args
    proc = run(argv, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    return json.loads(proc.stdout)


def write_if_changed(path: Path, content: str, *, mode: int = 0o644) -> bool:
    try:
        if path.read_text() == content and (path.stat().st_mode & 0o777) == mode:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]
