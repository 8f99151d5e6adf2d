-- Casts with DocumentDB's documentdb_core.bson. DocumentDB itself is not
-- installable here, so a stand-in type with the same representation (a
-- varlena of raw BSON, its I/O borrowed from bsoncrypt) plays its part.
-- Runs last: it re-creates the extension.
SET client_min_messages = warning;   -- whatever earlier tests left goes quietly
DROP EXTENSION bsoncrypt CASCADE;
RESET client_min_messages;
CREATE SCHEMA documentdb_core;
CREATE TYPE documentdb_core.bson;
CREATE FUNCTION documentdb_core.bson_in(cstring) RETURNS documentdb_core.bson
    AS '$libdir/bsoncrypt', 'bsoncrypt_bson_in' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION documentdb_core.bson_out(documentdb_core.bson) RETURNS cstring
    AS '$libdir/bsoncrypt', 'bsoncrypt_bson_out' LANGUAGE C IMMUTABLE STRICT;
CREATE TYPE documentdb_core.bson (INPUT = documentdb_core.bson_in, OUTPUT = documentdb_core.bson_out,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended);
CREATE TABLE documents (id int, document documentdb_core.bson);
INSERT INTO documents VALUES (1, '{"name": "Ann", "ssn": "123-45-6789"}');

-- DocumentDB present at CREATE EXTENSION: the casts come with the extension
CREATE EXTENSION bsoncrypt;
SELECT castsource::regtype, casttarget::regtype, castcontext, castmethod
FROM pg_cast WHERE castsource = 'documentdb_core.bson'::regtype OR casttarget = 'documentdb_core.bson'::regtype
ORDER BY 1::text;
SELECT bsoncrypt.create_documentdb_casts() AS already_there;
-- a DocumentDB document goes straight into bsoncrypt functions, the result back into the column
SELECT bsoncrypt.bson_get_text(document, 'name') FROM documents;
SELECT bsoncrypt.create_data_key('local', '{ddb}') IS NOT NULL AS key;
UPDATE documents SET document = bsoncrypt.encrypt_field(document, 'ssn', 'ddb', 'deterministic');
SELECT document::text LIKE '%"subType" : "06"%' AS stored_encrypted FROM documents;
SELECT bsoncrypt.decrypt(document) FROM documents;
SELECT bsoncrypt.delete_key(_id) FROM bsoncrypt.key_vault WHERE 'ddb' = ANY (key_alt_names);

-- DocumentDB installed after bsoncrypt: create_documentdb_casts() adds them
DROP EXTENSION bsoncrypt;
SELECT count(*) AS casts_dropped_with_extension FROM pg_cast WHERE castsource = 'documentdb_core.bson'::regtype;
DROP TABLE documents;
DROP TYPE documentdb_core.bson CASCADE;
DROP SCHEMA documentdb_core;
CREATE EXTENSION bsoncrypt;
SELECT bsoncrypt.create_documentdb_casts() AS without_documentdb;
CREATE SCHEMA documentdb_core;
CREATE TYPE documentdb_core.bson;
CREATE FUNCTION documentdb_core.bson_in(cstring) RETURNS documentdb_core.bson
    AS '$libdir/bsoncrypt', 'bsoncrypt_bson_in' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION documentdb_core.bson_out(documentdb_core.bson) RETURNS cstring
    AS '$libdir/bsoncrypt', 'bsoncrypt_bson_out' LANGUAGE C IMMUTABLE STRICT;
CREATE TYPE documentdb_core.bson (INPUT = documentdb_core.bson_in, OUTPUT = documentdb_core.bson_out,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended);
SELECT bsoncrypt.create_documentdb_casts() AS created_later;
SELECT count(*) AS member_casts FROM pg_depend d JOIN pg_cast c ON d.classid = 'pg_cast'::regclass AND d.objid = c.oid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND (c.castsource = 'documentdb_core.bson'::regtype OR c.casttarget = 'documentdb_core.bson'::regtype);
SELECT bsoncrypt.bson_get_text('{"a": "b"}'::documentdb_core.bson, 'a');
DROP EXTENSION bsoncrypt;
DROP TYPE documentdb_core.bson CASCADE;
DROP SCHEMA documentdb_core;
CREATE EXTENSION bsoncrypt;
