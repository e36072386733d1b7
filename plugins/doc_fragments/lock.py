# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documents the option group LOCK of plugins/module_utils/_options.py."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  lock_timeout:
    description:
      - Seconds to wait for another run on the same deployment to finish (or, for a run without a
        deployment, on the same interface, map or pin path).
    type: float
    default: 60
"""
