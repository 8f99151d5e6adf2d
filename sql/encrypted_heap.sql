-- The encrypted_heap table access method: the table-AM surface, with
-- plaintext results everywhere a heap table gives them.
SET search_path = bsoncrypt, public;
SET client_min_messages = warning;

CREATE TABLE docs (
    id int PRIMARY KEY,
    name text NOT NULL,
    body jsonb,
    doc bson,
    raw bytea,
    tags text[],
    amount numeric,
    note varchar(20) DEFAULT 'none',
    total numeric GENERATED ALWAYS AS (amount * 2) STORED
) USING encrypted_heap;

SELECT is_encrypted('docs'), is_encrypted('key_vault');
SELECT relation, keys, provider, master_key_version FROM encrypted_relations;

-- INSERT ... RETURNING, small and TOASTed values
INSERT INTO docs (id, name, body, doc, raw, tags, amount)
VALUES (1, 'alpha', '{"k": 1}', '{"a": "x"}', '\x00ff', '{a,b}', 1.5),
       (2, 'beta', jsonb_build_object('big', repeat('b', 20000)), NULL, NULL, NULL, 2),
       (3, repeat('gamma', 3000), NULL, '{"n": "seven"}', decode(repeat('ab', 5000), 'hex'), '{}', NULL)
RETURNING id, length(name), total;
SELECT id, left(name, 10), length(name), body->>'k', length(body->>'big'), doc, length(raw), tags, amount, note, total
  FROM docs ORDER BY id;
SELECT ctid, xmin::text::bigint > 0 AS has_xmin, tableoid::regclass, id FROM docs ORDER BY id;

-- UPDATE ... RETURNING; unchanged values keep their ciphertext (HOT works)
BEGIN;
UPDATE docs SET amount = amount + 1 WHERE id = 1 RETURNING id, name, amount, total;
UPDATE docs SET note = 'changed' WHERE id = 2 RETURNING id, length(body->>'big'), note;
SELECT pg_stat_get_xact_tuples_hot_updated('docs'::regclass) AS hot_updates;
COMMIT;
UPDATE docs SET name = name || '!' WHERE id = 3 RETURNING length(name);
SELECT id, right(name, 3), amount, note FROM docs ORDER BY id;

-- ON CONFLICT
INSERT INTO docs (id, name) VALUES (1, 'dup') ON CONFLICT DO NOTHING;
INSERT INTO docs (id, name) VALUES (1, 'dup'), (4, 'delta')
    ON CONFLICT (id) DO UPDATE SET name = docs.name || '+' || excluded.name
    RETURNING id, name;
INSERT INTO docs (id, name) VALUES (1, 'x');

-- DELETE ... RETURNING
DELETE FROM docs WHERE id = 4 RETURNING id, name, note;

-- MERGE
CREATE TABLE src (id int, name text) USING encrypted_heap;
INSERT INTO src VALUES (1, 'merged'), (5, 'epsilon');
MERGE INTO docs d USING src s ON d.id = s.id
    WHEN MATCHED THEN UPDATE SET name = s.name
    WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, s.name);
SELECT id, left(name, 10) FROM docs ORDER BY id;

-- indexes: built from plaintext; index, bitmap and index-only scans
CREATE INDEX docs_name ON docs (name);
CREATE INDEX docs_doc_a ON docs ((doc ->> 'a'));
CREATE INDEX docs_body ON docs USING gin (body);
CREATE INDEX docs_partial ON docs (amount) WHERE amount > 1;
CREATE UNIQUE INDEX docs_note_u ON docs (note, id);
CREATE UNIQUE INDEX CONCURRENTLY docs_name_u ON docs (name);
CREATE INDEX CONCURRENTLY docs_tags ON docs USING gin (tags);
SET enable_seqscan = off;
SELECT id FROM docs WHERE name = 'merged';
SELECT id FROM docs WHERE doc ->> 'a' = 'x';
SELECT id FROM docs WHERE body @> '{"k": 1}';
SELECT id FROM docs WHERE tags @> '{a}';
SELECT name FROM docs WHERE name = 'epsilon';
SELECT id, amount FROM docs WHERE amount > 1 ORDER BY id;
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE name = 'merged';
RESET enable_seqscan;
INSERT INTO docs (id, name) VALUES (6, 'merged');
INSERT INTO docs (id, name, note) VALUES (6, 'zeta', 'changed');

