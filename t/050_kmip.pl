# The kmip master-key provider against a real KMIP server: Debian's PyKMIP
# (scripts/kmip-test-server.sh: 127.0.0.1 only, certificates made with the
# openssl CLI here), and interoperability with libmongocrypt through the
# oracle, which carries libmongocrypt's own KMIP requests to the server.
#  a. master keys made on the server; data keys in both modes (96-byte
#     SecretData fetched with Get, and an AES key used by Encrypt/Decrypt);
#     MongoDB key documents; the server's Get count proves the cache of
#     fetched secrets (one Get for many data keys, one per statement with
#     bsoncrypt.key_cache_ttl = 0); restart;
#  b. libmongocrypt decrypts bsoncrypt's values under a bsoncrypt kmip key
#     and makes byte-identical deterministic ones; a kmip key libmongocrypt
#     made (Register + Activate + Get) imports into bsoncrypt and its values
#     decrypt both ways; libmongocrypt 1.7.2 refuses delegated documents;
#  c. rotation: local -> kmip (rewrap_many_data_key), at-rest table keys on
#     kmip, kmip -> a new kmip key by the worker (killed mid-way, resumed);
#  d. failures with SQLSTATEs in bounded time: server stopped, the worker
#     failing and retrying with backoff in rotation_status, wrong CA, a
#     client certificate the server does not trust, unknown keyId, an
#     endpoint not listed, a SymmetricKey without delegated, a server that
#     never finishes the handshake (connect timeout, and a query cancel
#     ends the wait), one that never answers (I/O timeout);
#  e. no fetched master key is left in memory given back to the C library
#     (t/helpers/free_scan.c, as in t/013) for a secret of known bytes
#     registered by PyKMIP's own client.
use strict;
use warnings;
use IPC::Run;
use IO::Socket::INET;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use BsoncryptTest;

my $src = $ENV{BSONCRYPT_SRC} // '.';
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $kdir = "$tmp/kmip";
my $helper = "$src/scripts/kmip-test-server.sh";
my $kport = PostgreSQL::Test::Cluster::get_free_port();

sub kmip_server
{
	my $cmd = shift;
	my $out = `$helper $cmd $kdir $kport 2>&1`;
	my $rc = $? >> 8;
	if ($rc == 3 && $cmd eq 'start')
	{
		chomp $out;
		plan skip_all => ($out =~ /(skipped: .*)/ ? $1 : "skipped: $out");
	}
	die "$helper $cmd: $out" if $rc != 0;
}
kmip_server('start');
END { system("$helper stop $kdir >/dev/null 2>&1") if defined $kdir && -d $kdir; }

require_oracle();
my @oracle_kmip = ('--kmip-endpoint', "127.0.0.1:$kport", '--kmip-ca', "$kdir/ca.crt",
	'--kmip-cert', "$kdir/client.crt", '--kmip-key', "$kdir/client.key");

# A secret of known bytes, registered by PyKMIP's own client (a third
# implementation), for the memory scan of e.
open my $ur, '<:raw', '/dev/urandom' or die;
read($ur, my $known_secret, 96) == 96 or die;
close $ur;
my ($python) = (`head -1 /usr/bin/pykmip-server` =~ /^#!\s*(\S+)/);
my $known_id;
{
	my $script = q{
import sys, warnings
warnings.filterwarnings('ignore')
from kmip.pie.client import ProxyKmipClient
from kmip.pie import objects
from kmip.core import enums
port, cert, key, ca, secret = sys.argv[1:6]
c = ProxyKmipClient(hostname='127.0.0.1', port=int(port), cert=cert, key=key, ca=ca,
                    config_file='/dev/null')
c.open()
uid = c.register(objects.SecretData(bytes.fromhex(secret), enums.SecretDataType.SEED))
c.activate(uid)
c.close()
print(uid)
};
	my ($out, $err) = ('', '');
	IPC::Run::run([ $python, '-c', $script, $kport, "$kdir/client.crt", "$kdir/client.key",
			"$kdir/ca.crt", unpack('H*', $known_secret) ], '>', \$out, '2>', \$err)
	  or die "PyKMIP client: $err";
	($known_id) = $out =~ /^(\S+)\s*$/ or die "PyKMIP client printed: $out";
}

# listeners for the timeout cases: one that accepts and says nothing, one
# that finishes TLS (openssl s_server) and never answers a request
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
	Listen => 5, ReuseAddr => 1) or die "listen: $!";
