# The audit trail of key use (docs/audit.md): every key event leaves a row in
# bsoncrypt.key_audit with who, what and the result; failures in transactions
# that roll back are recorded all the same (through the queue and the audit
# writer); unwraps are counted per key; key administrators and superusers read
# the table, nobody changes it except purge_key_audit(), which is recorded; the
# JSON log line appears with bsoncrypt.audit_log and holds no key bytes; the
# trail survives pg_dump / pg_restore.
use strict;
use warnings;
use JSON::PP;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $mk1 = random_master_key();
my $mk2 = random_master_key();
my $mk3 = random_master_key();
my $node = bsoncrypt_node('audit', key_file => "default $mk1",
	conf => "bsoncrypt.audit_log = on\nbsoncrypt.rotation_retry_delay = 1\nbsoncrypt.audit_queue_size = 256\n");
my $keyfile = $node->basedir . '/master.key';
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION bsoncrypt;
CREATE ROLE keyadmin LOGIN;
CREATE ROLE app LOGIN;
SELECT bsoncrypt.grant_key_admin('keyadmin');
SELECT bsoncrypt.grant_encryption('app');
SELECT bsoncrypt.grant_decryption('app');
});

my $super = $node->safe_psql('postgres', 'SELECT current_user');

# wait until the audit writer has written every queued event
sub drain
{
	ok($node->poll_query_until('postgres', 'SELECT queued = 0 FROM bsoncrypt.key_audit_queue_status()'),
		'the audit queue is drained');
}

sub q_as
{
	my ($role, $sql) = @_;
	return $node->safe_psql('postgres', $sql, extra_params => [ '-U', $role ]);
}

# rows of an event: "event|result|sqlstate|key_alt_name|provider|version|session_role|effective_role|count"
sub rows
{
	my ($where) = @_;
	return $node->safe_psql('postgres', qq{
SELECT string_agg(concat_ws('|', event, result, coalesce(sqlstate, '-'), coalesce(key_alt_name, '-'),
                            coalesce(provider, '-'), coalesce(master_key_version, '-'),
                            session_role, effective_role, count), E'\n' ORDER BY event_time)
  FROM bsoncrypt.key_audit WHERE $where});
}

sub wait_rows
{
	my ($where, $what) = @_;
	ok($node->poll_query_until('postgres', "SELECT count(*) > 0 FROM bsoncrypt.key_audit WHERE $where"),
		"$what: recorded");
}

# --- data key changes, in the transaction that makes them
my $id = q_as('keyadmin', q{SELECT bsoncrypt.create_data_key('local', '{audited}')});
is(rows("key_id = '$id'"), 'data_key_created|ok|-|audited|local|default|keyadmin|keyadmin|1',
	'create_data_key: who, what, result');
q_as('keyadmin', qq{SELECT bsoncrypt.add_key_alt_name('$id', 'audited2')});
is($node->safe_psql('postgres', qq{SELECT detail FROM bsoncrypt.key_audit
  WHERE key_id = '$id' AND event = 'data_key_alt_names_changed'}),
	'{"after": ["audited", "audited2"], "before": ["audited"]}', 'add_key_alt_name: names before and after');
q_as('keyadmin', qq{SELECT bsoncrypt.remove_key_alt_name('$id', 'audited2')});
is($node->safe_psql('postgres', qq{SELECT count(*) FROM bsoncrypt.key_audit
  WHERE key_id = '$id' AND event = 'data_key_alt_names_changed'}), '2', 'remove_key_alt_name recorded');

# keys made in bulk by the key administrator (as bench/ scripts do) are creates too
q_as('keyadmin', q{INSERT INTO bsoncrypt.key_vault (_id, key_alt_names, key_material, master_key, master_key_version)
  SELECT gen_random_uuid(), ARRAY['bulk' || i], (m).key_material, (m).master_key, (m).master_key_version
    FROM (SELECT i, bsoncrypt._new_key_material('local') AS m FROM generate_series(1, 3) i) s});
is($node->safe_psql('postgres', q{SELECT string_agg(event, ',') FROM bsoncrypt.key_audit WHERE key_alt_name LIKE 'bulk%'}),
	'data_key_created,data_key_created,data_key_created', 'keys inserted with _new_key_material are created');
q_as('keyadmin', q{DELETE FROM bsoncrypt.key_vault WHERE key_alt_names[1] LIKE 'bulk%'});

