# At-rest encryption of indexes (encrypted_btree): with
# bsoncrypt.encrypt_indexes on, the btree indexes of an encrypted_heap table
# (primary key, unique constraint, expression, multi-column, a bson key as
# DocumentDB's collection_pk_N has, and TOASTed keys) hold no plaintext: the
# distinctive markers written into the indexed columns appear nowhere in the
# index files or in the WAL written meanwhile (btree insert and split
# records, full-page images, REINDEX and VACUUM).  The same schema on a heap
# table (plain btree indexes) shows the markers in its index files and in
# WAL, so the search itself works.  When DocumentDB is installed, its
# collections created under encrypted_heap get encrypted _id indexes that
# DocumentDB's reads, writes and index creation work through (skipped
# otherwise: "skipped: DocumentDB is not installed").
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $node = bsoncrypt_node('index_markers', init => { allows_streaming => 1 }, conf => qq{
autovacuum = off
full_page_writes = on
wal_level = replica
bsoncrypt.encrypt_indexes = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION bsoncrypt');

for my $am ('encrypted_heap', 'heap')
{
	my $table = $am eq 'heap' ? 'plain' : 'enc';
	$node->safe_psql('postgres', qq{
CREATE TABLE $table (id text PRIMARY KEY, email text UNIQUE, a text, b int,
                     shard bigint, doc bsoncrypt.bson, big text) USING $am;
CREATE INDEX ${table}_expr ON $table (lower(a));
CREATE INDEX ${table}_multi ON $table (a, b);
CREATE UNIQUE INDEX ${table}_doc ON $table (shard, doc);
CREATE INDEX ${table}_big ON $table (big);
});
}

is($node->safe_psql('postgres', q{
SELECT string_agg(DISTINCT a.amname, ',') FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
 WHERE i.indrelid = 'enc'::regclass}), 'encrypted_btree',
	'every index of the encrypted table is encrypted_btree');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_index WHERE indrelid = 'enc'::regclass}), '6', 'six indexes');

# rows whose indexed values carry the marker MRK<tag>_<kind>_<n>; the big
# key (TOASTed: compressed in the index tuple) starts with its marker
sub fill
{
	my ($table, $tag, $from, $to) = @_;
	my $m = "MRK${tag}";
	return qq{
INSERT INTO $table
SELECT '${m}_PK_' || g, '${m}_UNIQ_' || g || '\@example.com', '${m}_MULTI_' || g, g,
       g % 4, bsoncrypt.bson_from_jsonb(jsonb_build_object('_id', '${m}_BSON_' || g)),
       '${m}_BIG_' || g || repeat('-${m}-padding', 300)
  FROM generate_series($from, $to) g;
};
}

# the first rows, then a checkpoint: the next changes of each index page
# write full-page images
$node->safe_psql('postgres', fill('enc', 'ENC', 1, 200) . fill('plain', 'PLN', 1, 200));
$node->safe_psql('postgres', 'CHECKPOINT');
my $wal_start = $node->safe_psql('postgres', 'SELECT pg_walfile_name(pg_current_wal_insert_lsn())');
$node->safe_psql('postgres', fill('enc', 'ENC', 201, 2000) . fill('plain', 'PLN', 201, 2000));
$node->safe_psql('postgres', q{
UPDATE enc SET a = a || '_UPD', email = 'MRKENC_UPD_' || email WHERE b % 10 = 0;
UPDATE plain SET a = a || '_UPD', email = 'MRKPLN_UPD_' || email WHERE b % 10 = 0;
DELETE FROM enc WHERE b % 7 = 0;
DELETE FROM plain WHERE b % 7 = 0;
VACUUM enc; VACUUM plain;
REINDEX INDEX enc_multi; REINDEX INDEX plain_multi;
CHECKPOINT;
});
my $wal_end = $node->safe_psql('postgres', 'SELECT pg_walfile_name(pg_current_wal_insert_lsn())');