-- TID, TID range and sample scans; system columns
SELECT id FROM docs WHERE ctid = (SELECT ctid FROM docs WHERE id = 5);
SELECT count(*) FROM docs WHERE ctid >= '(0,1)' AND ctid < '(1000,1)';
SELECT count(*) FROM docs TABLESAMPLE SYSTEM (100);

-- cursors
BEGIN;
DECLARE c SCROLL CURSOR FOR SELECT id, left(name, 5) FROM docs ORDER BY id;
FETCH 2 FROM c;
FETCH BACKWARD 1 FROM c;
FETCH LAST FROM c;
CLOSE c;
DECLARE u CURSOR FOR SELECT id, name FROM docs WHERE id = 5 FOR UPDATE;
FETCH u;
UPDATE docs SET name = 'epsilon2' WHERE CURRENT OF u;
COMMIT;
SELECT name FROM docs WHERE id = 5;

-- row locks
BEGIN;
SELECT id, left(name, 5) FROM docs WHERE id <= 2 ORDER BY id FOR UPDATE;
SELECT id FROM docs WHERE id = 3 FOR SHARE;
SELECT id FROM docs WHERE id = 5 FOR NO KEY UPDATE SKIP LOCKED;
COMMIT;

-- triggers, with transition tables
CREATE TABLE audit (op text, old_name text, new_name text) USING encrypted_heap;
CREATE FUNCTION docs_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit VALUES (TG_OP, left(OLD.name, 10), left(NEW.name, 10));
    IF TG_OP = 'INSERT' THEN NEW.note := 'via trigger'; END IF;
    RETURN coalesce(NEW, OLD);
END $$;
CREATE FUNCTION docs_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit SELECT 'statement', string_agg(o.name, ',' ORDER BY o.id), string_agg(n.name, ',' ORDER BY n.id)
      FROM old_rows o FULL JOIN new_rows n USING (id);
    RETURN NULL;
END $$;
CREATE TRIGGER docs_row BEFORE INSERT OR UPDATE OR DELETE ON docs
    FOR EACH ROW EXECUTE FUNCTION docs_audit();
CREATE TRIGGER docs_stmt AFTER UPDATE ON docs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION docs_count();
INSERT INTO docs (id, name) VALUES (7, 'eta') RETURNING note;
UPDATE docs SET name = 'eta2' WHERE id = 7;
DELETE FROM docs WHERE id = 7;
SELECT * FROM audit ORDER BY op, old_name NULLS FIRST;
DROP TRIGGER docs_row ON docs;
DROP TRIGGER docs_stmt ON docs;

-- foreign keys between encrypted tables
CREATE TABLE parent (pk text PRIMARY KEY) USING encrypted_heap;
CREATE TABLE child (id int, fk text REFERENCES parent ON DELETE CASCADE ON UPDATE CASCADE) USING encrypted_heap;
INSERT INTO parent VALUES ('p1'), ('p2');
INSERT INTO child VALUES (1, 'p1'), (2, 'p2');
INSERT INTO child VALUES (3, 'nope');
UPDATE parent SET pk = 'p1new' WHERE pk = 'p1';
DELETE FROM parent WHERE pk = 'p2';
SELECT * FROM child ORDER BY id;
ALTER TABLE child ADD CONSTRAINT child_fk2 FOREIGN KEY (fk) REFERENCES parent;

-- partitioned table with encrypted partitions
CREATE TABLE events (id int, kind text, payload jsonb) PARTITION BY LIST (kind);
CREATE TABLE events_a PARTITION OF events FOR VALUES IN ('a') USING encrypted_heap;
SET default_table_access_method = encrypted_heap;
CREATE TABLE events_b PARTITION OF events FOR VALUES IN ('b');
CREATE TABLE events_other PARTITION OF events DEFAULT USING heap;
RESET default_table_access_method;
SELECT is_encrypted('events'), is_encrypted('events_b'), is_encrypted('events_other');
INSERT INTO events VALUES (1, 'a', '{"x": 1}'), (2, 'b', '{"x": 2}'), (3, 'c', '{"x": 3}');
UPDATE events SET kind = 'b' WHERE id = 1;
SELECT tableoid::regclass, * FROM events ORDER BY id;
ALTER TABLE events DETACH PARTITION events_other;
SELECT is_encrypted('events');
CREATE INDEX ON events (kind, id);
SELECT count(*) FROM events WHERE kind = 'b';

