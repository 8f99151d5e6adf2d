# Use of relation keys is counted per key: a key gets replaced when its own
# encryptions reach bsoncrypt.at_rest_key_max_uses, never because of what
# other tables or sessions do, and never later than that after a crash.
# - churn on other tables (2000 TRUNCATEs, 1000 new tables) leaves a quiet
#   table with its one key;
# - one session writing a row to each of 600 tables, round after round,
#   keeps one key per table;
# - with a small limit, values under each key are counted in the table
#   itself (pageinspect reads the key number of every stored value): a key
#   encrypts at most the limit, also with four sessions writing one table at
#   once, rolled-back writes count, and a crash (SIGKILL) never lets a key's
#   count go back;
# - a parallel CREATE TABLE AS (writes in parallel mode) counts its uses.
# With bsoncrypt preloaded (counts in shared memory, 64 slots so that they
# are evicted often) and not preloaded (each session reserves uses directly
# in relation_key_uses).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;
use IPC::Run;
use Time::HiRes qw(usleep);

# values of a one-text-column table per key number, read from its pages:
# a stored value is [1-byte varlena header][format][key number, 2 bytes]...
sub values_per_key
{
	my ($node, $table) = @_;
	return $node->safe_psql('postgres', qq{
SELECT string_agg(n::text, ',' ORDER BY number)
  FROM (SELECT get_byte(i.t_data, 2) * 256 + get_byte(i.t_data, 3) AS number, count(*) AS n
          FROM generate_series(0, pg_relation_size('$table') / current_setting('block_size')::int - 1) b,
               LATERAL heap_page_items(get_raw_page('$table', b::int)) i
         WHERE i.t_data IS NOT NULL
         GROUP BY 1) s});
}

sub keys_of
{
	my ($node, $table) = @_;
	return $node->safe_psql('postgres',
		"SELECT keys FROM bsoncrypt.encrypted_relations WHERE relation = '$table'::regclass");
}

sub crash_and_restart
{
	my ($node) = @_;
	open my $fh, '<', $node->data_dir . '/postmaster.pid' or die "postmaster.pid: $!";
	my $pid = <$fh>;
	close $fh;
	chomp $pid;
	$node->kill9;
	usleep(20_000) while kill(0, $pid);
	# the postmaster's children notice its death and exit
	usleep(100_000) while `pgrep -P $pid` ne '';
	$node->start;
}

