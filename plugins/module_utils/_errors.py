# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the errors every module raises and turns into ``fail_json``.

One base error carries a one-line ``msg`` and ``details`` (extra keys of the failed result), so a
module's ``main()`` is ``except EbpfDeployError as err: module.fail_json(**err.to_result())``.
Kernel refusals become ``SyscallError``: it names the call and the target, and adds a hint from an
errno table so "Operation not permitted" reads as what to do about it.

No Ansible here: the action plugin and the kernel-facing files import this too.
"""
from __future__ import annotations

import errno as _errno
import os
from typing import Any, Optional


class EbpfDeployError(Exception):
    """Base error: ``msg`` is one line; ``details`` are extra keys of the failed result."""

    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details: dict = dict(details)

    def to_result(self) -> dict:
        """The keyword arguments for ``fail_json``: ``msg`` plus every detail."""
        result = {key: value for key, value in self.details.items() if key != "msg"}
        result["msg"] = self.msg
        return result

    def __str__(self) -> str:
        return self.msg


class InvalidInput(EbpfDeployError):
    """A parameter or an input file is wrong; nothing was changed."""


class UnsupportedFeature(EbpfDeployError):
    """The host lacks something the request needs; ``requires`` says what (e.g. a kernel version)."""

    def __init__(self, msg: str, *, requires: Optional[str] = None, **details: Any) -> None:
        if requires and requires not in msg:
            msg = f"{msg} (requires {requires})"
        super().__init__(msg, requires=requires, **details)


class VerifierRejected(EbpfDeployError):
    """The verifier refused a program: short ``msg``, the whole log in ``verifier_log``."""

    def __init__(self, msg: str, *, program: str, error_kind: str, insn: Optional[int],
                 verifier_log: str, **details: Any) -> None:
        super().__init__(msg, program=program, error_kind=error_kind, insn=insn,
                         verifier_log=verifier_log, **details)
        self.program = program
        self.error_kind = error_kind
        self.insn = insn
        self.verifier_log = verifier_log


class MapConflict(EbpfDeployError):
    """A pinned map's spec differs from the object's; ``pinned``/``wanted`` hold both specs."""


class PreflightRefused(EbpfDeployError):
    """Preflight found problems at or above the caller's threshold; ``findings`` lists them all."""


class LockTimeout(EbpfDeployError):
    """Another run holds the deployment lock for longer than the timeout."""


# errno -> what usually causes it in bpf()/netlink work, and what to do about it.
ERRNO_HINTS: dict = {
    _errno.EPERM: "not permitted: run as root (CAP_BPF + CAP_PERFMON, CAP_NET_ADMIN for XDP, "
                  "or CAP_SYS_ADMIN), or the memory limit is reached: {memory}",
    _errno.EACCES: "access denied: the verifier or an LSM refused the operation",
    _errno.ENOMEM: "out of memory for BPF: check the map size (max_entries x (key + value)) and "
                   "{memory}",
    _errno.E2BIG: "too big: a map size (max_entries x (key + value)) or the program exceeds what the "
                  "kernel accepts, or the memory limit: {memory}",
    _errno.EBUSY: "busy: a program is already attached there; detach it or replace it explicitly",
    _errno.ENOENT: "not found: the pin path, map entry or interface does not exist",
    _errno.ENODEV: "no such device: the interface does not exist (in this network namespace)",
    _errno.EEXIST: "already exists: a pin or an attachment is in the way",
    _errno.EINVAL: "invalid argument: the kernel does not accept these attributes "
                   "(program type, attach type or flags unsupported by this kernel?)",
    _errno.EOPNOTSUPP: "not supported by this kernel or driver",
    _errno.ENOSPC: "no space: the verifier log buffer is too small or the map is full",
    _errno.EBADF: "bad file descriptor: the object was closed or is of the wrong kind",
    524: "not supported by this kernel (ENOTSUPP)",
}

# What an EPERM with an empty verifier log means: never the verifier, always privileges/limits.
EPERM_EMPTY_LOG_HINT = ("not permitted and the verifier said nothing: missing capability "
                        "(CAP_BPF/CAP_SYS_ADMIN) or the memory limit is reached: {memory}")


def errno_name(err: int) -> str:
    """``13`` -> ``EACCES`` (``E524`` for errnos Python does not name)."""
    return _errno.errorcode.get(err, f"E{err}")


def errno_hint(err: int, *, log: Optional[str] = None) -> str:
    """The hint for an errno; EPERM with an empty log points at capabilities and the memory limit."""
    hint = EPERM_EMPTY_LOG_HINT if err == _errno.EPERM and not (log or "").strip() else ERRNO_HINTS.get(err, "")
    if "{memory}" not in hint:
        return hint
    # the memory limit that applies depends on the kernel (_limits says which); imported here, since
    # only this hint needs it and every module imports this file
    from ansible_collections.ebpf.deploy.plugins.module_utils._limits import charged_to  # pylint: disable=import-outside-toplevel
    return hint.format(memory=charged_to())


class SyscallError(EbpfDeployError):
    """A bpf()/libbpf/netlink call failed: names the call, the target, the errno and a hint."""

    def __init__(self, syscall: str, errno: int, target: Optional[str] = None, *,
                 log: Optional[str] = None, detail: Optional[str] = None, **details: Any) -> None:
        errno = abs(int(errno))
        self.syscall = syscall
        self.errno = errno
        self.target = target
        self.hint = errno_hint(errno, log=log)
        where = f" for {target}" if target else ""
        msg = f"{syscall} failed{where}: {os.strerror(errno)} ({errno_name(errno)})"
        if detail:
            msg += f": {detail}"
        if self.hint:
            msg += f" - {self.hint}"
        super().__init__(msg, syscall=syscall, errno=errno, errno_name=errno_name(errno),
                         target=target, **details)
        if log:
            self.details.setdefault("log", log)
