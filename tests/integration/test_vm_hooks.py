"""The kprobe/kretprobe, fentry/fexit, uprobe/uretprobe, lsm and freplace hooks, attached for real on
the VM lab hosts: Debian 12 (kernel 6.1) and Debian 13 (6.12) have the kprobe PMU and no lockdown,
which this machine's kernel lacks (there these hooks are refused first, see test_bpf_attach.py).

One lab (session fixture `vm_lab`); every step runs on both VMs at once (`ansible vm ...`, the
guests' own Python, libbpf and bpftool; tc clsact on Debian 12 alone, see there) and every assertion
names the image and kernel. The probe
hooks: one bpf_deployment attaches a program on each (check mode first: nothing attached), a guest
process makes exactly N calls (getpid, and opens for lsm) and the guest's bpftool reads N for its
tgid in each hook's map, a re-run is unchanged, bpf_attach refuses a bad target per hook in one
line with nothing changed, and state absent leaves nothing. freplace goes through bpf_program and
bpf_attach step by step.

A module run costs about 2-5 s of emulated CPU in a TCG guest (most of it importing and compiling
ansible's basic.py, which comes before any of ours), and the suite is CPU-bound on 2 cores: so the
hooks share each step's one run, and what they share in the attachment manager (check mode, a
re-run, a link pin removed by hand repaired, a second absent) is proven with bpf_attach on the
hooks this machine's kernel offers, in test_bpf_attach.py, not here.
"""
from __future__ import annotations

import base64
import json
import shlex
import subprocess
import time
from pathlib import Path

from tests.integration.test_vm_lab import KERNELS, REPO, counter, on_vms, ssh_json, vms
from tests.lab import labctl

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
BPFFS = "/sys/fs/bpf/ebpf_deploy"
N = 1000
# hook: (program of probe_hooks.bpf.c, its section, the map it counts into, a target bpf_attach must
# refuse, its words)
HOOKS = {
    "kprobe": ("kp_getpid", "kprobe/__x64_sys_getpid", "kprobe_calls",
               "ebpfd_no_such_function", "no kernel function 'ebpfd_no_such_function'"),
    "kretprobe": ("krp_getpid", "kretprobe/__x64_sys_getpid", "kretprobe_calls",
                  "__x64_sys_getpid+0x7fff0", "cannot place kretprobe __x64_sys_getpid+0x7fff0"),
    "fentry": ("fe_getpid", "fentry/__do_sys_getpid", "fentry_calls",
               "do_unlinkat", "target 'do_unlinkat' disagrees with '__do_sys_getpid'"),
    "fexit": ("fx_getpid", "fexit/__do_sys_getpid", "fexit_calls",
              "do_unlinkat", "target 'do_unlinkat' disagrees with '__do_sys_getpid'"),
    "uprobe": ("up_getpid", f"uprobe/{LIBC}:getpid", "uprobe_calls",
               f"{LIBC}:ebpfd_nope", f"no function 'ebpfd_nope' in {LIBC}"),
    "uretprobe": ("urp_getpid", f"uretprobe/{LIBC}:getpid", "uretprobe_calls",
                  "/usr/bin/ebpfd-nope:getpid", "cannot read binary /usr/bin/ebpfd-nope"),
    "lsm": ("lsm_open", "lsm/file_open", "lsm_opens",
            "bprm_check_security", "target 'bprm_check_security' disagrees with 'file_open'"),
}
# the guest process (python3 -c): prints its pid from /proc (not with getpid), then makes {n}
# getpid calls and {n} opens (getpid does not open, open does not call getpid)
CALLS = ('import os; print(open("/proc/self/stat").read().split()[0], flush=True); '
         '[os.getpid() for _ in range({n})]; [open("/etc/hostname").close() for _ in range({n})]')


def where(image: str) -> str:
    return f"{image} (kernel {KERNELS[image]})"


# Run in the guest in one ssh session (a TCG guest takes seconds per command): the process that
# makes n calls and the same one making none, then each map dumped once with the guest's bpftool;
# prints {map path: count(busy) - count(base)}.
_GUEST_COUNTS = """
import json, subprocess, sys
child, n, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def tgid(calls):
    out = subprocess.run(["python3", "-c", child.format(n=calls)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])
def number(field):   # bpftool without BTF: a list of hex bytes, little-endian
    return field if isinstance(field, int) else int.from_bytes(bytes(int(b, 16) for b in field), "little")
def counts(path):
    out = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", path], capture_output=True, text=True, check=True)
    entries = [e.get("formatted", e) for e in json.loads(out.stdout or "[]")]
    return {number(e["key"]): number(e["value"]) for e in entries}
base, busy = tgid(0), tgid(n)
dumps = {path: counts(path) for path in paths}
print(json.dumps({path: d.get(busy, 0) - d.get(base, 0) for path, d in dumps.items()}))
"""


