#!/usr/bin/env bash
# ensure-tools.sh [DEBIAN-PACKAGE...]: make sure optional tools that tests use
# are installed (default: mosquitto-clients, the third-party MQTT client the
# broker's acceptance tests drive).
#
# Missing packages are installed with apt-get when running as root; otherwise
# the script says what to run. Tests that need a missing tool skip, except under
# CI=true, where a missing tool fails this script (and so the CI run) loudly.
# Silent when everything is present.
#
# Known packages: mosquitto-clients (mosquitto_pub, mosquitto_sub),
# mosquitto (a peer broker for benchmarks), chromium (browser tests),
# systemd (systemd-analyze, for deploy/lockerhub.service),
# postgresql-client and the shell linter; any other Debian package name is
# checked with dpkg.
set -euo pipefail

say() { echo "ensure-tools: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

# command_of prints the command a package provides, when we know it.
command_of() {
	case $1 in
	mosquitto-clients) echo mosquitto_pub ;;
	mosquitto) echo mosquitto ;;
	chromium) echo chromium ;;
	chromium-driver) echo chromedriver ;;
	shellcheck) echo shellcheck ;;
	postgresql-client) echo psql ;;
	prometheus) echo promtool ;;
	systemd) echo systemd-analyze ;;
	*) echo "" ;;
	esac
}

installed() {
	local cmd
	cmd=$(command_of "$1")
	if [[ -n $cmd ]] && { have "$cmd" || [[ -x /usr/sbin/$cmd ]]; }; then
		return 0
	fi
	have dpkg-query && [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

pkgs=("$@")
[[ ${#pkgs[@]} -gt 0 ]] || pkgs=(mosquitto-clients)

missing=()
for p in "${pkgs[@]}"; do
	installed "$p" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

fail() {
	if [[ ${CI:-} == true ]]; then
		say "ERROR: missing under CI: ${missing[*]}. $*"
		exit 1
	fi
	say "WARNING: missing: ${missing[*]}; tests that need them will be skipped. $*"
	exit 0
}

if [[ $(id -u) -ne 0 ]] || ! have apt-get; then
	fail "Install them, as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
fi

say "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }; then
	fail "apt-get install failed (see above)."
fi

still=()
for p in "${missing[@]}"; do
	installed "$p" || still+=("$p")
done
if [[ ${#still[@]} -gt 0 ]]; then
	missing=("${still[@]}")
	fail "apt-get finished but they are still not found."
fi
