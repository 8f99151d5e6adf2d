-- The encrypted_btree index access method: the same queries on an
-- encrypted_heap table with encrypted indexes (e) and on its heap + btree
-- twin (p) give the same rows in the same order; unique violations, ON
-- CONFLICT and foreign-key cascades behave alike; the encrypted indexes
-- check out in order.
SET search_path = bsoncrypt, public;
SET client_min_messages = warning;
SET bsoncrypt.encrypt_indexes = on;

CREATE TABLE e (id int PRIMARY KEY, name text UNIQUE, grp int2, big int8, u uuid,
                amount numeric, at timestamptz, raw bytea, doc bson) USING encrypted_heap;
CREATE TABLE p (id int PRIMARY KEY, name text UNIQUE, grp int2, big int8, u uuid,
                amount numeric, at timestamptz, raw bytea, doc bson) USING heap;
CREATE INDEX e_grp_id ON e (grp, id DESC);
CREATE INDEX p_grp_id ON p (grp, id DESC);
CREATE INDEX e_lower ON e (lower(name));
CREATE INDEX p_lower ON p (lower(name));

-- what each got: encrypted_btree on the encrypted table only
SELECT c.relname, a.amname, c.reloptions
  FROM pg_class c JOIN pg_am a ON a.oid = c.relam JOIN pg_index i ON i.indexrelid = c.oid
 WHERE i.indrelid IN ('e'::regclass, 'p'::regclass) ORDER BY 1;
SELECT is_encrypted('e_pkey') AS e_pkey, is_encrypted('p_pkey') AS p_pkey,
       (SELECT count(*) FROM encrypted_relations WHERE relation::text LIKE 'e\_%' AND keys = 1) AS e_index_files;

INSERT INTO e
SELECT g, 'n' || g, (g % 7)::int2, g::int8 * 1000003, md5(g::text)::uuid, g / 3.0,
       '2024-01-01 00:00+00'::timestamptz + g * interval '1 hour',
       decode(md5(g::text), 'hex'), bson_from_jsonb(jsonb_build_object('_id', g % 500, 'k', g))
  FROM generate_series(1, 3000) g;