def counted(lab, vm: str, child: str, n: int, maps: dict) -> dict:
    """{name: calls of a guest process making n calls beyond the same process making none} for
    maps {name: pinned map path} (the interpreter's own start-up calls are the same in both, so the
    difference is exact)."""
    script = base64.b64encode(_GUEST_COUNTS.encode()).decode()
    args = " ".join(shlex.quote(a) for a in (child, str(n), *maps.values()))
    proc = lab.ssh(vm, f"echo {script} | base64 -d > /tmp/ebpfd_counts.py && python3 /tmp/ebpfd_counts.py {args}; "
                       "rc=$?; rm -f /tmp/ebpfd_counts.py; exit $rc", timeout=300)
    assert proc.returncode == 0, (vm, proc.stdout, proc.stderr)
    by_path = json.loads(proc.stdout)
    return {name: by_path[path] for name, path in maps.items()}


def all_links(lab, vm: str) -> list:
    proc = lab.ssh(vm, "bpftool -j link show", timeout=120)
    assert proc.returncode == 0, (vm, proc.stderr)
    return json.loads(proc.stdout or "[]")


def one_line_failure(result: dict, image: str) -> str:
    assert result.get("failed") or result.get("_status") == "FAILED!", (image, result)
    msg = result["msg"]
    assert "\n" not in msg and "Traceback" not in msg, (image, msg)
    return msg


def loop_on_vms(lab, tmp_path: Path, module: str, items: list[dict], *, check: bool = False) -> dict[str, list]:
    """One task of `module` over `items` on every VM at once (one playbook: a TCG guest takes
    seconds per module run, the connection is paid once); the per-host item results."""
    keys = sorted({key for item in items for key in item})
    args = "\n".join(f"        {key}: \"{{{{ item.{key} | default(omit) }}}}\"" for key in keys)
    play = tmp_path / f"{module}-{len(list(tmp_path.iterdir()))}.yml"
    play.write_text(f"""---
- hosts: vm
  gather_facts: false
  tasks:
    - ebpf.deploy.{module}:
{args}
      loop: "{{{{ ebpfd_items }}}}"
      check_mode: {str(check).lower()}
      ignore_errors: true
""")
    extra = tmp_path / f"{play.stem}.json"
    extra.write_text(json.dumps({"ebpfd_items": items}))
    proc = subprocess.run(["ansible-playbook", "-i", str(lab.inventory), str(play), "-e", f"@{extra}"],
                          capture_output=True, text=True, cwd=REPO, timeout=900, check=False,
                          env=labctl.ansible_env(ANSIBLE_STDOUT_CALLBACK="oneline", ANSIBLE_LOAD_CALLBACK_PLUGINS="1"))
    results = labctl.parse_oneline(proc.stdout)
    assert sorted(results) == sorted(vms(lab)), proc.stdout + proc.stderr
    out = {vm: results[vm].get("results") for vm in results}
    assert all(isinstance(r, list) and len(r) == len(items) for r in out.values()), proc.stdout + proc.stderr
    return out


def test_every_probe_hook_counts_a_guest_process_s_calls_on_both_kernels(vm_lab, bpf_object, tmp_path):
    """probe_hooks.bpf.c, one program per hook, deployed by one bpf_deployment whose attach items take
    each hook and target from the program's section: check mode attaches nothing, the run attaches all
    seven and a guest process's N calls are counted by each, a re-run is unchanged, bpf_attach refuses
    a bad target per hook in one line with the links untouched, and state absent leaves no link and no
    program of the deployment."""
    lab = vm_lab
    name = f"ebpfd_vmh_{lab.prefix[5:]}"
    spec = {"name": name, "src": str(bpf_object("probe_hooks")), "attach": [{"program": row[0]} for row in HOOKS.values()]}
    removed = False
    try:
        _prove(lab, tmp_path, name, spec)
        removed = True
    finally:
        if not removed:
            on_vms(lab, "bpf_deployment", {"name": name, "state": "absent", "attach": spec["attach"]})


