"""Run a module file and SIGKILL it at its N-th side effect: `python killpoint.py MODULE.py ARGS.json`.

The collection has no test hook: this wrapper patches, in its own process only, every call that
changes the host (os.mkdir/rename/replace/symlink/unlink/rmdir on the bpffs root or /run/ebpf_deploy,
and libbpf's load, pin, link create/update/detach) to count it first. When the count reaches
EBPFD_KILL_AT the process SIGKILLs itself, so the op is not done: "killed before op N". With
EBPFD_KILL_AT=0 nothing is killed. EBPFD_KILL_TRACE names a file that gets one line per op (the
count, the op and its path), so a test knows how many points there are and what each one is.
"""
from __future__ import annotations

import os
import runpy
import signal
import sys

KILL_AT = int(os.environ.get("EBPFD_KILL_AT", "0"))
TRACE = os.environ.get("EBPFD_KILL_TRACE")
ROOTS = tuple(p for p in os.environ.get("EBPFD_KILL_ROOTS", "").split(":") if p) + ("/run/ebpf_deploy/",)
IGNORED = ("/run/ebpf_deploy/locks",)  # taking the lock changes nothing
_count = 0


def _tick(op: str, path: str = "") -> None:
    global _count  # pylint: disable=global-statement
    _count += 1
    if TRACE:
        with open(TRACE, "a", encoding="utf-8") as handle:
            handle.write(f"{_count} {op} {path}\n")
    if _count == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)


def _watch_os(name: str) -> None:
    real = getattr(os, name)

    def wrapper(*args, **kwargs):
        path = os.fsdecode(args[0]) if args and isinstance(args[0], (str, bytes, os.PathLike)) else ""
        target = os.fsdecode(args[1]) if len(args) > 1 and isinstance(args[1], (str, bytes, os.PathLike)) else ""
        if path.startswith(IGNORED):
            return real(*args, **kwargs)
        if kwargs.get("dir_fd") is not None or any(p.startswith(ROOTS) for p in (path, target)):
            _tick(name, path if path.startswith(ROOTS) else target)
        return real(*args, **kwargs)

    setattr(os, name, wrapper)


def _watch_attr(owner, name: str, op: str) -> None:
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        _tick(op)
        return real(*args, **kwargs)

    setattr(owner, name, wrapper)


def main() -> None:
    module_file = sys.argv[1]
    sys.argv = sys.argv[1:]
    for name in ("mkdir", "rename", "replace", "symlink", "unlink", "rmdir"):
        _watch_os(name)
    from ansible_collections.ebpf.deploy.plugins.module_utils import _libbpf as libbpf  # noqa: E501 pylint: disable=import-outside-toplevel
    _watch_attr(libbpf.BpfObject, "load", "bpf_object__load")
    for name in ("obj_pin", "link_create_xdp", "link_update", "link_detach", "map_update", "map_delete"):
        _watch_attr(libbpf, name, name)
    runpy.run_path(module_file, run_name="__main__")


if __name__ == "__main__":
    main()