my $silent_port = $silent->sockport;
my $mute_port = PostgreSQL::Test::Cluster::get_free_port();
my ($mute_in, $mute_out, $mute_err) = ('', '', '');
my $mute = IPC::Run::start(
	[ 'openssl', 's_server', '-accept', "127.0.0.1:$mute_port", '-cert', "$kdir/server.crt",
		'-key', "$kdir/server.key", '-CAfile', "$kdir/ca.crt", '-Verify', '1', '-quiet' ],
	'<', \$mute_in, '>', \$mute_out, '2>', \$mute_err);

# the node, with the memory scan preloaded
my $so = "$tmp/free_scan.so";
system("cc -shared -fPIC -O1 -o $so $src/t/helpers/free_scan.c -ldl") == 0
  or die 'cannot build t/helpers/free_scan.c';
my $node = bsoncrypt_node('kmip', key_file => random_master_key(), conf => qq{
bsoncrypt.kmip_endpoint = '127.0.0.1:$kport, 127.0.0.1:$silent_port, 127.0.0.1:$mute_port, localhost:$kport, kmip.invalid:5696'
bsoncrypt.kmip_ca_file = '$kdir/ca.crt'
bsoncrypt.kmip_cert_file = '$kdir/client.crt'
bsoncrypt.kmip_key_file = '$kdir/client.key'
bsoncrypt.kmip_connect_timeout = '2s'
bsoncrypt.kmip_timeout = '2s'
bsoncrypt.rotation_retry_delay = '1s'
});
my $scan_log = $node->basedir . '/free_scan.log';
sub start_node
{
	local $ENV{LD_PRELOAD} = $so;
	local $ENV{BSONCRYPT_FREE_SCAN_NEEDLES} =
	  'canary-free=' . unpack('H*', 'kmip-canary-free') . ',known-bytes='
	  . unpack('H*', substr($known_secret, 0, 16));
	local $ENV{BSONCRYPT_FREE_SCAN_LOG} = $scan_log;
	$node->start;
}
start_node();
$node->safe_psql('postgres', 'CREATE EXTENSION bsoncrypt');
$node->safe_psql('postgres', 'ALTER DATABASE postgres SET search_path = bsoncrypt, public');

sub sql { return $node->safe_psql('postgres', shift) }

# psql that is expected to fail: (sqlstate, message, seconds)
sub fails
{
	my ($query) = @_;
	my $t0 = time;
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSET bsoncrypt.key_cache_ttl = 0;\n$query");
	my $secs = time - $t0;
	my ($state, $msg) = $err =~ /ERROR:  ([0-9A-Z]{5}): (.*)/;
	return ($state // "no error (ret $ret, out $out)", $msg // $err, $secs);
}

sub reload_with
{
	my $conf = shift;
	$node->append_conf('postgresql.conf', $conf);
	$node->reload;
	usleep(300_000);
}

sub count_gets
{
	my $log = slurp_file("$kdir/server.log");
	return scalar(() = $log =~ /Processing operation: Get\n/g);
}

# ---------------------------------------------------------------------
# a. master keys and data keys
# ---------------------------------------------------------------------
my ($state, $msg, $secs) = fails(q{SELECT create_data_key('kmip')});
is("$state $msg", '55000 no current KMIP master key is configured',
	'without bsoncrypt.kmip_key_id, kmip keys cannot be created');

my $k1 = sql('SELECT kmip_create_master_key()');
my $kaes = sql(q{SELECT kmip_create_master_key(true, 'bsoncrypt test aes')});
like($k1, qr/^\S+$/, "kmip_create_master_key registered secret data $k1");
isnt($kaes, $k1, "kmip_create_master_key(true) created AES key $kaes");
my $serverlog = slurp_file("$kdir/server.log");
like($serverlog, qr/Registered a SecretData with ID: \Q$k1\E/, 'the server registered SecretData');
like($serverlog, qr/Created a SymmetricKey with ID: \Q$kaes\E/, 'the server created a SymmetricKey');

reload_with("bsoncrypt.kmip_key_id = '$k1'\n");
is(sql('SELECT current_master_key_version(\'kmip\')'), $k1, 'current_master_key_version is bsoncrypt.kmip_key_id');
sql(q{SELECT create_data_key('kmip', '{a}')});
sql(qq{SELECT create_data_key('kmip', '{d}', NULL, '{"keyId": "$kaes", "delegated": true}')});
is( sql(q{SELECT string_agg(format('%s %s %s %s', key_alt_names[1], master_key, master_key_version,
                                   length(key_material)), E'\n' ORDER BY key_alt_names[1]) FROM key_vault}),
	qq{a { "provider" : "kmip", "keyId" : "$k1" } $k1 160\n}
	  . qq{d { "provider" : "kmip", "delegated" : true, "keyId" : "$kaes" } $kaes 128},
	'key documents: {provider, keyId} (160-byte local format) and {provider, delegated, keyId} (IV || AES-CBC)');
like(sql(q{SELECT get_key_by_alt_name('a')}), qr/"masterKey" : \{ "provider" : "kmip", "keyId" : "\Q$k1\E" \} \}$/,
	'get_key exports the masterKey as MongoDB writes it');
