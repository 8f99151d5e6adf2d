-- The kmip master-key provider without a KMIP server: its settings, key
-- documents checked as libmongocrypt checks them, master_key options of
-- create_data_key, versions, and clear errors when nothing is configured.
-- t/050_kmip.pl runs it against a real server.
SET search_path = bsoncrypt, public;
CREATE FUNCTION pg_temp.try(query text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE query;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f-]{36}', '<uuid>', 'g');
END $$;

-- settings: reload-only, the paths and the server hidden from other roles
SELECT name, setting, unit, context, source
  FROM pg_settings WHERE name LIKE 'bsoncrypt.kmip%' ORDER BY name;
SELECT pg_temp.try($$SET bsoncrypt.kmip_key_id = '1'$$);
CREATE ROLE kmip_nobody;
SET ROLE kmip_nobody;
SELECT pg_temp.try($$SHOW bsoncrypt.kmip_endpoint$$);
SELECT pg_temp.try($$SHOW bsoncrypt.kmip_key_file$$);
SELECT pg_temp.try($$SHOW bsoncrypt.kmip_key_id$$);
SELECT pg_temp.try($$SELECT bsoncrypt.kmip_create_master_key()$$);
RESET ROLE;
DROP ROLE kmip_nobody;

-- nothing configured: clear errors, no connection attempted
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('kmip')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('kmip', '{}', NULL, '{"keyId": "17"}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.kmip_create_master_key()$$);
SELECT pg_temp.try($$SELECT bsoncrypt.current_master_key_version('kmip')$$);
BEGIN;	-- (rolled back: no worker is woken)
SELECT _request_rotation('kmip') AS kmip_rotation_accepted;
ROLLBACK;

-- master_key options of create_data_key: MongoDB's masterKey fields
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('kmip', '{}', NULL, '{"keyId": 17}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('kmip', '{}', NULL, '{"keyId": "a b"}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('kmip', '{}', NULL, '{"keyId": "a@b"}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('kmip', '{}', NULL, '{"keyId": ""}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('kmip', '{}', NULL, '{"endpoint": "h:99999", "keyId": "1"}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('kmip', '{}', NULL, '{"endpoint": "::1", "keyId": "1"}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('kmip', '{}', NULL, '{"delegated": "yes", "keyId": "1"}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('kmip', '{}', NULL, '{"endpoint": "kmip.example:5696"}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('kmip', '{}', NULL, '{"keyId": "1", "region": "x"}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('kmip', '{}', NULL, '{"provider": "local", "keyId": "1"}')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('local', '{}', NULL, '{"keyId": "1"}')$$);
-- {} and {"provider": <the same>} are no options: the current master key
SELECT pg_temp.try($$SELECT bsoncrypt.create_data_key('local', '{kmip_t1}', NULL, '{}')$$) AS empty_options,
       pg_temp.try($$SELECT bsoncrypt.create_data_key('local', '{kmip_t2}', NULL, '{"provider": "local"}')$$) AS provider_only;
SELECT master_key, count(*) FROM key_vault WHERE key_alt_names && '{kmip_t1,kmip_t2}' GROUP BY 1;
DELETE FROM key_vault WHERE key_alt_names && '{kmip_t1,kmip_t2}';

-- key documents: kmip's fields are checked before anything is fetched
CREATE FUNCTION pg_temp.doc(master text) RETURNS bson LANGUAGE sql AS $$
    SELECT format('{"_id": {"$binary": {"base64": "EjRWeJq83vASNFZ4mrze8A==", "subType": "04"}}, "keyMaterial": {"$binary": {"base64": "AAAA", "subType": "00"}}, "creationDate": {"$date": 0}, "updateDate": {"$date": 0}, "status": 0, "masterKey": %s}', master)::bson
$$;
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.doc('{"provider": "kmip"}'))$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.doc('{"provider": "kmip", "keyId": "1", "key": "x"}'))$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.doc('{"provider": "kmip", "keyId": true}'))$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.doc('{"provider": "kmip", "endpoint": 5696, "keyId": "1"}'))$$);
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.doc('{"provider": "kmip", "delegated": 1, "keyId": "1"}'))$$);
-- a valid document needs the server
SELECT pg_temp.try($$SELECT bsoncrypt.import_key(pg_temp.doc('{"provider": "kmip", "endpoint": "[::1]:5696", "delegated": true, "keyId": "1"}'))$$);
SELECT count(*) AS nothing_imported FROM key_vault WHERE _id = '12345678-9abc-def0-1234-56789abcdef0';

-- versions: a KMIP unique identifier, optionally @host:port
SELECT pg_temp.try($$SELECT bsoncrypt.rewrap_many_data_key('{}', 'kmip', 'bad version')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.rewrap_many_data_key('{}', 'kmip', '1@host:0')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.rewrap_many_data_key('{}', 'kmip', '1@')$$);
SELECT pg_temp.try($$SELECT bsoncrypt.rewrap_many_data_key('{}', 'kmip', '5f1e-07@kmip.example:5696')$$) AS valid_version_needs_the_server;
SELECT pg_temp.try($$SELECT bsoncrypt.kmip_create_master_key(name => '')$$);
