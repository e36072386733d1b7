"""Every runnable example of the guides in docs/docsite/rst runs here, against real lab hosts.

The guides are the single source: nothing is copied out of them by hand. A guide marks its
runnable parts with RST comments (invisible in the built site) right before a code block:

    .. doc-example: file site.yml          the block is written to site.yml (any relative path)
    .. doc-example: run                    each ``$ `` line of the block is run; all must succeed
    .. doc-example: run, fails             the block's commands must fail (a rollout that rolls back)

The blocks of one guide are taken in document order. Files are written into a fresh directory
that looks like the repository root (``playbooks``, ``examples``, ``roles`` ... are symlinks,
``build/bpf`` holds the objects of ``make bpf``, ``build/lab`` is the test's lab), and each
command runs there with bash, in the environment the Makefile gives Ansible. The only rewrite is
the lab's host names: the guides say ``ebpfd-h1`` as ``make lab-up`` names them; the test's lab
has a random prefix so that it cannot collide with ``make lab-up`` or another test run.

One 5-host lab serves every guide; the molecule guide's scenario brings up its own 2-host lab (that
is what it documents) and runs in the background while the other guides run.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.lab import labctl

REPO = Path(__file__).resolve().parents[2]

RST_DIR = REPO / "docs" / "docsite" / "rst"
BPF_DIR = Path(os.environ.get("EBPF_DEPLOY_BPF_DIR", REPO / "build" / "bpf"))
GUIDES = ("getting_started", "own_hosts", "canary_rollout", "troubleshooting")   # in this order on one lab
MOLECULE_GUIDE = "molecule"
LAB_HOSTS = 5

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="lab hosts need root")

_MARKER = re.compile(r"^\.\. doc-example: (?P<what>file (?P<path>\S+)|run(?P<fails>, fails)?)\s*$")
_BLOCK = re.compile(r"^\.\. code-block:: (?P<lang>\S+)\s*$")


# --- reading the guides ------------------------------------------------------------------------

@dataclass
class Step:
    kind: str                 # "file" or "run"
    line: int                 # where the marker is in the guide
    text: str                 # the block's content, dedented
    path: str = ""            # for files
    fails: bool = False       # for runs
    commands: list[str] = field(default_factory=list)


def _block_after(lines: list[str], start: int) -> tuple[str, int]:
    """The content of the first code block at or after line `start` (index) and the index after it."""
    i = start
    while i < len(lines) and not _BLOCK.match(lines[i]):
        if lines[i].strip() and not lines[i].startswith(".. "):
            raise AssertionError(f"line {i + 1}: a doc-example marker must be followed by a code-block")
        i += 1
    if i == len(lines):
        raise AssertionError(f"line {start}: doc-example marker without a code-block")
    i += 1
    while i < len(lines) and (not lines[i].strip() or lines[i].strip().startswith(":")):
        i += 1   # the directive's options (:caption: ...) and the blank line after them
    body: list[str] = []
    while i < len(lines) and (lines[i].startswith("   ") or lines[i].strip() == ""):
        body.append(lines[i])
        i += 1
    while body and not body[-1].strip():
        body.pop()
    indent = min(len(b) - len(b.lstrip()) for b in body if b.strip())
    return "\n".join(b[indent:] for b in body) + "\n", i


def _commands(text: str) -> list[str]:
    """The ``$ `` lines of a console block, with backslash continuations joined."""
    commands, current = [], None
    for line in text.splitlines():
        if current is not None:
            current += "\n" + line
        elif line.startswith("$ "):
            current = line[2:]
        if current is not None and not current.endswith("\\"):
            commands.append(current)
            current = None
    return commands


def guide_steps(guide: str) -> list[Step]:
    lines = (RST_DIR / f"{guide}.rst").read_text().splitlines()
    steps = []
    for index, line in enumerate(lines):
        m = _MARKER.match(line)
        if not m:
            continue
        text, _end = _block_after(lines, index + 1)
        if m["path"]:
            steps.append(Step("file", index + 1, text, path=m["path"]))
        else:
            steps.append(Step("run", index + 1, text, fails=bool(m["fails"]), commands=_commands(text)))
            assert steps[-1].commands, f"{guide}.rst:{index + 1}: a run block without `$ ` commands"
    return steps


# --- running them --------------------------------------------------------------------------------

def workdir_for(guide: str, steps: list[Step], base: Path, lab_dir: Path | None) -> Path:
    """A directory that looks like the repository root, with the guide's files written into it."""
    work = base / guide
    work.mkdir(parents=True)
    written_tops = {Path(s.path).parts[0] for s in steps if s.kind == "file"}
    for top in ("playbooks", "examples", "roles", "molecule", "ansible.cfg"):
        if top not in written_tops:
            (work / top).symlink_to(REPO / top)
    (work / "build").mkdir()
    (work / "build" / "bpf").symlink_to(BPF_DIR)
    if lab_dir is not None:
        (work / "build" / "lab").symlink_to(lab_dir)
    return work