# a change that rolls back leaves no row
q_as('keyadmin', q{BEGIN; SELECT bsoncrypt.create_data_key('local', '{rolled_back}'); ROLLBACK;});
is(rows("key_alt_name = 'rolled_back'"), '', 'a key created in a rolled-back transaction leaves no row');

# export, delete, import
my $doc = q_as('keyadmin', qq{SELECT bsoncrypt.get_key('$id')});
q_as('keyadmin', qq{SELECT bsoncrypt.delete_key('$id')});
q_as('keyadmin', "SELECT bsoncrypt.import_key(" . sql_literal($doc) . ")");
is(rows("key_id = '$id' AND event IN ('data_key_deleted', 'data_key_imported')"),
	"data_key_deleted|ok|-|audited|local|default|keyadmin|keyadmin|1\n"
	  . "data_key_imported|ok|-|audited|local|default|keyadmin|keyadmin|1",
	'delete_key and import_key recorded');

# --- unwraps are counted, one row per session, key and period
my $ct = $node->safe_psql('postgres', q{SELECT bsoncrypt.encrypt_value('{"": "secret"}', 'audited')});
my $pid = $node->safe_psql('postgres', qq{
SET bsoncrypt.key_cache_ttl = 0;
SELECT bsoncrypt.decrypt_value('$ct');
SELECT bsoncrypt.decrypt_value('$ct');
SELECT bsoncrypt.decrypt_value('$ct');
SELECT bsoncrypt.decrypt_value('$ct');
SELECT bsoncrypt.decrypt_value('$ct');
SELECT pg_backend_pid();});
$pid = (split /\n/, $pid)[-1];
wait_rows("event = 'data_key_unwrapped' AND backend_pid = $pid", 'unwraps of a session');
is($node->safe_psql('postgres', qq{SELECT count || '|' || key_id || '|' || provider || '|' || master_key_version
  FROM bsoncrypt.key_audit WHERE event = 'data_key_unwrapped' AND backend_pid = $pid}),
	"5|$id|local|default", 'five unwraps make one row with count 5');
# within the cache TTL the key is unwrapped once
$pid = $node->safe_psql('postgres', qq{
SELECT bsoncrypt.decrypt_value('$ct');
SELECT bsoncrypt.decrypt_value('$ct');
SELECT pg_backend_pid();});
$pid = (split /\n/, $pid)[-1];
wait_rows("event = 'data_key_unwrapped' AND backend_pid = $pid", 'cached unwraps');
is($node->safe_psql('postgres', qq{SELECT sum(count) FROM bsoncrypt.key_audit
  WHERE event = 'data_key_unwrapped' AND backend_pid = $pid}), '1', 'a cached key is unwrapped once');

# --- failures in transactions that roll back are recorded
my ($ret, $out, $err) = $node->psql('postgres', q{BEGIN; SELECT bsoncrypt.encrypt_value('{"": 1}', 'no_such_key'); COMMIT;},
	extra_params => [ '-U', 'app' ]);
like($err, qr/no data key has keyAltName "no_such_key"/, 'an unknown key fails');
wait_rows("event = 'unwrap_failed' AND key_alt_name = 'no_such_key'", 'unknown key in a rolled-back transaction');
is(rows("event = 'unwrap_failed' AND key_alt_name = 'no_such_key'"),
	'unwrap_failed|error|42704|no_such_key|-|-|app|app|1', '... as an error with SQLSTATE 42704, by app');

