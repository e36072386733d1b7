# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: how every module turns its manager's result or error into exit_json/fail_json.

An EbpfDeployError or an OSError is an explained failure (one line, its details as result keys),
never a traceback; the result's ``warnings`` become Ansible warnings. A result is a dict or a
``_result.Result`` (its ``as_dict()``).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from ansible_collections.ebpf.deploy.plugins.module_utils._errors import EbpfDeployError


def exit_with(module, run: Callable[[], Any], *, fail_when: Optional[Callable[[dict], bool]] = None) -> None:
    """Call run() and end the module with its result, or fail with its error. ``fail_when``
    judges a result that is a failure by its content (bpf_preflight's findings): the module fails
    with that result, warnings included."""
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
    if hasattr(result, "as_dict"):
        result = result.as_dict()
    for warning in result.pop("warnings", []):
        module.warn(warning)
    if fail_when is not None and fail_when(result):
        module.fail_json(**result)
    module.exit_json(**result)