is( sql(q{SELECT decrypt_value(encrypt_value('{"": "secret a"}', 'a', 'random')) ->> '',
                 decrypt_value(encrypt_value('{"": "secret d"}', 'd', 'random')) ->> '',
                 encrypt_value('{"": 1}', 'd', 'deterministic') = encrypt_value('{"": 1}', 'd', 'deterministic')}),
	'secret a|secret d|t', 'values encrypt and decrypt under both kinds of kmip key');
($state, $msg) = fails(qq{SELECT create_data_key('kmip', '{x}', NULL, '{"keyId": "$kaes"}')});
is($state, '42809', 'a SymmetricKey without delegated: true is refused (libmongocrypt semantics)');
like($msg, qr/KMIP object "\Q$kaes\E" .* is a SymmetricKey/, '... saying so');

# the cache of fetched secrets: one Get for many keys within the TTL
sql(q{SELECT create_data_key('kmip', ARRAY['c' || i]) FROM generate_series(1, 5) i});
sql(q{CREATE TABLE cvals AS SELECT i, encrypt_value(format('{"": "c%s"}', i)::bson, 'c' || i, 'random') AS c
      FROM generate_series(1, 5) i});
my $gets = count_gets();
is(sql(q{SELECT string_agg(decrypt_value(c) ->> '', ',' ORDER BY i) FROM cvals}), 'c1,c2,c3,c4,c5',
	'a new session decrypts values of 5 kmip data keys');
usleep(200_000);
is(count_gets() - $gets, 1, '... with one KMIP Get (the fetched secret is cached)');
$gets = count_gets();
sql(q{SET bsoncrypt.key_cache_ttl = 0;
      SELECT decrypt_value(c) FROM cvals WHERE i = 1;
      SELECT decrypt_value(c) FROM cvals WHERE i = 2;
      SELECT decrypt_value(c) FROM cvals WHERE i = 3;});
usleep(200_000);
is(count_gets() - $gets, 3, 'with key_cache_ttl = 0, one Get per statement');

# a key on a named endpoint: resolved, and the certificate checked against the name
is(sql(qq{SELECT rewrap_many_data_key('{"keyAltNames": "c1"}', 'kmip', '$k1\@localhost:$kport')}), '1',
	'a key moves to the same server named localhost');
is( sql(q{SELECT bson_to_json(master_key) || ' ' || master_key_version FROM key_vault WHERE 'c1' = ANY (key_alt_names)}),
	qq({ "provider" : "kmip", "endpoint" : "localhost:$kport", "keyId" : "$k1" } $k1\@localhost:$kport),
	'... its masterKey names the endpoint, its version is keyId@endpoint');

$node->restart;
is(sql(q{SELECT string_agg(decrypt_value(c) ->> '', ',' ORDER BY i) FROM cvals}), 'c1,c2,c3,c4,c5',
	'after a restart, kmip keys unwrap again (c1 through localhost)');
