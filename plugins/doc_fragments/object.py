# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documents the option group OBJECT of plugins/module_utils/_options.py: where the BPF object
comes from (the modules with an action plugin, which reads it on the controller)."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  src:
    description:
      - The compiled BPF object (C(clang -target bpf -c)).
      - A path on the controller, looked up like other C(files/) sources and copied to the host,
        unless O(remote_src=true).
    type: path
  remote_src:
    description:
      - When V(true), O(src) is a path on the managed host and nothing is copied.
    type: bool
    default: false
  content:
    description:
      - The object itself, base64-encoded, instead of reading O(src) on the host; O(src) then only
        names the object in messages and metadata.
      - The action plugin sets this for an object of up to 4 MiB found on the controller, so that
        the task needs no file copy. Mutually exclusive with O(remote_src=true).
    type: str
    version_added: 0.1.0
  checksum:
    description:
      - Refuse the object unless its digest is this, as V(sha256:<64 hex digits>).
      - Checked on the controller before the copy and again on the host.
    type: str
"""
