#!/usr/bin/env bash
# fuzz.sh [FUZZTIME]: run every Fuzz* target of the module for a short time
# each (default 10s). Go fuzzes one target of one package per run, so this
# finds them and runs them one after another. A failure leaves its input in the
# package's testdata/fuzz/ and stops the script.
set -euo pipefail
cd "$(dirname "$0")/.."

# go_files PATTERN: the module's files matching PATTERN, NUL-separated (git's
# view when this is a work tree, so ignored files are left out; find otherwise).
go_files() {
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git ls-files -z -co --exclude-standard -- "$1"
	else
		find . -path ./var -prune -o -path ./bin -prune -o -path ./dist -prune -o -name "$1" -type f -print0
	fi
}

FUZZTIME=${1:-${FUZZTIME:-10s}}
GO=${GO:-go}

mapfile -d '' -t files < <(go_files '*_test.go' | sort -z)
n=0
for f in "${files[@]}"; do
	[[ -f $f ]] || continue
	while read -r name; do
		[[ -n $name ]] || continue
		pkg=./$(dirname "${f#./}")
		echo "== $pkg $name ($FUZZTIME)"
		"$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg"
		n=$((n + 1))
	done < <(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*\*testing\.F\).*/\1/p' "$f")
done
if [[ $n -eq 0 ]]; then
	echo "fuzz: no Fuzz* targets found"
else
	echo "fuzz: $n target(s) ran for $FUZZTIME each without a failure"
fi
