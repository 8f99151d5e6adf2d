# Crash safety of master-key rotation: the server crashes at random points
# of a rotation and is restarted, and the worker finishes the job by itself.
#
# Most crashes kill every process of the cluster at once with SIGKILL (as a
# power loss would stop them): right after the request, right after a
# restart, inside batches over the key vault, and inside batches over
# bsoncrypt.relation_keys (the keys of 800 encrypted_heap tables) while some
# of their rows are rewrapped and not yet committed.
# bsoncrypt.rotation_row_delay makes each batch transaction long enough for
# kills to land in it, and the test proves they did: the worker is stopped
# (SIGSTOP) at a random point, its open batch transaction is inspected from
# another session (xid, locks, rows held; a point outside a batch is
# drawn again, up to three times), then the whole cluster is killed.  Two
# crashes kill only the postmaster (the worker leaves at its next pause,
# mid-batch).
#
# After every crash: no key is lost (counts unchanged), each key is wrapped
# by the version it names (every FLE value decrypts, every encrypted table
# reads back what was written), progress is never lost and counts every key
# once (keys_done equals the keys on the new version).  At the end every key
# is on v2 and everything reads back identical without v1.
# BSONCRYPT_CRASH_SEED=<seed from the log> repeats a run's random points.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use MIME::Base64;
use Time::HiRes qw(usleep);

my $nkeys = 3000;     # data keys, one FLE value each
my $ntables = 800;    # encrypted_heap tables, one relation key each
my $rows = 8;         # rows per table; every 4th table has a TOASTed value
my $batch = 40;
my $row_delay_ms = 2;    # a batch transaction lasts >= $batch * 2 ms

my $seed = $ENV{BSONCRYPT_CRASH_SEED} // (time() ^ $$);
srand($seed);
note("random seed $seed (set BSONCRYPT_CRASH_SEED to repeat)");

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init(extra => [ '-E', 'UTF8', '--locale=C' ]);
my $dir = $node->basedir;

sub write_ring
{
	open my $f, '>', "$dir/ring.key.tmp" or die;
	for my $v (@_)
	{
		open my $r, '<:raw', '/dev/urandom' or die;
		read($r, my $k, 96);
		print $f "$v " . encode_base64($k, '') . "\n";
	}
	close $f;
	chmod 0600, "$dir/ring.key.tmp";
	rename "$dir/ring.key.tmp", "$dir/ring.key" or die;
}

sub append_version
{
	my $v = shift;
	open my $r, '<:raw', '/dev/urandom' or die;
	read($r, my $k, 96);
	open my $f, '>>', "$dir/ring.key" or die;
	print $f "$v " . encode_base64($k, '') . "\n";
	close $f;
}

write_ring('v1');
$node->append_conf('postgresql.conf', qq{
fsync = off
restart_after_crash = off
shared_preload_libraries = 'bsoncrypt'
bsoncrypt.local_master_key_file = '$dir/ring.key'
bsoncrypt.rotation_batch_size = $batch
bsoncrypt.rotation_batch_delay = 2ms
bsoncrypt.rotation_row_delay = ${row_delay_ms}ms
});
$node->start;