-- sequences and identity columns
CREATE TABLE seqs (id bigint GENERATED ALWAYS AS IDENTITY, s serial, v text) USING encrypted_heap;
INSERT INTO seqs (v) SELECT 'v' || g FROM generate_series(1, 3) g;
SELECT * FROM seqs ORDER BY id;

-- COPY in and out, multi-row bulk insert
COPY seqs (v) FROM stdin;
copied 1
copied 2
\.
COPY (SELECT v FROM seqs ORDER BY id) TO stdout;
CREATE TABLE bulk USING encrypted_heap AS
    SELECT g AS id, md5(g::text) AS h, jsonb_build_object('g', g) AS j FROM generate_series(1, 2000) g;
SELECT count(*), count(DISTINCT h), sum((j->>'g')::int) FROM bulk;
INSERT INTO bulk SELECT * FROM bulk WHERE id <= 10;
SELECT count(*) FROM bulk;

-- parallel scans and a parallel index build decrypt in the workers too
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET max_parallel_maintenance_workers = 2;
EXPLAIN (COSTS OFF) SELECT count(*), sum(length(h)) FROM bulk WHERE j->>'g' <> '';
SELECT count(*), sum(length(h)) FROM bulk WHERE j->>'g' <> '';
CREATE INDEX bulk_j ON bulk ((j->>'g'));
SELECT count(*) FROM bulk WHERE j->>'g' = '15';
DROP INDEX bulk_j;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET max_parallel_maintenance_workers;

-- ANALYZE sees plaintext (pg_statistic holds plaintext samples)
ANALYZE bulk;
SELECT attname, n_distinct > 0 OR n_distinct < 0 AS has_stats FROM pg_stats
 WHERE tablename = 'bulk' ORDER BY attname;

-- schema changes: missing-value defaults, dropped columns, rewrites
ALTER TABLE docs ADD COLUMN extra text DEFAULT 'dflt';
ALTER TABLE docs ADD COLUMN extra2 int DEFAULT 7;
SELECT id, extra, extra2 FROM docs ORDER BY id;
UPDATE docs SET extra = 'set' WHERE id = 1;
ALTER TABLE docs DROP COLUMN raw;
SELECT id, extra, tags FROM docs ORDER BY id;
ALTER TABLE docs ALTER COLUMN note TYPE text;
SELECT id, note, amount, total FROM docs ORDER BY id;
-- type changes that rewrite: old tuples are read with the old column types
-- (a fixed-width value becomes a varlena and the other way round)
CREATE TABLE retyped (id int, n int, t text, j jsonb) USING encrypted_heap;
INSERT INTO retyped SELECT g, g * 10, (g * 100)::text, jsonb_build_object('g', g) FROM generate_series(1, 5) g;
ALTER TABLE retyped ALTER COLUMN n TYPE text, ALTER COLUMN t TYPE int USING t::int;
SELECT id, n, t, j FROM retyped ORDER BY id;
ALTER TABLE retyped ALTER COLUMN n TYPE bigint USING n::bigint * 2, ALTER COLUMN j TYPE text;
SELECT id, n, t, j FROM retyped ORDER BY id;
DROP TABLE retyped;

-- VACUUM, VACUUM FULL and CLUSTER: a new file with a new key each time
DELETE FROM bulk WHERE id % 2 = 0;
VACUUM bulk;
SELECT count(*) FROM bulk;
SELECT keys FROM encrypted_relations WHERE relation = 'bulk'::regclass;
CREATE TEMP TABLE key_before AS SELECT key_id FROM encrypted_relations WHERE relation = 'bulk'::regclass;
VACUUM FULL bulk;
SELECT e.key_id > b.key_id AS rekeyed FROM encrypted_relations e, key_before b
 WHERE e.relation = 'bulk'::regclass;
-- the old file's key went with the old file
SELECT count(*) AS old_keys_left FROM relation_keys WHERE key_id IN (SELECT key_id FROM key_before);
SELECT count(*), sum(id) FROM bulk;
CREATE INDEX bulk_h ON bulk (h);
CLUSTER bulk USING bulk_h;
SELECT (array_agg(h ORDER BY ctid))[1:3] = (array_agg(h ORDER BY h))[1:3] AS clustered FROM bulk;
SELECT count(*) FROM bulk WHERE h = md5('7');

