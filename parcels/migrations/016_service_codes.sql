-- One-time service codes: a technician asks for one for a cell, types it at
-- the locker (code.check) and the cell opens once, with cause
-- service:<user>. Only a hash of the code is kept.
CREATE TABLE parcels_service_codes (
	id         bigserial PRIMARY KEY,
	locker_id  text NOT NULL,
	cell       text NOT NULL,
	code_hash  bytea NOT NULL,
	issued_by  text NOT NULL, -- the technician's name
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL,
	used_at    timestamptz
);
CREATE INDEX parcels_service_codes_open ON parcels_service_codes (locker_id, code_hash) WHERE used_at IS NULL;
