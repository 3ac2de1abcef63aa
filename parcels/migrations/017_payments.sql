-- Payment at the locker (parcels/payments.go, docs/parcels.md "Payment at
-- the locker"): a parcel may carry an amount due, charged on the locker's
-- POS terminal (pos.charge) before its cell opens for pickup.
ALTER TABLE parcels_parcels ADD COLUMN amount_due bigint NOT NULL DEFAULT 0 CHECK (amount_due >= 0);
ALTER TABLE parcels_parcels ADD COLUMN amount_currency text NOT NULL DEFAULT '';

-- Charges and refunds. A charge is pending while the terminal works on it,
-- then approved, declined, failed (nothing charged) or unknown (no answer:
-- asking again settles it, the terminal charges a payment id once). A refund
-- is recorded (state approved) when a paid parcel is cancelled or returned.
-- Each approved one gets a fiscal receipt through the outbox, whose message
-- id is the payment id (the fiscal service deduplicates on it).
CREATE TABLE parcels_payments (
	id           text PRIMARY KEY,
	parcel_id    text NOT NULL REFERENCES parcels_parcels (id) ON DELETE CASCADE,
	locker_id    text NOT NULL,
	kind         text NOT NULL CHECK (kind IN ('charge', 'refund')),
	amount       bigint NOT NULL CHECK (amount > 0),
	currency     text NOT NULL,
	state        text NOT NULL CHECK (state IN ('pending', 'approved', 'declined', 'failed', 'unknown')),
	reason       text NOT NULL DEFAULT '',  -- declined/failed/unknown: the code and message
	terminal_ref text NOT NULL DEFAULT '',  -- the terminal's transaction reference
	command_id   text NOT NULL DEFAULT '',  -- the last pos.charge command
	ask_id       text NOT NULL DEFAULT '',  -- the code.check that started it
	refund_of    text REFERENCES parcels_payments (id),
	created_at   timestamptz NOT NULL,
	updated_at   timestamptz NOT NULL,
	decided_at   timestamptz
);
CREATE INDEX parcels_payments_parcel ON parcels_payments (parcel_id, created_at);
-- At most one unsettled and one approved charge per parcel, one refund per charge.
CREATE UNIQUE INDEX parcels_payments_open ON parcels_payments (parcel_id) WHERE kind = 'charge' AND state IN ('pending', 'unknown');
CREATE UNIQUE INDEX parcels_payments_paid ON parcels_payments (parcel_id) WHERE kind = 'charge' AND state = 'approved';
CREATE UNIQUE INDEX parcels_payments_refund ON parcels_payments (refund_of) WHERE kind = 'refund';