INSERT INTO e VALUES (3001, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO p SELECT * FROM e;
CREATE INDEX e_big ON e (big);
CREATE INDEX p_big ON p (big);
CREATE INDEX e_u ON e (u);
CREATE INDEX p_u ON p (u);
CREATE INDEX e_amount ON e (amount NULLS FIRST);
CREATE INDEX p_amount ON p (amount NULLS FIRST);
CREATE INDEX e_at ON e (at);
CREATE INDEX p_at ON p (at);
CREATE INDEX e_raw ON e (raw);
CREATE INDEX p_raw ON p (raw);
CREATE INDEX e_doc ON e (doc);
CREATE INDEX p_doc ON p (doc);
ANALYZE e;
ANALYZE p;

-- same(query with %I for the table): runs it on e and on p; their rows, in
-- order, must be equal
CREATE FUNCTION pg_temp.same(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    re text[];
    rp text[];
BEGIN
    EXECUTE format('SELECT array_agg(x::text) FROM (%s) x', format(q, 'e')) INTO re;
    EXECUTE format('SELECT array_agg(x::text) FROM (%s) x', format(q, 'p')) INTO rp;
    IF re IS NOT DISTINCT FROM rp THEN
        RETURN format('same, %s rows', coalesce(array_length(re, 1), 0));
    END IF;
    RETURN format('DIFFERENT: e %s, p %s', re, rp);
END $$;

-- index scans only (then bitmap scans), so that each query reads the index
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET enable_sort = off;

EXPLAIN (COSTS OFF) SELECT * FROM e WHERE id = 42;
EXPLAIN (COSTS OFF) SELECT id FROM e WHERE id BETWEEN 10 AND 20 ORDER BY id DESC;
EXPLAIN (COSTS OFF) SELECT * FROM e ORDER BY name LIMIT 3;

CREATE TEMP TABLE index_queries AS SELECT q FROM unnest(ARRAY[
  -- equality, each type
  'SELECT * FROM %I WHERE id = 42',
  'SELECT * FROM %I WHERE name = ''n77''',
  'SELECT id FROM %I WHERE big = 5000015',
  'SELECT id FROM %I WHERE u = md5(''99'')::uuid',
  'SELECT id FROM %I WHERE amount = 33',
  'SELECT id FROM %I WHERE at = ''2024-01-02 00:00+00''',
  'SELECT id FROM %I WHERE raw = decode(md5(''123''), ''hex'')',
  'SELECT id FROM %I WHERE doc OPERATOR(bsoncrypt.=) bson_from_jsonb(''{"_id": 7, "k": 507}'') ORDER BY id',
  'SELECT id FROM %I WHERE lower(name) = ''n2999''',
  'SELECT id FROM %I WHERE id = 0',
  -- ranges, cross-type arguments, IN lists, NULLs
  'SELECT id FROM %I WHERE id BETWEEN 100 AND 120 ORDER BY id',
  'SELECT id FROM %I WHERE id > 2990 AND id <= 3000 AND id <> 2995 ORDER BY id DESC',
  'SELECT id FROM %I WHERE id < 10::int8 ORDER BY id',
  'SELECT id FROM %I WHERE big >= 2999000000::numeric::int8 ORDER BY big',
  'SELECT id FROM %I WHERE grp = 3::int4 AND id < 100 ORDER BY grp, id DESC',
  'SELECT id FROM %I WHERE name >= ''n29'' AND name < ''n3'' ORDER BY name',
  'SELECT id FROM %I WHERE name LIKE ''n299%%'' ORDER BY name',
  'SELECT id FROM %I WHERE id = ANY (ARRAY[5, 3, 99999, 7, NULL, 3]) ORDER BY id',
  'SELECT id FROM %I WHERE name IN (''n1'', ''n10'', ''nope'') ORDER BY name',
  'SELECT id FROM %I WHERE amount IS NULL',
  'SELECT count(*) FROM %I WHERE amount IS NOT NULL',
  'SELECT id FROM %I WHERE at > ''2024-04-01''::date ORDER BY at LIMIT 4',
  'SELECT id FROM %I WHERE u < ''10000000-0000-0000-0000-000000000000'' ORDER BY u',
  'SELECT id FROM %I WHERE raw < ''\x02''::bytea ORDER BY raw',
  'SELECT id FROM %I WHERE doc OPERATOR(bsoncrypt.<) bson_from_jsonb(''{"_id": 2}'') ORDER BY doc, id',
  -- row comparisons over a multi-column index
  'SELECT grp, id FROM %I WHERE (grp, id) > (int2 ''5'', 2990) ORDER BY grp, id DESC LIMIT 5',
  -- several keys on one column, of its type and of others: btree compares
  -- them with one another to keep the tightest
  'SELECT id FROM %I WHERE id > 10::int8 AND id < 20 ORDER BY id',
  'SELECT id FROM %I WHERE id >= 5 AND id > 7::int2 AND id < 12::int8 AND id <= 15 ORDER BY id DESC',
  'SELECT id FROM %I WHERE id > 2 AND id > 5 AND id < 9 AND id < 20 ORDER BY id',
  'SELECT id FROM %I WHERE id > 9 AND id >= 9 AND id < 11 AND id <= 10 ORDER BY id',
  'SELECT id FROM %I WHERE id = ANY (ARRAY[5, 3, 11]) AND id > 4::int8 ORDER BY id',
  'SELECT id FROM %I WHERE id = ANY (ARRAY[5, 3, 11]) AND id > 4 AND id < 11 ORDER BY id',
  'SELECT id FROM %I WHERE id < ANY (ARRAY[10, 20]) AND id > 15 ORDER BY id',
  'SELECT id FROM %I WHERE id > ALL (ARRAY[2990::int8, 2995]) AND id < 2999 ORDER BY id',
  'SELECT big FROM %I WHERE big > 5 AND big < 9000000000 AND big <= 5000015::int8 ORDER BY big',
  'SELECT grp, id FROM %I WHERE grp = 3 AND grp >= 3::int8 AND id > 2980 AND id > 2900::int8 ORDER BY grp, id DESC',
  -- ORDER BY, LIMIT, OFFSET, backwards
  'SELECT id, name FROM %I ORDER BY name LIMIT 5',
  'SELECT id, name FROM %I ORDER BY name DESC LIMIT 5 OFFSET 10',
  'SELECT id FROM %I ORDER BY amount NULLS FIRST LIMIT 3',
  'SELECT id FROM %I ORDER BY id DESC LIMIT 3',
  'SELECT min(id), max(id), min(name), max(name), max(u::text) FROM %I',
  'SELECT grp, id FROM %I ORDER BY grp, id DESC LIMIT 4',
  -- index-only scans get the keys opened
  'SELECT id FROM %I WHERE id < 30 ORDER BY id',
  'SELECT big FROM %I WHERE big BETWEEN 1000003 AND 5000015 ORDER BY big'
]) q;
SELECT q, pg_temp.same(q) FROM index_queries;

-- the same queries with the per-backend cache of opened keys off (on by
-- default), three times over
SET bsoncrypt.index_key_cache = 0;
SELECT count(*) AS runs, count(*) FILTER (WHERE pg_temp.same(q) LIKE 'same,%') AS same
  FROM index_queries, generate_series(1, 3);
RESET bsoncrypt.index_key_cache;

-- the same through bitmap scans
SET enable_indexscan = off;
SET enable_indexonlyscan = off;
SET enable_bitmapscan = on;
EXPLAIN (COSTS OFF) SELECT * FROM e WHERE name = 'n77' OR id < 5;
SELECT q, pg_temp.same(q) FROM unnest(ARRAY[
  'SELECT id FROM %I WHERE name = ''n77'' OR id < 5 ORDER BY id',
  'SELECT id FROM %I WHERE big > 2990000000 AND grp = 1 ORDER BY id',
  'SELECT count(*) FROM %I WHERE u > md5(''5'')::uuid'
]) q;
RESET enable_indexscan;
RESET enable_indexonlyscan;

-- merge joins over the encrypted indexes' order
SET enable_hashjoin = off;
SET enable_nestloop = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT a.id FROM e a JOIN e b ON a.id = b.id WHERE a.id < 50;
SELECT q, pg_temp.same(q) FROM unnest(ARRAY[
  'SELECT a.id, b.name FROM %1$I a JOIN %1$I b ON a.id = b.id WHERE a.id < 50 ORDER BY a.id',
  'SELECT a.name, b.id FROM %1$I a JOIN %1$I b ON a.name = b.name WHERE b.id BETWEEN 200 AND 230',
  'SELECT count(*) FROM %1$I a FULL JOIN %1$I b ON a.big = b.big + 1000003'
]) q;
RESET enable_hashjoin;
RESET enable_nestloop;
RESET enable_sort;

-- scans leave their state to the next ones: six scans open at once
-- (nested loops), each rescanned a hundred times, twice over; scans of
-- cursors open across other statements; a scan ended by an error
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SET enable_material = off;
EXPLAIN (COSTS OFF) SELECT a.id FROM e a JOIN e b ON b.id = a.id + 1 JOIN e c ON c.id = b.id + 1
  JOIN e d ON d.id = c.id + 1 JOIN e f ON f.id = d.id + 1 JOIN e g ON g.id = f.id + 1 WHERE a.id < 100;
SELECT pg_temp.same('SELECT a.id, g.name FROM %1$I a JOIN %1$I b ON b.id = a.id + 1
    JOIN %1$I c ON c.id = b.id + 1 JOIN %1$I d ON d.id = c.id + 1 JOIN %1$I f ON f.id = d.id + 1
    JOIN %1$I g ON g.id = f.id + 1 WHERE a.id < 100 ORDER BY a.id')
  FROM generate_series(1, 2);
RESET enable_hashjoin;
RESET enable_mergejoin;
RESET enable_material;
BEGIN;
DECLARE c1 CURSOR FOR SELECT id, name FROM e WHERE id > 100 ORDER BY id;
DECLARE c2 CURSOR FOR SELECT id FROM e WHERE id < 50 ORDER BY id DESC;
FETCH 2 FROM c1;
SELECT id, name FROM e WHERE id = 7;
FETCH 1 FROM c2;
FETCH 2 FROM c1;
SELECT id FROM e WHERE id BETWEEN 300 AND 302 ORDER BY id;
FETCH 2 FROM c2;
CLOSE c1;
FETCH 1 FROM c2;
COMMIT;
SELECT id, 1 / (id - 103) FROM e WHERE id > 100 ORDER BY id;
SELECT pg_temp.same('SELECT id, name FROM %I WHERE id > 100 AND id < 106 ORDER BY id');

-- unique violations: the same errors (the detail shows the plaintext key)
INSERT INTO e (id, name) VALUES (42, 'new');
INSERT INTO p (id, name) VALUES (42, 'new');
INSERT INTO e (id, name) VALUES (5000, 'n17');
INSERT INTO p (id, name) VALUES (5000, 'n17');
UPDATE e SET name = 'n18' WHERE id = 19;
UPDATE p SET name = 'n18' WHERE id = 19;
CREATE UNIQUE INDEX e_mod_unique ON e ((id % 3000));
CREATE UNIQUE INDEX p_mod_unique ON p ((id % 3000));
-- a key freed in the same transaction can be taken again
BEGIN;
DELETE FROM e WHERE id = 100;
INSERT INTO e (id, name) VALUES (100, 'n100');
ROLLBACK;
-- deferred unique constraints: btree checks the entries again at commit
-- (with probes of their values)
CREATE TABLE e_def (id int UNIQUE DEFERRABLE INITIALLY DEFERRED,
                    t text UNIQUE DEFERRABLE INITIALLY DEFERRED) USING encrypted_heap;
CREATE TABLE p_def (id int UNIQUE DEFERRABLE INITIALLY DEFERRED,
                    t text UNIQUE DEFERRABLE INITIALLY DEFERRED) USING heap;
INSERT INTO e_def SELECT g, 't' || g FROM generate_series(1, 50) g;
INSERT INTO p_def SELECT g, 't' || g FROM generate_series(1, 50) g;
UPDATE e_def SET id = id + 1, t = 't' || (id + 1);
UPDATE p_def SET id = id + 1, t = 't' || (id + 1);
BEGIN;
INSERT INTO e_def VALUES (7, 'x');
UPDATE e_def SET id = 700 WHERE id = 7 AND t = 't7';
COMMIT;
BEGIN;
INSERT INTO p_def VALUES (7, 'x');
UPDATE p_def SET id = 700 WHERE id = 7 AND t = 't7';
COMMIT;
BEGIN;
INSERT INTO e_def VALUES (8, 'y');
COMMIT;
BEGIN;
INSERT INTO p_def VALUES (8, 'y');
COMMIT;
BEGIN;
INSERT INTO e_def VALUES (9000, 't9');
COMMIT;
SELECT pg_temp.same('SELECT id, t FROM %I_def ORDER BY id');
DROP TABLE e_def, p_def;

-- ON CONFLICT
INSERT INTO e (id, name) VALUES (1, 'x1'), (4000, 'n4000') ON CONFLICT DO NOTHING RETURNING id;
INSERT INTO p (id, name) VALUES (1, 'x1'), (4000, 'n4000') ON CONFLICT DO NOTHING RETURNING id;
INSERT INTO e (id, name) VALUES (2, 'x2'), (4001, 'n2') ON CONFLICT DO NOTHING RETURNING id;
INSERT INTO p (id, name) VALUES (2, 'x2'), (4001, 'n2') ON CONFLICT DO NOTHING RETURNING id;
INSERT INTO e (id, name, amount) VALUES (3, 'n3', 99), (4002, 'n4002', 98)
    ON CONFLICT (id) DO UPDATE SET amount = excluded.amount + 1 RETURNING id, name, amount;
INSERT INTO p (id, name, amount) VALUES (3, 'n3', 99), (4002, 'n4002', 98)
    ON CONFLICT (id) DO UPDATE SET amount = excluded.amount + 1 RETURNING id, name, amount;
INSERT INTO e (id, name) VALUES (4003, 'n4') ON CONFLICT (name) DO UPDATE SET grp = 99 RETURNING id, grp;
INSERT INTO p (id, name) VALUES (4003, 'n4') ON CONFLICT (name) DO UPDATE SET grp = 99 RETURNING id, grp;
INSERT INTO e (id, name) VALUES (5, 'n6') ON CONFLICT (id) DO UPDATE SET name = 'n7';
INSERT INTO p (id, name) VALUES (5, 'n6') ON CONFLICT (id) DO UPDATE SET name = 'n7';
SELECT pg_temp.same('SELECT id, name, grp, amount FROM %I WHERE id IN (1, 2, 3, 4, 5, 4000, 4001, 4002, 4003) ORDER BY id');

-- foreign keys referencing the encrypted primary key, with cascades
CREATE TABLE e_child (id int PRIMARY KEY, parent int REFERENCES e (id) ON DELETE CASCADE ON UPDATE CASCADE,
                      pname text REFERENCES e (name) ON DELETE SET NULL) USING encrypted_heap;
CREATE TABLE p_child (id int PRIMARY KEY, parent int REFERENCES p (id) ON DELETE CASCADE ON UPDATE CASCADE,
                      pname text REFERENCES p (name) ON DELETE SET NULL) USING heap;
CREATE INDEX ON e_child (parent);
CREATE INDEX ON p_child (parent);
SELECT conrelid::regclass, conname, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid IN ('e_child'::regclass, 'p_child'::regclass) AND contype = 'f' ORDER BY 1, 2;
INSERT INTO e_child SELECT g, g % 50 + 1, 'n' || (g % 40 + 1) FROM generate_series(1, 400) g;
INSERT INTO p_child SELECT g, g % 50 + 1, 'n' || (g % 40 + 1) FROM generate_series(1, 400) g;
INSERT INTO e_child VALUES (1000, 999999, NULL);
INSERT INTO p_child VALUES (1000, 999999, NULL);
DELETE FROM e WHERE id IN (7, 8);
DELETE FROM p WHERE id IN (7, 8);
UPDATE e SET id = id + 100000 WHERE id BETWEEN 10 AND 12;
UPDATE p SET id = id + 100000 WHERE id BETWEEN 10 AND 12;
DELETE FROM e WHERE name = 'n20';
DELETE FROM p WHERE name = 'n20';
SELECT q, pg_temp.same(q) FROM unnest(ARRAY[
  'SELECT count(*), count(pname), sum(parent) FROM %I_child',
  'SELECT id, parent, pname FROM %I_child WHERE parent > 100000 ORDER BY id',
  'SELECT id FROM %I_child WHERE parent IN (7, 8)'
]) q;
DELETE FROM e WHERE id = 1;
DELETE FROM p WHERE id = 1;

-- the encrypted indexes, after all this, in order with every key opening
SELECT c.relname, encrypted_index_check(c.oid) > 0 AS checked
  FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
 WHERE i.indrelid IN ('e'::regclass, 'e_child'::regclass) ORDER BY 1;
VACUUM e;
REINDEX TABLE e;
REINDEX TABLE CONCURRENTLY e;
CLUSTER e USING e_grp_id;
VACUUM FULL e;
SELECT pg_temp.same('SELECT id, name FROM %I WHERE id < 40 ORDER BY id');
SELECT pg_temp.same('SELECT grp, id FROM %I WHERE grp = 2 ORDER BY grp, id DESC LIMIT 5');
SELECT count(*) AS keys_of_dropped_files FROM relation_keys k
 WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.relfilenode = k.relfilenode);
SELECT encrypted_index_check('p_pkey');

-- the setting and its limits
SET bsoncrypt.encrypt_indexes = off;
CREATE INDEX e_off ON e (at);
SET bsoncrypt.encrypt_indexes = on;
CREATE INDEX p_on ON p (at);
CREATE INDEX e_include ON e (id) INCLUDE (name);
CREATE INDEX e_opclass ON e (name text_pattern_ops);
CREATE INDEX e_asked ON e (at) WITH (encrypted = true);
CREATE INDEX p_explicit ON p USING encrypted_btree (at);
SELECT c.relname, a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam
 WHERE c.relname IN ('e_off', 'p_on', 'e_include', 'e_opclass', 'e_asked', 'p_explicit') ORDER BY 1;
SELECT 'x'::sealed_key;

-- a parallel VACUUM whose workers delete emptied pages (a page deletion
-- searches the tree, opening keys inside btree's bulk delete)
DELETE FROM e WHERE id BETWEEN 1000 AND 2500;   -- empties leaf pages: page deletion searches the tree
SET min_parallel_index_scan_size = 0;
SET max_parallel_maintenance_workers = 2;
VACUUM (PARALLEL 2) e;
RESET min_parallel_index_scan_size;
RESET max_parallel_maintenance_workers;
SELECT encrypted_index_check('e_pkey'), encrypted_index_check('e_name_key');

DROP TABLE e_child, p_child, e, p;

-- the integer-like types sealed keys compare without a function call
-- (int2, int4, int8, date, timestamp, timestamptz, time, oid): signs,
-- infinities, oids past 2^31, each index in order and alike
CREATE TABLE ei (i2 int2, i4 int4, i8 int8, d date, ts timestamp, tz timestamptz,
                 t time, o oid) USING encrypted_heap;
CREATE TABLE pi (i2 int2, i4 int4, i8 int8, d date, ts timestamp, tz timestamptz,
                 t time, o oid) USING heap;
INSERT INTO ei
SELECT (g * 37 % 65536 - 32768)::int2, (g::int8 * 2654435 % 4294967296 - 2147483648)::int4, (g - 1000)::int8 * 9007199254740,
       CASE g WHEN 1 THEN '-infinity'::date WHEN 2 THEN 'infinity' ELSE '2000-01-01'::date + (g * 97 % 4001 - 2000) END,
       CASE g WHEN 3 THEN '-infinity'::timestamp WHEN 4 THEN 'infinity' ELSE '1990-06-01'::timestamp + (g * 7919 % 2001 - 1000) * interval '17 hours' END,
       CASE g WHEN 5 THEN '-infinity'::timestamptz ELSE '1970-01-01 00:00+00'::timestamptz + (g * 104729 % 2001 - 1000) * interval '1 day 3 min' END,
       '00:00'::time + (g * 613 % 1440) * interval '1 minute',
       (g::int8 * 2147483 % 4294967296)::oid
  FROM generate_series(1, 1600) g;
INSERT INTO pi SELECT * FROM ei;
DO $$
DECLARE
    c text;
BEGIN
    FOREACH c IN ARRAY ARRAY['i2', 'i4', 'i8', 'd', 'ts', 'tz', 't', 'o'] LOOP
        EXECUTE format('CREATE INDEX ON ei (%I)', c);
        EXECUTE format('CREATE INDEX ON pi (%I)', c);
    END LOOP;
END $$;
SELECT count(*) AS encrypted_indexes FROM pg_class c JOIN pg_am a ON a.oid = c.relam
  JOIN pg_index i ON i.indexrelid = c.oid
 WHERE i.indrelid = 'ei'::regclass AND a.amname = 'encrypted_btree';
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT q, pg_temp.same(replace(q, '%I', '%Ii')) FROM unnest(ARRAY[
  'SELECT i2 FROM %I ORDER BY i2',
  'SELECT i4 FROM %I WHERE i4 < 0 ORDER BY i4 DESC',
  'SELECT i8 FROM %I WHERE i8 BETWEEN -900719925474000 AND 900719925474000 ORDER BY i8',
  'SELECT d FROM %I WHERE d < ''2000-01-01'' ORDER BY d',
  'SELECT d FROM %I ORDER BY d DESC LIMIT 5',
  'SELECT ts FROM %I WHERE ts >= ''1990-06-01'' ORDER BY ts',
  'SELECT ts FROM %I ORDER BY ts LIMIT 5',
  'SELECT tz FROM %I WHERE tz < ''1970-01-01 00:00+00'' ORDER BY tz',
  'SELECT t FROM %I WHERE t > ''12:00'' ORDER BY t',
  'SELECT o FROM %I WHERE o > 2147483648 ORDER BY o',
  'SELECT o FROM %I ORDER BY o LIMIT 10'
]) q;
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT c.relname, encrypted_index_check(c.oid) > 0 AS checked
  FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
 WHERE i.indrelid = 'ei'::regclass ORDER BY 1;
DROP TABLE ei, pi;

-- short keys as single AES-256 blocks (bsoncrypt.index_keys_as_blocks, on by
-- default) or as AES-256-GCM (off): entries of both formats in one index
-- give the same rows as btree; floats (NaN, -0, infinities) and booleans
-- too; an index of blocks is the smaller
SHOW bsoncrypt.index_keys_as_blocks;
CREATE TABLE ek (id int8, f4 float4, f8 float8, b bool) USING encrypted_heap;
CREATE TABLE pk (id int8, f4 float4, f8 float8, b bool) USING heap;
DO $$
DECLARE
    c text;
BEGIN
    FOREACH c IN ARRAY ARRAY['id', 'f4', 'f8', 'b', 'b, f8 DESC'] LOOP
        EXECUTE format('CREATE INDEX ON ek (%s)', c);
        EXECUTE format('CREATE INDEX ON pk (%s)', c);
    END LOOP;
END $$;
CREATE FUNCTION pg_temp.add_rows(lo int, hi int) RETURNS void LANGUAGE sql AS $$
INSERT INTO ek
SELECT (g - 800)::int8 * 11529215046068469, ((g * 7919 % 1601) - 800) / 7.0,
       CASE g % 400 WHEN 1 THEN 'NaN'::float8 WHEN 2 THEN 'Infinity' WHEN 3 THEN '-Infinity'
                    WHEN 4 THEN '-0' ELSE ((g * 104729 % 1601) - 800) * 1e300 / 3 END,
       g % 3 = 0
  FROM generate_series(lo, hi) g
$$;
SET bsoncrypt.index_keys_as_blocks = off;
SELECT pg_temp.add_rows(1, 800);
RESET bsoncrypt.index_keys_as_blocks;
SELECT pg_temp.add_rows(801, 1600);
INSERT INTO pk SELECT * FROM ek;
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT q, pg_temp.same(replace(q, '%I', '%Ik')) FROM unnest(ARRAY[
  'SELECT id FROM %I ORDER BY id',
  'SELECT id FROM %I WHERE id BETWEEN -1000000000000000000 AND 1000000000000000000 ORDER BY id DESC',
  'SELECT id, f4 FROM %I WHERE id = 11529215046068469 * 5',
  'SELECT f4 FROM %I WHERE f4 < 0 ORDER BY f4',
  'SELECT f8 FROM %I ORDER BY f8',
  'SELECT f8 FROM %I WHERE f8 = ''NaN'' OR f8 = 0',
  'SELECT f8 FROM %I ORDER BY f8 DESC LIMIT 5',
  'SELECT b, count(*) FROM %I GROUP BY b ORDER BY b',
  'SELECT b, f8 FROM %I WHERE b ORDER BY b, f8 DESC LIMIT 20',
  -- keys of the column's type and of others on one column
  'SELECT f4 FROM %I WHERE f4 > -50::float8 AND f4 >= -30 AND f4 < 20 AND f4 <= 10.5::float8 ORDER BY f4',
  'SELECT f4 FROM %I WHERE f4 >= -30 AND f4 > -50::float8 AND f4 <= 10.5::float8 AND f4 < 20 ORDER BY f4',
  'SELECT f8 FROM %I WHERE f8 < 1e301 AND f8 > 2.5::float4 AND f8 < 3e300 AND f8 > 1 ORDER BY f8',
  'SELECT id FROM %I WHERE id > -5::int4 AND id > -11529215046068469 * 3 AND id < 11529215046068469 * 2 AND id < 100::int2 ORDER BY id',
  'SELECT id FROM %I WHERE id < 11529215046068469 * 2 AND id < 100::int2 AND id > -11529215046068469 * 3 AND id > -5::int4 ORDER BY id'
]) q;
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT c.relname, encrypted_index_check(c.oid) AS checked
  FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
 WHERE i.indrelid = 'ek'::regclass ORDER BY 1;
CREATE INDEX ek_id_blocks ON ek (id);
SET bsoncrypt.index_keys_as_blocks = off;
CREATE INDEX ek_id_gcm ON ek (id);
RESET bsoncrypt.index_keys_as_blocks;
SELECT pg_relation_size('ek_id_blocks') < 0.7 * pg_relation_size('ek_id_gcm') AS blocks_smaller,
       encrypted_index_check('ek_id_blocks') AS blocks_checked,
       encrypted_index_check('ek_id_gcm') AS gcm_checked;
DROP TABLE ek, pk;
