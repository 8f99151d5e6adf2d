# Customer-held master keys (docs/customer-keys.md): supplied through libpq
# as bind parameters, used, and never found anywhere afterwards.
#
# The server logs everything it can: log_statement = all,
# log_min_duration_statement = 0, log_parameter_max_length_on_error = -1
# (also set by the session itself: any user may), auto_explain with
# log_analyze, log_verbose and log_nested_statements, pg_stat_statements
# tracking nested statements.  A client (t/helpers/customer_key_client.c,
# libpq) supplies keys in binary and in text format, through unnamed and
# named statements, uses them, fails with them (a statement failing after
# the key was supplied, inside a SQL function), rewraps from one customer
# key to another, and tries the refused ways (a literal, EXPLAIN).  Then
# no key is in the server log, pg_stat_statements, pg_stat_activity or
# any file of the data directory, as hex, base64 or raw bytes; a key the
# test writes into an ordinary statement on purpose is found, so the
# search itself works.
#
# Also: a wrong key is 28000 with a HINT, never wrong plaintext; data keys
# stay readable only while their customer key is supplied (after COMMIT,
# after clear_customer_key, in the next transaction: 55000, whatever the
# key cache TTL); parallel plans do not break; a wrapper function is
# refused; the rotation worker is refused.
use strict;
use warnings;
use File::Find;
use IPC::Run;
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $client = customer_key_client($tmp);

# keys: alice, bob; the literal and the wrapper are refused and must be
# considered disclosed; canary is written into a statement on purpose
my %keys;
for my $name (qw(alice bob literal wrapper canary))
{
	open my $fh, '<:raw', '/dev/urandom' or die;
	read($fh, my $bytes, 96) == 96 or die;
	close $fh;
	$keys{$name} = $bytes;
	open my $out, '>:raw', "$tmp/$name.key" or die;
	print $out $bytes;
	close $out;
}
my $node = bsoncrypt_node(
	'customer_keys',
	# the local master key is alice's customer key: the formats are the same
	key_file => encode_base64($keys{alice}, ''),
	conf => q{
shared_preload_libraries = 'pg_stat_statements, auto_explain, bsoncrypt'
log_statement = all
log_min_duration_statement = 0
log_parameter_max_length = -1
log_parameter_max_length_on_error = -1
log_min_error_statement = debug5
log_error_verbosity = verbose
auto_explain.log_min_duration = 0
auto_explain.log_analyze = on
auto_explain.log_verbose = on
auto_explain.log_nested_statements = on
pg_stat_statements.track = all
bsoncrypt.key_cache_ttl = 3600
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION bsoncrypt; CREATE EXTENSION pg_stat_statements');
$node->safe_psql('postgres', q{
CREATE TABLE docs (id int, v bsoncrypt.bson);
CREATE FUNCTION fails() RETURNS int LANGUAGE sql AS 'SELECT 1 / 0';
CREATE FUNCTION wrap_supply(k bytea) RETURNS void LANGUAGE plpgsql
    AS $$ BEGIN PERFORM bsoncrypt.supply_customer_key('w', k); END $$;
CREATE FUNCTION renamed_supply(text, bytea) RETURNS void
    AS 'bsoncrypt', 'bsoncrypt_supply_customer_key' LANGUAGE C;
});

my $hex = sub { unpack('H*', $keys{ $_[0] }) };

sub client
{
	my ($commands) = @_;
	$commands =~ s/\@(\w+)/$tmp\/$1.key/g;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $client, $node->connstr('postgres') ], '<', \$commands, '>', \$out, '2>', \$err);
	diag("customer_key_client: $err") if $err ne '';
	return $out;
}

# create, encrypt, decrypt; the session asks for parameters in error contexts
my $out = client(q{
sql SET log_parameter_max_length_on_error = -1
sql BEGIN
supply alice @alice
sql SELECT bsoncrypt.supplied_customer_keys()
sql SELECT bsoncrypt.create_data_key('customer', '{ck}', NULL, '{"keyName": "alice"}') IS NOT NULL
sql INSERT INTO docs SELECT i, bsoncrypt.encrypt_value(format('{"": "secret %s"}', i)::bsoncrypt.bson, 'ck', 'random') FROM generate_series(1, 3) i
sql SELECT bsoncrypt.decrypt_value(v) FROM docs WHERE id = 1
sql COMMIT
});
is($out, "\nalice\nt\n{ \"\" : \"secret 1\" }\n", 'a supplied key creates a data key that encrypts and decrypts');
like(
	$node->safe_psql('postgres', q{SELECT bsoncrypt.bson_get(bsoncrypt.get_key_by_alt_name('ck'), 'masterKey')}),
	qr/"provider" : "customer", "keyName" : "alice", "keyCheck" : \{ "\$binary"/,
	'the masterKey document names the provider, the key and its check value');

# the audit trail records the supply by name (its writer drains the queue)
ok( $node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM bsoncrypt.key_audit
	 WHERE event = 'customer_key_supplied' AND key_alt_name = 'alice'
	   AND provider = 'customer' AND result = 'ok'}),
	'supplying a customer key is in the audit trail, by name');

