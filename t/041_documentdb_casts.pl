# Casts between bsoncrypt.bson and DocumentDB's documentdb_core.bson: made
# for DocumentDB's type (a member of the documentdb_core extension, a
# varlena with bson's I/O), and for nothing else that is called
# documentdb_core.bson.
#
# DocumentDB cannot be installed here, and a test cannot install an
# extension's control file into the server it runs against (CI installs as
# root, tests run as postgres).  So a stand-in documentdb_core extension is
# made in the catalogs: a pg_extension row (superusers may write catalogs)
# and ALTER EXTENSION ... ADD of a bson type with DocumentDB's shape (a
# varlena, int4 alignment, extended storage, bson_in/bson_out/bson_send/
# bson_recv, here borrowed from bsoncrypt.so), which gives exactly the
# catalog entries (pg_depend deptype 'e') that CREATE EXTENSION
# documentdb_core gives.
#
# Hostile variants must get no casts, and casting to them must be an
# error, never a crash: a RANGE type planted as documentdb_core.bson by a
# role with CREATE on the database before CREATE EXTENSION bsoncrypt (a
# binary-coercible cast to it made range_out read a 3906-byte document as
# a numrange and crash the server), a look-alike type outside any
# extension, and a fixed-length type in a documentdb_core extension.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use BsoncryptTest;

# a crash must not end the test: the server restarts and the next case runs
my $node = bsoncrypt_node('documentdb', conf => "restart_after_crash = on\n");
$node->start;

# SQL making a stand-in documentdb_core extension whose member type
# documentdb_core.bson has DocumentDB's shape ('bson') or is a
# fixed-length 8-byte type ('int8'); with $no_extension, the same schema,
# type and functions without the extension.
sub standin_documentdb
{
	my ($shape, $no_extension) = @_;
	my ($io, $type);
	if ($shape eq 'bson')
	{
		$io = q{
CREATE FUNCTION documentdb_core.bson_in(cstring) RETURNS documentdb_core.bson
    AS '$libdir/bsoncrypt', 'bsoncrypt_bson_in' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION documentdb_core.bson_out(documentdb_core.bson) RETURNS cstring
    AS '$libdir/bsoncrypt', 'bsoncrypt_bson_out' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION documentdb_core.bson_send(documentdb_core.bson) RETURNS bytea
    AS '$libdir/bsoncrypt', 'bsoncrypt_bson_send' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION documentdb_core.bson_recv(internal) RETURNS documentdb_core.bson
    AS '$libdir/bsoncrypt', 'bsoncrypt_bson_recv' LANGUAGE C IMMUTABLE STRICT;};
		$type = q{(INPUT = documentdb_core.bson_in, OUTPUT = documentdb_core.bson_out,
    SEND = documentdb_core.bson_send, RECEIVE = documentdb_core.bson_recv,
    INTERNALLENGTH = VARIABLE, ALIGNMENT = int4, STORAGE = extended)};
	}
	else
	{
		$io = q{
CREATE FUNCTION documentdb_core.bson_in(cstring) RETURNS documentdb_core.bson
    AS 'int8in' LANGUAGE internal IMMUTABLE STRICT;
CREATE FUNCTION documentdb_core.bson_out(documentdb_core.bson) RETURNS cstring
    AS 'int8out' LANGUAGE internal IMMUTABLE STRICT;
CREATE FUNCTION documentdb_core.bson_send(documentdb_core.bson) RETURNS bytea
    AS 'int8send' LANGUAGE internal IMMUTABLE STRICT;
CREATE FUNCTION documentdb_core.bson_recv(internal) RETURNS documentdb_core.bson
    AS 'int8recv' LANGUAGE internal IMMUTABLE STRICT;};
		$type = q{(INPUT = documentdb_core.bson_in, OUTPUT = documentdb_core.bson_out,
    SEND = documentdb_core.bson_send, RECEIVE = documentdb_core.bson_recv,
    INTERNALLENGTH = 8, PASSEDBYVALUE, ALIGNMENT = double)};
	}
	my $members = join('',
		map { "ALTER EXTENSION documentdb_core ADD $_;\n" }
		  'SCHEMA documentdb_core', 'TYPE documentdb_core.bson',
		  'FUNCTION documentdb_core.bson_in(cstring)',
		  'FUNCTION documentdb_core.bson_out(documentdb_core.bson)',
		  'FUNCTION documentdb_core.bson_send(documentdb_core.bson)',
		  'FUNCTION documentdb_core.bson_recv(internal)');
	my $extension = q{
INSERT INTO pg_catalog.pg_extension (oid, extname, extowner, extnamespace, extrelocatable, extversion)
SELECT (pg_catalog.max(oid)::int8 + 1)::oid, 'documentdb_core', current_user::regrole,
       'public'::regnamespace, false, 'stand-in'
  FROM pg_catalog.pg_extension;};
	($extension, $members) = ('', '') if $no_extension;
	return qq{
SET client_min_messages = warning;
$extension
CREATE SCHEMA documentdb_core;
CREATE TYPE documentdb_core.bson;
$io
CREATE TYPE documentdb_core.bson $type;
$members
RESET client_min_messages;
};
}

