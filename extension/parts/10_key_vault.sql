-- The key vault: data encryption keys (DEKs) in MongoDB's key-vault schema,
-- each wrapped by a master key of a provider, and the ClientEncryption-style
-- functions that manage them.

CREATE TABLE key_vault (
    _id                uuid PRIMARY KEY,
    key_alt_names      text[] NOT NULL DEFAULT '{}',
    key_material       bytea NOT NULL,          -- the DEK wrapped by the master key
    master_key         bson NOT NULL,           -- MongoDB's masterKey, e.g. {"provider": "local"}
    master_key_version text NOT NULL,           -- which version of that master key wrapped it
    creation_date      timestamptz NOT NULL DEFAULT now(),
    update_date        timestamptz NOT NULL DEFAULT now(),
    status             integer NOT NULL DEFAULT 0,
    CONSTRAINT key_vault_dates_finite CHECK (isfinite(creation_date) AND isfinite(update_date))
);
COMMENT ON TABLE key_vault IS 'data encryption keys, wrapped by master keys (MongoDB key-vault schema)';

-- One row per keyAltName: the primary key makes names unique across all keys,
-- also against concurrent inserts. Maintained by a trigger on key_vault.
CREATE TABLE key_alt_names (
    key_alt_name text PRIMARY KEY,
    key_id       uuid NOT NULL REFERENCES key_vault (_id) ON DELETE CASCADE
);
CREATE INDEX key_alt_names_key_id ON key_alt_names (key_id);

-- SECURITY DEFINER: a key administrator (grant_key_admin) writes key_vault
-- but not key_alt_names, which only this trigger maintains.
CREATE FUNCTION _sync_key_alt_names() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
DECLARE
    name text;
    owner uuid;
BEGIN
    IF array_position(NEW.key_alt_names, NULL) IS NOT NULL OR '' = ANY (NEW.key_alt_names) THEN
        RAISE EXCEPTION 'keyAltNames of data key % may not hold NULL or empty names', NEW._id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT n INTO name FROM unnest(NEW.key_alt_names) n GROUP BY n HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'keyAltName "%" appears twice in data key %', name, NEW._id
            USING ERRCODE = 'unique_violation';
    END IF;
    DELETE FROM key_alt_names a
     WHERE a.key_id = NEW._id AND NOT (a.key_alt_name = ANY (NEW.key_alt_names));
    FOREACH name IN ARRAY NEW.key_alt_names LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM key_alt_names a
                               WHERE a.key_alt_name = name AND a.key_id = NEW._id);
        BEGIN
            INSERT INTO key_alt_names (key_alt_name, key_id) VALUES (name, NEW._id);
        EXCEPTION WHEN unique_violation THEN
            SELECT a.key_id INTO owner FROM key_alt_names a WHERE a.key_alt_name = name;
            RAISE EXCEPTION 'keyAltName "%" is already used by data key %', name, owner
                USING ERRCODE = 'unique_violation',
                      HINT = 'keyAltNames must be unique across the whole key vault.';
        END;
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER key_vault_sync_alt_names
    AFTER INSERT OR UPDATE OF key_alt_names, _id ON key_vault
    FOR EACH ROW EXECUTE FUNCTION _sync_key_alt_names();

-- Tell every session to drop its cached keys when the vault changes.  A
-- rewrap (new key_material, master_key_version, and for kmip the keyId in
-- master_key, for the same key: what rotation does) leaves the data key
-- itself unchanged, so it keeps cached keys: otherwise every rotation batch
-- would make every session unwrap all its keys again.  A move to another
-- provider drops them.  Replacing a key's material with a different data key is
-- not an operation bsoncrypt offers (create a new key instead); sessions
-- would see it only after bsoncrypt.key_cache_ttl.
CREATE FUNCTION _key_vault_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'bsoncrypt_key_vault_changed' LANGUAGE C;
CREATE TRIGGER key_vault_invalidate_cache
    AFTER INSERT OR DELETE OR TRUNCATE ON key_vault
    FOR EACH STATEMENT EXECUTE FUNCTION _key_vault_changed();
CREATE TRIGGER key_vault_invalidate_cache_on_update
    AFTER UPDATE ON key_vault FOR EACH ROW
    WHEN (OLD._id IS DISTINCT FROM NEW._id
          OR OLD.key_alt_names IS DISTINCT FROM NEW.key_alt_names
          -- as text: IS DISTINCT FROM cannot name the schema of bson's "=",
          -- and pg_upgrade restores this trigger with an empty search_path
          OR bsoncrypt.bson_get_text(OLD.master_key, 'provider')
             IS DISTINCT FROM bsoncrypt.bson_get_text(NEW.master_key, 'provider')
          OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION _key_vault_changed();

-- pg_dump carries the keys; key_alt_names is rebuilt from them by the trigger.
SELECT pg_catalog.pg_extension_config_dump('key_vault', '');

-- C support
-- master_key_options: MongoDB's masterKey fields of the provider (e.g.
-- {"keyId": "17"} for kmip); NULL or {}: the provider's current master key
CREATE FUNCTION _new_key_material(provider text, data_key bytea DEFAULT NULL,
                                  master_key_options bson DEFAULT NULL,
                                  OUT key_material bytea, OUT master_key_version text,
                                  OUT master_key bson)
    AS 'MODULE_PATHNAME', 'bsoncrypt_new_key_material' LANGUAGE C VOLATILE CALLED ON NULL INPUT;
