-- The live twin of every locker, its history, and the events lockers report.
-- No foreign keys to fleet_lockers: a message of a locker deleted meanwhile
-- must not fail a whole batch of other lockers' messages.
CREATE TABLE fleet_twins (
	locker_id       text PRIMARY KEY,
	version         bigint NOT NULL,
	reported        jsonb  NOT NULL,              -- with the (boot, seq) stamp of every field
	desired         jsonb  NOT NULL DEFAULT '{}',
	desired_version bigint NOT NULL DEFAULT 0,
	updated_at      timestamptz NOT NULL
);

-- One row per twin version: the changed fields (doc), or the whole reported
-- state (snapshot) every so often, so any past version can be rebuilt.
CREATE TABLE fleet_twin_history (
	locker_id text   NOT NULL,
	version   bigint NOT NULL,
	at        timestamptz NOT NULL,
	snapshot  bool   NOT NULL,
	doc       jsonb  NOT NULL,
	PRIMARY KEY (locker_id, version)
);
CREATE INDEX fleet_twin_history_at ON fleet_twin_history (locker_id, at);

CREATE TABLE fleet_events (
	locker_id   text NOT NULL,
	event_id    text NOT NULL,
	boot        bigint NOT NULL,
	seq         bigint NOT NULL,
	ts          timestamptz NOT NULL,
	type        text NOT NULL,
	cell        text NOT NULL DEFAULT '',
	cause       text NOT NULL DEFAULT '',
	data        jsonb,
	received_at timestamptz NOT NULL,
	PRIMARY KEY (locker_id, event_id)
);
CREATE INDEX fleet_events_recent ON fleet_events (locker_id, received_at DESC);