start_node() unless $node->{_pid};

# ---------------------------------------------------------------------
# b. interoperability with libmongocrypt
# ---------------------------------------------------------------------
{
	my $vault = "$tmp/vault-a.json";
	write_secret_file($vault, sql(q{SELECT bson_to_json(get_key_by_alt_name('a'), true)}) . "\n");
	my @plain = ('"hello"', '{"$numberLong": "42"}', '{"x": [1, "two"]}');
	my @cipher = split /\n/, sql(q{SELECT bson_to_json(encrypt_value(p::bson, 'a', 'random'), true)
	                               FROM (VALUES } . join(', ', map { "('{\"v\": " . $_ . "}')" } @plain)
		  . q{) v(p)});
	my @dec = oracle('decrypt', join("\n", @cipher) . "\n", '--key-vault', $vault, @oracle_kmip);
	my @want = oracle('decrypt', join("\n", map { "{\"v\": $_}" } @plain) . "\n",
		'--key-vault', '/dev/null', @oracle_kmip);
	is_deeply(\@dec, \@want, 'libmongocrypt decrypts values bsoncrypt encrypted under a bsoncrypt kmip key');
	my ($det) = oracle('encrypt', "{\"v\": \"hello\"}\n", '--key-vault', $vault,
		'--key-alt-name', 'a', '--algorithm', 'det', @oracle_kmip);
	is(sql(q{SELECT bson_to_json(encrypt_value('{"v": "hello"}', 'a', 'deterministic'), true)}), $det,
		'deterministic ciphertexts of bsoncrypt and libmongocrypt are byte-identical');

	# a key libmongocrypt makes: Register + Activate + Get, as drivers do
	my $gets_before = count_gets();
	my ($mc) = oracle('create-key', '', '--provider', 'kmip', '--alt-name', 'mc', @oracle_kmip);
	my ($mc_id) = $mc =~ /"masterKey" : \{ "provider" : "kmip", "keyId" : "([^"]+)" \}/;
	ok(defined $mc_id, "libmongocrypt made a kmip key document (keyId $mc_id)");
	like(slurp_file("$kdir/server.log"), qr/Registered a SecretData with ID: \Q$mc_id\E/,
		'... after registering its secret on the server');
	my $mvault = "$tmp/vault-mc.json";
	write_secret_file($mvault, "$mc\n");
	my @mc_cipher = oracle('encrypt', "{\"v\": \"from libmongocrypt\"}\n{\"v\": 7}\n", '--key-vault', $mvault,
		'--key-alt-name', 'mc', '--algorithm', 'rand', @oracle_kmip);
	sql('CREATE TABLE mc_values (n int, c bson)');
	sql('INSERT INTO mc_values VALUES (1, ' . sql_literal($mc_cipher[0]) . '), (2, ' . sql_literal($mc_cipher[1]) . ')');
	like(sql('SELECT import_key(' . sql_literal($mc) . ')'), qr/^[0-9a-f-]{36}$/,
		'bsoncrypt imports the kmip key libmongocrypt made');
	is(sql(q{SELECT master_key_version FROM key_vault WHERE 'mc' = ANY (key_alt_names)}), $mc_id,
		'... on the version its keyId names');
	is(sql(q{SELECT string_agg(bson_to_json(decrypt(c)), ',' ORDER BY n) FROM mc_values}),
		'{ "v" : "from libmongocrypt" },{ "v" : 7 }', 'bsoncrypt decrypts libmongocrypt values under it');
	my ($back) = oracle('decrypt', sql(q{SELECT bson_to_json(encrypt_field('{"v": "from bsoncrypt"}', 'v', 'mc', 'random'), true)}) . "\n",
		'--key-vault', $mvault, @oracle_kmip);
	is($back, '{ "v" : "from bsoncrypt" }', 'libmongocrypt decrypts bsoncrypt values under it');

	# a libmongocrypt key on an existing keyId
	my ($mc2) = oracle('create-key', '', '--provider', 'kmip', '--kmip-key-id', $k1,
		'--alt-name', 'mc2', @oracle_kmip);
	sql('SELECT import_key(' . sql_literal($mc2) . ')');
	is(sql(q{SELECT decrypt_value(encrypt_value('{"": 2}', 'mc2')) ->> ''}), '2',
		"a libmongocrypt key wrapped by $k1 works in bsoncrypt");

	# libmongocrypt 1.7.2 predates delegated documents
	my $dvault = "$tmp/vault-d.json";
	write_secret_file($dvault, sql(q{SELECT bson_to_json(get_key_by_alt_name('d'), true)}) . "\n");
	my ($dres) = oracle('decrypt', sql(q{SELECT bson_to_json(encrypt_field('{"v": 1}', 'v', 'd', 'random'), true)}) . "\n",
		'--key-vault', $dvault, @oracle_kmip);
	like($dres, qr/"error".*delegated/, 'libmongocrypt 1.7.2 refuses a delegated key document: ' . $dres);
}

