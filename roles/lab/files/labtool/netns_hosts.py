"""One network-namespace host: what is wrong with it, creating, removing and converging it;
the management bridge.

Part of the lab tool (package docstring: the whole picture). Standard library only.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from labtool.commands import ip_batch, run, sha
from labtool.errors import LabError
from labtool.namespaces import (
    _has_addr, _has_neigh, _is_up, _ns_view, in_netns, netns_names, pids_in_netns, write_sysctl,
)
from labtool.naming import DATA_SUBNET_PREFIXLEN, HostSpec, LabConfig
from labtool.processes import kill_pids
from labtool.sshd import close_ssh_masters, sshd_config, sshd_problems, start_sshd, write_host_files


def network_problems(cfg: LabConfig, host: HostSpec, root_links: dict[str, dict], namespaces: set[str]) -> list[str]:
    problems = []
    for ns in (host.name, host.peer_ns):
        if ns not in namespaces:
            problems.append(f"netns {ns} missing")
    if problems:
        return problems
    links, neighs = _ns_view(host.name)
    if not _is_up(links.get("lo")):
        problems.append(f"{host.name}: lo not up")
    eth0, mgmt0 = links.get("eth0"), links.get("mgmt0")
    if not (_is_up(eth0) and eth0.get("address") == host.host_mac
            and _has_addr(eth0, host.data_address, DATA_SUBNET_PREFIXLEN)):
        problems.append(f"{host.name}: eth0 missing, down or misaddressed")
    if not (_is_up(mgmt0) and mgmt0.get("address") == host.mgmt_mac
            and _has_addr(mgmt0, host.mgmt_address, host.mgmt_prefixlen)):
        problems.append(f"{host.name}: mgmt0 missing, down or misaddressed")
    if not _has_neigh(neighs, host.peer_address, host.peer_mac):
        problems.append(f"{host.name}: permanent neighbour {host.peer_address} missing")
    plinks, pneighs = _ns_view(host.peer_ns)
    peth0 = plinks.get("eth0")
    if not (_is_up(plinks.get("lo")) and _is_up(peth0) and peth0.get("address") == host.peer_mac
            and _has_addr(peth0, host.peer_address, DATA_SUBNET_PREFIXLEN)):
        problems.append(f"{host.peer_ns}: eth0 or lo missing, down or misaddressed")
    if not _has_neigh(pneighs, host.data_address, host.host_mac):
        problems.append(f"{host.peer_ns}: permanent neighbour {host.data_address} missing")
    rlink = root_links.get(host.root_if)
    if not _is_up(rlink):
        problems.append(f"{host.root_if} missing or down")
    elif cfg.bridge and rlink.get("master") != cfg.bridge_name:
        problems.append(f"{host.root_if} not enslaved to {cfg.bridge_name}")
    elif not cfg.bridge and not _has_addr(rlink, host.root_address or "", 30):
        problems.append(f"{host.root_if} misaddressed")
    return problems


def destroy_host(host: HostSpec) -> list[int]:
    """Kill everything in the host's namespaces and delete them with their links; returns survivors."""
    pids = pids_in_netns([host.name, host.peer_ns])
    survivors = kill_pids(pids[host.name] + pids[host.peer_ns])
    if Path("/sys/class/net", host.root_if).exists():
        run(["ip", "link", "del", host.root_if], check=False)
    present = netns_names()
    if host.name in present:
        run(["ip", "-n", host.name, "link", "del", "eth0"], check=False)
    for ns in (host.name, host.peer_ns):
        if ns in present:
            run(["ip", "netns", "del", ns], check=False)
    return survivors


def create_network(cfg: LabConfig, host: HostSpec) -> None:
    ip_batch([f"netns add {host.name}", f"netns add {host.peer_ns}"])
    for ns in (host.name, host.peer_ns):
        with in_netns(ns):  # no IPv6: the data link carries only what the tests send
            write_sysctl("net/ipv6/conf/all/disable_ipv6", "1")
            write_sysctl("net/ipv6/conf/default/disable_ipv6", "1")
    root = [
        f"link add {host.root_if} address {host.root_mac} type veth "
        f"peer name mgmt0 netns {host.name} address {host.mgmt_mac}",
        f"link add eth0 netns {host.name} address {host.host_mac} type veth "
        f"peer name eth0 netns {host.peer_ns} address {host.peer_mac}",
    ]
    if cfg.bridge:
        root.append(f"link set {host.root_if} master {cfg.bridge_name} up")
    else:
        root += [f"addr add {host.root_address}/30 dev {host.root_if}", f"link set {host.root_if} up"]
    ip_batch(root)
    run(["ip", "neigh", "flush", "to", host.mgmt_address], check=False)
    write_sysctl(f"net/ipv6/conf/{host.root_if}/disable_ipv6", "1")
    ip_batch([
        "link set lo up",
        f"addr add {host.data_address}/{DATA_SUBNET_PREFIXLEN} dev eth0",
        "link set eth0 up",
        f"addr add {host.mgmt_address}/{host.mgmt_prefixlen} dev mgmt0",
        "link set mgmt0 up",
        f"neigh replace {host.peer_address} lladdr {host.peer_mac} dev eth0 nud permanent",
    ], netns=host.name)
    ip_batch([
        "link set lo up",
        f"addr add {host.peer_address}/{DATA_SUBNET_PREFIXLEN} dev eth0",
        "link set eth0 up",
        f"neigh replace {host.data_address} lladdr {host.host_mac} dev eth0 nud permanent",
    ], netns=host.peer_ns)


