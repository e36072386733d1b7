"""What the integration and fault tiers share: names, running a module, reading the host with tools
that are not the code under test, and the assertions every case makes.

* names: `unique("ebpfd_bf")` carries this session's mark (tests/session_state.py), so the session's
  clean-up removes its own leftovers and nothing of another session; `SetUpOrUndo` for what a test
  makes and must remove again;
* processes: `run_group` starts a command in its own process group and ends that group by its id when
  it overruns; `pids_with_argv` finds our own children by their arguments, `kill_pids` ends them by PID;
* modules: `ModuleRun` runs one module ad hoc through `ansible` (what a playbook user gets back), or
  several runs as the tasks of one playbook (`steps`),
  `run_module_file` runs a module file directly (the whole result, `diff` included);
* readers: `bpftool`, `map_u64`, `listing`;
* assertions: `ok`, `one_line` / `assert_one_line_failure`, `four_steps` (check → run → check → run).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Optional

from tests.lab import labctl
from tests.session_state import SESSION, STATE_DIR as RUN_DIR

REPO = Path(__file__).resolve().parents[1]
BPF_DIR = Path(os.environ.get("EBPF_DEPLOY_BPF_DIR", REPO / "build" / "bpf"))
BPFFS = Path("/sys/fs/bpf")
TEST_ROOT_PREFIX = "ebpfd_test_"   # the integration tier's pin roots (the bpffs_root fixture)
RECORD_DIR = Path("/var/lib/ebpf_deploy")   # the host record's default home
PYTHON = labctl.PYTHON                              # the venv the tests run in (labctl says which)
ANSIBLE = str(labctl.VENV_BIN / "ansible")
ANSIBLE_PLAYBOOK = str(labctl.VENV_BIN / "ansible-playbook")


# --- names ---------------------------------------------------------------------------------------
def unique(prefix: str, nbytes: int = 3) -> str:
    """`prefix` + this session's mark + random hex, e.g. ebpfd-bf-kqzt1a2b3c."""
    return f"{prefix}{SESSION}{secrets.token_hex(nbytes)}"


def record_dir(root: Path) -> Path:
    """Where the host's record of deployments under a bpffs root lives (as _record.root_id names it)."""
    return RECORD_DIR / ("root-" + hashlib.sha256(str(root).encode()).hexdigest()[:12])


def forget_deployment(name: str, root: Optional[Path] = None) -> None:
    """Remove what runs of deployment `name` leave under /run/ebpf_deploy (metadata, locks) and, for
    a bpffs `root` of the test's own, the notes kept per root."""
    shutil.rmtree(RUN_DIR / name, ignore_errors=True)
    (RUN_DIR / f"{name}.json").unlink(missing_ok=True)
    for lock in (RUN_DIR / "locks").glob(f"{name}*.lock"):
        lock.unlink(missing_ok=True)
    if root is not None:
        scope = str(root).strip("/").replace("/", "_")
        for notes in ("xdp", "attach"):
            shutil.rmtree(RUN_DIR / notes / scope, ignore_errors=True)


