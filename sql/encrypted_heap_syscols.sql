-- System columns (ctid, xmin, xmax, cmin, cmax, tableoid) read from the
-- rows encrypted_heap hands the executor are heap's.  Every check runs the
-- same statement on twin tables, h.* (heap) and e.* (encrypted_heap), in
-- ONE statement where it can (data-modifying CTEs), so both twins see the
-- same transaction and command ids: "same" compares the raw values, the
-- columns show them with xids named ("mine" is the current transaction).
SET client_min_messages = warning;

CREATE SCHEMA sc;
CREATE FUNCTION sc.xid_name(x xid) RETURNS text LANGUAGE sql STABLE
AS $$
    SELECT CASE WHEN x = '0'::xid THEN '0'
                WHEN x = '2'::xid THEN 'frozen'
                WHEN x = pg_current_xact_id_if_assigned()::xid THEN 'mine'
                ELSE 'other' END
$$;
-- what the comparisons show: ctid xmin/xmax cmin/cmax table
CREATE FUNCTION sc.sys(t tid, xmin xid, xmax xid, cmin cid, cmax cid, rel oid)
RETURNS text LANGUAGE sql STABLE
AS $$
    SELECT format('%s %s/%s %s/%s %s', t, sc.xid_name(xmin), sc.xid_name(xmax),
                  cmin, cmax, (SELECT relname FROM pg_class WHERE oid = rel))
$$;
-- what they compare: the raw values
CREATE FUNCTION sc.raw(t tid, xmin xid, xmax xid, cmin cid, cmax cid, rel oid)
RETURNS text LANGUAGE sql STABLE
AS $$
    SELECT concat_ws(' ', t, xmin, xmax, cmin, cmax,
                     (SELECT relname FROM pg_class WHERE oid = rel))
$$;
\set cols 'k, sc.sys(ctid, xmin, xmax, cmin, cmax, tableoid) AS s, sc.raw(ctid, xmin, xmax, cmin, cmax, tableoid) AS r'
\set compare 'SELECT k, h.s AS heap, e.s AS encrypted_heap, h.r IS NOT DISTINCT FROM e.r AS same FROM h FULL JOIN e USING (k) ORDER BY k'

CREATE SCHEMA h;
CREATE SCHEMA e;
CREATE TABLE h.t (k int PRIMARY KEY, v int, txt text) USING heap;
CREATE TABLE e.t (k int PRIMARY KEY, v int, txt text) USING encrypted_heap;
CREATE INDEX ON h.t (v);
CREATE INDEX ON e.t (v);
-- partitioned twins; p2 has another column order (tuple routing converts)
CREATE TABLE h.p (k int, v int, txt text) PARTITION BY RANGE (k);
CREATE TABLE h.p1 PARTITION OF h.p FOR VALUES FROM (0) TO (100) USING heap;
CREATE TABLE h.p2 (txt text, v int, k int) USING heap;
ALTER TABLE h.p ATTACH PARTITION h.p2 FOR VALUES FROM (100) TO (200);
CREATE TABLE e.p (k int, v int, txt text) PARTITION BY RANGE (k);
CREATE TABLE e.p1 PARTITION OF e.p FOR VALUES FROM (0) TO (100) USING encrypted_heap;
CREATE TABLE e.p2 (txt text, v int, k int) USING encrypted_heap;
ALTER TABLE e.p ATTACH PARTITION e.p2 FOR VALUES FROM (100) TO (200);

BEGIN;
-- INSERT ... RETURNING: small, compressed and NULL values
WITH h AS (INSERT INTO h.t VALUES (1, 1, 'one'), (2, 2, repeat('two', 2000)), (3, 3, NULL)
           RETURNING :cols),
     e AS (INSERT INTO e.t VALUES (1, 1, 'one'), (2, 2, repeat('two', 2000)), (3, 3, NULL)
           RETURNING :cols)
:compare;
-- a value stored out of line (TOAST): heap_insert writes a copy
WITH h AS (INSERT INTO h.t SELECT 4, 4, string_agg(md5(i::text), '') FROM generate_series(1, 300) i
           RETURNING :cols),
     e AS (INSERT INTO e.t SELECT 4, 4, string_agg(md5(i::text), '') FROM generate_series(1, 300) i
           RETURNING :cols)
:compare;
-- INSERT ... SELECT from the twin itself
WITH h AS (INSERT INTO h.t SELECT k + 10, v, txt FROM h.t WHERE k IN (1, 3) RETURNING :cols),
     e AS (INSERT INTO e.t SELECT k + 10, v, txt FROM e.t WHERE k IN (1, 3) RETURNING :cols)
