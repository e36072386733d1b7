#!/usr/bin/env bash
# Builds the HTML docs site with antsibull-docs and Sphinx, as Ansible's own collections do:
# module and role reference from the code, guides from docs/docsite/rst (docs/docsite/extra-docs.yml).
# Any warning fails the build.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
site="$repo/.build/docs"
rm -rf "$site"; mkdir -p "$site/rst"
cp "$repo/docs/site/conf.py" "$repo/docs/site/antsibull-docs.cfg" "$site/"
cp "$repo"/docs/site/*.rst "$site/rst/"
chmod og-w "$site/rst"   # antsibull-docs wants the directory writable only by itself

antsibull-docs lint-collection-docs --plugin-docs "$repo"
(cd "$site" && antsibull-docs --config-file antsibull-docs.cfg collection --use-current --no-indexes \
  --fail-on-error --dest-dir rst ebpf.deploy)
sphinx-build -M html "$site/rst" "$site/build" -c "$site" -W --keep-going -q
echo "docs site: $site/build/html/index.html"
