# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: what a manager's ``run()`` returns.

Every manager is ``XManager(request, check_mode=..., diff_mode=...).run() -> result``. A result
carries as typed fields what a caller composes (``bpf_deployment`` reads a program's action and
version, an attachment's previous program, a map's pin), and in ``extra`` the other return values
exactly as the module returns them; ``as_dict()`` is the module's result (``_module_run.exit_with``
calls it). A typed field that is None is left out unless the class names it in ``keep_none``.

No Ansible here.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar, List, Optional, Tuple


@dataclass
class ActionPlan:
    """An attachment manager's plan: one action (``none`` when there is nothing to do), the diff's
    before and after, the drift it repairs and the warnings to pass on. Each manager names its
    actions in its own subclass (``_xdp.Plan``, ``_attach.Plan``)."""

    action: str
    before: dict
    after: dict
    drift: Optional[str] = None
    warnings: list = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.action != "none"


@dataclass
class Result:
    """The common part: changed, the diff, warnings, and the module's other return values."""

    changed: bool = False
    diff: Optional[dict] = None
    warnings: List[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    keep_none: ClassVar[Tuple[str, ...]] = ()

    def as_dict(self, *, with_diff: bool = True) -> dict:
        """The module's return values (``with_diff=False``: without the diff, for a composer
        that reports it its own way)."""
        out = dict(self.extra)
        for item in fields(self):
            if item.name in ("extra", "warnings") or (item.name == "diff" and not with_diff):
                continue
            value = getattr(self, item.name)
            if value is not None or item.name in self.keep_none:
                out[item.name] = value
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out
