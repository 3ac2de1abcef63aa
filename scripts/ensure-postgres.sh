#!/usr/bin/env bash
# ensure-postgres.sh: make sure lockerhub has a PostgreSQL server to talk to.
#
# With $HUB_DATABASE_URL set, only checks that it answers. Otherwise makes
# PostgreSQL available on 127.0.0.1:5432 for user postgres with trust auth:
#   - answering already: nothing to do;
#   - a Debian cluster exists but is down: start it;
#   - not installed: apt-get install postgresql (as root) and start the cluster;
#   - not root: stop with the exact commands to run.
# Then creates the database "lockerhub" when it is missing (the hub would too).
# Idempotent, and silent when everything is already in place. Used by
# `make run`, `make test` and .ci/run.
set -euo pipefail

HOST=127.0.0.1
PORT=${ENSURE_POSTGRES_PORT:-5432} # another port only to test this script
DB=lockerhub
DEFAULT_URL="postgres://postgres@$HOST:$PORT/$DB?sslmode=disable"

say() { echo "ensure-postgres: $*" >&2; }
die() {
	say "$*"
	exit 1
}
is_root() { [[ $(id -u) -eq 0 ]]; }
have() { command -v "$1" >/dev/null 2>&1; }

# mask hides a password in a URL: postgres://u:secret@h/db -> postgres://u:***@h/db
mask() { sed -E 's#(://[^:/@]+):[^@/]*@#\1:***@#' <<<"$1"; }

# psql_local runs psql as user postgres over TCP on 127.0.0.1, never prompting.
psql_local() { psql -X -w -h "$HOST" -p "$PORT" -U postgres "$@"; }

# --- an external server: only check that it answers ---------------------------
if [[ -n ${HUB_DATABASE_URL:-} ]]; then
	shown=$(mask "$HUB_DATABASE_URL")
	if have pg_isready; then
		# pg_isready needs no valid database or password to tell whether the server answers.
		if ! out=$(pg_isready -d "$HUB_DATABASE_URL" -t 10 2>&1); then
			die "HUB_DATABASE_URL=$shown does not answer ($out). Start that server, or unset HUB_DATABASE_URL to use a local PostgreSQL on $HOST:$PORT."
		fi
	elif have psql; then
		if ! out=$(psql -X -w "$HUB_DATABASE_URL" -Atqc 'SELECT 1' 2>&1) && ! grep -q 'does not exist' <<<"$out"; then
			die "HUB_DATABASE_URL=$shown does not answer: $out"
		fi
	else
		say "HUB_DATABASE_URL=$shown is set but neither pg_isready nor psql is installed to check it (apt-get install postgresql-client); going on."
	fi
	exit 0
fi

# --- the local server ------------------------------------------------------------

