-- Master-key rotation (docs/key-rotation.md): rewrap_many_data_key (MongoDB's
-- rewrapManyDataKey), and the state of the rotation worker
-- (src/rotation_worker.c), one row per master key provider.

CREATE TABLE rotation_state (
    provider        text PRIMARY KEY,
    state           text NOT NULL DEFAULT 'requested'
                    CHECK (state IN ('requested', 'rewrapping', 'done', 'failed')),
    from_versions   text[] NOT NULL DEFAULT '{}',  -- versions being rotated away from
    to_version      text,                          -- the provider's current version
    keys_total      bigint NOT NULL DEFAULT 0,
    keys_done       bigint NOT NULL DEFAULT 0,
    requested       timestamptz,
    started         timestamptz,
    finished        timestamptz,
    last_error      text,
    last_error_time timestamptz,
    failures        integer NOT NULL DEFAULT 0,     -- consecutive failed attempts
    next_attempt    timestamptz                     -- retry of a failed rotation
);
COMMENT ON TABLE rotation_state IS
    'master-key rotations, one row per provider; read bsoncrypt.rotation_status instead';

CREATE FUNCTION rewrap_many_data_key(filter bson DEFAULT '{}',
                                     provider text DEFAULT NULL,
                                     master_key_version text DEFAULT NULL)
RETURNS bigint
    AS 'MODULE_PATHNAME', 'bsoncrypt_rewrap_many_data_key' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION rewrap_many_data_key(bson, text, text) IS
    'rewrap the data keys matching filter under a master key (default: each key''s provider''s current version), in this transaction (MongoDB rewrapManyDataKey)';

CREATE FUNCTION current_master_key_version(provider text DEFAULT 'local') RETURNS text
    AS 'MODULE_PATHNAME', 'bsoncrypt_current_master_key_version' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION current_master_key_version(text) IS
    'the provider''s current master key version, after the checks a rotation makes (loaded by name too, wrap/unwrap probe)';

CREATE FUNCTION _wake_rotation_worker() RETURNS void
    AS 'MODULE_PATHNAME', 'bsoncrypt_rotation_wake' LANGUAGE C VOLATILE;
CREATE FUNCTION _rotation_worker_pid() RETURNS integer
    AS 'MODULE_PATHNAME', 'bsoncrypt_rotation_worker_pid' LANGUAGE C VOLATILE;

-- Providers whose master keys wrap something: data keys, and the table keys
-- of at-rest encryption (bsoncrypt.relation_keys) when that table exists.
CREATE FUNCTION _providers_in_use() RETURNS SETOF text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT DISTINCT bson_get_text(k.master_key, 'provider') FROM key_vault k;
    IF to_regclass('bsoncrypt.relation_keys') IS NOT NULL THEN
        RETURN QUERY EXECUTE 'SELECT DISTINCT provider FROM bsoncrypt.relation_keys';
    END IF;
END $$;

CREATE FUNCTION _request_rotation(provider text) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    IF provider IS NOT NULL AND provider NOT IN ('local', 'command', 'kmip') THEN
        RAISE EXCEPTION 'unknown master key provider "%"', provider
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Known providers are "local", "command" and "kmip".';
    END IF;
    INSERT INTO rotation_state AS s (provider, state, requested)
    SELECT DISTINCT p, 'requested', now()
      FROM (SELECT $1 WHERE $1 IS NOT NULL
            UNION SELECT u FROM _providers_in_use() u WHERE $1 IS NULL AND u IS NOT NULL) x(p)
    ON CONFLICT ON CONSTRAINT rotation_state_pkey DO UPDATE
       SET state = 'requested', requested = now(), failures = 0, next_attempt = NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

CREATE FUNCTION rotate_master_key(provider text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
DECLARE
    n integer;
BEGIN
    n := _request_rotation($1);
    PERFORM _wake_rotation_worker();
    RETURN n;
END $$;
COMMENT ON FUNCTION rotate_master_key(text) IS
    'ask the rotation worker to rewrap every key not on its provider''s current master key version; returns the number of providers queued';

CREATE VIEW rotation_status AS
SELECT s.provider, s.state, s.from_versions, s.to_version,
       s.keys_total, s.keys_done,
       s.requested, s.started, s.finished,
       s.last_error, s.last_error_time, s.failures, s.next_attempt,
       _rotation_worker_pid() AS worker_pid
  FROM rotation_state s;
COMMENT ON VIEW rotation_status IS
    'progress of master-key rotations, one row per provider (in the spirit of pg_stat_progress_*)';

-- Which master key versions still wrap keys: a version may be retired
-- (removed from the key ring) once it has no row here.
CREATE FUNCTION _master_key_versions(OUT provider text, OUT master_key_version text,
                                     OUT data_keys bigint, OUT relation_keys bigint)
RETURNS SETOF record
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
BEGIN
    IF to_regclass('bsoncrypt.relation_keys') IS NULL THEN
        RETURN QUERY
            SELECT bson_get_text(k.master_key, 'provider'), k.master_key_version, count(*), 0::bigint
              FROM key_vault k GROUP BY 1, 2 ORDER BY 1, 2;
    ELSE
        RETURN QUERY EXECUTE
            'SELECT p, v, sum(d)::bigint, sum(r)::bigint FROM (
                 SELECT bsoncrypt.bson_get_text(master_key, ''provider''), master_key_version, 1, 0
                   FROM bsoncrypt.key_vault
                 UNION ALL
                 SELECT provider, master_key_version, 0, 1 FROM bsoncrypt.relation_keys
             ) x(p, v, d, r) GROUP BY 1, 2 ORDER BY 1, 2';
    END IF;
END $$;
CREATE VIEW master_key_versions AS SELECT * FROM _master_key_versions();
COMMENT ON VIEW master_key_versions IS
    'master key versions that still wrap keys; a version with no row can be retired';

-- Privileges (90_privileges.sql revokes everything from PUBLIC): rotating and
-- rewrapping are for superusers; monitoring roles may watch.
GRANT SELECT ON rotation_status, master_key_versions TO pg_monitor;
GRANT EXECUTE ON FUNCTION _rotation_worker_pid(), _master_key_versions() TO pg_monitor;
