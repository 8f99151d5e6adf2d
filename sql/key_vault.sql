-- Key vault management (MongoDB's ClientEncryption API), master-key
-- provider errors, and privileges.
SET search_path = bsoncrypt, public;
CREATE FUNCTION pg_temp.try(query text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE query;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f-]{36}', '<uuid>', 'g');
END $$;

SELECT create_data_key('local', '{kv1, kv1b}') AS kv1 \gset
-- the exported document has exactly MongoDB's fields, in libmongocrypt's order
SELECT bson_object_keys(get_key(:'kv1'));
SELECT get_key(:'kv1') ->> 'masterKey' AS master_key, get_key(:'kv1') ->> 'status' AS status,
       get_key(:'kv1') ->> 'keyAltNames' AS alt_names,
       octet_length(decode(bson_to_json(get_key(:'kv1'), true)::jsonb #>> '{keyMaterial,$binary,base64}', 'base64')) AS material_len;
SELECT bson_to_json(get_key(:'kv1'), true) LIKE '%"keyMaterial" : { "$binary" : { "base64" : "%", "subType" : "00" } }%' AS material_subtype_0,
       bson_to_json(get_key(:'kv1'), true) LIKE '{ "_id" : { "$binary" : { "base64" : "%", "subType" : "04" } }%' AS id_subtype_4;
SELECT get_key_by_alt_name('kv1b') = get_key(:'kv1') AS by_alt_name,
       get_key_by_alt_name('nope') IS NULL AS unknown_alt_name,
       get_key('00000000-0000-0000-0000-000000000000') IS NULL AS unknown_id,
       (SELECT count(*) FROM get_keys() k WHERE k = get_key(:'kv1')) AS in_get_keys;
SELECT master_key_version FROM key_vault WHERE _id = :'kv1';

-- keyAltNames are unique across the vault
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('local', '{kv1}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('local', '{x, x}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('local', '{""}')$$);
SELECT create_data_key(key_alt_names => '{kv2}') AS kv2 \gset
SELECT pg_temp.try(format('SELECT bsoncrypt.add_key_alt_name(%L, %L)', :'kv2', 'kv1'));
SELECT add_key_alt_name(:'kv2', 'kv2b') ->> 'keyAltNames' AS before_add;
SELECT add_key_alt_name(:'kv2', 'kv2b') ->> 'keyAltNames' AS before_readd;
SELECT get_key(:'kv2') ->> 'keyAltNames' AS after_add;
SELECT remove_key_alt_name(:'kv2', 'kv2') ->> 'keyAltNames' AS before_remove;
SELECT get_key(:'kv2') ->> 'keyAltNames' AS after_remove;
SELECT remove_key_alt_name(:'kv2', 'kv2b') IS NOT NULL AS removed_last;
SELECT get_key(:'kv2') ->> 'keyAltNames' IS NULL AS no_alt_names_field;
SELECT add_key_alt_name('00000000-0000-0000-0000-000000000000', 'z') IS NULL AS no_such_key;
-- the freed name can be taken by another key
SELECT create_data_key(key_alt_names => '{kv2b}') IS NOT NULL AS reused_name;
SELECT key_alt_name FROM key_alt_names WHERE key_alt_name LIKE 'kv%' ORDER BY 1;

-- a given 96-byte key material (MongoDB's createDataKey keyMaterial option)
SELECT create_data_key('local', '{given}', decode(repeat('ab', 96), 'hex')) IS NOT NULL AS given_material;
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('local', '{short}', '\x0102')$$);
-- a key exported with get_key, deleted, and imported again decrypts its values again
SELECT encrypt_value('{"": "hello"}', 'given', 'deterministic') AS given_ct \gset
SELECT get_key_by_alt_name('given') AS given_doc \gset
SELECT delete_key(_id) FROM key_vault WHERE 'given' = ANY (key_alt_names);
SELECT pg_temp.try(format('SELECT bsoncrypt.decrypt_value(%L)', :'given_ct'));
SELECT import_key(:'given_doc') IS NOT NULL AS reimported, get_key_by_alt_name('given') = :'given_doc' AS same_document;
SELECT decrypt_value(:'given_ct') AS decrypts_again;

-- import: strict like libmongocrypt
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(bsoncrypt.get_key_by_alt_name('kv1'))$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key('{"_id": {"$binary": {"base64": "AAAAAAAAAAAAAAAAAAAAAA==", "subType": "04"}}, "extra": 1}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key('{"_id": {"$binary": {"base64": "AAAAAAAAAAAAAAAAAAAAAA==", "subType": "00"}}}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key('{"_id": {"$binary": {"base64": "AAAAAAAAAAAAAAAAAAAAAA==", "subType": "04"}}}')$$);
CREATE TEMP TABLE kdoc AS SELECT get_key(:'kv1') AS d;
-- a key document with a modified keyMaterial, a different id and no alt names
CREATE FUNCTION pg_temp.forged(material_byte int, master text DEFAULT '{"provider": "local"}') RETURNS bsoncrypt.bson LANGUAGE sql AS $$
    SELECT format('{"_id": {"$binary": {"base64": "EjRWeJq83vASNFZ4mrze8A==", "subType": "04"}}, "keyMaterial": {"$binary": {"base64": "%s", "subType": "00"}}, "creationDate": {"$date": 0}, "updateDate": {"$date": 0}, "status": 0, "masterKey": %s}',
                  replace(encode(CASE WHEN material_byte < 0 THEN m
                                      ELSE set_byte(m, material_byte, get_byte(m, material_byte) # 128) END,
                                 'base64'), E'\n', ''),
                  master)::bsoncrypt.bson
    FROM (SELECT decode(bson_to_json(d, true)::jsonb #>> '{keyMaterial,$binary,base64}', 'base64') AS m
          FROM pg_temp.kdoc) k
$$;
-- unmodified, the forged document imports (so the failures below are the modifications)
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.forged(-1))$$);
SELECT delete_key('12345678-9abc-def0-1234-56789abcdef0') AS deleted_again;
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.forged(100))$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.forged(3))$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.forged(3, '{"provider": "local", "key": "x"}'))$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.forged(3, '{"provider": "aws"}'))$$);
SELECT count(*) AS nothing_imported FROM key_vault WHERE _id = '12345678-9abc-def0-1234-56789abcdef0';

