-- The audit trail at the SQL level (docs/audit.md): rows of key changes in
-- the changing transaction, append-only, readable only by key administrators
-- and superusers, retention by purge_key_audit().  Durable events (failures,
-- unwrap counts) are written by a background worker: t/044_key_audit.pl.
SET search_path = bsoncrypt, public;
SELECT create_data_key('local', '{reg-audit}') IS NOT NULL AS created;
SELECT add_key_alt_name(_id, 'reg-audit-2') IS NOT NULL AS renamed FROM key_vault WHERE 'reg-audit' = ANY (key_alt_names);
BEGIN;
SELECT create_data_key('local', '{reg-audit-rolled-back}') IS NOT NULL AS created;
ROLLBACK;
SELECT delete_key(_id) FROM key_vault WHERE 'reg-audit' = ANY (key_alt_names);
SELECT event, count, result, sqlstate, key_alt_name, provider, master_key_version, detail,
       session_role = session_user::text AS by_session_user, effective_role = current_user::text AS by_current_user,
       backend_pid = pg_backend_pid() AS this_backend, database = current_database() AS this_database
  FROM key_audit WHERE key_alt_name LIKE 'reg-audit%' ORDER BY event_time;

-- append-only, for superusers too
UPDATE key_audit SET event = 'forged' WHERE key_alt_name = 'reg-audit';
DELETE FROM key_audit WHERE key_alt_name = 'reg-audit';
TRUNCATE key_audit;
SET session_replication_role = replica;
DELETE FROM key_audit WHERE key_alt_name = 'reg-audit';
RESET session_replication_role;

-- readable by key administrators only; nobody else may change or purge it
CREATE ROLE reg_audit_admin;
CREATE ROLE reg_audit_app;
SELECT grant_key_admin('reg_audit_admin');
SELECT grant_encryption('reg_audit_app');
SET ROLE reg_audit_admin;
SELECT count(*) > 0 AS admin_reads FROM key_audit WHERE key_alt_name = 'reg-audit';
INSERT INTO key_audit (event_time, event, result) VALUES (now(), 'forged', 'ok');
SELECT purge_key_audit(now());
SELECT queued >= 0 AS status_readable FROM key_audit_queue_status();
RESET ROLE;
SET ROLE reg_audit_app;
SELECT count(*) FROM key_audit;
RESET ROLE;
DROP OWNED BY reg_audit_admin, reg_audit_app;
DROP ROLE reg_audit_admin, reg_audit_app;

-- retention: nothing is older than 2000; the purge is recorded all the same
SELECT purge_key_audit('2000-01-01');
SELECT event, count, detail FROM key_audit WHERE event = 'audit_purged' ORDER BY event_time DESC LIMIT 1;
SELECT purge_key_audit(NULL);

SHOW bsoncrypt.audit;
SHOW bsoncrypt.audit_log;
SET bsoncrypt.audit = off;