# data keys with a value each; encrypted tables with deterministic contents
# whose digests are computed from the generator, not read from the tables
$node->safe_psql('postgres', qq{
CREATE EXTENSION bsoncrypt;
INSERT INTO bsoncrypt.key_vault (_id, key_material, master_key, master_key_version)
SELECT gen_random_uuid(), (m).key_material, '{"provider": "local"}', (m).master_key_version
  FROM (SELECT bsoncrypt._new_key_material('local') AS m FROM generate_series(1, $nkeys)) s;
CREATE TABLE docs (id int PRIMARY KEY, doc bsoncrypt.bson NOT NULL);
INSERT INTO docs
SELECT i, bsoncrypt.encrypt_field(bsoncrypt.bson_from_jsonb(jsonb_build_object('v', 'secret-' || i)), 'v', id)
  FROM (SELECT _id AS id, row_number() OVER (ORDER BY _id) AS i FROM bsoncrypt.key_vault) k;

CREATE FUNCTION val(t int, r int) RETURNS text IMMUTABLE LANGUAGE sql AS \$\$
  SELECT CASE WHEN r = 1 AND t % 4 = 0
              THEN (SELECT string_agg(md5(t || ':' || r || ':' || k), '' ORDER BY k)
                      FROM generate_series(1, 200) k)
              ELSE md5(t || ':' || r) END \$\$;
CREATE TABLE expected (tbl text PRIMARY KEY, digest text NOT NULL);
DO \$\$
BEGIN
  FOR t IN 1..$ntables LOOP
    EXECUTE format('CREATE TABLE enc_%s (id int PRIMARY KEY, v text) USING encrypted_heap', t);
    EXECUTE format('INSERT INTO enc_%s SELECT r, val(%s, r) FROM generate_series(1, $rows) r', t, t);
    INSERT INTO expected
    SELECT 'enc_' || t, md5(string_agg(r || ':' || val(t, r), ',' ORDER BY r))
      FROM generate_series(1, $rows) r;
  END LOOP;
END \$\$;

-- how many encrypted tables read back exactly what was written
CREATE FUNCTION tables_intact() RETURNS int LANGUAGE plpgsql AS \$\$
DECLARE
  e record;
  got text;
  n int := 0;
BEGIN
  FOR e IN SELECT tbl, digest FROM expected LOOP
    BEGIN
      EXECUTE format('SELECT md5(string_agg(id || '':'' || v, '','' ORDER BY id)) FROM %I', e.tbl)
         INTO got;
      IF got = e.digest THEN
        n := n + 1;
      ELSE
        RAISE WARNING '% reads back other data', e.tbl;
      END IF;
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING '% cannot be read: %', e.tbl, SQLERRM;
    END;
  END LOOP;
  RETURN n;
END \$\$;
-- how many FLE values decrypt (-1: one does not)
CREATE FUNCTION values_intact() RETURNS bigint LANGUAGE plpgsql AS \$\$
BEGIN
  RETURN (SELECT count(*) FROM docs WHERE bsoncrypt.decrypt_get_text(doc, 'v') = 'secret-' || id);
EXCEPTION WHEN OTHERS THEN
  RAISE WARNING 'a value does not decrypt: %', SQLERRM;
  RETURN -1;
END \$\$;
});

# one key per table (its file), each used by the table's rows: reading every
# table back unwraps every relation key
my $nrel = $node->safe_psql('postgres', 'SELECT count(*) FROM bsoncrypt.relation_keys');
is($nrel, $ntables, 'one relation key per encrypted table');
is( $node->safe_psql('postgres', q{
SELECT count(*) FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid
 WHERE c.relname LIKE 'enc\_%' AND pg_relation_size(t.oid) > 0}),
	$ntables / 4, 'every 4th table has a value TOASTed out of line');
is($node->safe_psql('postgres', 'SELECT values_intact(), tables_intact()'),
	"$nkeys|$ntables", 'before the rotation every value and every table reads back');
my $all = $nkeys + $nrel;

# ---------------------------------------------------------------- crashes

# Processes of the node: the postmaster and its children (each child is in
# its own process group, so there is no group to signal).
sub children_of
{
	my $ppid = shift;
	my @kids;
	opendir(my $d, '/proc') or die "/proc: $!";
	for my $p (grep { /^\d+$/ } readdir $d)
	{
		open my $f, '<', "/proc/$p/stat" or next;
		my $stat = <$f>;
		close $f;
		push @kids, $p if defined $stat && $stat =~ /^\d+ \(.*\) \S (\d+) /s && $1 == $ppid;
	}
	closedir $d;
	return @kids;
}

# until they are reaped: a new postmaster refuses to start while the old
# one's pid exists, even as a zombie
sub wait_gone
{
	my @pids = @_;
	for (1 .. 3000)
	{
		return if !grep { kill 0, $_ } @pids;
		usleep(10_000);
	}
	die "processes @pids did not exit";
}

# SIGKILL every process of the node at once: the postmaster is stopped first
# (it forks no more), then every child, then all are killed while frozen.
sub kill_everything
{
	my $pm = $node->{_pid};
	kill 'STOP', $pm or die "postmaster $pm: $!";
	my @pids = ($pm, children_of($pm));
	kill 'STOP', @pids;
	kill 'KILL', @pids;
	$node->{_pid} = undef;
	wait_gone(@pids);
	return scalar @pids;
}

# SIGKILL the postmaster only; its children leave by themselves
sub kill_postmaster
{
	my $worker = shift;
	my $pm = $node->{_pid};
	my @pids = ($pm, children_of($pm));
	kill 'KILL', $pm;
	kill 'CONT', $worker if $worker;
	$node->{_pid} = undef;
	wait_gone(@pids);
}

