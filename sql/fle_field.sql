-- Field-level encryption: paths, algorithms, operators, indexed equality,
-- type rules, tampering, unknown keys and crypto-shredding.
SET search_path = bsoncrypt, public;
-- errors whose messages carry a random key id, with the id masked
CREATE FUNCTION pg_temp.try(query text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE query;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f-]{36}', '<uuid>', 'g');
END $$;
SELECT create_data_key('local', '{hr}') IS NOT NULL AS hr_key,
       create_data_key('local', '{finance, payroll}') IS NOT NULL AS finance_key;

CREATE TEMP TABLE people (id int PRIMARY KEY, doc bson);
INSERT INTO people VALUES
  (1, '{"name": "Ann", "ssn": "123-45-6789", "salary": 5000.5, "addr": {"zip": "0150", "geo": [59.9, 10.7]}, "kids": [{"n": "Al", "ssn": "111-11-1111"}]}'),
  (2, '{"name": "Bob", "ssn": "987-65-4321", "salary": 4200.0, "addr": {"zip": "00100"}}'),
  (3, '{"name": "Cy"}');

-- encrypt in place: deterministic ssn, random salary and nested fields
UPDATE people SET doc = encrypt_field(doc, 'ssn', 'hr', 'deterministic');
UPDATE people SET doc = encrypt_fields(doc, '{salary, addr.geo, kids.0.ssn}', 'finance');
-- the stored documents hold Binary subtype 6 where the fields were
SELECT id, doc ->> 'name' AS name,
       doc ->> 'ssn' LIKE '{ "$binary" : { "base64" : "A%", "subType" : "06" } }' AS ssn_det_blob,
       doc ->> 'salary' LIKE '{ "$binary" : { "base64" : "A%", "subType" : "06" } }' AS salary_rand_blob,
       doc ->> 'addr.zip' AS zip_plain,
       doc ->> 'addr.geo' LIKE '%"06"%' AS geo_enc,
       doc ->> 'kids.0.ssn' LIKE '%"06"%' AS kid_ssn_enc,
       doc ->> 'kids.0.n' AS kid_name
FROM people ORDER BY id;
-- paths are resolved as by ->: an empty component names the empty key
SELECT encrypt_field('{"": {"a": "x"}}', '.a', 'hr', 'deterministic') -> '.a' = '{"": {"a": "x"}}'::bson -> '.a' ## 'hr' AS same_path_rules;
-- re-running is harmless: encrypted values and missing paths are left as they are
SELECT count(*) AS unchanged FROM people
 WHERE encrypt_field(doc, 'ssn', 'hr', 'deterministic') = doc
   AND encrypt_field(doc, 'no.such.path', 'hr') = doc;

-- decryption: whole documents, single fields, operators
SELECT id, decrypt(doc) FROM people ORDER BY id;
SELECT id, decrypt_field(doc, 'salary') ->> 'salary' AS salary,
       decrypt_field(doc, 'salary') ->> 'ssn' LIKE '%"06"%' AS ssn_still_encrypted
FROM people ORDER BY id;
SELECT id, doc ~> 'ssn' AS ssn, doc ~>> 'ssn' AS ssn_text, doc ~>> 'addr.geo' AS geo,
       doc ~>> 'addr.zip' AS zip, doc ~> 'missing' IS NULL AS missing
FROM people ORDER BY id;

-- deterministic encryption: equal plaintexts give equal ciphertexts, so
-- equality and indexes work on the ciphertext
SELECT count(DISTINCT encrypt_value('{"": "x"}', 'hr', 'deterministic')) AS det_distinct,
       count(DISTINCT encrypt_value('{"": "x"}', 'hr', 'random')) AS rand_distinct
FROM generate_series(1, 5);
CREATE TEMP TABLE patients AS
  SELECT g AS id, encrypt_field(('{"ssn": "' || lpad(g::text, 9, '0') || '", "n": ' || g || '}')::bson,
                                'ssn', 'hr', 'deterministic') AS doc
  FROM generate_series(1, 3000) g;
