#!/usr/bin/env bash
# ansible-lint (production profile) over the roles, playbooks and molecule scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
# ansible-lint puts ~/.ansible/collections first: an installed ebpf.deploy there would shadow this checkout
shadow=~/.ansible/collections/ansible_collections/ebpf/deploy
if [ -e "$shadow" ]; then
  echo "lint: $shadow shadows this checkout; remove it (ansible-galaxy collection install left it)" >&2
  exit 1
fi
targets=()
for path in roles playbooks molecule examples/playbooks; do
  [ -d "$path" ] && targets+=("$path")
done
exec ansible-lint --offline --profile production "${targets[@]}"