# The worker is stopped: is it inside a batch transaction (it has an xid),
# over which table, how many rows its transaction holds, has it already
# updated some of relation_keys (RowExclusiveLock)?  And the keys on v2 as
# committed at this instant.
sub inspect_stopped_worker
{
	my $wpid = shift;
	my $timed_out;
	my ($ret, $out) = $node->psql('postgres', qq{
SELECT a.backend_xid IS NOT NULL,
       EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'relation'
                  AND l.relation = 'bsoncrypt.key_vault'::regclass),
       EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'relation'
                  AND l.relation = 'bsoncrypt.relation_keys'::regclass
                  AND l.mode = 'RowExclusiveLock'),
       (SELECT count(*) FROM bsoncrypt.key_vault k WHERE k.xmax = a.backend_xid),
       (SELECT count(*) FROM bsoncrypt.relation_keys r WHERE r.xmax = a.backend_xid),
       (SELECT count(*) FROM bsoncrypt.key_vault WHERE master_key_version = 'v2')
         + (SELECT count(*) FROM bsoncrypt.relation_keys WHERE master_key_version = 'v2')
  FROM pg_stat_activity a
 WHERE a.pid = $wpid}, timeout => 2, timed_out => \$timed_out);
	# (no answer: the worker stopped while holding a lock the query needs)
	return split /\|/, ($ret == 0 && !$timed_out ? $out : '');
}

my $prev_v2 = 0;
my %v2_at_restart = (key_vault => 0, relation_keys => 0);
my $consistent = 0;
my %landed = (vault => 0, relation => 0);

# After a restart: everything there, readable, and progress kept.  The
# worker resumes at once; the lock holds it at its next commit (every batch
# that rewraps updates rotation_state) while this looks, so that the
# rotation does not run far ahead of the crashes.
sub check_after_crash
{
	my ($what, $v2_at_kill) = @_;
	my ($kv, $kv_other, $rk, $rk_other, $v2_vault, $v2_rel, $done, $state, $values, $tables) =
	  split /\|/, $node->safe_psql('postgres', q{
BEGIN;
LOCK TABLE bsoncrypt.rotation_state IN SHARE MODE;
SELECT (SELECT count(*) FROM bsoncrypt.key_vault),
       (SELECT count(*) FROM bsoncrypt.key_vault WHERE master_key_version NOT IN ('v1', 'v2')),
       (SELECT count(*) FROM bsoncrypt.relation_keys),
       (SELECT count(*) FROM bsoncrypt.relation_keys WHERE master_key_version NOT IN ('v1', 'v2')),
       (SELECT count(*) FROM bsoncrypt.key_vault WHERE master_key_version = 'v2'),
       (SELECT count(*) FROM bsoncrypt.relation_keys WHERE master_key_version = 'v2'),
       (SELECT keys_done FROM bsoncrypt.rotation_state WHERE provider = 'local'),
       (SELECT state FROM bsoncrypt.rotation_state WHERE provider = 'local'),
       values_intact(), tables_intact();
COMMIT;});
	my $v2 = $v2_vault + $v2_rel;
	%v2_at_restart = (key_vault => $v2_vault, relation_keys => $v2_rel);
	my @bad;
	push @bad, "key_vault has $kv keys, $kv_other on other versions" if $kv != $nkeys || $kv_other;
	push @bad, "relation_keys has $rk keys, $rk_other on other versions" if $rk != $nrel || $rk_other;
	push @bad, "$v2 keys on v2, fewer than $v2_at_kill at the kill" if $v2 < $v2_at_kill;
	push @bad, "keys_done $done but $v2 keys on v2" if $done != $v2;
	push @bad, "rotation is $state" if $state eq 'failed';
	push @bad, "$values of $nkeys values decrypt" if $values != $nkeys;
	push @bad, "$tables of $ntables tables read back" if $tables != $ntables;
	note("$what: then v2 $v2_vault+$v2_rel" . (@bad ? ' BAD: ' . join('; ', @bad) : ''));
	$consistent++ unless @bad;
	$prev_v2 = $v2;
}

