# Master-key rotation by the background worker:
#  - 50k data keys, one encrypted document per key, rotated from v1 to v2
#    while a pgbench session encrypts and decrypts (no error allowed);
#    afterwards every value decrypts, every key is on v2, and v1 can be
#    retired from the key ring;
#  - rows of bsoncrypt.relation_keys (32-byte table keys) are rewrapped too,
#    checked with an independent Perl implementation of the key wrapping;
#  - failures (a new version that cannot be loaded by name, a wrong key, an
#    unreadable key ring) leave every key on its old version, with the error
#    in bsoncrypt.rotation_status, and are retried with backoff.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use MIME::Base64;
use Digest::SHA qw(hmac_sha512);
use Time::HiRes qw(time);

my $nkeys = $ENV{BSONCRYPT_ROTATION_KEYS} // 50000;

my $node = PostgreSQL::Test::Cluster->new('rotation');
$node->init(extra => [ '-E', 'UTF8', '--locale=C' ]);
my $dir = $node->basedir;
my %key = map { $_ => random_key() } qw(v1 v2 v3 c2 c3 wrong);

sub random_key
{
	open my $r, '<:raw', '/dev/urandom' or die;
	read($r, my $k, 96) == 96 or die;
	close $r;
	return $k;
}

sub write_ring
{
	my @versions = @_;
	my $file = "$dir/ring.key";
	open my $f, '>', "$file.tmp" or die;
	print $f "# test key ring\n";
	print $f "$_ " . encode_base64($key{$_}, '') . "\n" for @versions;
	close $f;
	chmod 0600, "$file.tmp";
	rename "$file.tmp", $file or die;
}

# The command provider: current version in $dir/kms/current; a version is
# broken (fails) or wrong (gives another key) when a marker file says so.
mkdir "$dir/kms";
for my $v (qw(c2 c3 wrong))
{
	open my $f, '>', "$dir/kms/key-$v" or die;
	print $f encode_base64($key{$v}, '');
	close $f;
}
sub kms_set { my ($name, $content) = @_; open my $f, '>', "$dir/kms/$name" or die; print $f $content; close $f; }
kms_set('current', 'c2');
open my $sh, '>', "$dir/kms/kms.sh" or die;
print $sh <<"SH";
#!/bin/sh
d=$dir/kms
v=\${1:-\$(cat \$d/current)}
if [ -n "\$1" ] && [ -f \$d/broken-\$v ]; then echo "kms: \$v unavailable" >&2; exit 3; fi
if [ -n "\$1" ] && [ -f \$d/wrong-\$v ]; then echo "\$v \$(cat \$d/key-wrong)"; exit 0; fi
[ -f \$d/key-\$v ] || exit 4
echo "\$v \$(cat \$d/key-\$v)"
SH
close $sh;
chmod 0700, "$dir/kms/kms.sh";

write_ring('v1');
$node->append_conf('postgresql.conf', qq{
fsync = off
shared_preload_libraries = 'bsoncrypt'
bsoncrypt.local_master_key_file = '$dir/ring.key'
bsoncrypt.master_key_command = '$dir/kms/kms.sh %n'
bsoncrypt.rotation_retry_delay = 1
bsoncrypt.rotation_batch_size = 1000
max_worker_processes = 16
});
$node->start;

my $t0 = time;
$node->safe_psql('postgres', qq{
CREATE EXTENSION bsoncrypt;
INSERT INTO bsoncrypt.key_vault (_id, key_material, master_key, master_key_version)
SELECT gen_random_uuid(), (m).key_material, '{"provider": "local"}', (m).master_key_version
  FROM (SELECT bsoncrypt._new_key_material('local') AS m FROM generate_series(1, $nkeys)) s;
CREATE TABLE docs (id int PRIMARY KEY, k uuid NOT NULL, doc bsoncrypt.bson NOT NULL);
INSERT INTO docs
SELECT i, id, bsoncrypt.encrypt_field(bsoncrypt.bson_from_jsonb(jsonb_build_object('v', 'secret-' || i)), 'v', id)
  FROM (SELECT _id AS id, row_number() OVER (ORDER BY _id) AS i FROM bsoncrypt.key_vault) k;
});
note(sprintf("setup of %d keys and documents: %.1f s", $nkeys, time - $t0));
is($node->safe_psql('postgres', "SELECT string_agg(master_key_version || ':' || data_keys, ',') FROM bsoncrypt.master_key_versions"),
	"v1:$nkeys", 'all keys on v1 before the rotation');