# the encrypted indexes answer through their keys
$node->safe_psql('postgres', 'SET enable_seqscan = off');
is($node->safe_psql('postgres', q{
SET enable_seqscan = off; SET enable_bitmapscan = off;
SELECT b FROM enc WHERE id = 'MRKENC_PK_78'
UNION ALL SELECT b FROM enc WHERE email = 'MRKENC_UPD_MRKENC_UNIQ_80@example.com'
UNION ALL SELECT b FROM enc WHERE lower(a) = 'mrkenc_multi_81'
UNION ALL SELECT b FROM enc WHERE a = 'MRKENC_MULTI_82' AND b = 82
UNION ALL SELECT b FROM enc WHERE shard = 83 % 4 AND doc OPERATOR(bsoncrypt.=) bsoncrypt.bson_from_jsonb('{"_id": "MRKENC_BSON_83"}')
UNION ALL SELECT b FROM enc WHERE big = 'MRKENC_BIG_85' || repeat('-MRKENC-padding', 300)}),
	"78\n80\n81\n82\n83\n85", 'each encrypted index finds its row');

sub files_of
{
	my ($table) = @_;
	my $datadir = $node->data_dir;
	my @files;
	for my $r (split /\n/, $node->safe_psql('postgres',
		"SELECT indexrelid FROM pg_index WHERE indrelid = '$table'::regclass"))
	{
		my $path = $node->safe_psql('postgres', "SELECT pg_relation_filepath($r)");
		push @files, grep { -f $_ } glob("$datadir/$path $datadir/$path.*");
	}
	return @files;
}

sub wal_files { return wal_segments($node, $wal_start, $wal_end) }

my @enc_files = files_of('enc');
my @plain_files = files_of('plain');
my @wal = wal_files();
is(scalar(@enc_files), 6, 'six encrypted index files to search');
ok(scalar(@wal) >= 1, 'WAL segments to search: ' . scalar(@wal));

# (a compressed key keeps its first 8 bytes literal: "MRKPLN_B")
for my $kind ('PK', 'UNIQ', 'MULTI', 'BSON', 'B', 'UPD')
{
	is(count_in_files("MRKENC_$kind", @enc_files), 0, "no $kind marker in the encrypted index files");
	is(count_in_files("MRKENC_$kind", @wal), 0, "no $kind marker in WAL");
	ok(count_in_files("MRKPLN_$kind", @plain_files) > 0, "heap table: $kind marker found in its index files");
}
is(count_in_files('MRKENC', @enc_files, @wal), 0, 'no marker of the encrypted table anywhere in its index files or WAL');
is(count_in_files('mrkenc_multi', @enc_files, @wal), 0, 'no expression-index marker on disk');
ok(count_in_files('mrkpln_multi', @plain_files) > 0, 'heap table: expression-index marker found');
ok(count_in_files('MRKPLN_PK', @wal) > 0, 'heap table: index markers found in WAL');

# the conversion path of an existing plain index: REINDEX does not change
# an access method; a new encrypted index replaces it
$node->safe_psql('postgres', q{
SET bsoncrypt.encrypt_indexes = off;
CREATE INDEX enc_late ON enc (email);
SET bsoncrypt.encrypt_indexes = on;
CHECKPOINT});
my ($late) = files_of_index('enc_late');
ok(count_in_files('MRKENC_UNIQ', $late) > 0, 'an index made with the setting off is a plain btree');
$node->safe_psql('postgres', q{
CREATE INDEX CONCURRENTLY enc_late_new ON enc (email);
DROP INDEX CONCURRENTLY enc_late;
ALTER INDEX enc_late_new RENAME TO enc_late;
CHECKPOINT});
($late) = files_of_index('enc_late');
is(count_in_files('MRKENC_UNIQ', $late), 0, 'its encrypted replacement holds no marker');

sub files_of_index
{
	my ($index) = @_;
	my $path = $node->safe_psql('postgres', "SELECT pg_relation_filepath('$index')");
	return (grep { -f $_ } glob($node->data_dir . "/$path"));
}

