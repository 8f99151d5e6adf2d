# Relation keys go with their files also in a server that does not preload
# bsoncrypt: a fresh session that drops an encrypted table without having
# opened it never loads the library before the drop, so the access method's
# own hook cannot run; the sql_drop event trigger deletes the keys.  With
# the library loaded, TRUNCATE and VACUUM FULL delete the old file's keys.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $node = bsoncrypt_node('drop_keys', conf => "shared_preload_libraries = ''\n");
$node->start;
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), '', 'bsoncrypt is not preloaded');
$node->safe_psql('postgres', q{
CREATE EXTENSION bsoncrypt;
CREATE TABLE a (t text) USING encrypted_heap;
CREATE TABLE b (t text) USING encrypted_heap;
INSERT INTO a VALUES ('a'); INSERT INTO b VALUES ('b');
});
my $keys = q{SELECT count(*) FROM bsoncrypt.relation_keys};
is($node->safe_psql('postgres', $keys), '2', 'one key per table');

# a new session: nothing loads bsoncrypt before the drop
is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_stat_activity WHERE false;  -- no bsoncrypt call
DROP TABLE a;
SELECT count(*) FROM bsoncrypt.relation_keys;
}), "0\n1", 'DROP TABLE in a fresh session deletes its key');

# the control: without the trigger, the same fresh-session drop leaves the
# key behind (for drop_unused_relation_keys to find)
$node->safe_psql('postgres', q{
CREATE TABLE d (t text) USING encrypted_heap; INSERT INTO d VALUES ('d');
ALTER EVENT TRIGGER bsoncrypt_drop_relation_keys DISABLE;
});
is($node->safe_psql('postgres', q{DROP TABLE d; SELECT count(*) FROM bsoncrypt.relation_keys}),
	'2', 'control: without the event trigger the key stays');
is($node->safe_psql('postgres', q{
ALTER EVENT TRIGGER bsoncrypt_drop_relation_keys ENABLE;
SELECT bsoncrypt.drop_unused_relation_keys();
}), '1', 'drop_unused_relation_keys() finds it');

is($node->safe_psql('postgres', q{
BEGIN; DROP TABLE b; ROLLBACK;
SELECT t FROM b;
SELECT count(*) FROM bsoncrypt.relation_keys;
}), "b\n1", 'a rolled-back drop keeps the key');

is($node->safe_psql('postgres', q{
TRUNCATE b; INSERT INTO b VALUES ('b2');
VACUUM FULL b;
SELECT t FROM b;
SELECT count(*) FROM bsoncrypt.relation_keys;
}), "b2\n1", 'TRUNCATE and VACUUM FULL leave only the current file\'s key');

is($node->safe_psql('postgres', q{
CREATE SCHEMA s;
CREATE TABLE s.c (t text) USING encrypted_heap;
INSERT INTO s.c VALUES ('c');
}) , '', 'a table in a schema');
is($node->safe_psql('postgres', q{
DROP SCHEMA s CASCADE;
SELECT count(*) FROM bsoncrypt.relation_keys;
}), '1', 'DROP SCHEMA CASCADE deletes its tables\' keys');

$node->safe_psql('postgres', 'DROP EXTENSION bsoncrypt CASCADE');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_class WHERE relname = 'b'}), '0',
	'DROP EXTENSION CASCADE (event trigger and relation_keys dropped with it)');

$node->stop;
done_testing();
