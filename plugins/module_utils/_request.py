# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: what every manager's request (a dataclass) takes from a module's params.

No Ansible here.
"""
from __future__ import annotations


def known_params(request_class, params: dict) -> dict:
    """The params the request class declares; a None (not given) leaves the field's default."""
    names = set(request_class.__dataclass_fields__)
    return {key: value for key, value in params.items() if key in names and value is not None}