# a standby replays the encrypted indexes' WAL (btree's own redo) and
# answers through them with the replicated relation keys
$node->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('index_markers_standby');
$standby->init_from_backup($node, 'base', has_streaming => 1);
$standby->start;
$node->safe_psql('postgres', q{
INSERT INTO enc SELECT 'MRKENC_PK_S' || g, 'MRKENC_UNIQ_S' || g, 'a', g, g % 4,
       bsoncrypt.bson_from_jsonb(jsonb_build_object('_id', 'S' || g)), 'MRKENC_BIG_S' || g
  FROM generate_series(1, 3000) g;
UPDATE enc SET b = b + 1 WHERE id LIKE 'MRKENC_PK_S1%';
DELETE FROM enc WHERE id LIKE 'MRKENC_PK_S2%';
VACUUM enc});
$node->wait_for_catchup($standby, 'replay');
is($standby->safe_psql('postgres', q{
SET enable_seqscan = off; SET enable_bitmapscan = off;
SELECT (SELECT b FROM enc WHERE id = 'MRKENC_PK_S1234'),
       (SELECT count(*) FROM enc WHERE email >= 'MRKENC_UNIQ_S3' AND email < 'MRKENC_UNIQ_S4'),
       (SELECT count(*) FROM enc WHERE id LIKE 'MRKENC_PK_S2%')}),
	'1235|112|0', 'standby: encrypted indexes answer after replay');
is($standby->safe_psql('postgres', q{
SELECT bool_and(bsoncrypt.encrypted_index_check(indexrelid) > 0) FROM pg_index WHERE indrelid = 'enc'::regclass}),
	't', 'standby: every encrypted index checks out');
$standby->stop;

