-- Field-level encryption in MongoDB's FLE1 format.
-- algorithm: 'random' | 'deterministic' | MongoDB's
--   'AEAD_AES_256_CBC_HMAC_SHA_512-Random' | '...-Deterministic'.
-- Encrypting functions are VOLATILE (random IVs) except encrypt_value, which is
-- STABLE so that a deterministic encrypt_value(...) in WHERE can drive an index scan.

CREATE FUNCTION encrypt_field(doc bson, path text, key text, algorithm text DEFAULT 'random')
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_encrypt_field' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE FUNCTION encrypt_field(doc bson, path text, key uuid, algorithm text DEFAULT 'random')
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_encrypt_field_by_id' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE FUNCTION encrypt_fields(doc bson, paths text[], key text, algorithm text DEFAULT 'random')
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_encrypt_fields' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
CREATE FUNCTION encrypt_fields(doc bson, paths text[], key uuid, algorithm text DEFAULT 'random')
RETURNS bson AS 'MODULE_PATHNAME', 'bsoncrypt_encrypt_fields_by_id' LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
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