def _prove(lab, tmp_path, name: str, spec: dict) -> None:
    rows = list(HOOKS.items())
    maps = {hook: f"{BPFFS}/{name}/maps/{row[2]}" for hook, row in rows}

    def links_of(vm: str, prog_ids: set) -> list:
        return sorted(link["id"] for link in all_links(lab, vm) if link.get("prog_id") in prog_ids)

    before = {vm: {link["id"] for link in all_links(lab, vm)} for vm in vms(lab)}
    check = on_vms(lab, "bpf_deployment", spec, "--check")
    for vm, image in vms(lab).items():
        r = check[vm]
        assert r["_status"] == "CHANGED" and r["action"] == "load", (where(image), r)
        for (hook, row), item in zip(rows, r["attach"]):
            assert item["changed"] and item["action"] == "attach" and item["hook"] == hook, (where(image), hook, item)
            assert item["target"] == {"target": row[1].split("/", 1)[1]}, (where(image), hook, item)
        assert {link["id"] for link in all_links(lab, vm)} == before[vm], f"{where(image)}: check mode attached"
        assert lab.ssh(vm, f"test -e {BPFFS}/{name}").returncode == 1, f"{where(image)}: check mode pinned"

    run = on_vms(lab, "bpf_deployment", spec)
    prog_ids = {}
    for vm, image in vms(lab).items():
        r = run[vm]
        assert r["_status"] == "CHANGED" and r["action"] == "load", (where(image), r)
        prog_ids[vm] = {item["prog_id"] for item in r["attach"]}
        links = {link["prog_id"]: link["id"] for link in all_links(lab, vm) if link.get("prog_id") in prog_ids[vm]}
        for (hook, row), item in zip(rows, r["attach"]):
            assert item["changed"] and item["action"] == "attach" and item["program"] == row[0], (where(image), hook, item)
            assert links.get(item["prog_id"]) == item["link_id"], (where(image), hook, item, links)
            assert item["link_pin"] == f"{BPFFS}/{name}/links/{pin_key(row[1])}:{hook}", (where(image), item)
        got = counted(lab, vm, CALLS, N, maps)
        assert got == {hook: N for hook in HOOKS}, f"{where(image)}: not {N} calls counted: {got}"

    again = on_vms(lab, "bpf_deployment", spec)
    for vm, image in vms(lab).items():
        r = again[vm]
        assert r["_status"] == "SUCCESS" and r["action"] == "none", (where(image), r)
        assert all(not item["changed"] and item["action"] == "none" for item in r["attach"]), (where(image), r["attach"])

    bad = [{"deployment": name, "program": row[0], "section": row[1], "hook": hook, "target": row[3]} for hook, row in rows]
    refused = loop_on_vms(lab, tmp_path, "bpf_attach", bad)
    for vm, image in vms(lab).items():
        for (hook, row), r in zip(rows, refused[vm]):
            msg = one_line_failure(r, f"{where(image)} {hook}")
            assert row[4] in msg, (where(image), hook, msg)
        assert links_of(vm, prog_ids[vm]) == sorted(item["link_id"] for item in run[vm]["attach"]), \
            f"{where(image)}: a refused target changed the links"

    gone = on_vms(lab, "bpf_deployment", {"name": name, "state": "absent", "attach": spec["attach"]})
    for vm, image in vms(lab).items():
        assert gone[vm]["_status"] == "CHANGED", (where(image), gone[vm])
        assert links_of(vm, prog_ids[vm]) == [], f"{where(image)}: still linked after state absent"
        left = [p["id"] for p in ssh_json(lab, vm, "bpftool -j prog show") if p["id"] in prog_ids[vm]]
        assert left == [], f"{where(image)}: programs {left} still loaded after state absent"
        assert lab.ssh(vm, f"test -e {BPFFS}/{name}").returncode == 1, f"{where(image)}: pins left"


def pin_key(section: str) -> str:
    """The link pin's name before ``:<hook>``: the target, percent-encoded (the bpffs refuses dots)."""
    return "".join(ch if ch.isalnum() or ch in "_-" else "".join(f"%{b:02X}" for b in ch.encode())
                   for ch in section.split("/", 1)[1])


def tc_filters(lab, vm: str) -> list:
    """(pref, bpf program id) of each filter on eth0's clsact ingress, as the guest's tc reads them."""
    proc = lab.ssh(vm, "tc -j filter show dev eth0 ingress", timeout=120)
    assert proc.returncode == 0, (vm, proc.stderr)
    return [(f["pref"], ((f.get("options") or {}).get("prog") or {}).get("id"))
            for f in json.loads(proc.stdout or "[]") if f.get("kind") == "bpf" and "handle" in (f.get("options") or {})]


