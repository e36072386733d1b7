#!/usr/bin/env bash
# Runs the molecule scenarios that bring their own lab hosts (created and destroyed by each
# scenario), then `existing`, the scenario a user runs against an inventory of their own
# (EBPF_DEPLOY_INVENTORY): against that inventory when it is set, else against two lab hosts made
# here for it (their own prefix and networks), as a user's hosts would be, removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
molecule test --all --exclude existing "$@"
if [ -n "${EBPF_DEPLOY_INVENTORY:-}" ]; then
    exec molecule test -s existing "$@"
fi
lab_dir=$(mktemp -d /tmp/ebpfdx-lab.XXXXXX)
lab() {
    ansible-playbook -i localhost, playbooks/lab.yml -e lab_dir="$lab_dir" -e lab_name_prefix=ebpfdx "$@"
}
trap 'lab -e lab_state=absent >/dev/null; rm -rf "$lab_dir"' EXIT
lab -e lab_state=present -e lab_host_count=2 -e lab_mgmt_network=10.247.0.0/24 \
    -e lab_data_network=10.246.0.0/16
EBPF_DEPLOY_INVENTORY="$lab_dir/inventory.yml" molecule test -s existing "$@"
