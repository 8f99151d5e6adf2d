# Logical decoding of encrypted_heap tables.  Heap's WAL records hold the
# tables' ciphertext, so:
#   - a slot of another output plugin is refused with an error when it meets
#     an encrypted table (before, test_decoding crashed the server on jsonb
#     ciphertext); pgoutput only while a publication publishes one;
#   - a slot of the "bsoncrypt" output plugin hands the wrapped plugin
#     (test_decoding here, pgoutput for the subscription) decrypted changes:
#     TOASTed values, unchanged TOAST, a table made in the decoded
#     transaction, TRUNCATE; no rows of bsoncrypt.relation_keys;
#   - a real subscription through such a slot replicates plaintext into a
#     subscriber whose table is encrypted with its own keys, also a
#     transaction streamed while in progress.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $pub = bsoncrypt_node('ld_pub', init => { allows_streaming => 'logical' }, key_file => random_master_key());
$pub->start;
allow_bsoncrypt_output_plugin($pub);

my $big = q{(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 400) g)};    # 12.8 kB, TOASTed
$pub->safe_psql('postgres', qq{
CREATE EXTENSION bsoncrypt;
CREATE TABLE t (id int PRIMARY KEY, j jsonb, s text, b bytea, n numeric, big text) USING encrypted_heap;
CREATE TABLE h (id int PRIMARY KEY, s text) USING heap;
CREATE PUBLICATION ph FOR TABLE h;
SELECT pg_create_logical_replication_slot('td', 'test_decoding');
SELECT pg_create_logical_replication_slot('po', 'pgoutput');
SELECT pg_create_logical_replication_slot('bc', 'bsoncrypt');
INSERT INTO t VALUES (1, '{"m": "MARKER-jsonb"}', 'MARKER-text', 'MARKER-bytea', 12.5, $big);
INSERT INTO h VALUES (1, 'plain heap row');
});