def test_tc_clsact_counts_the_peer_s_packets_on_a_kernel_without_tcx(vm_lab, bpf_object):
    """tc_ingress (a bpf filter under clsact) through a bpf_deployment attach item on the Debian 12 VM:
    its 6.1 has no tcx (kernel >= 6.6), so clsact is how a classifier attaches there (on 6.12 tcx
    would do, and clsact is proven on this machine's 6.18, test_bpf_attach_tc.py). Packets from the
    peer are counted exactly, a re-run is unchanged, state absent removes the filter and the qdisc."""
    lab = vm_lab
    image = "debian12"
    name = f"ebpfd_vmtc_{lab.prefix[5:]}"
    attach = [{"program": "tc_count", "hook": "tc_ingress", "interface": "eth0"}]
    spec = {"name": name, "src": str(bpf_object("tc_counter")), "attach": attach}
    try:
        run = on_vms(lab, "bpf_deployment", spec, only=image)
        for vm in vms(lab, image):
            r = run[vm]
            assert r["_status"] == "CHANGED" and r["attach"][0]["action"] == "attach", (where(image), r)
            assert tc_filters(lab, vm) == [(1, r["attach"][0]["prog_id"])], (where(image), tc_filters(lab, vm))
            assert lab.traffic(vm, count=300)["sent"] == 300
        time.sleep(0.5)
        for vm in vms(lab, image):
            assert counter(lab, vm, name) == 300, f"{where(image)}: tc ingress did not count the peer's 300 packets"
        again = on_vms(lab, "bpf_deployment", spec, only=image)
        assert all(r["_status"] == "SUCCESS" and r["action"] == "none" for r in again.values()), again
    finally:
        gone = on_vms(lab, "bpf_deployment", {"name": name, "state": "absent", "attach": attach}, only=image)
    for vm in vms(lab, image):
        assert gone[vm]["_status"] == "CHANGED", (where(image), gone[vm])
        assert tc_filters(lab, vm) == [], where(image)
        qdiscs = json.loads(lab.ssh(vm, "tc -j qdisc show dev eth0", timeout=120).stdout or "[]")
        assert not any(q.get("kind") == "clsact" for q in qdiscs), (where(image), qdiscs)


def test_freplace_replaces_a_global_function_of_a_running_program_on_both_kernels(vm_lab, bpf_object, tmp_path):
    """freplace on both VMs: freplace_target's kprobe program (deployed with bpf_program, attached with
    bpf_attach) counts a guest process's N getpid calls in `entries` while its global ebpfd_policy() returns 0.
    freplace_policy, loaded with attach_program (the target's pin) and attached with hook freplace (check
    mode first: nothing attached), returns 1 in its place: the next N calls count in `replaced` and none in
    `entries`. A re-run is unchanged; a target naming a function the program lacks is refused in one line with
    the link untouched. An upgrade to freplace_policy_v2 releases the old link before it attaches the new one
    (a function takes one extension: detach_attach). State absent releases the link and counting goes back
    to `entries`."""
    lab = vm_lab
    tag = lab.prefix[5:]
    target_dep, policy_dep = f"ebpfd_vmfr_{tag}_target", f"ebpfd_vmfr_{tag}_policy"
    maps = {name: f"{BPFFS}/{target_dep}/maps/{name}" for name in ("entries", "replaced")}
    try:
        loaded = loop_on_vms(lab, tmp_path, "bpf_program", [{"name": target_dep, "src": str(bpf_object("freplace_target"))}])
        pins = {vm: loaded[vm][0]["programs"][0]["pin"] for vm in vms(lab)}
        assert len(set(pins.values())) == 1, f"one object, one version, one pin on both VMs: {pins}"
        pin = next(iter(pins.values()))
        kprobe = loop_on_vms(lab, tmp_path, "bpf_attach", [{"deployment": target_dep, "program": "fr_getpid",
                                                            "section": "kprobe/__x64_sys_getpid"}])
        for vm, image in vms(lab).items():
            assert kprobe[vm][0]["changed"] and kprobe[vm][0]["action"] == "attach", (where(image), kprobe[vm])
            got = counted(lab, vm, CALLS, N, maps)
            assert got == {"entries": N, "replaced": 0}, f"{where(image)}: the target program did not count: {got}"
        _prove_freplace(lab, tmp_path, bpf_object, pin, policy_dep, maps)
    finally:
        loop_on_vms(lab, tmp_path, "bpf_program", [{"name": name, "state": "absent"} for name in (policy_dep, target_dep)])