# Wait until the rotation reached a point, then crash (mode 'all': every
# process at once; 'postmaster': the postmaster only) after a random pause.
# phase: 'request' or 'restart' (right after either), 'vault' or 'relation'
# (the worker rewrapping that table: once $target keys of it are on v2 and
# it committed a batch of it since the restart; or past that table).
sub crash_at
{
	my ($phase, $target, $mode) = @_;
	my $wpid;
	my $label = "crash right after the $phase";
	if ($phase eq 'vault' || $phase eq 'relation')
	{
		my $table = $phase eq 'vault' ? 'key_vault' : 'relation_keys';
		my $at_least = $target > $v2_at_restart{$table} ? $target : $v2_at_restart{$table} + 1;
		$label = "crash at $at_least keys of $table on v2";
		$node->poll_query_until('postgres', qq{
SELECT NOT EXISTS (SELECT 1 FROM bsoncrypt.$table WHERE master_key_version <> 'v2')
    OR (SELECT state FROM bsoncrypt.rotation_state) IN ('failed', 'done')
    OR (SELECT count(*) FROM bsoncrypt.$table WHERE master_key_version = 'v2') >= $at_least})
		  or die "the rotation did not reach $at_least keys of $table";
		$wpid = $node->safe_psql('postgres',
			q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'bsoncrypt rotation worker'});
	}
	# a random point within about one batch; in a batch phase, up to three
	# tries to stop the worker inside a batch (a short pause separates two;
	# a worker stopped while holding a lock the inspection needs is let go)
	my (@at, $where);
	for my $try (1 .. 3)
	{
		usleep(int(rand($batch * $row_delay_ms * 1000)));
		@at = ();
		$where = 'worker not inspected';
		last unless $wpid && grep { $_ == $wpid } children_of($node->{_pid});
		kill 'STOP', $wpid;
		@at = inspect_stopped_worker($wpid);
		$where = @at ? 'outside a batch' : 'worker stopped where it cannot be inspected';
		last if @at && $at[0] eq 't' && ($at[1] eq 't' || $at[2] eq 't');
		kill 'CONT', $wpid;
	}
	my ($in_tx, $on_vault, $rel_updated, $vault_rows, $rel_rows, $v2_at_kill) = @at;
	if ($in_tx && $in_tx eq 't' && $on_vault eq 't')
	{
		$where = "in a key-vault batch holding $vault_rows keys";
		$landed{vault}++;
	}
	elsif ($in_tx && $in_tx eq 't' && $rel_updated eq 't')
	{
		$where = "in a relation_keys batch holding $rel_rows keys, some rewrapped";
		$landed{relation}++;
	}
	if ($mode eq 'all')
	{
		my $n = kill_everything();
		$where .= ", $n processes killed";
	}
	else
	{
		kill_postmaster($wpid);
		$where .= ', postmaster killed';
	}
	$node->start;
	check_after_crash("$label, $where", $v2_at_kill // $prev_v2);
}

# right after the request, then right after the restart (the worker starting)
append_version('v2');
$node->safe_psql('postgres', 'SELECT bsoncrypt.rotate_master_key()');
crash_at('request', 0, 'all');
crash_at('restart', 0, 'all');

my @plan = (
	[ vault => 0.1, 'all' ],
	[ vault => 0.25, 'all' ],
	[ vault => 0.4, 'postmaster' ],
	[ vault => 0.55, 'all' ],
	[ vault => 0.7, 'all' ],
	[ vault => 0.85, 'all' ],
	[ relation => 0.0, 'all' ],
	[ relation => 0.1, 'all' ],
	[ relation => 0.2, 'all' ],
	[ relation => 0.3, 'postmaster' ],
	[ relation => 0.4, 'all' ],
	[ relation => 0.5, 'all' ]);
for my $p (@plan)
{
	my ($phase, $fraction, $mode) = @$p;
	crash_at($phase, int($fraction * ($phase eq 'vault' ? $nkeys : $nrel)), $mode);
}
my $crashes = 2 + scalar @plan;

is($consistent, $crashes,
	"after each of $crashes crashes: no key lost, every value and table readable, progress kept");
note("landed in key-vault batches: $landed{vault}, in relation_keys batches: $landed{relation}");
cmp_ok($landed{vault}, '>=', 5, 'at least 5 of 6 crashes inside a key-vault batch');
cmp_ok($landed{relation}, '>=', 5,
	'at least 5 of 6 crashes inside a relation_keys batch with rows rewrapped, not committed');

ok( $node->poll_query_until('postgres',
		"SELECT state IN ('done', 'failed') FROM bsoncrypt.rotation_status"),
	'the worker finished the rotation after the crashes');
is( $node->safe_psql('postgres',
		"SELECT state, to_version, keys_done, keys_total, started < finished FROM bsoncrypt.rotation_status"),
	"done|v2|$all|$all|t", 'rotation_status counts every key once');
is( $node->safe_psql('postgres', q{
SELECT (SELECT count(*) FROM bsoncrypt.key_vault WHERE master_key_version = 'v2'),
       (SELECT count(*) FROM bsoncrypt.relation_keys WHERE master_key_version = 'v2')}),
	"$nkeys|$nrel", 'every key is on v2');

# v1 retired: everything reads back with the keys as rewrapped, in a server
# that never saw v1 since it started
open my $f, '<', "$dir/ring.key" or die;
my @lines = grep { !/^v1 / } <$f>;
close $f;
open $f, '>', "$dir/ring.key" or die;
print $f @lines;
close $f;
$node->restart;
is($node->safe_psql('postgres', 'SELECT values_intact(), tables_intact()'),
	"$nkeys|$ntables", 'every value decrypts and every table reads back identical without v1');

$node->stop;
done_testing();