# DocumentDB (when installed): collections created by DocumentDB's own DDL
# (CREATE TABLE, then ALTER TABLE ... ADD CONSTRAINT collection_pk_N PRIMARY
# KEY (shard_key_value, object_id)) under encrypted_heap get an encrypted
# _id index holding no _id in clear, which DocumentDB's reads, range scans,
# duplicate-key errors and secondary index creation work through.
# bsoncrypt is created after DocumentDB, so that it makes the encrypted
# operator class of documentdb_core.bson itself.  DocumentDB preloads
# pg_cron (its background index builds) with pg_documentdb_core and
# pg_documentdb; pg_cron runs only in cron.database_name, and its jobs run
# in background workers (the test clusters take no TCP connections).
my $sharedir = $node->safe_psql('postgres', q{SELECT setting FROM pg_config WHERE name = 'SHAREDIR'});
SKIP:
{
	if (!-f "$sharedir/extension/documentdb.control")
	{
		diag('skipped: DocumentDB is not installed');
		skip 'skipped: DocumentDB is not installed', 32;
	}
	my $ddb_conf = q{
shared_preload_libraries = 'bsoncrypt, pg_cron, pg_documentdb_core, pg_documentdb'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
};
	# DocumentDB's collection_id of collection db.$coll
	my $collection_id = sub {
		my ($n, $coll) = @_;
		return $n->safe_psql('postgres', qq{
SELECT collection_id FROM documentdb_api_catalog.collections
 WHERE database_name = 'db' AND collection_name = '$coll'});
	};
	my $ddb = bsoncrypt_node('index_markers_documentdb', conf => $ddb_conf);
	$ddb->start;
	$ddb->safe_psql('postgres', q{
CREATE EXTENSION documentdb CASCADE;
CREATE EXTENSION bsoncrypt;
ALTER DATABASE postgres SET default_table_access_method = encrypted_heap;
ALTER DATABASE postgres SET bsoncrypt.encrypt_indexes = on});

	# bsoncrypt recognised DocumentDB's real bson type (t/041 uses a stand-in)
	is($ddb->safe_psql('postgres', q{
SELECT bsoncrypt.bson_to_jsonb('{"a": 1}'::documentdb_core.bson),
       pg_catalog.count(*) FROM pg_catalog.pg_opclass c JOIN pg_catalog.pg_am a ON a.oid = c.opcmethod
 WHERE a.amname = 'encrypted_btree' AND c.opcintype = 'documentdb_core.bson'::regtype AND c.opcdefault}),
		'{"a": 1}|1', 'DocumentDB: casts and the encrypted class of documentdb_core.bson made by CREATE EXTENSION');

	# two collections, each with distinctive _id values
	$ddb->safe_psql('postgres', q{
SELECT documentdb_api.insert_one('db', 'coll',
       FORMAT('{"_id": "MRKDDB_ID_%s", "v": %s, "s": "MRKDDB_SEC_%s"}', g, g, g)::documentdb_core.bson)
  FROM generate_series(1, 200) g;
SELECT documentdb_api.insert_one('db', 'coll2',
       FORMAT('{"_id": "MRKDDB_TWO_%s", "v": %s}', g, g)::documentdb_core.bson)
  FROM generate_series(1, 100) g;
CHECKPOINT});

	# the data table and _id index of a collection
	my $table_of = sub {
		my $id = $collection_id->($ddb, @_);
		return ("documentdb_data.documents_$id", "documentdb_data.collection_pk_$id", $id);
	};
	my ($table, $pk, $id) = $table_of->('coll');
	my ($table2, $pk2) = $table_of->('coll2');
	is($ddb->safe_psql('postgres', qq{
SELECT string_agg(a.amname, ',' ORDER BY c.relname) FROM pg_class c JOIN pg_am a ON a.oid = c.relam
 WHERE c.oid IN ('$table'::regclass, '$pk'::regclass, '$table2'::regclass, '$pk2'::regclass)}),
		'encrypted_btree,encrypted_btree,encrypted_heap,encrypted_heap',
		'DocumentDB: both collections are encrypted_heap with an encrypted_btree _id index');
	my @pk_files = map { $ddb->data_dir . '/' . $ddb->safe_psql('postgres', "SELECT pg_relation_filepath('$_')") }
	  ($pk, $pk2);
	is(count_in_files('MRKDDB_ID', $pk_files[0]), 0, 'DocumentDB: no _id marker in the _id index');
	is(count_in_files('MRKDDB_TWO', $pk_files[1]), 0, 'DocumentDB: no _id marker in the second _id index');
	is($ddb->safe_psql('postgres', "SELECT bsoncrypt.encrypted_index_check('$pk')"), '200',
		'DocumentDB: the _id index checks out (200 entries)');

	# DocumentDB's reads
	is($ddb->safe_psql('postgres', q{
SELECT count(*) FROM documentdb_api.collection('db', 'coll')
 WHERE document OPERATOR(documentdb_api_catalog.@=) '{"_id": "MRKDDB_ID_42"}'}), '1',
		'DocumentDB: _id lookup finds the document');
	is($ddb->safe_psql('postgres', q{
SELECT count(*) FROM documentdb_api.collection('db', 'coll2')
 WHERE document OPERATOR(documentdb_api_catalog.@=) '{"_id": "MRKDDB_TWO_42"}'}), '1',
		'DocumentDB: _id lookup in the second collection');
	# DocumentDB's find pushes an _id filter into the _id index as
	# object_id conditions, whatever the index's access method
	my $find_id = q{SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT document FROM documentdb_api_catalog.bson_aggregation_find('db',
       '{"find": "coll", "filter": {"_id": "MRKDDB_ID_42"}}')};
	like($ddb->safe_psql('postgres', $find_id),
		qr/Index Scan using (_id_|collection_pk_$id) on documents_$id .*\n.*Index Cond: .*object_id OPERATOR\(documentdb_core\.=\)/,
		'DocumentDB: find by _id scans the encrypted _id index for that _id');
	like($ddb->safe_psql('postgres', q{SET enable_seqscan = off;
SELECT documentdb_core.bson_to_json_string(cursorpage)
  FROM documentdb_api.find_cursor_first_page('db', '{"find": "coll", "filter": {"_id": "MRKDDB_ID_42"}}')}),
		qr/"firstBatch" : \[ \{ "_id" : "MRKDDB_ID_42", "v" : \{ "\$numberInt" : "42" \}, "s" : "MRKDDB_SEC_42" \} \]/,
		'DocumentDB: find by _id through the encrypted index');
	like($ddb->safe_psql('postgres', q{
SELECT documentdb_core.bson_to_json_string(cursorpage)
  FROM documentdb_api.find_cursor_first_page('db',
       '{"find": "coll", "filter": {"_id": {"$gte": "MRKDDB_ID_97"}}, "sort": {"_id": -1}, "projection": {"v": 1}}')}),
		qr/"firstBatch" : \[ \{ "_id" : "MRKDDB_ID_99", [^]]*"_id" : "MRKDDB_ID_98", [^]]*"_id" : "MRKDDB_ID_97", [^]]*\]/,
		'DocumentDB: find with an _id range, sorted by _id descending');

	# range and ordered scans of the encrypted _id index itself, with
	# DocumentDB's bson comparisons
	my $range = qq{
SELECT string_agg(j, ',') FROM (
  SELECT documentdb_core.bson_to_json_string(object_id)::text j FROM $table
   WHERE shard_key_value = $id AND object_id OPERATOR(documentdb_core.>) '{"": "MRKDDB_ID_195"}'
     AND object_id OPERATOR(documentdb_core.<=) '{"": "MRKDDB_ID_200"}'
   ORDER BY shard_key_value DESC, object_id DESC) s};
	like($ddb->safe_psql('postgres', "SET enable_seqscan = off; SET enable_bitmapscan = off; EXPLAIN (COSTS OFF) $range"),
		qr/Index Only Scan Backward using (_id_|collection_pk_$id) on documents_$id/,
		'DocumentDB: the _id range query scans the encrypted index backward');
	is($ddb->safe_psql('postgres', "SET enable_seqscan = off; SET enable_bitmapscan = off; $range"),
		'{ "" : "MRKDDB_ID_200" },{ "" : "MRKDDB_ID_20" },{ "" : "MRKDDB_ID_2" },{ "" : "MRKDDB_ID_199" },'
		  . '{ "" : "MRKDDB_ID_198" },{ "" : "MRKDDB_ID_197" },{ "" : "MRKDDB_ID_196" }',
		'DocumentDB: _id range through the encrypted index, in descending order');

	# a duplicate _id: DocumentDB's duplicate key error, nothing inserted
	like($ddb->safe_psql('postgres', q{
SELECT documentdb_core.bson_to_json_string(
       documentdb_api.insert_one('db', 'coll', '{"_id": "MRKDDB_ID_42", "v": -1}'))}),
		qr/"writeErrors" : \[ \{ .*"errmsg" : "Duplicate key violation on the requested collection: Index '_id_'"/,
		'DocumentDB: a duplicate _id gets DocumentDB\'s duplicate key error');
	is($ddb->safe_psql('postgres', q{
SELECT count(*) FROM documentdb_api.collection('db', 'coll')
 WHERE document OPERATOR(documentdb_api_catalog.@=) '{"_id": "MRKDDB_ID_42"}'}), '1',
		'DocumentDB: the duplicate was not inserted');
	like($ddb->safe_psql('postgres', q{
SELECT documentdb_core.bson_to_json_string(
       documentdb_api.insert_one('db', 'coll2', '{"_id": "MRKDDB_ID_42", "v": -1}'))}),
		qr/"n" : \{ "\$numberInt" : "1" \}, "ok"/,
		'DocumentDB: the same _id in another collection is no duplicate');

	# DocumentDB's own secondary index creation on the encrypted collection;
	# its index is documentdb_rum, which bsoncrypt does not encrypt (a limit
	# of docs/at-rest-encryption.md, asserted so that a change is noticed)
	like($ddb->safe_psql('postgres', q{
SELECT documentdb_core.bson_to_json_string(documentdb_api_internal.create_indexes_non_concurrently('db',
       '{"createIndexes": "coll", "indexes": [{"key": {"s": 1}, "name": "s_1"}]}', true))}),
		qr/"numIndexesAfter" : \{ "\$numberInt" : "2" \}.*"ok" : \{ "\$numberInt" : "1" \}/,
		'DocumentDB: createIndexes on an encrypted collection');
	is($ddb->safe_psql('postgres', qq{
SELECT count(*) FROM pg_index WHERE indrelid = '$table'::regclass AND indisvalid}), '2',
		'DocumentDB: the secondary index is built and valid');
	is($ddb->safe_psql('postgres', q{
SET enable_seqscan = off;
SELECT string_agg(documentdb_core.bson_to_json_string(document)::text, ',')
  FROM documentdb_api.collection('db', 'coll')
 WHERE document OPERATOR(documentdb_api_catalog.@=) '{"s": "MRKDDB_SEC_150"}'}),
		'{ "_id" : "MRKDDB_ID_150", "v" : { "$numberInt" : "150" }, "s" : "MRKDDB_SEC_150" }',
		'DocumentDB: a query on the indexed field finds its document');
	my $sec = $ddb->safe_psql('postgres', qq{
SELECT a.amname || '|' || pg_relation_filepath(c.oid) FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
 WHERE i.indrelid = '$table'::regclass AND c.oid <> '$pk'::regclass; CHECKPOINT});
	my ($sec_am, $sec_path) = split /\|/, $sec;
	is($sec_am, 'documentdb_rum', 'DocumentDB: its secondary index is documentdb_rum');
	ok(count_in_files('MRKDDB_SEC', $ddb->data_dir . "/$sec_path") > 0,
		'DocumentDB: a documentdb_rum index holds its terms in clear (documented limit)');
	is($ddb->safe_psql('postgres', qq{
SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.oid = '$pk'::regclass}),
		'encrypted_btree', 'DocumentDB: the _id index is still encrypted_btree');
	is($ddb->safe_psql('postgres', "SELECT bsoncrypt.encrypted_index_check('$pk')"), '200',
		'DocumentDB: the _id index still checks out after the index build');

	# after a restart, through the relation keys read back
	$ddb->restart;
	is($ddb->safe_psql('postgres', q{
SELECT count(*) FROM documentdb_api.collection('db', 'coll2')
 WHERE document OPERATOR(documentdb_api_catalog.@>=) '{"_id": "MRKDDB_TWO_95"}'}), '5',
		'DocumentDB: an _id range in the second collection after a restart');
	$ddb->safe_psql('postgres', 'CHECKPOINT');
	is(count_in_files('MRKDDB', @pk_files), 0, 'DocumentDB: no _id marker in either _id index at the end');
	$ddb->stop;

	# bsoncrypt installed first: CREATE EXTENSION documentdb makes bsoncrypt
	# add what it adds when DocumentDB is already there (the casts with
	# documentdb_core.bson and its encrypted class, members of bsoncrypt), so
	# the order does not matter.  A collection made while the setting was
	# off keeps a btree _id index, converted below.
	my $later = bsoncrypt_node('index_markers_documentdb_later', conf => $ddb_conf);
	$later->start;
	my ($ret, $out, $err) = $later->psql('postgres', q{
CREATE EXTENSION bsoncrypt;
CREATE EXTENSION documentdb CASCADE});
	is($ret, 0, 'DocumentDB installed after bsoncrypt: CREATE EXTENSION documentdb succeeds');
	unlike($err, qr/WARNING/, 'DocumentDB installed after bsoncrypt: no warning');
	is($later->safe_psql('postgres', q{
SELECT (SELECT count(*) FROM pg_cast c JOIN pg_depend d ON d.classid = 'pg_cast'::regclass AND d.objid = c.oid
         AND d.deptype = 'e' AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'bsoncrypt')
         WHERE (c.castsource, c.casttarget) IN (('documentdb_core.bson'::regtype, 'bsoncrypt.bson'::regtype),
                                                ('bsoncrypt.bson'::regtype, 'documentdb_core.bson'::regtype)))
    || ',' ||
       (SELECT count(*) FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod
          JOIN pg_depend d ON d.classid = 'pg_opclass'::regclass AND d.objid = c.oid AND d.deptype = 'e'
           AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'bsoncrypt')
         WHERE a.amname = 'encrypted_btree' AND c.opcintype = 'documentdb_core.bson'::regtype)}),
		'2,1', 'DocumentDB installed after bsoncrypt: its casts and encrypted class made, members of bsoncrypt');
	$later->safe_psql('postgres', q{
SET bsoncrypt.encrypt_indexes = off;
SET default_table_access_method = encrypted_heap;
SELECT documentdb_api.insert_one('db', 'before', '{"_id": "MRKDDB_BEFORE"}') IS NOT NULL;
ALTER DATABASE postgres SET default_table_access_method = encrypted_heap;
ALTER DATABASE postgres SET bsoncrypt.encrypt_indexes = on});
	$later->safe_psql('postgres', q{
SELECT documentdb_api.insert_one('db', 'after',
       FORMAT('{"_id": "MRKDDB_AFTER_%s"}', g)::documentdb_core.bson)
  FROM generate_series(1, 50) g;
CHECKPOINT});
	is($later->safe_psql('postgres', q{
SELECT string_agg(c.collection_name || ':' || a.amname, ',' ORDER BY c.collection_name)
  FROM documentdb_api_catalog.collections c
  JOIN pg_class r ON r.relname = 'collection_pk_' || c.collection_id
  JOIN pg_namespace n ON n.oid = r.relnamespace AND n.nspname = 'documentdb_data'
  JOIN pg_am a ON a.oid = r.relam
 WHERE c.database_name = 'db' AND c.collection_name IN ('before', 'after')}),
		'after:encrypted_btree,before:btree',
		'DocumentDB installed after bsoncrypt: encrypted _id index with the setting on');
	my $after_pk = 'documentdb_data.collection_pk_' . $collection_id->($later, 'after');
	is(count_in_files('MRKDDB_AFTER',
			$later->data_dir . '/' . $later->safe_psql('postgres', "SELECT pg_relation_filepath('$after_pk')")),
		0, 'DocumentDB installed after bsoncrypt: no _id marker in the encrypted _id index');
	is($later->safe_psql('postgres', q{
SELECT count(*) FROM documentdb_api.collection('db', 'after')
 WHERE document OPERATOR(documentdb_api_catalog.@=) '{"_id": "MRKDDB_AFTER_7"}'}), '1',
		'DocumentDB installed after bsoncrypt: _id lookup');

	# the plain _id index of the collection made before: replaced in one
	# ALTER TABLE under the same constraint name, which DocumentDB goes on using
	my $before_id = $collection_id->($later, 'before');
	$later->safe_psql('postgres', qq{
ALTER TABLE documentdb_data.documents_$before_id DROP CONSTRAINT collection_pk_$before_id,
  ADD CONSTRAINT collection_pk_$before_id PRIMARY KEY (shard_key_value, object_id)});
	is($later->safe_psql('postgres', qq{
SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam
 WHERE c.oid = 'documentdb_data.collection_pk_$before_id'::regclass}), 'encrypted_btree',
		'DocumentDB installed after bsoncrypt: a converted _id index is encrypted_btree');
	like($later->safe_psql('postgres', q{
SELECT documentdb_core.bson_to_json_string(cursorpage)
  FROM documentdb_api.find_cursor_first_page('db', '{"find": "before", "filter": {"_id": "MRKDDB_BEFORE"}}');
SELECT documentdb_core.bson_to_json_string(
       documentdb_api.insert_one('db', 'before', '{"_id": "MRKDDB_BEFORE"}'))}),
		qr/"firstBatch" : \[ \{ "_id" : "MRKDDB_BEFORE" \} \].*\n.*"errmsg" : "Duplicate key violation on the requested collection: Index '_id_'"/,
		'DocumentDB installed after bsoncrypt: find and duplicate key error through the converted index');
	$later->stop;
}

$node->stop;
done_testing();
