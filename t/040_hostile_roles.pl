# A hostile tenant against every path in which bsoncrypt runs SQL.
#
# mallory (LOGIN, not superuser) owns databases or may create schemas in
# one; he plants functions, operators, aggregates and domains that are
# better matches than pg_catalog's for what bsoncrypt's SQL uses (t/
# HostilePlants.pm) in public, in a schema named like the bootstrap
# superuser ("$user") and in a "bsoncrypt" schema created before the
# extension, and sets the database's search_path.  Then superusers (and
# mallory) run every path: the rotation worker in databases with and
# without the extension, the triggers on key_vault, the sql_drop event
# trigger, the SECURITY DEFINER functions, every key function, and the
# encrypted_heap paths that write bsoncrypt.relation_keys as a superuser.
# Planted code must never run as anyone but mallory, and mallory must
# never become superuser.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use BsoncryptTest;
use HostilePlants;

my $node = bsoncrypt_node('hostile', key_file => 'v1 ' . random_master_key(),
	conf => "bsoncrypt.rotation_retry_delay = 1\nmax_worker_processes = 24\n");
my $keyfile = $node->basedir . '/master.key';
my $tsdir = $node->basedir . '/ts';
mkdir $tsdir or die "mkdir $tsdir: $!";
$node->start;

# The test's own statements run with a pinned search_path, so that only
# bsoncrypt's SQL can ever meet the plants.
my $pinned = '-c search_path=pg_catalog,pg_temp';
sub trusted
{
	my ($db, $sql, @params) = @_;
	local $ENV{PGOPTIONS} = $pinned;
	return $node->safe_psql($db, $sql, @params);
}
sub trusted_poll
{
	my ($db, $sql, $expected) = @_;
	local $ENV{PGOPTIONS} = $pinned;
	return $node->poll_query_until($db, $sql, $expected);
}
sub as_mallory { return trusted($_[0], $_[1], extra_params => [ '-U', 'mallory' ]); }

my $su = trusted('postgres', 'SELECT current_user');

# ------------------------------------------------------------------------
# Set-up: databases, the extension and keys (by the superuser), then the
# plants (by mallory)
# ------------------------------------------------------------------------
trusted('postgres', qq{
CREATE ROLE mallory LOGIN;
GRANT pg_monitor TO mallory;
CREATE ROLE bc_app;
CREATE DATABASE mdb OWNER mallory;       -- search_path = public, pg_catalog
CREATE DATABASE mvar OWNER mallory;      -- search_path = "\$user", public
CREATE DATABASE mnoext OWNER mallory;    -- no extension; public, pg_catalog
CREATE DATABASE mnoext2 OWNER mallory;   -- no extension; "\$user", public
CREATE DATABASE bcpre;                   -- mallory may create schemas
GRANT CREATE ON DATABASE bcpre TO mallory;
CREATE TABLESPACE hostile_ts LOCATION '$tsdir';
GRANT CREATE ON TABLESPACE hostile_ts TO mallory;
});
as_mallory($_, "ALTER DATABASE $_ SET search_path = public, pg_catalog") for qw(mdb mnoext);
as_mallory($_, qq{ALTER DATABASE $_ SET search_path = "\$user", public}) for qw(mvar mnoext2);
my %dboid = map { $_ => trusted('postgres', "SELECT oid FROM pg_database WHERE datname = '$_'") }
  qw(mdb mvar mnoext mnoext2 bcpre);

for my $db (qw(mdb mvar))
{
	trusted($db, q{
CREATE EXTENSION bsoncrypt;
CREATE SCHEMA su;
SELECT bsoncrypt.create_data_key('local', '{seed}');
CREATE TABLE su.seed (t pg_catalog.text) USING encrypted_heap;
INSERT INTO su.seed VALUES ('seed');
});
}
for my $db (qw(mdb mvar mnoext mnoext2))
{
	as_mallory($db, spy_sql() . plants_sql('public') . qq{CREATE SCHEMA "$su";\n} . plants_sql($su));
}
trusted('bcpre', 'CREATE SCHEMA su');
as_mallory('bcpre', spy_sql() . qq{CREATE SCHEMA "$su";\n} . plants_sql($su)
	  . "CREATE SCHEMA bsoncrypt;\n" . plants_sql('bsoncrypt'));

# ------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------

# What planted code ran as another role, among the records matching $where
# (a condition on mallory.ran); '' when nothing did.
sub planted_runs
{
	my ($db, $where) = @_;
	return trusted($db, qq{
SELECT coalesce(string_agg(DISTINCT format('%s ran %s (%s%s)', who, tag,
           coalesce(nullif(backend, ''), 'session'),
           CASE WHEN escalated THEN ', ALTER ROLE mallory SUPERUSER succeeded' ELSE '' END), '; '), '')
  FROM mallory.ran WHERE who <> 'mallory' AND ($where)});
}

