# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of ebpf.deploy.bpf_program: find the object, check it, ship it, run the module.

With ``remote_src: false`` (the default) ``src`` is looked up on the controller like any
``files/`` source (role, playbook dir), its sha256 is computed and compared with ``checksum``
before anything is sent, and the ELF is checked to be a BPF object. An object of up to
``INLINE_LIMIT`` bytes then travels inside the module's arguments (``content``, base64), so the
task is one round trip to the host, as cheap as a ping with pipelining; a bigger one is copied to
the remote temporary directory first. Either way the module runs with ``checksum`` set to the
controller's digest, so a corrupted transfer is refused on the host too.

bpf_preflight and bpf_deployment ship their object the same way (they subclass this).
"""
from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import EbpfDeployError
from ansible_collections.ebpf.deploy.plugins.module_utils._objects import (
    check_bpf_elf,
    encode_content,
    verify_checksum,
)
from ansible_collections.ebpf.deploy.plugins.module_utils import _signature as signatures

# Module arguments go to the host on the module's stdin; 4 MiB of object is ~5.4 MiB of base64
# there, still far cheaper than the three extra round trips of a copy (mkdir, put, rm).
INLINE_LIMIT = 4 << 20


class ActionModule(ActionBase):

    MODULE = "ebpf.deploy.bpf_program"
    # the remote temporary directory is made only when an object is too big to send inline
    TRANSFERS_FILES = False

    def _needs_object(self, args: dict) -> bool:
        return bool(args.get("src")) and args.get("state", "present") != "absent"

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp  # tmp no longer has any effect

        args = dict(self._task.args)
        try:
            remote_src = boolean(args.get("remote_src", False), strict=True)
        except TypeError as exc:
            result.update(failed=True, msg=f"remote_src: {to_native(exc)}")
            return result
        if remote_src or args.get("content") is not None or not self._needs_object(args):
            return self._run_module(result, args, task_vars)

        src = args["src"]
        try:
            local = self._find_needle("files", src)
        except AnsibleError as exc:
            reason = (to_text(exc.message).strip().splitlines() or ["not found"])[0]
            result.update(failed=True, msg=f"src {src} not found on the controller: {reason}")
            return result
        if not os.path.isfile(local):  # a FIFO or a device would block the controller or never end
            result.update(failed=True, msg=f"src {src} on the controller is not a regular file")
            return result
        try:
            with open(local, "rb") as handle:
                data = handle.read()
            label = os.path.basename(src)
            digest = verify_checksum(data, args.get("checksum"), source=label)
            check_bpf_elf(data, source=label)
            signed = self._signed(args, src)
            if signed is not None:   # on the controller first: a bad object never leaves it
                signatures.verify(data, signed, source=label)
                args.update(signature_content=signed.signature, allowed_signers_content=signed.allowed_signers)
                args.pop("signature", None)
                args.pop("allowed_signers", None)
        except EbpfDeployError as err:
            result.update(failed=True, **err.to_result())
            return result
        except OSError as exc:
            result.update(failed=True, msg=f"cannot read src {local}: {exc.strerror}")
            return result

        args.update(checksum=f"sha256:{digest}")
        if len(data) <= INLINE_LIMIT:
            # src stays as the object's name for messages and metadata; the host reads content
            args.update(src=label, content=encode_content(data), remote_src=False)
            return self._run_module(result, args, task_vars)

        tmpdir = self._make_tmp_path()
        remote_path = self._connection._shell.join_path(tmpdir, label)
        try:
            self._transfer_file(local, remote_path)
            self._fixup_perms2((tmpdir, remote_path))
            args.update(src=remote_path, remote_src=True)
            return self._run_module(result, args, task_vars)
        finally:
            self._remove_tmp_path(tmpdir)

    def _signed(self, args: dict, src: str):
        """The signature and allowed signers, read on the controller; None without allowed_signers."""
        def locate(name: str):
            try:
                return self._find_needle("files", name)
            except AnsibleError:
                return None
        return signatures.wanted(allowed_signers=args.get("allowed_signers"), signature=args.get("signature"),
                                 src=src, namespace=args.get("signature_namespace"), locate=locate,
                                 missing="not found on the controller")

    def _run_module(self, result: dict, args: dict, task_vars: dict) -> dict:
        result.update(self._execute_module(module_name=self.MODULE, module_args=args, task_vars=task_vars))
        # the object's base64 would otherwise be kept in every registered result
        module_args = (result.get("invocation") or {}).get("module_args") or {}
        if module_args.get("content"):
            module_args["content"] = f"<{len(module_args['content'])} characters of base64>"
        return result