-- TRUNCATE, rolled back and committed
BEGIN;
TRUNCATE seqs;
SELECT count(*) FROM seqs;
ROLLBACK;
SELECT count(*) FROM seqs;
BEGIN;
SAVEPOINT s;
TRUNCATE seqs;
INSERT INTO seqs (v) VALUES ('after truncate');
ROLLBACK TO SAVEPOINT s;
INSERT INTO seqs (v) VALUES ('after rollback');
COMMIT;
SELECT v FROM seqs ORDER BY id DESC LIMIT 2;
CREATE TEMP TABLE seqs_key AS SELECT key_id FROM encrypted_relations WHERE relation = 'seqs'::regclass;
TRUNCATE seqs;
INSERT INTO seqs (v) VALUES ('fresh');
SELECT v FROM seqs;
SELECT count(*) AS old_keys_left FROM relation_keys WHERE key_id IN (SELECT key_id FROM seqs_key);

-- converting tables: heap -> encrypted_heap -> heap
CREATE TABLE plain (id int, t text);
INSERT INTO plain SELECT g, 'row ' || g FROM generate_series(1, 100) g;
ALTER TABLE plain SET ACCESS METHOD encrypted_heap;
SELECT is_encrypted('plain'), count(*), max(t) FROM plain;
ALTER TABLE plain SET ACCESS METHOD heap;
SELECT is_encrypted('plain'), count(*), max(t) FROM plain;

-- a table owner who is not a superuser moves an encrypted table to another
-- tablespace: the keys follow the file (relation_keys is not theirs to
-- write), with the owner's own "=" for oid on the search path ignored
SET allow_in_place_tablespaces = on;
CREATE TABLESPACE eh_space LOCATION '';
CREATE ROLE regress_eh_owner;
GRANT CREATE ON TABLESPACE eh_space TO regress_eh_owner;
GRANT CREATE, USAGE ON SCHEMA public TO regress_eh_owner;
SET ROLE regress_eh_owner;
CREATE FUNCTION public.oid_eq_trap(oid, oid) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = public.oid_eq_trap);
SET search_path = public, bsoncrypt, pg_catalog;
CREATE TABLE owned (id int, t text) USING encrypted_heap;
INSERT INTO owned SELECT g, 'owned ' || g FROM generate_series(1, 100) g;
ALTER TABLE owned SET TABLESPACE eh_space;
SELECT count(*), min(t) FROM owned;
ALTER TABLE owned SET TABLESPACE pg_default;
SELECT count(*), max(t) FROM owned;
RESET ROLE;
SET search_path = bsoncrypt, public;
SELECT count(*) AS keys_in_place FROM relation_keys k JOIN pg_class c
    ON (c.reltablespace, c.relfilenode) = (k.reltablespace, k.relfilenode)
 WHERE c.oid = 'owned'::regclass;
SELECT count(*) AS stray_keys FROM relation_keys WHERE reltablespace = (SELECT oid FROM pg_tablespace WHERE spcname = 'eh_space');
DROP TABLE owned;
-- a temporary table moves too; a move that rolls back leaves it readable
CREATE TEMP TABLE tmp_moved (t text) USING encrypted_heap;
INSERT INTO tmp_moved VALUES ('temp one');
BEGIN;
ALTER TABLE tmp_moved SET TABLESPACE eh_space;
ROLLBACK;
SELECT t FROM tmp_moved;
BEGIN;
SAVEPOINT s;
ALTER TABLE tmp_moved SET TABLESPACE eh_space;
INSERT INTO tmp_moved VALUES ('temp two');
ROLLBACK TO SAVEPOINT s;
SELECT t FROM tmp_moved;
ALTER TABLE tmp_moved SET TABLESPACE eh_space;
INSERT INTO tmp_moved VALUES ('temp three');
COMMIT;
SELECT t FROM tmp_moved ORDER BY t;
ALTER TABLE tmp_moved SET TABLESPACE pg_default;
SELECT t FROM tmp_moved ORDER BY t;
DROP TABLE tmp_moved;
DROP OPERATOR public.= (oid, oid);
DROP FUNCTION public.oid_eq_trap(oid, oid);
REVOKE ALL ON SCHEMA public FROM regress_eh_owner;
DROP TABLESPACE eh_space;
DROP ROLE regress_eh_owner;

