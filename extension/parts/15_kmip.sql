-- The kmip master-key provider (docs/kmip.md): making master keys on the
-- KMIP server.  Superusers only (90_privileges.sql revokes from PUBLIC).

CREATE FUNCTION kmip_create_master_key(delegated boolean DEFAULT false, name text DEFAULT NULL)
RETURNS text
    AS 'MODULE_PATHNAME', 'bsoncrypt_kmip_create_master_key' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION kmip_create_master_key(boolean, text) IS
    'make a master key on the KMIP server (96-byte SecretData, or with delegated an AES-256 key used by KMIP Encrypt/Decrypt), activate it, and return its unique identifier for bsoncrypt.kmip_key_id';