# the customer key wraps in MongoDB's local format: the key document, with
# masterKey {provider: "local"}, imports under a local master key of the
# same 96 bytes (import_key checks that the local key unwraps it)
my $doc = $node->safe_psql('postgres', q{SELECT bsoncrypt.get_key_by_alt_name('ck')});
$doc =~ s/"_id" : \{ "\$binary" : \{ "base64" : "[^"]*", "subType" : "04" \} \}/"_id" : { "\$uuid" : "0e9bd3a6-2d5c-4d44-9a1f-5a7e0c3b1d01" }/
  or die "no _id in $doc";
$doc =~ s/"keyAltNames" : \[[^\]]*\], //;
$doc =~ s/"masterKey" : \{ "provider" : "customer".*\}\s*$/"masterKey" : { "provider" : "local" } }/
  or die "no customer masterKey in $doc";
is( $node->safe_psql('postgres', 'SELECT bsoncrypt.import_key(' . sql_literal($doc) . ')'),
	'0e9bd3a6-2d5c-4d44-9a1f-5a7e0c3b1d01',
	'a data key wrapped by a customer key unwraps as MongoDB\'s local format with the same 96 bytes');

# withheld: the next transaction, with the data key still cached (TTL 1h)
$out = client(q{
sql BEGIN
supply alice @alice
sql SELECT bsoncrypt.decrypt_value(v) FROM docs WHERE id = 1
sql COMMIT
sql SELECT bsoncrypt.decrypt_value(v) FROM docs WHERE id = 1
sql BEGIN
supplytext alice @alice
sql SELECT bsoncrypt.decrypt_value(v) FROM docs WHERE id = 2
sql SELECT bsoncrypt.clear_customer_key('alice')
sql SELECT bsoncrypt.decrypt_value(v) FROM docs WHERE id = 2
sql ROLLBACK
sql BEGIN
supply alice @bob
sql SELECT bsoncrypt.decrypt_value(v) FROM docs WHERE id = 3
sql ROLLBACK
});
like($out, qr/^\n\{ "" : "secret 1" \}\nERROR 55000 customer key "alice" is not supplied in this transaction\nHINT Supply it first/,
	'after COMMIT the cached data key is gone: 55000');
like($out, qr/\{ "" : "secret 2" \}\nt\nERROR 55000 customer key "alice" is not supplied/,
	'a key supplied in text format works; clear_customer_key withholds it at once');
like($out, qr/ERROR 28000 the key supplied as customer key "alice" is not the one that wrapped this key\nHINT Supply the key/,
	'a wrong key under the right name: 28000 with a HINT');
unlike($out, qr/secret 3/, 'a wrong key never decrypts');

# a statement that fails after supplying (inside a SQL function), a named
# statement, and a parallel plan while a key is supplied
$out = client(q{
sql SET log_parameter_max_length_on_error = -1
sql BEGIN
param @alice SELECT bsoncrypt.supply_customer_key('alice', $1), fails()
sql ROLLBACK
sql BEGIN
supplynamed alice @alice
sql SET LOCAL force_parallel_mode = on
sql SET LOCAL parallel_setup_cost = 0
sql SELECT count(bsoncrypt.decrypt_value(v)) FROM docs
sql COMMIT
});
like($out, qr/^ERROR 22012 division by zero\n\n3\n$/, 'failing statements and named statements; no parallel worker needs the key');

# rewrap from alice to bob in a session supplying both
$out = client(q{
sql BEGIN
supply alice @alice
supply bob @bob
sql SELECT bsoncrypt.rewrap_many_data_key('{"keyAltNames": "ck"}', 'customer', 'bob')
sql SELECT bsoncrypt.rewrap_many_data_key()
sql COMMIT
sql BEGIN
supply alice @alice
sql SELECT bsoncrypt.decrypt_value(v) FROM docs WHERE id = 1
sql ROLLBACK
sql BEGIN
supply bob @bob
sql SELECT bsoncrypt.decrypt_value(v) FROM docs WHERE id = 1
sql COMMIT
});
like($out, qr/^\n\n1\n1\n\nERROR 55000 customer key "bob" is not supplied.*\nHINT.*\n\n\{ "" : "secret 1" \}\n$/,
	'rewrapped to bob: alice no longer opens it, bob does; a vault-wide rewrap moves only the local key');

