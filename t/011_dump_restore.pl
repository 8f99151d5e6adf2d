# pg_dump -Fc / pg_restore of a database holding data keys (made by
# create_data_key and imported from libmongocrypt, with keyAltNames) and
# encrypted documents: into a new database of the same cluster, and into a
# second cluster reading the same master key file. After restore the key
# vault is identical, everything decrypts, keyAltNames are still unique,
# an index on a deterministically encrypted field is used and correct, the
# keys still interoperate with libmongocrypt, and plain BSON survives the
# text COPY byte for byte. A cluster with another master key cannot decrypt.
use strict;
use warnings;
use MIME::Base64;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

require_oracle();

my $tmp = PostgreSQL::Test::Utils::tempdir();

my $mk = random_master_key();
my $keyfile = "$tmp/master.key";
write_secret_file($keyfile, $mk . "\n");

sub new_node
{
	my ($name, $kf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(extra => [ '-E', 'UTF8', '--locale=C' ]);
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'bsoncrypt'
bsoncrypt.local_master_key_file = '$kf'
});
	$node->start;
	return $node;
}

my $node = new_node('dump', $keyfile);
$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION bsoncrypt');
$node->safe_psql('src', 'ALTER DATABASE src SET search_path = bsoncrypt, public');

# Keys: two made here (one with two alt names, one with none) and one made by
# libmongocrypt under the same master key.
my ($mc_doc) = oracle('create-key', '', '--master-key', $mk, '--alt-name', 'mc');
my $mc_id = $node->safe_psql('src', "SELECT import_key(" . sql_literal($mc_doc) . ")");
my $k1 = $node->safe_psql('src', "SELECT create_data_key('local', ARRAY['hr', 'hr2'])");
my $k2 = $node->safe_psql('src', "SELECT create_data_key('local')");
my $mc_cipher;

# The libmongocrypt ciphertext, from the oracle with the key it made.
my $vault_src = "$tmp/vault_src.json";
{
	open my $fh, '>', $vault_src or die;
	print $fh "$mc_doc\n";
	close $fh;
	($mc_cipher) = oracle('encrypt', qq({"v": "from libmongocrypt"}\n), '--master-key', $mk,
		'--key-vault', $vault_src, '--key-alt-name', 'mc', '--algorithm', 'rand');
	die "oracle: $mc_cipher" if $mc_cipher =~ /error/;
}

$node->safe_psql('src', qq{
CREATE TABLE people (id int PRIMARY KEY, doc bson NOT NULL);
INSERT INTO people
SELECT i, encrypt_field(encrypt_field(encrypt_field(
         bson_from_jsonb(jsonb_build_object('_id', i, 'name', 'person ' || i,
                                            'ssn', lpad(i::text, 9, '0'), 'n', i * 1000,
                                            'note', 'n' || chr(233) || 'e ' || i)),
         'ssn', 'hr', 'deterministic'),
         'name', '$k2'::uuid, 'random'),
         'note', 'mc', CASE WHEN i % 2 = 0 THEN 'random' ELSE 'deterministic' END)
FROM generate_series(1, 2000) i;
INSERT INTO people VALUES (0, ${\ sql_literal($mc_cipher)});
CREATE INDEX people_ssn ON people ((doc -> 'ssn'));
CREATE TABLE plain_docs (id int PRIMARY KEY, doc bson);
INSERT INTO plain_docs VALUES
 (1, '{"d": {"\$numberDouble": "-0.0"}, "nan": {"\$numberDouble": "NaN"}, "inf": {"\$numberDouble": "-Infinity"}, "x": {"\$numberDouble": "0.1"}, "big": {"\$numberDouble": "1.7976931348623157E+308"}, "tiny": {"\$numberDouble": "5E-324"}}'),
 (2, '{"i32": {"\$numberInt": "-2147483648"}, "i64": {"\$numberLong": "5000000000"}, "i64small": {"\$numberLong": "5"}, "dec": {"\$numberDecimal": "1.2300E-5"}, "dz": {"\$numberDecimal": "-0"}}'),
 (3, '{"s": "h\\u00e9llo \\u65e5\\u672c \\ud83d\\ude00 \\"q\\" \\\\\\\\ \\t", "nul": "a\\u0000b", "": "empty key"}'),
 (4, '{"b0": {"\$binary": {"base64": "AAECAwQ=", "subType": "00"}}, "b4": {"\$binary": {"base64": "c//SZESzTGmQ6OfR38A11A==", "subType": "04"}}, "b80": {"\$binary": {"base64": "", "subType": "80"}}}'),
 (5, '{"oid": {"\$oid": "57e193d7a9cc81b4027498b5"}, "date": {"\$date": {"\$numberLong": "-1"}}, "date10k": {"\$date": {"\$numberLong": "253402300800000"}}, "ts": {"\$timestamp": {"t": 4294967295, "i": 1}}, "re": {"\$regularExpression": {"pattern": "a/b", "options": "ix"}}}'),
 (6, '{"code": {"\$code": "f()"}, "cws": {"\$code": "g()", "\$scope": {"a": 1}}, "sym": {"\$symbol": "s"}, "dbp": {"\$dbPointer": {"\$ref": "db.c", "\$id": {"\$oid": "57e193d7a9cc81b4027498b5"}}}}'),
 (7, '{"u": {"\$undefined": true}, "n": null, "min": {"\$minKey": 1}, "max": {"\$maxKey": 1}, "t": true, "f": false, "arr": [1, [2, {"a": []}], {}], "nested": {"a": {"b": {"c": "d"}}}}');
});

