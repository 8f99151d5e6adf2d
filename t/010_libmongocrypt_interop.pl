# Interoperability with the reference implementation, libmongocrypt (driven
# through test/oracle/mongocrypt_oracle), under a fresh random local master key:
#  a. keys and ciphertexts made by libmongocrypt import into / decrypt in bsoncrypt;
#  b. ciphertexts made by bsoncrypt (with an imported key and with its own key,
#     exported through get_key / get_key_by_alt_name) decrypt in libmongocrypt,
#     and deterministic ciphertexts are byte-identical on both sides;
#  c. both refuse the same BSON types per algorithm;
#  d. every single-byte change of a ciphertext or of wrapped key material is
#     detected, and a key wrapped by another master key is refused;
#  e. delete_key shreds: values under the key no longer decrypt, also in a
#     session that already had the key cached.
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

sub b64_to_uuid
{
	my $hex = unpack('H*', decode_base64(shift));
	$hex =~ s/^(.{8})(.{4})(.{4})(.{4})(.{12})$/$1-$2-$3-$4-$5/;
	return $hex;
}

my $mk = random_master_key();
my $keyfile = "$tmp/master.key";
write_secret_file($keyfile, "$mk\n");
chmod 0600, $keyfile;

my $node = PostgreSQL::Test::Cluster->new('interop');
$node->init(extra => [ '-E', 'UTF8', '--locale=C' ]);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'bsoncrypt'
bsoncrypt.local_master_key_file = '$keyfile'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION bsoncrypt');
$node->safe_psql('postgres', 'ALTER DATABASE postgres SET search_path = bsoncrypt, public');

sub sql { return $node->safe_psql('postgres', shift) }

# ---------------------------------------------------------------------
# The values: [name, canonical Extended JSON, deterministic allowed]
# ---------------------------------------------------------------------
my @alphabet = ('a' .. 'z', 'A' .. 'Z', 0 .. 9, ' ', '\\u00e9', '\\u20ac', '\\\\', '\\"');
my $long = join('', map { $alphabet[ ($_ * 7) % @alphabet ] } 0 .. 4999);
my @values = (
	[ 'string', '"hello"', 1 ],
	[ 'string-empty', '""', 1 ],
	[ 'string-unicode', '"h\u00e9llo w\u00f6rld \u2713 \u65e5\u672c\u8a9e \ud83d\ude00"', 1 ],
	[ 'string-escapes', '"quote \" backslash \\\\ tab \t newline \n nul \u0000 end"', 1 ],
	[ 'string-15', '"123456789012345"', 1 ],
	[ 'string-16', '"1234567890123456"', 1 ],
	[ 'string-long', qq{"$long"}, 1 ],
	[ 'int32-0', '{"$numberInt": "0"}', 1 ],
	[ 'int32-min', '{"$numberInt": "-2147483648"}', 1 ],
	[ 'int32-max', '{"$numberInt": "2147483647"}', 1 ],
	[ 'int64-0', '{"$numberLong": "0"}', 1 ],
	[ 'int64-min', '{"$numberLong": "-9223372036854775808"}', 1 ],
	[ 'int64-max', '{"$numberLong": "9223372036854775807"}', 1 ],
	[ 'date-epoch', '{"$date": {"$numberLong": "0"}}', 1 ],
	[ 'date-neg', '{"$date": {"$numberLong": "-62135596800000"}}', 1 ],
	[ 'date-now', '{"$date": {"$numberLong": "1795701519368"}}', 1 ],
	[ 'objectId', '{"$oid": "57e193d7a9cc81b4027498b5"}', 1 ],
	[ 'binary-0', '{"$binary": {"base64": "AQIDBAUGBwgJCgsMDQ4PEBES", "subType": "00"}}', 1 ],
	[ 'binary-0-empty', '{"$binary": {"base64": "", "subType": "00"}}', 1 ],
	[ 'binary-4', '{"$binary": {"base64": "c//SZESzTGmQ6OfR38A11A==", "subType": "04"}}', 1 ],
	[ 'binary-80', '{"$binary": {"base64": "AQID", "subType": "80"}}', 1 ],
	[ 'timestamp', '{"$timestamp": {"t": 123456789, "i": 42}}', 1 ],
	[ 'regex', '{"$regularExpression": {"pattern": "^a.*b\\\\d$", "options": "imsx"}}', 1 ],
	[ 'regex-empty', '{"$regularExpression": {"pattern": "", "options": ""}}', 1 ],
	[ 'code', '{"$code": "function () { return \"x\"; }"}', 1 ],
	[ 'symbol', '{"$symbol": "sym\u00e9"}', 1 ],
	[ 'dbPointer', '{"$dbPointer": {"$ref": "db.coll", "$id": {"$oid": "57e193d7a9cc81b4027498b5"}}}', 1 ],
	[ 'double', '{"$numberDouble": "1.5"}', 0 ],
	[ 'double-negzero', '{"$numberDouble": "-0.0"}', 0 ],
	[ 'double-inf', '{"$numberDouble": "-Infinity"}', 0 ],
	[ 'double-nan', '{"$numberDouble": "NaN"}', 0 ],
	[ 'double-max', '{"$numberDouble": "1.7976931348623157E+308"}', 0 ],
	[ 'decimal', '{"$numberDecimal": "1.234E-5"}', 0 ],
	[ 'decimal-negzero', '{"$numberDecimal": "-0"}', 0 ],
	[ 'decimal-nan', '{"$numberDecimal": "NaN"}', 0 ],
	[ 'document', '{"a": {"$numberInt": "1"}, "b": {"c": ["x", {"$numberLong": "2"}]}, "": null}', 0 ],
	[ 'document-empty', '{}', 0 ],
	[ 'array', '[{"$numberInt": "1"}, "two", {"three": true}, null, []]', 0 ],
	[ 'array-empty', '[]', 0 ],
	[ 'bool-true', 'true', 0 ],
	[ 'bool-false', 'false', 0 ],
	[ 'codeWScope', '{"$code": "f(a)", "$scope": {"a": {"$numberInt": "1"}}}', 0 ],);