def run_guide(guide: str, work: Path, steps: list[Step], rename: dict[str, str], env: dict,
              timeout: float = 400) -> list[str]:
    """Write the files and run the commands in order; returns a transcript, fails on the first surprise."""
    transcript = []

    def renamed(text: str) -> str:
        for old, new in rename.items():
            text = re.sub(rf"\b{re.escape(old)}", new, text)
        return text

    for step in steps:
        where = f"{guide}.rst:{step.line}"
        if step.kind == "file":
            path = work / step.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(renamed(step.text))
            continue
        for command in step.commands:
            started = time.monotonic()
            proc = subprocess.run(["bash", "-c", renamed(command)], cwd=work, env=env, capture_output=True,
                                  text=True, timeout=timeout, check=False)
            took = time.monotonic() - started
            transcript.append(f"{where} $ {command}  -> rc={proc.returncode} ({took:.0f} s)")
            if os.environ.get("EBPF_DEPLOY_DOC_LOG"):   # keep the outputs, to paste into a guide
                log = Path(os.environ["EBPF_DEPLOY_DOC_LOG"])
                log.mkdir(parents=True, exist_ok=True)
                (log / f"{guide}-{step.line}-{len(transcript)}.out").write_text(
                    f"$ {command}\n{proc.stdout}{proc.stderr}")
            output = f"{where}: `{command}` exited {proc.returncode}\nstdout:\n{proc.stdout[-6000:]}\n" \
                     f"stderr:\n{proc.stderr[-3000:]}"
            if step.fails:
                assert proc.returncode != 0, f"expected a failure: {output}"
            else:
                assert proc.returncode == 0, output
    return transcript


def guide_env() -> dict:
    return labctl.ansible_env(EBPF_DEPLOY_BPF_DIR=str(BPF_DIR), ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")


@pytest.fixture(scope="module")
def lab():
    with labctl.running(count=LAB_HOSTS) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.mktemp("ebpfd-doc-examples")


@pytest.fixture(scope="module")
def molecule_run(base):
    """Starts the molecule guide's scenario in the background (its own lab); yields a waiter."""
    steps = guide_steps(MOLECULE_GUIDE)
    work = workdir_for(MOLECULE_GUIDE, steps, base, None)
    prefix = "ebpfd" + os.urandom(3).hex()[:5]
    env = guide_env()
    env.update(LAB_PREFIX=prefix, LAB_MGMT_NETWORK=f"10.250.{20 + int.from_bytes(os.urandom(1), 'big') % 60}.0/24")
    result: dict = {}
    import threading

    def target():
        try:
            result["transcript"] = run_guide(MOLECULE_GUIDE, work, steps, {}, env, timeout=600)
        except BaseException as exc:  # handed to the test below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()

    def wait() -> list[str]:
        thread.join(timeout=900)
        if "error" in result:
            raise result["error"]
        return result["transcript"]

    yield wait
    thread.join(timeout=900)
    lab_dirs = list(work.rglob("lab/lab.json"))
    for state in lab_dirs:   # the scenario's destroy failed: tear its lab down by its state
        labctl.run_script("down", "--lab-dir", str(state.parent), "--prefix", prefix)


# --- the tests -----------------------------------------------------------------------------------

def test_every_guide_with_examples_is_in_extra_docs():
    index = (REPO / "docs" / "docsite" / "extra-docs.yml").read_text()
    for guide in (*GUIDES, MOLECULE_GUIDE):
        assert guide_steps(guide), f"{guide}.rst has no doc-example"
        assert re.search(rf"^\s*- {guide}\s*$", index, re.M), f"{guide} missing from extra-docs.yml"


@pytest.mark.slow
def test_guides_run_against_a_lab(lab, base, molecule_run):
    rename = {"ebpfd-h": f"{lab.prefix}-h", "ebpfd-p": f"{lab.prefix}-p"}
    transcript = []
    for guide in GUIDES:
        steps = guide_steps(guide)
        work = workdir_for(guide, steps, base, lab.lab_dir)
        transcript += run_guide(guide, work, steps, rename, guide_env())
    transcript += molecule_run()
    print("\n".join(transcript))
    shutil.rmtree(base, ignore_errors=True)
