-- The bsoncrypt.bson type: Extended JSON I/O, casts, accessors, operators,
-- and the errors for bad input.
SET search_path = bsoncrypt, public;

-- Every BSON type, canonical Extended JSON in, canonical and relaxed out.
CREATE TEMP TABLE all_types (name text, doc bson);
INSERT INTO all_types VALUES
  ('double',     '{"v": {"$numberDouble": "-1.5"}}'),
  ('double_inf', '{"v": {"$numberDouble": "Infinity"}}'),
  ('double_nan', '{"v": {"$numberDouble": "NaN"}}'),
  ('string',     '{"v": "héllo \u0000 wörld"}'),
  ('document',   '{"v": {"a": {"$numberInt": "1"}, "b": {"c": []}}}'),
  ('array',      '{"v": [{"$numberInt": "1"}, "two", [3.5]]}'),
  ('binary',     '{"v": {"$binary": {"base64": "AQIDBA==", "subType": "00"}}}'),
  ('uuid',       '{"v": {"$binary": {"base64": "c//SZESzTGmQ6OfR38A11A==", "subType": "04"}}}'),
  ('encrypted',  '{"v": {"$binary": {"base64": "AQIDBA==", "subType": "06"}}}'),
  ('undefined',  '{"v": {"$undefined": true}}'),
  ('objectId',   '{"v": {"$oid": "57e193d7a9cc81b4027498b5"}}'),
  ('bool',       '{"v": true}'),
  ('date',       '{"v": {"$date": {"$numberLong": "1557827033449"}}}'),
  ('date_old',   '{"v": {"$date": {"$numberLong": "-62135596800000"}}}'),
  ('null',       '{"v": null}'),
  ('regex',      '{"v": {"$regularExpression": {"pattern": "^a.*b$", "options": "im"}}}'),
  ('dbPointer',  '{"v": {"$dbPointer": {"$ref": "db.coll", "$id": {"$oid": "57e193d7a9cc81b4027498b5"}}}}'),
  ('code',       '{"v": {"$code": "function() { return 1; }"}}'),
  ('symbol',     '{"v": {"$symbol": "sym"}}'),
  ('codeWScope', '{"v": {"$code": "x", "$scope": {"x": {"$numberInt": "1"}}}}'),
  ('int32',      '{"v": {"$numberInt": "-2147483648"}}'),
  ('timestamp',  '{"v": {"$timestamp": {"t": 123456789, "i": 42}}}'),
  ('int64',      '{"v": {"$numberLong": "9223372036854775807"}}'),
  ('int64_small', '{"v": {"$numberLong": "5"}}'),
  ('double_int', '{"v": {"$numberDouble": "4200"}}'),
  ('double_neg0', '{"v": {"$numberDouble": "-0.0"}}'),
  ('double_frac', '{"v": [59.9, 0.1, 1e300, 5e-324]}'),
  ('date_10000', '{"v": {"$date": {"$numberLong": "253402300800000"}}}'),
  ('date_9999',  '{"v": {"$date": {"$numberLong": "253402300799999"}}}'),
  ('type_operator', '{"v": {"$type": {"$numberInt": "5"}}}'),
  ('string_ctl', '{"v": "tab\t quote\" backslash\\ nl\n bell\u0007 del\u007f"}'),
  ('decimal128', '{"v": {"$numberDecimal": "1.234E+5"}}'),
  ('minKey',     '{"v": {"$minKey": 1}}'),
  ('maxKey',     '{"v": {"$maxKey": 1}}');

SELECT name, bson_to_json(doc, true) AS canonical, doc::text AS relaxed
FROM all_types ORDER BY name;

-- canonical output parses back to the same bytes, for every type
SELECT name FROM all_types WHERE bson_to_json(doc, true)::bson <> doc;
-- relaxed output parses back to the same bytes too (pg_dump relies on it):
-- int64 keeps $numberLong, dates outside 1970-9999 keep $numberLong
SELECT name FROM all_types WHERE doc::text::bson <> doc ORDER BY name;
-- the bsoncrypt.bson_output setting switches the text output
SET bsoncrypt.bson_output = canonical;
SELECT doc FROM all_types WHERE name IN ('int64', 'date') ORDER BY name;
RESET bsoncrypt.bson_output;

-- relaxed input
SELECT '{"a": 1, "b": 2147483648, "c": 1.5, "d": {"$date": "2020-02-03T04:05:06.007Z"}}'::bson;
SELECT bson_to_json('{"a": 1, "b": 2147483648, "c": 1.0}', true);

