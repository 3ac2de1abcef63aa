package dashboards_test

// The Grafana dashboards in this directory are written from the spec below
// (go test ./dashboards -update rewrites them; the test fails when a JSON
// file differs from it). A panel names what it shows and what good looks
// like; its queries are checked against a real Prometheus scraping a real
// hub (TestEveryPanelQueryAnswers).

type dashboard struct {
	File, UID, Title, Description string
	Panels                        []panel
}

type panel struct {
	Title, Description string
	Kind               string // stat, timeseries
	Unit               string // Grafana unit: short, s, bytes, percentunit, reqps, dateTimeFromNow …
	Width              int    // of 24; 0: 6 for a stat, 12 for a time series
	Targets            []target
	// Core panels must return data against a hub with lockers connected
	// (the integration test fails when one does not); the others may be
	// empty until something happens (refusals, failures, OTA, video).
	Core bool
}

type target struct{ Expr, Legend string }

func stat(title, desc, unit, expr string) panel {
	return panel{Title: title, Description: desc, Kind: "stat", Unit: unit, Targets: []target{{Expr: expr}}, Core: true}
}

func series(title, desc, unit string, targets ...target) panel {
	return panel{Title: title, Description: desc, Kind: "timeseries", Unit: unit, Targets: targets, Core: true}
}

func optional(p panel) panel { p.Core = false; return p }

func wide(p panel) panel { p.Width = 24; return p }

const ri = "$__rate_interval"

