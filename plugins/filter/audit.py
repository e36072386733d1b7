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


def _label(value) -> str:
    """A Prometheus label value: backslash, double quote and newline escaped."""
    return str("" if value is None else value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample(name: str, labels: dict, value) -> str:
    inner = ",".join(f'{key}="{_label(val)}"' for key, val in labels.items())
    return f"{name}{{{inner}}} {value}"


# metric -> (type, help): the node_exporter textfile collector reads these files as they are
_METRICS = {
    "ebpf_deploy_info": ("gauge", "A deployment and the version that is current on the host (always 1)."),
    "ebpf_deploy_program_runs_total": ("counter", "Runs the kernel counted for a program of the current version "
                                                  "(only while BPF statistics are enabled)."),
    "ebpf_deploy_xdp_attached": ("gauge", "An interface with an XDP program attached (1), with its owner."),
    "ebpf_deploy_record_pending": ("gauge", "1 while a switch of the deployment is pending (not yet committed)."),
    "ebpf_deploy_record_last_transition_timestamp_seconds": ("gauge", "When the host's record last moved the "
                                                                      "deployment (commit, rollback, restore), and who."),
    "ebpf_deploy_audit_timestamp_seconds": ("gauge", "When this file was written."),
}


def audit_textfile(facts: dict, now: float = 0) -> str:
    """One host's bpf_facts (with the ``record`` subset) as a node_exporter textfile: what runs, what
    is attached, and the state of the host's record (the last rollout's commit, rollback or restore)."""
    samples = {name: [] for name in _METRICS}
    current = {name: dep.get("current") for name, dep in (facts.get("deployments") or {}).items() if name}
    for name, version in sorted(current.items()):
        samples["ebpf_deploy_info"].append(_sample("ebpf_deploy_info", {"deployment": name, "version": version}, 1))
    programs = {p["id"]: p for p in facts.get("programs", [])}
    for prog in sorted(programs.values(), key=lambda p: (str(p.get("deployment")), str(p.get("program")))):
        if prog.get("deployment") in current and prog.get("version") == current[prog["deployment"]]:
            labels = {"deployment": prog["deployment"], "version": prog["version"],
                      "program": prog.get("program") or prog.get("name")}
            samples["ebpf_deploy_program_runs_total"].append(
                _sample("ebpf_deploy_program_runs_total", labels, int(prog.get("run_cnt") or 0)))
    for entry in facts.get("xdp", []):
        if entry.get("prog_id"):
            owner = programs.get(entry["prog_id"], {})
            labels = {"interface": entry["interface"], "netns": entry.get("netns"), "mode": entry.get("mode"),
                      "deployment": owner.get("deployment"), "version": owner.get("version")}
            samples["ebpf_deploy_xdp_attached"].append(_sample("ebpf_deploy_xdp_attached", labels, 1))
    for name, rec in sorted(((facts.get("record") or {}).get("deployments") or {}).items()):
        if "error" in rec:
            continue
        samples["ebpf_deploy_record_pending"].append(
            _sample("ebpf_deploy_record_pending", {"deployment": name, "committed": rec.get("committed")},
                    int(bool(rec.get("pending")))))
        last = rec.get("last") or {}
        if last.get("at"):
            labels = {"deployment": name, "action": last.get("action"), "by": last.get("by"), "version": last.get("version")}
            samples["ebpf_deploy_record_last_transition_timestamp_seconds"].append(
                _sample("ebpf_deploy_record_last_transition_timestamp_seconds", labels, round(float(last["at"]), 3)))
    if now:
        samples["ebpf_deploy_audit_timestamp_seconds"].append(f"ebpf_deploy_audit_timestamp_seconds {round(float(now), 3)}")
    lines = []
    for name, (kind, text) in _METRICS.items():
        if samples[name]:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", *samples[name]]
    return "\n".join(lines) + "\n"


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
        return {"audit_summary": audit_summary, "audit_inconsistent": audit_inconsistent,
                "audit_textfile": audit_textfile}