# the casts between documentdb_core.bson and bsoncrypt.bson, as
# "source>target:context:method" (extension members marked "member")
my $casts = q{
SELECT coalesce(string_agg(format('%s>%s:%s:%s%s', c.castsource::regtype, c.casttarget::regtype,
                                  c.castcontext, c.castmethod,
                                  CASE WHEN d.objid IS NOT NULL THEN ':member' ELSE '' END),
                           ' ' ORDER BY c.castsource::regtype::text), '')
  FROM pg_cast c
  LEFT JOIN pg_depend d ON d.classid = 'pg_cast'::regclass AND d.objid = c.oid AND d.deptype = 'e'
       AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'bsoncrypt')
 WHERE to_regtype('documentdb_core.bson') IS NOT NULL
   AND ((c.castsource = to_regtype('documentdb_core.bson') AND c.casttarget = 'bsoncrypt.bson'::regtype)
     OR (c.casttarget = to_regtype('documentdb_core.bson') AND c.castsource = 'bsoncrypt.bson'::regtype))};
my $both = 'bsoncrypt.bson>documentdb_core.bson:a:b:member documentdb_core.bson>bsoncrypt.bson:i:b:member';

# stdout of $sql, or its error (so that a failure today leaves the next
# cases running)
sub query
{
	my ($db, $sql) = @_;
	my ($ret, $out, $err) = $node->psql($db, $sql);
	return $ret == 0 ? $out : "error: $err";
}

# After a backend crash: until the postmaster has restarted the server
# (its log, from $offset, says so).
sub wait_for_restart
{
	my ($offset) = @_;
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		return
		  if slurp_file($node->logfile, $offset) =~
		  /terminated by signal.*database system is ready to accept connections/s;
		usleep(100_000);
	}
	BAIL_OUT('the server did not come back after a crash');
}

# Cast a 3906-byte document (3906 is numrange's OID, where a range type
# reads the type of its value) to documentdb_core.bson and print it: must
# fail with 42846 (cannot cast), and the server must live on.
sub refused_cast
{
	my ($db, $name) = @_;
	my $offset = -s $node->logfile;
	my ($ret, $out, $err) = $node->psql($db, qq{\\set VERBOSITY verbose
SELECT (('{"a": "' || repeat('x', 3893) || '"}')::bsoncrypt.bson::documentdb_core.bson)::text;
SELECT ('{}'::bsoncrypt.bson::documentdb_core.bson)::text;});
	my $crashed = $err =~ /server closed the connection unexpectedly/;
	wait_for_restart($offset) if $crashed;
	ok(!$crashed, "$name: casting a document to it does not crash the server");
	like($err, qr/ERROR:  42846: cannot cast type bsoncrypt\.bson to documentdb_core\.bson/,
		"$name: casting a document to it is an error (42846)");
}

# ------------------------------------------------------------------------
# DocumentDB (the stand-in) installed before bsoncrypt
# ------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE ddb_first');
$node->safe_psql('ddb_first', standin_documentdb('bson') . q{
CREATE TABLE documents (id int, document documentdb_core.bson);
INSERT INTO documents VALUES (1, '{"name": "Ann", "ssn": "123-45-6789"}');
CREATE EXTENSION bsoncrypt;
});
is($node->safe_psql('ddb_first', $casts), $both,
	'with documentdb_core installed first, CREATE EXTENSION makes both casts, binary-coercible, as members');
is($node->safe_psql('ddb_first', 'SELECT bsoncrypt.create_documentdb_casts()'), 't',
	'create_documentdb_casts() says they are there');
is($node->safe_psql('ddb_first', q{SELECT bsoncrypt.bson_get_text(document, 'name') FROM documents}),
	'Ann', 'a DocumentDB document goes straight into bsoncrypt functions');
$node->safe_psql('ddb_first', q{
SELECT bsoncrypt.create_data_key('local', '{ddb}');
UPDATE documents SET document = bsoncrypt.encrypt_field(document, 'ssn', 'ddb', 'deterministic');
});
is( $node->safe_psql('ddb_first',
		q{SELECT document::text LIKE '%"subType" : "06"%' FROM documents}),
	't', 'an encrypted result is assigned back to the DocumentDB column');
is( $node->safe_psql('ddb_first',
		q{SELECT bsoncrypt.decrypt(document) FROM documents}),
	'{ "name" : "Ann", "ssn" : "123-45-6789" }', 'and decrypts');
