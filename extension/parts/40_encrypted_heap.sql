-- Transparent at-rest encryption: the encrypted_heap table access method.
-- Every varlena value of such a table is stored as AES-256-GCM ciphertext
-- under a random key of the relation file, wrapped by a master key.

-- One row per key of a relation file.  Written by the access method in the
-- transaction that creates the file; rewrapped by master-key rotation with
-- plain UPDATEs of key_material, master_key_version and update_date.
-- Not dumped: logical dumps hold plaintext, a restore makes new keys.
-- A user_catalog_table, so that logical decoding (the "bsoncrypt" output
-- plugin) reads the keys with its historic snapshot: the key of a file made
-- in the decoded transaction, or of a table dropped since.
CREATE SEQUENCE relation_key_ids AS integer;
CREATE TABLE relation_keys (
    key_id             integer PRIMARY KEY DEFAULT nextval('relation_key_ids'),
    reltablespace      oid NOT NULL,            -- pg_class.reltablespace of the file (0: database default)
    relfilenode        oid NOT NULL,            -- pg_class.relfilenode of the file
    key_material       bytea NOT NULL,          -- the 32-byte AES key wrapped by the master key
    provider           text NOT NULL,           -- master-key provider (bsoncrypt.at_rest_key_provider)
    master_key_version text NOT NULL,           -- which version of that master key wrapped it
    creation_date      timestamptz NOT NULL DEFAULT now(),
    update_date        timestamptz NOT NULL DEFAULT now(),
    -- what stored values name the key by (16 bits): key_id & 65535, unique
    -- among the keys of one relation file
    key_number         integer NOT NULL CHECK (key_number BETWEEN 0 AND 65535)
) USING heap WITH (user_catalog_table = true);
ALTER SEQUENCE relation_key_ids OWNED BY relation_keys.key_id;
CREATE INDEX relation_keys_file ON relation_keys (reltablespace, relfilenode, key_id);
CREATE UNIQUE INDEX relation_keys_file_number ON relation_keys (reltablespace, relfilenode, key_number);
COMMENT ON TABLE relation_keys IS 'keys of encrypted_heap relation files, wrapped by master keys';

-- How many encryptions each key may have done: an upper bound of its uses,
-- never lower than the truth, also after a crash, on a standby, after
-- point-in-time recovery, and counting rolled-back writes.  Sessions count
-- uses in shared memory (src/tde_key_uses.c) and reserve them here in
-- blocks before handing them out: the row is inserted with its key and then
-- only ever overwritten in place (WAL-logged, not transactional, no new row
-- version), never UPDATEd, so rotation's UPDATEs of relation_keys never
-- race with it.  Rows go with their keys (ON DELETE CASCADE).
CREATE TABLE relation_key_uses (
    key_id   integer PRIMARY KEY REFERENCES relation_keys ON DELETE CASCADE,
    reserved bigint NOT NULL CHECK (reserved >= 0)  -- no key encrypts more than this
) USING heap;
COMMENT ON TABLE relation_key_uses IS 'how many encryptions each relation key may have done (a bound, persisted)';

CREATE FUNCTION _key_uses_bound(key_id integer) RETURNS bigint
    AS 'MODULE_PATHNAME', 'bsoncrypt_key_uses_bound' LANGUAGE C STRICT VOLATILE PARALLEL SAFE;

CREATE FUNCTION _relation_keys_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'bsoncrypt_relation_keys_changed' LANGUAGE C;
CREATE TRIGGER relation_keys_invalidate_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON relation_keys
    FOR EACH STATEMENT EXECUTE FUNCTION _relation_keys_changed();

CREATE FUNCTION encrypted_heap_handler(internal) RETURNS table_am_handler
    AS 'MODULE_PATHNAME', 'bsoncrypt_encrypted_heap_handler' LANGUAGE C STRICT;
CREATE ACCESS METHOD encrypted_heap TYPE TABLE HANDLER encrypted_heap_handler;
COMMENT ON ACCESS METHOD encrypted_heap IS
    'heap whose varlena values are stored AES-256-GCM encrypted (bsoncrypt at-rest encryption)';

-- true for an encrypted_heap table or materialized view and an
-- encrypted_btree index; for a partitioned table, true when it has
-- partitions and every leaf partition is encrypted
CREATE FUNCTION is_encrypted(rel regclass) RETURNS boolean
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN c.relkind = 'p' THEN
               coalesce((SELECT bool_and(l.relam = a.oid) AND count(*) > 0
                           FROM pg_partition_tree($1) t
                           JOIN pg_class l ON l.oid = t.relid
                          WHERE t.isleaf), false)
           WHEN c.relkind = 'i' THEN
               c.relam = (SELECT b.oid FROM pg_am b WHERE b.amname = 'encrypted_btree')
           ELSE c.relam = a.oid END
      FROM pg_class c, pg_am a
     WHERE c.oid = $1 AND a.amname = 'encrypted_heap'
$$;

-- Encrypted relations of this database with the key new values get
-- (the newest key of the relation's file) and how many keys the file has.
CREATE VIEW encrypted_relations AS
SELECT c.oid::regclass AS relation,
       k.key_id,
       k.provider,
       k.master_key_version,
       k.creation_date AS key_created,
       k.update_date AS key_updated,
       bsoncrypt._key_uses_bound(k.key_id) AS key_uses_bound,
       (SELECT count(*) FROM bsoncrypt.relation_keys a
         WHERE a.reltablespace = c.reltablespace AND a.relfilenode = c.relfilenode) AS keys
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_am am ON am.oid = c.relam AND am.amname IN ('encrypted_heap', 'encrypted_btree')
  LEFT JOIN LATERAL (SELECT * FROM bsoncrypt.relation_keys r
                      WHERE r.reltablespace = c.reltablespace AND r.relfilenode = c.relfilenode
                      ORDER BY r.key_id DESC LIMIT 1) k ON true;
COMMENT ON VIEW encrypted_relations IS 'encrypted_heap relations, encrypted_btree indexes and their current relation keys';

-- Keys of relation files that no longer exist.  Drops, TRUNCATE and
-- rewrites delete their old files' keys themselves; this finds what other
-- means left behind.  It reads pg_class directly (not through SQL, which
-- planner hooks such as Citus's may filter), so a key is deleted only when
-- no relation of the database has its file.  Returns how many keys were
-- deleted.
CREATE FUNCTION drop_unused_relation_keys() RETURNS bigint
    AS 'MODULE_PATHNAME', 'bsoncrypt_drop_unused_relation_keys' LANGUAGE C;
COMMENT ON FUNCTION drop_unused_relation_keys() IS
    'delete the keys of relation files that no longer exist';

-- DROP TABLE, DROP SCHEMA ... CASCADE, DROP OWNED, ...: the dropped files'
-- keys go in the same transaction.  The access method does this itself when
-- bsoncrypt is loaded before the drop (shared_preload_libraries); a session
-- that never loaded it (nothing opened the table before DROP) relies on this
-- trigger.  It deletes the keys of exactly the files the command dropped:
-- the relations of pg_event_trigger_dropped_objects(), whose pg_class rows
-- this transaction deleted (read from the catalog); a no-op while the
-- extension itself is being dropped.
CREATE FUNCTION _drop_keys_of_dropped_files() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'bsoncrypt_drop_keys_of_dropped_files' LANGUAGE C;
CREATE EVENT TRIGGER bsoncrypt_drop_relation_keys ON sql_drop
    EXECUTE FUNCTION _drop_keys_of_dropped_files();
