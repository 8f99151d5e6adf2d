# pg_upgrade of a cluster with bsoncrypt: encrypted_heap tables (main fork,
# TOAST, indexes), their relation keys, the key vault and FLE ciphertext
# all carry over.  PostgreSQL 15 keeps relation file numbers across
# pg_upgrade, and relation_keys is an ordinary table whose file is copied,
# so the new cluster reads the old files with the old keys (same master
# key configured).  The new cluster then writes, rewrites and rotates.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $old = bsoncrypt_node('upgrade_old');
$old->start;
$old->safe_psql('postgres', q{
CREATE EXTENSION bsoncrypt;
SELECT bsoncrypt.create_data_key('local', '{upg}');
CREATE TABLE docs (id int PRIMARY KEY, doc jsonb, t text, secret bsoncrypt.bson) USING encrypted_heap;
CREATE INDEX docs_t ON docs (t);
INSERT INTO docs
SELECT g, jsonb_build_object('id', g, 'pad', repeat(md5(g::text), g % 80)), 'row ' || g,
       bsoncrypt.encrypt_field(('{"_id": ' || g || ', "ssn": "ssn-' || g || '"}')::bsoncrypt.bson,
                               'ssn', 'upg', 'deterministic')
  FROM generate_series(1, 2000) g;
-- a schema that pg_dump restores before bsoncrypt's own tables
CREATE SCHEMA app;
CREATE TABLE app.early (t text) USING encrypted_heap;
INSERT INTO app.early VALUES ('restored before relation_keys exists');
CREATE TABLE plain (id int, t text);
INSERT INTO plain SELECT g, 'plain ' || g FROM generate_series(1, 100) g;
VACUUM FULL docs;
-- encrypted_btree indexes: a constraint's (dumped WITH (encrypted='true'))
-- and a plain CREATE INDEX's
SET bsoncrypt.encrypt_indexes = on;
CREATE TABLE secure (id int PRIMARY KEY, t text) USING encrypted_heap;
CREATE INDEX secure_t ON secure (t);
INSERT INTO secure SELECT g, 'secure ' || g FROM generate_series(1, 500) g;
});
my $check = q{SELECT count(*), sum(id),
  bool_and((doc->>'id')::int = id AND t = 'row ' || id
           AND bsoncrypt.bson_get_text(bsoncrypt.decrypt_field(secret, 'ssn'), 'ssn') = 'ssn-' || id)
  FROM docs};
my $before = $old->safe_psql('postgres', $check);
is($before, '2000|2001000|t', 'old cluster reads its data');
my $keys_before = $old->safe_psql('postgres',
	'SELECT key_id, reltablespace, relfilenode, md5(key_material) FROM bsoncrypt.relation_keys ORDER BY key_id');
$old->stop;

my $new = bsoncrypt_node('upgrade_new');
my $bindir = $new->config_data('--bindir');
my $workdir = PostgreSQL::Test::Utils::tempdir;
my ($stdout, $stderr);
my $ok = IPC::Run::run(
	[ "$bindir/pg_upgrade", '--no-sync',
	  '-b', $bindir, '-B', $bindir,
	  '-d', $old->data_dir, '-D', $new->data_dir,
	  '-p', $old->port, '-P', $new->port,
	  '-s', $new->host ],
	'>', \$stdout, '2>', \$stderr,
	init => sub { chdir $workdir or die "chdir $workdir: $!" });
ok($ok, 'pg_upgrade succeeds') or diag("stdout:\n$stdout\nstderr:\n$stderr");

$new->start;
is($new->safe_psql('postgres', $check), $before, 'new cluster reads the same data');
is($new->safe_psql('postgres',
	'SELECT key_id, reltablespace, relfilenode, md5(key_material) FROM bsoncrypt.relation_keys ORDER BY key_id'),
	$keys_before, 'relation keys carried over unchanged');
is($new->safe_psql('postgres', q{SET enable_seqscan = off; SELECT id FROM docs WHERE t = 'row 1234'}),
	'1234', 'index scan on the upgraded table');
is($new->safe_psql('postgres', q{SELECT bsoncrypt.is_encrypted('docs'), bsoncrypt.is_encrypted('plain'), count(*) FROM plain}),
	't|f|100', 'access methods kept');
is($new->safe_psql('postgres', q{
SET enable_seqscan = off; SET enable_bitmapscan = off;
SELECT string_agg(a.amname, ',' ORDER BY c.relname), (SELECT id FROM secure WHERE t = 'secure 321'),
       (SELECT t FROM secure WHERE id = 123),
       bsoncrypt.encrypted_index_check('secure_pkey') + bsoncrypt.encrypted_index_check('secure_t')
  FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.relname IN ('secure_pkey', 'secure_t')}),
	'encrypted_btree,encrypted_btree|321|secure 123|1000', 'encrypted indexes kept and readable');
is($new->safe_psql('postgres', q{SELECT t FROM app.early}),
	'restored before relation_keys exists', 'table of a schema restored before bsoncrypt\'s');

# the new cluster goes on: writes, a rewrite (new key, ids continue), a
# new encrypted table, master-key rotation of everything
$new->safe_psql('postgres', q{
INSERT INTO docs SELECT g, jsonb_build_object('id', g), 'row ' || g,
       bsoncrypt.encrypt_field(('{"_id": ' || g || ', "ssn": "ssn-' || g || '"}')::bsoncrypt.bson, 'ssn', 'upg', 'deterministic')
  FROM generate_series(2001, 2100) g;
VACUUM FULL docs;
CREATE TABLE more (t text) USING encrypted_heap;
INSERT INTO more VALUES ('after upgrade');
});
is($new->safe_psql('postgres', $check), '2100|2206050|t', 'writes and VACUUM FULL after the upgrade');
is($new->safe_psql('postgres', q{SELECT count(DISTINCT key_id) = count(*) FROM bsoncrypt.relation_keys}),
	't', 'key ids stay unique after the upgrade');
is($new->safe_psql('postgres', q{SELECT t FROM more}), 'after upgrade', 'new encrypted table');

$new->stop;
done_testing();
