package lockersim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/lockerhub/lockerhub/apiclient"
)

const usage = `lockersim — the reference locker simulator and MQTT load generator of lockerhub.

Usage:
  lockersim run   [flags]   simulate lockers that follow the device contract (docs/protocol.md)
  lockersim bench [flags]   MQTT load generator; prints one JSON line of results
  lockersim help            this text

Run "lockersim run --help" or "lockersim bench --help" for the flags.
lockersim only connects to loopback addresses (127.0.0.0/8, ::1, localhost).
`

const runHelp = `lockersim run — simulate N lockers against a hub.

Each locker (ID = prefix + zero-padded number, e.g. SIM-00001) follows the device
contract: a boot counter on disk (+1 at every simulated boot), seq increasing
within a boot, ts in Unix ms; it connects with a clean session, subscribes to
rpc/req, ask/res and desired on every connect, then publishes its full state.
Telemetry every --telemetry (QoS 1), events and state changes on change (QoS 1).

It answers RPCs: cell.open (refused with "expired" after not_after; a repeated
key gets the first result without acting again, the keys are kept on disk until
not_after across reboots; the door opens with event door_opened, cause
"command:<id>", and closes itself after --door-close), cell.status,
locker.reboot, power.cycle, display.message; any other method gets
"unknown_method".

Outbox: every QoS 1 message is kept until its PUBACK and republished unchanged
(same boot, seq, ts) after a reconnect. The outbox holds at most --queue
messages per locker; when it is full, NEW messages are dropped (the oldest are
kept, they are what the hub misses first) and counted as "dropped" in the status
line. At most --inflight messages are unacknowledged on a connection (fewer if
the hub's Receive Maximum says so). A message unacknowledged for --ack-timeout
makes the locker reconnect and republish. The outbox lives in memory: it
survives simulated reboots, not a restart of lockersim.

Reconnects: exponential backoff with full jitter, 1 s start, 30 s cap. The
first connects are spread uniformly over --ramp.

Certificates: a locker without ID.crt/ID.key in --data is enrolled: with the
admin credential (--admin-token, default from --var/admin.token) it is
registered (an existing locker is fine) and gets a one-time token, which it
exchanges with a fresh ECDSA P-256 key's CSR (CN = locker ID) over --api,
trusting the hub CA (--ca, default --var/ca.crt, else fetched from --admin).

Control API (--control, HTTP, JSON):
  GET  /stats   GET /lockers   GET /lockers/{id}
  POST /lockers/{id}/cells/{cell}/open     {"cause":"code:p-1"} (no cause: forced → door_forced)
  POST /lockers/{id}/cells/{cell}/close
  POST /lockers/{id}/cells/{cell}/deposit  POST /lockers/{id}/cells/{cell}/take
  POST /lockers/{id}/code {"code":"…"}     POST /lockers/{id}/barcode {"barcode":"…","purpose":"dropoff|pickup|collect","cell":"A01"}
  POST /lockers/{id}/mains/cut             POST /lockers/{id}/mains/restore
  POST /lockers/{id}/tamper
  POST /lockers/{id}/offline {"seconds":N} POST /lockers/{id}/online
  POST /lockers/{id}/reboot
  GET  /lockers/{id}/pos                   the POS terminal: mode and the charges it handled
  POST /lockers/{id}/pos {"mode":"approve|decline|timeout|none","reason":"…"}
A typed code is asked at the hub (code.check) when connected; offline, or
without an answer in --ask-timeout, the locker checks it against the parcel
list and code secret the hub sent it (parcels.sync, codes.key; kept in
--data/ID.codes.json) and opens the cell itself (cause code:<parcel>). The
answer says "path":"online"|"offline", "opened", "cell", "parcel" or "error".

Fault flags:
  --drop-acks-pct P  ignore P% of PUBACKs: those messages stay queued and are
                     republished after the next reconnect (--ack-timeout forces one)
  --jam-pct P        P% of cell.open calls fail with error "jammed"
  --pos MODE         every locker's POS terminal (pos.charge): approve (default),
                     decline (error "declined"), timeout (never answers), none
                     (no terminal: unknown_method); per locker:
                     POST /lockers/{id}/pos {"mode":"decline","reason":"insufficient_funds"}
  --clock-skew D     the lockers' clocks are off by D (e.g. -90s): ts and the
                     not_after check use the skewed clock
  --no-republish     after a reconnect, unacknowledged messages are thrown away
                     instead of republished (a broken device: the hub loses data)

Firmware updates (ota.install, docs/ota.md): the locker downloads the artifact
over HTTPS with its certificate (at most --ota-max-downloads at once in the
simulation; a 503 is waited out), resumes with Range after a cut, checks the
SHA-256 and the signature, "installs" (the version is kept in
--data/ID.state.json), reboots and reports the new firmware. Failures to
inject, each a percentage of attempts (e.g. 30) or a list of locker IDs
(e.g. SIM-00001,SIM-00004: every attempt of those):
  --ota-download-error X  the download fails
  --ota-bad-hash X        the downloaded file's SHA-256 does not match
  --ota-install-fail X    the install fails
  --ota-never-return X    installs, reboots and never comes back
  --ota-interrupt X       the download is cut half-way (it resumes with Range)

A status line is printed every 10 s (connected/total, messages acked, …).
SIGINT/SIGTERM stop it cleanly (DISCONNECT on every connection).

Flags:
`

