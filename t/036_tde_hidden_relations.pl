# Dropping a table deletes the keys of the files that command dropped and
# nothing else, even when the session's SQL cannot see every relation:
# Citus hides its shard tables from pg_class with a planner hook, and a
# DROP TABLE of an unrelated table once deleted every shard's keys (the
# sql_drop trigger swept every key whose file pg_class, as SQL saw it, did
# not show).  t/helpers/hide_relations.c stands in for Citus: loaded in
# every session, it hides relations named shard_* from SQL on pg_class.
# Run with bsoncrypt preloaded and not (then only the event trigger deletes
# the keys of a table dropped in a fresh session).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $incdir = `pg_config --includedir-server`;
chomp $incdir;
my $hide = PostgreSQL::Test::Utils::tempdir() . "/hide_relations.so";
my $src = ($ENV{BSONCRYPT_SRC} // '.') . "/t/helpers/hide_relations.c";
system("cc -shared -fPIC -O0 -Wall -Werror -I$incdir -o $hide $src") == 0
  or die "cannot build the hide_relations module";

# every key's file, seen without the hiding (C catalog access is not
# filtered; this only makes the test's own view complete)
my $all_keys = q{
SET hide_relations.prefix = '';
SELECT count(*) FROM bsoncrypt.relation_keys;
};

for my $preload ('bsoncrypt', '')
{
	my $label = $preload ? 'preloaded' : 'not preloaded';
	my $node = bsoncrypt_node("hidden_" . ($preload ? 'pre' : 'nopre'), conf => qq{
shared_preload_libraries = '$preload'
session_preload_libraries = '$hide'
hide_relations.prefix = 'shard_'
});
	$node->start;
	$node->safe_psql('postgres', q{
CREATE EXTENSION bsoncrypt;
CREATE TABLE shard_102008 (id int, t text) USING encrypted_heap;
INSERT INTO shard_102008 VALUES (1, 'shard row');
CREATE TABLE unrelated (t text) USING encrypted_heap;
INSERT INTO unrelated VALUES ('unrelated');
CREATE TABLE kept (t text) USING encrypted_heap;
INSERT INTO kept VALUES ('kept');
});
	is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_class WHERE relname LIKE 'shard%';
SELECT t FROM shard_102008;
}), "0\nshard row", "$label: the shard works but SQL on pg_class does not show it");
	is($node->safe_psql('postgres', $all_keys), '3', "$label: three keys");

	# a fresh session drops an unrelated table
	is($node->safe_psql('postgres', q{
DROP TABLE unrelated;
}), '', "$label: DROP TABLE of an unrelated table");
	is($node->safe_psql('postgres', $all_keys), '2', "$label: only the dropped table's key went");
	is($node->safe_psql('postgres', q{SELECT t FROM shard_102008}), 'shard row',
		"$label: the hidden table still reads in a new session");

	# the manual sweep looks at the catalog, not at what SQL shows; it
	# still finds a key whose file does not exist
	$node->safe_psql('postgres', q{
INSERT INTO bsoncrypt.relation_keys (reltablespace, relfilenode, key_material, provider,
                                     master_key_version, key_number)
SELECT reltablespace, 4000000001, key_material, provider, master_key_version, 0
  FROM bsoncrypt.relation_keys LIMIT 1;
});
	is($node->safe_psql('postgres', q{SELECT bsoncrypt.drop_unused_relation_keys()}), '1',
		"$label: drop_unused_relation_keys() deletes only the key of the missing file");
	is($node->safe_psql('postgres', q{SELECT t FROM shard_102008; SELECT t FROM kept}),
		"shard row\nkept", "$label: the hidden and the visible table still read");

	# DROP of the hidden table itself (as Citus drops a shard) takes its key
	is($node->safe_psql('postgres', q{DROP TABLE shard_102008}), '', "$label: DROP of the hidden table");
	is($node->safe_psql('postgres', $all_keys), '1', "$label: its key went with it");

	# in one transaction: a table rewritten (TRUNCATE) and then dropped, and
	# a drop rolled back
	is($node->safe_psql('postgres', q{
CREATE TABLE shard_7 (t text) USING encrypted_heap;
INSERT INTO shard_7 VALUES ('seven');
BEGIN;
TRUNCATE kept;
INSERT INTO kept VALUES ('kept 2');
DROP TABLE kept;
SAVEPOINT s;
DROP TABLE shard_7;
ROLLBACK TO s;
COMMIT;
SELECT t FROM shard_7;
}), 'seven', "$label: a truncated-then-dropped table and a rolled-back drop in one transaction");
	is($node->safe_psql('postgres', $all_keys), '1', "$label: only the surviving hidden table's key is left");

	# a role with no rights on bsoncrypt's tables drops its own table in a
	# fresh session: the trigger runs as that role, the key still goes
	$node->safe_psql('postgres', q{
CREATE ROLE tenant LOGIN;
GRANT CREATE ON SCHEMA public TO tenant;
SET ROLE tenant;
CREATE TABLE tenant_data (t text) USING encrypted_heap;
INSERT INTO tenant_data VALUES ('tenant');
});
	is($node->safe_psql('postgres', $all_keys), '2', "$label: the tenant's table has a key");
	$node->safe_psql('postgres', 'DROP TABLE tenant_data', extra_params => [ '-U', 'tenant' ]);
	is($node->safe_psql('postgres', $all_keys), '1', "$label: the tenant's DROP deleted it");
	$node->stop;
}

done_testing();