# tampered key material: rows for the change, and the failed unwrap
my $tid = $node->safe_psql('postgres', q{SELECT bsoncrypt.create_data_key('local', '{tampered}')});
my $tct = $node->safe_psql('postgres', q{SELECT bsoncrypt.encrypt_value('{"": "t"}', 'tampered')});
q_as('keyadmin', qq{UPDATE bsoncrypt.key_vault SET key_material = set_byte(key_material, 50, get_byte(key_material, 50) # 1)
  WHERE _id = '$tid'});
is(rows("key_id = '$tid' AND event = 'data_key_rewrapped'"),
	'data_key_rewrapped|ok|-|tampered|local|default|keyadmin|keyadmin|1',
	'a direct UPDATE of key_material is recorded as a rewrap by its role');
($ret, $out, $err) = $node->psql('postgres', qq{BEGIN; SELECT bsoncrypt.decrypt_value('$tct'); ROLLBACK;},
	extra_params => [ '-U', 'app' ]);
like($err, qr/cannot unwrap data key \Q$tid\E/, 'tampered key material does not unwrap');
wait_rows("event = 'unwrap_failed' AND key_id = '$tid'", 'tampered key');
is(rows("event = 'unwrap_failed' AND key_id = '$tid'"), 'unwrap_failed|error|28000|-|local|default|app|app|1',
	'... as an error with SQLSTATE 28000');

# a deleted key (crypto-shredded)
q_as('keyadmin', qq{SELECT bsoncrypt.delete_key('$tid')});
($ret, $out, $err) = $node->psql('postgres', qq{SELECT bsoncrypt.decrypt_value('$tct')}, extra_params => [ '-U', 'app' ]);
wait_rows("event = 'unwrap_failed' AND key_id = '$tid' AND sqlstate = '42704'", 'deleted key');

# --- provider errors: a master key command that fails
$node->append_conf('postgresql.conf', "bsoncrypt.master_key_command = 'exit 3'\n");
$node->reload;
($ret, $out, $err) = $node->psql('postgres', q{BEGIN; SELECT bsoncrypt.create_data_key('command'); COMMIT;},
	extra_params => [ '-U', 'keyadmin' ]);
isnt($ret, 0, 'a failing master key command fails create_data_key');
wait_rows("event = 'provider_error' AND provider = 'command'", 'provider error');
like(rows("event = 'provider_error' AND provider = 'command'"), qr/^provider_error\|error\|\w{5}\|-\|command\|-\|keyadmin\|keyadmin\|1$/,
	'... with the provider, the role and a SQLSTATE');

# a missing master key file: the message does not name the file
$node->safe_psql('postgres', q{CREATE TABLE docs_enc AS SELECT bsoncrypt.encrypt_value('{"": 1}', 'audited') AS v});
rename($keyfile, "$keyfile.away") or die;
($ret, $out, $err) = $node->psql('postgres', q{SET bsoncrypt.key_cache_ttl = 0; SELECT bsoncrypt.decrypt_value(v) FROM docs_enc});
isnt($ret, 0, 'without the key file nothing unwraps');
wait_rows("event = 'provider_error' AND provider = 'local'", 'missing key file');
is($node->safe_psql('postgres', qq{SELECT count(*) FROM bsoncrypt.key_audit
  WHERE event = 'provider_error' AND provider = 'local' AND strpos(message, '$keyfile') = 0}),
	$node->safe_psql('postgres', q{SELECT count(*) FROM bsoncrypt.key_audit WHERE event = 'provider_error' AND provider = 'local'}),
	'... and its message does not name the key file');
rename("$keyfile.away", $keyfile) or die;

# --- rewrap_many_data_key and the rotation worker
write_secret_file($keyfile, "default $mk1\nv2 $mk2\n");
q_as('keyadmin', q{SELECT bsoncrypt.rewrap_many_data_key('{"keyAltNames": "audited"}')});
is($node->safe_psql('postgres', qq{SELECT master_key_version || '|' || (detail ->> 'from_version') || '|' || session_role
  FROM bsoncrypt.key_audit WHERE key_id = '$id' AND event = 'data_key_rewrapped'}),
	'v2|default|keyadmin', 'rewrap_many_data_key: a rewrap row from default to v2');

$node->safe_psql('postgres', q{CREATE TABLE at_rest (t text) USING encrypted_heap; INSERT INTO at_rest VALUES ('x')});
is(rows(q{event = 'table_key_created' AND relation = 'public.at_rest'}),
	"table_key_created|ok|-|-|local|v2|$super|$super|1", 'a table key created, named by its relation');
$node->safe_psql('postgres', q{BEGIN; TRUNCATE at_rest; ROLLBACK; TRUNCATE at_rest; INSERT INTO at_rest VALUES ('x')});
is($node->safe_psql('postgres', q{SELECT count(*) FROM bsoncrypt.key_audit WHERE event = 'table_key_created' AND relation = 'public.at_rest'}),
	'2', 'TRUNCATE makes a new key (the rolled-back one left no row)');
is($node->safe_psql('postgres', q{SELECT count(*) || '|' || bool_and(relation LIKE 'file %')::int FROM bsoncrypt.key_audit WHERE event = 'table_key_deleted'}),
	'1|1', '... and deletes the key of the old file, named by the file');
write_secret_file($keyfile, "default $mk1\nv2 $mk2\nv3 $mk3\n");
$node->safe_psql('postgres', q{SELECT bsoncrypt.rotate_master_key('local')});
ok($node->poll_query_until('postgres', q{SELECT state = 'done' FROM bsoncrypt.rotation_status WHERE provider = 'local'}),
	'rotation done');
is(rows(q{event IN ('rotation_started', 'rotation_finished')}),
	"rotation_started|ok|-|-|local|v3|$super|$super|1\nrotation_finished|ok|-|-|local|v3|$super|$super|1",
	'rotation started and finished, towards v3');
my $worker_rows = $node->safe_psql('postgres', q{SELECT count(*) FROM bsoncrypt.key_audit
  WHERE event = 'data_key_rewrapped' AND master_key_version = 'v3'
    AND backend_pid IS DISTINCT FROM pg_backend_pid() AND application_name = 'bsoncrypt rotation worker'});
is($worker_rows, $node->safe_psql('postgres', q{SELECT count(*) FROM bsoncrypt.key_vault}),
	'the worker rewrapped every data key, each recorded');
is($node->safe_psql('postgres', q{SELECT relation || '|' || master_key_version FROM bsoncrypt.key_audit
  WHERE event = 'table_key_rewrapped'}), 'public.at_rest|v3', 'a table key rewrap names its relation');

# a rotation that fails: the key file becomes unreadable (too open)
write_secret_file($keyfile, "default $mk1\nv2 $mk2\nv3 $mk3\nv4 $mk1\n", 0644);
$node->safe_psql('postgres', q{SELECT bsoncrypt.rotate_master_key('local')});
wait_rows("event = 'rotation_failed'", 'failed rotation');
like(rows(q{event = 'rotation_failed'}), qr/^rotation_failed\|error\|\w{5}\|-\|local\|/, 'rotation_failed with SQLSTATE');
write_secret_file($keyfile, "default $mk1\nv2 $mk2\nv3 $mk3\n");
ok($node->poll_query_until('postgres', q{SELECT state = 'done' FROM bsoncrypt.rotation_status WHERE provider = 'local'}),
	'the retried rotation finishes');

# --- a full queue: events are counted as lost, and the count is recorded
# (bsoncrypt.audit_queue_size = 256; the writer is blocked by a lock on the
# table while 300 failures happen)
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE bsoncrypt.key_audit IN ACCESS EXCLUSIVE MODE');
$node->safe_psql('postgres', q{
DO $$ BEGIN
  FOR i IN 1..300 LOOP
    BEGIN
      PERFORM bsoncrypt.encrypt_value('{"": 1}', 'overflow-' || i);
    EXCEPTION WHEN undefined_object THEN NULL;
    END;
  END LOOP;
END $$});
my $lost = $node->safe_psql('postgres', 'SELECT lost FROM bsoncrypt.key_audit_queue_status()');
ok($lost >= 44, "a full queue counts lost events ($lost)");
$locker->query_safe('COMMIT');
$locker->quit;
drain();
ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM bsoncrypt.key_audit WHERE event = 'audit_events_lost'}),
	'the lost events are recorded');