# another plugin: refused, with an error naming the slot and the plugin
my ($rc, $out, $err) = $pub->psql('postgres', q{SELECT data FROM pg_logical_slot_peek_changes('td', NULL, NULL)},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($rc, 0, 'test_decoding slot: decoding an encrypted table fails');
like($err, qr/0A000: replication slot "td" cannot decode encrypted_heap tables with output plugin "test_decoding"/,
	'... with feature_not_supported naming slot and plugin');
like($err, qr/HINT:  Create the slot with output plugin "bsoncrypt"/, '... and a hint');
unlike($err, qr/MARKER/, '... no value in the message');
is($pub->safe_psql('postgres', 'SELECT 1'), '1', 'the server is still up');

# the same with the table's cache entry in use when decoding starts (an
# open cursor): the entry is rebuilt before the historic snapshot exists
($rc, $out, $err) = $pub->psql('postgres', q{
BEGIN;
DECLARE c CURSOR FOR SELECT * FROM t;
FETCH 1 FROM c;
SELECT data FROM pg_logical_slot_peek_changes('td', NULL, NULL);
});
like($err, qr/replication slot "td" cannot decode encrypted_heap tables/, '... also with the table in use by a cursor');

# pgoutput while no publication publishes an encrypted table: decodes (h only)
like($pub->safe_psql('postgres', q{SELECT count(*) FROM pg_logical_slot_peek_binary_changes('po', NULL, NULL,
	'proto_version', '1', 'publication_names', 'ph')}), qr/^[1-9]/, 'pgoutput slot, heap-only publication: decodes');

# the bsoncrypt plugin wrapping test_decoding: plaintext
$pub->safe_psql('postgres', qq{
BEGIN;
CREATE TABLE t2 (id int, s text) USING encrypted_heap;
INSERT INTO t2 VALUES (1, 'MARKER-same-transaction');
COMMIT;
UPDATE t SET s = 'MARKER-updated' WHERE id = 1;   -- big stays: unchanged TOAST
BEGIN; TRUNCATE t2; INSERT INTO t2 VALUES (2, 'MARKER-after-truncate'); COMMIT;
DELETE FROM t WHERE id = 1;
});
my $decoded = $pub->safe_psql('postgres', q{
SET bsoncrypt.logical_decoding_plugin = 'test_decoding';
SELECT data FROM pg_logical_slot_peek_changes('bc', NULL, NULL);
});
my $bigval = $pub->safe_psql('postgres', "SELECT $big");
like($decoded, qr/table public\.t: INSERT: id\[integer\]:1 j\[jsonb\]:'\{"m": "MARKER-jsonb"\}' s\[text\]:'MARKER-text' b\[bytea\]:'\\x4d41524b45522d6279746561' n\[numeric\]:12\.5 big\[text\]:'\Q$bigval\E'/,
	'bsoncrypt slot: the insert decrypted, TOASTed value included');
like($decoded, qr/table public\.h: INSERT: id\[integer\]:1 s\[text\]:'plain heap row'/, '... heap tables as before');
like($decoded, qr/table public\.t2: INSERT: id\[integer\]:1 s\[text\]:'MARKER-same-transaction'/,
	'... a table made in the decoded transaction (its key too)');
like($decoded, qr/table public\.t: UPDATE: .*s\[text\]:'MARKER-updated' .*big\[text\]:unchanged-toast-datum/,
	'... an update; the untouched TOASTed value stays "unchanged"');
like($decoded, qr/table public\.t2: TRUNCATE.*\n.*table public\.t2: INSERT: id\[integer\]:2 s\[text\]:'MARKER-after-truncate'/,
	'... TRUNCATE, then the new file\'s key');
like($decoded, qr/table public\.t: DELETE: id\[integer\]:1/, '... a delete');
unlike($decoded, qr/relation_key/, '... and no change of bsoncrypt.relation_keys or relation_key_uses');

($rc, $out, $err) = $pub->psql('postgres', q{
SET bsoncrypt.logical_decoding_plugin = 'bsoncrypt';
SELECT data FROM pg_logical_slot_peek_changes('bc', NULL, NULL);
});
like($err, qr/bsoncrypt\.logical_decoding_plugin must name another output plugin/, 'the plugin cannot wrap itself');
$pub->safe_psql('postgres', q{CREATE ROLE app LOGIN});
($rc, $out, $err) = $pub->psql('postgres', q{SET bsoncrypt.logical_decoding_plugin = 'test_decoding'},
	extra_params => [ '-U', 'app' ]);
like($err, qr/permission denied to set parameter/, 'only superusers choose the wrapped plugin');

# pgoutput and the ways a publication can publish an encrypted table:
# a whole schema, a partitioned table whose partition is encrypted
sub pgoutput_refusal
{
	my ($slot, $sql) = @_;
	$pub->safe_psql('postgres', qq{SELECT 'made' FROM pg_create_logical_replication_slot('$slot', 'pgoutput'); $sql});
	my ($rc, $out, $err) = $pub->psql('postgres', qq{SELECT count(*) FROM pg_logical_slot_peek_binary_changes('$slot', NULL, NULL,
		'proto_version', '1', 'publication_names', 'ph')});
	$pub->safe_psql('postgres', qq{SELECT pg_drop_replication_slot('$slot')});
	return $err;
}
like(pgoutput_refusal('po_schema', q{
CREATE SCHEMA sch;
CREATE TABLE sch.e (x text) USING encrypted_heap;
CREATE PUBLICATION psch FOR TABLES IN SCHEMA sch;
INSERT INTO sch.e VALUES ('x');
}), qr/Encrypted tables are published \(e\.g\. "e"\)/, 'pgoutput refused: a schema publication with an encrypted table');
like(pgoutput_refusal('po_part', q{
DROP PUBLICATION psch;
CREATE TABLE parts (id int, x text) PARTITION BY RANGE (id);
CREATE TABLE parts_1 PARTITION OF parts FOR VALUES FROM (0) TO (100) USING encrypted_heap;
CREATE PUBLICATION pparts FOR TABLE parts;
INSERT INTO parts VALUES (1, 'x');
}), qr/Encrypted tables are published \(e\.g\. "parts_1"\)/, '... a published partitioned table with an encrypted partition');
is(pgoutput_refusal('po_none', q{
DROP PUBLICATION pparts;
INSERT INTO parts VALUES (2, 'y');
INSERT INTO sch.e VALUES ('y');
}), '', '... and not once those publications are gone');

# pgoutput once a publication publishes an encrypted table: refused
$pub->safe_psql('postgres', q{
CREATE PUBLICATION p FOR TABLE t;
INSERT INTO t VALUES (2, '{}', 'two', NULL, 2, NULL);
});
($rc, $out, $err) = $pub->psql('postgres', q{SELECT count(*) FROM pg_logical_slot_peek_binary_changes('po', NULL, NULL,
	'proto_version', '1', 'publication_names', 'ph')});
like($err, qr/replication slot "po" cannot decode encrypted_heap tables with output plugin "pgoutput"\nDETAIL:  Encrypted tables are published \(e\.g\. "\w+"\)/,
	'pgoutput slot once encrypted tables are published: refused, naming one');
$pub->safe_psql('postgres', q{
SELECT pg_drop_replication_slot(s) FROM unnest(ARRAY['td', 'po', 'bc']) s;
DELETE FROM t;
});

# a subscription through a bsoncrypt slot
my $sub = bsoncrypt_node('ld_sub', key_file => random_master_key());
$sub->start;
$sub->safe_psql('postgres', q{
CREATE EXTENSION bsoncrypt;
CREATE TABLE t (id int PRIMARY KEY, j jsonb, s text, b bytea, n numeric, big text) USING encrypted_heap;
});
$pub->safe_psql('postgres', qq{
INSERT INTO t SELECT g, jsonb_build_object('g', g, 'tag', 'before'), 'row ' || g, int4send(g), g / 7.0, NULL
  FROM generate_series(1, 100) g;
SELECT pg_create_logical_replication_slot('sub_slot', 'bsoncrypt');
});
my $connstr = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres', qq{
CREATE SUBSCRIPTION s CONNECTION '$connstr' PUBLICATION p WITH (create_slot = false, slot_name = 'sub_slot');
});
$sub->wait_for_subscription_sync($pub, 's');
$pub->safe_psql('postgres', qq{
INSERT INTO t SELECT g, jsonb_build_object('g', g, 'tag', 'after'), 'row ' || g, int4send(g), g / 7.0,
  CASE WHEN g % 10 = 0 THEN $big END
  FROM generate_series(101, 300) g;
UPDATE t SET s = s || ' updated', j = j || '{"u": true}' WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0 AND id < 50;
});
$pub->wait_for_catchup('s');
my $digest = q{SELECT count(*), md5(string_agg(t::text, '|' ORDER BY id)) FROM t};
my $pub_digest = $pub->safe_psql('postgres', $digest);
is($sub->safe_psql('postgres', $digest), $pub_digest, 'subscriber has the publisher\'s plaintext rows');
like($pub_digest, qr/^291\|/, '... all 291 of them');
is($sub->safe_psql('postgres', q{SELECT count(*) FROM t WHERE big IS NOT NULL AND s LIKE '% updated'}),
	$pub->safe_psql('postgres', q{SELECT count(*) FROM t WHERE big IS NOT NULL AND s LIKE '% updated'}),
	'... TOASTed values kept through updates that did not touch them');
