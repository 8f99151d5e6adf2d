# Re-targeting a running rotation: a newer master key version added (and
# asked for) while a slow rotation to v2 runs switches the worker to v3 at
# its next batch.  rotation_status shows the truth at once (rewrapping
# towards v3), the rotation to v2 is not finished first, and at the end
# every key, data keys and relation keys alike, is on v3 and decrypts.
# Also without a new request: a version appended to the key ring alone
# re-targets a running rotation too.  And a worker whose remaining keys stay
# locked by another session's open transaction leaves instead of waiting.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MIME::Base64;

my $nkeys = 4000;

my $node = PostgreSQL::Test::Cluster->new('retarget');
$node->init(extra => [ '-E', 'UTF8', '--locale=C' ]);
my $dir = $node->basedir;

sub append_version
{
	my $v = shift;
	open my $r, '<:raw', '/dev/urandom' or die;
	read($r, my $k, 96) == 96 or die;
	close $r;
	open my $f, '>>', "$dir/ring.key" or die;
	print $f "$v " . encode_base64($k, '') . "\n";
	close $f;
	chmod 0600, "$dir/ring.key";
}

append_version('v1');
# 100 keys per batch, 100 ms between batches: a rotation of 4000 keys takes
# about 4 s, so the re-target lands in its middle
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'bsoncrypt'
bsoncrypt.local_master_key_file = '$dir/ring.key'
bsoncrypt.rotation_batch_size = 100
bsoncrypt.rotation_batch_delay = 100ms
});
$node->start;
$node->safe_psql('postgres', qq{
CREATE EXTENSION bsoncrypt;
INSERT INTO bsoncrypt.key_vault (_id, key_material, master_key, master_key_version)
SELECT gen_random_uuid(), (m).key_material, '{"provider": "local"}', (m).master_key_version
  FROM (SELECT bsoncrypt._new_key_material('local') AS m FROM generate_series(1, $nkeys)) s;
CREATE TABLE docs (id int PRIMARY KEY, doc bsoncrypt.bson NOT NULL);
INSERT INTO docs
SELECT i, bsoncrypt.encrypt_field(bsoncrypt.bson_from_jsonb(jsonb_build_object('v', 'secret-' || i)), 'v', id)
  FROM (SELECT _id AS id, row_number() OVER (ORDER BY _id) AS i FROM bsoncrypt.key_vault) k;
CREATE TABLE at_rest (id int, t text) USING encrypted_heap;
INSERT INTO at_rest SELECT i, 'row-' || i FROM generate_series(1, 100) i;
});

sub status
{
	return $node->safe_psql('postgres',
		q{SELECT state || ' ' || coalesce(to_version, '-') || ' ' || keys_done
		    FROM bsoncrypt.rotation_status WHERE provider = 'local'});
}

sub on_version
{
	my $v = shift;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM bsoncrypt.key_vault WHERE master_key_version = '$v'");
}

# --- 1. a newer version asked for while a rotation runs
append_version('v2');
$node->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
$node->poll_query_until('postgres',
	q{SELECT count(*) >= 300 FROM bsoncrypt.key_vault WHERE master_key_version = 'v2'})
  or die 'the rotation to v2 did not start';
append_version('v3');
$node->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
my $v2_at_request = on_version('v2');

# the next batch switches: rewrapping towards v3, while most keys are not on v2
ok( $node->poll_query_until('postgres',
		q{SELECT state = 'rewrapping' AND to_version = 'v3'
		    FROM bsoncrypt.rotation_status WHERE provider = 'local'}),
	'rotation_status shows rewrapping towards v3 soon after the request');
my $v2_after_switch = on_version('v2');
cmp_ok($v2_after_switch, '<', $nkeys / 2,
	"the rotation to v2 was not finished first ($v2_after_switch of $nkeys keys on v2, $v2_at_request at the request)");
my ($state, $to, $done) = split / /, status();
cmp_ok($done, '<', $nkeys, "keys_done counts the rotation to v3 ($done)");

$node->poll_query_until('postgres',
	q{SELECT state = 'done' FROM bsoncrypt.rotation_status WHERE provider = 'local'})
  or die 'the rotation to v3 did not finish: ' . status();
is(on_version('v3'), $nkeys, 'every data key is on v3');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM bsoncrypt.relation_keys WHERE master_key_version <> 'v3'}),
	'0', 'every relation key is on v3');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM docs
		   WHERE bsoncrypt.decrypt_get_text(doc, 'v') = 'secret-' || id}),
	$nkeys, 'every value decrypts');
is($node->safe_psql('postgres', q{SELECT count(*) FROM at_rest WHERE t = 'row-' || id}),
	'100', 'the encrypted table reads back');
like(slurp_file($node->logfile),
	qr/re-targeted from master key version "v2" to "v3"/, 'the log says so');
my ($total, $done_end) = split / /,
  $node->safe_psql('postgres',
	q{SELECT keys_total || ' ' || keys_done FROM bsoncrypt.rotation_status});
is($done_end, $total, "keys_done reached keys_total ($done_end)");

# --- 2. a version appended to the ring without asking re-targets too
append_version('v4');
$node->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
$node->poll_query_until('postgres',
	q{SELECT count(*) >= 300 FROM bsoncrypt.key_vault WHERE master_key_version = 'v4'})
  or die 'the rotation to v4 did not start';
append_version('v5');
ok( $node->poll_query_until('postgres',
		q{SELECT to_version = 'v5' FROM bsoncrypt.rotation_status WHERE provider = 'local'}),
	'a version appended to the key ring re-targets the running rotation');
cmp_ok(on_version('v4'), '<', $nkeys / 2, 'the rotation to v4 was not finished first');
$node->poll_query_until('postgres',
	q{SELECT state = 'done' FROM bsoncrypt.rotation_status WHERE provider = 'local'})
  or die 'the rotation to v5 did not finish: ' . status();
is(on_version('v5'), $nkeys, 'every data key is on v5');

# --- 3. keys locked by an open transaction do not keep a worker busy
append_version('v6');
my $locker = $node->background_psql('postgres');
$locker->query_safe(
	q{BEGIN; SELECT 1 FROM bsoncrypt.key_vault ORDER BY _id LIMIT 1 FOR UPDATE});
$node->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
ok( $node->poll_query_until('postgres',
		q{SELECT state = 'rewrapping' AND worker_pid IS NULL AND keys_done = keys_total - 1
		    FROM bsoncrypt.rotation_status WHERE provider = 'local'}),
	'the worker leaves when only keys locked by another session are left');
like(slurp_file($node->logfile), qr/keys of provider "local" stayed locked by other sessions/,
	'and says so in the log');
$locker->query_safe('COMMIT');
$locker->quit;
$node->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
$node->poll_query_until('postgres',
	q{SELECT state = 'done' FROM bsoncrypt.rotation_status WHERE provider = 'local'})
  or die 'the rotation to v6 did not finish: ' . status();
is(on_version('v6'), $nkeys, 'the rotation finishes once the lock is gone');

$node->stop;
done_testing();
