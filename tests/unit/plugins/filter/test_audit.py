"""Fleet audit summaries from bpf_facts."""
from ansible_collections.ebpf.deploy.plugins.filter.audit import audit_inconsistent, audit_summary

FACTS = {
    "kernel": {"release": "6.18.0"},
    "programs": [{"id": 7, "name": "xdp_packet_coun", "program": "xdp_packet_counter",
                  "deployment": "pktcount", "version": "aaaaaaaaaaaa"},
                 {"id": 9, "name": "foreign", "deployment": None}],
    "deployments": {"pktcount": {"current": "aaaaaaaaaaaa", "previous": None,
                                 "versions": {"aaaaaaaaaaaa": {"xdp_packet_counter": 7}},
                                 "maps": {"pkt_count": 3}, "links": {"eth0:xdp": 4}}},
    "xdp": [{"interface": "eth0", "netns": None, "mode": "native", "prog_id": 7},
            {"interface": "eth1", "netns": None, "mode": "generic", "prog_id": 9},
            {"interface": "lo", "netns": None, "mode": None, "prog_id": None}],
    "dmesg": {"lines": [{"message": "Illegal XDP return value"}], "cursor": 5},
}


def test_summary_names_owner_of_each_attachment():
    summary = audit_summary(FACTS)
    assert summary["kernel"] == "6.18.0"
    assert summary["deployments"]["pktcount"]["current"] == "aaaaaaaaaaaa"
    assert summary["deployments"]["pktcount"]["links"] == ["eth0:xdp"]
    (ours, foreign) = summary["attachments"]
    assert (ours["deployment"], ours["program"], ours["version"]) == ("pktcount", "xdp_packet_counter", "aaaaaaaaaaaa")
    assert foreign["deployment"] is None and foreign["program"] == "foreign"
    assert summary["dmesg"] == ["Illegal XDP return value"]


def test_inconsistent_versions_across_hosts():
    same = {"h1": audit_summary(FACTS), "h2": audit_summary(FACTS)}
    assert audit_inconsistent(same) == {}
    other = audit_summary(dict(FACTS, deployments={"pktcount": {"current": "bbbbbbbbbbbb"}}))
    assert audit_inconsistent({"h1": audit_summary(FACTS), "h2": other}) == {
        "pktcount": {"aaaaaaaaaaaa": ["h1"], "bbbbbbbbbbbb": ["h2"]}}


def test_map_reads_are_kept_by_deployment_and_map():
    reads = [{"item": {"deployment": "pktcount", "map": "pkt_count"}, "entries": [{"key": 0, "value": 5}]},
             {"item": {"deployment": "fw", "map": "nope"}, "failed": True, "msg": "no such map"}]
    assert audit_summary(FACTS, reads)["maps"] == {"pktcount/pkt_count": [{"key": 0, "value": 5}],
                                                   "fw/nope": "no such map"}


def test_the_audit_shows_only_bpf_xdp_lines_not_what_every_boot_prints():
    """The audit printed this host's boot ("LSM: initializing lsm=...,bpf") as "kernel lines"."""
    boot = ["Spectre V2 : Enabling IBPB for BPF", "LSM: initializing lsm=lockdown,capability,landlock,bpf",
            "LSM support for eBPF active", "NET: Registered PF_XDP protocol family"]
    facts = dict(FACTS, dmesg={"lines": [{"message": m} for m in boot + ["Illegal XDP return value 7"]]})
    assert audit_summary(facts)["dmesg"] == ["Illegal XDP return value 7"]


def test_textfile_says_what_runs_what_is_attached_and_the_record():
    from ansible_collections.ebpf.deploy.plugins.filter.audit import audit_textfile
    facts = dict(FACTS, programs=[dict(FACTS["programs"][0], run_cnt=42), FACTS["programs"][1]],
                 record={"deployments": {
                     "pktcount": {"committed": "aaaaaaaaaaaa", "pending": {"version": "bbbbbbbbbbbb"},
                                  "last": {"action": "rollback", "by": "watcher", "at": 1700000000.5,
                                           "version": "aaaaaaaaaaaa"}},
                     "torn": {"error": "state.json is torn"}}})
    lines = audit_textfile(facts, 1700000100).splitlines()
    assert 'ebpf_deploy_info{deployment="pktcount",version="aaaaaaaaaaaa"} 1' in lines
    assert ('ebpf_deploy_program_runs_total{deployment="pktcount",version="aaaaaaaaaaaa",'
            'program="xdp_packet_counter"} 42') in lines
    assert 'ebpf_deploy_xdp_attached{interface="eth0",netns="",mode="native",deployment="pktcount",' \
           'version="aaaaaaaaaaaa"} 1' in lines
    assert 'ebpf_deploy_xdp_attached{interface="eth1",netns="",mode="generic",deployment="",version=""} 1' in lines
    assert 'ebpf_deploy_record_pending{deployment="pktcount",committed="aaaaaaaaaaaa"} 1' in lines
    assert ('ebpf_deploy_record_last_transition_timestamp_seconds{deployment="pktcount",action="rollback",'
            'by="watcher",version="aaaaaaaaaaaa"} 1700000000.5') in lines
    assert not [line for line in lines if "torn" in line], "a damaged record is no metric"
    assert "ebpf_deploy_audit_timestamp_seconds 1700000100.0" in lines
    names = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(names) == len(set(names)) == 6
    samples = [line for line in lines if not line.startswith("#")]
    assert all(line.split("{")[0].split()[0] in names for line in samples)


def test_textfile_label_values_are_escaped():
    from ansible_collections.ebpf.deploy.plugins.filter.audit import audit_textfile
    text = audit_textfile({"deployments": {'we"ird\\name': {"current": "v\n1"}}})
    assert 'ebpf_deploy_info{deployment="we\\"ird\\\\name",version="v\\n1"} 1' in text.splitlines()