-- providers
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('aws')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('command')$$);

-- privileges: PUBLIC may use the bson type but not keys, the vault or encryption
CREATE ROLE bc_nobody;
CREATE ROLE bc_writer;
CREATE ROLE bc_reader;
SELECT grant_encryption('bc_writer');
SELECT grant_decryption('bc_reader');
SET ROLE bc_nobody;
SELECT '{"a": 1}'::bsoncrypt.bson -> 'a' AS public_bson_ok;
SELECT pg_temp.try('SELECT count(*) FROM bsoncrypt.key_vault');
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('local', '{mine}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.get_keys()$$);
SELECT pg_temp.try($$SELECT bsoncrypt.encrypt_field('{"a": "x"}', 'a', 'kv1')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.decrypt('{"a": "x"}')$$);
SELECT pg_temp.try($$SELECT '{"a": "x"}'::bsoncrypt.bson OPERATOR(bsoncrypt.~>) 'a'$$);
SELECT pg_temp.try($$SHOW bsoncrypt.local_master_key_file$$);
SET ROLE bc_writer;
SELECT encrypt_field('{"a": "x"}', 'a', 'kv1', 'deterministic') AS ct \gset
SELECT :'ct'::text LIKE '%"06"%' AS writer_encrypts;
SELECT pg_temp.try(format('SELECT bsoncrypt.decrypt(%L)', :'ct'));
SELECT pg_temp.try('SELECT count(*) FROM bsoncrypt.key_vault');
SET ROLE bc_reader;
SELECT decrypt(:'ct') AS reader_decrypts, :'ct'::bsoncrypt.bson ~>> 'a' AS reader_op;
SELECT pg_temp.try($$SELECT bsoncrypt.encrypt_field('{"a": "x"}', 'a', 'kv1')$$);
RESET ROLE;
DROP OWNED BY bc_writer, bc_reader;
DROP ROLE bc_nobody, bc_writer, bc_reader;

-- key management functions are not executable by PUBLIC
SELECT p.proname
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'bsoncrypt' AND has_function_privilege('public', p.oid, 'EXECUTE')
  AND p.proname !~ '^bson_'
ORDER BY 1;

-- a modified keyMaterial in the vault: the next unwrap fails, no value comes out
-- (a cached key is not re-read before bsoncrypt.key_cache_ttl: rewraps change
-- key_material without changing the key, so they do not flush caches)
SET bsoncrypt.key_cache_ttl = 0;
SELECT create_data_key('local', '{tampered}') AS tk \gset
SELECT encrypt_value('{"": "t"}', 'tampered', 'random') AS tct \gset
UPDATE key_vault SET key_material = set_byte(key_material, 40, get_byte(key_material, 40) # 1) WHERE _id = :'tk';
SELECT pg_temp.try(format('SELECT bsoncrypt.decrypt_value(%L)', :'tct'));
SELECT pg_temp.try($$SELECT bsoncrypt.encrypt_value('{"": "t"}', 'tampered')$$);
SELECT delete_key(:'tk');
RESET bsoncrypt.key_cache_ttl;

-- dates of key documents: BSON dates are milliseconds since 1970; what a
-- key vault row holds is a timestamptz, so imports take the dates that
-- timestamptz holds (4714-11-24 BC to 294276-12-31 AD, UTC) and exports
-- refuse non-finite ones
CREATE FUNCTION pg_temp.dated(created text, updated text) RETURNS bsoncrypt.bson LANGUAGE sql AS $$
    SELECT format('{"_id": {"$binary": {"base64": "EjRWeJq83vASNFZ4mrze8A==", "subType": "04"}}, "keyMaterial": {"$binary": {"base64": "%s", "subType": "00"}}, "creationDate": {"$date": {"$numberLong": "%s"}}, "updateDate": {"$date": {"$numberLong": "%s"}}, "status": 0, "masterKey": {"provider": "local"}}',
                  replace(encode(decode(bson_to_json(d, true)::jsonb #>> '{keyMaterial,$binary,base64}', 'base64'), 'base64'), E'\n', ''),
                  created, updated)::bsoncrypt.bson
    FROM pg_temp.kdoc
$$;
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.dated('9223372036854775807', '0'))$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.dated('0', '-9223372036854775808'))$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.dated('-210866803200001', '0'))$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.dated('0', '9224318016000000'))$$);
SELECT count(*) AS none_imported FROM key_vault WHERE _id = '12345678-9abc-def0-1234-56789abcdef0';
-- the limits import, and round-trip exactly through get_key and import_key
SELECT import_key(pg_temp.dated('-210866803200000', '9224318015999999')) AS limits \gset
SELECT (creation_date AT TIME ZONE 'UTC')::text AS created, (update_date AT TIME ZONE 'UTC')::text AS updated
  FROM key_vault WHERE _id = :'limits';