# ---------------------------------------------------------------------
# c. rotation
# ---------------------------------------------------------------------
sql(q{SELECT create_data_key('local', ARRAY['l' || i]) FROM generate_series(1, 20) i});
sql(q{CREATE TABLE lvals AS SELECT i, encrypt_value(format('{"": "l%s"}', i)::bson, 'l' || i, 'random') AS c
      FROM generate_series(1, 20) i});
is(sql(q{SELECT rewrap_many_data_key('{"keyAltNames": {"$in": ["l1", "l2", "l3", "l4", "l5", "l6", "l7",
          "l8", "l9", "l10", "l11", "l12", "l13", "l14", "l15", "l16", "l17", "l18", "l19", "l20"]}}', 'kmip')}),
	'20', 'rewrap_many_data_key moves 20 local keys to kmip');
is( sql(qq{SELECT count(*) FROM key_vault WHERE key_alt_names[1] LIKE 'l%'
             AND master_key::bytea = '{"provider": "kmip", "keyId": "$k1"}'::bson::bytea
             AND master_key_version = '$k1'}),
	'20', '... with masterKey {provider: kmip, keyId} and the keyId as version');
is(sql(q{SELECT count(*) FROM lvals WHERE decrypt_value(c) ->> '' = 'l' || i}), '20',
	'... and their values decrypt');

sql(q{SET bsoncrypt.at_rest_key_provider = 'kmip';
      CREATE TABLE secret_table (t text) USING encrypted_heap;
      INSERT INTO secret_table VALUES ('at rest under kmip');});
is(sql(q{SELECT provider || ' ' || master_key_version FROM relation_keys}), "kmip $k1",
	'an encrypted_heap table key is wrapped by the current kmip key');

my $k2 = sql('SELECT kmip_create_master_key()');
reload_with("bsoncrypt.kmip_key_id = '$k2'\n");
sql(q{SELECT rotate_master_key('kmip')});
ok($node->poll_query_until('postgres', q{SELECT state FROM rotation_status WHERE provider = 'kmip'}, 'done'),
	"the worker rotates kmip keys to $k2");
is( sql(qq{SELECT count(*) FILTER (WHERE master_key_version <> '$k2'
                                   OR bson_get_text(master_key, 'keyId') <> '$k2'
                                   OR bson_get(master_key, 'delegated') IS NOT NULL)
           FROM key_vault WHERE bson_get_text(master_key, 'provider') = 'kmip'}),
	'0', "every kmip data key, also the delegated one, is on $k2 with its keyId in masterKey");
is(sql(qq{SELECT count(*) FROM relation_keys WHERE master_key_version <> '$k2'}), '0',
	'the table key too');
$node->restart;
is( sql(q{SELECT (SELECT t FROM secret_table) || ' ' ||
                 (SELECT count(*) FROM lvals WHERE decrypt_value(c) ->> '' = 'l' || i) || ' ' ||
                 (SELECT string_agg(decrypt_value(c) ->> '', ',' ORDER BY i) FROM cvals)}),
	'at rest under kmip 20 c1,c2,c3,c4,c5', 'after the rotation and a restart everything reads back');

# killed in the middle
sql(q{INSERT INTO key_vault (_id, key_material, master_key, master_key_version)
      SELECT gen_random_uuid(), (m).key_material, (m).master_key, (m).master_key_version
        FROM (SELECT _new_key_material('kmip') AS m FROM generate_series(1, 1500)) s});
