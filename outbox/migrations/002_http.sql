-- The "http" channel (alarm receivers: webhooks, chat): the message names
-- its URL in "to" and carries the receiver's signing secret (may be empty);
-- its data is the request body as is.
ALTER TABLE outbox_messages ADD COLUMN secret text NOT NULL DEFAULT '';
ALTER TABLE outbox_messages DROP CONSTRAINT outbox_messages_channel_check;
ALTER TABLE outbox_messages ADD CONSTRAINT outbox_messages_channel_check CHECK (channel IN ('webhook', 'sms', 'email', 'http'));