class SetUpOrUndo:
    """A context manager for what a test makes: `setup()` on entry, undone by `close()` when it fails
    half-way and on exit. `close()` removes whatever part of it exists."""

    def setup(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        try:
            self.setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- processes -----------------------------------------------------------------------------------
def run_group(cmd: list[str], *, env: Optional[dict] = None, timeout: float = 120, cwd=REPO,
              stdin: Optional[str] = None) -> tuple[int, str, str, bool]:
    """Run a command in its own process group; on timeout SIGKILL that group (by its id).
    Returns (rc, stdout, stderr, timed_out)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, err = proc.communicate(input=stdin, timeout=timeout)
        return proc.returncode, out, err, False
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        return -9, out, err, True


def kill_group(pgid: int) -> None:
    """SIGKILL the process group we started (its leader's pid is the group id)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def pids_with_argv(match: Callable[[list[str]], bool]) -> list[int]:
    """Processes whose argument list `match` accepts (to find children we started by their arguments)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
        if argv and match(argv):
            pids.append(int(entry.name))
    return pids


def kill_pids(pids: list[int], sig: int = signal.SIGKILL) -> None:
    """Send `sig` to each process by its PID (one that is gone already is skipped)."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


# --- running modules -----------------------------------------------------------------------------
_RESULT_LINE = re.compile(r"^(?P<host>\S+) \| (?P<status>[A-Z!]+)(?: \| rc=\d+)? => (?P<json>\{.*\})\s*$")


def parse_results(stdout: str) -> list[dict]:
    """Every `host | STATUS => {json}` line of the oneline callback, in order."""
    out = []
    for line in stdout.splitlines():
        match = _RESULT_LINE.match(line)
        if match:
            try:
                data = json.loads(match["json"])
            except ValueError:
                data = {"msg": match["json"]}
            data["_host"] = match["host"]
            data["_status"] = match["status"]
            data.setdefault("failed", match["status"].startswith("FAILED") or match["status"] == "UNREACHABLE!")
            out.append(data)
    return out


def _fqcn(module: str) -> str:
    """A module name as Ansible takes it: this collection's short names made fully qualified."""
    return module if "." in module else f"ebpf.deploy.{module}"


class ModuleRun:
    """Runs one module ad hoc (`ansible -m`) and returns the `oneline` callback's parsed result."""

    def __init__(self, inventory: str = "localhost,", host: str = "localhost", extra_env: dict | None = None):
        self.inventory = inventory
        self.host = host
        self.env = labctl.ansible_env(ANSIBLE_STDOUT_CALLBACK="oneline", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                                      ANSIBLE_RETRY_FILES_ENABLED="0", PYTHONDONTWRITEBYTECODE="1",
                                      **(extra_env or {}))

    def _connection(self) -> list[str]:
        """The local connection and this venv's Python for the implicit localhost, else nothing."""
        if self.inventory == "localhost,":
            return ["-c", "local", "-e", f"ansible_python_interpreter={PYTHON}"]
        return []

    def command(self, module: str, args: dict, *, check: bool = False, diff: bool = False,
                host: str | None = None) -> list[str]:
        cmd = [ANSIBLE, host or self.host, "-i", self.inventory, "-m", _fqcn(module), "-a", json.dumps(args),
               *self._connection()]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        return cmd

    def run(self, module: str, args: dict, *, timeout: float = 300, **how) -> tuple[list[dict], tuple]:
        """(every result line, (rc, stdout, stderr, timed_out)); a hung run is ended by its process group."""
        done = run_group(self.command(module, args, **how), env=self.env, timeout=timeout)
        return parse_results(done[1]), done

    def steps(self, module: str, steps: list[dict], *, timeout: float = 300) -> list[dict]:
        """Several runs of `module` as the tasks of one playbook: one controller start for all of them
        (about 1 CPU-s each, the module itself a tenth of that), and each task still one module
        process on the host. A step is {"args": {...}, "check": bool, "diff": bool}; every task
        ignores errors, so each step runs and reports. The results in order, as __call__ gives them."""
        fqcn = _fqcn(module)
        play = [{"name": f"ebpfd steps of {fqcn}", "hosts": self.host, "gather_facts": False, "tasks": [
            {"name": f"step {n}", fqcn: step["args"], "check_mode": bool(step.get("check")),
             "diff": bool(step.get("diff")), "ignore_errors": True} for n, step in enumerate(steps)]}]
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="ebpfd_steps_") as playbook:
            json.dump(play, playbook)
            playbook.flush()
            cmd = [ANSIBLE_PLAYBOOK, "-i", self.inventory, playbook.name, *self._connection()]
            _rc, out, err, timed_out = run_group(cmd, env=self.env, timeout=timeout)
        results = parse_results(out)
        if len(results) != len(steps):
            hung = " (hung: process group killed)" if timed_out else ""
            raise AssertionError(f"{len(results)} results for {len(steps)} steps of {fqcn}{hung}"
                                 f"\nstdout:\n{out}\nstderr:\n{err}")
        for result in results:
            result["_stderr"] = err
        return results

    def check_then_run(self, module: str, args: dict) -> list[dict]:
        """`module` with `args` in check mode, then for real: [check result, run result] (steps)."""
        return self.steps(module, [{"args": args, "check": True}, {"args": args}])

    def __call__(self, module: str, args: dict, *, check: bool = False, diff: bool = False,
                 host: str | None = None) -> dict:
        results, (_rc, out, err, _timed_out) = self.run(module, args, check=check, diff=diff, host=host)
        if not results:
            raise AssertionError(f"no result from {' '.join(self.command(module, args, check=check, diff=diff))}"
                                 f"\nstdout:\n{out}\nstderr:\n{err}")
        result = results[-1]
        result["_stderr"] = err
        return result


def run_module_file(module: str, args: dict, *, check: bool = False, diff: bool = False, timeout: float = 120,
                    wrapper: tuple = (), env_extra: Optional[dict] = None) -> tuple[int, str, str, bool]:
    """Run plugins/modules/<module>.py directly on this host (no controller), through a `wrapper`
    script when given, in its own process group. Returns run_group's (rc, stdout, stderr, timed_out)."""
    payload = {"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check, _ansible_diff=diff)}
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="ebpfd_args_") as handle:
        json.dump(payload, handle)
        handle.flush()
        env = dict(os.environ, PYTHONPATH=str(REPO / ".build" / "collections"), PYTHONDONTWRITEBYTECODE="1")
        env.update(env_extra or {})
        module_file = str(REPO / "plugins" / "modules" / f"{module}.py")
        return run_group([PYTHON, *wrapper, module_file, handle.name], env=env, timeout=timeout)


def direct(module: str, args: dict, *, check: bool = False, diff: bool = True) -> dict:
    """A module's full JSON result, `diff` included (the ad hoc callback does not print it).
    Arguments given as None are left out, as a playbook leaves out an omitted option."""
    rc, out, err, timed_out = run_module_file(module, {k: v for k, v in args.items() if v is not None},
                                              check=check, diff=diff)
    try:
        return json.loads(out)
    except ValueError:
        hung = " (hung: process group killed)" if timed_out else ""
        raise AssertionError(f"module {module} printed no JSON (rc={rc}){hung}:\n{out}\n{err}") from None


# --- reading the host ----------------------------------------------------------------------------
def bpftool(*args: str, check: bool = True, netns: Optional[str] = None):
    """`bpftool -j ARGS` parsed (None when it prints nothing); a failure raises, or gives None with
    check=False. netns: run it in that network namespace (nsenter: the bpffs stays visible)."""
    cmd = ["bpftool", "-j", *args]
    if netns:
        cmd = ["nsenter", f"--net=/run/netns/{netns}"] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        if check:
            raise AssertionError(f"bpftool {' '.join(args)}: {proc.stderr or proc.stdout}")
        return None
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def _key_bytes(key: int) -> list[str]:
    return [str(b) for b in key.to_bytes(4, "little")]


def map_u64(pin: Path, key: int = 0) -> int:
    """Value of a u32 -> u64 map entry, read with bpftool (raw bytes, or BTF-formatted)."""
    out = bpftool("map", "lookup", "pinned", str(pin), "key", *_key_bytes(key))
    value = out.get("value")
    if isinstance(value, list):  # raw bytes, little endian hex strings
        return int.from_bytes(bytes(int(b, 16) for b in value), "little")
    if isinstance(out.get("formatted"), dict):
        return int(out["formatted"]["value"])
    return int(value)


def map_set_u64(pin: Path, value: int, key: int = 0) -> None:
    """Write a u32 -> u64 map entry with bpftool."""
    cmd = ["bpftool", "map", "update", "pinned", str(pin), "key", *_key_bytes(key),
           "value", *[str(b) for b in value.to_bytes(8, "little")]]
    subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30)