# mallory is not superuser (and is made so again if he became one, so that
# the next path starts clean)
sub mallory_not_superuser
{
	my ($name) = @_;
	my $super = trusted('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'});
	is($super, 'f', "$name: mallory is not superuser");
	trusted('postgres', 'ALTER ROLE mallory NOSUPERUSER') if $super ne 'f';
}

# Run a path: $sql as $role in $db with the database's own settings (no
# pinned search_path), in a session named $label/p$i.
sub run_path
{
	my ($db, $label, $i, $name, $role, $sql) = @_;
	my $app = "$label/p$i";
	my $p = "${label}_p$i";
	$sql =~ s/\bP_/${p}_/g;
	subtest "$label: $name (as $role)" => sub {
		my ($ret, $out, $err) = $node->psql($db, "SET application_name = '$app';\n$sql",
			extra_params => [ '-U', $role, '-v', 'ON_ERROR_STOP=1' ]);
		is($ret, 0, 'runs') or diag($err);
		is(planted_runs($db, "app = '$app'"), '', 'no planted code ran as another role');
		mallory_not_superuser($name);
	};
}

# every path a session can take, as [name, role, SQL]; P_ becomes a
# prefix unique to the database and path
my @paths = (
	[ 'create_data_key with alt names', $su,
		q{SELECT bsoncrypt.create_data_key('local', '{P_a, P_b}') IS NULL} ],
	[ 'get_key, get_keys, get_key_by_alt_name', $su, q{
SELECT bsoncrypt.create_data_key('local', '{P_g}') AS k \gset
SELECT bsoncrypt.get_key(:'k') IS NULL;
SELECT pg_catalog.count(*) FROM bsoncrypt.get_keys();
SELECT bsoncrypt.get_key_by_alt_name('P_g') IS NULL;} ],
	[ 'add_key_alt_name, remove_key_alt_name', $su, q{
SELECT bsoncrypt.create_data_key('local', '{P_r}') AS k \gset
SELECT bsoncrypt.add_key_alt_name(:'k', 'P_r2') IS NULL;
SELECT bsoncrypt.remove_key_alt_name(:'k', 'P_r') IS NULL;} ],
	[ 'import_key, delete_key', $su, q{
SELECT bsoncrypt.create_data_key('local', '{P_i}') AS k \gset
SELECT bsoncrypt.get_key(:'k') AS doc \gset
SELECT bsoncrypt.delete_key(:'k');
SELECT bsoncrypt.import_key(:'doc') IS NULL;
SELECT bsoncrypt.delete_key(:'k');} ],
	[ 'key_vault triggers on UPDATE and DELETE', $su, q{
SELECT bsoncrypt.create_data_key('local', '{P_t}') AS k \gset
UPDATE bsoncrypt.key_vault SET key_alt_names = '{P_t2}', status = 1
 WHERE _id OPERATOR(pg_catalog.=) :'k';
UPDATE bsoncrypt.key_vault SET master_key = '{"provider": "local"}'
 WHERE _id OPERATOR(pg_catalog.=) :'k';
DELETE FROM bsoncrypt.key_vault WHERE _id OPERATOR(pg_catalog.=) :'k';} ],
	[ 'rewrap_many_data_key', $su, q{
SELECT bsoncrypt.create_data_key('local', '{P_w}') IS NULL;
SELECT bsoncrypt.rewrap_many_data_key();
SELECT bsoncrypt.rewrap_many_data_key('{"keyAltNames": {"$in": ["P_w", "none"]}}');
SELECT bsoncrypt.rewrap_many_data_key('{}', 'local');} ],
	[ 'current_master_key_version, rotate_master_key, rotation_status', $su, q{
SELECT bsoncrypt.current_master_key_version();
SELECT bsoncrypt.rotate_master_key();
SELECT pg_catalog.count(*) FROM bsoncrypt.rotation_status;} ],
	[ 'master_key_versions (SECURITY DEFINER)', $su,
		q{SELECT pg_catalog.count(*) FROM bsoncrypt.master_key_versions} ],
	[ 'master_key_versions (SECURITY DEFINER)', 'mallory',
		q{SELECT pg_catalog.count(*) FROM bsoncrypt.master_key_versions} ],
	[ 'grant_encryption, grant_decryption', $su, q{
SELECT bsoncrypt.grant_encryption('bc_app');
SELECT bsoncrypt.grant_decryption('bc_app');} ],
	[ 'create_documentdb_casts', $su, q{SELECT bsoncrypt.create_documentdb_casts()} ],
	[ 'drop_unused_relation_keys', $su, q{SELECT bsoncrypt.drop_unused_relation_keys()} ],
	[ 'encrypt and decrypt with alt names', $su, q{
SELECT bsoncrypt.create_data_key('local', '{P_e}') IS NULL;
SELECT bsoncrypt.decrypt(bsoncrypt.encrypt_field('{"a": "x"}', 'a', 'P_e', 'deterministic'));
SELECT bsoncrypt.decrypt(bsoncrypt.encrypt_fields('{"a": "x", "b": 1}', '{a, b}', 'P_e'));
SELECT bsoncrypt.decrypt_value(bsoncrypt.encrypt_value('{"": 1}', 'P_e'));
SELECT '{"": "x"}'::bsoncrypt.bson OPERATOR(bsoncrypt.##) 'P_e';} ],
	[ 'sql_drop event trigger', $su, q{
CREATE TABLE su.P_d (t pg_catalog.text) USING encrypted_heap;
INSERT INTO su.P_d VALUES ('x');
DROP TABLE su.P_d;} ],
	[ 'sql_drop event trigger', 'mallory', q{
CREATE TABLE mallory.P_d (t pg_catalog.text) USING encrypted_heap;
INSERT INTO mallory.P_d VALUES ('x');
DROP TABLE mallory.P_d;} ],
	[ 'encrypted_heap CREATE, TRUNCATE, VACUUM FULL, SET TABLESPACE', $su, q{
CREATE TABLE su.P_h (t pg_catalog.text) USING encrypted_heap;
INSERT INTO su.P_h VALUES ('x');
TRUNCATE su.P_h;
INSERT INTO su.P_h VALUES ('y');
VACUUM FULL su.P_h;
ALTER TABLE su.P_h SET TABLESPACE hostile_ts;
SELECT t FROM su.P_h;
DROP TABLE su.P_h;} ],
	[ 'encrypted_heap CREATE, TRUNCATE, VACUUM FULL, SET TABLESPACE', 'mallory', q{
CREATE TABLE mallory.P_h (t pg_catalog.text) USING encrypted_heap;
INSERT INTO mallory.P_h VALUES ('x');
TRUNCATE mallory.P_h;
INSERT INTO mallory.P_h VALUES ('y');
VACUUM FULL mallory.P_h;
ALTER TABLE mallory.P_h SET TABLESPACE hostile_ts;
SELECT t FROM mallory.P_h;
DROP TABLE mallory.P_h;} ],);

sub run_paths
{
	my ($db, $label) = @_;
	run_path($db, $label, $_, @{ $paths[$_] }) for 0 .. $#paths;
}

# ------------------------------------------------------------------------
# A bsoncrypt schema created by mallory before CREATE EXTENSION
# ------------------------------------------------------------------------
subtest 'CREATE EXTENSION refuses a bsoncrypt schema another role created' => sub {
	my ($ret, $out, $err) = $node->psql('bcpre', "\\set VERBOSITY verbose\nCREATE EXTENSION bsoncrypt;");
	isnt($ret, 0, 'CREATE EXTENSION bsoncrypt fails while mallory owns schema bsoncrypt');
	like($err, qr/ERROR:  42501: [^\n]*schema "?bsoncrypt"?/, 'with 42501 naming the schema');
	return if $ret != 0;
	# the extension went into mallory's schema: what that gives him
	is(planted_runs('bcpre', 'true'), '', 'CREATE EXTENSION ran no planted code');
	mallory_not_superuser('CREATE EXTENSION');
	$node->psql('bcpre', "SET application_name = 'pre/create_data_key';\n"
		  . q{SELECT bsoncrypt.create_data_key('local', '{x}')});
	is(planted_runs('bcpre', q{app = 'pre/create_data_key'}), '',
		q{create_data_key('local', '{x}') by the superuser runs no planted code});
	mallory_not_superuser('create_data_key');
};
if (trusted('bcpre', q{SELECT count(*) FROM pg_extension WHERE extname = 'bsoncrypt'}) eq '1')
{
	run_paths('bcpre', 'pre');
	trusted('bcpre', 'DROP EXTENSION bsoncrypt CASCADE');
}
as_mallory('bcpre', 'DROP SCHEMA bsoncrypt CASCADE');
subtest 'CREATE EXTENSION succeeds once that schema is dropped' => sub {
	my ($ret, $out, $err) = $node->psql('bcpre', 'CREATE EXTENSION bsoncrypt');
	is($ret, 0, 'CREATE EXTENSION bsoncrypt') or diag($err);
	is(trusted('bcpre', q{SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'bsoncrypt'}),
		$su, 'schema bsoncrypt belongs to the superuser');
	trusted('bcpre', q{
SELECT bsoncrypt.create_data_key('local', '{seed}');
CREATE TABLE su.seed (t pg_catalog.text) USING encrypted_heap;
INSERT INTO su.seed VALUES ('seed');
});
};

# ------------------------------------------------------------------------
# The launcher and workers in databases without the extension
# ------------------------------------------------------------------------
# the name of a rotation worker of the database in the server log (the
# postmaster logs it at DEBUG1 when it starts one); a worker's exit names
# only its type
sub worker_name { return qr/"[^"\n]*bsoncrypt rotation worker[^"\n]*\b$_[0]\b[^"\n]*"/; }

subtest 'no rotation worker in databases without the extension' => sub {
	trusted('postgres', 'ALTER SYSTEM SET log_min_messages = debug1');
	my $offset = -s $node->logfile;
	$node->restart;
	my @noext = qw(mnoext mnoext2);
	my $evidence = sub {
		my $log = slurp_file($node->logfile, $offset);
		my @started = grep { $log =~ worker_name($dboid{$_}) } @noext;
		my @ran = grep { planted_runs($_, 'true') ne '' } @noext;
		return (\@started, \@ran, $log);
	};
	# the launcher scans at start: wait until it started the workers of
	# the databases with the extension (bcpre is last in pg_database), or
	# 10 s, then 3 s more for any worker in the others to show itself
	my $deadline = time + 10;
	while (time < $deadline)
	{
		my (undef, $ran, $log) = $evidence->();
		last if @$ran;
		last if 3 == grep { $log =~ worker_name($dboid{$_}) } qw(mdb mvar bcpre);
		usleep(100_000);
	}
	$deadline = time + 3;
	my ($started, $ran);
	while (time < $deadline)
	{
		($started, $ran) = $evidence->();
		last if @$ran;
		usleep(100_000);
	}
	ok( trusted_poll('postgres', q{SELECT count(*) = 0 FROM pg_stat_activity
		  WHERE backend_type = 'bsoncrypt rotation worker' AND datname IN ('mnoext', 'mnoext2')}),
		'no rotation worker is left there');
	($started, $ran) = $evidence->();
	is(join(', ', @$started), '', 'no rotation worker started in mnoext or mnoext2');
	is(planted_runs($_, 'true'), '', "no planted code ran in $_") for @noext;
	mallory_not_superuser('databases without the extension');
	trusted('postgres', 'ALTER SYSTEM RESET log_min_messages');
	$node->reload;
};

# ------------------------------------------------------------------------
# The rotation worker in databases with the extension
# ------------------------------------------------------------------------
my %search_path = (
	mdb => 'public, pg_catalog',
	mvar => '"$user", public',
	bcpre => 'default ("$user", public)');
{
	open my $f, '>>', $keyfile or die;
	print $f 'v2 ' . random_master_key() . "\n";
	close $f;
}
for my $db (qw(mdb mvar bcpre))
{
	my ($ret, $out, $err) = $node->psql($db,
		"SET application_name = 'rotate';\nSELECT bsoncrypt.rotate_master_key()");
	is($ret, 0, "$db: rotate_master_key() requested") or diag($err);
}
for my $db (qw(mdb mvar bcpre))
{
	subtest "rotation worker in $db (search_path $search_path{$db})" => sub {
		ok( trusted_poll($db,
				q{SELECT state FROM bsoncrypt.rotation_status WHERE provider = 'local'}, 'done'),
			'the rotation finishes');
		is(trusted($db, q{SELECT string_agg(DISTINCT master_key_version, ',') FROM bsoncrypt.key_vault}),
			'v2', 'every key is on v2');
		ok( trusted_poll($db,
				qq{SELECT count(*) = 0 FROM pg_stat_activity
				    WHERE backend_type = 'bsoncrypt rotation worker' AND datname = '$db'}),
			'the worker has left');
		is(planted_runs($db, q{backend = 'bsoncrypt rotation worker'}), '',
			'no planted code ran in the worker');
		mallory_not_superuser('rotation worker');
	};
}

# ------------------------------------------------------------------------
# Every session path, in each database with the extension
# ------------------------------------------------------------------------
run_paths('mdb', 'mdb');
run_paths('mvar', 'mvar');
run_paths('bcpre', 'bcpre');

# ------------------------------------------------------------------------
# Final
# ------------------------------------------------------------------------
subtest 'in the end' => sub {
	is(trusted('postgres', q{SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'}), 'f',
		'mallory is not superuser');
	is(planted_runs($_, 'true'), '', "no planted code ever ran as another role in $_")
	  for qw(mdb mvar mnoext mnoext2 bcpre);
	my $log = slurp_file($node->logfile);
	my @ran = $log =~ /WARNING:  (hostile plant ran: [^\n]*)/g;
	my %seen;
	@ran = grep { !$seen{$_}++ } @ran;
	is(scalar(@ran), 0, 'the server log shows no planted code running as another role')
	  or diag(join("\n", @ran[0 .. ($#ran < 40 ? $#ran : 40)]));
};

$node->stop;
done_testing();