for my $preload ('bsoncrypt', '')
{
	my $label = $preload ? 'preloaded' : 'not preloaded';
	# few shared slots: the churn and the 600 tables evict keys' counts all
	# the time (they go on from the persisted bounds)
	my $node = bsoncrypt_node('key_uses_' . ($preload ? 'pre' : 'nopre'), conf => qq{
shared_preload_libraries = '$preload'
max_worker_processes = 8
} . ($preload ? "bsoncrypt.at_rest_key_use_slots = 64\n" : ''));
	$node->start;
	$node->safe_psql('postgres', q{
CREATE EXTENSION bsoncrypt;
CREATE EXTENSION pageinspect;
CREATE TABLE quiet (t text) USING encrypted_heap;
INSERT INTO quiet VALUES ('before the churn');
CREATE TABLE busy (t text) USING encrypted_heap;
});

	# --- churn on other tables
	$node->safe_psql('postgres', q{
DO $$ BEGIN
    FOR i IN 1..2000 LOOP
        TRUNCATE busy;
        INSERT INTO busy VALUES ('row ' || i);
    END LOOP;
END $$;
DO $$ BEGIN
    FOR i IN 1..1000 LOOP
        EXECUTE format('CREATE TABLE other_%s (t text) USING encrypted_heap', i);
        EXECUTE format('INSERT INTO other_%s VALUES (''x'')', i);
    END LOOP;
END $$;
});
	is($node->safe_psql('postgres', q{
INSERT INTO quiet VALUES ('after the churn');
SELECT count(*) FROM quiet;
}), '2', "$label: the quiet table is written after the churn");
	is(keys_of($node, 'quiet'), '1', "$label: 2000 TRUNCATEs and 1000 tables elsewhere leave the quiet table's one key");
	$node->safe_psql('postgres', q{
DO $$ BEGIN
    FOR i IN 1..1000 LOOP
        EXECUTE format('DROP TABLE other_%s', i);
    END LOOP;
END $$;
});

	# --- one session, one row to each of 600 tables, several rounds
	$node->safe_psql('postgres', q{
DO $$ BEGIN
    FOR i IN 1..600 LOOP
        EXECUTE format('CREATE TABLE wide_%s (t text) USING encrypted_heap', i);
    END LOOP;
END $$;
});
	my $rounds = q{
DO $$ BEGIN
    FOR i IN 1..600 LOOP
        EXECUTE format('INSERT INTO wide_%s VALUES (''round'')', i);
    END LOOP;
END $$;
};
	$node->safe_psql('postgres', $rounds x 5);
	$node->safe_psql('postgres', $rounds) for 1 .. 2;	# and new sessions
	is($node->safe_psql('postgres', q{
SELECT count(*), min(keys), max(keys) FROM bsoncrypt.encrypted_relations
 WHERE relation::text LIKE 'wide\_%'}), '600|1|1',
		"$label: 7 rounds of one row to each of 600 tables: one key per table");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM wide_600}), '7', "$label: all rounds written");

	# --- exact limits, rolled-back writes, crashes
	$node->safe_psql('postgres', q{
LOAD 'bsoncrypt';  -- defines the setting in a server that does not preload it
ALTER SYSTEM SET bsoncrypt.at_rest_key_max_uses = 1000;
SELECT pg_reload_conf();
});
	$node->safe_psql('postgres', q{
CREATE TABLE limited (t text) USING encrypted_heap;
INSERT INTO limited SELECT 'a' || g FROM generate_series(1, 2500) g;
});
	is(values_per_key($node, 'limited'), '1000,1000,500',
		"$label: 2500 values under a limit of 1000: three keys of 1000, 1000 and 500 values");

	# four sessions at once, one row per transaction, into one table
	$node->safe_psql('postgres', 'CREATE TABLE shared_t (t text) USING encrypted_heap');
	my @writers = map {
		IPC::Run::start([ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', qq{
DO \$\$ BEGIN
    FOR i IN 1..1250 LOOP
        INSERT INTO shared_t VALUES ('w$_ ' || i);
        COMMIT;
    END LOOP;
END \$\$} ])
	} 1 .. 4;
	my $writers_ok = 1;
	$_->finish or $writers_ok = 0 for @writers;
	ok($writers_ok, "$label: four sessions wrote 5000 rows");
	my @per_key = split /,/, values_per_key($node, 'shared_t');
	my $sum = 0;
	$sum += $_ for @per_key;
	is($sum, 5000, "$label: ... all of them in the file");
	ok(!grep({ $_ > 1000 } @per_key), "$label: no key encrypted more than the limit (@per_key)");

	$node->safe_psql('postgres', q{
CREATE TABLE crashed (t text) USING encrypted_heap WITH (autovacuum_enabled = false);
INSERT INTO crashed SELECT 'committed ' || g FROM generate_series(1, 300) g;
BEGIN;
INSERT INTO crashed SELECT 'rolled back ' || g FROM generate_series(1, 300) g;
ROLLBACK;
-- a commit makes the WAL durable up to here, the rolled-back part too (its
-- ciphertext is in the file and in WAL for good; a crash before that would
-- have lost it with the uses counted for it)
CREATE TABLE wal_flushed ();
});
	my $bound_before = $node->safe_psql('postgres', q{
SELECT key_uses_bound FROM bsoncrypt.encrypted_relations WHERE relation = 'crashed'::regclass});
	is($bound_before, '600', "$label: committed and rolled-back encryptions count");

	crash_and_restart($node);
	my $bound_after = $node->safe_psql('postgres', q{
SELECT key_uses_bound FROM bsoncrypt.encrypted_relations WHERE relation = 'crashed'::regclass});
	cmp_ok($bound_after, '>=', $bound_before, "$label: after a crash the count did not go back ($bound_after)");
	cmp_ok($bound_after, '<=', $bound_before + 64, "$label: ... and lost at most one reserved block");

	$node->safe_psql('postgres', q{
INSERT INTO crashed SELECT 'after crash ' || g FROM generate_series(1, 600) g;
});
	my ($first, $second) = split /,/, values_per_key($node, 'crashed');
	# 600 uses before the crash (300 of them rolled back and vacuumable
	# but still in the file), so at most 400 more under the first key
	cmp_ok($first, '<=', 1000, "$label: the first key encrypted at most the limit ($first values in the file)");
	cmp_ok($first, '>=', 1000 - ($bound_after - 600), "$label: ... and was replaced no earlier than the crash requires");
	is($first + $second, 1200, "$label: the second key took the rest");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM crashed}), '900', "$label: every committed row reads");
	$node->safe_psql('postgres', q{
LOAD 'bsoncrypt';  -- defines the setting in a server that does not preload it
ALTER SYSTEM RESET bsoncrypt.at_rest_key_max_uses;
SELECT pg_reload_conf();
});

	# --- writes in parallel mode: CREATE TABLE AS with a parallel plan
	$node->safe_psql('postgres', q{
CREATE TABLE src AS SELECT 'v' || g AS t FROM generate_series(1, 20000) g;
ANALYZE src;
});
	my $parallel = q{
SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
};
	like($node->safe_psql('postgres', $parallel . q{
EXPLAIN (COSTS OFF) CREATE TABLE par USING encrypted_heap AS SELECT t FROM src;
}), qr/Gather/, "$label: CREATE TABLE AS plans a parallel scan");
	is($node->safe_psql('postgres', $parallel . q{
CREATE TABLE par USING encrypted_heap AS SELECT t FROM src;
SELECT count(*), count(DISTINCT t) FROM par;
}), '20000|20000', "$label: a parallel CREATE TABLE AS writes an encrypted table");
	my $reserved = $node->safe_psql('postgres', q{
SELECT u.reserved FROM bsoncrypt.relation_key_uses u
  JOIN bsoncrypt.relation_keys k USING (key_id)
  JOIN pg_class c ON (c.reltablespace, c.relfilenode) = (k.reltablespace, k.relfilenode)
 WHERE c.oid = 'par'::regclass});
	cmp_ok($reserved, '>=', 20000, "$label: its uses were made durable at commit ($reserved)");
	crash_and_restart($node);
	cmp_ok($node->safe_psql('postgres', q{
SELECT key_uses_bound FROM bsoncrypt.encrypted_relations WHERE relation = 'par'::regclass}),
		'>=', 20000, "$label: and survive a crash");

	$node->stop;
}

done_testing();
