-- bsoncrypt 0.1: the bson type, its casts, accessors and operator classes.
\echo Use "CREATE EXTENSION bsoncrypt" to load this file. \quit

-- First of all: refuse a schema bsoncrypt that existed before and that
-- another role owns, may create objects in, or that holds objects already
-- (planted functions and operators would run inside bsoncrypt's own).
CREATE FUNCTION bsoncrypt._check_install_schema() RETURNS void
    AS 'MODULE_PATHNAME', 'bsoncrypt_check_install_schema' LANGUAGE C;
SELECT bsoncrypt._check_install_schema();

-- The extension's own tables are plain heap, whatever the database's default
-- (default_table_access_method = encrypted_heap cannot apply before the
-- access method exists).
SET LOCAL default_table_access_method = heap;

CREATE TYPE bson;

CREATE FUNCTION bson_in(cstring) RETURNS bson
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bson_out(bson) RETURNS cstring
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_out' LANGUAGE C STABLE STRICT PARALLEL SAFE;  -- depends on bsoncrypt.bson_output
CREATE FUNCTION bson_recv(internal) RETURNS bson
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bson_send(bson) RETURNS bytea
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Same representation as DocumentDB's documentdb_core.bson.
CREATE TYPE bson (
    INPUT = bson_in, OUTPUT = bson_out,
    RECEIVE = bson_recv, SEND = bson_send,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended
);
COMMENT ON TYPE bson IS 'a BSON document (raw bytes); text I/O in MongoDB Extended JSON';

-- Casts
CREATE FUNCTION bson_from_bytea(bytea) RETURNS bson
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_from_bytea' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (bytea AS bson) WITH FUNCTION bson_from_bytea(bytea);
CREATE CAST (bson AS bytea) WITHOUT FUNCTION;

CREATE FUNCTION bson_from_jsonb(jsonb) RETURNS bson
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_from_jsonb' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bson_to_jsonb(bson) RETURNS jsonb
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_to_jsonb' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE CAST (jsonb AS bson) WITH FUNCTION bson_from_jsonb(jsonb);
CREATE CAST (bson AS jsonb) WITH FUNCTION bson_to_jsonb(bson);

CREATE CAST (text AS bson) WITH INOUT;
CREATE CAST (bson AS text) WITH INOUT;

CREATE FUNCTION bson_to_json(doc bson, canonical boolean DEFAULT false) RETURNS text
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_to_json_text' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Accessors
CREATE FUNCTION bson_get(doc bson, path text) RETURNS bson
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_get' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bson_get_text(doc bson, path text) RETURNS text
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_get_text' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION bson_object_keys(doc bson) RETURNS SETOF text
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_object_keys' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE OPERATOR -> (LEFTARG = bson, RIGHTARG = text, FUNCTION = bson_get);
CREATE OPERATOR ->> (LEFTARG = bson, RIGHTARG = text, FUNCTION = bson_get_text);

-- Comparison: byte order of the raw BSON (total, stable; not MongoDB's sort order)
CREATE FUNCTION bson_cmp(bson, bson) RETURNS integer
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_cmp' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bson_eq(bson, bson) RETURNS boolean
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bson_ne(bson, bson) RETURNS boolean
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bson_lt(bson, bson) RETURNS boolean
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_lt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bson_le(bson, bson) RETURNS boolean
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_le' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bson_gt(bson, bson) RETURNS boolean
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_gt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bson_ge(bson, bson) RETURNS boolean
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_ge' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bson_hash(bson) RETURNS integer
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_hash' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;
CREATE FUNCTION bson_hash_extended(bson, bigint) RETURNS bigint
    AS 'MODULE_PATHNAME', 'bsoncrypt_bson_hash_extended' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE LEAKPROOF;

CREATE OPERATOR = (LEFTARG = bson, RIGHTARG = bson, FUNCTION = bson_eq,
    COMMUTATOR = =, NEGATOR = <>, RESTRICT = eqsel, JOIN = eqjoinsel, HASHES, MERGES);
CREATE OPERATOR <> (LEFTARG = bson, RIGHTARG = bson, FUNCTION = bson_ne,
    COMMUTATOR = <>, NEGATOR = =, RESTRICT = neqsel, JOIN = neqjoinsel);
CREATE OPERATOR < (LEFTARG = bson, RIGHTARG = bson, FUNCTION = bson_lt,
    COMMUTATOR = >, NEGATOR = >=, RESTRICT = scalarltsel, JOIN = scalarltjoinsel);
CREATE OPERATOR <= (LEFTARG = bson, RIGHTARG = bson, FUNCTION = bson_le,
    COMMUTATOR = >=, NEGATOR = >, RESTRICT = scalarlesel, JOIN = scalarlejoinsel);
CREATE OPERATOR > (LEFTARG = bson, RIGHTARG = bson, FUNCTION = bson_gt,
    COMMUTATOR = <, NEGATOR = <=, RESTRICT = scalargtsel, JOIN = scalargtjoinsel);
CREATE OPERATOR >= (LEFTARG = bson, RIGHTARG = bson, FUNCTION = bson_ge,
    COMMUTATOR = <=, NEGATOR = <, RESTRICT = scalargesel, JOIN = scalargejoinsel);

CREATE OPERATOR CLASS bson_btree_ops DEFAULT FOR TYPE bson USING btree AS
    OPERATOR 1 <, OPERATOR 2 <=, OPERATOR 3 =, OPERATOR 4 >=, OPERATOR 5 >,
    FUNCTION 1 bson_cmp(bson, bson);
CREATE OPERATOR CLASS bson_hash_ops DEFAULT FOR TYPE bson USING hash AS
    OPERATOR 1 =,
    FUNCTION 1 bson_hash(bson),
    FUNCTION 2 bson_hash_extended(bson, bigint);