# table keys of at-rest encryption: the real table, or a stand-in
my $own_relation_keys = $node->safe_psql('postgres',
	"SELECT to_regclass('bsoncrypt.relation_keys') IS NULL") eq 't';
if ($own_relation_keys)
{
	# the columns of at-rest encryption's table (extension/parts/40_*.sql)
	$node->safe_psql('postgres', q{
CREATE TABLE bsoncrypt.relation_keys (
    key_id             serial PRIMARY KEY,
    reltablespace      oid NOT NULL,
    relfilenode        oid NOT NULL,
    key_material       bytea NOT NULL,
    provider           text NOT NULL,
    master_key_version text NOT NULL,
    creation_date      timestamptz NOT NULL DEFAULT now(),
    update_date        timestamptz NOT NULL DEFAULT now())});
}

# MongoDB's local key wrapping, independently of the C code
sub aes_cbc
{
	my ($decrypt, $k, $iv, $data) = @_;
	my ($out, $err);
	IPC::Run::run([ 'openssl', 'enc', '-aes-256-cbc', ($decrypt ? '-d' : ()),
			'-K', unpack('H*', $k), '-iv', unpack('H*', $iv) ],
		\$data, \$out, \$err) or die "openssl: $err";
	return $out;
}
sub wrap_secret
{
	my ($master, $secret) = @_;
	open my $r, '<:raw', '/dev/urandom' or die;
	read($r, my $iv, 16);
	close $r;
	my $s = aes_cbc(0, substr($master, 32, 32), $iv, $secret);
	my $t = substr(hmac_sha512($iv . $s . ("\0" x 8), substr($master, 0, 32)), 0, 32);
	return $iv . $s . $t;
}
sub unwrap_secret
{
	my ($master, $wrapped) = @_;
	my $iv = substr($wrapped, 0, 16);
	my $s = substr($wrapped, 16, length($wrapped) - 48);
	my $t = substr($wrapped, -32);
	return undef
	  unless $t eq substr(hmac_sha512($iv . $s . ("\0" x 8), substr($master, 0, 32)), 0, 32);
	return aes_cbc(1, substr($master, 32, 32), $iv, $s);
}

my %table_secret;
my $relation_keys_ok = 1;
for my $relid (1 .. 3)
{
	my $secret = join '', map { chr(int(rand(256))) } 1 .. 32;
	$table_secret{$relid} = $secret;
	my $hex = unpack('H*', wrap_secret($key{v1}, $secret));
	my ($ret, $out, $err) = $node->psql('postgres',
		"INSERT INTO bsoncrypt.relation_keys (reltablespace, relfilenode, key_material, provider, master_key_version, key_number)
		 VALUES (0, (4000000000 + $relid)::oid, '\\x$hex', 'local', 'v1', 0)");
	$relation_keys_ok = 0 if $ret != 0;
	is($ret, 0, "a relation key wrapped by v1 (table $relid)") or diag($err);
}

# ---------------------------------------------------------------------------
# Rotation v1 -> v2 while a session encrypts and decrypts
write_ring('v1', 'v2');
is($node->safe_psql('postgres', 'SELECT bsoncrypt.current_master_key_version()'), 'v2',
	'v2 is the current version');

open my $script, '>', "$dir/encdec.sql" or die;
print $script <<"SQL";
\\set r random(1, $nkeys)
SELECT CASE WHEN bsoncrypt.decrypt_get_text(d.doc, 'v') = 'secret-' || d.id
             AND bsoncrypt.decrypt_get_text(bsoncrypt.encrypt_field('{"x": "y"}'::bsoncrypt.bson, 'x', d.k), 'x') = 'y'
            THEN 1 ELSE 1 / (d.id - d.id) END
  FROM docs d WHERE d.id = :r;
SQL
close $script;
my ($bench_out, $bench_err) = ('', '');
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-T', '8', '-c', '1', '-f', "$dir/encdec.sql",
		'-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$bench_out, '2>', \$bench_err);
sleep 1;
$node->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
ok( $node->poll_query_until('postgres',
		"SELECT state = 'done' AND to_version = 'v2' FROM bsoncrypt.rotation_status WHERE provider = 'local'"),
	'rotation to v2 finished');
my $bench_ok = $bench->finish;
ok($bench_ok, 'pgbench session during the rotation: no error')
  or diag("$bench_out\n$bench_err");
like($bench_out, qr/number of transactions actually processed: [1-9]/, 'pgbench session did work');
note($bench_out =~ /(tps = \S+)/ ? "concurrent session $1" : 'no tps');
my $rewrapped = $nkeys + ($relation_keys_ok ? 3 : 0);
is( $node->safe_psql('postgres',
		"SELECT from_versions, keys_total, keys_done, last_error IS NULL, started <= finished
		   FROM bsoncrypt.rotation_status WHERE provider = 'local'"),
	"{v1}|$rewrapped|$rewrapped|t|t", 'rotation_status after the rotation');
note('rotation took ' . $node->safe_psql('postgres',
	"SELECT finished - started FROM bsoncrypt.rotation_status WHERE provider = 'local'"));
is($node->safe_psql('postgres', "SELECT string_agg(master_key_version || ':' || data_keys, ',') FROM bsoncrypt.master_key_versions"),
	"v2:$nkeys", 'every data key is on v2');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM bsoncrypt.key_vault WHERE update_date > creation_date"),
	$nkeys, 'update_date moved on every key');

# retire v1: every value still decrypts without it, in a fresh session
write_ring('v2');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM docs WHERE bsoncrypt.decrypt_get_text(doc, 'v') = 'secret-' || id"),
	$nkeys, 'every value decrypts after v1 was retired');

