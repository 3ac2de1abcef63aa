-- Alarms (alarms/): what fired, its lifecycle and history, the rules and
-- routing that decide it, silences, notification groups and what was sent.

-- Device events that raise alarms, taken in the ingest's own transaction by
-- a trigger on fleet_events (DESIGN decision 10): an acknowledged event is in
-- this inbox exactly when it is stored. The alarms consumer fires the alarm
-- and deletes the row in one transaction, so none is lost or taken twice.
CREATE TABLE alarms_inbox (
	id        bigserial PRIMARY KEY,
	locker_id text NOT NULL,
	event_id  text NOT NULL,
	type      text NOT NULL,
	cell      text NOT NULL DEFAULT '',
	cause     text NOT NULL DEFAULT '',
	ts        timestamptz NOT NULL,
	taken_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION alarms_take_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO alarms_inbox (locker_id, event_id, type, cell, cause, ts)
		VALUES (NEW.locker_id, NEW.event_id, NEW.type, NEW.cell, NEW.cause, NEW.ts);
	PERFORM pg_notify('alarms_inbox', '');
	RETURN NULL;
END $$;

-- Only the events that raise an alarm: a door opened without a cause is
-- forced (DESIGN decision 17).
CREATE TRIGGER alarms_take_event AFTER INSERT ON fleet_events FOR EACH ROW
	WHEN (NEW.type IN ('door_forced', 'tamper') OR (NEW.type = 'door_opened' AND NEW.cause = ''))
	EXECUTE FUNCTION alarms_take_event();

CREATE TABLE alarms_alarms (
	id            bigserial PRIMARY KEY,
	fingerprint   text NOT NULL,               -- kind/locker/cell: one open alarm each
	kind          text NOT NULL,
	severity      text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'info')),
	locker_id     text NOT NULL,
	cell          text NOT NULL DEFAULT '',
	segments      text[] NOT NULL DEFAULT '{}',
	carriers      text[] NOT NULL DEFAULT '{}',
	model         text NOT NULL DEFAULT '',
	state         text NOT NULL CHECK (state IN ('firing', 'acknowledged', 'resolved')),
	summary       text NOT NULL,
	source        text NOT NULL DEFAULT '',    -- the event id, command id or condition that raised it
	value         double precision,            -- the measured value of a threshold condition
	occurrences   int NOT NULL DEFAULT 1,      -- times it was raised while open (deduplicated)
	muted         bool NOT NULL DEFAULT false, -- muted until resolved
	started_at    timestamptz NOT NULL,
	last_seen_at  timestamptz NOT NULL,
	acked_at      timestamptz,
	acked_by      text NOT NULL DEFAULT '',
	ack_note      text NOT NULL DEFAULT '',
	resolved_at   timestamptz,
	resolved_by   text NOT NULL DEFAULT ''     -- "" = the condition cleared
);
CREATE UNIQUE INDEX alarms_alarms_open ON alarms_alarms (fingerprint) WHERE state <> 'resolved';
CREATE INDEX alarms_alarms_locker ON alarms_alarms (locker_id, started_at DESC);
CREATE INDEX alarms_alarms_recent ON alarms_alarms (started_at DESC);
CREATE INDEX alarms_alarms_source ON alarms_alarms (source); -- unconfirmed commands already raised

-- Every step of every alarm.
CREATE TABLE alarms_history (
	alarm_id bigint NOT NULL REFERENCES alarms_alarms (id) ON DELETE CASCADE,
	at       timestamptz NOT NULL DEFAULT now(),
	action   text NOT NULL,  -- fired, repeated, acknowledged, muted, resolved, notified
	by       text NOT NULL DEFAULT '',
	note     text NOT NULL DEFAULT ''
);
CREATE INDEX alarms_history_alarm ON alarms_history (alarm_id, at);

-- Threshold rules (kind + optional scope); the most specific one wins.
CREATE TABLE alarms_rules (
	id         bigserial PRIMARY KEY,
	kind       text NOT NULL,
	segment    text NOT NULL DEFAULT '',
	model      text NOT NULL DEFAULT '',
	locker_id  text NOT NULL DEFAULT '',
	metric     text NOT NULL DEFAULT '', -- telemetry_high/low: the telemetry metric
	enabled    bool NOT NULL DEFAULT true,
	severity   text NOT NULL DEFAULT '',
	threshold  double precision,
	for_ms     bigint            -- NULL: the kind's default
);

-- The routing document (receivers, schedules, the route tree): one row.
CREATE TABLE alarms_routing (
	id         int PRIMARY KEY CHECK (id = 1),
	doc        jsonb NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alarms_silences (
	id         bigserial PRIMARY KEY,
	matchers   jsonb NOT NULL,
	starts_at  timestamptz NOT NULL,
	ends_at    timestamptz NOT NULL,
	created_by text NOT NULL DEFAULT '',
	comment    text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alarms_silences_active ON alarms_silences (ends_at);

-- Notification groups: one per route and group-by values, with when it is
-- next looked at; the members and what each was last told as.
CREATE TABLE alarms_groups (
	key           text PRIMARY KEY,
	route         text NOT NULL,
	labels        jsonb NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now(),
	next_flush_at timestamptz,
	last_sent_at  timestamptz,
	firing_since  timestamptz, -- the first notice of what fires unacknowledged: escalation counts from it
	level         int NOT NULL DEFAULT 0,
	seq           int NOT NULL DEFAULT 0
);
CREATE INDEX alarms_groups_due ON alarms_groups (next_flush_at) WHERE next_flush_at IS NOT NULL;

CREATE TABLE alarms_group_members (
	group_key text NOT NULL REFERENCES alarms_groups (key) ON DELETE CASCADE,
	alarm_id  bigint NOT NULL REFERENCES alarms_alarms (id) ON DELETE CASCADE,
	notified  text NOT NULL DEFAULT '', -- '' or 'firing': told firing to this group's receivers
	PRIMARY KEY (group_key, alarm_id)
);
CREATE INDEX alarms_group_members_alarm ON alarms_group_members (alarm_id);

-- One row per notice to one receiver; id is also the outbox message id.
CREATE TABLE alarms_notifications (
	id         text PRIMARY KEY,
	group_key  text NOT NULL,
	receiver   text NOT NULL,
	rtype      text NOT NULL,
	notice     text NOT NULL, -- firing, resolved, reminder, escalation
	level      int NOT NULL,
	alarm_ids  bigint[] NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alarms_notifications_recent ON alarms_notifications (created_at DESC);
CREATE INDEX alarms_notifications_alarms ON alarms_notifications USING gin (alarm_ids);

-- Durable cursors of the sources read by time (unconfirmed commands).
CREATE TABLE alarms_cursors (
	name text PRIMARY KEY,
	at   timestamptz NOT NULL
);
