-- The audit trail of key use (src/key_audit.c, src/key_audit_queue.c).
-- One row per event: who, when, what, result.  Changes of keys are written
-- in the transaction that makes them; failures (in transactions that roll
-- back), unwrap counts and customer keys supplied are written by the audit
-- writer, a background worker, from a queue in shared memory.
CREATE TABLE key_audit (
    event_time         timestamptz NOT NULL,
    last_time          timestamptz,              -- counted events: the last one counted
    event              text NOT NULL,
    count              bigint NOT NULL DEFAULT 1,
    result             text NOT NULL CHECK (result IN ('ok', 'error')),
    sqlstate           text,                     -- result 'error': the error's SQLSTATE
    message            text,                     -- and its message (never key bytes)
    key_id             uuid,                     -- data key
    key_alt_name       text,                     -- a keyAltName of it (customer keys: the name)
    provider           text,                     -- master key provider
    master_key_version text,                     -- master key version used
    relation           text,                     -- table keys: the relation (or its file)
    detail             jsonb,                    -- what else the event tells
    session_role       text,                     -- session_user
    effective_role     text,                     -- current_user
    backend_pid        integer,
    session_id         text,                     -- as %c of log_line_prefix
    client_addr        inet,                     -- NULL: Unix socket or background worker
    application_name   text,
    database           name NOT NULL DEFAULT pg_catalog.current_database()
);
CREATE INDEX key_audit_time ON key_audit (event_time);
COMMENT ON TABLE key_audit IS
    'audit trail of key use: append-only; readable by key administrators (grant_key_admin) and superusers';

-- Append-only: no UPDATE, DELETE or TRUNCATE, except the DELETE of
-- purge_key_audit().  ALWAYS: session_replication_role = replica does not
-- skip them.
CREATE FUNCTION _key_audit_append_only() RETURNS trigger
    AS 'MODULE_PATHNAME', 'bsoncrypt_key_audit_append_only' LANGUAGE C;
CREATE TRIGGER key_audit_append_only
    BEFORE UPDATE OR DELETE ON key_audit
    FOR EACH ROW EXECUTE FUNCTION _key_audit_append_only();
CREATE TRIGGER key_audit_no_truncate
    BEFORE TRUNCATE ON key_audit
    FOR EACH STATEMENT EXECUTE FUNCTION _key_audit_append_only();
ALTER TABLE key_audit ENABLE ALWAYS TRIGGER key_audit_append_only;
ALTER TABLE key_audit ENABLE ALWAYS TRIGGER key_audit_no_truncate;

-- pg_dump keeps the trail.
SELECT pg_catalog.pg_extension_config_dump('key_audit', '');

-- Changes of the key vault, in the transaction that makes them.
CREATE FUNCTION _key_audit_key_vault() RETURNS trigger
    AS 'MODULE_PATHNAME', 'bsoncrypt_key_audit_key_vault' LANGUAGE C;
CREATE TRIGGER key_vault_audit
    AFTER INSERT OR UPDATE OR DELETE ON key_vault
    FOR EACH ROW EXECUTE FUNCTION _key_audit_key_vault();
CREATE TRIGGER key_vault_audit_truncate
    AFTER TRUNCATE ON key_vault
    FOR EACH STATEMENT EXECUTE FUNCTION _key_audit_key_vault();
ALTER TABLE key_vault ENABLE ALWAYS TRIGGER key_vault_audit;
ALTER TABLE key_vault ENABLE ALWAYS TRIGGER key_vault_audit_truncate;

-- Table keys rewrapped (by rotation).
CREATE FUNCTION _key_audit_relation_keys() RETURNS trigger
    AS 'MODULE_PATHNAME', 'bsoncrypt_key_audit_relation_keys' LANGUAGE C;
CREATE TRIGGER relation_keys_audit
    AFTER UPDATE ON relation_keys
    FOR EACH ROW EXECUTE FUNCTION _key_audit_relation_keys();

CREATE FUNCTION purge_key_audit(before timestamptz) RETURNS bigint
    AS 'MODULE_PATHNAME', 'bsoncrypt_purge_key_audit' LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION purge_key_audit(timestamptz) IS
    'retention: delete the audit rows of events before a time (the purge itself is recorded); superusers only';

CREATE FUNCTION key_audit_queue_status(OUT queued bigint, OUT lost bigint)
    AS 'MODULE_PATHNAME', 'bsoncrypt_key_audit_queue_status' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION key_audit_queue_status() IS
    'audit events waiting for the audit writer (all databases) and events lost since the server started';