answers() {
	if have pg_isready; then
		pg_isready -q -h "$HOST" -p "$PORT" -t 3
	else
		(exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
	fi
}

# cluster prints "VERSION NAME STATUS" of the Debian cluster to use: the one on
# our port, else the newest. Nothing when there is none.
cluster() {
	have pg_lsclusters || return 0
	local all
	all=$(pg_lsclusters -h 2>/dev/null | awk '{print $1, $2, $3, $4}') || return 0
	[[ -n $all ]] || return 0
	local pick
	pick=$(awk -v p="$PORT" '$3 == p' <<<"$all" | head -n1)
	[[ -n $pick ]] || pick=$(sort -V <<<"$all" | tail -n1)
	awk '{print $1, $2, $4}' <<<"$pick"
}

install_hint() {
	cat >&2 <<EOF
ensure-postgres: PostgreSQL is not installed and this is not root. Run, as root:
    apt-get update && apt-get install -y postgresql
    pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start
then run this again. Or point lockerhub at another server:
    export HUB_DATABASE_URL='postgres://USER:PASSWORD@HOST:5432/lockerhub?sslmode=disable'
EOF
	exit 1
}

wait_answers() {
	local i
	for ((i = 0; i < 60; i++)); do
		answers && return 0
		sleep 0.5
	done
	return 1
}

start_cluster() { # version name
	local ver=$1 name=$2
	if ! is_root; then
		die "PostgreSQL cluster $ver/$name is down. Start it, as root: pg_ctlcluster --skip-systemctl-redirect $ver $name start"
	fi
	say "starting PostgreSQL cluster $ver/$name"
	pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start ||
		die "could not start cluster $ver/$name; see /var/log/postgresql/postgresql-$ver-$name.log"
}

if ! answers; then
	read -r ver name status < <(cluster) || true
	if [[ -n ${ver:-} ]]; then
		[[ $status == online ]] || start_cluster "$ver" "$name"
	elif have apt-get && [[ -d /usr/lib/postgresql ]] && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
		# The server is installed but no cluster exists (create_main_cluster = false).
		is_root || die "PostgreSQL is installed but has no cluster. Create one, as root: pg_createcluster --start \$(ls /usr/lib/postgresql | sort -V | tail -n1) main"
		ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
		say "creating PostgreSQL cluster $ver/main"
		pg_createcluster --port "$PORT" "$ver" main >/dev/null
		start_cluster "$ver" main
	elif have apt-get; then
		is_root || install_hint
		say "PostgreSQL is not installed: installing it with apt-get (this takes a minute)"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq postgresql >/dev/null
		read -r ver name status < <(cluster) || true
		if [[ -z ${ver:-} ]]; then
			ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
			say "creating PostgreSQL cluster $ver/main"
			pg_createcluster --port "$PORT" "$ver" main >/dev/null
			name=main status=down
		fi
		# The package may have started it already (where init scripts run).
		answers || start_cluster "$ver" "$name"
	else
		die "PostgreSQL does not answer on $HOST:$PORT and there is no apt-get here to install it. Install PostgreSQL and start it on $HOST:$PORT, or set HUB_DATABASE_URL."
	fi
	wait_answers || die "PostgreSQL still does not answer on $HOST:$PORT (is the cluster on another port? pg_lsclusters tells; or set HUB_DATABASE_URL)"
fi

if ! have psql; then
	is_root || die "psql is missing (needed to check access and create the database). Run, as root: apt-get install -y postgresql-client"
	say "installing postgresql-client"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null; }
fi

# --- trust auth for postgres on loopback ------------------------------------
if ! err=$(psql_local -d postgres -Atqc 'SELECT 1' 2>&1 >/dev/null); then
	if ! grep -qiE 'password|authentication|peer|ident|no pg_hba' <<<"$err"; then
		die "PostgreSQL answers on $HOST:$PORT but refuses user postgres: $err"
	fi
	read -r ver name status < <(cluster) || true
	hba=/etc/postgresql/${ver:-none}/${name:-main}/pg_hba.conf
	if [[ -z ${ver:-} || ! -f $hba ]] || ! is_root; then
		die "PostgreSQL on $HOST:$PORT does not let user postgres in without a password ($err).
For local development, allow trust for loopback in pg_hba.conf (as root) and reload:
    host all all 127.0.0.1/32 trust
    host all all ::1/128      trust
or set HUB_DATABASE_URL with a user and password."
	fi
	cp -p "$hba" "$hba.lockerhub.bak"
	tmp=$(mktemp)
	{
		echo "# lockerhub local development (scripts/ensure-postgres.sh): trust on loopback."
		echo "host    all    all    127.0.0.1/32    trust"
		echo "host    all    all    ::1/128         trust"
		cat "$hba"
	} >"$tmp"
	cat "$tmp" >"$hba" # keeps the file's owner and mode
	rm -f "$tmp"
	pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload
	say "NOTE: $hba now trusts every local user on 127.0.0.1/32 and ::1/128 (for local development; the previous file is $hba.lockerhub.bak)"
	sleep 0.5
	err=$(psql_local -d postgres -Atqc 'SELECT 1' 2>&1 >/dev/null) ||
		die "still cannot connect as postgres after the pg_hba.conf change: $err"
fi

# --- the lockerhub database ------------------------------------------------------
exists=$(psql_local -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = '$DB'")
if [[ $exists != 1 ]]; then
	out=$(psql_local -d postgres -qc "CREATE DATABASE $DB" 2>&1) || grep -q 'already exists' <<<"$out" ||
		die "could not create database $DB: $out"
	say "created database $DB ($DEFAULT_URL)"
fi