SELECT get_key(:'limits') = pg_temp.dated('-210866803200000', '9224318015999999') AS exported_exactly;
CREATE TEMP TABLE limits_doc AS SELECT get_key(:'limits') AS d;
SELECT delete_key(:'limits');
SELECT import_key(d) = :'limits' AS reimported FROM limits_doc;
SELECT get_key(:'limits') = d AS same_document FROM limits_doc;
SELECT delete_key(:'limits');
-- a key vault row cannot hold an infinite date, and none is exported
SELECT pg_temp.try(format($$UPDATE bsoncrypt.key_vault SET update_date = 'infinity' WHERE _id = %L$$, :'kv1'));
SELECT pg_temp.try(format($$SELECT bsoncrypt._key_document(ROW(k._id, k.key_alt_names, k.key_material, k.master_key,
        k.master_key_version, k.creation_date, 'infinity', k.status)::bsoncrypt.key_vault)
    FROM bsoncrypt.key_vault k WHERE k._id = %L$$, :'kv1'));
SELECT pg_temp.try(format($$SELECT bsoncrypt._key_document(ROW(k._id, k.key_alt_names, k.key_material, k.master_key,
        k.master_key_version, '-infinity', k.update_date, k.status)::bsoncrypt.key_vault)
    FROM bsoncrypt.key_vault k WHERE k._id = %L$$, :'kv1'));
