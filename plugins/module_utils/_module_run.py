# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: how a module turns its manager's result or error into exit_json/fail_json.

An EbpfDeployError or an OSError is an explained failure (one line, its details as result keys),
never a traceback; the result's ``warnings`` become Ansible warnings.
"""
from __future__ import annotations

from typing import Callable

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import EbpfDeployError


def exit_with(module, run: Callable[[], dict]) -> None:
    """Call run() and end the module with its result, or fail with its error."""
    failure = None
    try:
        result = run()
    except EbpfDeployError as err:
        failure = err.to_result()
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        failure = {"msg": f"{err.strerror or err}{where}", "errno": err.errno}
    if failure is not None:
        # outside the except block: an explained error is not a crash, so no traceback
        module.fail_json(**failure)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    module.exit_json(**result)