def ensure_bridge(cfg: LabConfig, root_links: dict[str, dict]) -> list[str]:
    actions = []
    br = root_links.get(cfg.bridge_name)
    if br is None or br.get("linkinfo", {}).get("info_kind", "bridge") != "bridge":
        if br is not None:
            run(["ip", "link", "del", cfg.bridge_name])
        ip_batch([f"link add {cfg.bridge_name} address 02:eb:00:00:00:fe type bridge stp_state 0 forward_delay 0"])
        write_sysctl(f"net/ipv6/conf/{cfg.bridge_name}/disable_ipv6", "1")
        actions.append(f"created bridge {cfg.bridge_name}")
        br = None
    want = cfg.bridge_address()
    addr, plen = want.split("/")
    if not _has_addr(br, addr, int(plen)):
        ip_batch([f"addr flush dev {cfg.bridge_name}", f"addr add {want} dev {cfg.bridge_name}"])
        actions.append(f"addressed bridge {cfg.bridge_name} {want}")
    if not _is_up(br):
        ip_batch([f"link set {cfg.bridge_name} up"])
        if br is not None:
            actions.append(f"set bridge {cfg.bridge_name} up")
    return actions


def host_facts(cfg: LabConfig, host: HostSpec, state_host: dict) -> dict:
    return {"name": host.name, "netns": host.name, "peer_netns": host.peer_ns, "root_interface": host.root_if,
            "mgmt_address": host.mgmt_address, "address": host.data_address, "peer_address": host.peer_address,
            "sshd_pid": state_host.get("sshd_pid")}


@dataclass
class HostResult:
    name: str
    actions: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sshd_pid: int | None = None
    config_sha: str | None = None
    error: str | None = None
    details: dict = field(default_factory=dict)


def converge_host(cfg: LabConfig, host: HostSpec, state_host: dict, root_links: dict[str, dict],
                  namespaces: set[str], check: bool) -> HostResult:
    res = HostResult(name=host.name, sshd_pid=state_host.get("sshd_pid"), config_sha=state_host.get("sshd_config_sha"))
    try:
        net = network_problems(cfg, host, root_links, namespaces)
        files_changed = False if check else write_host_files(cfg, host)
        sshd = [] if net else sshd_problems(cfg, host, res.sshd_pid, res.config_sha)
        res.problems = net + sshd
        if files_changed:
            res.actions.append("wrote host key or sshd_config")
        if not net and not sshd:
            return res
        if check:
            res.actions.append("would recreate" if net else "would restart sshd")
            return res
        # a master connection to the old sshd would hang or fail the next Ansible run
        res.actions += close_ssh_masters([host.mgmt_address], cfg.ssh_port, cfg.control_dirs)
        if net:
            survivors = destroy_host(host)
            if survivors:
                raise LabError(f"processes {survivors} in {host.name} survived SIGKILL")
            create_network(cfg, host)
            res.actions.append("created network" if host.name not in namespaces
                               else f"recreated network ({'; '.join(net)})")
        else:
            pids = pids_in_netns([host.name])[host.name]
            kill_pids(pids)
            res.actions.append("restarted sshd (all host processes)" if pids else "started sshd")
        res.sshd_pid = start_sshd(cfg, host)
        res.config_sha = sha(sshd_config(cfg, host))
        if net:
            res.actions.append("started sshd")
    except LabError as exc:
        res.error, res.details = exc.msg, exc.details
    return res


def remove_hosts(hosts: list[HostSpec]) -> tuple[int, list[int]]:
    """End every process in the hosts' namespaces (one /proc scan, one wait), then delete their
    links and namespaces in parallel. Returns (processes ended, survivors)."""
    names = [n for h in hosts for n in (h.name, h.peer_ns)]
    pids = [p for ps in pids_in_netns(names).values() for p in ps]
    survivors = kill_pids(pids)
    with ThreadPoolExecutor(max_workers=8) as pool:
        survivors += [p for left in pool.map(destroy_host, hosts) for p in left]
    return len(pids), survivors