const benchHelp = `lockersim bench — MQTT load generator (works against any MQTT broker).

Connects --connections clients (64 dials at a time), then publishes for
--duration: valid telemetry JSON of about --size bytes with boot/seq/ts, on
--topic-template with {id} replaced by the client ID (prefix + number;
default lockers/{id}/telemetry). QoS 1
keeps at most --inflight messages unacknowledged per connection; --rate is the
total rate over all connections (0 = as fast as acks allow). Each message is one
write (one TLS record with --tls), as a locker sends it.

--payload state publishes partial state reports instead (default topic
lockers/{id}/state): one random cell among A01–A10 with door open or closed and
occupied true or false, and "firmware":"b-<seq>", so a receiver can tell which
report a twin or a row reflects. boot is the run's start time in Unix seconds
(later runs are newer than earlier ones for the same lockers), seq counts from
1 per connection, ts is the send time. The lockers need cells A01–A10: register
them with --cells 10 or more.

--send-log FILE writes one line "id seq unix_nanos" per message published (the
time just before the write), for measuring publish→delivery latency at a
receiver; buffered, at most 256 MiB (lines beyond are counted, not written).

--idle connects and holds the connections for --duration (connection and
memory benchmark).

With --tls, client certificates are DIR/ID.crt and DIR/ID.key (--certs DIR),
enrolled as in "lockersim run" when missing; plain TCP otherwise (e.g. Debian's
Mosquitto on 127.0.0.1:1883).

At the end it prints exactly one JSON line: connections, connect_seconds,
connections_per_s, sent, acked, acked_per_s, ack_p50_ms, ack_p99_ms, ack_max_ms,
errors, and a few more. Always bounded: at most 19,000 connections, 1 h,
--max-messages if set; loopback targets only.

Flags:
`

// Main runs the lockersim command line and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return runMain(ctx, args[1:], stdout, stderr)
	case "bench":
		return benchMain(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "lockersim: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func newLogger(w io.Writer, level string, asJSON bool) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if asJSON {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func parse(fs *flag.FlagSet, args []string, help string, stdout, stderr io.Writer) (int, bool) {
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), help)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %v\n", fs.Args())
		return 2, false
	}
	return 0, true
}

// localDefaults reads a local hub's addresses from varDir (all empty if there is none).
func localDefaults(varDir string) (apiclient.Local, string) {
	l, tok, _ := apiclient.ReadLocal(varDir)
	return l, tok
}