is($node->safe_psql('postgres', q{SELECT (SELECT count(*) FROM bsoncrypt.key_audit WHERE key_alt_name LIKE 'overflow-%')
                                       + (SELECT sum(count) FROM bsoncrypt.key_audit WHERE event = 'audit_events_lost')}),
	'300', 'every failure is either a row or counted as lost');
my @lost_lines = slurp_file($node->logfile) =~ /bsoncrypt audit: .*"key_alt_name":"overflow-/g;
is(scalar(@lost_lines), 300, 'and every one of them is in the server log');

# --- who may read, nobody may change
($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM bsoncrypt.key_audit', extra_params => [ '-U', 'app' ]);
like($err, qr/permission denied for table key_audit/, 'a role without grant_key_admin cannot read the trail');
ok(q_as('keyadmin', 'SELECT count(*) FROM bsoncrypt.key_audit') > 10, 'the key administrator reads it');
for my $stmt ('UPDATE bsoncrypt.key_audit SET event = \'x\'', 'DELETE FROM bsoncrypt.key_audit',
	'TRUNCATE bsoncrypt.key_audit',
	q{INSERT INTO bsoncrypt.key_audit (event_time, event, result) VALUES (now(), 'forged', 'ok')})
{
	($ret, $out, $err) = $node->psql('postgres', $stmt, extra_params => [ '-U', 'keyadmin' ]);
	like($err, qr/permission denied/, "key administrator: $stmt refused");
}
for my $stmt ('UPDATE bsoncrypt.key_audit SET event = \'x\'', 'DELETE FROM bsoncrypt.key_audit',
	'TRUNCATE bsoncrypt.key_audit',
	'SET session_replication_role = replica; DELETE FROM bsoncrypt.key_audit')
{
	($ret, $out, $err) = $node->psql('postgres', $stmt);
	like($err, qr/bsoncrypt.key_audit is append-only/, "superuser: $stmt refused");
}
($ret, $out, $err) = $node->psql('postgres', q{SELECT bsoncrypt.purge_key_audit(now())}, extra_params => [ '-U', 'keyadmin' ]);
like($err, qr/permission denied for function purge_key_audit/, 'the key administrator cannot purge');

# --- the log lines: JSON, one per event, no key bytes
my $log = slurp_file($node->logfile);
my @lines = $log =~ /bsoncrypt audit: (\{.*\})$/mg;
my %seen;
my $json_ok = 1;
for my $l (@lines)
{
	my $e = eval { decode_json($l) };
	if (!$e) { $json_ok = 0; diag "not JSON: $l"; next; }
	$seen{ $e->{event} }++;
}
ok($json_ok && @lines > 10, 'every audit log line is JSON');
for my $ev (qw(data_key_created data_key_imported data_key_deleted data_key_alt_names_changed data_key_rewrapped
	data_key_unwrapped unwrap_failed provider_error rotation_started rotation_finished rotation_failed table_key_rewrapped))
{
	ok($seen{$ev}, "log line for $ev");
}
my $vault = $node->safe_psql('postgres', q{SELECT string_agg(encode(key_material, 'base64'), ' ') FROM bsoncrypt.key_vault});
my @secrets = ($mk1, $mk2, $mk3, split(/\s+/, $vault));
my $leak = 0;
for my $s (@secrets)
{
	my $hex = unpack('H*', decode_base64($s));
	for my $l (@lines) { $leak++ if index($l, substr($s, 0, 24)) >= 0 || index($l, substr($hex, 0, 32)) >= 0; }
}
is($leak, 0, 'no master key or key material in any audit log line');

# --- retention: purge, itself recorded
my $n = $node->safe_psql('postgres', q{SELECT count(*) FROM bsoncrypt.key_audit});
my $purged = $node->safe_psql('postgres', q{SELECT bsoncrypt.purge_key_audit(now() - interval '1 day')});
is($purged, '0', 'nothing is older than a day');
is($node->safe_psql('postgres', q{SELECT detail ->> 'rows' FROM bsoncrypt.key_audit WHERE event = 'audit_purged'}), '0',
	'the purge is recorded');

# --- pg_dump keeps the trail
drain();
my $before = $node->safe_psql('postgres', q{SELECT md5(string_agg(k::text, ',' ORDER BY event_time, event, k::text)) FROM bsoncrypt.key_audit k});
my $dump = $node->basedir . '/audit.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'postgres', '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'restored', $dump ], 'pg_restore');
is($node->safe_psql('restored', q{SELECT md5(string_agg(k::text, ',' ORDER BY event_time, event, k::text)) FROM bsoncrypt.key_audit k
  WHERE database = 'postgres'}), $before, 'the restored trail holds every row of the source');
is($node->safe_psql('restored', q{SELECT count(*) = (SELECT count(*) FROM bsoncrypt.key_vault) FROM bsoncrypt.key_audit
  WHERE event = 'data_key_imported' AND database = 'restored'}), 't', 'the restore records the keys it brought back as imported');

# now purge for real
drain();
$n = $node->safe_psql('postgres', q{SELECT count(*) FROM bsoncrypt.key_audit});
$purged = $node->safe_psql('postgres', q{SELECT bsoncrypt.purge_key_audit(now() + interval '1 second')});
is($purged, $n, 'purge_key_audit deletes the rows before the time');
is($node->safe_psql('postgres', q{SELECT string_agg(event || ':' || (detail ->> 'rows'), ',') FROM bsoncrypt.key_audit}),
	"audit_purged:$n", 'only the record of the purge is left');

$node->stop;
done_testing();
