-- Asks (locker → hub requests) and their answers, kept so that an ask
-- republished with the same id (after a lost PUBACK, a reconnect or a hub
-- restart) gets the same answer without being handled twice. Rows older than
-- the retention (7 days) are deleted.
CREATE TABLE fleet_asks (
	locker_id text        NOT NULL,
	ask_id    text        NOT NULL,
	method    text        NOT NULL,
	answer    jsonb       NOT NULL, -- the protocol.Response sent on ask/res
	at        timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (locker_id, ask_id)
);
CREATE INDEX fleet_asks_at ON fleet_asks (at);