my $total = sql(q{SELECT count(*) FROM key_vault WHERE bson_get_text(master_key, 'provider') = 'kmip'});
my $k3 = sql('SELECT kmip_create_master_key()');
reload_with("bsoncrypt.kmip_key_id = '$k3'\nbsoncrypt.rotation_batch_size = 50\nbsoncrypt.rotation_batch_delay = '150ms'\n");
sql(q{SELECT rotate_master_key('kmip')});
ok($node->poll_query_until('postgres',
		q{SELECT keys_done > 100 AND state = 'rewrapping' FROM rotation_status WHERE provider = 'kmip'}),
	'the rotation to a third kmip key is under way');
$node->stop('immediate');
my $done_at_kill = undef;
start_node();
$done_at_kill = sql(qq{SELECT count(*) FROM key_vault WHERE master_key_version = '$k3'});
cmp_ok($done_at_kill, '<', $total, "killed with $done_at_kill of $total keys on $k3");
ok($node->poll_query_until('postgres', q{SELECT state FROM rotation_status WHERE provider = 'kmip'}, 'done'),
	'after the restart the worker finishes the rotation');
is(sql(qq{SELECT count(*) FROM key_vault WHERE master_key_version = '$k3'
           AND bson_get_text(master_key, 'keyId') = '$k3'}), $total, "all $total kmip keys are on $k3");
is( sql(q{SELECT count(*) FROM lvals WHERE decrypt_value(c) ->> '' = 'l' || i}) . ' '
	  . sql(q{SELECT t FROM secret_table}),
	'20 at rest under kmip', 'values and the table read back');
reload_with("bsoncrypt.rotation_batch_size = 1000\nbsoncrypt.rotation_batch_delay = '3ms'\n");

# ---------------------------------------------------------------------
# d. failures
# ---------------------------------------------------------------------
# unknown keyId, endpoint not listed, wrong object type
($state, $msg) = fails(qq{SELECT rewrap_many_data_key('{"keyAltNames": "a"}', 'kmip', '999999')});
is($state, '42704', 'an unknown keyId is 42704');
like($msg, qr/KMIP object "999999" does not exist on KMIP server "127\.0\.0\.1:$kport"/, '... naming it and the server');
my $forged = sql(q{SELECT bson_to_json(get_key_by_alt_name('a'), true)});
$forged =~ s/"_id" : \{ "\$binary" : \{ "base64" : "[^"]+"/"_id" : { "\$binary" : { "base64" : "EjRWeJq83vASNFZ4mrze8A=="/;
(my $unknown = $forged) =~ s/"keyId" : "[^"]+"/"keyId" : "424242"/;
($state, $msg) = fails('SELECT import_key(' . sql_literal($unknown) . ')');
is("$state $msg", "42704 KMIP object \"424242\" does not exist on KMIP server \"127.0.0.1:$kport\"",
	'import_key of a document naming an unknown keyId');
(my $elsewhere = $forged) =~ s/"provider" : "kmip", /"provider" : "kmip", "endpoint" : "127.0.0.2:5696", /;
($state, $msg) = fails('SELECT import_key(' . sql_literal($elsewhere) . ')');
is("$state $msg", '42501 KMIP endpoint "127.0.0.2:5696" is not one of bsoncrypt.kmip_endpoint',
	'a key document naming a server that is not listed is refused before any connection');

# a name that does not resolve
($state, $msg, $secs) = fails(q{SELECT rewrap_many_data_key('{"keyAltNames": "a"}', 'kmip', '1@kmip.invalid:5696')});
is($state, '08001', 'a KMIP server name that does not resolve: 08001');
like($msg, qr/(could not resolve|timed out resolving) the host of KMIP server "kmip\.invalid:5696"/, '... ' . $msg);
ok($secs < 6, sprintf('... within the connect timeout (%.1f s)', $secs));