my $snap_q = {
	keys => q{SELECT string_agg(bson_to_json(k, true), E'\n') FROM get_keys() k},
	vault => q{SELECT string_agg(format('%s %s %s %s %s %s %s', _id, key_alt_names, encode(key_material, 'hex'),
                                        master_key, master_key_version, creation_date, status), E'\n' ORDER BY _id)
               FROM key_vault},
	alt_names => q{SELECT string_agg(key_alt_name || '=' || key_id, ',' ORDER BY key_alt_name) FROM key_alt_names},
	cipher => q{SELECT md5(string_agg(doc::bytea, ''::bytea ORDER BY id)) FROM people},
	plain => q{SELECT md5(string_agg(decrypt(doc)::bytea, ''::bytea ORDER BY id)) FROM people},
	plain_docs => q{SELECT string_agg(id || ':' || md5(doc::bytea), ',' ORDER BY id) FROM plain_docs},
	sample => q{SELECT bson_to_json(decrypt(doc), true) FROM people WHERE id IN (0, 7) ORDER BY id},
	det => q{SELECT md5(string_agg(encrypt_value(bson_from_jsonb(jsonb_build_object('', 'v' || i)), k, 'deterministic')::bytea, ''::bytea ORDER BY i, k))
             FROM generate_series(1, 50) i, unnest(ARRAY['hr', 'hr2', 'mc']) k},
};

sub snapshot
{
	my ($n, $db) = @_;
	return { map { $_ => $n->safe_psql($db, $snap_q->{$_}) } keys %$snap_q };
}
my $before = snapshot($node, 'src');
like($before->{sample}, qr/"note" : "n\\u00e9e 7"|"note" : "n\x{c3}\x{a9}e 7"/, 'source decrypts');
like($before->{sample}, qr/from libmongocrypt/, 'source decrypts the libmongocrypt value');
is(scalar(split /\n/, $before->{keys}), 3, 'source has three keys');

my $dump = "$tmp/src.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'src', '-f', $dump ], 'pg_dump -Fc');

