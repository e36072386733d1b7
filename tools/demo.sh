#!/usr/bin/env bash
# `make demo`: a canary rollout of the packet counter onto a local lab of hosts, real traffic and
# counts, then a bad version that the canary catches and rolls back before the fleet sees it.
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${LAB_HOSTS:-5}
vms=${LAB_VMS:-0}   # qemu VM hosts beside the netns hosts (Debian 12 image by default: LAB_VM_IMAGES)
lab=${EBPF_DEPLOY_LAB_STATE:-build/lab}
inventory="$lab/inventory.yml"
bpf=$(realpath "${EBPF_DEPLOY_BPF_DIR:-build/bpf}")
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

trap 'say "tearing the lab down"; make --no-print-directory lab-down >/dev/null' EXIT

say "bringing up $hosts lab hosts and $vms VM hosts"
make --no-print-directory lab-up LAB_HOSTS="$hosts" LAB_VMS="$vms" >/dev/null
ansible -i "$inventory" lab -m ansible.builtin.ping -o | sed 's/^/   /'
if [ "$vms" -gt 0 ]; then
  say "preparing the VM hosts with the ebpf.deploy.host role"
  printf -- '---\n- name: Prepare the VM hosts\n  hosts: vm\n  gather_facts: false\n  roles:\n    - role: ebpf.deploy.host\n' \
    >"$lab/host.yml"
  ansible-playbook -i "$inventory" "$lab/host.yml" | sed -n '/PLAY RECAP/,$p'
fi
mapfile -t names < <(ansible -i "$inventory" lab --list-hosts | sed -n 's/^ *\(ebpfd\S*\)$/\1/p')

say "rollout 1: the packet counter, canary first, then stages of [1, 2, 100%]"
ansible-playbook -i "$inventory" playbooks/canary.yml -e @examples/rollout/counter.yml \
  -e counter_object="$bpf/counter.bpf.o" -e '{"rollout_serial": [1, 2, "100%"]}'

say "sending 1000 packets from each host's peer"
for name in "${names[@]}"; do
  python3 roles/lab/files/ebpfd_lab.py traffic --lab-dir "$lab" --host "$name" --count 1000 >/dev/null
done
ansible-playbook -i "$inventory" playbooks/audit.yml -e audit_require_consistent=true \
  -e audit_report=build/audit/report.json -e '{"audit_maps": [{"deployment": "pktcount", "map": "pkt_count"}]}'
python3 - "$lab" "${#names[@]}" <<'PY'
import json, sys
report = json.load(open("build/audit/report.json"))
counts = {host: summary["maps"]["pktcount/pkt_count"][0]["value"] for host, summary in sorted(report.items())}
for host, count in counts.items():
    print(f"   {host}: {count} packets counted")
if not all(count >= 1000 for count in counts.values()):
    sys.exit("a host counted fewer packets than were sent")
if len(counts) != int(sys.argv[2]):
    sys.exit(f"{len(counts)} hosts reported, {sys.argv[2]} expected")
PY

say "rollout 2: a bad version that drops every packet; the canary must stop it"
if ansible-playbook -i "$inventory" playbooks/canary.yml -e @examples/rollout/counter.yml \
     -e counter_object="$bpf/counter_drop.bpf.o" -e '{"rollout_serial": [1, 2, "100%"]}'; then
  echo "the bad version was not stopped" >&2
  exit 1
fi

say "after the failed rollout: every host still runs the first version"
ansible-playbook -i "$inventory" playbooks/audit.yml -e audit_require_consistent=true \
  -e audit_report=build/audit/report.json
