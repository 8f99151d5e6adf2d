-- bsoncrypt demo: run by scripts/demo.sh on a throwaway cluster.
\pset footer off
CREATE EXTENSION bsoncrypt;
SET search_path = bsoncrypt, public;

\echo '== BSON documents, written as MongoDB Extended JSON'
CREATE TABLE patients (id serial PRIMARY KEY, doc bson);
INSERT INTO patients (doc) VALUES
  ('{"name": "Ann Smith", "ssn": "123-45-6789", "born": {"$date": "1980-04-01T00:00:00Z"}, "visits": {"$numberLong": "12"}}'),
  ('{"name": "Bob Jones", "ssn": "987-65-4321", "born": {"$date": "1975-11-30T00:00:00Z"}, "visits": {"$numberLong": "3"}}');
SELECT id, doc FROM patients ORDER BY id;

\echo '== fields by path, and the same document in canonical Extended JSON'
SELECT id, doc ->> 'name' AS name, doc -> 'ssn' AS ssn FROM patients ORDER BY id;
SELECT bson_to_json(doc, canonical => true) FROM patients WHERE id = 1;

\echo '== a data key in the key vault, wrapped by the local master key (tmp_demo/master.key)'
SELECT create_data_key('local', '{patients}') AS key_id;
SELECT get_key_by_alt_name('patients') AS "key-vault document (MongoDB format)";

\echo '== encrypt: ssn deterministically (searchable), birth date randomly'
UPDATE patients SET doc = encrypt_field(doc, 'ssn', 'patients', 'deterministic');
UPDATE patients SET doc = encrypt_field(doc, 'born', 'patients', 'random');
SELECT id, doc FROM patients ORDER BY id;

\echo '== one encrypted field as bytes: FLE1 blob = algorithm (01 det), key id, BSON type (02 string), then IV, ciphertext, tag'
SELECT id, encode(substring((doc -> 'ssn')::bytea FROM 12 FOR 1), 'hex') AS algorithm,
       encode(substring((doc -> 'ssn')::bytea FROM 13 FOR 16), 'hex') AS key_id,
       encode(substring((doc -> 'ssn')::bytea FROM 29 FOR 1), 'hex') AS bson_type,
       octet_length((doc -> 'ssn')::bytea) - 30 AS "iv+ciphertext+tag bytes"
FROM patients ORDER BY id;

\echo '== decrypt: whole documents, and single fields with the ~>> operator'
SELECT id, decrypt(doc) FROM patients ORDER BY id;
SELECT id, doc ->> 'name' AS name, doc ~>> 'ssn' AS ssn, doc ~>> 'born' AS born FROM patients ORDER BY id;

\echo '== find by encrypted ssn through an index'
CREATE INDEX patients_ssn ON patients ((doc -> 'ssn'));
SELECT id, doc ->> 'name' AS name FROM patients
 WHERE doc -> 'ssn' = encrypt_value('{"": "987-65-4321"}', 'patients', 'deterministic');

\echo '== master-key rotation: add version v2 to the key ring, rotate, watch the worker rewrap'
\! printf 'v2 %s\n' "$(head -c 96 /dev/urandom | base64 -w0)" >> "$BSONCRYPT_DEMO_DIR/master.key"
SELECT master_key_version, count(*) AS keys FROM key_vault GROUP BY 1;
SELECT rotate_master_key() AS rotation_requested;
DO $$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM bsoncrypt.rotation_status WHERE state = 'done');
        PERFORM pg_sleep(0.1);
    END LOOP;
END $$;
SELECT provider, state, from_versions, to_version, keys_done, keys_total FROM rotation_status;
SELECT master_key_version, count(*) AS keys FROM key_vault GROUP BY 1;
\echo '== the data key bytes did not change: everything still decrypts'
SELECT id, doc ~>> 'ssn' AS ssn FROM patients ORDER BY id;

\echo '== at-rest encryption: the same documents in a heap table and an encrypted_heap table'
CREATE TABLE records_heap (id int, doc bson) USING heap;
CREATE TABLE records_encrypted (id int, doc bson) USING encrypted_heap;
INSERT INTO records_heap SELECT id, decrypt(doc) FROM patients;
INSERT INTO records_encrypted SELECT id, decrypt(doc) FROM patients;
CHECKPOINT;
SELECT relname AS "table", is_encrypted(oid::regclass) AS encrypted,
       position(convert_to('Ann Smith', 'UTF8') IN pg_read_binary_file(pg_relation_filepath(oid))) > 0
         AS "data file contains 'Ann Smith'"
FROM pg_class WHERE relname IN ('records_heap', 'records_encrypted') ORDER BY 1;
\echo '== queries see plaintext; the relation key is wrapped by the master key'
SELECT id, doc ->> 'name' AS name FROM records_encrypted ORDER BY id;
SELECT relation, provider, master_key_version FROM encrypted_relations;
