# Master keys never go back to the C library in memory that still holds
# them: the server runs with t/helpers/free_scan.c preloaded, which looks
# for the master keys (their base64 text and their bytes) in every block
# PostgreSQL frees and in the stdio buffer of every file and pipe it
# closes, while the local provider (a key ring of five versions, so that
# the ring grows while it is read) and the command provider are used by
# every path: new keys, unwrapping, rewrapping to an older version by name,
# imports (which try every version), rotation by the worker, and
# encrypted_heap.  Two canaries (a large text freed unzeroed, pg_ident.conf
# read through stdio) show that the scan sees what it should.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MIME::Base64 qw(encode_base64);
use BsoncryptTest;

my $src = $ENV{BSONCRYPT_SRC} // '.';
my $so = PostgreSQL::Test::Utils::tempdir() . '/free_scan.so';
system("cc -shared -fPIC -O1 -o $so $src/t/helpers/free_scan.c -ldl") == 0
  or die 'cannot build t/helpers/free_scan.c';

sub random_bytes
{
	open my $fh, '<:raw', '/dev/urandom' or die;
	read($fh, my $bytes, $_[0]) == $_[0] or die;
	close $fh;
	return $bytes;
}

# five local versions and one for the command provider
my %key = map { $_ => random_bytes(96) } qw(v1 v2 v3 v4 v5 c1);
my $node = bsoncrypt_node('hygiene',
	key_file => join("\n", map { "$_ " . encode_base64($key{$_}, '') } qw(v1 v2 v3 v4 v5)));
my $dir = $node->basedir;
write_secret_file("$dir/c1.key", 'c1 ' . encode_base64($key{c1}, '') . "\n", 0600);
write_secret_file("$dir/kms.sh", "#!/bin/sh\ncat $dir/c1.key\n", 0700);
$node->append_conf('postgresql.conf', "bsoncrypt.master_key_command = '$dir/kms.sh'\n");
# pg_ident.conf is read line by line through stdio (by the postmaster)
$node->append_conf('pg_ident.conf', "# hygiene-canary-file\n");

# needles: the first 32 characters of each key's base64 (what the key file
# and the command's output hold) and the key's first 16 bytes
my @needles = ('canary-free=' . unpack('H*', 'hygiene-canary-free'),
	'canary-file=' . unpack('H*', 'hygiene-canary-file'));
for my $v (sort keys %key)
{
	push @needles, "$v-base64=" . unpack('H*', substr(encode_base64($key{$v}, ''), 0, 32));
	push @needles, "$v-bytes=" . unpack('H*', substr($key{$v}, 0, 16));
}
my $log = "$dir/free_scan.log";
{
	local $ENV{LD_PRELOAD} = $so;
	local $ENV{BSONCRYPT_FREE_SCAN_NEEDLES} = join(',', @needles);
	local $ENV{BSONCRYPT_FREE_SCAN_LOG} = $log;
	$node->start;
}

$node->safe_psql('postgres', qq{
CREATE EXTENSION bsoncrypt;
SET bsoncrypt.key_cache_ttl = 0;
SELECT bsoncrypt.create_data_key('local', '{h-local}');
SELECT bsoncrypt.create_data_key('command', '{h-command}');
SELECT bsoncrypt.decrypt_value(bsoncrypt.encrypt_value('{"": "x"}', 'h-local'));
SELECT bsoncrypt.decrypt_value(bsoncrypt.encrypt_value('{"": "y"}', 'h-command'));
SELECT bsoncrypt.rewrap_many_data_key('{"keyAltNames": "h-local"}', 'local', 'v2');
SELECT bsoncrypt.rewrap_many_data_key();
SELECT bsoncrypt.current_master_key_version('local'), bsoncrypt.current_master_key_version('command');
CREATE TEMP TABLE saved AS SELECT bsoncrypt.get_key_by_alt_name('h-local') AS d;
SELECT bsoncrypt.delete_key(_id) FROM bsoncrypt.key_vault WHERE 'h-local' = ANY (key_alt_names);
SELECT bsoncrypt.import_key(d) FROM saved;
CREATE TABLE enc (t text) USING encrypted_heap;
INSERT INTO enc VALUES ('at rest');
SELECT t FROM enc;
SELECT bsoncrypt.rewrap_many_data_key('{}', 'local', 'v1');
SELECT bsoncrypt.rotate_master_key();
});
ok( $node->poll_query_until('postgres',
		q{SELECT string_agg(state, ',') FROM bsoncrypt.rotation_status}, 'done'),
	'the rotation worker ran too');
is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT master_key_version, ',') FROM bsoncrypt.key_vault
  WHERE bsoncrypt.bson_get_text(master_key, 'provider') = 'local'}), 'v5', 'local keys are on v5');
# the canary in freed memory (the one in a file was read at start)
$node->safe_psql('postgres', q{SELECT length(repeat('hygiene-canary-free ', 4000))});
$node->stop;

my @hits = -e $log ? split /\n/, slurp_file($log) : ();
ok((grep { / free canary-free$/ } @hits), 'the scan sees freed blocks (canary)');
ok((grep { / fclose canary-file$/ } @hits), 'the scan sees stdio buffers of closed files (canary)');
my @leaks = grep { !/ canary-/ } @hits;
my %seen;
is(join("\n", grep { !$seen{$_}++ } map { s/^\d+ //r } @leaks), '',
	'no master key is left in memory given back to the C library');
done_testing();