:compare;
-- the rows as a scan sees them in the inserting transaction
WITH h AS (SELECT :cols FROM h.t), e AS (SELECT :cols FROM e.t) :compare;

-- UPDATE ... RETURNING: HOT (txt), not HOT (v is indexed), TOASTed row
WITH h AS (UPDATE h.t SET txt = 'uno' WHERE k = 1 RETURNING :cols),
     e AS (UPDATE e.t SET txt = 'uno' WHERE k = 1 RETURNING :cols)
:compare;
WITH h AS (UPDATE h.t SET v = v + 100 WHERE k IN (2, 3) RETURNING :cols),
     e AS (UPDATE e.t SET v = v + 100 WHERE k IN (2, 3) RETURNING :cols)
:compare;
WITH h AS (UPDATE h.t SET v = -v WHERE k = 4 RETURNING :cols),
     e AS (UPDATE e.t SET v = -v WHERE k = 4 RETURNING :cols)
:compare;
-- old versions updated by this transaction carry combo command ids
WITH h AS (SELECT :cols FROM h.t), e AS (SELECT :cols FROM e.t) :compare;

-- DELETE ... RETURNING
WITH h AS (DELETE FROM h.t WHERE k = 13 RETURNING :cols),
     e AS (DELETE FROM e.t WHERE k = 13 RETURNING :cols)
:compare;

-- ON CONFLICT DO NOTHING ... RETURNING: a speculative insert and a skip
WITH h AS (INSERT INTO h.t VALUES (5, 5, 'five'), (1, 0, 'skipped') ON CONFLICT DO NOTHING
           RETURNING :cols),
     e AS (INSERT INTO e.t VALUES (5, 5, 'five'), (1, 0, 'skipped') ON CONFLICT DO NOTHING
           RETURNING :cols)
:compare;
-- ON CONFLICT DO UPDATE ... RETURNING: a new row and an updated one, whose
-- locked existing version is read (xmax: the lock) by SET and WHERE
WITH h AS (INSERT INTO h.t AS t VALUES (6, 6, 'six'), (5, 0, 'cinq')
           ON CONFLICT (k) DO UPDATE SET txt = excluded.txt || ' ' || sc.xid_name(t.xmin) || '/' || sc.xid_name(t.xmax) || ' ' || t.cmin
           WHERE t.xmin = pg_current_xact_id()::xid
           RETURNING :cols, txt),
     e AS (INSERT INTO e.t AS t VALUES (6, 6, 'six'), (5, 0, 'cinq')
           ON CONFLICT (k) DO UPDATE SET txt = excluded.txt || ' ' || sc.xid_name(t.xmin) || '/' || sc.xid_name(t.xmax) || ' ' || t.cmin
           WHERE t.xmin = pg_current_xact_id()::xid
           RETURNING :cols, txt)
SELECT k, h.s AS heap, e.s AS encrypted_heap, h.txt, h.r IS NOT DISTINCT FROM e.r AND h.txt = e.txt AS same
  FROM h FULL JOIN e USING (k) ORDER BY k;
-- the same row proposed twice: heap's cardinality error (21000), not a
-- system column error, for both
SAVEPOINT twice;
INSERT INTO h.t VALUES (7, 1, 'a'), (7, 2, 'b') ON CONFLICT (k) DO UPDATE SET v = 0;
ROLLBACK TO twice;
INSERT INTO e.t VALUES (7, 1, 'a'), (7, 2, 'b') ON CONFLICT (k) DO UPDATE SET v = 0;
ROLLBACK TO twice;
RELEASE twice;
-- a row inserted by an earlier command of this transaction conflicts
WITH h AS (INSERT INTO h.t VALUES (6, 60, 'again') ON CONFLICT (k) DO UPDATE SET v = excluded.v
           RETURNING :cols),
     e AS (INSERT INTO e.t VALUES (6, 60, 'again') ON CONFLICT (k) DO UPDATE SET v = excluded.v
           RETURNING :cols)
:compare;
COMMIT;

