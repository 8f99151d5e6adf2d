# At-rest encryption (encrypted_heap) across crashes, replication, base
# backups, tampering and a missing master key:
# - SIGKILL of the server during a bulk load: after restart every committed
#   row is there and decrypts, the interrupted batch is gone;
# - a streaming standby and a pg_basebackup copy read the same data (the
#   relation keys travel with the database, the master key is configured);
# - one byte changed in a ciphertext (server stopped): reading that row fails
#   with XX001 naming relation, column and ctid; other rows still read;
# - master key file missing at start: clear errors, nothing changed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;
use Time::HiRes qw(usleep);

my $primary = bsoncrypt_node('tde_primary', init => { allows_streaming => 1 }, conf => qq{
log_statement = none
restart_after_crash = on
});
my $keyfile = $primary->basedir . '/master.key';
$primary->start;
$primary->safe_psql('postgres', q{
CREATE EXTENSION bsoncrypt;
CREATE TABLE docs (id int PRIMARY KEY, doc jsonb, t text) USING encrypted_heap;
INSERT INTO docs SELECT g, jsonb_build_object('id', g, 'pad', repeat('x', g % 300)), 'row ' || g
  FROM generate_series(1, 1000) g;
});

my $check = q{SELECT count(*), sum(id), bool_and((doc->>'id')::int = id AND t = 'row ' || id) FROM docs};

# --- base backup and streaming standby
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('tde_standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;
$primary->safe_psql('postgres', q{
INSERT INTO docs SELECT g, jsonb_build_object('id', g), 'row ' || g FROM generate_series(1001, 1500) g;
UPDATE docs SET doc = doc || '{"u": 1}' WHERE id % 10 = 0;
DELETE FROM docs WHERE id % 100 = 1;
VACUUM FULL docs;
});
$primary->wait_for_catchup($standby);
my $on_primary = $primary->safe_psql('postgres', $check);
is($standby->safe_psql('postgres', $check), $on_primary, 'standby reads the same data, also after VACUUM FULL');
is($standby->safe_psql('postgres', q{SELECT doc->>'u' FROM docs WHERE id = 1010}), '1',
	'standby: index scan on an updated row');

my $copy = PostgreSQL::Test::Cluster->new('tde_copy');
$copy->init_from_backup($primary, 'b1');
$copy->start;
is($copy->safe_psql('postgres', q{SELECT count(*), sum(id) FROM docs}), '1000|500500',
	'pg_basebackup copy starts and reads with the key');
$copy->safe_psql('postgres', q{INSERT INTO docs VALUES (5000, '{"id": 5000}', 'row 5000')});
is($copy->safe_psql('postgres', q{SELECT t FROM docs WHERE id = 5000}), 'row 5000', 'base backup copy accepts writes');
$copy->stop;
$standby->stop;

# --- SIGKILL during a bulk load (batches of 500 rows, each committed)
$primary->safe_psql('postgres', q{CREATE TABLE load (batch int, n int, doc jsonb, t text) USING encrypted_heap});
my $script = '';
for my $b (1 .. 400)
{
	$script .= "INSERT INTO load SELECT $b, g, jsonb_build_object('b', $b, 'n', g, 'pad', md5(g::text)), repeat(md5(($b * g)::text), 3) FROM generate_series(1, 500) g;\n";
}
my $script_file = $primary->basedir . '/load.sql';
open my $sf, '>', $script_file or die;
print $sf $script;
close $sf;
my ($stdout, $stderr) = ('', '');
my $h = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $script_file, '-d', $primary->connstr('postgres') ],
	'>', \$stdout, '2>', \$stderr);
# wait until some batches committed, then SIGKILL the loading backend: the
# postmaster then resets every process and runs crash recovery
my $loaded = 0;
for (1 .. 600)
{
	$loaded = $primary->safe_psql('postgres', 'SELECT count(*) FROM load');
	last if $loaded >= 5000;
	usleep(20_000);
}
ok($loaded >= 5000, "load under way ($loaded rows)") or diag($stderr);
my $pid = $primary->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE query LIKE 'INSERT INTO load%' AND pid <> pg_backend_pid()});
ok($pid =~ /^\d+$/ && kill('KILL', $pid), 'SIGKILL sent to the loading backend');
$h->finish;
# restart_after_crash: the postmaster restarts and recovers by itself
my $back = 0;
for (1 .. 300)
{
	local $SIG{PIPE} = 'IGNORE';
	my $r = eval { $primary->safe_psql('postgres', 'SELECT 1') };
	if (defined $r && $r eq '1') { $back = 1; last; }
	usleep(100_000);
}
ok($back, 'server restarted and recovered after the crash');
my ($batches, $rows, $ok) = split /\|/, $primary->safe_psql('postgres', q{
SELECT count(DISTINCT batch), count(*),
       bool_and((doc->>'b')::int = batch AND (doc->>'n')::int = n AND t = repeat(md5((batch * n)::text), 3))
  FROM load});
