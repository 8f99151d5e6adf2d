# A streaming standby decrypts after the primary rotated its master key:
# the rewrapped key vault arrives by WAL, and the standby's own key ring
# (given the new version before the rotation) unwraps it.  No rotation
# worker runs on the standby, and rotation cannot be asked for there.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MIME::Base64;

my $nkeys = 2000;
my %key = map {
	open my $r, '<:raw', '/dev/urandom' or die;
	read($r, my $k, 96);
	($_ => $k)
} qw(v1 v2);


sub write_ring
{
	my ($file, @versions) = @_;
	open my $f, '>', "$file.tmp" or die;
	print $f "$_ " . encode_base64($key{$_}, '') . "\n" for @versions;
	close $f;
	chmod 0600, "$file.tmp";
	rename "$file.tmp", $file or die;
}

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1, extra => [ '-E', 'UTF8', '--locale=C' ]);
my $primary_ring = $primary->basedir . '/ring.key';
write_ring($primary_ring, 'v1');
$primary->append_conf('postgresql.conf', qq{
fsync = off
shared_preload_libraries = 'bsoncrypt'
bsoncrypt.local_master_key_file = '$primary_ring'
});
$primary->start;
$primary->safe_psql('postgres', qq{
CREATE EXTENSION bsoncrypt;
SELECT bsoncrypt.create_data_key('local', ARRAY['k' || i]) FROM generate_series(1, $nkeys) i;
CREATE TABLE docs AS
SELECT i AS id, bsoncrypt.encrypt_field(bsoncrypt.bson_from_jsonb(jsonb_build_object('v', 'secret-' || i)), 'v', 'k' || i) AS doc
  FROM generate_series(1, $nkeys) i;
});

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
my $standby_ring = $standby->basedir . '/ring.key';
write_ring($standby_ring, 'v1');
$standby->append_conf('postgresql.conf', qq{
bsoncrypt.local_master_key_file = '$standby_ring'
});
$standby->start;
$primary->wait_for_catchup($standby);

my $decrypts = "SELECT count(*) FROM docs WHERE bsoncrypt.decrypt_get_text(doc, 'v') = 'secret-' || id";
is($standby->safe_psql('postgres', $decrypts), $nkeys, 'standby decrypts before the rotation');

# operators give every server the new version first, then rotate
write_ring($standby_ring, 'v1', 'v2');
write_ring($primary_ring, 'v1', 'v2');
$primary->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
ok( $primary->poll_query_until('postgres',
		"SELECT state = 'done' AND to_version = 'v2' FROM bsoncrypt.rotation_status"),
	'primary rotated to v2');
$primary->wait_for_catchup($standby);

is( $standby->safe_psql('postgres',
		"SELECT string_agg(master_key_version || ':' || data_keys, ',') FROM bsoncrypt.master_key_versions"),
	"v2:$nkeys", 'standby sees every key on v2');
is($standby->safe_psql('postgres', $decrypts), $nkeys, 'standby decrypts after the rotation');

# the standby no longer needs v1 either
write_ring($standby_ring, 'v2');
is($standby->safe_psql('postgres', $decrypts), $nkeys, 'standby decrypts with v1 retired');

is( $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'bsoncrypt%'"),
	'0', 'no rotation worker on the standby');
my ($ret, $out, $err) = $standby->psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
like($err, qr/read-only transaction/, 'rotation cannot be asked for on a standby');

# after promotion, the launcher starts and the new primary can rotate
$standby->promote;
{
	open my $r, '<:raw', '/dev/urandom' or die;
	read($r, $key{v3}, 96);
}
write_ring($standby_ring, 'v2', 'v3');
$standby->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
ok( $standby->poll_query_until('postgres',
		"SELECT state = 'done' AND to_version = 'v3' FROM bsoncrypt.rotation_status"),
	'the promoted standby rotates');
is($standby->safe_psql('postgres', $decrypts), $nkeys, 'values decrypt after the rotation on the promoted standby');

$standby->stop;
$primary->stop;
done_testing();
