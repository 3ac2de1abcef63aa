-- The webhook delivery log (docs/outbox.md "Delivery log"): every attempt to
-- deliver a webhook to an API client, with its answer, so a partner sees why
-- a delivery is late and an operator can replay one. Deleted with its
-- message after the retention.
CREATE TABLE outbox_attempts (
	id              bigserial PRIMARY KEY,
	message_id      text NOT NULL REFERENCES outbox_messages (id) ON DELETE CASCADE,
	replay          int NOT NULL DEFAULT 0,  -- 0: the first delivery, n: the n-th replay
	attempt         int NOT NULL,            -- within that delivery or replay, from 1
	at              timestamptz NOT NULL,
	duration_ms     int NOT NULL,
	http_status     int,                     -- NULL: no HTTP answer (connect error, timeout)
	error           text,
	outcome         text NOT NULL CHECK (outcome IN ('sent', 'retry', 'failed', 'waiting')),
	next_attempt_at timestamptz              -- retry, waiting: when the next try is due
);
CREATE INDEX outbox_attempts_message ON outbox_attempts (message_id, id);

-- A manual replay sends a delivered or failed webhook again, same id.
ALTER TABLE outbox_messages ADD COLUMN replays int NOT NULL DEFAULT 0;
ALTER TABLE outbox_messages ADD COLUMN replayed_at timestamptz;
-- A client's webhooks, newest first (the delivery log).
CREATE INDEX outbox_messages_client_log ON outbox_messages (client_id, created_at DESC, id DESC) WHERE channel = 'webhook';

-- The body format of an endpoint: '' is the JSON webhook; else a partner
-- format (a connector's name, e.g. xml-orders) the event is translated to.
ALTER TABLE outbox_webhook_endpoints ADD COLUMN format text NOT NULL DEFAULT '';
