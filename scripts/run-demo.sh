#!/usr/bin/env bash
# run-demo.sh: what `make run` does after building. Makes sure PostgreSQL is
# there, starts the hub with its data in ./var, waits until it is ready, starts
# a simulated fleet (lockersim, 100 lockers of 20 cells, enrolling itself with
# ./var/hub.json and ./var/admin.token), says where to look, and stops both
# cleanly on Ctrl-C.
#
# Environment: LOCKERS (100), CELLS (20), TELEMETRY (10s), BIN (bin), and the hub's own HUB_*
# settings (HUB_DATABASE_URL, HUB_HTTP_ADDR, …), which bin/hub reads itself.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin}
DATA=./var
LOCKERS=${LOCKERS:-100}
CELLS=${CELLS:-20}
# The demo's lockers report telemetry every 10 s (lockersim's default, like docs/protocol.md's
# advice for real lockers, is 60 s) so that the charts move while you watch.
TELEMETRY=${TELEMETRY:-10s}
CONTROL=127.0.0.1:8090
READY_TIMEOUT=60 # seconds
STOP_TIMEOUT=15  # seconds; the hub shuts down within 10

for b in hub lockersim hubctl; do
	[[ -x $BIN/$b ]] || {
		echo "run-demo: $BIN/$b is missing: run make build (or make run)" >&2
		exit 1
	}
done

scripts/ensure-postgres.sh

# local_url SCHEME ADDR prints a URL for a listen address: ":8080" -> http://127.0.0.1:8080.
local_url() {
	local scheme=$1 addr=$2 host port
	host=${addr%:*}
	port=${addr##*:}
	case $host in "" | 0.0.0.0 | "[::]" | "::") host=127.0.0.1 ;; esac
	echo "$scheme://$host:$port"
}
HTTP_URL=$(local_url http "${HUB_HTTP_ADDR:-:8080}")
MQTT_URL=$(local_url mqtts "${HUB_MQTT_ADDR:-:8883}")
DEVICE_URL=$(local_url https "${HUB_DEVICE_ADDR:-:8443}")

[[ -d $DATA ]] || mkdir -m 700 "$DATA" # the hub keeps its CA key here
HUB_LOG=$DATA/hub.log
SIM_LOG=$DATA/lockersim.log
# The hub's log holds the admin token it prints at its first start: 0600, like
# the token file. Each run appends to both logs.
(
	umask 077
	for f in "$HUB_LOG" "$SIM_LOG"; do
		: >>"$f"
		chmod 600 "$f"
		echo "==== $(date -Is) run-demo ====" >>"$f"
	done
)

hub_pid=
sim_pid=

# http_ok URL: true when GET URL answers 200.
http_ok() {
	if command -v curl >/dev/null; then
		curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
		return
	fi
	local rest=${1#http://} hostport path status
	hostport=${rest%%/*}
	path=/${rest#*/}
	(
		exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}" || exit 1
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
		read -r -t 2 _ status _ <&3 && [[ $status == 200 ]]
	) 2>/dev/null
}

alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null; }

