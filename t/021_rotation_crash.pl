# Crash safety of master-key rotation: the postmaster is killed with SIGKILL
# at many points of a rotation (right after the request, then spread over
# the rewrap), restarted, and the worker finishes the job by itself.
# After every crash each key is wrapped by v1 or v2 (the version it names),
# no key is lost, and progress never goes backwards; at the end every key is
# on v2 and every value decrypts.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MIME::Base64;
use Time::HiRes qw(usleep);

my $nkeys = 20000;
my $kills = 12;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init(extra => [ '-E', 'UTF8', '--locale=C' ]);
my $dir = $node->basedir;

sub write_ring
{
	open my $f, '>', "$dir/ring.key.tmp" or die;
	for my $v (@_)
	{
		open my $r, '<:raw', '/dev/urandom' or die;
		read($r, my $k, 96);
		print $f "$v " . encode_base64($k, '') . "\n";
	}
	close $f;
	chmod 0600, "$dir/ring.key.tmp";
	rename "$dir/ring.key.tmp", "$dir/ring.key" or die;
}

sub append_version
{
	my $v = shift;
	open my $r, '<:raw', '/dev/urandom' or die;
	read($r, my $k, 96);
	open my $f, '>>', "$dir/ring.key" or die;
	print $f "$v " . encode_base64($k, '') . "\n";
	close $f;
}

write_ring('v1');
$node->append_conf('postgresql.conf', qq{
fsync = off
restart_after_crash = off
shared_preload_libraries = 'bsoncrypt'
bsoncrypt.local_master_key_file = '$dir/ring.key'
bsoncrypt.rotation_batch_size = 200
bsoncrypt.rotation_batch_delay = 25ms
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
});

append_version('v2');
$node->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');

sub on_v2
{
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM bsoncrypt.key_vault WHERE master_key_version = 'v2'");
}

sub crash_and_restart
{
	my $pid = $node->{_pid};
	$node->kill9;
	usleep(20_000) while kill(0, $pid);
	my $started = 0;
	for (1 .. 60)
	{
		# children notice the postmaster's death and leave shared memory
		last if ($started = $node->start(fail_ok => 1));
		$node->{_pid} = undef;
		usleep(250_000);
	}
	die 'node did not restart' unless $started;
}

my $previous = 0;
my $consistent = 0;
my $kill_points = '';
for my $i (0 .. $kills - 1)
{
	# kill 0 right after the request; the others spread over the rewrap
	my $target = int($nkeys * $i / $kills);
	if ($i > 0)
	{
		$node->poll_query_until('postgres',
			"SELECT count(*) >= $target FROM bsoncrypt.key_vault WHERE master_key_version = 'v2'")
		  or die "no progress to $target";
	}
	my $at = on_v2();
	$kill_points .= "$at ";
	crash_and_restart();
	my ($total, $v1, $v2, $other) = split /\|/, $node->safe_psql('postgres', q{
		SELECT count(*), count(*) FILTER (WHERE master_key_version = 'v1'),
		       count(*) FILTER (WHERE master_key_version = 'v2'),
		       count(*) FILTER (WHERE master_key_version NOT IN ('v1', 'v2'))
		  FROM bsoncrypt.key_vault});
	$consistent++ if $total == $nkeys && $other == 0 && $v1 + $v2 == $nkeys && $v2 >= $previous;
	$previous = $v2;
}
note("killed with $kill_points keys on v2");
is($consistent, $kills, "after each of $kills crashes: no key lost, each on v1 or v2, progress kept");
my @points = split ' ', $kill_points;
ok(scalar(grep { $_ > 0 && $_ < $nkeys } @points) >= 10, 'at least 10 crashes in the middle of the rewrap');

ok( $node->poll_query_until('postgres',
		"SELECT state = 'done' AND to_version = 'v2' FROM bsoncrypt.rotation_status"),
	'the worker finished the rotation after the crashes');
is(on_v2(), $nkeys, 'every key is on v2');
is( $node->safe_psql('postgres',
		"SELECT keys_done, keys_total, started < finished FROM bsoncrypt.rotation_status"),
	"$nkeys|$nkeys|t", 'rotation_status counts every key once');

# v1 retired: every value decrypts with the keys as rewrapped
open my $f, '<', "$dir/ring.key" or die;
my @lines = grep { !/^v1 / } <$f>;
close $f;
open $f, '>', "$dir/ring.key" or die;
print $f @lines;
close $f;
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM docs WHERE bsoncrypt.decrypt_get_text(doc, 'v') = 'secret-' || id"),
	$nkeys, 'every value decrypts without v1');

$node->stop;
done_testing();
