"""bpf_deployment's attach items: which hook an item names (its option, else its program's ELF
section, else XDP for an interface), and the refusals that come before anything loads."""
from __future__ import annotations

import pytest

from ansible_collections.ebpf.deploy.plugins.module_utils import _attach_item as items
from ansible_collections.ebpf.deploy.plugins.module_utils._errors import InvalidInput


def test_the_section_names_the_hook_and_a_tracepoint_its_target():
    assert items.hook_of({"program": "p", "interface": "eth0"}, section="tcx/ingress").hook == "tcx_ingress"
    found = items.hook_of({"program": "p"}, section="tracepoint/syscalls/sys_enter_getpid")
    assert (found.hook, found.target) == ("tracepoint", "syscalls/sys_enter_getpid")
    assert items.hook_of({"program": "p", "hook": "tcx_egress"}, section="tcx/ingress").hook == "tcx_egress"
    # an explicit target wins over the section's
    assert items.hook_of({"program": "p", "target": "sched/sched_switch"},
                         section="tp/syscalls/sys_enter_getpid").target == "sched/sched_switch"


def test_an_interface_without_a_hook_in_the_section_stays_xdp():
    for section in ("xdp", None, "classifier", "tc"):
        assert items.hook_of({"program": "p", "interface": "eth0"}, section=section).hook == "xdp"


def test_no_hook_and_no_interface_is_refused():
    with pytest.raises(InvalidInput, match=r"cannot tell the hook of program 'p' \(section 'tc' does not say"):
        items.hook_of({"program": "p"}, section="tc")


def test_a_program_the_hook_does_not_take_is_refused_before_anything_loads():
    with pytest.raises(InvalidInput, match="'p' \\(section tcx/ingress\\) is a sched_cls program; hook "
                                           "cgroup_skb_egress takes cgroup_skb programs"):
        items.hook_of({"program": "p", "hook": "cgroup_skb_egress"}, section="tcx/ingress")
    with pytest.raises(InvalidInput, match="\\(program_type xdp\\) is a xdp program; hook tcx_ingress"):
        items.hook_of({"program": "p", "hook": "tcx_ingress"}, section=None, program_type="xdp")
    # program_type wins over the section (libbpf 1.1 objects set it for tcx/ sections)
    assert items.hook_of({"program": "p"}, section="tcx/ingress", program_type="sched_cls").hook == "tcx_ingress"


def test_xdp_items_keep_their_label_and_need_an_interface():
    item = items.resolve({"program": "p", "interface": "eth0", "netns": "blue"}, root="/r", name="d",
                         sections={"p": "xdp"})
    assert (item.hook, item.label, item.xdp) == ("xdp", "blue@eth0", True)
    assert "hook" not in item.spec   # recorded as before
    with pytest.raises(InvalidInput, match="on hook xdp needs interface"):
        items.resolve({"program": "p", "hook": "xdp"}, root="/r", name="d", sections={})


def test_xdp_options_on_another_hook_are_refused():
    with pytest.raises(InvalidInput, match="program 'p': mode is an XDP option; hook tcx_ingress does not take it"):
        items.resolve({"program": "p", "interface": "eth0", "mode": "generic"}, root="/r", name="d",
                      sections={"p": "tcx/ingress"})
    with pytest.raises(InvalidInput, match="method netlink is XDP's"):
        items.resolve({"program": "p", "interface": "eth0", "method": "netlink"}, root="/r", name="d",
                      sections={"p": "tcx/ingress"})
    with pytest.raises(InvalidInput, match="program 'p': priority is an option of netfilter and tc hooks; "
                                           "hook cgroup_skb_egress does not take it"):
        items.resolve({"program": "p", "cgroup": "/sys/fs/cgroup", "priority": 5}, root="/r", name="d",
                      sections={"p": "cgroup_skb/egress"})


def test_the_request_of_an_item_is_bpf_attachs():
    req = items.request("/r", "d", {"program": "p", "hook": "tcx_ingress", "interface": "eth0", "before": 7,
                                    "force": None, "mode": None})
    assert (req.hook, req.interface, req.deployment, req.program, req.bpffs_root) == (
        "tcx_ingress", "eth0", "d", "p", "/r")
    assert req.before == "7" and req.force is False and req.state == "present"
    gone = items.request("/r", "d", {"program": "p", "hook": "tcx_ingress"}, state="absent", force=True)
    assert gone.state == "absent" and gone.force is True


def test_the_sections_of_an_object_are_read_without_libbpf():
    from tests import helpers
    path = helpers.BPF_DIR / "tcx_counter_v2.bpf.o"
    if not path.exists():
        pytest.skip(f"{path} missing: run `make bpf`")
    assert items.program_sections(path.read_bytes()) == {"tcx_count": "tcx/ingress",
                                                         "tcx_count_egress": "tcx/egress"}
    assert items.program_sections(b"not an object") == {}


def test_the_request_carries_the_item_s_section():
    """fentry/fexit/lsm attach where they were loaded for, which the section names: the request takes
    the section the item was resolved with (before the run loads a version, none is recorded)."""
    req = items.request("/r", "d", {"program": "fe", "hook": "fentry", "section": "fentry/__do_sys_getpid"})
    assert (req.hook, req.section, req.deployment, req.program) == ("fentry", "fentry/__do_sys_getpid", "d", "fe")
    assert items.request("/r", "d", {"program": "p", "hook": "tcx_ingress", "interface": "eth0"}).section is None
