-- The audit log: every create, update, delete and command by anyone, written
-- in the same transaction as the change it records. Append-only: the table
-- refuses UPDATE, DELETE and TRUNCATE (a trigger, so not even a mistake in
-- the hub's code or a psql session without superuser tricks can rewrite
-- history; dropping the trigger is a deliberate, visible act).
CREATE TABLE audit_log (
	id          bigserial PRIMARY KEY,
	at          timestamptz NOT NULL DEFAULT now(), -- the transaction's time: that of the change
	actor_kind  text NOT NULL CHECK (actor_kind IN ('user', 'client', 'token', 'device', 'system', 'anonymous')),
	actor_id    text NOT NULL DEFAULT '',
	actor_name  text NOT NULL DEFAULT '',
	actor_role  text NOT NULL DEFAULT '',
	remote_addr text NOT NULL DEFAULT '',
	request_id  text NOT NULL DEFAULT '',
	action      text NOT NULL,
	object_type text NOT NULL,
	object_id   text NOT NULL DEFAULT '',
	before      jsonb,
	after       jsonb
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_object ON audit_log (object_type, object_id, id);
CREATE INDEX audit_log_actor ON audit_log (actor_name, id);
CREATE INDEX audit_log_action ON audit_log (action, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
		USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
	FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
	FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