# a server that never finishes the handshake: bounded by the connect timeout
sql(qq{INSERT INTO key_vault (_id, key_alt_names, key_material, master_key, master_key_version)
       VALUES (gen_random_uuid(), '{silent}', '\\x00', bson_from_jsonb('{"provider": "kmip", "endpoint": "127.0.0.1:$silent_port", "keyId": "1"}'), '1\@127.0.0.1:$silent_port'),
              (gen_random_uuid(), '{mute}', '\\x00', bson_from_jsonb('{"provider": "kmip", "endpoint": "127.0.0.1:$mute_port", "keyId": "1"}'), '1\@127.0.0.1:$mute_port')});
($state, $msg, $secs) = fails(q{SELECT encrypt_value('{"": 1}', 'silent')});
is($state, '08001', 'a server that accepts but never speaks TLS: 08001');
like($msg, qr/timed out in the TLS handshake with KMIP server "127\.0\.0\.1:$silent_port" after 2000 ms/, '... after the connect timeout');
ok($secs > 1.8 && $secs < 6, sprintf('... in %.1f s (timeout 2 s)', $secs));
($state, $msg, $secs) = fails(q{SELECT encrypt_value('{"": 1}', 'mute')});
is($state, '08006', 'a server that takes the request and never answers: 08006');
like($msg, qr/KMIP server "127\.0\.0\.1:$mute_port" did not answer within 2000 ms/, '... after the I/O timeout');
ok($secs > 1.8 && $secs < 6, sprintf('... in %.1f s (timeout 2 s)', $secs));

# a query cancel ends a long wait at once
reload_with("bsoncrypt.kmip_connect_timeout = '60s'\n");
{
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	my $pid = $bg->query_safe('SELECT pg_backend_pid()');
	$bg->query_until(qr/waiting/, "\\echo waiting\nSELECT encrypt_value('{\"\": 1}', 'silent');\n");
	usleep(500_000);
	is(sql("SELECT state || ' ' || wait_event FROM pg_stat_activity WHERE pid = $pid"),
		'active Extension', 'the session waits for the KMIP server (wait event Extension)');
	my $t0 = time;
	sql("SELECT pg_cancel_backend($pid)");
	ok($node->poll_query_until('postgres', "SELECT state FROM pg_stat_activity WHERE pid = $pid", 'idle'),
		'a query cancel ends the wait for the KMIP server');
	my $took = time - $t0;
	ok($took < 5, sprintf('... at once (%.1f s, connect timeout 60 s)', $took));
	$bg->query('SELECT 1');
	like($bg->{stderr}, qr/canceling statement due to user request/, '... with the usual cancel error');
	$bg->quit;
}
reload_with("bsoncrypt.kmip_connect_timeout = '2s'\n");
sql(q{DELETE FROM key_vault WHERE key_alt_names && '{silent,mute}'});

# wrong CA, and a client certificate the server does not trust
reload_with("bsoncrypt.kmip_ca_file = '$kdir/other-ca.crt'\n");
($state, $msg, $secs) = fails(q{SELECT decrypt_value(c) FROM cvals WHERE i = 1});
is($state, '08001', 'a server certificate from another CA: 08001');
like($msg, qr/could not establish a TLS connection to KMIP server "127\.0\.0\.1:$kport": server certificate verify failed/,
	'... "server certificate verify failed"');
reload_with("bsoncrypt.kmip_ca_file = '$kdir/ca.crt'\nbsoncrypt.kmip_cert_file = '$kdir/other-client.crt'\nbsoncrypt.kmip_key_file = '$kdir/other-client.key'\n");
($state, $msg) = fails(q{SELECT decrypt_value(c) FROM cvals WHERE i = 1});
is($state, '08001', 'a client certificate the server does not trust: 08001');
like($msg, qr/could not establish a TLS connection to KMIP server/, '... a TLS error: ' . $msg);
chmod 0644, "$kdir/client.key";
reload_with("bsoncrypt.kmip_cert_file = '$kdir/client.crt'\nbsoncrypt.kmip_key_file = '$kdir/client.key'\n");
($state, $msg) = fails(q{SELECT decrypt_value(c) FROM cvals WHERE i = 1});
is("$state $msg", "F0000 KMIP client key file has group or world access",
	'a client key file others may read is refused');
chmod 0600, "$kdir/client.key";
is(sql(q{SELECT decrypt_value(c) ->> '' FROM cvals WHERE i = 1}), 'c1', 'with the right files it works again');

