-- Field-level encryption in MongoDB's FLE1 format.
-- algorithm: 'random' | 'deterministic' | MongoDB's
--   'AEAD_AES_256_CBC_HMAC_SHA_512-Random' | '...-Deterministic'.
--
-- Volatility (docs/field-encryption.md#volatility): every function here is
-- STABLE.  None writes the database; their results depend on the key vault,
-- which may change between statements (never IMMUTABLE: no index or
-- generated column may store their results, no plan may keep them).
-- Deterministic encryption and decryption give equal results for equal
-- arguments within a statement.  Random encryption gives a different
-- ciphertext per call, each a valid encryption of the same value: a STABLE
-- call may be evaluated once for arguments that do not change within the
-- statement (an index-scan constant, a constant that Citus computes on the
-- coordinator), which then gives equal plaintexts equal ciphertexts, what
-- deterministic encryption shows anyway; a call on column values is
-- evaluated per row.  STABLE lets a deterministic constant drive an index
-- scan and Citus route a query by it, and lets Citus push encryption down
-- to the workers in INSERT ... SELECT and UPDATE ... FROM (VOLATILE
-- functions are refused there).

CREATE FUNCTION encrypt_field(doc bson, path text, key text, algorithm text DEFAULT 'random')
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_encrypt_field' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION encrypt_field(doc bson, path text, key uuid, algorithm text DEFAULT 'random')
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_encrypt_field_by_id' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION encrypt_fields(doc bson, paths text[], key text, algorithm text DEFAULT 'random')
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_encrypt_fields' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION encrypt_fields(doc bson, paths text[], key uuid, algorithm text DEFAULT 'random')
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_encrypt_fields_by_id' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION encrypt_value(value bson, key text, algorithm text DEFAULT 'random')
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_encrypt_value' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION encrypt_value(value bson, key uuid, algorithm text DEFAULT 'random')
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_encrypt_value_by_id' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION encrypt_deterministic(value bson, key text)
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_encrypt_deterministic' LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE FUNCTION decrypt_field(doc bson, path text)
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_decrypt_field' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION decrypt(doc bson)
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_decrypt' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION decrypt_value(value bson)
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_decrypt_value' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION decrypt_get(doc bson, path text)
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_decrypt_get' LANGUAGE C STABLE STRICT PARALLEL SAFE;
CREATE FUNCTION decrypt_get_text(doc bson, path text)
RETURNS text AS 'MODULE_PATHNAME', 'bsoncrypt_decrypt_get_text' LANGUAGE C STABLE STRICT PARALLEL SAFE;

-- doc ~> 'path'   the value at path, decrypted, as {"": value}
-- doc ~>> 'path'  the same as text
-- value ## 'key'  deterministic encryption of {"": value} with a keyAltName:
--                 WHERE doc -> 'ssn' = '{"": "123-45-6789"}'::bson ## 'hr'
CREATE OPERATOR ~> (LEFTARG = bson, RIGHTARG = text, FUNCTION = decrypt_get);
CREATE OPERATOR ~>> (LEFTARG = bson, RIGHTARG = text, FUNCTION = decrypt_get_text);
CREATE OPERATOR ## (LEFTARG = bson, RIGHTARG = text, FUNCTION = encrypt_deterministic);
