-- rewrap_many_data_key (MongoDB's rewrapManyDataKey) and the rotation
-- objects.  The regress cluster's key file holds one unnamed key (version
-- "default"), so keys are rewrapped to the same version here; rotations
-- between versions are tested in t/020_rotation.pl.
SET search_path = bsoncrypt, public;

CREATE TEMP TABLE rk AS
SELECT n, create_data_key('local', ARRAY['rot_' || n]) AS id FROM generate_series(1, 4) n;
CREATE TEMP TABLE before AS
SELECT k._id, k.key_material, k.update_date FROM key_vault k JOIN rk ON rk.id = k._id;
CREATE TEMP TABLE enc AS
SELECT n, encrypt_field('{"v": "secret"}', 'v', 'rot_' || n) AS doc FROM generate_series(1, 4) n;

SELECT current_master_key_version();

-- every key of the vault
SELECT rewrap_many_data_key() = (SELECT count(*) FROM key_vault) AS all_rewrapped;
SELECT count(*) AS changed, bool_and(k.update_date > b.update_date) AS update_date_moved,
       bool_and(k.master_key_version = 'default') AS same_version,
       bool_and(length(k.key_material) = 160) AS wrapped_length
  FROM key_vault k JOIN before b USING (_id) WHERE k.key_material <> b.key_material;
SELECT count(*) AS decrypts FROM enc WHERE decrypt_get_text(doc, 'v') = 'secret';

-- filters
SELECT rewrap_many_data_key('{"keyAltNames": "rot_1"}') AS by_alt_name;
SELECT rewrap_many_data_key('{"keyAltNames": {"$in": ["rot_2", "rot_3", "nope"]}}') AS by_alt_names;
SELECT rewrap_many_data_key(format('{"_id": {"$uuid": "%s"}}', id)::bson) AS by_id FROM rk WHERE n = 4;
SELECT rewrap_many_data_key(format('{"_id": {"$in": [{"$uuid": "%s"}, {"$uuid": "%s"}]}}',
                                   (SELECT id FROM rk WHERE n = 1), (SELECT id FROM rk WHERE n = 2))::bson) AS by_ids;
SELECT rewrap_many_data_key(format('{"_id": {"$uuid": "%s"}, "keyAltNames": "rot_2"}',
                                   (SELECT id FROM rk WHERE n = 1))::bson) AS id_and_name_disjoint;
SELECT rewrap_many_data_key('{"keyAltNames": {"$in": []}}') AS empty_in;
SELECT rewrap_many_data_key('{"keyAltNames": "nope"}') AS no_match;
SELECT rewrap_many_data_key(NULL) = (SELECT count(*) FROM key_vault) AS null_filter_is_all;

-- explicit provider and version (the current one)
SELECT rewrap_many_data_key('{"keyAltNames": "rot_1"}', 'local') AS to_current;
SELECT rewrap_many_data_key('{"keyAltNames": "rot_1"}', 'local', 'default') AS to_default;
SELECT master_key_version, bson_get_text(master_key, 'provider') AS provider
  FROM key_vault k JOIN rk ON rk.id = k._id WHERE rk.n = 1;

-- in the caller's transaction
CREATE TEMP TABLE mid AS SELECT _id, key_material FROM key_vault;
BEGIN;
SELECT rewrap_many_data_key('{"keyAltNames": "rot_3"}') AS in_transaction;
ROLLBACK;
SELECT count(*) = (SELECT count(*) FROM key_vault) AS unchanged_after_rollback
  FROM key_vault k JOIN mid m USING (_id) WHERE k.key_material = m.key_material;
SELECT count(*) AS still_decrypt FROM enc WHERE decrypt_get_text(doc, 'v') = 'secret';

-- refused filters and arguments
SELECT rewrap_many_data_key('{"status": 0}');
SELECT rewrap_many_data_key('{"_id": "not-a-uuid"}');
SELECT rewrap_many_data_key('{"_id": {"$nin": []}}');
SELECT rewrap_many_data_key('{"_id": {}}');
SELECT rewrap_many_data_key('{"keyAltNames": 5}');
SELECT rewrap_many_data_key('{"keyAltNames": {"$in": "rot_1"}}');
SELECT rewrap_many_data_key('{"keyAltNames": {"$in": ["rot_1", 7]}}');
SELECT rewrap_many_data_key('{"keyAltNames": "a", "keyAltNames": "b"}');
SELECT rewrap_many_data_key('{}', NULL, 'default');
SELECT rewrap_many_data_key('{}', 'aws');
SELECT rewrap_many_data_key('{}', 'local', 'bad version!');
DO $$
BEGIN
    PERFORM bsoncrypt.rewrap_many_data_key('{"keyAltNames": "rot_1"}', 'local', 'v-missing');
EXCEPTION WHEN undefined_object THEN
    RAISE NOTICE 'missing version refused: %', SQLSTATE;
END $$;
SELECT rotate_master_key('aws');

-- the status views and who may use what
SELECT column_name FROM information_schema.columns
 WHERE table_schema = 'bsoncrypt' AND table_name = 'rotation_status' ORDER BY ordinal_position;
SELECT provider, master_key_version, data_keys >= 4 AS has_keys, relation_keys >= 0 AS counts_relation_keys
  FROM master_key_versions WHERE provider = 'local';
SELECT has_function_privilege('public', 'bsoncrypt.rotate_master_key(text)', 'EXECUTE') AS public_rotate,
       has_function_privilege('public', 'bsoncrypt.rewrap_many_data_key(bson, text, text)', 'EXECUTE') AS public_rewrap,
       has_function_privilege('public', 'bsoncrypt.current_master_key_version(text)', 'EXECUTE') AS public_current,
       has_table_privilege('public', 'bsoncrypt.rotation_status', 'SELECT') AS public_status,
       has_table_privilege('public', 'bsoncrypt.rotation_state', 'SELECT') AS public_state,
       has_table_privilege('pg_monitor', 'bsoncrypt.rotation_status', 'SELECT') AS monitor_status,
       has_table_privilege('pg_monitor', 'bsoncrypt.master_key_versions', 'SELECT') AS monitor_versions,
       has_function_privilege('pg_monitor', 'bsoncrypt.rotate_master_key(text)', 'EXECUTE') AS monitor_rotate;
SHOW bsoncrypt.master_key_rotation_interval;

SELECT delete_key(id) FROM rk ORDER BY n;
