# bsoncrypt is valgrind-clean inside a real backend: a single-user postgres
# runs the BSON type, key vault, field encryption and encrypted_heap paths
# (including logical decoding through the bsoncrypt output plugin) and the
# encrypted_btree index access method (sealed keys opened at every comparison) under
# memcheck,
# and any error (invalid read/write, use of uninitialised memory reaching a
# syscall, e.g. a data page write) fails the test.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

if (system('valgrind --version >/dev/null 2>&1') != 0)
{
	plan skip_all => 'valgrind is not installed';
}
my $src = $ENV{BSONCRYPT_SRC} // '.';
# wal_level = logical: the workload decodes its own changes through the
# bsoncrypt output plugin (and is refused through test_decoding)
my $plugins = `postgres --describe-config` =~ /^output_plugin_libraries\t/m
  ? "output_plugin_libraries = 'pgoutput, test_decoding, bsoncrypt'\n" : '';
my $node = bsoncrypt_node('valgrind', conf => "wal_level = logical\n$plugins");

my $script = $node->basedir . '/script.sql';
open my $sf, '>', $script or die;
print $sf <<'SQL';
CREATE EXTENSION bsoncrypt;
SET search_path = bsoncrypt, public;
SELECT create_data_key('local', '{vg}');
CREATE TABLE t AS SELECT ('{"_id": ' || g || ', "s": "' || repeat('x', g % 300) || '", "d": {"a": [1, 2.5, {"b": "c"}]}, "n": {"$numberLong": "' || g || '"}}')::bson AS doc FROM generate_series(1, 300) g;
SELECT count(decrypt(encrypt_fields(doc, '{s, d.a.2.b, d, n}', 'vg', 'random'))) FROM t;
SELECT count(decrypt_field(encrypt_field(doc, 's', 'vg', 'deterministic'), 's')) FROM t;
SELECT count(encrypt_field(doc, 's', 'vg', 'deterministic') ~>> 's') FROM t;
CREATE TABLE e AS SELECT encrypt_field(doc, 's', 'vg', 'deterministic') AS doc FROM t;
CREATE INDEX ON e ((doc -> 's'));
SELECT count(*) FROM e WHERE doc -> 's' = '{"": "xxx"}'::bson ## 'vg';
SELECT count(doc::text::bson) + count(bson_to_json(doc, true)) + count((doc -> 'd')::bytea::bson) FROM t;
SELECT count(*) FROM t, bson_object_keys(doc) k;
SELECT '{"x": 1, "y": [true, null, "z"]}'::bson::jsonb::bson::text;
SELECT '\x0f0000000261ff0002000000610000'::bytea::bson;
SELECT decrypt_value(set_byte(encrypt_value('{"": "s"}', 'vg')::bytea, 40, 0)::bson);
SELECT 'made' FROM pg_create_logical_replication_slot('vg', 'bsoncrypt');
SELECT 'made' FROM pg_create_logical_replication_slot('vgtd', 'test_decoding');
CREATE TABLE enc (id int PRIMARY KEY, doc bson, note text) USING encrypted_heap;
INSERT INTO enc SELECT g, doc, repeat(md5(g::text), g % 90) FROM t, generate_series(1, 1) g0, LATERAL (SELECT (doc ->> '_id')::int AS g) s;
UPDATE enc SET note = note || 'x' WHERE id % 3 = 0;
UPDATE enc SET id = id + 1000 WHERE id % 7 = 0;
DELETE FROM enc WHERE id % 11 = 0;
CREATE INDEX ON enc ((doc -> 's'));
SELECT count(*), sum(length(note)) FROM enc WHERE doc ->> 's' IS NOT NULL;
VACUUM FULL enc;
SELECT count(*) FROM enc, bson_object_keys(doc) k;
SET enable_seqscan = off;
SELECT id FROM enc WHERE id = 42;
SELECT length(note) FROM enc WHERE id BETWEEN 40 AND 60 FOR UPDATE;
RESET enable_seqscan;
SELECT count(e.*::text), max(xmin::text) FROM enc e WHERE id % 5 = 0;
WITH m AS MATERIALIZED (SELECT * FROM enc) SELECT count(*), sum(length(note)) FROM m;
INSERT INTO enc VALUES (5000, NULL, 'r') RETURNING xmin = pg_current_xact_id()::xid AS syscols_ok, xmax, cmin, cmax, ctid;
UPDATE enc SET note = note || 'r' WHERE id = 5000 RETURNING xmin = pg_current_xact_id()::xid AS syscols_ok, xmax, cmin;
INSERT INTO enc VALUES (5001, NULL, 'a'), (5001, NULL, 'b') ON CONFLICT (id) DO UPDATE SET note = 'c';
CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := NEW.note || '+'; RETURN NEW; END $$;
CREATE TRIGGER bump BEFORE INSERT ON enc FOR EACH ROW EXECUTE FUNCTION bump();
INSERT INTO enc VALUES (5002, NULL, 't') RETURNING xmin = pg_current_xact_id()::xid AS syscols_ok, xmax, cmin, note;
DROP TRIGGER bump ON enc;
COPY enc (id, note) FROM PROGRAM 'seq 6000 6050 | sed "s/$/\tcopied/"';
BEGIN;
DECLARE c SCROLL CURSOR FOR SELECT id, note FROM enc;
FETCH 20 FROM c;
FETCH BACKWARD 5 FROM c;
UPDATE enc SET note = 'cursor' WHERE CURRENT OF c;
COMMIT;
CREATE TEMP TABLE tenc (id int, note text) USING encrypted_heap;
INSERT INTO tenc SELECT id, note FROM enc;
SELECT count(*), sum(length(note)) FROM tenc;
TRUNCATE tenc;
DROP TABLE tenc;
CREATE TABLE gone (t text) USING encrypted_heap;
INSERT INTO gone VALUES ('x');
TRUNCATE gone;
DROP TABLE gone;
SET bsoncrypt.encrypt_indexes = on;
SET jit = off;
CREATE TABLE ebt (id int PRIMARY KEY, email text UNIQUE, doc bson) USING encrypted_heap;
INSERT INTO ebt SELECT g, md5(g::text) || '@example.com', ('{"k": ' || g || '}')::bson FROM generate_series(1, 2000) g;
CREATE INDEX ebt_doc ON ebt (doc);
SET enable_seqscan = off;
SELECT count(*) AS ebt_found FROM ebt WHERE id = 42 OR email = md5('7') || '@example.com';
SELECT sum(id) AS ebt_range FROM ebt WHERE id BETWEEN 100 AND 200;
SELECT id AS ebt_doc FROM ebt WHERE doc = '{"k": 5}'::bson;
SELECT string_agg(id::text, ',') AS ebt_top FROM (SELECT id FROM ebt ORDER BY id DESC LIMIT 3) s;
SET enable_hashjoin = off;
SET enable_mergejoin = off;
SELECT count(*) AS ebt_joined FROM ebt a JOIN ebt b ON b.id = a.id + 1 JOIN ebt c ON c.id = b.id + 1 JOIN ebt d ON d.id = c.id + 1 JOIN ebt f ON f.id = d.id + 1 JOIN ebt g ON g.id = f.id + 1 WHERE a.id < 50;
RESET enable_hashjoin;
RESET enable_mergejoin;
SELECT count(*) AS ebt_mixed FROM ebt WHERE id > 10::int8 AND id >= 12 AND id < 40::int2 AND id < 30;
BEGIN;
DECLARE ebt_c CURSOR FOR SELECT id AS ebt_cursor FROM ebt WHERE id > 1990 ORDER BY id;
FETCH 1 FROM ebt_c;
SELECT id AS ebt_meanwhile FROM ebt WHERE id = 77;
FETCH 1 FROM ebt_c;
COMMIT;
SELECT id / (id - 1995) FROM ebt WHERE id > 1990 ORDER BY id;
INSERT INTO ebt VALUES (42, 'dup', NULL);
INSERT INTO ebt VALUES (3000, md5('3') || '@example.com', NULL) ON CONFLICT (email) DO NOTHING;
DELETE FROM ebt WHERE id % 3 = 0;
VACUUM ebt;
SELECT encrypted_index_check('ebt_pkey') AS ebt_checked;
RESET enable_seqscan;
RESET jit;
RESET bsoncrypt.encrypt_indexes;
SET bsoncrypt.logical_decoding_plugin = 'test_decoding';
SELECT count(*) AS decoded FROM pg_logical_slot_get_changes('vg', NULL, NULL) WHERE data LIKE 'table %.enc: %';
SELECT count(*) FROM pg_logical_slot_get_changes('vgtd', NULL, NULL);
SELECT pg_drop_replication_slot(s) FROM unnest(ARRAY['vg', 'vgtd']) s;
SELECT get_keys();
SELECT import_key(k) FROM (SELECT get_key(_id) AS k FROM key_vault) s;
SELECT delete_key(_id) FROM key_vault;
CHECKPOINT;
SQL
close $sf;