$node->safe_psql('ddb_first', 'DROP EXTENSION bsoncrypt CASCADE');
is( $node->safe_psql('ddb_first',
		q{SELECT count(*) FROM pg_cast WHERE castsource = 'documentdb_core.bson'::regtype
		   OR casttarget = 'documentdb_core.bson'::regtype}),
	'0', 'the casts go with the extension');
is( $node->safe_psql('ddb_first',
		q{DROP EXTENSION documentdb_core CASCADE; SELECT to_regtype('documentdb_core.bson') IS NULL}),
	't', 'the stand-in drops like an extension');

# ------------------------------------------------------------------------
# DocumentDB installed after bsoncrypt
# ------------------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE ddb_later');
$node->safe_psql('ddb_later', 'CREATE EXTENSION bsoncrypt');
is($node->safe_psql('ddb_later', 'SELECT bsoncrypt.create_documentdb_casts()'), 'f',
	'create_documentdb_casts() without documentdb_core: false');
$node->safe_psql('ddb_later', standin_documentdb('bson'));
is($node->safe_psql('ddb_later', 'SELECT bsoncrypt.create_documentdb_casts()'), 't',
	'create_documentdb_casts() after documentdb_core is installed: true');
is($node->safe_psql('ddb_later', $casts), $both, 'both casts, as members of bsoncrypt');
is( $node->safe_psql('ddb_later',
		q{SELECT bsoncrypt.bson_get_text('{"a": "b"}'::documentdb_core.bson, 'a')}),
	'b', 'and they work');

# ------------------------------------------------------------------------
# Hostile look-alikes
# ------------------------------------------------------------------------

# a RANGE type planted by a role with CREATE on the database, before
# CREATE EXTENSION bsoncrypt
$node->safe_psql('postgres', q{
CREATE ROLE mallory LOGIN;
CREATE DATABASE planted;
GRANT CREATE ON DATABASE planted TO mallory;
});
$node->safe_psql('planted', q{
CREATE SCHEMA documentdb_core;
CREATE TYPE documentdb_core.bson AS RANGE (subtype = int4);
}, extra_params => [ '-U', 'mallory' ]);
$node->safe_psql('planted', 'CREATE EXTENSION bsoncrypt');
is(query('planted', $casts), '',
	'a range type planted as documentdb_core.bson before CREATE EXTENSION gets no cast');
is(query('planted', 'SELECT bsoncrypt.create_documentdb_casts()'), 'f',
	'create_documentdb_casts() refuses it');
is(query('planted', $casts), '', 'and makes no cast');
refused_cast('planted', 'planted range type');

# a range type made by a superuser, after the extension
$node->safe_psql('postgres', 'CREATE DATABASE superrange');
$node->safe_psql('superrange', q{
CREATE EXTENSION bsoncrypt;
CREATE SCHEMA documentdb_core;
CREATE TYPE documentdb_core.bson AS RANGE (subtype = text);
});
is(query('superrange', 'SELECT bsoncrypt.create_documentdb_casts()'), 'f',
	'create_documentdb_casts() refuses a range type a superuser made');
is(query('superrange', $casts), '', 'no cast for it');
refused_cast('superrange', 'range type by a superuser');

# DocumentDB's shape, but in no extension (what sql/zz_documentdb.sql used
# to fake DocumentDB with)
$node->safe_psql('postgres', 'CREATE DATABASE lookalike');
$node->safe_psql('lookalike', standin_documentdb('bson', 'no extension') . 'CREATE EXTENSION bsoncrypt;');
is(query('lookalike', $casts), '',
	'a look-alike documentdb_core.bson outside any extension gets no cast at CREATE EXTENSION');
is(query('lookalike', 'SELECT bsoncrypt.create_documentdb_casts()'), 'f',
	'nor from create_documentdb_casts()');
refused_cast('lookalike', 'look-alike outside an extension');

# a fixed-length type in a documentdb_core extension
$node->safe_psql('postgres', 'CREATE DATABASE fixedlen');
$node->safe_psql('fixedlen', standin_documentdb('int8'));
my ($ret, $out, $err) = $node->psql('fixedlen', 'CREATE EXTENSION bsoncrypt');
is($ret, 0, 'CREATE EXTENSION works with a fixed-length documentdb_core.bson installed') or diag($err);
is(query('fixedlen', $casts), '',
	'a fixed-length documentdb_core.bson of a documentdb_core extension gets no cast');
is(query('fixedlen', 'SELECT bsoncrypt.create_documentdb_casts()'), 'f',
	'nor from create_documentdb_casts()');
refused_cast('fixedlen', 'fixed-length type');

ok(!$node->log_contains(qr/terminated by signal/), 'the server never crashed');
$node->stop;
done_testing();