-- on by default
SET default_table_access_method = encrypted_heap;
CREATE TABLE by_default (t text);
CREATE TABLE ctas AS SELECT * FROM docs;
CREATE MATERIALIZED VIEW mv AS SELECT id, name FROM docs;
RESET default_table_access_method;
SELECT is_encrypted('by_default'), is_encrypted('ctas'), is_encrypted('mv');
REFRESH MATERIALIZED VIEW mv;
SELECT count(*) FROM mv;
SELECT count(*) FROM ctas;

-- unlogged and temporary tables
CREATE UNLOGGED TABLE unl (t text) USING encrypted_heap;
INSERT INTO unl VALUES ('unlogged');
CREATE TEMP TABLE tmp (t text) USING encrypted_heap;
INSERT INTO tmp VALUES ('temporary');
SELECT * FROM unl UNION ALL SELECT * FROM tmp;
-- a temporary table's keys live in the session only: nothing in
-- relation_keys, and read-only transactions can write it
SELECT count(*) AS stored_keys FROM relation_keys k JOIN pg_class c
    ON (c.reltablespace, c.relfilenode) = (k.reltablespace, k.relfilenode)
 WHERE c.oid = 'tmp'::regclass;
SELECT relation, key_id, keys FROM encrypted_relations WHERE relation = 'tmp'::regclass;
BEGIN READ ONLY;
INSERT INTO tmp SELECT 'ro ' || g FROM generate_series(1, 3) g;
UPDATE tmp SET t = t || '!' WHERE t = 'ro 1';
SELECT t FROM tmp ORDER BY t;
COMMIT;
-- ... and are counted exactly: a new one before the limit
SET bsoncrypt.at_rest_key_max_uses = 1000;
SET client_min_messages = debug1;
INSERT INTO tmp SELECT 'many ' || g FROM generate_series(1, 2500) g;
SET client_min_messages = warning;
SELECT count(*), count(DISTINCT t) FROM tmp;
RESET bsoncrypt.at_rest_key_max_uses;
-- rewritten, truncated, dropped and made again, in and out of
-- transactions that roll back
BEGIN;
TRUNCATE tmp;
INSERT INTO tmp VALUES ('after truncate');
ROLLBACK;
SELECT count(*) FROM tmp;
VACUUM FULL tmp;
CREATE INDEX tmp_t ON tmp (t);
CLUSTER tmp USING tmp_t;
SELECT count(*), count(DISTINCT t) FROM tmp WHERE t LIKE 'many%';
DO $$ BEGIN
    FOR i IN 1..80 LOOP
        CREATE TEMP TABLE tmp_churn (t text) USING encrypted_heap;
        INSERT INTO tmp_churn VALUES ('churn ' || i);
        DROP TABLE tmp_churn;
    END LOOP;
END $$;
SELECT t FROM tmp WHERE t = 'temporary';

-- subtransactions
BEGIN;
INSERT INTO by_default VALUES ('kept');
SAVEPOINT a;
INSERT INTO by_default VALUES ('lost');
ROLLBACK TO a;
COMMIT;
SELECT * FROM by_default;

-- keys are read from relation_keys: a rewrap there (what master-key
-- rotation does) reaches every session's cache
CREATE TABLE rot (t text) USING encrypted_heap;
INSERT INTO rot VALUES ('secret');
SELECT t FROM rot;
UPDATE relation_keys SET update_date = now()
 WHERE (reltablespace, relfilenode) = (SELECT reltablespace, relfilenode FROM pg_class WHERE oid = 'rot'::regclass);
SELECT t FROM rot;
BEGIN;
UPDATE relation_keys SET key_material = '\x00'::bytea
 WHERE (reltablespace, relfilenode) = (SELECT reltablespace, relfilenode FROM pg_class WHERE oid = 'rot'::regclass);
DO $$ BEGIN PERFORM t FROM rot; RAISE WARNING 'read'; EXCEPTION WHEN OTHERS THEN RAISE WARNING 'read failed: %', SQLSTATE; END $$;
ROLLBACK;
SELECT t FROM rot;
DROP TABLE rot;

