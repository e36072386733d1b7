# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: one ``attach:`` item of bpf_deployment, on whichever hook it names.

An item's hook is its ``hook`` option, else what its program's ELF section names, exactly as
bpf_attach decides it (``_hooks.parse_section``); an item with an ``interface`` whose section
names no hook (or that has none) stays an XDP item, as every item was before hooks came. Before
anything loads, an item is refused in one line when its program's type cannot run on its hook
(read from the section, or ``program_type``) or when its target is missing or does not exist.

XDP items go to ``_xdp.XdpManager`` as before; every other item to ``_attach.AttachManager``, the
code bpf_attach runs, with the deployment's program. ``label`` keys an item in the record's
``replaced`` and in the diff: the interface (``netns@interface``) for XDP, as before, and the
link pin's name (``<target>:<hook>``) for the other hooks.

``give_back()`` puts a hook back as a pending switch found it: the program it ran (kept pinned
under ``replaced/``) swapped back onto our link, or our link detached when the hook had none.

No Ansible here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

from ansible_collections.ebpf.deploy.plugins.module_utils import _hooks as hooks
from ansible_collections.ebpf.deploy.plugins.module_utils import _options as options
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput
from ansible_collections.ebpf.deploy.plugins.module_utils._uapi import PROG_TYPE_NAMES, PROG_TYPES

XDP = "xdp"
# the options of an item that an AttachManager request takes as they are
HOOK_KEYS = tuple(key for key in options.names(options.HOOK_ATTACHMENT) if key != "force")


@dataclass(frozen=True)
class Item:
    """An attach[] item with its hook decided: ``spec`` is the item with ``hook``, its program's
    ``section`` (and a tracepoint's ``target``) filled in for the hooks other than XDP."""

    spec: dict
    hook: str
    label: str
    # what the result's ``target`` says (hooks other than XDP); spec["target"] is the option
    result_target: Optional[dict] = None

    @property
    def xdp(self) -> bool:
        return self.hook == XDP


def xdp_label(spec: dict) -> str:
    return f"{spec['netns']}@{spec['interface']}" if spec.get("netns") else spec["interface"]


def program_sections(data: bytes) -> Dict[str, str]:
    """{program: ELF section} of an object, read without libbpf ({} when it is no BPF object:
    the program manager refuses it in its own words)."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _race_lint  # pylint: disable=import-outside-toplevel
    try:
        return {prog.name: prog.section for prog in _race_lint.read_object_code(data).programs}
    except (ValueError, IndexError):
        return {}


def hook_of(spec: dict, *, section: Optional[str], program_type: Optional[str] = None) -> hooks.SectionHook:
    """The item's hook and target: the options win over the section (bpf_attach's rule); a
    program whose type the hook does not take is refused here, before anything loads."""
    program = spec.get("program")
    parsed, why = None, "its program has no ELF section"
    if section:
        try:
            parsed = hooks.parse_section(section)
        except InvalidInput as err:
            why = err.msg
    name = spec.get("hook") or (parsed.hook if parsed else None)
    if name is None:
        if spec.get("interface"):
            return hooks.SectionHook(XDP)   # an interface and no hook in the section: XDP, as always
        raise InvalidInput(f"attach: cannot tell the hook of program {program!r} ({why}); set hook")
    row = hooks.hook(name)
    prog_type = PROG_TYPES.get(program_type) if program_type else (
        hooks.hook(parsed.hook).prog_types[0] if parsed else None)
    if prog_type is not None:
        where = f"program_type {program_type}" if program_type else f"section {section}"
        hooks.check_prog_type(row, prog_type, prog_label=f"{program!r} ({where})",
                              type_name=PROG_TYPE_NAMES.get(prog_type, str(prog_type)))
    target = spec.get("target") or (parsed.target if parsed and parsed.hook == row.name else None)
    return hooks.SectionHook(row.name, target)


def resolve(spec: dict, *, root: str, name: str, sections: Dict[str, str],
            program_type: Optional[str] = None) -> Item:
    """The item with its hook, and its label; a missing or absent target refused in one line."""
    section = sections.get(spec.get("program"))
    found = hook_of(spec, section=section, program_type=program_type)
    if found.hook == XDP:
        if not spec.get("interface"):
            raise InvalidInput(f"attach: program {spec.get('program')!r} on hook xdp needs interface")
        return Item(spec=dict(spec), hook=XDP, label=xdp_label(spec))
    # the same refusal as bpf_attach's, before anything loads
    hooks.check_options_apply(hooks.hook(found.hook), {key: spec.get(key) for key in hooks.OPTION_FAMILIES},
                              prefix=f"attach: program {spec.get('program')!r}: ")
    # the section goes with the item: fentry/fexit/lsm attach where they were loaded for, which the
    # section names, and before this run loads the version no recorded section says it
    resolved = dict(spec, hook=found.hook, target=found.target, method=None, section=section)
    label, result_target = manager(request(root, name, resolved)).planned_target()
    return Item(spec=resolved, hook=found.hook, label=label, result_target=result_target)


def request(root: str, name: str, spec: dict, **changes):
    """The AttachManager request for an item of deployment ``name`` (``changes`` over it)."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _attach  # pylint: disable=import-outside-toplevel
    values = {key: spec.get(key) for key in HOOK_KEYS}
    values.update(deployment=name, program=spec.get("program"), section=spec.get("section"), bpffs_root=root,
                  state="present", force=bool(spec.get("force")))
    values.update(changes)
    return _attach.Request.from_params({k: v for k, v in values.items() if v is not None})


def manager(req, **kwargs):
    """The AttachManager bpf_attach runs, for one item."""
    from ansible_collections.ebpf.deploy.plugins.module_utils import _attach  # pylint: disable=import-outside-toplevel
    return _attach.AttachManager(req, **kwargs)


def give_back(root: str, name: str, held: dict) -> str:
    """The hook back as the pending switch found it: its old program swapped back onto our link
    (atomic where the hook has BPF_LINK_UPDATE), or our link detached when the hook had none.
    Returns the action taken."""
    spec = dict(held["spec"], before=None, after=None)   # the link keeps its place in the list
    if held.get("prog_id") and held.get("kept_pin"):
        req = request(root, name, spec, program=None, pin=held["kept_pin"], force=True)
    else:
        req = request(root, name, spec, state="absent", force=True)
    return manager(req).run().action
