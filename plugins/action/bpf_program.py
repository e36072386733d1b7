# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of ebpf.deploy.bpf_program: find the object, check it, ship it, run the module.

With ``remote_src: false`` (the default) ``src`` is looked up on the controller like any
``files/`` source (role, playbook dir), its sha256 is computed and compared with ``checksum``
before anything is sent, the ELF is checked to be a BPF object, and the file is copied to the
remote temporary directory. The module then runs with that path and ``checksum`` set to the
controller's digest, so a corrupted transfer is refused on the host too.
"""
from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import EbpfDeployError
from ansible_collections.ebpf.deploy.plugins.module_utils._objects import check_bpf_elf, verify_checksum

MODULE = "ebpf.deploy.bpf_program"


class ActionModule(ActionBase):

    TRANSFERS_FILES = True

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
        src = args.get("src")
        if remote_src or not src or args.get("state", "present") == "absent":
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result

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
        except EbpfDeployError as err:
            result.update(failed=True, **err.to_result())
            return result
        except OSError as exc:
            result.update(failed=True, msg=f"cannot read src {local}: {exc.strerror}")
            return result

        tmpdir = self._connection._shell.tmpdir
        remote_path = self._connection._shell.join_path(tmpdir, label)
        try:
            self._transfer_file(local, remote_path)
            self._fixup_perms2((tmpdir, remote_path))
            args.update(src=remote_path, remote_src=True, checksum=f"sha256:{digest}")
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
        finally:
            self._remove_tmp_path(tmpdir)
        return result