# writes during a new table synchronization: its catch-up decodes with a
# pgoutput slot (PostgreSQL makes it so) in the walsender that ran the
# COPY; refused with an error, never ciphertext.  A subscriber trigger
# that sleeps keeps the copy open while the publisher writes.
$pub->safe_psql('postgres', q{
CREATE TABLE t3 (id int PRIMARY KEY, j jsonb) USING encrypted_heap;
INSERT INTO t3 SELECT g, jsonb_build_object('g', g) FROM generate_series(1, 20) g;
ALTER PUBLICATION p ADD TABLE t3;
});
$sub->safe_psql('postgres', q{
CREATE TABLE t3 (id int PRIMARY KEY, j jsonb) USING encrypted_heap;
CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.1); RETURN NEW; END $$;
CREATE TRIGGER slow BEFORE INSERT ON t3 FOR EACH ROW EXECUTE FUNCTION slow();
ALTER TABLE t3 ENABLE ALWAYS TRIGGER slow;
ALTER SUBSCRIPTION s REFRESH PUBLICATION;
});
my $log_offset = -s $pub->logfile;
# the sync slot exists, so the copy's snapshot is taken: this row is not in
# the copy (20 rows at 0.1 s each) but in its catch-up
$pub->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name LIKE 'pg\_%\_sync\_%'})
  or die 'no table sync slot';
