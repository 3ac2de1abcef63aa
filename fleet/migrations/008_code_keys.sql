-- Per-locker secrets of offline pickup codes and the lockers' offline parcel
-- lists, each delivered by an RPC (codes.key, parcels.sync) until the locker
-- answers with the version. Versions come from one sequence, so a key made
-- after its locker's old one was deleted (disabled, deleted and re-created)
-- still has a higher version than anything the locker holds.
CREATE SEQUENCE fleet_delivery_version;

CREATE TABLE fleet_code_keys (
	locker_id         text        PRIMARY KEY REFERENCES fleet_lockers (id) ON DELETE CASCADE,
	version           bigint      NOT NULL,
	secret            bytea       NOT NULL CHECK (length(secret) = 32),
	created_at        timestamptz NOT NULL DEFAULT now(),
	delivered_version bigint      NOT NULL DEFAULT 0
);

CREATE TABLE fleet_parcel_lists (
	locker_id         text        PRIMARY KEY REFERENCES fleet_lockers (id) ON DELETE CASCADE,
	version           bigint      NOT NULL,
	doc               jsonb       NOT NULL, -- []protocol.LockerParcel
	updated_at        timestamptz NOT NULL DEFAULT now(),
	delivered_version bigint      NOT NULL DEFAULT 0
);
