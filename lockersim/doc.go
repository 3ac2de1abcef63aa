// Package lockersim is lockerhub's reference locker simulator and MQTT load
// generator (the logic of cmd/lockersim).
//
// A simulated locker follows the device contract (docs/protocol.md, package
// protocol) to the letter: a boot counter on disk, seq increasing within a boot,
// a clean session with subscriptions to rpc/req, ask/res and desired on every
// connect followed by a full state report, QoS 1 messages kept until their
// PUBACK and republished unchanged after a reconnect, idempotency keys kept on
// disk until not_after, reconnects with exponential backoff and full jitter.
//
// The pieces:
//
//   - mqtt.go: a small MQTT 3.1.1/5 client on mochi's packet codec (one reader
//     goroutine per connection, synchronous writes, keepalive on a runtime timer);
//   - outbox.go: the bounded per-locker queue of unacknowledged QoS 1 messages;
//   - locker.go: one locker: its state, RPCs, events, telemetry, connection loop;
//   - pickup.go: codes.key, parcels.sync and pickup codes checked offline;
//   - sched.go: one timer heap and a few workers for all lockers' timed work;
//   - sim.go, control.go: many lockers, enrolment, the HTTP control API;
//   - bench.go: the load generator;
//   - cli.go: the command line (Main), so that cmd/lockersim stays a thin main.
//
// Memory, measured here with 10,000 lockers of 20 cells: over mTLS against the
// hub on the same machine about 31 KiB RSS per locker after a GC (48 KiB
// before one), 8 KiB of it the reader goroutine's stack; over plain TCP against
// Mosquitto 16 KiB (20 KiB before a GC): `make bench` runs BenchmarkSimMemory10k.
package lockersim
