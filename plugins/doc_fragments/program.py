# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documents the option group PROGRAM of plugins/module_utils/_options.py: what is loaded and
how its versions are kept (bpf_program, and bpf_deployment's program part); and (FREPLACE) the
group FREPLACE, the target of freplace programs (bpf_program only)."""
from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  name:
    description:
      - The deployment. Its pins live under O(bpffs_root)/O(name)/.
      - Letters, digits, V(_) and V(-) only (the bpffs refuses dots).
    type: str
    required: true
  programs:
    description:
      - Names of the programs of the object to load and pin. Default is every program.
      - A name that the object does not contain is an error.
    type: list
    elements: str
  program_type:
    description:
      - Program type to use when the ELF section name does not say, or to override it, as libbpf names
        it (V(xdp), V(sched_cls), V(raw_tracepoint), ...) or as a section prefix (V(tc)).
      - Part of the version digest.
    type: str
  keep_versions:
    description:
      - How many versions besides the current one stay pinned for an instant rollback.
      - Older ones are unpinned after a successful switch (by M(ebpf.deploy.bpf_deployment) only once
        the switch is committed); the current version never is.
    type: int
    default: 1
  map_conflict:
    description:
      - What to do when a pinned map's spec (type, key size, value size, max_entries, flags) differs
        from the object's.
      - V(fail) refuses, naming every field that differs with both values.
      - V(recreate) replaces the pinned map with a new empty one (its contents are lost, which the diff
        says) and unpins older versions that still use the old map.
    type: str
    choices: [fail, recreate]
    default: fail
  verifier_log_level:
    description:
      - V(0) asks for a verifier log only when a program is rejected (it is then always returned).
      - V(1) or V(2) keep the verifier log on success too and return it with the statistics, as
        RV(ebpf.deploy.bpf_program#module:verifier).
    type: int
    choices: [0, 1, 2]
    default: 0
  globals:
    description:
      - Load-time globals, a mapping of global name to value, written into the object's C(.rodata), C(.data) and C(.bss)
        (and C(.rodata.*)/C(.data.*)) sections before it is loaded, as libbpf's skeletons set a
        C(const volatile) variable - the way to configure a program without rebuilding it.
      - Each value is typed through the object's BTF, as map values with O(ebpf.deploy.bpf_map#module:value_type=btf)
        are - an integer (or a numeric string), an enum by name or number, an array as a list (a string
        for a C(char) array), a struct or union as a mapping by field name (fields left out are 0).
      - An unknown name (the message lists the globals the object has), a wrong type, an out-of-range
        value, an extern or a variable in a section the object has no map for is refused in one line
        before anything is loaded, in check mode too.
      - The values, as they read back (V("0x35") is V(53)), are part of the version digest; another value
        is another version, and the same values are the same version. A version keeps its values, so
        switching back to it (O(version=previous), a rollback, a restore at boot) brings them back.
      - Needs an object (O(src)); a pinned version is switched to with the values it was loaded with.
    type: dict
    version_added: 0.1.0
  version:
    description:
      - Switch V(current) to this already pinned version without loading anything (an instant
        rollback); M(ebpf.deploy.bpf_deployment) then converges its attachments and maps to it.
        Without O(src) the version must still be pinned.
      - V(previous) names the version that was current before the current one (see RV(previous_version));
        it cannot be combined with O(src).
      - With O(src), the object must be this version.
      - With O(state=present), O(src) or O(version) is required.
    type: str
"""

    FREPLACE = r"""
options:
  attach_program:
    description:
      - The bpffs pin of the loaded program whose global function the object's C(freplace) programs
        (C(SEC("freplace/<function>")), type C(ext)) replace, for example
        V(/sys/fs/bpf/ebpf_deploy/app/current/progs/main) (a program of another deployment).
      - Required when the object loads an C(freplace) program, refused when it loads none. The pin must
        be a program with BTF whose BTF has each function the sections name, as a global (non-static,
        C(__noinline)) function; otherwise the run fails in one line before anything is loaded.
      - The freplace program is bound to that program at load, so the id of the program pinned there is
        part of the version digest - a reloaded target program means a new version; the path is kept in
        the version's options.
      - Attach the loaded program with M(ebpf.deploy.bpf_attach) O(ebpf.deploy.bpf_attach#module:hook=freplace)
        and O(ebpf.deploy.bpf_attach#module:target=<this pin>:<function>).
      - Needs a kernel >= 5.10 without lockdown (a locked-down kernel refuses C(ext) programs, to root too).
    type: path
    version_added: 0.1.0
"""
