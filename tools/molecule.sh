#!/usr/bin/env bash
# Runs every molecule scenario against lab hosts (created and destroyed by each scenario).
set -euo pipefail
cd "$(dirname "$0")/.."
exec molecule test --all "$@"
