-- Carriers (transport companies) scope users and API clients to the lockers
-- assigned to them (fleet_lockers.carriers). A user without a carrier sees
-- the whole fleet; a courier always has one.
ALTER TABLE access_users ADD COLUMN carrier text NOT NULL DEFAULT '';

-- API clients: delivery services and marketplaces, each belonging to one
-- carrier, with scoped bearer tokens ("lhc_…"). Only a SHA-256 of the token
-- is kept (the token is 256 random bits, so a fast hash is enough).
CREATE TABLE access_clients (
	id           bigserial PRIMARY KEY,
	name         text   NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
	carrier      text   NOT NULL CHECK (carrier <> ''),
	scopes       text[] NOT NULL,
	hash         bytea  NOT NULL UNIQUE,
	created_at   timestamptz NOT NULL DEFAULT now(),
	last_used_at timestamptz,
	revoked_at   timestamptz
);