# refused: a literal key, EXPLAIN, a wrapper function, the rotation worker
my $literal = $hex->('literal');
$out = client(qq{
sql BEGIN
sql SELECT bsoncrypt.supply_customer_key('x', '\\x$literal')
sql ROLLBACK
sql BEGIN
param \@alice EXPLAIN (ANALYZE, VERBOSE) SELECT bsoncrypt.supply_customer_key('x', \$1)
sql ROLLBACK
sql BEGIN
param \@wrapper SELECT wrap_supply(\$1)
sql ROLLBACK
sql BEGIN
param \@wrapper SELECT renamed_supply('x', \$1)
sql ROLLBACK
sql SELECT bsoncrypt.rotate_master_key('customer')
sql SELECT count(*) FROM bsoncrypt.rotation_state WHERE provider = 'customer'
});
like($out, qr/^ERROR 22023 the key given to bsoncrypt.supply_customer_key must be a bind parameter\n/, 'a literal key is refused');
like($out, qr/\nERROR 0A000 bsoncrypt.supply_customer_key must be called directly .*\nHINT.*\nERROR 0A000 bsoncrypt.supply_customer_key must be called directly/,
	'EXPLAIN and a wrapper function are refused');
like($out, qr/\nERROR 0A000 a statement supplying a customer key must call bsoncrypt.supply_customer_key by that name\n/,
	'the C function under another name is refused');
like($out, qr/ERROR 0A000 the rotation worker cannot rewrap keys of the customer provider\n.*\n0\n$/, 'the rotation worker is refused');

# the canary: a key written into an ordinary statement is found by the search
my $canary = $hex->('canary');
client(qq{sql SELECT '\\x$canary'::bytea IS NOT NULL\n});

like(
	$node->safe_psql('postgres', q{SELECT string_agg(query, ' ') FROM pg_stat_statements}),
	qr/supply_customer_key\(\$1, \$2\)/,
	'pg_stat_statements saw the supplying statement, with its parameters as $n');
my $stats = $node->safe_psql('postgres',
	q{SELECT string_agg(query, ' ') FROM pg_stat_statements} . ' UNION ALL '
	  . q{SELECT string_agg(query, ' ') FROM pg_stat_activity});
$node->safe_psql('postgres', 'CHECKPOINT');
$node->stop;	# pg_stat_statements writes its file

# every form a key could take
sub forms
{
	my ($bytes) = @_;
	my @forms;
	for (my $i = 0; $i + 16 <= 96; $i += 16)
	{
		my $chunk = substr($bytes, $i, 16);
		push @forms, [ "hex at $i", lc unpack('H*', $chunk) ];
		push @forms, [ "HEX at $i", uc unpack('H*', $chunk) ];
		push @forms, [ "raw at $i", $chunk ];
	}
	for (my $i = 0; $i + 24 <= 96; $i += 24)
	{
		push @forms, [ "base64 at $i", encode_base64(substr($bytes, $i, 24), '') ];
	}
	return @forms;
}

my @files;
find(sub { push @files, $File::Find::name if -f $_ }, $node->data_dir);
push @files, $node->logfile;
my %contents;
for my $file (@files)
{
	open my $fh, '<:raw', $file or next;
	local $/;
	$contents{$file} = <$fh> // '';
	close $fh;
}
$contents{'pg_stat_statements and pg_stat_activity'} = $stats;

sub found_in
{
	my ($bytes) = @_;
	my @where;
	for my $form (forms($bytes))
	{
		for my $place (sort keys %contents)
		{
			push @where, "$form->[0] in $place" if index($contents{$place}, $form->[1]) >= 0;
		}
	}
	return @where;
}

my $log = $contents{ $node->logfile };
like($log, qr/execute <unnamed>: <a statement supplying a customer key: not logged>/,
	'the server log shows that a key was supplied, not the statement');
ok(scalar(found_in($keys{canary})) > 0, 'the canary written into a statement is found');
for my $name (qw(alice bob literal))
{
	my @where = found_in($keys{$name});
	is_deeply(\@where, [], "key $name is nowhere: log, statistics, data directory");
}
# PostgreSQL logs the parameters of statements (here: of the refused
# wrapper and renamed calls, whose key must be considered disclosed), never those of
# statements that call supply_customer_key
my @params = $log =~ /parameters: ([^\n]*)/g;
ok(@params > 0, 'the server logs bind parameters');
is_deeply([ grep { index($_, $hex->('wrapper')) < 0 } @params ], [],
	'the only parameters logged are those of the refused wrapper and renamed calls');

done_testing();
