-- Parcels: a delivery for a locker cell, from reservation to pickup or return.
-- holds_cell is true while the parcel holds its cell (reserved, deposited,
-- marked for return): the partial unique index makes two open parcels of one
-- cell impossible, whatever the concurrency of creates.
CREATE TABLE parcels_parcels (
	id              text PRIMARY KEY,
	carrier         text NOT NULL DEFAULT '',
	created_by      text NOT NULL,
	caller          text NOT NULL,            -- idempotency scope: client:N, user:N, token:N
	client_id       bigint,                   -- the API client that created it: webhooks go there
	idempotency_key text,
	locker_id       text NOT NULL,
	size            text NOT NULL CHECK (size IN ('S', 'M', 'L', 'XL')),
	cell            text NOT NULL,
	state           text NOT NULL CHECK (state IN ('reserved', 'deposited', 'picked_up', 'cancelled', 'expired', 'returned')),
	holds_cell      bool NOT NULL DEFAULT true,
	to_return       bool NOT NULL DEFAULT false,
	recipient_name  text NOT NULL DEFAULT '',
	recipient_phone text NOT NULL DEFAULT '',
	recipient_email text NOT NULL DEFAULT '',
	reference       text NOT NULL DEFAULT '',
	storage_hours   int  NOT NULL CHECK (storage_hours > 0),
	-- The (boot, seq) stamp of the cell's report when the current step began:
	-- only reports after it move the parcel on.
	mark_boot       bigint NOT NULL DEFAULT 0,
	mark_seq        bigint NOT NULL DEFAULT 0,
	created_at      timestamptz NOT NULL,
	dropoff_at      timestamptz,  -- drop-off asked (cell.open sent)
	deposited_at    timestamptz,  -- also the start of the pickup code's window
	expires_at      timestamptz,  -- end of the storage period and of the code's window
	reminded_at     timestamptz,
	picked_up_at    timestamptz,
	expired_at      timestamptz,
	cancelled_at    timestamptz,
	collect_at      timestamptz,  -- collection asked (cell.open sent)
	returned_at     timestamptz,
	cancel_reason   text NOT NULL DEFAULT '',
	updated_at      timestamptz NOT NULL
);
CREATE UNIQUE INDEX parcels_parcels_cell ON parcels_parcels (locker_id, cell) WHERE holds_cell;
CREATE UNIQUE INDEX parcels_parcels_idempotency ON parcels_parcels (caller, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX parcels_parcels_due ON parcels_parcels (expires_at) WHERE state = 'deposited';
CREATE INDEX parcels_parcels_recent ON parcels_parcels (created_at DESC, id DESC);
CREATE INDEX parcels_parcels_reference ON parcels_parcels (reference) WHERE reference <> '';
CREATE INDEX parcels_parcels_client ON parcels_parcels (client_id, created_at DESC) WHERE client_id IS NOT NULL;

-- Every state change (and step within a state) of a parcel.
CREATE TABLE parcels_history (
	id         bigserial PRIMARY KEY,
	parcel_id  text NOT NULL REFERENCES parcels_parcels (id) ON DELETE CASCADE,
	at         timestamptz NOT NULL,
	from_state text NOT NULL DEFAULT '',
	to_state   text NOT NULL,
	by         text NOT NULL,
	note       text NOT NULL DEFAULT ''
);
CREATE INDEX parcels_history_parcel ON parcels_history (parcel_id, id);