# Types both sides must refuse for every algorithm.
my @never = (
	[ 'null', 'null' ],
	[ 'undefined', '{"$undefined": true}' ],
	[ 'minKey', '{"$minKey": 1}' ],
	[ 'maxKey', '{"$maxKey": 1}' ],
	[ 'binary-6', '{"$binary": {"base64": "AQID", "subType": "06"}}' ],);

my %value = map { $_->[0] => $_->[1] } @values, @never;
my @det = map { $_->[0] } grep { $_->[2] } @values;
my @all = map { $_->[0] } @values;
sub vdoc { return '{"v": ' . $value{ $_[0] } . '}' }

# The plaintext documents, as libmongocrypt's libbson prints them (decrypt
# passes documents without encrypted values through, canonicalized).
my %canonical;
{
	my @names = (@all, map { $_->[0] } @never);
	my @out = oracle('decrypt', join("\n", map { vdoc($_) } @names) . "\n",
		'--master-key', $mk, '--key-vault', '/dev/null');
	is(scalar(@out), scalar(@names), 'oracle canonicalizes every plaintext');
	@canonical{@names} = @out;
}

# ---------------------------------------------------------------------
# a. libmongocrypt -> bsoncrypt
# ---------------------------------------------------------------------
my ($mc_doc) = oracle('create-key', '', '--master-key', $mk, '--alt-name', 'mc_key',
	'--alt-name', 'mc_other');
my ($mc_id_b64) = $mc_doc =~ /"_id" : \{ "\$binary" : \{ "base64" : "([^"]+)"/
  or die "no _id in $mc_doc";
my $mc_id = b64_to_uuid($mc_id_b64);
is(sql("SELECT import_key(" . sql_literal($mc_doc) . ")"), $mc_id,
	'import_key of a libmongocrypt key returns its _id');
is( sql("SELECT get_key('$mc_id')::bytea = " . sql_literal($mc_doc) . "::bson::bytea"),
	't', 'get_key gives back the imported libmongocrypt document byte for byte');
is(sql("SELECT get_key_by_alt_name('mc_other') = get_key('$mc_id')"),
	't', 'both keyAltNames of the imported key resolve');