def listing(root: Path) -> list[str]:
    """Every path under `root`, relative, directories ending in `/` ([] when root is missing)."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))


# --- assertions ----------------------------------------------------------------------------------
def ok(result: dict) -> dict:
    """The result of a run that must not fail."""
    assert not result.get("failed"), result.get("msg", result)
    return result


def one_line(msg) -> bool:
    """A failure message as the collection promises it: one line, no traceback."""
    return isinstance(msg, str) and bool(msg.strip()) and "\n" not in msg and "Traceback" not in msg


def assert_one_line_failure(result: dict, *words: str) -> str:
    """The run failed, said why in one line (each of `words` in it) and did not crash; returns msg."""
    assert result.get("failed"), result
    msg = result.get("msg")
    assert one_line(msg), msg
    assert "Traceback" not in result.get("_stderr", "")
    assert "module_stderr" not in result and "module_stdout" not in result, result
    for word in words:
        assert word in msg, (word, msg)
    return msg


def four_steps(run: ModuleRun, module: str, args: dict, *, changes: bool = True) -> list[dict]:
    """check → run → idempotent check → idempotent run of `module`, with --diff, as one playbook of
    four tasks (ModuleRun.steps); each succeeds, the first two report `changes` and the last two no
    change."""
    results = run.steps(module, [{"args": args, "check": check, "diff": True} for check in (True, False, True, False)])
    for result in results:
        ok(result)
    assert [r["changed"] for r in results] == [changes, changes, False, False], results
    return results
