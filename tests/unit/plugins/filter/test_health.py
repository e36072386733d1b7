"""Health check evaluation: each check type passes and fails on the observations that decide it."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.ebpf.deploy.plugins.filter.health import health_evaluate, jmespath_condition

ENTRIES = [{"key": 0, "value": 42}]


def only(checks, observations):
    (result,) = health_evaluate(checks, observations)
    return result


def test_map_condition_over_decoded_entries():
    assert jmespath_condition(ENTRIES, "[0].value", "> `0`") is True
    assert jmespath_condition([{"key": 0, "value": 0}], "[0].value", "> `0`") is False


def test_map_check_names_the_value_it_saw():
    result = only([{"type": "map", "map": "pkt_count", "query": "[0].value", "condition": "> `100`"}],
                  {"maps": {"0": ENTRIES}})
    assert not result["passed"]
    assert "42" in result["detail"] and "> `100`" in result["detail"]


def test_map_check_fails_when_the_map_was_not_read():
    assert not only([{"type": "map", "map": "x", "query": "[0].value"}], {"maps": {}})["passed"]


def test_invalid_query_is_a_clear_error():
    with pytest.raises(AnsibleFilterError, match="invalid health query"):
        jmespath_condition(ENTRIES, "[0].value", "> > 1")


def test_interface_drop_ratio_over_the_soak():
    check = {"type": "interface", "interface": "eth0", "max_drop_ratio": 0.01}
    healthy = {"interfaces_before": {"eth0": {"rx_packets": 100, "rx_dropped": 0}},
               "interfaces_after": {"eth0": {"rx_packets": 1100, "rx_dropped": 5}}}
    dropping = {"interfaces_before": {"eth0": {"rx_packets": 100, "xdp_dropped": 0}},
                "interfaces_after": {"eth0": {"rx_packets": 100, "xdp_dropped": 1000}}}
    assert only([check], healthy)["passed"]
    result = only([check], dropping)
    assert not result["passed"] and "1000 of 1000" in result["detail"]


def test_interface_minimum_traffic():
    check = {"type": "interface", "interface": "eth0", "max_drop_ratio": 1, "min_packets": 10}
    obs = {"interfaces_before": {"eth0": {"rx_packets": 5}}, "interfaces_after": {"eth0": {"rx_packets": 7}}}
    assert not only([check], obs)["passed"]


def test_missing_interface_fails():
    assert not only([{"type": "interface", "interface": "eth9"}], {})["passed"]


def test_dmesg_new_lines_fail_and_ignored_patterns_pass():
    lines = [{"message": "Illegal XDP return value 9 on prog xdp_x (id 7) dev eth0"}]
    assert not only([{"type": "dmesg"}], {"dmesg": lines})["passed"]
    assert only([{"type": "dmesg", "ignore": ["Illegal XDP"]}], {"dmesg": lines})["passed"]
    assert only([{"type": "dmesg"}], {"dmesg": []})["passed"]


def test_attached_and_program_runs():
    assert only([{"type": "attached"}], {"attached": [{"name": "pktcount eth0", "ok": True}]})["passed"]
    drift = only([{"type": "attached"}], {"attached": [{"name": "pktcount eth0", "ok": False}]})
    assert not drift["passed"] and "pktcount eth0" in drift["detail"]
    assert not only([{"type": "attached"}], {})["passed"]
    assert only([{"type": "program_runs", "min_runs": 3}], {"program_runs": {"xdp": 3}})["passed"]
    assert not only([{"type": "program_runs", "min_runs": 3}], {"program_runs": {"xdp": 2}})["passed"]


def test_command_rc():
    check = [{"type": "command", "cmd": ["/bin/probe"]}]
    assert only(check, {"commands": {"0": {"rc": 0}}})["passed"]
    failed = only(check, {"commands": {"0": {"rc": 3, "stderr": "probe: backend down"}}})
    assert not failed["passed"] and "backend down" in failed["detail"]


def test_a_probe_shipped_inline_is_shown_by_its_size_not_its_source():
    source = "import sys\nsys.exit(1)\n"
    check = [{"type": "command", "cmd": ["/usr/bin/python3", "-c", source, "10.0.0.2", "9"]}]
    failed = only(check, {"commands": {"0": {"rc": 1, "stderr": "did not answer"}}})
    assert failed["detail"] == "/usr/bin/python3 -c <2-line script> 10.0.0.2 9 exited 1: did not answer", failed


def test_unknown_type_is_refused():
    with pytest.raises(AnsibleFilterError, match="unknown type"):
        health_evaluate([{"type": "bogus"}], {})


def test_observations_from_registered_results():
    """The shapes bpf_facts, bpf_map and command register become observations."""
    def facts(run_cnt, rx, drops, prog_on_eth0=7):
        return {"ansible_facts": {"ebpf": {
            "programs": [
                {"id": 7, "name": "xdp_packet_coun", "program": "xdp_packet_counter", "deployment": "pkt",
                 "version": "aaaaaaaaaaaa", "run_cnt": run_cnt},
                {"id": 5, "name": "xdp_packet_coun", "program": "xdp_packet_counter", "deployment": "pkt",
                 "version": "bbbbbbbbbbbb", "run_cnt": 1000},
                {"id": 9, "name": "other", "deployment": None, "run_cnt": 50}],
            "deployments": {"pkt": {"current": "aaaaaaaaaaaa",
                                    "versions": {"aaaaaaaaaaaa": {"xdp_packet_counter": 7},
                                                 "bbbbbbbbbbbb": {"xdp_packet_counter": 5}}}},
            "xdp": [{"interface": "eth0", "netns": None, "prog_id": prog_on_eth0, "mode": "generic"},
                    {"interface": "eth1", "netns": "blue", "prog_id": 7, "mode": "native"}],
            "interfaces": [{"interface": "eth0", "netns": None, "rx_packets": rx, "rx_dropped": 0, "xdp_drops": drops},
                           {"interface": "eth1", "netns": "blue", "rx_packets": 0, "rx_dropped": 0, "xdp_drops": None}],
            "dmesg": {"lines": [{"message": "new line"}], "cursor": 12}}}}

    raw = {
        "facts_before": facts(10, 100, 0), "facts_after": facts(40, 150, 25, prog_on_eth0=5),
        "maps": {"results": [{"skipped": True}, {"__rollout_check_index": 1, "entries": ENTRIES}]},
        "commands": {"results": [{"skipped": True}, {"skipped": True}, {"rc": 0}]},
        "deployments": [{"name": "pkt", "attach": [
            {"program": "xdp_packet_counter", "interface": "eth0"},
            {"program": "xdp_packet_counter", "interface": "eth1", "netns": "blue", "mode": "generic"},
            {"program": "xdp_packet_counter", "interface": "eth9"}]}],
    }
    from ansible_collections.ebpf.deploy.plugins.filter.health import health_observations
    obs = health_observations(raw)
    assert obs["program_runs"] == {"pkt/xdp_packet_counter": 30}, "only the current version counts"
    assert obs["attached"] == [
        {"name": "pkt xdp_packet_counter on eth0 (program id 5 attached, not 7)", "ok": False},
        {"name": "pkt xdp_packet_counter on eth1 (mode native, not generic)", "ok": False},
        {"name": "pkt xdp_packet_counter on eth9 (interface not found)", "ok": False}]
    raw["facts_after"] = facts(40, 150, 25)
    raw["deployments"][0]["attach"][1].pop("mode")
    assert [a["ok"] for a in health_observations(raw)["attached"]] == [True, True, False]
    assert obs["maps"] == {"1": ENTRIES}
    assert obs["commands"] == {"2": {"rc": 0}}
    assert obs["dmesg"] == [{"message": "new line"}]
    result = only([{"type": "interface", "interface": "eth0", "max_drop_ratio": 0.1}], obs)
    assert not result["passed"] and "25 of 75" in result["detail"]
    assert "blue/eth1" in obs["interfaces_after"]


def test_attached_from_the_switch_when_no_facts_were_read():
    """Soak 0 and only `attached`: the bpf_deployment results of the switch are the observation."""
    from ansible_collections.ebpf.deploy.plugins.filter.health import health_observations
    switch = {"results": [
        {"item": {"name": "pkt"}, "attach": [{"program": "xdp_packet_counter", "interface": "eth0", "prog_id": 7}]},
        {"item": {"name": "fw"}, "attach": [{"program": "xdp_fw", "interface": "eth1", "prog_id": None}]},
        {"item": {"name": "skipped"}, "skipped": True}]}
    obs = health_observations({"facts_before": {"skipped": True}, "facts_after": {"skipped": True},
                               "switch": switch, "deployments": [{"name": "pkt"}, {"name": "fw"}]})
    assert obs["attached"] == [{"name": "pkt xdp_packet_counter on eth0", "ok": True},
                               {"name": "fw xdp_fw on eth1 (not attached)", "ok": False}]


def test_rollout_order_canary_first_then_waves_in_inventory_order():
    from ansible_collections.ebpf.deploy.plugins.filter.rollout import rollout_order
    hostvars = {"h1": {"group_names": ["lab"]}, "h2": {"group_names": ["lab"], "rollout_wave": 2},
                "h3": {"group_names": ["lab", "canary"]}, "h4": {"group_names": ["lab"], "rollout_wave": 1},
                "h5": {"group_names": ["lab"], "rollout_wave": 1}}
    assert rollout_order(["h1", "h2", "h3", "h4", "h5"], hostvars) == ["h3", "h4", "h5", "h2", "h1"]


def test_rollout_versions_from_the_switch():
    from ansible_collections.ebpf.deploy.plugins.filter.rollout import rollout_versions
    results = [
        {"item": {"name": "a"}, "action": "load", "version": "222222222222", "previous_version": "111111111111",
         "changed": True},
        {"item": {"name": "b"}, "action": "none", "version": "333333333333", "previous_version": "000000000000",
         "changed": True},  # only an attachment was repaired
        {"item": {"name": "c"}, "action": "none", "version": "444444444444", "changed": False},
        {"item": {"name": "d"}, "action": "none", "version": "555555555555", "changed": True,
         "pending": True, "record": {"pending": {"version": "555555555555", "deadline": 1764590400.0}}}]
    # d: the kernel already ran it, but the host's record had not committed it
    assert rollout_versions(results) == [
        {"name": "a", "before": "111111111111", "after": "222222222222", "changed": True, "pending": False,
         "deadline": None, "converged": True},
        {"name": "b", "before": "333333333333", "after": "333333333333", "changed": False, "pending": False,
         "deadline": None, "converged": True},
        {"name": "c", "before": "444444444444", "after": "444444444444", "changed": False, "pending": False,
         "deadline": None, "converged": False},
        {"name": "d", "before": "555555555555", "after": "555555555555", "changed": True, "pending": True,
         "deadline": 1764590400.0, "converged": True}]


def test_rollout_converged_needs_every_check_to_have_run_and_changed_nothing():
    from ansible_collections.ebpf.deploy.plugins.filter.rollout import rollout_converged
    ok = {"action": "none", "changed": False, "failed": False}
    hostvars = {
        "same": {"__rollout_converged_check": {"results": [ok, ok]}},
        "new_version": {"__rollout_converged_check": {"results": [ok, dict(ok, action="load", changed=True)]}},
        "drifted": {"__rollout_converged_check": {"results": [dict(ok, changed=True)]}},
        # failed_when: false turns a refusal into failed=False: only the missing `action` shows it
        "refused": {"__rollout_converged_check": {"results": [{"failed": False, "msg": "rejected by the verifier"}]}},
        "lost": {"__rollout_converged_check": {"results": [{"unreachable": True, "msg": "ssh: refused"}]}},
        "never_checked": {},
    }
    assert rollout_converged(list(hostvars), hostvars) == ["same"]


def test_rollout_unreachable_finds_lost_hosts_in_plain_and_loop_results():
    from ansible_collections.ebpf.deploy.plugins.filter.rollout import rollout_unreachable
    assert rollout_unreachable([{}, {"results": [{"changed": True}]}, {"skipped": True}]) == []
    assert rollout_unreachable([{"results": [{"ok": 1}, {"unreachable": True, "msg": "gone"}]}]) == ["gone"]
    assert rollout_unreachable([{"unreachable": True}]) == ["unreachable"]


def test_dmesg_shows_only_bpf_lines_and_a_reboot_during_the_soak_fails_the_check():
    boot = [{"message": "LSM: initializing lsm=lockdown,capability,landlock,bpf"},
            {"message": "NET: Registered PF_XDP protocol family"}]
    assert only([{"type": "dmesg"}], {"dmesg": boot})["passed"]
    rebooted = only([{"type": "dmesg"}], {"dmesg": [], "dmesg_rebooted": True})
    assert not rebooted["passed"] and "rebooted" in rebooted["detail"]


def test_attached_judges_every_hook_from_the_links_under_links():
    """A tcx, cgroup or tracepoint item is judged by the deployment's link pinned for it (the hook
    from the item, or the first link on its interface); XDP items by the interface, as before."""
    from ansible_collections.ebpf.deploy.plugins.filter.health import health_observations

    def facts(tcx_prog, cgroup_link=True):
        attachments = {"h@veth0:tcx_ingress": {"hook": "tcx_ingress", "link_id": 3, "prog_id": tcx_prog},
                       "eth0:xdp": {"hook": "xdp", "link_id": 4, "prog_id": 8}}
        if cgroup_link:
            attachments["svc:cgroup_skb_egress"] = {"hook": "cgroup_skb_egress", "link_id": 5, "prog_id": None}
        return {"ansible_facts": {"ebpf": {
            "deployments": {"pkt": {"current": "aaaaaaaaaaaa", "attachments": attachments,
                                    "versions": {"aaaaaaaaaaaa": {"tcx_count": 7, "xdp_count": 8, "cg": 9}}}},
            "xdp": [{"interface": "eth0", "netns": None, "prog_id": 8, "mode": "generic"}]}}}

    raw = {"facts_after": facts(7), "deployments": [{"name": "pkt", "attach": [
        {"program": "tcx_count", "interface": "veth0", "netns": "h"},   # hook from its section
        {"program": "xdp_count", "interface": "eth0"},
        {"program": "cg", "hook": "cgroup_skb_egress", "cgroup": "svc"},
        {"program": "tcx_count", "hook": "tcx_egress", "interface": "veth0", "netns": "h"}]}]}
    assert health_observations(raw)["attached"] == [
        {"name": "pkt tcx_count on h@veth0:tcx_ingress", "ok": True},
        {"name": "pkt xdp_count on eth0", "ok": True},
        {"name": "pkt cg on svc:cgroup_skb_egress (the pinned link is gone from the kernel)", "ok": False},
        {"name": "pkt tcx_count on tcx_egress (no link pinned)", "ok": False}]
    raw["facts_after"] = facts(5, cgroup_link=False)
    judged = health_observations(raw)["attached"]
    assert judged[0] == {"name": "pkt tcx_count on h@veth0:tcx_ingress (program id 5 attached, not 7)", "ok": False}
    assert judged[2] == {"name": "pkt cg on cgroup_skb_egress (no link pinned)", "ok": False}