my $vault1 = "$tmp/vault1.json";
write_secret_file($vault1, "$mc_doc\n");

sub oracle_encrypt
{
	my ($vault, $keyopt, $alg, @names) = @_;
	my @out = oracle('encrypt', join("\n", map { vdoc($_) } @names) . "\n",
		'--master-key', $mk, '--key-vault', $vault, @$keyopt, '--algorithm', $alg);
	die "oracle encrypt: wrong line count" unless @out == @names;
	return @out;
}

sql("CREATE TABLE from_mc (name text, alg text, how text, plain bson, cipher bson)");
my @rows;
for my $alg ('det', 'rand')
{
	my @names = $alg eq 'det' ? @det : @all;
	my @by_name = oracle_encrypt($vault1, [ '--key-alt-name', 'mc_key' ], $alg, @names);
	my @by_id = oracle_encrypt($vault1, [ '--key-id-b64', $mc_id_b64 ], $alg, @names);
	for my $i (0 .. $#names)
	{
		die "oracle refused $names[$i] ($alg): $by_name[$i]" if $by_name[$i] =~ /"error"/;
		push @rows, "(" . join(', ', sql_literal($names[$i]), sql_literal($alg), "'alt_name'",
			sql_literal(vdoc($names[$i])), sql_literal($by_name[$i])) . ")";
		push @rows, "(" . join(', ', sql_literal($names[$i]), sql_literal($alg), "'id'",
			sql_literal(vdoc($names[$i])), sql_literal($by_id[$i])) . ")";
	}
	if ($alg eq 'det')
	{
		is_deeply(\@by_id, \@by_name, 'libmongocrypt det: same ciphertexts by id and by alt name');
	}
}
sql("INSERT INTO from_mc VALUES " . join(",\n", @rows));
my $n_from_mc = 2 * (@det + @all);
is( sql(q{SELECT count(*) FILTER (WHERE cipher::bytea <> plain::bytea
                                     AND bson_to_json(cipher, true) LIKE '%"subType" : "06"%')
          FROM from_mc}),
	$n_from_mc, "all $n_from_mc libmongocrypt ciphertexts are encrypted values");
is( sql(q{SELECT string_agg(name || '/' || alg || '/' || how, ', ')
          FROM from_mc WHERE decrypt(cipher)::bytea IS DISTINCT FROM plain::bytea}),
	'', 'decrypt() of every libmongocrypt ciphertext gives the plaintext exactly');
is( sql(q{SELECT string_agg(name || '/' || alg || '/' || how, ', ')
          FROM from_mc
          WHERE decrypt_field(cipher, 'v')::bytea IS DISTINCT FROM plain::bytea
             OR decrypt_value(cipher)::bytea IS DISTINCT FROM plain::bytea
             OR (cipher ~> 'v')::bytea IS DISTINCT FROM bson_get(plain, 'v')::bytea}),
	'', 'decrypt_field, decrypt_value and ~> agree');
is( sql(q{SELECT string_agg(name, ', ') FROM from_mc
          WHERE name LIKE 'string%' AND name <> 'string-escapes'
            AND (cipher ~>> 'v') IS DISTINCT FROM bson_get_text(plain, 'v')}),
	'', '~>> gives the string plaintexts as text');
my ($nul_ret, $nul_out, $nul_err) = $node->psql('postgres',
	q{SET search_path = bsoncrypt, public; SELECT cipher ~>> 'v' FROM from_mc WHERE name = 'string-escapes'});
like($nul_err, qr/string value contains a NUL character, which type text cannot hold/,
	'~>> refuses a decrypted string holding NUL (text cannot), ~> gives it as bson');

# A libmongocrypt ciphertext nested in a document, next to plain fields.
{
	my ($c) = oracle_encrypt($vault1, [ '--key-alt-name', 'mc_key' ], 'rand', 'string-unicode');
	(my $inner = $c) =~ s/^\{\s*"v"\s*:\s*(.*)\}\s*$/$1/;
	my $doc = qq({"_id": 1, "a": {"b": [0, {"c": $inner}]}, "z": "plain"});
	my $want = qq({"_id": 1, "a": {"b": [0, {"c": $value{'string-unicode'}}]}, "z": "plain"});
	is(sql("SELECT decrypt(" . sql_literal($doc) . ")::bytea = " . sql_literal($want) . "::bson::bytea"),
		't', 'decrypt() finds a libmongocrypt ciphertext nested in arrays and documents');
	is(sql("SELECT decrypt_field(" . sql_literal($doc) . ", 'a.b.1.c')::bytea = " . sql_literal($want) . "::bson::bytea"),
		't', 'decrypt_field by dotted path with an array index');
}

# ---------------------------------------------------------------------
# b. bsoncrypt -> libmongocrypt
# ---------------------------------------------------------------------
my $pg_id = sql("SELECT create_data_key('local', ARRAY['pg_key'])");
like($pg_id, qr/^[0-9a-f-]{36}$/, 'create_data_key');
my $pg_doc = sql("SELECT bson_to_json(get_key_by_alt_name('pg_key'), true)");
my $mc_export = sql("SELECT bson_to_json(get_key('$mc_id'), true)");
is(sql("SELECT get_key_by_alt_name('pg_key') = get_key('$pg_id')"), 't',
	'get_key_by_alt_name and get_key agree');
my $vault2 = "$tmp/vault2.json";
write_secret_file($vault2, "$pg_doc\n$mc_export\n");
my $pg_id_b64 = encode_base64(pack('H*', $pg_id =~ s/-//gr), '');

sql("CREATE TABLE plain_values (name text, det boolean, plain bson)");
sql("INSERT INTO plain_values VALUES "
	  . join(",\n", map { "(" . sql_literal($_->[0]) . ", " . ($_->[2] ? 'true' : 'false') . ", " . sql_literal(vdoc($_->[0])) . ")" } @values));

# Every way bsoncrypt can encrypt, with both keys, by alt name and by id.
my @keyspecs = ("'mc_key'::text", "'$mc_id'::uuid", "'pg_key'::text", "'$pg_id'::uuid");
my @ways;
for my $k (@keyspecs)
{
	for my $alg ('deterministic', 'random', 'AEAD_AES_256_CBC_HMAC_SHA_512-Random',
		'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic')
	{
		my $det = $alg =~ /det/i ? 1 : 0;
		for my $fn ('encrypt_field(plain, %s)', 'encrypt_value(plain, %s)',
			'encrypt_fields(plain, ARRAY[\'v\'], %s)')
		{
			my $args = ($fn =~ /encrypt_field\(/ ? "'v', " : '') . "$k, '$alg'";
			push @ways, [ sprintf($fn, $args), $det ];
		}
	}
}
my $union = join("\nUNION ALL\n", map {
	my ($expr, $det) = @$_;
	"SELECT name, " . sql_literal($expr) . " AS how, bson_to_json($expr, true) AS cipher FROM plain_values"
	  . ($det ? " WHERE det" : '')
} @ways);
my @sql_out = split /\n/, sql("SELECT name || E'\\t' || how || E'\\t' || cipher FROM ($union) s");
my (@names_b, @hows_b, @ciphers_b);
for (@sql_out)
{
	my ($n, $h, $c) = split /\t/, $_, 3;
	push @names_b, $n;
	push @hows_b, $h;
	push @ciphers_b, $c;
}
my $expected_b = 0;
$expected_b += ($_->[1] ? @det : @all) for @ways;
is(scalar(@ciphers_b), $expected_b, "bsoncrypt made $expected_b ciphertexts");
my @dec = oracle('decrypt', join("\n", @ciphers_b) . "\n", '--master-key', $mk,
	'--key-vault', $vault2);
is(scalar(@dec), scalar(@ciphers_b), 'oracle decrypted every line');
my @bad_b;
for my $i (0 .. $#dec)
{
	push @bad_b, "$names_b[$i] via $hows_b[$i]: $dec[$i]"
	  if $dec[$i] ne $canonical{ $names_b[$i] } || $ciphers_b[$i] !~ /"subType" : "06"/;
}
is(scalar(@bad_b), 0, 'libmongocrypt decrypts every bsoncrypt ciphertext to the plaintext')
  or diag(join("\n", @bad_b[ 0 .. ($#bad_b < 9 ? $#bad_b : 9) ]));

# A document with several encrypted fields at several depths.
{
	my $doc = qq({"_id": 7, "a": {"s": $value{'string-unicode'}, "d": $value{'document'}}, "n": $value{'int64-max'}, "k": "plain"});
	my $enc = sql("SELECT bson_to_json(encrypt_field(encrypt_fields(" . sql_literal($doc)
		  . ", ARRAY['a.s', 'n'], 'pg_key', 'deterministic'), 'a.d', 'mc_key', 'random'), true)");
	like($enc, qr/"k" : "plain"/, 'fields not named stay in clear');
	my ($dec) = oracle('decrypt', "$enc\n", '--master-key', $mk, '--key-vault', $vault2);
	my ($want) = oracle('decrypt', "$doc\n", '--master-key', $mk, '--key-vault', '/dev/null');
	is($dec, $want, 'libmongocrypt decrypts a document with fields encrypted by two keys at two depths');
}

# Deterministic ciphertexts are byte-identical, for both keys.
sql("CREATE TABLE det_mc (name text, key text, cipher bson)");
for my $k ([ 'mc_key', $vault1 ], [ 'pg_key', $vault2 ])
{
	my @c = oracle_encrypt($vault2, [ '--key-alt-name', $k->[0] ], 'det', @det);
	sql("INSERT INTO det_mc VALUES "
		  . join(",\n", map { "(" . sql_literal($det[$_]) . ", '$k->[0]', " . sql_literal($c[$_]) . ")" } 0 .. $#det));
}
is( sql(q{SELECT count(*) FROM det_mc d JOIN plain_values p USING (name)
          WHERE encrypt_value(p.plain, d.key, 'deterministic')::bytea = d.cipher::bytea
            AND encrypt_field(p.plain, 'v', d.key, 'deterministic')::bytea = d.cipher::bytea
            AND (bson_get(p.plain, 'v') ## d.key)::bytea = bson_get(d.cipher, 'v')::bytea}),
	2 * @det, 'deterministic ciphertexts of bsoncrypt and libmongocrypt are byte-identical (both keys, '
	  . scalar(@det) . ' values each)');
is( sql(q{SELECT count(*) FROM plain_values
          WHERE encrypt_value(plain, 'pg_key', 'random') <> encrypt_value(plain, 'pg_key', 'random')
            AND decrypt(encrypt_field(plain, 'v', 'pg_key', 'random')) = plain}),
	scalar(@all), 'random encryption differs every time and round-trips');
is( sql(q{SELECT count(*) FROM det_mc WHERE decrypt(cipher)::bytea
            = (SELECT plain::bytea FROM plain_values p WHERE p.name = det_mc.name)}),
	2 * @det, 'bsoncrypt decrypts libmongocrypt ciphertexts under its own exported key');

# ---------------------------------------------------------------------
# c. refusals agree
# ---------------------------------------------------------------------
sql(q{CREATE FUNCTION refused(v bson, alg text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM encrypt_value(v, 'mc_key', alg);
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$});
for my $alg ('det', 'rand')
{
	my @names = (@all, map { $_->[0] } @never);
	my @out = oracle_encrypt($vault1, [ '--key-alt-name', 'mc_key' ], $alg, @names);
	my @mc_refused = map { $names[$_] } grep { $out[$_] =~ /^\{ "error"/ } 0 .. $#names;
	my $pgalg = $alg eq 'det' ? 'deterministic' : 'random';
	my %state = map { split /\t/ } split /\n/, sql(
		"SELECT name || E'\\t' || coalesce(refused(plain, '$pgalg'), 'accepted') FROM (VALUES "
		  . join(', ', map { "(" . sql_literal($_) . ", " . sql_literal(vdoc($_)) . "::bson)" } @names)
		  . ") v(name, plain)");
	my @pg_refused = grep { $state{$_} ne 'accepted' } @names;
	my @expected = ((map { $_->[0] } @never),
		($alg eq 'det' ? (map { $_->[0] } grep { !$_->[2] } @values) : ()));
	is_deeply([ sort @mc_refused ], [ sort @expected ], "$alg: libmongocrypt refuses exactly the expected types");
	is_deeply([ sort @pg_refused ], [ sort @mc_refused ], "$alg: bsoncrypt refuses exactly what libmongocrypt refuses");
	is(join(',', grep { $state{$_} ne '22023' } @pg_refused), '',
		"$alg: refusals are invalid_parameter_value errors");
}

# ---------------------------------------------------------------------
# d. tampering
# ---------------------------------------------------------------------
{
	my ($c) = oracle_encrypt($vault1, [ '--key-alt-name', 'mc_key' ], 'rand', 'string-unicode');
	my ($cd) = oracle_encrypt($vault1, [ '--key-alt-name', 'mc_key' ], 'det', 'int64-max');
	sql("CREATE TABLE tamper_src (name text, cipher bson, plain bson)");
	sql("INSERT INTO tamper_src VALUES ('rand-string', " . sql_literal($c) . ", " . sql_literal(vdoc('string-unicode'))
		  . "), ('det-int64', " . sql_literal($cd) . ", " . sql_literal(vdoc('int64-max')) . ")");
	# {"v": Binary}: int32 length, 0x05, "v\0", int32 payload length, subtype 6, payload, 0x00
	# so the FLE1 payload is bytes 12 .. length-2. Flip each byte (low bit, and all bits).
	my $res = sql(q{
CREATE TABLE tampered AS
SELECT s.name, i, mask, set_byte(s.cipher::bytea, i, get_byte(s.cipher::bytea, i) # mask)::bson AS cipher, s.plain
FROM tamper_src s, generate_series(12, length(s.cipher::bytea) - 2) i, (VALUES (1), (255)) m(mask);
CREATE FUNCTION try_decrypt(fn text, c bson, OUT state text, OUT msg text, OUT result bson) LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT %s($1%s)', fn, CASE WHEN fn = 'decrypt_field' THEN ', ''v''' ELSE '' END)
        INTO result USING c;
    state := 'returned';
EXCEPTION WHEN OTHERS THEN
    state := SQLSTATE; msg := SQLERRM;
END $$;
CREATE TABLE tamper_result AS
SELECT t.name, t.i, t.mask, f.fn, r.*, t.cipher, t.plain
FROM tampered t, (VALUES ('decrypt_field'), ('decrypt_value'), ('decrypt')) f(fn),
     LATERAL try_decrypt(f.fn, t.cipher) r;
SELECT count(DISTINCT (name, i, mask)) FROM tampered});
	my $n = $res;
	ok($n > 2 * 2 * 82, "tampered $n ciphertexts (every payload byte of two values, two masks)");
	is( sql(q{SELECT string_agg(format('%s byte %s ^ %s via %s', name, i, mask, fn), ', ')
              FROM tamper_result WHERE fn <> 'decrypt' AND state = 'returned'}),
		'', 'decrypt_field and decrypt_value raise an error for every modified byte');
	# decrypt() (automatic decryption) leaves a Binary subtype 6 whose first byte
	# is not an FLE1 blob subtype (1 or 2) alone, like drivers do for unknown
	# subtypes; otherwise it must fail. It never returns a plaintext.
	is( sql(q{SELECT string_agg(format('%s byte %s ^ %s: %s', name, i, mask, result), ', ')
              FROM tamper_result
              WHERE fn = 'decrypt' AND state = 'returned'
                AND NOT (i = 12 AND get_byte(cipher::bytea, 12) NOT IN (1, 2) AND result::bytea = cipher::bytea)}),
		'', 'decrypt() raises an error for every modified byte (or passes a non-FLE1 blob through unchanged)');
	is(sql(q{SELECT count(*) FROM tamper_result WHERE result::bytea = plain::bytea}),
		'0', 'no modified ciphertext ever decrypts to the plaintext');
	is( sql(q{SELECT count(*) FROM tamper_result
              WHERE state <> 'returned' AND (i < 13 OR i > 28)
                AND msg ~ '^cannot decrypt field "v"( with data key [0-9a-f-]{36}: |: not an FLE1)'}),
		sql(q{SELECT count(*) FROM tamper_result WHERE state <> 'returned' AND (i < 13 OR i > 28)}),
		'errors outside the key id name the field and the key or the format problem')
	  or diag(sql(q{SELECT string_agg(DISTINCT format('%s byte %s ^ %s via %s: %s', name, i, mask, fn, msg), E'\n')
                    FROM tamper_result WHERE state <> 'returned' AND (i < 13 OR i > 28)
                     AND msg !~ '^cannot decrypt field "v"( with data key [0-9a-f-]{36}: |: not an FLE1)'}));
	like( sql(q{SELECT string_agg(DISTINCT msg, ' | ') FROM tamper_result WHERE i BETWEEN 13 AND 28}),
		qr/data key [0-9a-f-]{36} is not in the key vault/, 'a modified key id names the unknown key');
	is(sql(q{SELECT count(*) FROM tamper_src WHERE decrypt(cipher) = plain}), '2',
		'the untouched ciphertexts still decrypt');

	# libmongocrypt's automatic decryption agrees on every modified ciphertext:
	# the same ones fail, the same ones are passed through unchanged.
	my @t = split /\n/, sql(q{SELECT r.state = 'returned', bson_to_json(t.cipher, true)
                              FROM tampered t JOIN tamper_result r USING (name, i, mask)
                              WHERE r.fn = 'decrypt' ORDER BY name, i, mask});
	my @pg_passed = map { /^t\|/ ? 1 : 0 } @t;
	s/^[tf]\|// for @t;
	my @o = oracle('decrypt', join("\n", @t) . "\n", '--master-key', $mk, '--key-vault', $vault1);
	my @disagree = grep {
		my $mc_passed = $o[$_] =~ /^\{ "error"/ ? 0 : 1;
		$mc_passed != $pg_passed[$_] || ($mc_passed && $o[$_] ne $t[$_])
	} 0 .. $#t;
	is(scalar(@disagree), 0, 'libmongocrypt refuses the same modified ciphertexts as decrypt() ('
		  . scalar(grep { /^\{ "error"/ } @o) . ' of ' . scalar(@t) . ' refused)')
	  or diag(join("\n", map { "$t[$_] => $o[$_]" } @disagree));
}

# Modified keyMaterial: every byte of the 160 refused, nothing inserted.
{
	my ($k) = oracle('create-key', '', '--master-key', $mk, '--alt-name', 'shred_me');
	my ($kid_b64) = $k =~ /"_id" : \{ "\$binary" : \{ "base64" : "([^"]+)"/;
	my $kid = b64_to_uuid($kid_b64);
	my $before = sql("SELECT count(*) FROM key_vault");
	sql("CREATE TABLE key_src AS SELECT " . sql_literal($k) . "::bson AS doc");
	sql(q{CREATE FUNCTION try_import(d bson, OUT state text, OUT msg text) LANGUAGE plpgsql AS $$
BEGIN
    PERFORM import_key(d);
    state := 'imported';
EXCEPTION WHEN OTHERS THEN
    state := SQLSTATE; msg := SQLERRM;
END $$});
	# payload of keyMaterial: after type, "keyMaterial\0", int32 length, subtype
	my $r = sql(q{
WITH src AS (SELECT doc::bytea AS b, position('\x6b65794d6174657269616c00'::bytea IN doc::bytea) + 16 AS off FROM key_src),
     t AS (SELECT i, set_byte(b, off + i, get_byte(b, off + i) # 1)::bson AS d
           FROM src, generate_series(0, 159) i)
SELECT count(*), count(*) FILTER (WHERE state = '28000' AND msg LIKE 'cannot import data key %: no master key version of provider "local" unwraps it'),
       count(*) FILTER (WHERE state = 'imported')
FROM t, LATERAL try_import(d)});
	is($r, '160|160|0', 'each of the 160 modified keyMaterial bytes makes import_key refuse the key');
	is(sql("SELECT count(*) FROM key_vault"), $before, 'no modified key was inserted');
	is(sql("SELECT import_key(doc) FROM key_src"), $kid, 'the unmodified key imports');

	# A key wrapped by another master key.
	my $other_mk = random_master_key();
	my ($w) = oracle('create-key', '', '--master-key', $other_mk, '--alt-name', 'wrong_mk');
	my ($wid) = $w =~ /"_id" : \{ "\$binary" : \{ "base64" : "([^"]+)"/;
	$wid = b64_to_uuid($wid);
	$before = sql("SELECT count(*) FROM key_vault");
	my ($ret, $out, $err) = $node->psql('postgres', "SELECT import_key(" . sql_literal($w) . ")");
	isnt($ret, 0, 'import_key of a key wrapped by another master key fails');
	like($err, qr/ERROR:  cannot import data key \Q$wid\E: no master key version of provider "local" unwraps it/,
		'... with a clear error naming the key');
	like($err, qr/HINT:  .*bsoncrypt\.local_master_key_file/, '... and a hint');
	is(sql("SELECT count(*) FROM key_vault") . '/' . sql("SELECT count(*) FROM key_alt_names WHERE key_alt_name = 'wrong_mk'"),
		"$before/0", '... and nothing inserted');

	# ---------------------------------------------------------------------
	# e. crypto-shredding
	# ---------------------------------------------------------------------
	my $vault3 = "$tmp/vault3.json";
	write_secret_file($vault3, "$k\n$mc_doc\n");
	my ($sc) = oracle_encrypt($vault3, [ '--key-alt-name', 'shred_me' ], 'rand', 'string');
	my ($sd) = oracle_encrypt($vault3, [ '--key-alt-name', 'shred_me' ], 'det', 'string');
	my ($keep) = oracle_encrypt($vault3, [ '--key-alt-name', 'mc_key' ], 'rand', 'string');
	sql("CREATE TABLE shred (n int, cipher bson)");
	sql("INSERT INTO shred VALUES (1, " . sql_literal($sc) . "), (2, " . sql_literal($sd) . "), "
		  . "(3, encrypt_field(" . sql_literal(vdoc('string')) . ", 'v', 'shred_me', 'random'))");
	sql("CREATE TABLE keep (cipher bson)");
	sql("INSERT INTO keep VALUES (" . sql_literal($keep) . ")");

	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	is($bg->query_safe("SELECT string_agg(decrypt(cipher) ->> 'v', ',' ORDER BY n) FROM shred"),
		'hello,hello,hello', 'before delete_key, a session decrypts with the key (and caches it)');
	is(sql("SELECT delete_key('$kid')"), 't', 'delete_key');
	is(sql("SELECT delete_key('$kid')"), 'f', 'delete_key again finds nothing');
	for my $q ("SELECT decrypt(cipher) FROM shred WHERE n = 1",
		"SELECT decrypt_field(cipher, 'v') FROM shred WHERE n = 2",
		"SELECT cipher ~>> 'v' FROM shred WHERE n = 3")
	{
		$bg->{stderr} = '';
		my ($o, $failed) = $bg->query($q);
		my $e = $bg->{stderr};
		ok($failed && $o eq '', "cached session: $q fails");
		like($e, qr/ERROR:  data key \Q$kid\E is not in the key vault/, '... naming the deleted key');
		my ($ret2, $out2, $err2) = $node->psql('postgres', $q);
		ok($ret2 != 0 && $out2 eq '', "new session: $q fails");
		like($err2, qr/ERROR:  data key \Q$kid\E is not in the key vault/, '... naming the deleted key');
	}
	$bg->{stderr} = '';
	is($bg->query_safe("SELECT decrypt(cipher) ->> 'v' FROM keep"), 'hello',
		'the cached session still decrypts with the other key');
	my ($o, $failed) = $bg->query("SELECT encrypt_value('{\"\": 1}', 'shred_me')");
	like($bg->{stderr}, qr/no data key has keyAltName "shred_me"/, 'the alt name of a deleted key is gone');
	$bg->quit;
	is(sql("SELECT count(*) FROM key_alt_names WHERE key_id = '$kid'"), '0', 'its alt names are gone');
	my @o = oracle('decrypt', "$sc\n", '--master-key', $mk, '--key-vault', $vault1);
	like($o[0], qr/"error"/, 'libmongocrypt without the key cannot decrypt either');
}

$node->stop;
done_testing();