var dashboards = []dashboard{
	{
		File: "lockerhub-fleet.json", UID: "lockerhub-fleet", Title: "lockerhub / Fleet overview",
		Description: "The fleet as the hub sees it: lockers online, power, doors, free cells and firing alarms.",
		Panels: []panel{
			stat("Lockers online", "Registered lockers with a live MQTT session. Good: all of them, or the known few in maintenance.", "short",
				`sum(lockerhub_fleet_lockers{presence="online"})`),
			stat("Lockers offline", "Registered lockers without a session (unknown for 30 s after a hub start). Good: 0 or a steady few; a jump is an outage.", "short",
				`sum(lockerhub_fleet_lockers{presence="offline"})`),
			stat("On battery", "Lockers whose last report says mains is lost. Good: 0; several in one area at once is a power cut.", "short",
				`sum(lockerhub_fleet_lockers_on_battery)`),
			stat("Firing alarms", "Open alarms nobody has acknowledged yet. Good: 0, and never for long.", "short",
				`sum(lockerhub_alarms_open{state="firing"}) or vector(0)`),
			series("Lockers by presence", "Online, offline and unknown over time. Good: flat; a dip that recovers in seconds is a reconnect storm the broker absorbed.", "short",
				target{`sum by (presence) (lockerhub_fleet_lockers)`, "{{presence}}"}),
			series("Free cells for loading, by size", "Empty, closed, working cells not reserved or held for returns. Good: well above the loads of the next hours in every size.", "short",
				target{`sum by (size) (lockerhub_fleet_free_cells)`, "{{size}}"}),
			series("Doors open", "Cell doors reported open across the fleet. Good: small and short-lived spikes (pickups); a plateau is a door left open (see alarms).", "short",
				target{`sum(lockerhub_fleet_doors_open)`, "open doors"}),
			series("Open alarms by severity", "Firing and acknowledged alarms. Good: few, acknowledged quickly, resolved within the hour.", "short",
				target{`sum by (severity, state) (lockerhub_alarms_open) or vector(0)`, "{{severity}} {{state}}"}),
			optional(series("Cells held for returns, by size", "Empty cells kept free for returns (not counted as free for loading).", "short",
				target{`sum by (size) (lockerhub_fleet_cells_held_for_returns)`, "{{size}}"})),
		},
	},
	{
		File: "lockerhub-broker.json", UID: "lockerhub-broker", Title: "lockerhub / Broker",
		Description: "The embedded MQTT broker: connections, refusals, messages and bytes, accept rate limiting.",
		Panels: []panel{
			stat("Connected lockers", "Lockers with a live mTLS MQTT session. Good: the fleet's size.", "short",
				`sum(lockerhub_broker_connected_lockers)`),
			stat("Connects / s", "New sessions per second. Good: near 0 in steady state; a burst after a hub or network restart.", "reqps",
				`sum(rate(lockerhub_broker_connects_total[`+ri+`]))`),
			stat("TLS handshakes in progress", "Handshakes running now (at most 64 at a time). Good: near 0; at the limit during a reconnect storm.", "short",
				`sum(lockerhub_broker_tls_handshakes_in_progress)`),
			stat("Unacknowledged messages", "QoS 1 publishes received and not yet stored (their PUBACK waits for the commit). Good: tens, not thousands.", "short",
				`sum(lockerhub_broker_unacked_messages)`),
			series("Messages from lockers, by topic kind", "Publishes per second from lockers. Good: steady, proportional to the fleet.", "reqps",
				target{`sum by (kind) (rate(lockerhub_broker_messages_received_total[` + ri + `]))`, "{{kind}}"}),
			series("Bytes from lockers, by topic kind", "Payload bytes per second from lockers.", "Bps",
				target{`sum by (kind) (rate(lockerhub_broker_received_bytes_total[` + ri + `]))`, "{{kind}}"}),
			optional(series("Messages to lockers, by topic kind", "Publishes per second to lockers (commands, desired state, RPC).", "reqps",
				target{`sum by (kind) (rate(lockerhub_broker_messages_sent_total[` + ri + `]))`, "{{kind}}"})),
			optional(series("Refused connections, by stage and reason", "TLS and CONNECT refusals (expired, revoked, unknown CA, client ID mismatch …). Good: 0; a steady rate is a misconfigured or revoked locker retrying.", "reqps",
				target{`sum by (stage, reason) (rate(lockerhub_broker_refusals_total[` + ri + `]))`, "{{stage}} {{reason}}"})),
			optional(series("Disconnects, by reason", "Sessions ended per second. Good: near 0; keepalive_timeout in bulk is a network problem.", "reqps",
				target{`sum by (reason) (rate(lockerhub_broker_disconnects_total[` + ri + `]))`, "{{reason}}"})),
			series("Accept rate limiting", "Accepted connections that waited for the accept rate limit or a handshake slot. Good: 0 except during reconnect storms.", "reqps",
				target{`sum(rate(lockerhub_broker_accept_throttled_total[` + ri + `]))`, "throttled"}),
			optional(series("Invalid and unhandled publishes", "Publishes refused as invalid (PUBACK 0x99) or of a kind no component handles. Good: 0; a steady rate is a firmware bug.", "reqps",
				target{`sum by (kind) (rate(lockerhub_broker_messages_invalid_total[` + ri + `]))`, "invalid {{kind}}"},
				target{`sum by (kind) (rate(lockerhub_broker_messages_unhandled_total[` + ri + `]))`, "unhandled {{kind}}"})),
			optional(series("Device RPC calls, by outcome", "Hub → locker calls (open a cell, reboot …) by outcome. Good: ok; timeouts or offline in bulk mean lockers are unreachable.", "reqps",
				target{`sum by (outcome) (rate(lockerhub_broker_rpc_calls_total[` + ri + `]))`, "{{outcome}}"})),
		},
	},
	{
		File: "lockerhub-ingest.json", UID: "lockerhub-ingest", Title: "lockerhub / Ingest",
		Description: "Telemetry and device state into PostgreSQL: throughput, commit latency, queues, withheld acknowledgements.",
		Panels: []panel{
			stat("Telemetry samples / s", "Samples stored per second. Good: the fleet's size ÷ the telemetry period.", "reqps",
				`sum(rate(lockerhub_telemetry_samples_stored_total[`+ri+`]))`),
			stat("Telemetry queue", "Samples waiting for a writer (bounded by 100,000). Good: near 0; growing means PostgreSQL is slow or away.", "short",
				`sum(lockerhub_telemetry_queue_samples)`),
			stat("Acks withheld", "Samples taken whose transaction has not committed: lockers wait for these PUBACKs. Good: under a few thousand.", "short",
				`sum(lockerhub_telemetry_acks_withheld)`),
			stat("Telemetry writes", "1 while telemetry writes succeed, 0 while they fail (samples wait unacknowledged; nothing is lost).", "short",
				`min(lockerhub_telemetry_db_up)`),
			series("Telemetry received and stored", "Samples handed to the ingest and written. Good: the two lines together.", "reqps",
				target{`sum(rate(lockerhub_telemetry_samples_received_total[` + ri + `]))`, "received"},
				target{`sum(rate(lockerhub_telemetry_samples_stored_total[` + ri + `]))`, "stored"}),
			series("Telemetry commit latency", "One batch transaction's time, p50 and p99. Good: p99 under 100 ms.", "s",
				target{`histogram_quantile(0.5, sum by (le) (rate(lockerhub_telemetry_commit_seconds_bucket[` + ri + `])))`, "p50"},
				target{`histogram_quantile(0.99, sum by (le) (rate(lockerhub_telemetry_commit_seconds_bucket[` + ri + `])))`, "p99"}),
			series("State and events stored, by kind and result", "Device state and event messages the twin writer took. Good: stored; invalid or overloaded are refused or withheld.", "reqps",
				target{`sum by (kind, result) (rate(lockerhub_fleet_device_messages_total[` + ri + `]))`, "{{kind}} {{result}}"}),
			series("Twin commit latency", "One twin writer transaction, p99. Good: under 50 ms.", "s",
				target{`histogram_quantile(0.99, sum by (le) (rate(lockerhub_fleet_commit_seconds_bucket[` + ri + `])))`, "p99"}),
			series("Ingest queues", "Telemetry samples and state/event messages waiting for their writers.", "short",
				target{`sum(lockerhub_telemetry_queue_samples)`, "telemetry"},
				target{`sum(lockerhub_fleet_ingest_queue_depth)`, "state and events"}),
			optional(series("Samples refused, dropped or not taken", "Refused as invalid, dropped as too old, or not taken now (the locker resends). Good: 0.", "reqps",
				target{`sum by (reason) (rate(lockerhub_telemetry_samples_rejected_total[` + ri + `]))`, "rejected {{reason}}"},
				target{`sum by (reason) (rate(lockerhub_telemetry_samples_not_taken_total[` + ri + `]))`, "not taken {{reason}}"},
				target{`sum by (reason) (rate(lockerhub_telemetry_samples_dropped_total[` + ri + `]))`, "dropped {{reason}}"})),
			optional(series("Write failures", "Failed telemetry and twin transactions (retried). Good: 0.", "reqps",
				target{`sum(rate(lockerhub_telemetry_write_failures_total[` + ri + `]))`, "telemetry"},
				target{`sum(rate(lockerhub_fleet_commit_failures_total[` + ri + `]))`, "twins"})),
		},
	},
	{
		File: "lockerhub-commands.json", UID: "lockerhub-commands", Title: "lockerhub / Commands and parcels",
		Description: "Parcel commands as device RPCs, the parcel lifecycle, pickup codes and the HTTP API.",
		Panels: []panel{
			optional(stat("Commands / s", "Commands created per second (repeats of an idempotency key not counted).", "reqps",
				`sum(rate(lockerhub_fleet_commands_created_total[`+ri+`])) or vector(0)`)),
			stat("Open commands", "Commands in memory: waiting for their locker or its answer. Good: small; growing means lockers do not answer.", "short",
				`sum(lockerhub_fleet_commands_open)`),
			optional(series("Commands finished, by method and state", "succeeded, failed, expired, unconfirmed (the door sensor did not confirm). Good: succeeded; unconfirmed raises an alarm.", "reqps",
				target{`sum by (method, state) (rate(lockerhub_fleet_commands_finished_total[` + ri + `]))`, "{{method}} {{state}}"})),
			optional(series("Command latency", "Creation to final state, p50 and p99 (cell.open includes the door sensor). Good: p99 under a second.", "s",
				target{`histogram_quantile(0.5, sum by (le) (rate(lockerhub_fleet_command_seconds_bucket[` + ri + `])))`, "p50"},
				target{`histogram_quantile(0.99, sum by (le) (rate(lockerhub_fleet_command_seconds_bucket[` + ri + `])))`, "p99"})),
			optional(series("Parcel transitions, by state", "Parcels reaching a state per second (reserved, deposited, picked up, expired …).", "reqps",
				target{`sum by (state) (rate(lockerhub_parcels_transitions_total[` + ri + `]))`, "{{state}}"})),
			optional(series("Pickup code checks, by result", "Codes typed at lockers. Good: mostly ok; wrong or rate_limited in bulk at one locker is brute force (alarm).", "reqps",
				target{`sum by (result) (rate(lockerhub_parcels_code_checks_total[` + ri + `]))`, "{{result}}"})),
			series("HTTP API requests, by status class", "Requests answered per second. Good: 2xx; 5xx is the hub's fault, 4xx the caller's.", "reqps",
				target{`sum by (code) (rate(lockerhub_http_requests_total[` + ri + `]))`, "{{code}}"}),
			series("HTTP API latency, slowest routes (p99)", "The five routes with the highest p99 (a ?wait command waits here too).", "s",
				target{`topk(5, histogram_quantile(0.99, sum by (route, le) (rate(lockerhub_http_request_duration_seconds_bucket[` + ri + `]))))`, "{{route}}"}),
			optional(series("Command writer", "The command writer's transactions, p99. Good: under 50 ms.", "s",
				target{`histogram_quantile(0.99, sum by (le) (rate(lockerhub_fleet_command_commit_seconds_bucket[` + ri + `])))`, "p99"})),
		},
	},
	{
		File: "lockerhub-alarms.json", UID: "lockerhub-alarms", Title: "lockerhub / Alarms and notifications",
		Description: "Alarms by kind and severity, the delivery of their notifications and of every other outbox message, and the camera streams and clips that follow them.",
		Panels: []panel{
			stat("Firing alarms", "Open and unacknowledged. Good: 0.", "short", `sum(lockerhub_alarms_open{state="firing"}) or vector(0)`),
			stat("Acknowledged alarms", "Open, someone is on it.", "short", `sum(lockerhub_alarms_open{state="acknowledged"}) or vector(0)`),
			stat("Oldest undelivered message", "Age of the oldest pending outbox message (notifications, webhooks, SMS, e-mail). Good: seconds; minutes means a receiver is failing.", "s",
				`max(lockerhub_outbox_oldest_pending_age_seconds) or vector(0)`),
			stat("Pending messages", "Outbox messages waiting to be sent, every channel.", "short", `sum(lockerhub_outbox_pending_messages) or vector(0)`),
			series("Open alarms, by kind", "Firing and acknowledged, by kind.", "short",
				target{`sum by (kind) (lockerhub_alarms_open) or vector(0)`, "{{kind}}"}),
			optional(series("Alarms raised, by kind and severity", "New alarms per second (repeats of an open one not counted).", "reqps",
				target{`sum by (kind, severity) (rate(lockerhub_alarms_fired_total[` + ri + `]))`, "{{kind}} {{severity}}"})),
			optional(series("Notices enqueued, by receiver type", "firing, resolved, reminder and escalation notices.", "reqps",
				target{`sum by (receiver_type, notice) (rate(lockerhub_alarms_notifications_total[` + ri + `]))`, "{{receiver_type}} {{notice}}"})),
			optional(series("Delivered and failed, by channel", "Outbox sends per second. Good: failed at 0.", "reqps",
				target{`sum by (channel) (rate(lockerhub_outbox_sent_total[` + ri + `]))`, "sent {{channel}}"},
				target{`sum by (channel, reason) (rate(lockerhub_outbox_failed_total[` + ri + `]))`, "failed {{channel}} {{reason}}"})),
			optional(series("Send attempts, by result", "Attempts including retries. Good: sent; error means retries with backoff.", "reqps",
				target{`sum by (channel, result) (rate(lockerhub_outbox_attempts_total[` + ri + `]))`, "{{channel}} {{result}}"})),
		},
	},
	{
		File: "lockerhub-video.json", UID: "lockerhub-video", Title: "lockerhub / Video",
		Description: "Camera streams relayed from lockers to browsers over WebRTC, and alarm clips.",
		Panels: []panel{
			stat("Streams", "Lockers whose camera stream runs or is starting.", "short", `sum(lockerhub_video_streams)`),
			stat("Viewers", "Viewers of all streams.", "short", `sum(lockerhub_video_viewers)`),
			stat("Peer connections", "Open WebRTC peer connections (upstreams and viewers). Good: streams + viewers; more means connections leak.", "short",
				`sum(lockerhub_video_peer_connections)`),
			stat("Recordings in progress", "Alarm clips being written now.", "short", `sum(lockerhub_video_recordings_active)`),
			series("Bitrate", "Bits per second received from lockers and sent to viewers (one copy per viewer).", "bps",
				target{`8 * sum(rate(lockerhub_video_upstream_bytes_total[` + ri + `]))`, "from lockers"},
				target{`8 * sum(rate(lockerhub_video_forwarded_bytes_total[` + ri + `]))`, "to viewers"}),
			optional(series("Stream starts, by outcome", "video.start calls: ok, offline, no_answer, refused, error. Good: ok.", "reqps",
				target{`sum by (outcome) (rate(lockerhub_video_stream_starts_total[` + ri + `]))`, "{{outcome}}"})),
			optional(series("Viewers refused and removed", "Refused (bad offer, offline, too many viewers or streams) and gone (left, ICE failed, never connected).", "reqps",
				target{`sum by (reason) (rate(lockerhub_video_viewers_refused_total[` + ri + `]))`, "refused {{reason}}"},
				target{`sum by (reason) (rate(lockerhub_video_viewers_removed_total[` + ri + `]))`, "removed {{reason}}"})),
			optional(series("Keyframe requests", "PLI/FIR from viewers, forwarded upstream, and held back by the rate limit.", "reqps",
				target{`sum(rate(lockerhub_video_keyframe_requests_total[` + ri + `]))`, "from viewers"},
				target{`sum(rate(lockerhub_video_keyframe_requests_forwarded_total[` + ri + `]))`, "forwarded"},
				target{`sum(rate(lockerhub_video_keyframe_requests_limited_total[` + ri + `]))`, "limited"})),
			optional(series("Recordings, by outcome", "Alarm clips finished: ok, no_video, error, refused. Good: ok.", "reqps",
				target{`sum by (outcome) (rate(lockerhub_video_recordings_total[` + ri + `]))`, "{{outcome}}"})),
		},
	},
	{
		File: "lockerhub-runtime.json", UID: "lockerhub-runtime", Title: "lockerhub / Hub process",
		// go_* and process_* have no lockerhub_ prefix: "and on (job,
		// instance) lockerhub_build_info" keeps the hubs' series, whatever
		// the scrape job is called.
		Description: "The hub's Go runtime, process and PostgreSQL pool.",
		Panels: []panel{
			stat("PostgreSQL", "1 when the hub's ping answered at the last scrape. Good: 1.", "short", `min(lockerhub_pg_up)`),
			stat("CPU", "Cores the hub process uses. Good: under 1.5 on 2 cores at 10,000 lockers.", "short",
				`sum(rate(process_cpu_seconds_total[`+ri+`]) and on (job, instance) lockerhub_build_info)`),
			stat("Resident memory", "The hub's RSS. Good: flat over days.", "bytes", `sum(process_resident_memory_bytes and on (job, instance) lockerhub_build_info)`),
			stat("Server certificate ends", "When the MQTT/device HTTPS certificate expires. Good: months away.", "dateTimeFromNow",
				`min(lockerhub_certificate_expiry_timestamp_seconds{cert="server"}) * 1000`),
			series("Goroutines", "About two per connected locker plus a fixed set. Good: flat with the fleet.", "short",
				target{`sum(go_goroutines and on (job, instance) lockerhub_build_info)`, "goroutines"}),
			series("Heap", "Go heap in use and the GC's next target.", "bytes",
				target{`sum(go_memstats_heap_inuse_bytes and on (job, instance) lockerhub_build_info)`, "in use"},
				target{`sum(go_memstats_next_gc_bytes and on (job, instance) lockerhub_build_info)`, "next GC"}),
			series("GC pauses", "Stop-the-world pause quantiles. Good: under a few ms.", "s",
				target{`max(go_gc_duration_seconds{quantile="1"} and on (job, instance) lockerhub_build_info)`, "max"},
				target{`max(go_gc_duration_seconds{quantile="0.5"} and on (job, instance) lockerhub_build_info)`, "median"}),
			series("Open files", "File descriptors against the limit (each locker holds one).", "short",
				target{`sum(process_open_fds and on (job, instance) lockerhub_build_info)`, "open"},
				target{`sum(process_max_fds and on (job, instance) lockerhub_build_info)`, "limit"}),
			series("PostgreSQL pool", "Connections in use and idle, and the limit. Good: in use below the limit.", "short",
				target{`sum by (state) (lockerhub_pg_pool_connections)`, "{{state}}"},
				target{`sum(lockerhub_pg_pool_max_connections)`, "limit"}),
			series("Pool waits", "Acquires per second that found no idle connection. Good: near 0.", "reqps",
				target{`sum(rate(lockerhub_pg_pool_acquire_waits_total[` + ri + `]))`, "waits"}),
		},
	},
}
