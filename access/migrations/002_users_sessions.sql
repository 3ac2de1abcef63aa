-- People who log in to the dashboard, and their browser sessions.
CREATE TABLE access_users (
	id            bigserial PRIMARY KEY,
	username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
	-- argon2id in the PHC string format: $argon2id$v=19$m=…,t=…,p=…$salt$hash
	password_hash text NOT NULL,
	role          text NOT NULL CHECK (role IN ('admin', 'technician', 'courier', 'oncall', 'viewer')),
	created_at    timestamptz NOT NULL DEFAULT now(),
	disabled_at   timestamptz
);

-- Only a SHA-256 of the session id (the cookie value) is kept, so a copy of
-- this table logs nobody in. A session ends after 12 h without a request
-- (last_seen_at) or at expires_at (7 days after login), whichever comes first.
CREATE TABLE access_sessions (
	id_hash      bytea  PRIMARY KEY,
	user_id      bigint NOT NULL REFERENCES access_users (id) ON DELETE CASCADE,
	csrf_token   text   NOT NULL,
	remote_addr  text   NOT NULL DEFAULT '',
	created_at   timestamptz NOT NULL DEFAULT now(),
	last_seen_at timestamptz NOT NULL DEFAULT now(),
	expires_at   timestamptz NOT NULL
);
CREATE INDEX access_sessions_user ON access_sessions (user_id);
CREATE INDEX access_sessions_expiry ON access_sessions (expires_at);