-- Row locks: the scan below the lock reads the row before it is locked;
-- the lock shows in xmax afterwards
BEGIN;
WITH h AS (SELECT :cols FROM h.t WHERE k = 1 FOR UPDATE), e AS (SELECT :cols FROM e.t WHERE k = 1 FOR UPDATE)
:compare;
WITH h AS (SELECT :cols FROM h.t WHERE k = 2 FOR NO KEY UPDATE), e AS (SELECT :cols FROM e.t WHERE k = 2 FOR NO KEY UPDATE)
:compare;
WITH h AS (SELECT :cols FROM h.t WHERE k = 3 FOR SHARE), e AS (SELECT :cols FROM e.t WHERE k = 3 FOR SHARE)
:compare;
WITH h AS (SELECT :cols FROM h.t WHERE k = 4 FOR KEY SHARE), e AS (SELECT :cols FROM e.t WHERE k = 4 FOR KEY SHARE)
:compare;
WITH h AS (SELECT :cols FROM h.t), e AS (SELECT :cols FROM e.t) :compare;
-- UPDATE and DELETE of rows this transaction locked
WITH h AS (UPDATE h.t SET txt = 'locked' WHERE k IN (1, 3) RETURNING :cols),
     e AS (UPDATE e.t SET txt = 'locked' WHERE k IN (1, 3) RETURNING :cols)
:compare;
WITH h AS (DELETE FROM h.t WHERE k = 4 RETURNING :cols),
     e AS (DELETE FROM e.t WHERE k = 4 RETURNING :cols)
:compare;
COMMIT;

-- Every read path of committed rows
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET enable_indexonlyscan = off;
EXPLAIN (COSTS OFF) SELECT ctid, xmin FROM e.t WHERE k > 0;
WITH h AS (SELECT :cols FROM h.t WHERE k > 0), e AS (SELECT :cols FROM e.t WHERE k > 0) :compare;
SET enable_indexscan = off;
SET enable_bitmapscan = on;
EXPLAIN (COSTS OFF) SELECT ctid, xmin FROM e.t WHERE k > 0;
WITH h AS (SELECT :cols FROM h.t WHERE k > 0), e AS (SELECT :cols FROM e.t WHERE k > 0) :compare;
RESET enable_indexscan;
RESET enable_bitmapscan;
RESET enable_indexonlyscan;
EXPLAIN (COSTS OFF) SELECT xmin FROM e.t WHERE ctid = (SELECT ctid FROM e.t WHERE k = 2);
WITH h AS (SELECT :cols FROM h.t WHERE ctid = (SELECT ctid FROM h.t WHERE k = 2)),
     e AS (SELECT :cols FROM e.t WHERE ctid = (SELECT ctid FROM e.t WHERE k = 2))
:compare;
EXPLAIN (COSTS OFF) SELECT xmin FROM e.t WHERE ctid < '(1,0)';
WITH h AS (SELECT :cols FROM h.t WHERE ctid < '(1,0)'), e AS (SELECT :cols FROM e.t WHERE ctid < '(1,0)') :compare;
RESET enable_seqscan;
WITH h AS (SELECT :cols FROM h.t TABLESAMPLE SYSTEM (100)), e AS (SELECT :cols FROM e.t TABLESAMPLE SYSTEM (100)) :compare;
WITH h AS (SELECT :cols FROM h.t), e AS (SELECT :cols FROM e.t) :compare;
-- UPDATE ... WHERE CURRENT OF a cursor that locked its rows
BEGIN;
DECLARE ch CURSOR FOR SELECT k FROM h.t WHERE k < 3 ORDER BY k FOR UPDATE;
DECLARE ce CURSOR FOR SELECT k FROM e.t WHERE k < 3 ORDER BY k FOR UPDATE;
MOVE 2 IN ch;
MOVE 2 IN ce;
WITH h AS (UPDATE h.t SET txt = 'current' WHERE CURRENT OF ch RETURNING :cols),
     e AS (UPDATE e.t SET txt = 'current' WHERE CURRENT OF ce RETURNING :cols)
:compare;
COMMIT;
-- after VACUUM FREEZE
VACUUM (FREEZE) h.t;
VACUUM (FREEZE) e.t;
WITH h AS (SELECT :cols FROM h.t), e AS (SELECT :cols FROM e.t) :compare;

-- BEFORE ROW triggers that change NEW: the executor stores the returned
-- row in the slot as virtual values (no tuple) before it is written
CREATE FUNCTION sc.bump() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN NEW.v := NEW.v + 1000; RETURN NEW; END $$;
CREATE TRIGGER bump BEFORE INSERT OR UPDATE ON h.t FOR EACH ROW EXECUTE FUNCTION sc.bump();
CREATE TRIGGER bump BEFORE INSERT OR UPDATE ON e.t FOR EACH ROW EXECUTE FUNCTION sc.bump();
BEGIN;
WITH h AS (INSERT INTO h.t VALUES (8, 8, 'eight') RETURNING :cols, v),
     e AS (INSERT INTO e.t VALUES (8, 8, 'eight') RETURNING :cols, v)
