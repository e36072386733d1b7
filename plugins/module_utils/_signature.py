# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: OpenSSH signatures of BPF objects (``ssh-keygen -Y sign``).

An object is signed with ``ssh-keygen -Y sign -f KEY -n ebpf.deploy OBJECT`` (which writes
``OBJECT.sig``) and checked against an ``allowed_signers`` file (ssh-keygen(1), ALLOWED SIGNERS):
``ssh-keygen -Y find-principals`` names the signer the signature's key belongs to, then ``-Y verify``
checks the object's bytes under that principal and namespace. The same ssh-keygen runs on the
controller before the object is shipped and on the host before it is loaded, so no Python crypto
library is needed anywhere. The texts travel with the module's arguments and are kept in the host's
record, so a restore at boot checks the stored object again.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Callable, Optional

from ansible_collections.ebpf.deploy.plugins.module_utils import _process
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput, UnsupportedFeature

DEFAULT_NAMESPACE = "ebpf.deploy"
SSH_KEYGEN = "ssh-keygen"
MAX_TEXT = 1 << 20   # a signature is ~300 bytes, an allowed_signers file a few lines


@dataclass
class Signed:
    """What an object must be signed with: the signature's text, the allowed signers', the namespace."""
    signature: Optional[str]
    allowed_signers: str
    namespace: str = DEFAULT_NAMESPACE

    def as_record(self) -> dict:
        return {"signature": self.signature, "allowed_signers": self.allowed_signers, "namespace": self.namespace}


def read_text(path: str, *, what: str) -> Optional[str]:
    """A signature or allowed_signers file (None when it does not exist); refused when it is no
    small regular text file."""
    try:
        if not os.path.isfile(path):
            if os.path.lexists(path):
                raise InvalidInput(f"{what} {path} is not a regular file")
            return None
        if os.path.getsize(path) > MAX_TEXT:
            raise InvalidInput(f"{what} {path} is larger than {MAX_TEXT} bytes")
        with open(path, "rb") as handle:
            return handle.read().decode("ascii")
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} {path} is not ASCII text") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} {path}: {exc.strerror}") from None


def wanted(*, allowed_signers: Optional[str], signature: Optional[str], src: Optional[str],
           namespace: Optional[str], locate: Callable[[str], Optional[str]], missing: str) -> Optional[Signed]:
    """What an object must be signed with, from the options naming files: None without
    allowed_signers; the signature defaults to ``<src>.sig`` and, when it is not there, the object
    counts as unsigned (``verify`` refuses it). ``locate`` finds a file where it is read (the
    controller's search path, or the host's file system), None when there is none; ``missing``
    says so in the error ("does not exist on the host")."""
    if not allowed_signers:
        if signature:
            raise InvalidInput("signature is given without allowed_signers to verify it against")
        return None
    signers_path = locate(allowed_signers)
    signers = read_text(signers_path, what="allowed_signers") if signers_path else None
    if signers is None:
        raise InvalidInput(f"allowed_signers {allowed_signers} {missing}")
    name = signature or (f"{src}.sig" if src else None)
    path = locate(name) if name else None
    return Signed(read_text(path, what="signature") if path else None, signers, namespace or DEFAULT_NAMESPACE)


def _keygen(args: list, *, stdin: Optional[bytes] = None) -> subprocess.CompletedProcess:
    exe = shutil.which(SSH_KEYGEN) or shutil.which(SSH_KEYGEN, path="/usr/bin:/bin")
    if exe is None:
        raise UnsupportedFeature("verifying an object's signature needs ssh-keygen (Debian: openssh-client)",
                                 requires="ssh-keygen")
    return _process.run([exe, *args], stdin=stdin if stdin is not None else b"", text=False, timeout=60)


def _last_line(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stderr or proc.stdout or b"").decode("utf-8", "replace").strip().splitlines()
    return text[-1] if text else f"exit {proc.returncode}"


def verify(data: bytes, signed: Signed, *, source: str) -> str:
    """The principal that signed ``data``; InvalidInput naming what is wrong otherwise (unsigned,
    signed by a key no allowed signer has, or a signature that does not match these bytes)."""
    if not signed.signature:
        raise InvalidInput(f"{source} is not signed (no signature) and allowed_signers requires a signature")
    if "SSH SIGNATURE" not in signed.signature:
        raise InvalidInput(f"the signature of {source} is not an OpenSSH signature (ssh-keygen -Y sign)")
    with tempfile.TemporaryDirectory(prefix="ebpf_deploy_sig_") as work:   # 0700: mkdtemp
        sig_path, signers_path = os.path.join(work, "object.sig"), os.path.join(work, "allowed_signers")
        for path, text in ((sig_path, signed.signature), (signers_path, signed.allowed_signers)):
            with open(path, "w", encoding="ascii") as handle:
                handle.write(text)
        found = _keygen(["-Y", "find-principals", "-s", sig_path, "-f", signers_path])
        if found.returncode != 0:
            key = _keygen(["-Y", "check-novalidate", "-n", signed.namespace, "-s", sig_path], stdin=data)
            # "Good "ebpf.deploy" signature with ED25519 key SHA256:...": the key, checked against nothing
            by = _last_line(key).partition(" with ")[2] if key.returncode == 0 else ""
            by = by or "a key it cannot read"
            raise InvalidInput(f"{source} is signed by {by}, which is not in allowed_signers")
        principal = found.stdout.decode("utf-8", "replace").split()[0]
        checked = _keygen(["-Y", "verify", "-f", signers_path, "-I", principal, "-n", signed.namespace,
                           "-s", sig_path], stdin=data)
        if checked.returncode != 0:
            raise InvalidInput(f"the signature of {source} by {principal} does not verify (namespace "
                               f"{signed.namespace!r}): {_last_line(checked)}")
    return principal
