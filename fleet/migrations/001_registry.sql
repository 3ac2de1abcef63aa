-- Lockers, their device certificates and one-time enrolment tokens.
CREATE TABLE fleet_lockers (
	id              text PRIMARY KEY,
	model           text NOT NULL DEFAULT '',
	cells           int  NOT NULL CHECK (cells BETWEEN 0 AND 1000),
	segment         text NOT NULL DEFAULT '',
	enabled         bool NOT NULL DEFAULT true,
	connected_at    timestamptz,
	disconnected_at timestamptz,
	created_at      timestamptz NOT NULL DEFAULT now()
);

-- No foreign key: a certificate's record (and its revocation) outlives its locker.
CREATE TABLE fleet_certificates (
	serial     text PRIMARY KEY,
	locker_id  text NOT NULL,
	not_before timestamptz NOT NULL,
	not_after  timestamptz NOT NULL,
	revoked_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fleet_certificates_locker ON fleet_certificates (locker_id);
CREATE INDEX fleet_certificates_revoked ON fleet_certificates (serial) WHERE revoked_at IS NOT NULL;

CREATE TABLE fleet_enroll_tokens (
	token_hash bytea PRIMARY KEY,
	locker_id  text NOT NULL REFERENCES fleet_lockers (id) ON DELETE CASCADE,
	expires_at timestamptz NOT NULL,
	used_at    timestamptz,
	created_at timestamptz NOT NULL DEFAULT now()
);
