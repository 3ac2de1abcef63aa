-- The durable outbox (outbox/): webhooks to API clients, SMS and e-mail to
-- recipients. A message is inserted in the transaction of the change it
-- reports (Enqueue), so it exists exactly when that change committed.
CREATE TABLE outbox_messages (
	id              text PRIMARY KEY CHECK (id <> '' AND length(id) <= 200), -- receivers deduplicate on it
	channel         text NOT NULL CHECK (channel IN ('webhook', 'sms', 'email')),
	client_id       bigint NOT NULL DEFAULT 0,  -- webhook: the API client (access_clients.id)
	"to"            text NOT NULL DEFAULT '',   -- sms: E.164 number, email: address
	template        text NOT NULL,              -- webhook: event type; sms/email: template name
	data            jsonb NOT NULL DEFAULT '{}',
	state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
	attempts        int NOT NULL DEFAULT 0,     -- sends started (a claim counts one)
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	last_error      text,
	created_at      timestamptz NOT NULL DEFAULT now(),
	sent_at         timestamptz
);
-- What the dispatchers claim, in due order; also the queue depth and age.
CREATE INDEX outbox_messages_due ON outbox_messages (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_messages_client ON outbox_messages (client_id) WHERE state = 'pending' AND channel = 'webhook';
CREATE INDEX outbox_messages_done ON outbox_messages (created_at) WHERE state <> 'pending';

-- One webhook endpoint per API client. The secret signs every delivery
-- (HMAC-SHA256); it is shown to the client once, when the endpoint is set.
CREATE TABLE outbox_webhook_endpoints (
	client_id  bigint PRIMARY KEY,
	url        text NOT NULL,
	secret     text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	disabled   boolean NOT NULL DEFAULT false
);
