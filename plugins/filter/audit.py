"""Fleet audit: one host's bpf_facts condensed into what an operator reads first."""
from __future__ import annotations

from ansible_collections.ebpf.deploy.plugins.module_utils._dmesg import matches as bpf_line


def audit_summary(facts: dict, map_reads: list | None = None) -> dict:
    """deployments (current/previous/versions/maps/links), XDP attachments with their owner, dmesg lines.

    map_reads: the results of a bpf_map dump loop, kept as {"<deployment>/<map>": entries}.
    """
    programs = {p["id"]: p for p in facts.get("programs", [])}
    deployments = {}
    for name, dep in sorted((facts.get("deployments") or {}).items()):
        if not name:
            continue
        deployments[name] = {
            "current": dep.get("current"),
            "previous": dep.get("previous"),
            "versions": sorted(dep.get("versions", {})),
            "maps": sorted(dep.get("maps", {})),
            "links": sorted(dep.get("links", {})),
        }
    attachments = []
    for entry in facts.get("xdp", []):
        if not entry.get("prog_id"):
            continue
        owner = programs.get(entry["prog_id"], {})
        attachments.append({
            "interface": entry["interface"], "netns": entry.get("netns"), "mode": entry.get("mode"),
            "prog_id": entry["prog_id"], "program": owner.get("program") or owner.get("name"),
            "deployment": owner.get("deployment"), "version": owner.get("version"),
        })
    dmesg = facts.get("dmesg") or {}
    lines = dmesg.get("lines", []) if isinstance(dmesg, dict) else dmesg
    maps = {}
    for read in map_reads or []:
        item = read.get("item") or {}
        maps[f"{item.get('deployment')}/{item.get('map')}"] = read.get("msg") if read.get("failed") else read.get("entries")
    return {
        "kernel": (facts.get("kernel") or {}).get("release"),
        "maps": maps,
        "deployments": deployments,
        "attachments": attachments,
        # BPF/XDP lines only: not the lines every boot prints (LSM initialisation and the like)
        "dmesg": [text for text in (line.get("message", "") if isinstance(line, dict) else str(line)
                                    for line in lines) if bpf_line(text)][-10:],
    }


def audit_inconsistent(summaries: dict) -> dict:
    """{deployment: {version: [hosts]}} for every deployment whose hosts do not all run one version."""
    by_deployment: dict = {}
    for host, summary in sorted(summaries.items()):
        for name, dep in summary.get("deployments", {}).items():
            by_deployment.setdefault(name, {}).setdefault(dep.get("current") or "none", []).append(host)
    return {name: versions for name, versions in by_deployment.items() if len(versions) > 1}


class FilterModule:
    """Fleet audit filters for playbooks/audit.yml."""

    def filters(self) -> dict:
        return {"audit_summary": audit_summary, "audit_inconsistent": audit_inconsistent}