-- use of keys is counted: a file gets a new key before the limit
SET bsoncrypt.at_rest_key_max_uses = 2048;
CREATE TABLE churn (t text) USING encrypted_heap;
INSERT INTO churn SELECT 'v' || g FROM generate_series(1, 5000) g;
SELECT keys >= 3 AS rekeyed, key_uses_bound <= 2048 AS within_bound
  FROM encrypted_relations WHERE relation = 'churn'::regclass;
SELECT count(*), count(DISTINCT t) FROM churn;
RESET bsoncrypt.at_rest_key_max_uses;
DROP TABLE churn;

-- values name their key by a 16-bit number, unique among the file's keys:
-- a new key whose id would repeat the number of an existing one is skipped
SET bsoncrypt.at_rest_key_max_uses = 1000;
CREATE TABLE numbered (t text) USING encrypted_heap;
INSERT INTO numbered VALUES ('under the first key');
CREATE TEMP TABLE numbered_first AS
SELECT k.key_id, k.key_number FROM relation_keys k JOIN pg_class c
    ON (c.reltablespace, c.relfilenode) = (k.reltablespace, k.relfilenode)
 WHERE c.oid = 'numbered'::regclass;
SELECT key_number = key_id & 65535 AS number_from_id FROM numbered_first;
SELECT setval('relation_key_ids', key_id + 65535) > 0 AS next_id_repeats_the_number FROM numbered_first;
INSERT INTO numbered SELECT 'v' || g FROM generate_series(1, 1500) g;
RESET bsoncrypt.at_rest_key_max_uses;
SELECT count(*) >= 2 AS rekeyed,
       count(DISTINCT k.key_number) = count(*) AS numbers_unique,
       bool_and(k.key_id <> f.key_id + 65536) AS repeating_id_skipped
  FROM relation_keys k JOIN pg_class c
    ON (c.reltablespace, c.relfilenode) = (k.reltablespace, k.relfilenode), numbered_first f
 WHERE c.oid = 'numbered'::regclass;
SELECT count(*), count(DISTINCT t), min(t) FROM numbered;
DROP TABLE numbered;

-- a file whose 65536 key numbers are all taken gets no new key: an error
-- with a hint, nothing written (the other numbers are taken by stand-in rows)
CREATE TABLE exhausted (t text) USING encrypted_heap;
INSERT INTO exhausted VALUES ('under the only real key');
INSERT INTO relation_keys (key_id, reltablespace, relfilenode, key_material, provider,
                           master_key_version, key_number)
SELECT 2000000000 - n, k.reltablespace, k.relfilenode, k.key_material, k.provider,
       k.master_key_version, n
  FROM relation_keys k JOIN pg_class c
    ON (c.reltablespace, c.relfilenode) = (k.reltablespace, k.relfilenode),
       generate_series(0, 65535) n
 WHERE c.oid = 'exhausted'::regclass AND n <> k.key_number;
SET bsoncrypt.at_rest_key_max_uses = 1000;
INSERT INTO exhausted SELECT 'v' || g FROM generate_series(1, 1500) g;
RESET bsoncrypt.at_rest_key_max_uses;
SELECT t FROM exhausted;
DELETE FROM relation_keys WHERE key_id > 2000000000 - 65536;
DROP TABLE exhausted;

-- rows whose varlena values are all NULL hold no ciphertext
CREATE TABLE nulls (id int PRIMARY KEY, a text, b jsonb) USING encrypted_heap;
INSERT INTO nulls VALUES (1, NULL, NULL), (2, 'x', NULL);
SELECT id, a, b, xmin::text::bigint > 0 AS has_xmin FROM nulls ORDER BY id;
UPDATE nulls SET a = 'y' WHERE id = 1 RETURNING *;
SELECT * FROM nulls WHERE id = 1 FOR UPDATE;
DROP TABLE nulls;

-- a column is decrypted when a query reads it: with the relation key made
-- unusable, queries that read only fixed-width columns still run (scans,
-- index scans, row locks); reading a varlena column fails
CREATE TABLE lazy (id int PRIMARY KEY, n int, t text, j jsonb) USING encrypted_heap;
INSERT INTO lazy SELECT g, g * 10, 'text ' || g, jsonb_build_object('g', g, 'pad', repeat('p', g * 100))
  FROM generate_series(1, 50) g;
BEGIN;
UPDATE relation_keys SET key_material = '\x00'::bytea
 WHERE (reltablespace, relfilenode) = (SELECT reltablespace, relfilenode FROM pg_class WHERE oid = 'lazy'::regclass);
