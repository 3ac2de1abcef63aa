-- Recipient notification templates edited by operators (outbox/catalog.go,
-- docs/outbox.md "Templates"): per event and channel, optionally per
-- carrier and per language ('' = any). The most specific one wins; without
-- one the built-in text (or the --templates file) is sent.
CREATE TABLE outbox_templates (
	event      text NOT NULL,
	channel    text NOT NULL CHECK (channel IN ('sms', 'email')),
	carrier    text NOT NULL DEFAULT '',
	language   text NOT NULL DEFAULT '',
	subject    text NOT NULL DEFAULT '',  -- email only
	body       text NOT NULL,
	updated_by text NOT NULL DEFAULT '',
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (event, channel, carrier, language)
);

-- Which template a message is rendered from depends on the parcel's carrier
-- and the recipient's language, recorded with the message.
ALTER TABLE outbox_messages ADD COLUMN carrier text NOT NULL DEFAULT '';
ALTER TABLE outbox_messages ADD COLUMN language text NOT NULL DEFAULT '';
-- A parcel's notifications (GET /api/v1/parcels/{id}/notifications).
ALTER TABLE outbox_messages ADD COLUMN about text NOT NULL DEFAULT '';
CREATE INDEX outbox_messages_about ON outbox_messages (about) WHERE about <> '';
-- What was sent, as rendered (sms/email), so a parcel page shows it.
ALTER TABLE outbox_messages ADD COLUMN rendered text;
