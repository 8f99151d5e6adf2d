-- MongoDB's official FLE corpus (test/data/fle-corpus, from the MongoDB
-- specifications repository): the spec's local key imports with the spec's
-- master key (the test cluster's local master key), every deterministic local
-- entry encrypts to exactly the expected bytes, every random one decrypts,
-- every disallowed one is refused.
SET search_path = bsoncrypt, public;
\set corpus `cat test/data/fle-corpus/corpus.json`
\set corpus_encrypted `cat test/data/fle-corpus/corpus-encrypted.json`
\set corpus_key `cat test/data/fle-corpus/corpus-key-local.json`

SELECT import_key(:'corpus_key') AS corpus_key_id;
SELECT get_key_by_alt_name('local') = get_key(encode(decode('LOCALAAAAAAAAAAAAAAAAA==', 'base64'), 'hex')::uuid) AS same_key,
       get_key_by_alt_name('local') -> 'masterKey' AS master_key,
       get_key_by_alt_name('local') ->> 'status' AS status;

CREATE TEMP TABLE corpus AS
SELECT k AS name,
       c ->> (k || '.kms') AS kms,
       c ->> (k || '.algo') AS algo,
       c ->> (k || '.identifier') AS identifier,
       c ->> (k || '.allowed') AS allowed,
       c ->> (k || '.type') AS type,
       bson_get(c, k || '.value') AS plain,
       bson_get(e, k || '.value') AS expected
FROM (SELECT :'corpus'::bson AS c, :'corpus_encrypted'::bson AS e) docs,
     bson_object_keys(c) k
WHERE k NOT IN ('_id', 'altname_aws', 'altname_local', 'altname_azure', 'altname_gcp', 'altname_kmip');

SELECT kms, algo, allowed, count(*) FROM corpus WHERE kms = 'local' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- deterministic: byte-for-byte equal to MongoDB's ciphertexts, by alt name and by id
SELECT count(*) AS det_entries,
       count(*) FILTER (WHERE encrypt_value(plain, 'local', 'deterministic') = expected) AS det_equal_by_alt_name,
       count(*) FILTER (WHERE encrypt_value(plain, encode(decode('LOCALAAAAAAAAAAAAAAAAA==', 'base64'), 'hex')::uuid,
                                            'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic') = expected) AS det_equal_by_id,
       count(*) FILTER (WHERE decrypt_value(expected) = plain) AS det_decrypt
FROM corpus WHERE kms = 'local' AND algo = 'det' AND allowed = 'true';

-- random: MongoDB's ciphertexts decrypt; fresh ones differ and decrypt back
SELECT count(*) AS rand_entries,
       count(*) FILTER (WHERE decrypt_value(expected) = plain) AS rand_decrypt,
       count(*) FILTER (WHERE encrypt_value(plain, 'local', 'random') <> expected) AS fresh_differs,
       count(*) FILTER (WHERE decrypt_value(encrypt_value(plain, 'local', 'random')) = plain) AS fresh_roundtrip
FROM corpus WHERE kms = 'local' AND algo = 'rand' AND allowed = 'true';

-- disallowed: every one refused with an error naming the type
DO $$
DECLARE
    r record;
    refused int := 0;
    total int := 0;
    messages text[] := '{}';
BEGIN
    FOR r IN SELECT * FROM pg_temp.corpus WHERE kms = 'local' AND allowed = 'false' ORDER BY name LOOP
        total := total + 1;
        BEGIN
            PERFORM bsoncrypt.encrypt_value(r.plain, 'local',
                        CASE r.algo WHEN 'det' THEN 'deterministic' ELSE 'random' END);
            RAISE NOTICE 'not refused: %', r.name;
        EXCEPTION WHEN invalid_parameter_value THEN
            refused := refused + 1;
            messages := messages || regexp_replace(SQLERRM, 'field "[^"]*"', 'field ""');
        END;
    END LOOP;
    RAISE NOTICE 'disallowed entries: %, refused: %', total, refused;
    RAISE NOTICE 'messages: %', (SELECT string_agg(DISTINCT m, E'\n') FROM unnest(messages) m);
END $$;

-- the whole encrypted corpus, local entries only, decrypts to the plain corpus (automatic decryption)
SELECT count(*) AS local_entries,
       count(*) FILTER (WHERE decrypt(expected) = plain) AS decrypt_all_equal
FROM corpus WHERE kms = 'local' AND allowed = 'true';