# stop_all sends SIGTERM to lockersim and the hub, waits for both (bounded),
# and kills whatever is left.
stopping=
# shellcheck disable=SC2317 # called from the EXIT trap
stop_all() {
	[[ -z $stopping ]] || return 0
	stopping=1
	trap '' INT TERM HUP
	local pids=() pid i
	for pid in "$sim_pid" "$hub_pid"; do
		alive "$pid" && pids+=("$pid")
	done
	[[ ${#pids[@]} -gt 0 ]] || return 0
	echo
	echo "run-demo: stopping lockersim and the hub…"
	kill -TERM "${pids[@]}" 2>/dev/null || true
	for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
		local left=0
		for pid in "${pids[@]}"; do alive "$pid" && left=1; done
		[[ $left -eq 1 ]] || break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		if alive "$pid"; then
			echo "run-demo: process $pid did not stop within ${STOP_TIMEOUT}s: killing it" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	echo "run-demo: stopped (logs: $HUB_LOG, $SIM_LOG)"
}
trap stop_all EXIT
trap 'exit 0' INT # Ctrl-C is the normal way to stop the demo
trap 'exit 143' TERM
trap 'exit 129' HUP

# tail_log FILE FROM: the last lines FILE got since line FROM (this run's).
tail_log() {
	echo "---- $1 (last lines) ----" >&2
	tail -n "+$(($2 + 1))" "$1" | tail -n 40 >&2 || true
	echo "----" >&2
}

if http_ok "$HTTP_URL/healthz"; then
	echo "run-demo: something already answers at $HTTP_URL (another hub, from an earlier make run?): stop it first" >&2
	exit 1
fi

# The children get their own session (setsid): Ctrl-C reaches only this
# script, which then stops them in order with one SIGTERM each.
echo "run-demo: starting the hub ($BIN/hub --data-dir $DATA, log $HUB_LOG)"
hub_from=$(wc -l <"$HUB_LOG")
# The recipients' SMS go to lockersim's stand-in gateway (GET http://$CONTROL/sms
# shows them), unless HUB_SMS_URL names a real one.
HUB_SMS_URL=${HUB_SMS_URL:-http://$CONTROL/sms} setsid "$BIN/hub" --data-dir "$DATA" </dev/null >>"$HUB_LOG" 2>&1 &
hub_pid=$!

deadline=$((SECONDS + READY_TIMEOUT))
until http_ok "$HTTP_URL/readyz"; do
	if ! alive "$hub_pid"; then
		wait "$hub_pid" && rc=0 || rc=$?
		hub_pid=
		echo "run-demo: the hub exited (status $rc) before it was ready" >&2
		tail_log "$HUB_LOG" "$hub_from"
		exit 1
	fi
	if ((SECONDS >= deadline)); then
		echo "run-demo: the hub was not ready at $HTTP_URL/readyz within ${READY_TIMEOUT}s" >&2
		tail_log "$HUB_LOG" "$hub_from"
		exit 1
	fi
	sleep 0.5
done

echo "run-demo: starting lockersim ($LOCKERS lockers × $CELLS cells, log $SIM_LOG)"
sim_from=$(wc -l <"$SIM_LOG")
setsid "$BIN/lockersim" run --lockers "$LOCKERS" --cells "$CELLS" --telemetry "$TELEMETRY" --data "$DATA/lockersim" --control "$CONTROL" \
	</dev/null >>"$SIM_LOG" 2>&1 &
sim_pid=$!

# Give the fleet a moment to enrol and connect, and say how far it got.
connected() {
	curl -fsS --max-time 2 "$HTTP_URL/metrics" 2>/dev/null |
		awk '$1 == "lockerhub_broker_connected_lockers" {printf "%d", $2; found=1} END {if (!found) exit 1}'
}
n=
if command -v curl >/dev/null; then
	for ((i = 0; i < 60; i++)); do
		alive "$sim_pid" || break
		n=$(connected) || n=
		[[ -n $n && $n -ge $LOCKERS ]] && break
		sleep 0.5
	done
fi
if ! alive "$sim_pid"; then
	wait "$sim_pid" && rc=0 || rc=$?
	sim_pid=
	echo "run-demo: lockersim exited (status $rc)" >&2
	tail_log "$SIM_LOG" "$sim_from"
	exit 1
fi

cat <<EOF

lockerhub is running$([[ -n $n ]] && echo ", $n of $LOCKERS simulated lockers connected so far").

  dashboard and API   $HTTP_URL
  metrics             $HTTP_URL/metrics
  MQTT (lockers)      $MQTT_URL   (mTLS: a client certificate per locker)
  device HTTPS        $DEVICE_URL   (enrolment)
  admin token         $DATA/admin.token
  dashboard login     admin / $DATA/admin.password
  lockersim control   http://$CONTROL
  recipients' SMS     http://$CONTROL/sms   (pickup codes of the parcels you deliver)
  logs                $HUB_LOG, $SIM_LOG

First command, in another terminal:   $BIN/hubctl locker list
A parcel from drop-off to pickup:      README.md, "A parcel, by hand"
Ctrl-C stops lockersim and the hub.
EOF

# Wait until Ctrl-C, or until one of the two exits on its own.
set +e
wait -n "$hub_pid" "$sim_pid"
rc=$?
set -e
if ! alive "$hub_pid"; then
	hub_pid=
	echo "run-demo: the hub exited (status $rc)" >&2
	tail_log "$HUB_LOG" "$hub_from"
elif ! alive "$sim_pid"; then
	sim_pid=
	echo "run-demo: lockersim exited (status $rc)" >&2
	tail_log "$SIM_LOG" "$sim_from"
fi
exit 1
