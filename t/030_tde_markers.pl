# At-rest encryption (encrypted_heap): distinctive markers written into
# text, jsonb and bson columns (small values, TOASTed values with and without
# compression, updated values) must appear nowhere in the table's files, its
# TOAST table's files or the WAL written meanwhile (heap records and
# full-page images).  The same markers in a heap table are found, so the
# search itself works.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $node = bsoncrypt_node('tde_markers', conf => qq{
autovacuum = off
full_page_writes = on
wal_level = replica
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION bsoncrypt');

# incompressible filler so that uncompressed TOAST chunks would show markers
my $filler = q{(SELECT string_agg(md5(g::text || 'salt'), '') FROM generate_series(1, 150) g)};

sub fill
{
	my ($table, $tag) = @_;
	my $m = "MRK${tag}";
	return qq{
INSERT INTO $table VALUES
  (1, '${m}_TEXT_SMALL', '{"k": "${m}_JSON_SMALL"}', '{"k": "${m}_BSON_SMALL"}', NULL),
  (2, '${m}_TEXT_BIG' || $filler || '${m}_TEXT_BIG_END',
      jsonb_build_object('k', '${m}_JSON_BIG' || $filler),
      bsoncrypt.bson_from_jsonb(jsonb_build_object('k', '${m}_BSON_BIG' || $filler)),
      '${m}_EXT_BIG' || $filler);
COPY $table FROM STDIN;
3\t${m}_TEXT_COPY\t{"k": "${m}_JSON_COPY"}\t{"k": "${m}_BSON_COPY"}\t${m}_EXT_COPY
\\.
UPDATE $table SET t = '${m}_TEXT_UPDATED' WHERE id = 1;
UPDATE $table SET id = id + 10 WHERE id = 3;
};
}

for my $am ('encrypted_heap', 'heap')
{
	my $table = $am eq 'heap' ? 'plain' : 'enc';
	$node->safe_psql('postgres', qq{
CREATE TABLE $table (id int, t text, j jsonb, b bsoncrypt.bson, e text) USING $am;
ALTER TABLE $table ALTER COLUMN e SET STORAGE EXTERNAL;
});
}

# full-page images: the first change of each page after a checkpoint
$node->safe_psql('postgres', 'CHECKPOINT');
my $wal_start = $node->safe_psql('postgres', 'SELECT pg_walfile_name(pg_current_wal_insert_lsn())');
$node->safe_psql('postgres', fill('enc', 'ENC'));
$node->safe_psql('postgres', fill('plain', 'PLN'));
$node->safe_psql('postgres', 'CHECKPOINT');
$node->safe_psql('postgres', q{UPDATE enc SET j = j || '{"x": 1}'; UPDATE plain SET j = j || '{"x": 1}'});
$node->safe_psql('postgres', 'CHECKPOINT');
my $wal_end = $node->safe_psql('postgres', 'SELECT pg_walfile_name(pg_current_wal_insert_lsn())');

is($node->safe_psql('postgres', q{SELECT count(*) FROM enc WHERE t LIKE 'MRKENC%' AND j->>'k' LIKE 'MRKENC%' AND bsoncrypt.bson_get_text(b, 'k') LIKE 'MRKENC%'}),
	'3', 'encrypted table reads back its markers');
is($node->safe_psql('postgres', q{SELECT length(t), length(e) FROM enc WHERE id = 2}),
	'4834|4814', 'TOASTed values read back whole');

sub files_of
{
	my ($rel) = @_;
	my $datadir = $node->data_dir;
	my @files;
	my $toast = $node->safe_psql('postgres',
		"SELECT reltoastrelid FROM pg_class WHERE oid = '$rel'::regclass");
	my @rels = ($node->safe_psql('postgres', "SELECT '$rel'::regclass::oid"));
	if ($toast ne '0')
	{
		push @rels, $toast;
		push @rels, $node->safe_psql('postgres',
			"SELECT indexrelid FROM pg_index WHERE indrelid = $toast");
	}
	for my $r (@rels)
	{
		my $path = $node->safe_psql('postgres', "SELECT pg_relation_filepath($r)");
		push @files, grep { -f $_ } glob("$datadir/$path $datadir/$path.* $datadir/${path}_*");
	}
	return @files;
}

sub wal_files { return wal_segments($node, $wal_start, $wal_end) }

my @enc_files = files_of('enc');
my @plain_files = files_of('plain');
my @wal = wal_files();
ok(scalar(@enc_files) >= 3, 'encrypted table has main, TOAST and TOAST index files');
ok(scalar(@wal) >= 1, 'WAL segments to search: ' . scalar(@wal));

is(count_in_files('MRKENC', @enc_files), 0, 'no marker in the encrypted table or its TOAST table');
is(count_in_files('MRKENC', @wal), 0, 'no marker of the encrypted table in WAL');
for my $kind ('TEXT_SMALL', 'JSON_SMALL', 'BSON_SMALL', 'TEXT_BIG', 'JSON_BIG', 'BSON_BIG', 'EXT_BIG', 'TEXT_COPY', 'TEXT_UPDATED')
{
	is(count_in_files("MRKENC_$kind", @enc_files, @wal), 0, "no $kind marker on disk");
}

# the control: a heap table shows its markers in its files and in WAL
ok(count_in_files('MRKPLN_TEXT_SMALL', @plain_files) > 0, 'heap table: small marker found in its file');
ok(count_in_files('MRKPLN_EXT_BIG', @plain_files) > 0, 'heap table: TOASTed marker found in its TOAST file');
ok(count_in_files('MRKPLN_BSON_COPY', @wal) > 0, 'heap table: marker found in WAL');

# after VACUUM FULL (new file, new key) still nothing, and data intact
$node->safe_psql('postgres', 'VACUUM FULL enc; CHECKPOINT');
@enc_files = files_of('enc');
is(count_in_files('MRKENC', @enc_files), 0, 'no marker after VACUUM FULL');
is($node->safe_psql('postgres', q{SELECT count(*) FROM enc WHERE t LIKE 'MRKENC%'}), '3',
	'data intact after VACUUM FULL');

# temporary tables (session keys): local buffers reach the file when they
# are evicted (temp_buffers at its minimum, 800 kB); read the file from the
# session that owns it
for my $am ('encrypted_heap', 'heap')
{
	my ($count, $pos) = split /\n/, $node->safe_psql('postgres', qq{
SET temp_buffers = 100;
CREATE TEMP TABLE tt (id int, t text) USING $am;
INSERT INTO tt SELECT g, 'MRKTMP_' || g || repeat('z', 200) FROM generate_series(1, 20000) g;
SELECT count(*) FROM tt WHERE t LIKE 'MRKTMP%';
SELECT position('\\x4d524b544d505f'::bytea IN pg_read_binary_file(pg_relation_filepath('tt')));
});
	is($count, '20000', "$am temporary table reads back its markers");
	if ($am eq 'heap')
	{
		ok($pos > 0, 'heap temporary table: marker found in its file');
	}
	else
	{
		is($pos, '0', 'no marker in the encrypted temporary table\'s file');
	}
}

$node->stop;
done_testing();