ok($rows >= 5000 && $rows < 200000, "crash interrupted the load ($rows rows)");
is($rows, $batches * 500, 'only whole committed batches survived');
is($ok, 't', 'every surviving row decrypts to its content');
is($primary->safe_psql('postgres', $check), $on_primary, 'older data intact after crash recovery');
$primary->safe_psql('postgres', q{INSERT INTO load VALUES (0, 0, '{}', 'after')});
is($primary->safe_psql('postgres', q{SELECT t FROM load WHERE batch = 0}), 'after', 'writes work after recovery');

# --- ALTER TABLE SET TABLESPACE copies the file as it is: its keys follow
my $tsdir = $primary->basedir . '/ts1';
mkdir $tsdir or die;
my $key_before = $primary->safe_psql('postgres', q{SELECT key_id FROM bsoncrypt.encrypted_relations WHERE relation = 'docs'::regclass});
$primary->safe_psql('postgres', qq{CREATE TABLESPACE ts1 LOCATION '$tsdir'});
$primary->safe_psql('postgres', q{ALTER TABLE docs SET TABLESPACE ts1});
is($primary->safe_psql('postgres', $check), $on_primary, 'readable after SET TABLESPACE');
is($primary->safe_psql('postgres', q{SELECT key_id FROM bsoncrypt.encrypted_relations WHERE relation = 'docs'::regclass}),
	$key_before, 'the file kept its key in the new tablespace');
$primary->safe_psql('postgres', q{ALTER TABLE docs SET TABLESPACE pg_default});
is($primary->safe_psql('postgres', $check), $on_primary, 'readable after moving back');

# --- tampering with one byte of a ciphertext
$primary->safe_psql('postgres', q{
CREATE EXTENSION pageinspect;
CREATE TABLE tamper (id int PRIMARY KEY, t text) USING encrypted_heap;
INSERT INTO tamper VALUES (1, 'first value'), (2, 'second value'), (3, 'third value');
CHECKPOINT;
});
# row 2: data starts at lp_off + t_hoff; id (4 bytes), then t: 1-byte
# header, format, key number (2), nonce (12), ciphertext of the 12 bytes of
# 'second value' (without their varlena header), tag (16)
my ($lp_off, $lp_len, $t_hoff) = split /\|/, $primary->safe_psql('postgres', q{
SELECT lp_off, lp_len, t_hoff FROM heap_page_items(get_raw_page('tamper', 0)) WHERE lp = 2});
is($lp_len - $t_hoff, 4 + 1 + (1 + 2 + 12 + 16) + 12, 'a stored value is 31 bytes longer than its data');
my $file = $primary->data_dir . '/' . $primary->safe_psql('postgres', q{SELECT pg_relation_filepath('tamper')});
$primary->stop;
{
	my $pos = $lp_off + $t_hoff + 4 + 1 + 1 + 2 + 12 + 3;
	open my $fh, '+<:raw', $file or die "$file: $!";
	seek $fh, $pos, 0;
	read $fh, my $byte, 1;
	seek $fh, $pos, 0;
	print $fh chr(ord($byte) ^ 0x01);
	close $fh;
}
$primary->start;
my ($ret, $out, $err) = $primary->psql('postgres', q{SELECT t FROM tamper WHERE id = 2},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
isnt($ret, 0, 'reading the tampered row fails');
like($err, qr/XX001/, 'with SQLSTATE XX001 (data_corrupted)');
like($err, qr/could not decrypt column "t" of relation "tamper" at ctid \(0,2\)/, 'naming column, relation and ctid');
unlike($err, qr/second value/, 'no plaintext in the message');
is($primary->safe_psql('postgres', q{SELECT t FROM tamper WHERE id = 1}), 'first value', 'other rows still read (index scan)');
is($primary->safe_psql('postgres', q{SELECT t FROM tamper WHERE ctid = '(0,3)'}), 'third value', 'other rows still read (TID scan)');

# --- master key missing at start
$primary->stop;
rename $keyfile, "$keyfile.away" or die;
$primary->start;
($ret, $out, $err) = $primary->psql('postgres', q{SELECT count(*) FROM docs WHERE t IS NOT NULL});
isnt($ret, 0, 'reading without the master key fails');
like($err, qr/master key file/, 'with a clear message about the master key') or diag($err);
($ret, $out, $err) = $primary->psql('postgres', q{INSERT INTO docs VALUES (9999, '{}', 'x')});
isnt($ret, 0, 'writing without the master key fails');
($ret, $out, $err) = $primary->psql('postgres', q{CREATE TABLE nokey (t text) USING encrypted_heap});
isnt($ret, 0, 'creating an encrypted table without the master key fails');
is($primary->safe_psql('postgres', q{SELECT count(*) FROM docs WHERE id = 9999}), '0',
	'a lookup that finds no row still works');
$primary->stop;
rename "$keyfile.away", $keyfile or die;
$primary->start;
is($primary->safe_psql('postgres', $check), $on_primary, 'with the key back, nothing was changed');
is($primary->safe_psql('postgres', q{SELECT to_regclass('nokey') IS NULL}), 't', 'no table was created without a key');
$primary->stop;
done_testing();
