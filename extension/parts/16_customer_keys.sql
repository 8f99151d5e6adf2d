-- Customer-held master keys (docs/customer-keys.md): the client supplies a
-- key for the rest of its transaction, as a bind parameter; the "customer"
-- provider wraps data keys with it.  Granted by grant_encryption,
-- grant_decryption and grant_key_admin (90_privileges.sql).

CREATE FUNCTION supply_customer_key(name text, key bytea) RETURNS void
    AS 'MODULE_PATHNAME', 'bsoncrypt_supply_customer_key' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION supply_customer_key(text, bytea) IS
    'supply a 96-byte customer master key, as a bind parameter, for the rest of the transaction; never stored or logged';

CREATE FUNCTION clear_customer_key(name text) RETURNS boolean
    AS 'MODULE_PATHNAME', 'bsoncrypt_clear_customer_key' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION clear_customer_key(text) IS
    'forget a supplied customer key (zeroed) and the data keys it unwrapped, before the transaction ends';

CREATE FUNCTION supplied_customer_keys() RETURNS SETOF text
    AS 'MODULE_PATHNAME', 'bsoncrypt_supplied_customer_keys' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION supplied_customer_keys() IS
    'names of the customer keys supplied in this transaction';