func orDefault(v, d string) string {
	if v != "" {
		return v
	}
	return d
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("lockersim run", flag.ContinueOnError)
	fs.StringVar(&cfg.Hub, "hub", "", "MQTT address of the hub (default from --var/hub.json, else 127.0.0.1:8883)")
	fs.StringVar(&cfg.API, "api", "", "device listener for enrolment (default from --var/hub.json, else https://127.0.0.1:8443)")
	fs.StringVar(&cfg.Admin, "admin", "", "admin HTTP API for enrolment (default from --var/hub.json, else http://127.0.0.1:8080)")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "admin bearer token for enrolment (default: --var/admin.token)")
	fs.StringVar(&cfg.CAFile, "ca", "", "hub CA certificate (default: --var/ca.crt, else --data/ca.crt, else fetched from --admin)")
	fs.StringVar(&cfg.VarDir, "var", cfg.VarDir, "a local hub's data directory (hub.json, admin.token, ca.crt)")
	fs.BoolVar(&cfg.Plain, "plain", false, "plain TCP MQTT without certificates (for brokers like Mosquitto in tests)")
	fs.IntVar(&cfg.Lockers, "lockers", cfg.Lockers, "number of simulated lockers (1–20000)")
	fs.IntVar(&cfg.Cells, "cells", cfg.Cells, "cells per locker (A01–A10, B01–B10, …)")
	fs.StringVar(&cfg.Prefix, "prefix", cfg.Prefix, "locker ID prefix (IDs are prefix + zero-padded number)")
	fs.StringVar(&cfg.Segment, "segment", "", "segment given when registering lockers")
	fs.StringVar(&cfg.Control, "control", "127.0.0.1:7070", "control API listen address (empty: none)")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "directory for certificates, boot counters and key caches")
	mqttVersion := fs.Int("mqtt", int(cfg.MQTTVersion), "MQTT protocol version: 4 (3.1.1) or 5")
	fs.DurationVar(&cfg.Telemetry, "telemetry", cfg.Telemetry, "telemetry interval")
	ramp := fs.String("ramp", "auto", "spread the first connects over this long (auto: 1 ms per locker, at most 30 s)")
	fs.DurationVar(&cfg.DoorClose, "door-close", cfg.DoorClose, "a door opened by a command closes itself after this (0: never)")
	fs.DurationVar(&cfg.Keepalive, "keepalive", cfg.Keepalive, "MQTT keepalive")
	fs.IntVar(&cfg.QueueSize, "queue", cfg.QueueSize, "max unacknowledged QoS 1 messages kept per locker (full: new messages dropped)")
	fs.IntVar(&cfg.Inflight, "inflight", cfg.Inflight, "max QoS 1 messages in flight per connection")
	fs.DurationVar(&cfg.AckTimeout, "ack-timeout", cfg.AckTimeout, "reconnect when a message waits longer than this for its PUBACK (0: never)")
	fs.DurationVar(&cfg.AskTimeout, "ask-timeout", cfg.AskTimeout, "how long the control API waits for the hub's answer to an ask (a pickup code is then checked offline)")
	fs.IntVar(&cfg.CodeTries, "code-tries", cfg.CodeTries, "wrong pickup codes checked offline per --code-window before the keypad refuses")
	fs.DurationVar(&cfg.CodeWindow, "code-window", cfg.CodeWindow, "the window of --code-tries")
	fs.IntVar(&cfg.EnrollConcurrency, "enroll-concurrency", cfg.EnrollConcurrency, "enrolments at once")
	fs.Float64Var(&cfg.DropAcksPct, "drop-acks-pct", 0, "fault: ignore this percentage of PUBACKs")
	fs.Float64Var(&cfg.JamPct, "jam-pct", 0, "fault: this percentage of cell.open calls fail with \"jammed\"")
	fs.Float64Var(&cfg.StuckDoorPct, "stuck-door-pct", 0, "fault: this percentage of cell.open calls release the lock but the door stays shut (no door event)")
	fs.StringVar(&cfg.POS, "pos", POSApprove, "the lockers' POS terminals (pos.charge): approve, or the faults decline, timeout (never answers), none (no terminal)")
	fs.DurationVar(&cfg.ClockSkew, "clock-skew", 0, "fault: the lockers' clocks are off by this much")
	fs.BoolVar(&cfg.NoRepublish, "no-republish", false, "fault: discard unacknowledged messages at reconnect")
	fs.Var(&cfg.OTA.DownloadError, "ota-download-error", "fault: firmware downloads fail (percent of attempts, or locker IDs)")
	fs.Var(&cfg.OTA.BadHash, "ota-bad-hash", "fault: downloaded firmware fails its hash (percent, or locker IDs)")
	fs.Var(&cfg.OTA.InstallFail, "ota-install-fail", "fault: firmware installs fail (percent, or locker IDs)")
	fs.Var(&cfg.OTA.NeverReturn, "ota-never-return", "fault: after installing the locker never reconnects (percent, or locker IDs)")
	fs.Var(&cfg.OTA.Interrupt, "ota-interrupt", "fault: downloads are cut half-way and resumed with Range (percent, or locker IDs)")
	fs.IntVar(&cfg.OTAMaxDownloads, "ota-max-downloads", 64, "firmware downloads at once in the whole simulation")
	fs.StringVar(&cfg.VideoInterface, "video-iface", "", "video (video.start): ICE host candidates only on this network interface (empty: all)")
	videoClip := fs.String("video-clip", "", "video (video.start): loop this VP8 IVF file instead of the built-in test clip")
	fs.DurationVar(&cfg.StatusEvery, "status-every", cfg.StatusEvery, "status line period (0: none)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	logJSON := fs.Bool("log-json", false, "log as JSON")
	if code, ok := parse(fs, args, runHelp, stdout, stderr); !ok {
		return code
	}
	log, err := newLogger(stderr, *logLevel, *logJSON)
	if err != nil {
		fmt.Fprintln(stderr, "lockersim:", err)
		return 2
	}
	cfg.MQTTVersion = byte(*mqttVersion)
	if *videoClip != "" {
		if cfg.VideoClip, err = os.ReadFile(*videoClip); err == nil {
			_, err = clipHeader(cfg.VideoClip)
		}
		if err != nil {
			fmt.Fprintln(stderr, "lockersim: --video-clip:", err)
			return 2
		}
	}
	if *ramp != "auto" {
		if cfg.Ramp, err = time.ParseDuration(*ramp); err != nil || cfg.Ramp < 0 {
			fmt.Fprintf(stderr, "lockersim: --ramp %q: a duration like 10s, or auto\n", *ramp)
			return 2
		}
	}
	local, _ := localDefaults(cfg.VarDir)
	cfg.Hub = orDefault(cfg.Hub, orDefault(local.MQTT, "127.0.0.1:8883"))
	cfg.Status = stdout
	if !slices.Contains(POSModes, cfg.POS) {
		fmt.Fprintln(stderr, "lockersim: --pos must be one of", strings.Join(POSModes, ", "))
		return 2
	}
	if cfg.DropAcksPct < 0 || cfg.DropAcksPct > 100 || cfg.JamPct < 0 || cfg.JamPct > 100 || cfg.StuckDoorPct < 0 || cfg.StuckDoorPct > 100 {
		fmt.Fprintln(stderr, "lockersim: --drop-acks-pct, --jam-pct and --stuck-door-pct must be 0–100")
		return 2
	}
	sim, err := NewSim(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "lockersim:", err)
		return 2
	}
	if err := sim.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "lockersim:", err)
		return 1
	}
	return 0
}

func benchMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := DefaultBenchConfig()
	fs := flag.NewFlagSet("lockersim bench", flag.ContinueOnError)
	fs.StringVar(&cfg.Broker, "broker", cfg.Broker, "MQTT broker host:port (loopback only)")
	mqttVersion := fs.Int("mqtt", int(cfg.MQTTVersion), "MQTT protocol version: 4 (3.1.1) or 5")
	fs.BoolVar(&cfg.TLS, "tls", false, "mTLS with client certificates from --certs")
	fs.StringVar(&cfg.Identity.CAFile, "ca", "", "CA of the broker (--tls; default: --var/ca.crt, else --certs/ca.crt, else fetched from --admin)")
	fs.StringVar(&cfg.Identity.Dir, "certs", "./var/lockersim", "directory of ID.crt/ID.key (--tls); missing ones are enrolled")
	fs.StringVar(&cfg.Identity.VarDir, "var", "./var", "a local hub's data directory (hub.json, admin.token, ca.crt)")
	fs.StringVar(&cfg.Identity.Admin, "admin", "", "admin HTTP API for enrolment")
	fs.StringVar(&cfg.Identity.AdminToken, "admin-token", "", "admin bearer token for enrolment")
	fs.StringVar(&cfg.Identity.API, "api", "", "device listener for enrolment")
	fs.StringVar(&cfg.Identity.Segment, "segment", "bench", "segment given when registering lockers")
	fs.IntVar(&cfg.Identity.Cells, "cells", 20, "cells given when registering lockers")
	fs.IntVar(&cfg.Identity.Concurrency, "enroll-concurrency", 8, "enrolments at once")
	fs.StringVar(&cfg.Prefix, "prefix", cfg.Prefix, "client ID prefix (IDs are prefix + zero-padded number)")
	fs.IntVar(&cfg.Connections, "connections", cfg.Connections, "connections (1–19000)")
	fs.IntVar(&cfg.DialConcurrency, "dial-concurrency", cfg.DialConcurrency, "connects in progress at once")
	qos := fs.Int("qos", int(cfg.QoS), "QoS of the publishes: 0 or 1")
	fs.Float64Var(&cfg.Rate, "rate", 0, "messages per second over all connections (0: as fast as acks allow)")
	fs.IntVar(&cfg.Inflight, "inflight", cfg.Inflight, "QoS 1: max unacknowledged messages per connection")
	fs.StringVar(&cfg.Payload, "payload", cfg.Payload, "what to publish: telemetry or state")
	fs.IntVar(&cfg.Size, "size", cfg.Size, "telemetry payload size in bytes (about; valid telemetry JSON)")
	fs.StringVar(&cfg.SendLog, "send-log", "", `write "id seq unix_nanos" per message published to this file`)
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to publish (or hold with --idle), at most 1h")
	fs.Int64Var(&cfg.MaxMessages, "max-messages", 0, "stop after this many messages (0: only --duration)")
	fs.StringVar(&cfg.TopicTemplate, "topic-template", "", "topic; {id} is the client ID (default lockers/{id}/<payload>)")
	fs.BoolVar(&cfg.Idle, "idle", false, "connect and hold until --duration, no publishing")
	fs.DurationVar(&cfg.Keepalive, "keepalive", cfg.Keepalive, "MQTT keepalive")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "after --duration, wait at most this long for outstanding PUBACKs")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error")
	if code, ok := parse(fs, args, benchHelp, stdout, stderr); !ok {
		return code
	}
	log, err := newLogger(stderr, *logLevel, false)
	if err != nil {
		fmt.Fprintln(stderr, "lockersim:", err)
		return 2
	}
	cfg.MQTTVersion = byte(*mqttVersion)
	cfg.QoS = byte(*qos)
	if *qos < 0 || *qos > 1 {
		fmt.Fprintln(stderr, "lockersim: --qos must be 0 or 1")
		return 2
	}
	res, err := Bench(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "lockersim bench:", err)
		return 1
	}
	stdout.Write(res.MarshalLine())
	return 0
}
