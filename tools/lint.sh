#!/usr/bin/env bash
# ansible-lint (production profile) over the roles, playbooks and molecule scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=()
for path in roles playbooks molecule examples/playbooks; do
  [ -d "$path" ] && targets+=("$path")
done
exec ansible-lint --offline --profile production "${targets[@]}"
