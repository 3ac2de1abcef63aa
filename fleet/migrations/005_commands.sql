-- Commands to lockers (fleet/commands.go): stored before they are sent,
-- re-sent while valid until the locker answers (DESIGN decisions 13, 16).
CREATE TABLE fleet_commands (
	id              text PRIMARY KEY,           -- also the device key and the RPC request id
	locker_id       text NOT NULL REFERENCES fleet_lockers (id) ON DELETE CASCADE,
	method          text NOT NULL,
	params          jsonb NOT NULL DEFAULT '{}',
	state           text NOT NULL CHECK (state IN ('pending', 'sent', 'succeeded', 'failed', 'expired', 'unconfirmed')),
	caller          text NOT NULL,              -- the idempotency scope: "user:<id>", "client:<id>", "system"
	created_by      text NOT NULL DEFAULT '',   -- a readable name of the caller
	idempotency_key text,
	not_after       timestamptz NOT NULL,
	confirm_ms      int NOT NULL DEFAULT 0,     -- cell.open: how long the door sensor has after the answer
	created_at      timestamptz NOT NULL,
	sent_at         timestamptz,                -- first publish
	attempts        int NOT NULL DEFAULT 0,     -- publishes
	answered_at     timestamptz,
	confirmed_at    timestamptz,                -- cell.open: the door sensor reported the door open
	finished_at     timestamptz,
	result          jsonb,
	error_code      text,
	error_message   text
);
CREATE UNIQUE INDEX fleet_commands_idempotency ON fleet_commands (caller, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX fleet_commands_open ON fleet_commands (locker_id) WHERE state IN ('pending', 'sent');
CREATE INDEX fleet_commands_by_locker ON fleet_commands (locker_id, created_at DESC);
CREATE INDEX fleet_commands_recent ON fleet_commands (created_at DESC);
