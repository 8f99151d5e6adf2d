# bsoncrypt on a Citus cluster (docs/citus.md): a coordinator and two
# workers, and a third worker added during the test, all talking to each
# other over SSL only (pg_hba.conf refuses TCP without it).
#   - one key vault: keys made on the coordinator are on, and used by, every
#     node; changes made on a worker are refused; a node holding a key the
#     coordinator lacks is not added; a node added gets the vault and the
#     privileges before it serves queries; GRANT and REVOKE reach every node;
#   - field encryption in distributed queries: SELECT, INSERT ... SELECT and
#     UPDATE pushed down to the shards; deterministic equality routed by the
#     distribution column and answered from each shard's index;
#   - delete_key shreds on every node;
#   - rotation from the coordinator rotates every node, survives a worker
#     killed mid-way, refuses a master key version a worker does not have;
#     a version is retirable only when no node uses it;
#   - encrypted_heap shards moved in every transfer mode, rebalanced and
#     split (block_writes), while writes go on;
#   - no plaintext marker in any file of any node.
# Skips when Citus is not installed (it is not a Debian package: build
# Citus 13.0 for this PostgreSQL to run it).
use strict;
use warnings;
use File::Find;
use IPC::Run;
use MIME::Base64;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $pkglibdir = `pg_config --pkglibdir`;
my $sharedir = `pg_config --sharedir`;
chomp($pkglibdir, $sharedir);
plan skip_all => 'Citus not installed'
  unless -f "$pkglibdir/citus.so" && -f "$sharedir/extension/citus.control";

my $ring_v1 = 'default ' . SPEC_LOCAL_MASTER_KEY . "\n";
my $v2 = 'v2 ' . random_master_key() . "\n";
my $v3 = 'v3 ' . random_master_key() . "\n";

sub citus_node
{
	my ($name) = @_;
	my $node = bsoncrypt_node($name, key_file => $ring_v1, conf => q{
shared_preload_libraries = 'citus,bsoncrypt'
listen_addresses = '127.0.0.1'
max_connections = 100
max_prepared_transactions = 100
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
dynamic_library_path = '$libdir/bsoncrypt_decoders:$libdir'
max_worker_processes = 24
autovacuum = off
search_path = '"$user", public, bsoncrypt'
citus.local_hostname = '127.0.0.1'
citus.recover_2pc_interval = '1s'
citus.shard_count = 8
bsoncrypt.rotation_retry_delay = '1s'
bsoncrypt.rotation_batch_size = 100
bsoncrypt.rotation_batch_delay = '100ms'
});
	# node-to-node connections: SSL only
	open my $hba, '>', $node->data_dir . '/pg_hba.conf' or die;
	print $hba qq{local all all trust
local replication all trust
hostssl all all 127.0.0.1/32 trust
hostssl replication all 127.0.0.1/32 trust
host all all 127.0.0.1/32 reject
host replication all 127.0.0.1/32 reject
};
	close $hba;
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION citus');    # also turns SSL on
	return $node;
}

sub ring_file { return $_[0]->basedir . '/master.key' }

sub write_ring
{
	my ($node, $content) = @_;
	write_secret_file(ring_file($node) . '.tmp', $content);
	rename(ring_file($node) . '.tmp', ring_file($node)) or die;
}

my $coord = citus_node('coord');
my $w1 = citus_node('w1');
my $w2 = citus_node('w2');
my @nodes = ($coord, $w1, $w2);
my $cport = $coord->port;

$coord->safe_psql('postgres', qq{
SELECT citus_set_coordinator_host('127.0.0.1', $cport);
SELECT citus_add_node('127.0.0.1', @{[ $w1->port ]});
SELECT citus_add_node('127.0.0.1', @{[ $w2->port ]});
CREATE EXTENSION bsoncrypt;
});

my ($rc, $out, $err) = $w1->psql('postgres', 'SELECT 1',
	connstr => 'host=127.0.0.1 port=' . $w1->port . ' dbname=postgres sslmode=disable');