def _load_policy(lab, tmp_path, bpf_object, policy_dep: str, fixture: str, pin: str) -> dict:
    """{vm: program id} of an freplace_policy object loaded for the target pinned at `pin`."""
    loaded = loop_on_vms(lab, tmp_path, "bpf_program", [{"name": policy_dep, "attach_program": pin,
                                                         "src": str(bpf_object(fixture))}])
    for vm, image in vms(lab).items():
        r = loaded[vm][0]
        assert r["changed"] and r["programs"][0]["type"] == "ext", (where(image), fixture, r)
    return {vm: loaded[vm][0]["programs"][0]["id"] for vm in vms(lab)}


def _prove_freplace(lab, tmp_path, bpf_object, pin: str, policy_dep: str, maps: dict) -> None:
    v1 = _load_policy(lab, tmp_path, bpf_object, policy_dep, "freplace_policy", pin)
    item = {"deployment": policy_dep, "program": "ebpfd_policy", "section": "freplace/ebpfd_policy",
            "target": f"{pin}:ebpfd_policy"}
    link_pin = f"{BPFFS}/{policy_dep}/links/{pin_key('freplace/' + item['target'])}:freplace"

    def linked(vm: str, ids: dict) -> list:
        return [link["id"] for link in all_links(lab, vm) if link.get("prog_id") == ids[vm]]

    check = loop_on_vms(lab, tmp_path, "bpf_attach", [item], check=True)
    for vm, image in vms(lab).items():
        r = check[vm][0]
        assert r["changed"] and r["action"] == "attach" and r["target"] == {"target": item["target"]}, (where(image), r)
        assert linked(vm, v1) == [], f"{where(image)}: check mode attached {linked(vm, v1)}"

    run = loop_on_vms(lab, tmp_path, "bpf_attach", [item])
    for vm, image in vms(lab).items():
        r = run[vm][0]
        assert r["changed"] and r["action"] == "attach" and r["hook"] == "freplace", (where(image), r)
        assert r["prog_id"] == v1[vm] and linked(vm, v1) == [r["link_id"]] and r["link_pin"] == link_pin, \
            (where(image), r, linked(vm, v1))
        got = counted(lab, vm, CALLS, N, maps)
        assert got == {"entries": 0, "replaced": N}, f"{where(image)}: ebpfd_policy was not replaced: {got}"

    # the same item again (unchanged) and one naming a function the target program lacks (refused)
    again = loop_on_vms(lab, tmp_path, "bpf_attach", [item, dict(item, target=f"{pin}:ebpfd_nope")])
    for vm, image in vms(lab).items():
        same, bad = again[vm]
        assert not same["changed"] and same["action"] == "none" and "drift" not in same, (where(image), same)
        msg = one_line_failure(bad, where(image))
        assert f"at {pin} has no function 'ebpfd_nope' in its BTF (its global functions: ebpfd_policy, fr_getpid)" \
            in msg, (where(image), msg)
        assert linked(vm, v1) == [run[vm][0]["link_id"]], f"{where(image)}: a refused target changed the link"

    # an upgrade: one extension per function and no detach, so the old link is released, then the new one attached
    v2 = _load_policy(lab, tmp_path, bpf_object, policy_dep, "freplace_policy_v2", pin)
    upgraded = loop_on_vms(lab, tmp_path, "bpf_attach", [item])
    for vm, image in vms(lab).items():
        r = upgraded[vm][0]
        assert r["changed"] and r["action"] == "detach_attach" and r["prog_id"] == v2[vm], (where(image), r)
        assert linked(vm, v2) == [r["link_id"]] and linked(vm, v1) == [], (where(image), linked(vm, v1), linked(vm, v2))
        got = counted(lab, vm, CALLS, N, maps)
        assert got == {"entries": 0, "replaced": N}, f"{where(image)}: v2 does not replace ebpfd_policy: {got}"

    gone = loop_on_vms(lab, tmp_path, "bpf_attach", [dict(item, state="absent")])
    for vm, image in vms(lab).items():
        assert gone[vm][0]["changed"] and gone[vm][0]["action"] == "detach", (where(image), gone[vm])
        assert linked(vm, v2) == [], f"{where(image)}: still linked: {linked(vm, v2)}"
        got = counted(lab, vm, CALLS, N, maps)
        assert got == {"entries": N, "replaced": 0}, f"{where(image)}: still replaced after state absent: {got}"
