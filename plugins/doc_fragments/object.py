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
  allowed_signers:
    description:
      - An OpenSSH C(allowed_signers) file (ssh-keygen(1), ALLOWED SIGNERS). When given, the object must
        carry an OpenSSH signature (C(ssh-keygen -Y sign -f KEY -n ebpf.deploy OBJECT)) by one of its keys;
        it is verified with C(ssh-keygen -Y verify) on the controller before the object is shipped and again
        on the host before anything is loaded, and an unsigned or wrongly signed object is refused, naming
        the signer (or the key) that signed it. The host keeps both texts in its record, so a restore at
        boot verifies the stored object again.
      - A path on the controller, or on the host with O(remote_src=true). Needs C(ssh-keygen) (openssh-client)
        where it is verified.
    type: path
    version_added: 0.1.0
  signature:
    description:
      - The object's OpenSSH signature file. Default, O(src) with C(.sig) appended (what C(ssh-keygen -Y sign)
        writes). Only read with O(allowed_signers).
      - A path on the controller, or on the host with O(remote_src=true).
    type: path
    version_added: 0.1.0
  signature_namespace:
    description: The namespace the object was signed for (C(ssh-keygen -Y sign -n)).
    type: str
    default: ebpf.deploy
    version_added: 0.1.0
  signature_content:
    description:
      - The signature's text, instead of reading O(signature). The action plugin sets it (and
        O(allowed_signers_content)) from the controller's files.
    type: str
    version_added: 0.1.0
  allowed_signers_content:
    description: The allowed signers' text, instead of reading O(allowed_signers). Set by the action plugin.
    type: str
    version_added: 0.1.0
"""