# the server stopped: a clear error at once; the worker fails, retries, recovers
my $k4 = sql('SELECT kmip_create_master_key()');
kmip_server('stop');
($state, $msg, $secs) = fails(q{SELECT decrypt_value(c) FROM cvals WHERE i = 1});
is($state, '08001', 'the KMIP server stopped: 08001');
like($msg, qr/could not connect to KMIP server "127\.0\.0\.1:$kport": Connection refused/, '... "Connection refused"');
ok($secs < 3, sprintf('... at once (%.1f s)', $secs));
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM bsoncrypt.key_audit
		   WHERE event = 'provider_error' AND provider = 'kmip' AND result = 'error'
		     AND sqlstate = '08001' AND message ~ 'Connection refused'}),
	'... recorded in the audit trail as a provider error, although its transaction failed');
reload_with("bsoncrypt.kmip_key_id = '$k4'\n");
sql(q{SELECT rotate_master_key('kmip')});
ok( $node->poll_query_until('postgres',
		q{SELECT state = 'failed' AND failures >= 1 AND next_attempt IS NOT NULL
		         AND last_error ~ 'KMIP server'
		    FROM rotation_status WHERE provider = 'kmip'}),
	'the worker fails while the server is down, shows the error and a next attempt');
like(sql(q{SELECT last_error FROM rotation_status WHERE provider = 'kmip'}),
	qr/could not connect to KMIP server "127\.0\.0\.1:$kport"/, '... the error in rotation_status');
ok( $node->poll_query_until('postgres', q{SELECT failures >= 2 FROM rotation_status WHERE provider = 'kmip'}),
	'... and retries with backoff');
ok( $node->poll_query_until('postgres',
		q{SELECT count(*) >= 2 FROM bsoncrypt.key_audit
		   WHERE event = 'rotation_failed' AND provider = 'kmip' AND sqlstate = '08001'}),
	'... each failed attempt in the audit trail');
kmip_server('start');
ok($node->poll_query_until('postgres', q{SELECT state FROM rotation_status WHERE provider = 'kmip'}, 'done'),
	'once the server is back, the worker finishes the rotation by itself');
is(sql(qq{SELECT count(*) FROM key_vault WHERE bson_get_text(master_key, 'provider') = 'kmip'
           AND master_key_version <> '$k4'}), '0',
	"every kmip key is on $k4");

# ---------------------------------------------------------------------
# e. a fetched master key never goes back to the C library unzeroed
# ---------------------------------------------------------------------
sql(qq{SELECT create_data_key('kmip', '{known}', NULL, '{"keyId": "$known_id"}')});
# in one session: fetch it, then talk to another endpoint, which closes the
# connection that carried it (its TLS buffers go back to the C library)
my ($ret, $out, $err) = $node->psql('postgres', qq{
SET bsoncrypt.key_cache_ttl = 0;
SELECT rewrap_many_data_key('{"keyAltNames": "known"}');
SELECT rewrap_many_data_key('{"keyAltNames": "known"}', 'kmip', '$known_id');
SELECT decrypt_value(encrypt_value('{"": 1}', 'known'));
SELECT rewrap_many_data_key('{"keyAltNames": "known"}', 'kmip', '1\@127.0.0.1:$mute_port');
});
like($err, qr/did not answer within/, 'a session fetched the secret, then switched to another server');
is(sql(q{SELECT master_key_version FROM key_vault WHERE 'known' = ANY (key_alt_names)}), $known_id,
	'the key made under the secret PyKMIP registered went to the current key and back');
is(sql(q{SELECT decrypt_value(encrypt_value('{"": "k"}', 'known')) ->> ''}), 'k',
	'and works');
# the canary in freed memory shows that the scan sees what it should
sql(q{SELECT length(repeat('kmip-canary-free ', 4000))});
$node->stop;
my @hits = -e $scan_log ? split /\n/, slurp_file($scan_log) : ();
ok((grep { / free canary-free$/ } @hits), 'the scan sees freed blocks (canary)');
is(join("\n", grep { !/ canary-/ } @hits), '',
	'the secret fetched from the KMIP server is never in memory given back to the C library');

$mute->kill_kill;
done_testing();