-- MongoDB's FLE corpus (720 fields of every kind) round-trips through text
\set corpus `cat test/data/fle-corpus/corpus.json`
SELECT octet_length(:'corpus'::bson::bytea) > 50000 AS parsed,
       bson_to_json(:'corpus'::bson, true)::bson = :'corpus'::bson AS canonical_roundtrip,
       (:'corpus'::bson)::text::bson = :'corpus'::bson AS relaxed_roundtrip,
       (SELECT count(*) FROM jsonb_object_keys(:'corpus'::jsonb)) AS fields;
\set corpus_enc `cat test/data/fle-corpus/corpus-encrypted.json`
SELECT bson_to_json(:'corpus_enc'::bson, true)::bson = :'corpus_enc'::bson AS encrypted_corpus_roundtrip;

-- BSONHEX input (DocumentDB's text form) and binary casts
SELECT 'BSONHEX0c0000001061000100000000'::bson;
SELECT '{"a": 1}'::bson::bytea;
SELECT '\x0c0000001061000100000000'::bytea::bson;

-- jsonb casts
SELECT '{"a": [1, 2.5, "x", true, null, {"b": {}}], "big": 12345678901}'::jsonb::bson;
SELECT '{"i": 1, "l": {"$numberLong": "7"}, "d": 2.5, "dec": {"$numberDecimal": "1.10"}, "s": "x", "n": null, "o": {"a": [true]}}'::bson::jsonb;
SELECT '{"d": {"$date": "2020-01-01T00:00:00Z"}}'::bson::jsonb;
SELECT '{"a": {"b": [{"$oid": "57e193d7a9cc81b4027498b5"}]}}'::bson::jsonb;
SELECT '{"x": {"$numberDouble": "NaN"}}'::bson::jsonb;
SELECT '[1, 2]'::jsonb::bson;

-- Accessors: dotted paths into documents and arrays, wrapped as {"": value}
CREATE TEMP TABLE docs (id int, doc bson);
INSERT INTO docs VALUES
  (1, '{"name": "Ann", "ssn": "123-45-6789", "addr": {"city": "Oslo", "zip": 150}, "tags": ["a", {"k": "v"}]}'),
  (2, '{"name": "Bob", "ssn": "987-65-4321", "addr": {"city": "Rome"}, "tags": []}'),
  (3, '{"name": null}');
SELECT id, doc -> 'name' AS name, doc -> 'addr.city' AS city, doc -> 'addr.zip' AS zip,
       doc -> 'tags.1.k' AS tag_k, doc -> 'tags.5' AS missing
FROM docs ORDER BY id;
SELECT id, doc ->> 'name' AS name, doc ->> 'addr' AS addr, doc ->> 'addr.zip' AS zip,
       bson_get_text(doc, 'tags') AS tags
FROM docs ORDER BY id;
SELECT bson_get('{"a": 1}', 'a.b'), bson_get('{"a": 1}', ''), bson_get('{"a": 1}', 'a.'),
       bson_get('{"a.b": 1}', 'a.b');

-- Equality, ordering, hashing, expression indexes
SELECT '{"a": 1}'::bson = '{"a": 1}'::bson AS eq,
       '{"a": 1}'::bson = '{"a": {"$numberLong": "1"}}'::bson AS int_vs_long,
       '{"a": 1}'::bson < '{"a": 2}'::bson AS lt,
       '{"a": 1}'::bson <> '{"b": 1}'::bson AS ne,
       bson_cmp('{"a": 1}', '{"a": 1, "b": 1}') AS shorter_first;
SELECT DISTINCT doc -> 'addr.city' AS city FROM docs ORDER BY 1;
SELECT count(*) FROM docs a JOIN docs b ON a.doc -> 'name' = b.doc -> 'name';
CREATE TEMP TABLE people AS
  SELECT g AS id, ('{"ssn": "' || lpad(g::text, 9, '0') || '", "n": ' || g || '}')::bson AS doc
  FROM generate_series(1, 2000) g;
CREATE INDEX people_ssn ON people ((doc -> 'ssn'));
CREATE INDEX people_ssn_hash ON people USING hash ((doc -> 'n'));
ANALYZE people;
EXPLAIN (COSTS OFF) SELECT id FROM people WHERE doc -> 'ssn' = '{"": "000000042"}';
SELECT id FROM people WHERE doc -> 'ssn' = '{"": "000000042"}';
SET enable_bitmapscan = off;
SET enable_indexscan = off;
SELECT id FROM people WHERE doc -> 'n' = '{"": 1999}';
RESET enable_bitmapscan;
RESET enable_indexscan;
EXPLAIN (COSTS OFF) SELECT id FROM people WHERE doc -> 'n' = '{"": 7}';

-- Binary send/receive round-trips the raw bytes
COPY (SELECT doc FROM docs ORDER BY id) TO '/dev/null' WITH (FORMAT binary);
SELECT bson_recv_check FROM (SELECT bson_send('{"a": 1}') = '{"a": 1}'::bson::bytea AS bson_recv_check) s;

-- Bad input: each gives 22P02 (or 22023) with what and where
\set VERBOSITY default
SELECT '{"a": 1'::bson;                          -- malformed JSON
SELECT '{"a": tru}'::bson;                       -- malformed JSON
SELECT '[1, 2]'::bson;                           -- not a document
SELECT ''::bson;                                 -- empty
SELECT 'BSONHEX0c00000010610001000000'::bson;    -- truncated hex (no terminator)
SELECT 'BSONHEX0c0000001061000100000000a'::bson; -- odd hex digits
SELECT '\x0c000000106100010000'::bytea::bson;          -- truncated: prefix says 12, 10 given
SELECT '\x0c00000010610001000000000000'::bytea::bson;  -- over-long: 14 bytes, prefix says 12
SELECT '\x0d0000001061000100000000'::bytea::bson;      -- wrong length prefix
SELECT '\x0c0000001061000100000001'::bytea::bson;      -- missing terminator
SELECT '\x0400'::bytea::bson;                          -- shorter than 5 bytes
SELECT '\x0e00000002610009000000610000'::bytea::bson;      -- string length overruns the document
SELECT '\x0e00000002610002000000616200'::bytea::bson;      -- string not NUL-terminated
SELECT '\x0e00000002610002000000800000'::bytea::bson;      -- invalid UTF-8 in string
SELECT '\x0e00000002610002000000ff0000'::bytea::bson;      -- invalid UTF-8 in string
SELECT '\x0f0000000261ff0002000000610000'::bytea::bson;    -- invalid UTF-8 in field name
SELECT '\x0c0000009961000100000000'::bytea::bson;          -- unknown element type 0x99
SELECT '\x160000000361000f0000000262000200000078000000'::bytea::bson; -- nested length lies
SELECT '\x160000000461000e00000002300002000000ff000000'::bytea::bson; -- bad string in array
SELECT '\x170000000f61000f000000020000007879050000000000'::bytea::bson; -- code-with-scope string not terminated
SELECT '\x0f00000002610003000000c0800000'::bytea::bson;   -- overlong NUL (C0 80) is not UTF-8
SELECT '\x140000000461000c000000103500010000000000'::bytea::bson; -- array keys must be 0, 1, ...
SELECT '{"a": "x\u0000y"}'::bson ->> 'a';                 -- text cannot hold NUL
SELECT '{"a": "x\u0000y"}'::bson -> 'a';                  -- bson can
-- nesting: the JSON parser takes 98 levels; more is refused, never a crash
SELECT octet_length((repeat('{"a":', 98) || '1' || repeat('}', 98))::bson::bytea) AS depth_98_ok;
SELECT (repeat('{"a":', 99) || '1' || repeat('}', 99))::bson;
SELECT (repeat('[', 5000) || repeat(']', 5000))::bson;
-- deep nesting built as raw bytes (bypassing the JSON parser) is refused too
CREATE FUNCTION pg_temp.nested_bson(depth int) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
    b bytea := '\x0c0000001061000100000000';  -- {"a": 1}
    body bytea;
    n int;
BEGIN
    FOR i IN 2..depth LOOP
        body := '\x036100'::bytea || b || '\x00'::bytea;
        n := length(body) + 4;
        b := set_byte(set_byte(set_byte(set_byte('\x00000000'::bytea,
                 0, n & 255), 1, (n >> 8) & 255), 2, (n >> 16) & 255), 3, n >> 24) || body;
    END LOOP;
    RETURN b;
END $$;
SELECT octet_length(pg_temp.nested_bson(100)::bson::bytea) AS depth_100_ok;
SELECT pg_temp.nested_bson(101)::bson;
SELECT octet_length(pg_temp.nested_bson(3000)) AS deep_bytes, pg_temp.nested_bson(3000)::bson;
\set VERBOSITY terse
