-- Bearer tokens for the API and hubctl. Only a SHA-256 of each token is kept.
CREATE TABLE access_tokens (
	id         bigserial PRIMARY KEY,
	name       text  NOT NULL,
	role       text  NOT NULL,
	hash       bytea NOT NULL UNIQUE,
	created_at timestamptz NOT NULL DEFAULT now(),
	revoked_at timestamptz
);