CREATE FUNCTION _find_master_key_version(master_key bson, key_material bytea) RETURNS text
    AS 'MODULE_PATHNAME', 'bsoncrypt_find_master_key_version' LANGUAGE C VOLATILE STRICT;
CREATE FUNCTION _key_document(key_vault) RETURNS bson
    AS 'MODULE_PATHNAME', 'bsoncrypt_key_document' LANGUAGE C STABLE STRICT;
CREATE FUNCTION _parse_key_document(doc bson,
        OUT _id uuid, OUT key_alt_names text[], OUT key_material bytea, OUT master_key bson,
        OUT creation_date timestamptz, OUT update_date timestamptz, OUT status integer)
    AS 'MODULE_PATHNAME', 'bsoncrypt_parse_key_document' LANGUAGE C IMMUTABLE STRICT;

-- ClientEncryption API

CREATE FUNCTION create_data_key(provider text DEFAULT 'local',
                                key_alt_names text[] DEFAULT '{}',
                                key_material bytea DEFAULT NULL,
                                master_key bson DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
DECLARE
    new_id uuid := gen_random_uuid();
    wrapped record;
BEGIN
    SELECT * INTO wrapped FROM _new_key_material($1, $3, $4);
    INSERT INTO key_vault (_id, key_alt_names, key_material, master_key, master_key_version)
    VALUES (new_id, coalesce($2, '{}'), wrapped.key_material,
            wrapped.master_key, wrapped.master_key_version);
    RETURN new_id;
END $$;
COMMENT ON FUNCTION create_data_key(text, text[], bytea, bson) IS
    'create a data key wrapped by the provider''s current master key, or the one master_key names (MongoDB createDataKey)';

CREATE FUNCTION get_key(id uuid) RETURNS bson
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
    SELECT _key_document(k) FROM key_vault k WHERE k._id = $1
$$;

CREATE FUNCTION get_keys() RETURNS SETOF bson
LANGUAGE sql STABLE SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
    SELECT _key_document(k) FROM key_vault k ORDER BY k.creation_date, k._id
$$;

CREATE FUNCTION get_key_by_alt_name(key_alt_name text) RETURNS bson
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
    SELECT _key_document(k) FROM key_vault k
      JOIN key_alt_names a ON a.key_id = k._id
     WHERE a.key_alt_name = $1
$$;

CREATE FUNCTION delete_key(id uuid) RETURNS boolean
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
BEGIN
    DELETE FROM key_vault k WHERE k._id = $1;
    RETURN FOUND;
END $$;
COMMENT ON FUNCTION delete_key(uuid) IS
    'delete a data key: every value encrypted with it becomes unreadable (crypto-shredding)';

-- Like MongoDB, these return the key document as it was before the change
-- (NULL when there is no such key).
CREATE FUNCTION add_key_alt_name(id uuid, key_alt_name text) RETURNS bson
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
DECLARE
    before bson;
BEGIN
    SELECT _key_document(k) INTO before FROM key_vault k WHERE k._id = $1 FOR UPDATE;
    IF FOUND THEN
        UPDATE key_vault k SET key_alt_names = k.key_alt_names || $2
         WHERE k._id = $1 AND NOT ($2 = ANY (k.key_alt_names));
    END IF;
    RETURN before;
END $$;

CREATE FUNCTION remove_key_alt_name(id uuid, key_alt_name text) RETURNS bson
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
DECLARE
    before bson;
BEGIN
    SELECT _key_document(k) INTO before FROM key_vault k WHERE k._id = $1 FOR UPDATE;
    IF FOUND THEN
        UPDATE key_vault k SET key_alt_names = array_remove(k.key_alt_names, $2)
         WHERE k._id = $1 AND $2 = ANY (k.key_alt_names);
    END IF;
    RETURN before;
END $$;

CREATE FUNCTION import_key(key_document bson) RETURNS uuid
LANGUAGE plpgsql STRICT SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
DECLARE
    k record;
    provider text;
    version text;
BEGIN
    SELECT * INTO k FROM _parse_key_document($1);
    provider := bson_get_text(k.master_key, 'provider');
    IF EXISTS (SELECT 1 FROM key_vault v WHERE v._id = k._id) THEN
        RAISE EXCEPTION 'data key % is already in the key vault', k._id
            USING ERRCODE = 'unique_violation';
    END IF;
    version := _find_master_key_version(k.master_key, k.key_material);
    IF version IS NULL THEN
        RAISE EXCEPTION 'cannot import data key %: no master key version of provider "%" unwraps it', k._id, provider
            USING ERRCODE = 'invalid_authorization_specification',
                  HINT = 'Configure the master key that wrapped this key (for "local", add it to bsoncrypt.local_master_key_file; for "kmip", the keyId must name the KMIP object that wrapped it).';
    END IF;
    INSERT INTO key_vault (_id, key_alt_names, key_material, master_key, master_key_version,
                           creation_date, update_date, status)
    VALUES (k._id, k.key_alt_names, k.key_material, k.master_key, version,
            k.creation_date, k.update_date, k.status);
    RETURN k._id;
END $$;
COMMENT ON FUNCTION import_key(bson) IS
    'import a key-vault document made by a MongoDB driver or libmongocrypt';
