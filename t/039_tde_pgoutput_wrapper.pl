# Logical decoding of encrypted_heap tables through slots made with
# "pgoutput" (docs/at-rest-encryption.md): with
# dynamic_library_path = '$libdir/bsoncrypt_decoders:$libdir', the name
# "pgoutput" loads bsoncrypt, which hands decrypted changes to the real
# pgoutput.  So an ordinary subscription (its slot, and the catch-up slots
# of its table synchronizations, all "pgoutput") replicates encrypted
# tables, also when they are written during the initial copy; Citus's
# shard moves rely on the same (t/060_citus.pl).  Decrypted changes leave
# the server only over SSL or a Unix-domain socket.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $pub = bsoncrypt_node('wrap_pub', init => { allows_streaming => 'logical' }, key_file => random_master_key(),
	conf => q{
dynamic_library_path = '$libdir/bsoncrypt_decoders:$libdir'
listen_addresses = '127.0.0.1'
});
$pub->start;
allow_bsoncrypt_output_plugin($pub);
my $sub = bsoncrypt_node('wrap_sub', key_file => random_master_key());
$sub->start;

my $table = q{CREATE TABLE t (id int PRIMARY KEY, doc jsonb, note text) USING encrypted_heap;};
$pub->safe_psql('postgres', qq{
CREATE EXTENSION bsoncrypt;
$table
INSERT INTO t SELECT g, jsonb_build_object('secret', 'MARKER-' || g), 'before ' || g FROM generate_series(1, 50) g;
CREATE PUBLICATION p FOR TABLE t;
});
# a subscriber trigger that sleeps keeps the initial copy open while the
# publisher writes: those rows arrive through the table synchronization's
# own pgoutput slot
$sub->safe_psql('postgres', qq{
CREATE EXTENSION bsoncrypt;
$table
CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN PERFORM pg_sleep(0.05); RETURN NEW; END \$\$;
CREATE TRIGGER slow BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION slow();
ALTER TABLE t ENABLE ALWAYS TRIGGER slow;
});
my $connstr = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres', qq{CREATE SUBSCRIPTION s CONNECTION '$connstr' PUBLICATION p});
$pub->poll_query_until('postgres', q{SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name LIKE 'pg\_%\_sync\_%'})
  or die 'no table sync slot';
$pub->safe_psql('postgres', q{
INSERT INTO t VALUES (51, '{"secret": "MARKER-during-copy"}', 'during the copy');
UPDATE t SET note = note || ' updated' WHERE id % 7 = 0;
});
$sub->wait_for_subscription_sync($pub, 's');
$pub->safe_psql('postgres', q{
INSERT INTO t SELECT g, jsonb_build_object('secret', 'MARKER-' || g), 'after ' || g FROM generate_series(52, 100) g;
DELETE FROM t WHERE id % 10 = 0;
});
$pub->wait_for_catchup('s');
my $digest = q{SELECT count(*), md5(string_agg(t::text, '|' ORDER BY id)) FROM t};
my $expected = $pub->safe_psql('postgres', $digest);
like($expected, qr/^90\|/, 'the publisher has 90 rows');
is($sub->safe_psql('postgres', $digest), $expected,
	'an ordinary subscription (pgoutput slots) replicates the encrypted table, writes during its copy included');
is($pub->safe_psql('postgres', q{SELECT string_agg(DISTINCT plugin, ',') FROM pg_replication_slots}), 'pgoutput',
	'... through slots made with "pgoutput"');
unlike(slurp_file($pub->logfile), qr/cannot decode encrypted_heap tables/, '... none of them refused');
is($sub->safe_psql('postgres', q{SELECT bsoncrypt.is_encrypted('t')}), 't', '... into a table encrypted with the subscriber\'s keys');

# the plugin "bsoncrypt" wrapping pgoutput still finds the real pgoutput
$pub->safe_psql('postgres', q{SELECT 'made' FROM pg_create_logical_replication_slot('bc', 'bsoncrypt')});
$pub->safe_psql('postgres', q{INSERT INTO t VALUES (200, '{"secret": "MARKER-200"}', 'x')});
like($pub->safe_psql('postgres', q{SELECT count(*) FROM pg_logical_slot_peek_binary_changes('bc', NULL, NULL,
	'proto_version', '1', 'publication_names', 'p')}), qr/^[1-9]/, 'a "bsoncrypt" slot wraps the real pgoutput');

# decrypted changes over TCP: only with SSL
$pub->safe_psql('postgres', q{SELECT 'made' FROM pg_create_logical_replication_slot('tcp', 'pgoutput')});
$pub->safe_psql('postgres', q{INSERT INTO t VALUES (201, '{"secret": "MARKER-201"}', 'x')});
my $peek = q{SELECT count(*) FROM pg_logical_slot_peek_binary_changes('tcp', NULL, NULL,
	'proto_version', '1', 'publication_names', 'p')};
my $tcp = 'host=127.0.0.1 port=' . $pub->port . ' dbname=postgres sslmode=disable';
my ($rc, $out, $err) = $pub->psql('postgres', $peek, connstr => $tcp);
like($err, qr/replication slot "tcp" would send decrypted changes over a connection without SSL/,
	'decoding to a TCP client without SSL is refused');
like($pub->safe_psql('postgres', $peek), qr/^[1-9]/, '... and allowed over the Unix-domain socket');
$pub->append_conf('postgresql.conf', 'bsoncrypt.decoding_requires_ssl = off');
$pub->reload;
like($pub->safe_psql('postgres', $peek, connstr => $tcp), qr/^[1-9]/,
	'... and over TCP with bsoncrypt.decoding_requires_ssl = off');

# without the link directory on the path, "pgoutput" is the real one: refused
$pub->safe_psql('postgres', q{SELECT 'made' FROM pg_create_logical_replication_slot('plain', 'pgoutput')});
$pub->safe_psql('postgres', q{INSERT INTO t VALUES (202, '{"secret": "MARKER-202"}', 'x')});
($rc, $out, $err) = $pub->psql('postgres', q{SET dynamic_library_path = '$libdir';
SELECT count(*) FROM pg_logical_slot_peek_binary_changes('plain', NULL, NULL, 'proto_version', '1', 'publication_names', 'p')});
like($err, qr/replication slot "plain" cannot decode encrypted_heap tables with output plugin "pgoutput"/,
	'with the real pgoutput the slot is refused');
like($err, qr/bsoncrypt_decoders first in dynamic_library_path/, '... with a hint naming the link directory');

done_testing();