SELECT k, h.s AS heap, e.s AS encrypted_heap, h.v, h.r IS NOT DISTINCT FROM e.r AND h.v = e.v AS same
  FROM h FULL JOIN e USING (k) ORDER BY k;
WITH h AS (UPDATE h.t SET txt = 'eins' WHERE k = 1 RETURNING :cols, v),
     e AS (UPDATE e.t SET txt = 'eins' WHERE k = 1 RETURNING :cols, v)
SELECT k, h.s AS heap, e.s AS encrypted_heap, h.v, h.r IS NOT DISTINCT FROM e.r AND h.v = e.v AS same
  FROM h FULL JOIN e USING (k) ORDER BY k;
COMMIT;
DROP TRIGGER bump ON h.t;
DROP TRIGGER bump ON e.t;

-- Partitions: routing with and without a tuple conversion, and an UPDATE
-- that moves rows between partitions (delete, then insert).  A routed
-- row without conversion stays in the partitioned table's virtual slot,
-- where only ctid and tableoid exist (heap's partitions alike).
BEGIN;
WITH h AS (INSERT INTO h.p VALUES (1, 1, 'one'), (101, 101, 'hundred one') RETURNING k, ctid::text AS s, ctid::text || tableoid::regclass::text AS r),
     e AS (INSERT INTO e.p VALUES (1, 1, 'one'), (101, 101, 'hundred one') RETURNING k, ctid::text AS s, ctid::text || tableoid::regclass::text AS r)
SELECT k, h.s AS heap, e.s AS encrypted_heap, replace(h.r, 'h.', '') = replace(e.r, 'e.', '') AS same FROM h FULL JOIN e USING (k) ORDER BY k;
WITH h AS (INSERT INTO h.p VALUES (102, 102, 'hundred two') RETURNING :cols),
     e AS (INSERT INTO e.p VALUES (102, 102, 'hundred two') RETURNING :cols)
:compare;
SAVEPOINT virtual;
INSERT INTO h.p VALUES (2, 2, 'two') RETURNING xmin;
ROLLBACK TO virtual;
INSERT INTO e.p VALUES (2, 2, 'two') RETURNING xmin;
ROLLBACK TO virtual;
-- moved into p2 (converted): every system column
WITH h AS (UPDATE h.p SET k = k + 150 WHERE k = 1 RETURNING :cols),
     e AS (UPDATE e.p SET k = k + 150 WHERE k = 1 RETURNING :cols)
:compare;
-- moved into p1: ctid and tableoid (the root's slot)
WITH h AS (UPDATE h.p SET k = k - 100 WHERE k = 101 RETURNING k, ctid::text AS s, ctid::text || tableoid::regclass::text AS r),
     e AS (UPDATE e.p SET k = k - 100 WHERE k = 101 RETURNING k, ctid::text AS s, ctid::text || tableoid::regclass::text AS r)
SELECT k, h.s AS heap, e.s AS encrypted_heap, replace(h.r, 'h.', '') = replace(e.r, 'e.', '') AS same FROM h FULL JOIN e USING (k) ORDER BY k;
WITH h AS (SELECT :cols FROM h.p), e AS (SELECT :cols FROM e.p) :compare;
COMMIT;

-- COPY (multi-insert), each twin in a transaction of its own (same
-- command ids), compared by a scan in each
CREATE TEMP TABLE copied (am text, k int, s text, r text);
BEGIN;
COPY h.t FROM stdin;
20	20	twenty
21	21	\N
22	22	twenty-two
\.
INSERT INTO copied SELECT 'h', :cols FROM h.t WHERE k >= 20;
COMMIT;
BEGIN;
COPY e.t FROM stdin;
20	20	twenty
21	21	\N
22	22	twenty-two
\.
INSERT INTO copied SELECT 'e', :cols FROM e.t WHERE k >= 20;
COMMIT;
WITH h AS (SELECT k, s, r FROM copied WHERE am = 'h'), e AS (SELECT k, s, r FROM copied WHERE am = 'e')
SELECT k, h.s AS heap, e.s AS encrypted_heap, h.s = e.s AS same FROM h FULL JOIN e USING (k) ORDER BY k;

DROP SCHEMA h, e, sc CASCADE;