my $log = $node->basedir . '/valgrind.log';
my $supp = "$src/t/helpers/valgrind.supp";
my $pgdata = $node->data_dir;
my $rc = system("valgrind -q --error-exitcode=42 --suppressions=$supp --log-file=$log "
	  . "postgres --single -D $pgdata postgres < $script > " . $node->basedir . "/out.txt 2>&1");
my $errors = -s $log ? slurp_file($log) : '';
is($rc >> 8, 0, 'no memcheck errors in a backend running bsoncrypt') or diag($errors);
my $out = slurp_file($node->basedir . '/out.txt');
like($out, qr/count = "300"/, 'the workload ran');
like($out, qr/ERROR:  invalid BSON in bytea to bson cast: field name is not valid UTF-8/, 'error paths ran too');
like($out, qr/authentication failed/, 'tamper path ran too');
like($out, qr/sum = "\d+"/, 'the encrypted_heap workload ran');
like($out, qr/ERROR:  ON CONFLICT DO UPDATE command cannot affect row a second time/,
	'ON CONFLICT read the system columns of a row it could not lock');
like($out, qr/syscols_ok = "t"/, 'system columns were read after writes');
unlike($out, qr/syscols_ok = "f"/, 'system columns after writes are the stored ones');
like($out, qr/decoded = "[1-9]\d*"/, 'the bsoncrypt output plugin decoded the changes of enc');
like($out, qr/ebt_found = "2"/, 'the encrypted_btree workload ran: lookups through encrypted indexes');
like($out, qr/ebt_range = "15150"/, 'encrypted_btree: a range scan');
like($out, qr/ebt_top = "2000,1999,1998"/, 'encrypted_btree: a backward scan');
like($out, qr/duplicate key value violates unique constraint "ebt_pkey"/, 'encrypted_btree: a unique violation');
like($out, qr/ebt_joined = "49"/, 'encrypted_btree: six scans open at once, rescanned (their states handed on)');
like($out, qr/ebt_mixed = "18"/, 'encrypted_btree: keys of several types on one column');
like($out, qr/ebt_cursor = "1992"/, 'encrypted_btree: a cursor\'s scan open across another scan');
like($out, qr/division by zero/, 'encrypted_btree: a scan ended by an error');
like($out, qr/ebt_checked = "1334"/, 'encrypted_btree: encrypted_index_check after VACUUM');
like($out, qr/ERROR:  replication slot "vgtd" cannot decode encrypted_heap tables/, 'test_decoding was refused');
my @other_errors = grep { /ERROR:.*(encrypted_heap|enc\b|gone)/ && !/slot "vgtd"/ } split /\n/, $out;
is(scalar(@other_errors), 0, 'without other errors') or diag(join("\n", @other_errors));
done_testing();
