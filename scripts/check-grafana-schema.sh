#!/usr/bin/env bash
# check-grafana-schema.sh: type-check dashboards/lockerhub-*.json against
# Grafana's own dashboard schema (the Dashboard type of the @grafana/schema npm
# package, generated from Grafana's CUE schema), with TypeScript's excess
# property checks: a misspelt or misplaced field, a wrong type or a missing
# required field fails. Needs node and npm (Debian: apt-get install npm); it
# installs @grafana/schema and typescript into a temporary directory.
# There is no Grafana server on Debian to import into; this is the check we
# can run here (docs/operations.md, "Monitoring").
#
#   scripts/check-grafana-schema.sh [GRAFANA_SCHEMA_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-13.2.3}
command -v npm >/dev/null || { echo "check-grafana-schema: npm is missing (apt-get install npm)" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
(cd "$dir" && npm install --silent --no-audit --no-fund "@grafana/schema@$version" typescript@5 >/dev/null)
{
	echo "import type { Dashboard } from '@grafana/schema';"
	for f in dashboards/lockerhub-*.json; do
		name=$(basename "$f" .json | tr - _)
		printf 'export const %s: Dashboard = %s;\n' "$name" "$(cat "$f")"
	done
} >"$dir/check.ts"
cat >"$dir/tsconfig.json" <<'JSON'
{"compilerOptions":{"strict":true,"noEmit":true,"moduleResolution":"bundler","module":"esnext","target":"es2022","skipLibCheck":true},"files":["check.ts"]}
JSON
(cd "$dir" && npx tsc -p .)
echo "check-grafana-schema: $(ls dashboards/lockerhub-*.json | wc -l) dashboards match @grafana/schema $version"