# Check a restored database against the source.
sub check_restored
{
	my ($n, $db, $what) = @_;
	my $after = snapshot($n, $db);
	for my $k (sort keys %$snap_q)
	{
		is($after->{$k}, $before->{$k}, "$what: $k identical");
	}
	# keyAltNames still unique, in every way a name can be added
	my ($ret, $out, $err) = $n->psql($db, "SELECT create_data_key('local', ARRAY['hr2'])");
	like($err, qr/keyAltName "hr2" is already used by data key \Q$k1\E/,
		"$what: create_data_key with a used alt name fails");
	($ret, $out, $err) = $n->psql($db, "SELECT add_key_alt_name('$k2', 'mc')");
	like($err, qr/keyAltName "mc" is already used by data key \Q$mc_id\E/,
		"$what: add_key_alt_name with a used alt name fails");
	($ret, $out, $err) = $n->psql($db, "SELECT import_key(" . sql_literal($mc_doc) . ")");
	like($err, qr/data key \Q$mc_id\E is already in the key vault/, "$what: re-import refused");
	is($n->safe_psql($db, "SELECT count(*) FROM key_vault"), '3', "$what: still three keys");
	is( $n->safe_psql($db, "SELECT get_key_by_alt_name('hr2') = get_key('$k1') AND get_key_by_alt_name('mc') = get_key('$mc_id')"),
		't', "$what: alt names resolve");

	# the index on the encrypted field
	my $q = q{SELECT id, doc ~>> 'ssn' FROM people WHERE doc -> 'ssn' = '{"": "000001234"}'::bson ## 'hr'};
	like($n->safe_psql($db, "SET enable_seqscan = off; EXPLAIN (COSTS OFF) $q"),
		qr/(Index Scan using|Bitmap Index Scan on) people_ssn\b/, "$what: the index on the encrypted field is used");
	is($n->safe_psql($db, "SET enable_seqscan = off; $q"), '1234|000001234',
		"$what: the index scan finds the right row");
	is($n->safe_psql($db, "SET enable_seqscan = off; SELECT count(*) FROM people WHERE doc -> 'ssn' = '{\"\": \"000001234\"}'::bson ## 'hr2'"),
		'1', "$what: ... also by the key's other alt name");
	$n->safe_psql($db, q{INSERT INTO people VALUES (9999, encrypt_field('{"ssn": "999999999"}', 'ssn', 'hr', 'deterministic'))});
	is($n->safe_psql($db, q{SET enable_seqscan = off; SELECT id FROM people WHERE doc -> 'ssn' = '{"": "999999999"}'::bson ## 'hr'}),
		'9999', "$what: the index keeps working for new rows");
	is($n->safe_psql($db, q{SELECT count(*) FROM people WHERE decrypt(doc) -> 'ssn' = '{"": "000001234"}'}),
		'1', "$what: sequential check agrees");
	$n->safe_psql($db, q{DELETE FROM people WHERE id = 9999});

	# libmongocrypt decrypts the restored data with the keys exported from it
	my $vf = "$tmp/vault_$what.json";
	$vf =~ s/ /_/g;
	open my $fh, '>', $vf or die;
	print $fh $n->safe_psql($db, q{SELECT string_agg(bson_to_json(k, true), E'\n') FROM get_keys() k}), "\n";
	close $fh;
	my @c = split /\n/, $n->safe_psql($db, q{SELECT bson_to_json(doc, true) FROM people WHERE id IN (0, 7) ORDER BY id});
	my @d = oracle('decrypt', join("\n", @c) . "\n", '--master-key', $mk, '--key-vault', $vf);
	my @want = oracle('decrypt', $before->{sample} . "\n", '--master-key', $mk, '--key-vault', '/dev/null');
	is_deeply(\@d, \@want, "$what: libmongocrypt decrypts restored documents with the exported keys");
}

$node->safe_psql('postgres', 'CREATE DATABASE dst');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'dst', $dump ],
	'pg_restore into a new database');
$node->safe_psql('dst', 'ALTER DATABASE dst SET search_path = bsoncrypt, public');
check_restored($node, 'dst', 'same cluster');

# A second cluster, same master key file contents.
my $keyfile2 = "$tmp/master2.key";
write_secret_file($keyfile2, $mk . "\n");
my $node2 = new_node('restore', $keyfile2);
$node2->safe_psql('postgres', 'CREATE DATABASE dst2');
$node2->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'dst2', $dump ],
	'pg_restore into a second cluster');
$node2->safe_psql('dst2', 'ALTER DATABASE dst2 SET search_path = bsoncrypt, public');
check_restored($node2, 'dst2', 'second cluster');

# The same cluster with another master key: the data restores, nothing decrypts.
write_secret_file($keyfile2, random_master_key() . "\n");
my ($ret, $out, $err) = $node2->psql('dst2', 'SELECT decrypt(doc) FROM people WHERE id = 1');
isnt($ret, 0, 'with another master key the restored data does not decrypt');
my $unwrap = qr/ERROR:  cannot unwrap data key [0-9a-f-]{36} with master key version "default" of provider "local"/;
like($err, $unwrap, '... with an error naming the key and the master key');
($ret, $out, $err) = $node2->psql('dst2', q{SELECT encrypt_value('{"": "x"}', 'hr', 'deterministic')});
isnt($ret, 0, '... and does not encrypt');
like($err, qr/ERROR:  cannot unwrap data key \Q$k1\E/, '... naming the key');
is($node2->safe_psql('dst2', 'SELECT count(*) FROM people'), '2001', '... but the rows are there');

$node2->stop;
$node->stop;
done_testing();
