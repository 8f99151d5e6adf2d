-- Customer-held master keys (docs/customer-keys.md): the SQL-level refusals.
-- psql cannot send bind parameters, so keys are only ever refused here;
-- t/051_customer_keys.pl supplies them through libpq.
SET search_path = bsoncrypt, public;
\set VERBOSITY default

-- a key written into the statement is refused, in or out of a transaction
SELECT supply_customer_key('alice', '\x00');
BEGIN;
SELECT supply_customer_key('alice', decode(repeat('ab', 96), 'hex'));
ROLLBACK;
SELECT supply_customer_key('alice', NULL);
-- so is any call that is not a statement of its own
PREPARE supply(bytea) AS SELECT supply_customer_key('alice', $1);
EXPLAIN SELECT supply_customer_key('alice', NULL::bytea);
CREATE FUNCTION wrap_supply(k bytea) RETURNS void LANGUAGE sql
    AS $$ SELECT bsoncrypt.supply_customer_key('alice', k) $$;
CREATE FUNCTION wrap_supply_plpgsql(k bytea) RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN PERFORM bsoncrypt.supply_customer_key('alice', k); END $$;
BEGIN;
SELECT wrap_supply_plpgsql(NULL);
ROLLBACK;
DROP FUNCTION wrap_supply_plpgsql(bytea);
-- calls are recognised by the C function, whatever the SQL name
CREATE FUNCTION public.renamed_supply(text, bytea) RETURNS void
    AS 'bsoncrypt', 'bsoncrypt_supply_customer_key' LANGUAGE C;
SELECT public.renamed_supply('alice', '\x00');
DROP FUNCTION public.renamed_supply(text, bytea);
-- nothing was supplied
SELECT count(*) FROM supplied_customer_keys();
SELECT clear_customer_key('alice');

-- the provider: always a named key, and only while it is supplied
SELECT create_data_key('customer', '{ck_regress}');
SELECT create_data_key('customer', '{ck_regress}', NULL, '{"keyName": "alice"}');
SELECT create_data_key('customer', '{ck_regress}', NULL, '{"keyName": "-bad"}');
SELECT create_data_key('customer', '{ck_regress}', NULL, '{"keyName": "alice", "keyCheck": "x"}');
SELECT create_data_key('customer', '{ck_regress}', NULL, '{"keyName": "alice", "region": "x"}');
SELECT import_key('{"_id": {"$uuid": "6f2a1c1e-0000-4000-8000-000000000001"},
    "keyMaterial": {"$binary": {"base64": "AAAA", "subType": "00"}},
    "creationDate": {"$date": 0}, "updateDate": {"$date": 0}, "status": 0,
    "masterKey": {"provider": "customer", "keyName": "alice"}}');
SELECT current_master_key_version('customer');
SELECT rewrap_many_data_key('{}', 'customer');
SELECT rewrap_many_data_key('{}', 'customer', 'alice');

-- the rotation worker and table keys never depend on customer keys
SELECT rotate_master_key('customer');
SET bsoncrypt.at_rest_key_provider = 'customer';
SHOW bsoncrypt.at_rest_key_provider;

-- privileges: granted with encryption, decryption and key administration
CREATE ROLE ck_nobody;
CREATE ROLE ck_app;
SELECT grant_encryption('ck_app');
SET ROLE ck_nobody;
SELECT bsoncrypt.supplied_customer_keys();
SET ROLE ck_app;
SELECT count(*) FROM bsoncrypt.supplied_customer_keys();
RESET ROLE;
DROP OWNED BY ck_app;
DROP ROLE ck_nobody, ck_app;
