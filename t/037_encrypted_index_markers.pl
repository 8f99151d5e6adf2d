# At-rest encryption of indexes (encrypted_btree): with
# bsoncrypt.encrypt_indexes on, the btree indexes of an encrypted_heap table
# (primary key, unique constraint, expression, multi-column, a bson key as
# DocumentDB's collection_pk_N has, and TOASTed keys) hold no plaintext: the
# distinctive markers written into the indexed columns appear nowhere in the
# index files or in the WAL written meanwhile (btree insert and split
# records, full-page images, REINDEX and VACUUM).  The same schema on a heap
# table (plain btree indexes) shows the markers in its index files and in
# WAL, so the search itself works.  When DocumentDB is installed, a
# collection created under encrypted_heap gets an encrypted _id index
# (skipped otherwise).
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

# DocumentDB's _id index (collection_pk_N), when DocumentDB is installed
my $sharedir = $node->safe_psql('postgres', q{SELECT setting FROM pg_config WHERE name = 'SHAREDIR'});
SKIP:
{
	if (!-f "$sharedir/extension/documentdb.control")
	{
		diag('skipped: DocumentDB is not installed');
		skip 'skipped: DocumentDB is not installed', 3;
	}
	my $ddb = bsoncrypt_node('index_markers_documentdb', conf => qq{
shared_preload_libraries = 'bsoncrypt, pg_documentdb_core, pg_documentdb'
default_table_access_method = encrypted_heap
bsoncrypt.encrypt_indexes = on
});
	$ddb->start;
	$ddb->safe_psql('postgres', 'CREATE EXTENSION bsoncrypt; CREATE EXTENSION documentdb CASCADE');
	$ddb->safe_psql('postgres', q{
SELECT documentdb_api.insert_one('db', 'coll',
       FORMAT('{"_id": "MRKDDB_ID_%s", "v": %s}', g, g)::documentdb_core.bson)
  FROM generate_series(1, 200) g;
CHECKPOINT});
	my $pk = $ddb->safe_psql('postgres', q{
SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'documentdb_data' AND c.relname LIKE 'collection_pk_%' LIMIT 1});
	is($ddb->safe_psql('postgres', "SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.oid = $pk"),
		'encrypted_btree', 'DocumentDB: the _id index is encrypted_btree');
	my $path = $ddb->data_dir . '/' . $ddb->safe_psql('postgres', "SELECT pg_relation_filepath($pk)");
	is(count_in_files('MRKDDB_ID', $path), 0, 'DocumentDB: no _id marker in the _id index');
	is($ddb->safe_psql('postgres', q{
SELECT count(*) FROM documentdb_api.collection('db', 'coll')
 WHERE document OPERATOR(documentdb_api_catalog.@=) '{"_id": "MRKDDB_ID_42"}'}), '1',
		'DocumentDB: _id lookup finds the document');
	$ddb->stop;
}

$node->stop;
done_testing();