like($err, qr/no encryption|reject/, 'a worker refuses TCP connections without SSL');
is($w1->safe_psql('postgres', q{SELECT 1},
	connstr => 'host=127.0.0.1 port=' . $w1->port . ' dbname=postgres sslmode=require'), '1',
	'... and accepts them with SSL (Citus set it up)');

is(join(',', map { $_->safe_psql('postgres', 'SELECT bsoncrypt.cluster_role()') } @nodes),
	'coordinator,worker,worker', 'cluster_role() on each node');

# ---------------------------------------------------------------------------
# One key vault
# ---------------------------------------------------------------------------
my $vault = q{SELECT _id, key_alt_names, encode(key_material, 'hex'), master_key_version,
                     creation_date, update_date, status
                FROM bsoncrypt.key_vault ORDER BY _id};

sub vaults_equal
{
	my ($what) = @_;
	my $expected = $coord->safe_psql('postgres', $vault);
	for my $n (@nodes[ 1 .. $#nodes ])
	{
		is($n->safe_psql('postgres', $vault), $expected, "$what: " . $n->name . "'s key vault is the coordinator's");
	}
}

$coord->safe_psql('postgres', q{
SELECT bsoncrypt.create_data_key('local', '{hr}');
SELECT bsoncrypt.create_data_key('local', '{shred}');
SELECT bsoncrypt.add_key_alt_name(_id, 'payroll') FROM bsoncrypt.key_vault WHERE 'hr' = ANY (key_alt_names);
});
vaults_equal('keys made on the coordinator');
is($w2->safe_psql('postgres', q{SELECT bsoncrypt.decrypt_value(bsoncrypt.encrypt_value('{"": "x"}', 'payroll'))}),
	'{ "" : "x" }', 'a worker encrypts and decrypts with a key made on the coordinator');

# import (of a deleted key), alt-name removal and rewraps reach the workers
my $imported = $coord->safe_psql('postgres', q{
SELECT bsoncrypt.create_data_key('local', '{imp}');
CREATE TABLE saved AS SELECT bsoncrypt.get_key_by_alt_name('imp') AS k,
       bsoncrypt.encrypt_value('{"": "imported"}', 'imp') AS v;
SELECT bsoncrypt.delete_key(_id) FROM bsoncrypt.key_vault WHERE 'imp' = ANY (key_alt_names);
SELECT bsoncrypt.import_key(k) FROM saved;
SELECT bsoncrypt.add_key_alt_name(_id, 'gone') FROM bsoncrypt.key_vault WHERE 'hr' = ANY (key_alt_names);
SELECT bsoncrypt.remove_key_alt_name(_id, 'gone') FROM bsoncrypt.key_vault WHERE 'hr' = ANY (key_alt_names);
SELECT bsoncrypt.rewrap_many_data_key('{}');
SELECT v FROM saved;
});
$imported = (split /\n/, $imported)[-1];
vaults_equal('after import_key, remove_key_alt_name and rewrap_many_data_key');
is($w1->safe_psql('postgres', qq{SELECT bsoncrypt.decrypt_value('$imported')}), '{ "" : "imported" }',
	'a worker decrypts with a key deleted and imported again on the coordinator');
($rc, $out, $err) = $w2->psql('postgres', q{SELECT bsoncrypt.encrypt_value('{"": "x"}', 'gone')});
like($err, qr/no data key has keyAltName "gone"/, 'an alt name removed on the coordinator is gone on the workers');
is($w2->safe_psql('postgres', q{SELECT count(*) FROM bsoncrypt.key_alt_names WHERE key_alt_name = 'gone'}), '0',
	'... from their key_alt_names too');

($rc, $out, $err) = $w1->psql('postgres', q{SELECT bsoncrypt.create_data_key('local', '{rogue}')});
like($err, qr/the key vault of a Citus worker changes only with the coordinator's/,
	'a worker refuses to make keys of its own');
($rc, $out, $err) = $w1->psql('postgres', q{DELETE FROM bsoncrypt.key_vault});
like($err, qr/changes only with the coordinator's/, '... and to delete keys by itself');
vaults_equal('after the refused changes');

# Citus's connections must require SSL: decrypted values cross them
sub set_node_conninfo
{
	my ($conninfo) = @_;
	$coord->safe_psql('postgres', qq{ALTER SYSTEM SET citus.node_conninfo = '$conninfo'; SELECT pg_reload_conf();});
	$coord->poll_query_until('postgres', qq{SELECT current_setting('citus.node_conninfo') = '$conninfo'})
	  or die "citus.node_conninfo did not become $conninfo";
}
set_node_conninfo(q{connect_timeout=10 sslmode = ''prefer''});
($rc, $out, $err) = $coord->psql('postgres', q{SELECT bsoncrypt.create_data_key('local', '{plain}')});
like($err, qr/Citus's connections between nodes do not require SSL.*sslmode to "prefer"/s,
	'no key vault change is sent while citus.node_conninfo does not require SSL');
is($coord->safe_psql('postgres', q{SELECT count(*) FROM bsoncrypt.key_vault WHERE 'plain' = ANY (key_alt_names)}), '0',
	'... and the key is not made');
$coord->safe_psql('postgres', q{ALTER SYSTEM RESET citus.node_conninfo; SELECT pg_reload_conf();});
$coord->poll_query_until('postgres', q{SELECT current_setting('citus.node_conninfo') = 'sslmode=require'})
  or die 'citus.node_conninfo was not reset';

# privileges on the extension's objects follow the coordinator's
$coord->safe_psql('postgres', q{
CREATE ROLE app LOGIN;
SELECT bsoncrypt.grant_encryption('app');
SELECT bsoncrypt.grant_decryption('app');
CREATE ROLE reporter LOGIN;
SELECT bsoncrypt.grant_decryption('reporter');
REVOKE EXECUTE ON FUNCTION bsoncrypt.decrypt(bsoncrypt.bson) FROM reporter;
});
my $acl = q{SELECT has_function_privilege('app', 'bsoncrypt.decrypt(bsoncrypt.bson)', 'EXECUTE'),
                   has_function_privilege('app', 'bsoncrypt.encrypt_value(bsoncrypt.bson, text, text)', 'EXECUTE'),
                   has_function_privilege('reporter', 'bsoncrypt.decrypt(bsoncrypt.bson)', 'EXECUTE'),
                   has_function_privilege('reporter', 'bsoncrypt.decrypt_value(bsoncrypt.bson)', 'EXECUTE')};
is(join(' ', map { $_->safe_psql('postgres', $acl) } @nodes), 't|t|f|t t|t|f|t t|t|f|t',
	'grants and a revoke made on the coordinator hold on every node');

# ---------------------------------------------------------------------------
# Field encryption in distributed queries
# ---------------------------------------------------------------------------
$coord->safe_psql('postgres', q{
CREATE TABLE docs (id bigint PRIMARY KEY, doc bsoncrypt.bson) USING encrypted_heap;
SELECT create_distributed_table('docs', 'id');
CREATE TABLE docs_copy (id bigint PRIMARY KEY, doc bsoncrypt.bson) USING encrypted_heap;
SELECT create_distributed_table('docs_copy', 'id', colocate_with => 'docs');
GRANT SELECT, INSERT, UPDATE ON docs, docs_copy TO app;
INSERT INTO docs SELECT g, bsoncrypt.bson_from_jsonb(jsonb_build_object(
    'name', 'MARKER-NAME-' || g, 'ssn', 'MARKER-SSN-' || g)) FROM generate_series(1, 1000) g;
});

my $update = q{UPDATE docs d SET doc = e.doc
  FROM (SELECT id, bsoncrypt.encrypt_field(doc, 'ssn', 'hr', 'deterministic') AS doc
          FROM docs ORDER BY id) e
 WHERE d.id = e.id};
like($coord->safe_psql('postgres', "EXPLAIN (COSTS OFF) $update"), qr/Task Count: 8.*Update on docs_\d+ d/s,
	'UPDATE ... FROM (... ORDER BY) is pushed down to the shards');
is($coord->safe_psql('postgres', "$update RETURNING 1", extra_params => [ '-U', 'app' ]) =~ tr/1//, 1000,
	'the application role encrypts every document in a distributed UPDATE');
($rc, $out, $err) = $coord->psql('postgres',
	q{UPDATE docs SET doc = bsoncrypt.encrypt_field(doc, 'name', 'hr')});
like($err, qr/STABLE functions used in UPDATE queries cannot be called with column references/,
	'UPDATE ... SET doc = encrypt_field(doc, ...) is refused by Citus, as documented');
is($coord->safe_psql('postgres', q{SELECT count(*) FROM docs
  WHERE bsoncrypt.bson_get(doc, 'ssn')::text LIKE '%"subType" : "06"%'
    AND bsoncrypt.decrypt_get_text(doc, 'ssn') = 'MARKER-SSN-' || id}), '1000',
	'every ssn is an FLE ciphertext that decrypts (SELECT pushed down)');

my $insert_select = q{INSERT INTO docs_copy
SELECT id, bsoncrypt.encrypt_field(doc, 'name', 'payroll') FROM docs};
unlike($coord->safe_psql('postgres', "EXPLAIN (COSTS OFF) $insert_select"),
	qr/INSERT\/SELECT method/, 'INSERT ... SELECT with encryption is pushed down');
$coord->safe_psql('postgres', $insert_select, extra_params => [ '-U', 'app' ]);
is($coord->safe_psql('postgres', q{SELECT count(*) FROM docs_copy
  WHERE doc ~>> 'name' = 'MARKER-NAME-' || id AND doc ~>> 'ssn' = 'MARKER-SSN-' || id},
	extra_params => [ '-U', 'app' ]), '1000', '... and decrypts back');

# deterministic equality: routed by the distribution column ...
$coord->safe_psql('postgres', q{
CREATE TABLE people (ssn bsoncrypt.bson, doc bsoncrypt.bson) USING encrypted_heap;
SELECT create_distributed_table('people', 'ssn');
INSERT INTO people
SELECT bsoncrypt.encrypt_value(bsoncrypt.bson_from_jsonb(jsonb_build_object('', 'MARKER-PSSN-' || g)), 'hr', 'deterministic'),
       bsoncrypt.bson_from_jsonb(jsonb_build_object('n', g))
  FROM generate_series(1, 2000) g;
CREATE INDEX people_ssn ON people (ssn);
CREATE INDEX docs_ssn ON docs ((bsoncrypt.bson_get(doc, 'ssn')));
});
# (the ciphertext as a parameter, as drivers send it: Citus routes by
# constants and parameters, and evaluates no function to route a SELECT)
my $prepare = q{PREPARE by_ssn(bsoncrypt.bson) AS SELECT doc FROM people WHERE ssn = $1;};
my $by_ssn = q{EXECUTE by_ssn(bsoncrypt.encrypt_value('{"": "MARKER-PSSN-1234"}', 'hr', 'deterministic'))};
# the plans of all shards, with sequential scans off there (no ANALYZE:
# statistics would hold plaintext values)
sub shard_plans
{
	my ($query, $before) = @_;
	return $coord->safe_psql('postgres', qq{
BEGIN;
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL enable_seqscan = off;
SET LOCAL citus.explain_all_tasks = on;
@{[ $before // '' ]}
EXPLAIN (COSTS OFF) $query;
COMMIT;});
}
like(shard_plans($by_ssn, $prepare), qr/Task Count: 1\b/,
	'equality on the encrypted distribution column is routed to one shard');
my ($plan, $by_field);
# (Citus cannot show the remote plan of a routed EXECUTE: count index scans)
sub people_index_scans
{
	my $sum = 0;
	$sum += $_->safe_psql('postgres', q{
SET citus.show_shards_for_app_name_prefixes = '*';
SELECT COALESCE(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE indexrelname LIKE 'people_ssn_%'})
	  for @nodes[ 1 .. $#nodes ];
	return $sum;
}
my $scans = people_index_scans();
is($coord->safe_psql('postgres', qq{
BEGIN;
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL enable_seqscan = off;
$prepare
$by_ssn;
COMMIT;}), '{ "n" : 1234 }', '... finds the row');
for (my $tries = 0; $tries < 100 && people_index_scans() == $scans; $tries++)
{
	select(undef, undef, undef, 0.1);    # statistics arrive when sessions end
}
is(people_index_scans(), $scans + 1, '... with one scan of one shard\'s index');
# the same query with the ciphertext as a constant: Citus shows the plan
# of the one shard it routes to, an index scan
my $ciphertext = $coord->safe_psql('postgres',
	q{SELECT bsoncrypt.encrypt_value('{"": "MARKER-PSSN-1234"}', 'hr', 'deterministic')});
my $by_constant = qq{SELECT doc FROM people WHERE ssn = '$ciphertext'};
$plan = shard_plans($by_constant);
like($plan, qr/Task Count: 1\b.*Index Scan using people_ssn_\d+ on people_\d+/s,
	'with the ciphertext as a constant, the plan is one task using that shard\'s index')
  or diag($plan);
is($coord->safe_psql('postgres', $by_constant), '{ "n" : 1234 }', '... and finds the row');

# ... and answered from each shard's index when the table is distributed otherwise
$by_field = q{SELECT id FROM docs
 WHERE bsoncrypt.bson_get(doc, 'ssn') = bsoncrypt.encrypt_value('{"": "MARKER-SSN-77"}', 'hr', 'deterministic')};
$plan = shard_plans($by_field);
is(scalar(() = $plan =~ /Index Scan using docs_ssn_\d+|Bitmap Index Scan on docs_ssn_\d+/g), 8,
	'equality on an encrypted field uses the index of each of the 8 shards');
is($coord->safe_psql('postgres', $by_field), '77', '... and finds the row');
like($coord->safe_psql('postgres', "EXPLAIN (COSTS OFF) $by_field AND id = 77"), qr/Task Count: 1\b/,
	'... routed to one shard with the distribution column');

# ---------------------------------------------------------------------------
# delete_key shreds on every node
# ---------------------------------------------------------------------------
$coord->safe_psql('postgres', q{
CREATE TABLE shredded (id bigint PRIMARY KEY, doc bsoncrypt.bson);
SELECT create_distributed_table('shredded', 'id');
INSERT INTO shredded SELECT g, bsoncrypt.encrypt_field(bsoncrypt.bson_from_jsonb(jsonb_build_object('v', 'MARKER-SHRED-' || g)), 'v', 'shred')
  FROM generate_series(1, 100) g;
});
is($coord->safe_psql('postgres', q{SELECT count(bsoncrypt.decrypt(doc)) FROM shredded}), '100',
	'values under the key "shred" decrypt');
# a worker session that has the key cached
my ($in, $wout, $werr) = ('', '', '');
my $session = IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=0', '-h', $w1->host, '-p', $w1->port, 'postgres' ],
	'<', \$in, '>', \$wout, '2>', \$werr);
my $cached = q{SELECT bsoncrypt.decrypt_value(bsoncrypt.encrypt_value('{"": "cached"}', 'shred'));} . "\n";
$in .= $cached;
$session->pump until $wout =~ /cached/;
is($coord->safe_psql('postgres', q{SELECT bsoncrypt.delete_key(_id) FROM bsoncrypt.key_vault WHERE 'shred' = ANY (key_alt_names)}),
	't', 'delete_key on the coordinator');
is(join(',', map { $_->safe_psql('postgres', q{SELECT count(*) FROM bsoncrypt.key_vault WHERE 'shred' = ANY (key_alt_names)}) } @nodes),
	'0,0,0', '... deletes the key on every node');
($rc, $out, $err) = $coord->psql('postgres', q{SELECT count(bsoncrypt.decrypt(doc)) FROM shredded});
like($err, qr/data key [0-9a-f-]+ is not in the key vault/, '... its values are unreadable through the coordinator');
$in .= $cached;
$session->pump until $werr =~ /not in the key vault|no data key has keyAltName/;
like($werr, qr/no data key has keyAltName "shred"|not in the key vault/,
	'... and in a worker session that had it cached');
$in .= "\\q\n";
$session->finish;
vaults_equal('after delete_key');

# ---------------------------------------------------------------------------
# A node added later
# ---------------------------------------------------------------------------
my $w3 = citus_node('w3');
# a standalone server with a key of its own is not added (its key would go)
$w3->safe_psql('postgres', q{
CREATE EXTENSION bsoncrypt;
SELECT bsoncrypt.create_data_key('local', '{local-only}');
});
($rc, $out, $err) = $coord->psql('postgres', 'SELECT citus_add_node(\'127.0.0.1\', ' . $w3->port . ')');
like($err, qr/this node holds data key [0-9a-f-]+, which the coordinator's key vault does not have/,
	'a node holding a key the coordinator lacks is not added');
is($coord->safe_psql('postgres', 'SELECT count(*) FROM pg_dist_node WHERE nodeport = ' . $w3->port), '0',
	'... and is not in the cluster');
$w3->safe_psql('postgres', q{SELECT bsoncrypt.delete_key(_id) FROM bsoncrypt.key_vault});
$coord->safe_psql('postgres', 'SELECT citus_add_node(\'127.0.0.1\', ' . $w3->port . ')');
push @nodes, $w3;
vaults_equal('a node added later');
is($w3->safe_psql('postgres', $acl), 't|t|f|t', '... has the privileges too');
is($w3->safe_psql('postgres', q{SELECT bsoncrypt.decrypt_value(bsoncrypt.encrypt_value('{"": "new"}', 'hr', 'deterministic'))},
	extra_params => [ '-U', 'app' ]), '{ "" : "new" }', '... and encrypts and decrypts with the cluster\'s keys');

# a worker's vault repaired by hand, then made the coordinator's again
$w1->safe_psql('postgres', q{
SET bsoncrypt.cluster_local_key_vault_changes = on;
DELETE FROM bsoncrypt.key_vault WHERE 'hr' = ANY (key_alt_names);
});
isnt($w1->safe_psql('postgres', $vault), $coord->safe_psql('postgres', $vault),
	'a superuser changed a worker\'s vault with bsoncrypt.cluster_local_key_vault_changes');
is($coord->safe_psql('postgres', 'SELECT bsoncrypt.cluster_sync_key_vault()'), '3',
	'cluster_sync_key_vault() copies the vault to the 3 workers');
vaults_equal('after cluster_sync_key_vault()');

# ---------------------------------------------------------------------------
# Shard moves and a rebalance of encrypted_heap shards while writes go on
# ---------------------------------------------------------------------------
$coord->safe_psql('postgres', q{
CREATE TABLE moving (id bigserial PRIMARY KEY, t text) USING encrypted_heap;
SELECT create_distributed_table('moving', 'id');
INSERT INTO moving (t) SELECT 'MARKER-MOVE-' || g FROM generate_series(1, 2000) g;
CREATE TABLE control_heap (id int PRIMARY KEY, t text) USING heap;
SELECT create_distributed_table('control_heap', 'id');
INSERT INTO control_heap SELECT g, 'CONTROLMARK-' || g FROM generate_series(1, 100) g;
});
my $script = $coord->basedir . '/insert.sql';
open my $sf, '>', $script or die;
print $sf "INSERT INTO moving (t) VALUES ('MARKER-MOVE-' || md5(random()::text));\n";
close $sf;
my $expected = 2000;

sub with_writes
{
	my ($what, $sql) = @_;
	my ($bout, $berr) = ('', '');
	my $bench = IPC::Run::start([ 'pgbench', '-n', '-c', '2', '-T', '8', '-f', $script,
		'-h', $coord->host, '-p', $coord->port, 'postgres' ], '>', \$bout, '2>', \$berr);
	sleep 1;
	my $result = $coord->safe_psql('postgres', $sql);
	$bench->finish;
	my ($done) = $bout =~ /number of transactions actually processed: (\d+)/;
	ok(defined $done && $done > 0 && $bout !~ /aborted/, "$what: writes went on") or diag("$bout\n$berr");
	$expected += $done // 0;
	is($coord->safe_psql('postgres', q{SELECT count(*), count(*) FILTER (WHERE t LIKE 'MARKER-MOVE-%') FROM moving}),
		"$expected|$expected", "$what: every row is there and reads");
	return $result;
}

my $shard_on = q{SELECT shardid FROM citus_shards WHERE table_name = 'moving'::regclass AND nodeport = %d ORDER BY shardid LIMIT 1};
for my $mode ('force_logical', 'block_writes', 'auto')
{
	my ($from, $to) = ($w1, $w2);
	my $shard = $coord->safe_psql('postgres', sprintf($shard_on, $from->port));
	($from, $to) = ($w2, $w1), $shard = $coord->safe_psql('postgres', sprintf($shard_on, $w2->port))
	  if $shard eq '';
	with_writes("move in mode $mode", sprintf(
		q{SELECT citus_move_shard_placement(%d, '127.0.0.1', %d, '127.0.0.1', %d, '%s')},
		$shard, $from->port, $to->port, $mode));
	is($coord->safe_psql('postgres', "SELECT nodeport FROM citus_shards WHERE shardid = $shard"), $to->port,
		"move in mode $mode: the shard is on its new node");
}
with_writes('rebalance onto the added node',
	q{SELECT rebalance_table_shards('moving', shard_transfer_mode => 'force_logical')});
isnt($coord->safe_psql('postgres', "SELECT count(*) FROM citus_shards WHERE table_name = 'moving'::regclass AND nodeport = " . $w3->port),
	'0', '... moved shards onto it');
my ($split, $lo, $hi) = split /\|/, $coord->safe_psql('postgres', q{
SELECT shardid, shardminvalue, shardmaxvalue FROM pg_dist_shard
 WHERE logicalrelid = 'moving'::regclass ORDER BY shardid LIMIT 1});
my $into = $coord->safe_psql('postgres', q{
SELECT string_agg(nodeid::text, ',') FROM (SELECT nodeid FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeid LIMIT 2) n});
with_writes('split in mode block_writes', sprintf(
	q{SELECT citus_split_shard_by_split_points(%d, ARRAY['%d'], ARRAY[%s], 'block_writes')},
	$split, int(($lo + $hi) / 2), $into));
is($coord->safe_psql('postgres', "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'moving'::regclass"), '9',
	'... made two shards of one');
for my $n (@nodes)
{
	my $log = slurp_file($n->logfile);
	unlike($log, qr/cannot decode encrypted_heap tables/, $n->name . ': no logical decoding was refused');
}
like(join('', map { slurp_file($_->logfile) } @nodes), qr/starting logical decoding for slot "citus_shard_move_slot_/,
	'the moves decoded through logical replication slots');

# ---------------------------------------------------------------------------
# Rotation across the cluster
# ---------------------------------------------------------------------------
# enough keys for many batches
$coord->safe_psql('postgres', q{
INSERT INTO bsoncrypt.key_vault (_id, key_material, master_key, master_key_version)
SELECT gen_random_uuid(), (m).key_material, '{"provider": "local"}', (m).master_key_version
  FROM (SELECT bsoncrypt._new_key_material('local') AS m FROM generate_series(1, 1500)) s;
});
vaults_equal('1500 keys made in one statement');

# a master key version that the workers lack: nothing is rewrapped anywhere
write_ring($coord, $ring_v1 . $v3);
$coord->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
$coord->poll_query_until('postgres', q{SELECT state = 'failed' FROM bsoncrypt.rotation_status WHERE provider = 'local'})
  or die 'rotation to v3 did not fail';
like($coord->safe_psql('postgres', q{SELECT last_error FROM bsoncrypt.rotation_status}),
	qr/master key version "v3" is not in local master key file/,
	'a rotation to a version the workers lack fails, naming the key and version');
is($coord->safe_psql('postgres', q{SELECT count(*) FROM bsoncrypt.key_vault WHERE master_key_version = 'v3'}), '0',
	'... and rewraps nothing on the coordinator either');

# the real rotation, with a worker killed in the middle
write_ring($_, $ring_v1 . $v2) for @nodes[ 1 .. $#nodes ];
write_ring($coord, $ring_v1 . $v2);
$coord->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
is($coord->safe_psql('postgres', q{SELECT count(*) FROM bsoncrypt.cluster_rotation_status WHERE state IN ('requested', 'rewrapping', 'done')}),
	'4', 'rotate_master_key() on the coordinator asks every node');
$coord->poll_query_until('postgres', q{SELECT keys_done > 200 FROM bsoncrypt.rotation_status WHERE provider = 'local'})
  or die 'the rotation did not start';
$w2->stop('immediate');
$coord->poll_query_until('postgres', q{SELECT state = 'failed' FROM bsoncrypt.rotation_status WHERE provider = 'local'})
  or die 'the rotation did not notice the dead worker';
like($coord->safe_psql('postgres', q{SELECT last_error FROM bsoncrypt.rotation_status}),
	qr/connect|server closed|terminat|SSL SYSCALL|EOF/i, 'with a worker down the coordinator\'s rotation fails (and retries)');
is($coord->safe_psql('postgres', q{SELECT count(*) FROM bsoncrypt.cluster_rotation_status WHERE node_error IS NOT NULL}),
	'1', 'cluster_rotation_status shows the node that does not answer');
is($coord->safe_psql('postgres', q{SELECT bsoncrypt.master_key_version_retirable('local', 'default')}), 'f',
	'the old version is not retirable meanwhile');
$w2->start;
$coord->poll_query_until('postgres', q{
SELECT count(*) = 4 AND bool_and(state = 'done') AND bool_and(node_error IS NULL)
  FROM bsoncrypt.cluster_rotation_status WHERE provider = 'local' OR node_error IS NOT NULL})
  or die 'the rotation did not finish on every node';
pass('the rotation finished on every node once the worker was back');
is($coord->safe_psql('postgres', q{SELECT count(DISTINCT nodeport), bool_and(keys_done = keys_total)
  FROM bsoncrypt.cluster_rotation_status WHERE provider = 'local'}), '4|t',
	'cluster_rotation_status shows the progress of each of the 4 nodes');
is($coord->safe_psql('postgres', q{SELECT DISTINCT master_key_version FROM bsoncrypt.cluster_master_key_versions}),
	'v2', 'every data key and relation key of every node is on v2');
vaults_equal('after the rotation');
is($coord->safe_psql('postgres', q{SELECT bsoncrypt.master_key_version_retirable('local', 'default')}), 't',
	'the old version is reported retirable once no node uses it');
is($coord->safe_psql('postgres', q{SELECT count(*) FROM docs WHERE bsoncrypt.decrypt_get_text(doc, 'ssn') = 'MARKER-SSN-' || id}),
	'1000', 'the data decrypts after the rotation');
is($coord->safe_psql('postgres', q{SELECT count(*) FROM moving WHERE t LIKE 'MARKER-MOVE-%'}), $expected,
	'the moved shards read after the rotation');

# ---------------------------------------------------------------------------
# No plaintext in any node's files
# ---------------------------------------------------------------------------
$_->safe_psql('postgres', 'CHECKPOINT') for @nodes;
my %found;
for my $n (@nodes)
{
	find(sub {
		return unless -f $_;
		my $data = slurp_file($_);
		$found{ $n->name . ': ' . $File::Find::name } = $1 if $data =~ /(MARKER-[A-Z]+)/;
		$found{control} = 1 if $data =~ /CONTROLMARK-/;
	}, $n->data_dir);
}
ok($found{control}, 'the search finds the markers of a heap table');
delete $found{control};
is(join("\n", map { "$_ ($found{$_})" } sort keys %found), '', 'no node has a plaintext marker in any file');

done_testing();