SKIP:
{
	skip 'bsoncrypt.relation_keys needs other columns', 2 unless $relation_keys_ok;
	my @rows = split /\n/, $node->safe_psql('postgres',
		"SELECT relfilenode::bigint - 4000000000, master_key_version, encode(key_material, 'hex')
		   FROM bsoncrypt.relation_keys WHERE relfilenode::bigint > 4000000000 ORDER BY relfilenode");
	is(join(',', map { (split /\|/)[1] } @rows), 'v2,v2,v2', 'table keys rewrapped to v2');
	my $same = grep {
		my ($relid, undef, $hex) = split /\|/;
		my $plain = unwrap_secret($key{v2}, pack('H*', $hex));
		defined $plain && $plain eq $table_secret{$relid};
	} @rows;
	is($same, 3, 'table keys unwrap with v2 to the same 32-byte secrets');
}

# ---------------------------------------------------------------------------
# Failures, in a database whose keys use the command provider
$node->safe_psql('postgres', 'CREATE DATABASE fail');
$node->safe_psql('fail', q{
CREATE EXTENSION bsoncrypt;
SELECT bsoncrypt.create_data_key('command', ARRAY['k' || i]) FROM generate_series(1, 20) i;
CREATE TABLE docs AS SELECT i, bsoncrypt.encrypt_field('{"v": "x"}', 'v', 'k' || i) AS doc FROM generate_series(1, 20) i;
});
is($node->safe_psql('fail', "SELECT string_agg(master_key_version || ':' || data_keys, ',') FROM bsoncrypt.master_key_versions"),
	'c2:20', 'command keys on c2');

sub check_failure
{
	my ($what, $error_re, $decrypts) = @_;
	$node->safe_psql('fail', 'SELECT bsoncrypt.rotate_master_key()');
	ok( $node->poll_query_until('fail',
			"SELECT state = 'failed' AND failures >= 2 FROM bsoncrypt.rotation_status WHERE provider = 'command'"),
		"$what: rotation fails and is retried");
	like($node->safe_psql('fail', "SELECT last_error FROM bsoncrypt.rotation_status WHERE provider = 'command'"),
		$error_re, "$what: error in rotation_status");
	is($node->safe_psql('fail', "SELECT string_agg(master_key_version || ':' || data_keys, ',') FROM bsoncrypt.master_key_versions"),
		'c2:20', "$what: every key still on c2");
	return unless $decrypts;
	is($node->safe_psql('fail', "SELECT count(*) FROM docs WHERE bsoncrypt.decrypt_get_text(doc, 'v') = 'x'"),
		'20', "$what: every value decrypts");
}

kms_set('current', 'c3');
kms_set('broken-c3', '');
check_failure('new version unavailable by name', qr/master key command failed for version "c3"/, 1);
unlink "$dir/kms/broken-c3";
kms_set('wrong-c3', '');
check_failure('new version gives another key by name', qr/differs when loaded by its name/, 1);
unlink "$dir/kms/wrong-c3";

# the old version turns out wrong: nothing may be rewrapped with c3 either
kms_set('wrong-c2', '');
check_failure('old version gives a wrong key', qr/cannot unwrap data key .* with master key version "c2"/, 0);
unlink "$dir/kms/wrong-c2";

# fixed: the next request succeeds
$node->safe_psql('fail', 'SELECT bsoncrypt.rotate_master_key()');
ok( $node->poll_query_until('fail',
		"SELECT state = 'done' AND to_version = 'c3' AND failures = 0 FROM bsoncrypt.rotation_status WHERE provider = 'command'"),
	'after the fix the rotation finishes');
is($node->safe_psql('fail', "SELECT string_agg(master_key_version || ':' || data_keys, ',') FROM bsoncrypt.master_key_versions"),
	'c3:20', 'every command key on c3');
is($node->safe_psql('fail', "SELECT count(*) FROM docs WHERE bsoncrypt.decrypt_get_text(doc, 'v') = 'x'"),
	'20', 'every value decrypts after the rotation to c3');

# an idle worker leaves: the database can be dropped
ok($node->poll_query_until('fail', 'SELECT bsoncrypt._rotation_worker_pid() IS NULL'),
	'the idle rotation worker leaves');
$node->safe_psql('postgres', 'DROP DATABASE fail');
pass('a database with a rotation behind it can be dropped');

# periodic rotation: the worker asks for one when none ran for the interval
$node->safe_psql('postgres', "ALTER SYSTEM SET bsoncrypt.master_key_rotation_interval = '2s'");
$node->reload;
write_ring('v2', 'v3');
sleep 3;
$node->safe_psql('postgres', 'SELECT bsoncrypt._wake_rotation_worker()');
ok( $node->poll_query_until('postgres',
		"SELECT state = 'done' AND to_version = 'v3' FROM bsoncrypt.rotation_status WHERE provider = 'local'"),
	'periodic rotation to v3');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET bsoncrypt.master_key_rotation_interval');
$node->reload;
is($node->safe_psql('postgres', "SELECT string_agg(master_key_version || ':' || data_keys, ',') FROM bsoncrypt.master_key_versions"),
	"v3:$nkeys", 'every data key is on v3');

# an unreadable key ring: the local rotation fails before touching a row
chmod 0000, "$dir/ring.key";
$node->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
ok( $node->poll_query_until('postgres',
		"SELECT state = 'failed' FROM bsoncrypt.rotation_status WHERE provider = 'local'"),
	'unreadable key ring: rotation fails');
like($node->safe_psql('postgres', "SELECT last_error FROM bsoncrypt.rotation_status WHERE provider = 'local'"),
	qr/could not open local master key file/, 'unreadable key ring: error in rotation_status');
chmod 0600, "$dir/ring.key";

# privileges: rotation is for superusers, the view for monitoring roles
$node->safe_psql('postgres', 'CREATE ROLE app LOGIN; CREATE ROLE mon LOGIN IN ROLE pg_monitor');
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT bsoncrypt.rotate_master_key()', extra_params => [ '-U', 'app' ]);
like($err, qr/permission denied for function rotate_master_key/, 'PUBLIC cannot rotate');
($ret, $out, $err) = $node->psql('postgres', 'SELECT bsoncrypt.rewrap_many_data_key()', extra_params => [ '-U', 'app' ]);
like($err, qr/permission denied for function rewrap_many_data_key/, 'PUBLIC cannot rewrap');
($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM bsoncrypt.rotation_status', extra_params => [ '-U', 'app' ]);
like($err, qr/permission denied for view rotation_status/, 'PUBLIC cannot read rotation_status');
($ret, $out, $err) = $node->psql('postgres', 'SELECT provider, state FROM bsoncrypt.rotation_status', extra_params => [ '-U', 'mon' ]);
is($ret, 0, 'pg_monitor reads rotation_status') or diag($err);
($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM bsoncrypt.master_key_versions', extra_params => [ '-U', 'mon' ]);
is($ret, 0, 'pg_monitor reads master_key_versions') or diag($err);

# no key bytes in the server log
my $log = slurp_file($node->logfile);
my $leaks = grep { index($log, encode_base64($key{$_}, '')) >= 0 } keys %key;
is($leaks, 0, 'no master key in the server log');

$node->stop;
done_testing();
