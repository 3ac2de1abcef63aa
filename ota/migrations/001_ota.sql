-- Firmware updates (ota/, docs/ota.md): artifacts, rollouts, their waves and
-- the update state of every locker in a rollout.

-- An uploaded firmware package: the file lives under the data dir
-- (ota/<id>-<sha256>.bin); sha256 and the hub's Ed25519 signature of
-- protocol.OTASignedMessage(version, sha256, size) go to the locker.
CREATE TABLE ota_artifacts (
	id         bigserial PRIMARY KEY,
	version    text NOT NULL UNIQUE,
	models     text[] NOT NULL DEFAULT '{}', -- compatible locker models; empty: every model
	notes      text NOT NULL DEFAULT '',
	size       bigint NOT NULL,
	sha256     text NOT NULL,
	signature  text NOT NULL,
	file       text NOT NULL,
	created_by text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ota_rollouts (
	id           bigserial PRIMARY KEY,
	name         text NOT NULL DEFAULT '',
	artifact_id  bigint NOT NULL REFERENCES ota_artifacts (id) ON DELETE RESTRICT,
	state        text NOT NULL CHECK (state IN ('draft', 'running', 'paused', 'completed', 'cancelled', 'aborted')),
	targets      jsonb NOT NULL,  -- ota.Targets
	policy       jsonb NOT NULL,  -- ota.Policy
	current_wave int NOT NULL DEFAULT 0,  -- 0 before start
	reason       text NOT NULL DEFAULT '', -- why it paused or aborted
	rollback_of  bigint REFERENCES ota_rollouts (id),
	created_by   text NOT NULL DEFAULT '',
	created_at   timestamptz NOT NULL DEFAULT now(),
	started_at   timestamptz,
	finished_at  timestamptz,
	updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ota_rollouts_active ON ota_rollouts (id) WHERE state IN ('running', 'paused');

-- Waves are made when the rollout starts. state: pending → running →
-- soaking (success threshold reached, health gate watching) →
-- awaiting_approval (with manual approval) → done.
CREATE TABLE ota_waves (
	rollout_id  bigint NOT NULL REFERENCES ota_rollouts (id) ON DELETE CASCADE,
	n           int NOT NULL,
	size        int NOT NULL,
	state       text NOT NULL CHECK (state IN ('pending', 'running', 'soaking', 'awaiting_approval', 'done')),
	started_at  timestamptz,
	soak_until  timestamptz,
	finished_at timestamptz,
	health      jsonb,  -- the health gate's last comparison
	accepted    bool NOT NULL DEFAULT false, -- resumed by an operator after it paused: its thresholds no longer pause it
	PRIMARY KEY (rollout_id, n)
);

-- One row per targeted locker. state: pending (its wave has not started) →
-- queued (waiting for its conditions) → notified (ota.install sent) →
-- downloading → downloaded → verified → installing → installed | failed,
-- or cancelled.
CREATE TABLE ota_lockers (
	rollout_id       bigint NOT NULL REFERENCES ota_rollouts (id) ON DELETE CASCADE,
	locker_id        text NOT NULL,
	wave             int NOT NULL,
	state            text NOT NULL CHECK (state IN ('pending', 'queued', 'notified', 'downloading', 'downloaded',
	                         'verified', 'installing', 'installed', 'failed', 'cancelled')),
	reason           text NOT NULL DEFAULT '',  -- failed: why; queued: what it waits for
	attempts         int NOT NULL DEFAULT 0,     -- ota.install attempts made
	previous_version text NOT NULL DEFAULT '',
	bytes            bigint NOT NULL DEFAULT 0,
	last_boot        bigint NOT NULL DEFAULT 0,  -- (boot, seq) of the last status taken
	last_seq         bigint NOT NULL DEFAULT 0,
	request_id       text NOT NULL DEFAULT '',
	deadline         timestamptz,                -- the current step's timeout
	state_at         timestamptz NOT NULL DEFAULT now(),
	installed_at     timestamptz,
	PRIMARY KEY (rollout_id, locker_id)
);
CREATE INDEX ota_lockers_locker ON ota_lockers (locker_id);
CREATE INDEX ota_lockers_wave ON ota_lockers (rollout_id, wave, state);
