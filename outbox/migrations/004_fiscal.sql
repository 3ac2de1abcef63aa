-- The "fiscal" channel: receipts of payments at lockers, POSTed to the
-- configured cloud fiscal service with the message id (the payment id) as
-- Idempotency-Key. "rendered" keeps the service's receipt number.
ALTER TABLE outbox_messages DROP CONSTRAINT outbox_messages_channel_check;
ALTER TABLE outbox_messages ADD CONSTRAINT outbox_messages_channel_check CHECK (channel IN ('webhook', 'sms', 'email', 'http', 'fiscal'));