$pub->safe_psql('postgres', q{INSERT INTO t3 VALUES (21, '{"during": "copy"}')});
my $refused = qr/replication slot "pg_\d+_sync_\d+_\d+" cannot decode encrypted_heap tables with output plugin "pgoutput"/;
$log_offset = $pub->wait_for_log($refused, $log_offset);
ok($log_offset, 'table synchronization with writes during the copy: its pgoutput catch-up is refused');
is($pub->safe_psql('postgres', 'SELECT 1'), '1', '... the publisher is up');
$pub->wait_for_log($refused, $log_offset);
is($sub->safe_psql('postgres', q{SELECT count(*), count(*) FILTER (WHERE j ? 'during') FROM t3}), '20|0',
	'... refused again on retry: the copy arrived, the write during it did not');
# it retries (and fails) until the table leaves the subscription
$pub->safe_psql('postgres', q{ALTER PUBLICATION p DROP TABLE t3});
$sub->safe_psql('postgres', q{ALTER SUBSCRIPTION s REFRESH PUBLICATION});

# a transaction larger than logical_decoding_work_mem, streamed while in
# progress (the stream change callback)
$pub->safe_psql('postgres', q{ALTER SYSTEM SET logical_decoding_work_mem = '64kB'});
$pub->reload;
$sub->safe_psql('postgres', q{ALTER SUBSCRIPTION s SET (streaming = on)});
$pub->safe_psql('postgres', q{
INSERT INTO t SELECT g, jsonb_build_object('g', g, 'tag', 'streamed'), repeat('s', 200), NULL, g, NULL
  FROM generate_series(1001, 3000) g;
});
$pub->wait_for_catchup('s');
$pub_digest = $pub->safe_psql('postgres', $digest);
like($pub_digest, qr/^2291\|/, 'a streamed transaction of 2000 rows');
is($sub->safe_psql('postgres', $digest), $pub_digest, '... reaches the subscriber decrypted');
is($pub->safe_psql('postgres', q{SELECT stream_txns > 0 FROM pg_stat_replication_slots WHERE slot_name = 'sub_slot'}),
	't', '... and was streamed');

$sub->stop;

# a TRUNCATE that includes bsoncrypt.relation_keys (and relation_key_uses,
# whose rows reference it) reaches the plugin without them (last: this
# destroys the publisher's keys)
my $truncated = $pub->safe_psql('postgres', q{
SELECT 'made' FROM pg_create_logical_replication_slot('bc2', 'bsoncrypt');
TRUNCATE h, bsoncrypt.relation_keys, bsoncrypt.relation_key_uses;
SET bsoncrypt.logical_decoding_plugin = 'test_decoding';
SELECT data FROM pg_logical_slot_get_changes('bc2', NULL, NULL);
});
like($truncated, qr/table public\.h: TRUNCATE/, 'TRUNCATE of h and relation_keys: h\'s truncate is decoded');
unlike($truncated, qr/relation_key/, '... relation_keys and relation_key_uses left out');
$pub->stop;
done_testing();