CREATE INDEX patients_ssn ON patients ((doc -> 'ssn'));
ANALYZE patients;
EXPLAIN (COSTS OFF)
SELECT id FROM patients WHERE doc -> 'ssn' = encrypt_value('{"": "000000042"}', 'hr', 'deterministic');
SELECT id FROM patients WHERE doc -> 'ssn' = encrypt_value('{"": "000000042"}', 'hr', 'deterministic');
EXPLAIN (COSTS OFF)
SELECT id FROM patients WHERE doc -> 'ssn' = '{"": "000000043"}'::bson ## 'hr';
SELECT id, doc ~>> 'ssn' AS ssn FROM patients WHERE doc -> 'ssn' = '{"": "000000043"}'::bson ## 'hr';
-- MongoDB's algorithm names, and the key by _id
SELECT encrypt_value('{"": "000000043"}', 'hr', 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic')
     = encrypt_value('{"": "000000043"}', (SELECT _id FROM key_vault WHERE 'hr' = ANY (key_alt_names)), 'deterministic') AS by_id_same;
SELECT decrypt_value(encrypt_value('{"": {"$date": "2020-01-01T00:00:00Z"}}', 'hr', 'AEAD_AES_256_CBC_HMAC_SHA_512-Random'));

-- every BSON type that may be encrypted round-trips
CREATE TEMP TABLE typed (name text, v bson, det boolean);
INSERT INTO typed VALUES
  ('string', '{"": "héllo"}', true), ('empty string', '{"": ""}', true),
  ('long string', ('{"": "' || repeat('x', 100000) || '"}')::bson, true),
  ('int32', '{"": {"$numberInt": "-7"}}', true), ('int64', '{"": {"$numberLong": "-9000000000"}}', true),
  ('date', '{"": {"$date": {"$numberLong": "-1000"}}}', true), ('objectId', '{"": {"$oid": "57e193d7a9cc81b4027498b5"}}', true),
  ('binary', '{"": {"$binary": {"base64": "AQID", "subType": "00"}}}', true),
  ('uuid', '{"": {"$binary": {"base64": "c//SZESzTGmQ6OfR38A11A==", "subType": "04"}}}', true),
  ('regex', '{"": {"$regularExpression": {"pattern": "^a", "options": "i"}}}', true),
  ('timestamp', '{"": {"$timestamp": {"t": 1, "i": 2}}}', true), ('code', '{"": {"$code": "f()"}}', true),
  ('symbol', '{"": {"$symbol": "s"}}', true),
  ('dbPointer', '{"": {"$dbPointer": {"$ref": "a.b", "$id": {"$oid": "57e193d7a9cc81b4027498b5"}}}}', true),
  ('double', '{"": 1.5}', false), ('decimal', '{"": {"$numberDecimal": "1.10"}}', false),
  ('document', '{"": {"a": [1, {"b": null}]}}', false), ('array', '{"": [1, "two"]}', false),
  ('bool', '{"": false}', false), ('codeWScope', '{"": {"$code": "x", "$scope": {"x": 1}}}', false);
SELECT name,
       decrypt_value(encrypt_value(v, 'hr', 'random')) = v AS random_ok,
       CASE WHEN det THEN decrypt_value(encrypt_value(v, 'hr', 'deterministic')) = v END AS det_ok
FROM typed ORDER BY name;

-- refusals name the field and the type
\set VERBOSITY default
SELECT encrypt_field('{"a": {"b": null}}', 'a.b', 'hr');
SELECT encrypt_field('{"a": {"b": {"$minKey": 1}}}', 'a.b', 'hr');
SELECT encrypt_field('{"a": [1.5]}', 'a.0', 'hr', 'deterministic');
SELECT encrypt_value('{"": true}', 'hr', 'deterministic');
SELECT encrypt_value((SELECT doc -> 'ssn' FROM people WHERE id = 1), 'hr', 'random');
SELECT encrypt_field('{"a": 1}', 'a', 'hr', 'aes-gcm');
SELECT encrypt_field('{"a": 1}', 'a', 'no-such-key');
SELECT encrypt_value('{"a": 1, "b": 2}', 'hr');
SELECT encrypt_value('{}', 'hr');

-- tampering: flipping any single byte of a ciphertext is an error, never a value
DO $$
DECLARE
    enc bytea := bsoncrypt.encrypt_value('{"": "secret"}', 'hr', 'random')::bytea;
    errors int := 0;
    values_returned int := 0;
    codes text[] := '{}';
BEGIN
    -- {"": Binary}: 4 length + 1 type + 1 key + 4 binary length + 1 subtype = 11 bytes before the blob
    FOR i IN 11 .. length(enc) - 2 LOOP
        BEGIN
            PERFORM bsoncrypt.decrypt_value(set_byte(enc, i, get_byte(enc, i) # 1)::bsoncrypt.bson);
            values_returned := values_returned + 1;
        EXCEPTION WHEN OTHERS THEN
            errors := errors + 1;
            IF NOT SQLSTATE = ANY (codes) THEN codes := codes || SQLSTATE; END IF;
        END;
    END LOOP;
    RAISE NOTICE 'blob bytes flipped: %, errors: %, values returned: %, sqlstates: %',
        length(enc) - 12, errors, values_returned, (SELECT array_agg(c ORDER BY c) FROM unnest(codes) c);
END $$;
SELECT pg_temp.try($$SELECT bsoncrypt.decrypt_value(set_byte(bsoncrypt.encrypt_value('{"": "secret"}', 'hr', 'random')::bytea, 60, 0)::bsoncrypt.bson)$$);
SELECT decrypt_value(set_byte(encrypt_value('{"": "secret"}', 'hr', 'random')::bytea, 11, 3)::bson);
-- a truncated blob
SELECT decrypt_value('{"": {"$binary": {"base64": "AQID", "subType": "06"}}}');
-- decrypt() passes through subtype-6 values that are not FLE1 (like drivers do)
SELECT decrypt('{"a": {"$binary": {"base64": "AAID", "subType": "06"}}}');

-- crypto-shredding: delete the key, its ciphertexts are gone for good
SELECT create_data_key(key_alt_names => '{doomed}') IS NOT NULL AS doomed_key;
CREATE TEMP TABLE shredded AS SELECT encrypt_field('{"x": "gone"}', 'x', 'doomed') AS doc;
SELECT doc ~>> 'x' AS before_delete FROM shredded;
SELECT delete_key(_id) FROM key_vault WHERE 'doomed' = ANY (key_alt_names);
SELECT pg_temp.try('SELECT bsoncrypt.decrypt(doc) FROM pg_temp.shredded');
SELECT pg_temp.try($$SELECT bsoncrypt.decrypt_field(doc, 'x') FROM pg_temp.shredded$$);
SELECT pg_temp.try($$SELECT doc ~> 'x' FROM pg_temp.shredded$$);
\set VERBOSITY terse

-- parallel workers look keys up and decrypt too
SET force_parallel_mode = on;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET bsoncrypt.key_cache_ttl = 0;
CREATE TABLE patients_shared AS SELECT * FROM patients;   -- temp tables are never scanned in parallel
EXPLAIN (COSTS OFF) SELECT count(decrypt(doc)) FROM patients_shared;
SELECT count(*) FILTER (WHERE doc ~>> 'ssn' = lpad(id::text, 9, '0')) AS decrypted_in_workers,
       count(*) FILTER (WHERE encrypt_field(decrypt(doc), 'ssn', 'hr', 'deterministic') = doc) AS reencrypted_equal
FROM patients_shared;
DROP TABLE patients_shared;
RESET force_parallel_mode;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET bsoncrypt.key_cache_ttl;

-- no per-row memory growth: a session's memory is the same after 20k and 60k rows
CREATE TEMP TABLE many AS
  SELECT ('{"s": "' || repeat('x', 100) || g || '"}')::bson AS doc FROM generate_series(1, 60000) g;
CREATE FUNCTION pg_temp.session_memory() RETURNS bigint LANGUAGE sql AS
  $$ SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts $$;
SELECT count(decrypt(encrypt_field(doc, 's', 'hr', 'deterministic'))) FROM (SELECT * FROM many LIMIT 20000) m;
SELECT pg_temp.session_memory() AS after_20k \gset
SELECT count(decrypt(encrypt_field(doc, 's', 'hr', 'random'))) FROM many;
SELECT count(decrypt_field(encrypt_fields(doc, '{s}', 'hr'), 's')) FROM many;
SELECT pg_temp.session_memory() - :after_20k < 1000000 AS no_per_row_growth;
