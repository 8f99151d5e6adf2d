# The per-session data key cache (src/key_cache.c) under key-vault
# invalidations that arrive in the middle of a lookup.
#
# Session B changes the key vault in a transaction that holds an advisory
# lock; session A's statement first waits for that lock, then looks a key
# up.  B's commit queues its invalidation before it releases the lock, so
# A receives the invalidation exactly when the lookup opens key_vault:
# deterministic, no sleeps.
#
# (a) A lookup by keyAltName whose alt-name entry is cached but whose key
#     is not: the invalidation flushes the cache (alt-name entries
#     included) while the lookup still uses the flushed entry.  The server
#     runs with MALLOC_PERTURB_=165, so freed memory reads as a5a5...; the
#     lookup must still find the right key.
# (b) After such a mid-lookup invalidation, the session must still hear
#     later invalidations: once delete_key commits in session B, session
#     A's next statement using the key fails with 42704 "is not in the key
#     vault" (crypto-shredding at once), whatever bsoncrypt.key_cache_ttl.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $node = bsoncrypt_node('key_cache');
{
	local $ENV{MALLOC_PERTURB_} = '165';
	$node->start;
}
$node->safe_psql('postgres', 'CREATE EXTENSION bsoncrypt');
my $k_alt = $node->safe_psql('postgres', q{SELECT bsoncrypt.create_data_key('local', '{cache-alt}')});
my $k_del = $node->safe_psql('postgres', q{SELECT bsoncrypt.create_data_key('local', '{cache-del}')});

my $a = $node->background_psql('postgres', on_error_stop => 0);
my $b = $node->background_psql('postgres');
my $a_pid = $a->query_safe('SELECT pg_backend_pid()');
$a->query_safe('\set VERBOSITY verbose');

# Evaluate $expr in A once the advisory lock $lock is free, while B holds it in
# an open transaction that changes the key vault; then commit B.  Returns
# A's (stdout, stderr).
sub lookup_during_commit
{
	my ($lock, $expr) = @_;
	$b->query_safe(qq{BEGIN;
SELECT pg_advisory_xact_lock($lock);
SELECT bsoncrypt.create_data_key('local') IS NOT NULL;});
	$a->query_until(qr/waiting $lock/, qq{\\echo waiting $lock
SELECT $expr FROM (SELECT pg_advisory_xact_lock_shared($lock) OFFSET 0) l;
});
	$node->poll_query_until('postgres', qq{SELECT count(*) = 1 FROM pg_locks
		WHERE pid = $a_pid AND locktype = 'advisory' AND NOT granted})
	  or die 'session A does not wait for the advisory lock';
	$b->query_safe('COMMIT');
	$a->{stderr} = '';
	my $out = $a->query(q{\echo looked up});
	my $err = $a->{stderr};
	$a->{stderr} = '';
	$out =~ s/\n?looked up$//;
	return ($out, $err);
}

# ------------------------------------------------------------------------
# (a) alt-name lookup while its cache entry is flushed
# ------------------------------------------------------------------------
# the alt-name entry cached for an hour, the key itself only for the
# statement that unwrapped it: the next lookup by alt name finds the
# alt-name entry and must fetch the key
$a->query_safe(q{SET bsoncrypt.key_cache_ttl = 0});
$a->query_safe(q{SELECT bsoncrypt.encrypt_value('{"": 0}', 'cache-alt')});
$a->query_safe(qq{DO \$\$
BEGIN
    PERFORM bsoncrypt.encrypt_value('{"": 1}', '$k_alt'::uuid);
    PERFORM pg_catalog.set_config('bsoncrypt.key_cache_ttl', '3600', false);
    PERFORM bsoncrypt.encrypt_value('{"": 1}', 'cache-alt');
END \$\$});
my ($out, $err) = lookup_during_commit(4201,
	q{bsoncrypt.decrypt_value(bsoncrypt.encrypt_value('{"": "secret"}', 'cache-alt'))});
is($err, '', 'a lookup by keyAltName survives an invalidation that arrives during it');
is($out, '{ "" : "secret" }', 'and uses the right key');

# the key it used is the one named cache-alt
($out) = $a->query(q{SELECT bsoncrypt.decrypt_value(bsoncrypt.encrypt_value('{"": "again"}', 'cache-alt'))});
is($out, '{ "" : "again" }', 'the next statement uses it too');

# ------------------------------------------------------------------------
# (b) invalidations after a mid-lookup invalidation are still heard
# ------------------------------------------------------------------------
# the key cached for the statement only, so that the next use fetches it
$a->query_safe(q{SET bsoncrypt.key_cache_ttl = 0});
my $ct = $a->query_safe(qq{SELECT bsoncrypt.encrypt_value('{"": "shred me"}', '$k_del'::uuid)});
$a->query_safe(q{SET bsoncrypt.key_cache_ttl = 3600});
($out, $err) = lookup_during_commit(4202,
	qq{bsoncrypt.decrypt_value('$ct')});
is($err, '', 'a lookup by id survives an invalidation that arrives during it');
is($out, '{ "" : "shred me" }', 'and decrypts');

$b->query_safe(qq{SELECT bsoncrypt.delete_key('$k_del')});
$a->{stderr} = '';
($out) = $a->query(qq{SELECT bsoncrypt.decrypt_value('$ct')});
like($a->{stderr}, qr/ERROR:  42704: data key $k_del is not in the key vault/,
	'once delete_key has committed elsewhere, decrypting with the key fails at once');
is($out, '', 'and returns nothing');
$a->{stderr} = '';
($out) = $a->query(qq{SELECT bsoncrypt.encrypt_value('{"": 2}', '$k_del'::uuid)});
like($a->{stderr}, qr/ERROR:  42704: data key $k_del is not in the key vault/,
	'so does encrypting with it');
$a->{stderr} = '';

$a->quit;
$b->quit;
$node->stop;
done_testing();