SELECT id, n FROM lazy WHERE n > 470;
SELECT n FROM lazy WHERE id = 7;
SELECT ctid, n FROM lazy WHERE id = 8 FOR UPDATE;
DO $$ BEGIN PERFORM t FROM lazy WHERE id = 7; RAISE WARNING 'read'; EXCEPTION WHEN OTHERS THEN RAISE WARNING 'read failed: %', SQLSTATE; END $$;
DO $$ BEGIN PERFORM count(*) FROM lazy WHERE j->>'g' = '3'; RAISE WARNING 'read'; EXCEPTION WHEN OTHERS THEN RAISE WARNING 'read failed: %', SQLSTATE; END $$;
ROLLBACK;
-- every way the executor keeps or copies a row sees plaintext
SELECT l AS whole_row FROM lazy l WHERE id = 1;
SELECT row_to_json(l)->>'t' AS t, l::text = format('(%s,%s,"%s","%s")', id, n, t, replace(j::text, '"', '""')) AS same
  FROM lazy l WHERE id = 2;
SELECT t, xmin::text::bigint > 0 AS has_xmin, tableoid::regclass FROM lazy ORDER BY t DESC LIMIT 3;
WITH m AS MATERIALIZED (SELECT * FROM lazy) SELECT count(*), sum(length(t)), sum(length(j::text)) FROM m;
SELECT a.id, b.t FROM lazy a JOIN lazy b ON a.t = b.t WHERE a.id < 3 ORDER BY 1;
SELECT t, lag(t) OVER (ORDER BY id) FROM lazy WHERE id <= 3;
SELECT t FROM lazy WHERE id = 4 UNION SELECT t FROM lazy WHERE id = 5 ORDER BY 1;
BEGIN;
DECLARE c SCROLL CURSOR FOR SELECT id, t, length(j->>'pad') FROM lazy;
FETCH 2 FROM c;
FETCH PRIOR FROM c;
FETCH LAST FROM c;
UPDATE lazy SET n = -n WHERE CURRENT OF c RETURNING id, n, t;
COMMIT;
DROP TABLE lazy;

-- every relation file has a key; none is left behind by drops and rewrites
SELECT count(*) FROM encrypted_relations WHERE key_id IS NULL
   AND relation::oid NOT IN (SELECT oid FROM pg_class WHERE relpersistence = 't');
SELECT drop_unused_relation_keys() AS left_behind;
SELECT count(*) FROM docs;
-- the key clean-up that any DROP triggers runs as the extension owner: a
-- temporary table named pg_class cannot make it see no files
CREATE ROLE regress_eh_intruder;
SET ROLE regress_eh_intruder;
CREATE TEMP TABLE pg_class (reltablespace oid, relfilenode oid);
CREATE TEMP TABLE intruder ();
DROP TABLE intruder;
DROP TABLE pg_temp.pg_class;
RESET ROLE;
DROP ROLE regress_eh_intruder;
SELECT count(name) FROM docs;
SELECT count(*) > 0 AS keys_kept FROM relation_keys;
-- dropping a table deletes its keys, unless the drop rolls back
CREATE TEMP TABLE docs_keys AS
SELECT k.key_id FROM relation_keys k JOIN pg_class c
    ON (c.reltablespace, c.relfilenode) = (k.reltablespace, k.relfilenode)
 WHERE c.oid = 'docs'::regclass;
BEGIN;
DROP TABLE docs CASCADE;
SELECT count(*) AS docs_keys_left FROM relation_keys WHERE key_id IN (SELECT key_id FROM docs_keys);
ROLLBACK;
SELECT count(*) > 0 AS docs_keys_back FROM relation_keys WHERE key_id IN (SELECT key_id FROM docs_keys);
SELECT count(*) FROM docs;

DROP TABLE docs, src, audit, child, parent, events, events_other, seqs, bulk,
    plain, by_default, ctas, unl, tmp CASCADE;
DROP MATERIALIZED VIEW IF EXISTS mv;
DROP FUNCTION docs_audit(), docs_count();
SELECT count(*) AS docs_keys_left FROM relation_keys WHERE key_id IN (SELECT key_id FROM docs_keys);
SELECT drop_unused_relation_keys() AS left_behind;
