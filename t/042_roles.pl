# The role model of the key vault, role by role, each in its own login
# session:
#  - a key administrator (bsoncrypt.grant_key_admin) manages data keys:
#    creates them with keyAltNames, reads them, renames them, exports and
#    imports them, rewraps and deletes them; it can neither read the
#    master-key settings nor rotate master keys, encrypt or decrypt;
#  - a role given grant_encryption encrypts with a key's alt name, and a
#    role given grant_decryption decrypts; neither can read the key vault
#    or manage keys;
#  - a role given nothing can do none of it; PUBLIC may use the bson type.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $node = bsoncrypt_node('roles');
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION bsoncrypt;
CREATE ROLE bc_admin LOGIN;
CREATE ROLE bc_writer LOGIN;
CREATE ROLE bc_reader LOGIN;
CREATE ROLE bc_nobody LOGIN;
SELECT bsoncrypt.grant_encryption('bc_writer');
SELECT bsoncrypt.grant_decryption('bc_reader');
SELECT bsoncrypt.create_data_key('local', '{shared}');
});
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT bsoncrypt.grant_key_admin('bc_admin')});
is($ret, 0, 'grant_key_admin(role) makes a key administrator') or diag($err);
my $ct = $node->safe_psql('postgres',
	q{SELECT bsoncrypt.encrypt_value('{"": "for readers"}', 'shared', 'deterministic')});

# Run $sql as $role; its output, or "ERROR <sqlstate>: <message>".
sub as
{
	my ($role, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres',
		"\\set VERBOSITY verbose\nSET search_path = bsoncrypt, public;\n$sql",
		extra_params => [ '-U', $role ], on_error_stop => 1);
	return $out if $ret == 0;
	return $err =~ /ERROR:  (\w{5}): ([^\n]*)/ ? "ERROR $1: $2" : "ERROR $err";
}
sub can
{
	my ($role, $sql, $expected, $name) = @_;
	my $got = as($role, $sql);
	if (ref $expected) { like($got, $expected, "$role can $name"); }
	else { is($got, $expected, "$role can $name"); }
}
sub cannot
{
	my ($role, $sql, $name) = @_;
	like(as($role, $sql), qr/^ERROR 42501: (permission denied|must be superuser)/, "$role cannot $name");
}

my $uuid = qr/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

# ------------------------------------------------------------------------
# the key administrator
# ------------------------------------------------------------------------
my $k = as('bc_admin', q{SELECT bsoncrypt.create_data_key('local', '{adm-a, adm-b}')});
like($k, $uuid, 'bc_admin can create a data key with keyAltNames');
can('bc_admin', qq{SELECT bsoncrypt.get_key('$k') ->> 'keyAltNames'}, '[ "adm-a", "adm-b" ]',
	'read a key with get_key');
can('bc_admin', q{SELECT bsoncrypt.get_key_by_alt_name('adm-a') ->> 'status'}, '0',
	'read a key with get_key_by_alt_name');
can('bc_admin', q{SELECT count(*) FROM bsoncrypt.get_keys()}, '2', 'list keys with get_keys');
can('bc_admin', q{SELECT count(*) FROM bsoncrypt.key_vault}, '2', 'SELECT the key vault');
can('bc_admin', qq{SELECT bsoncrypt.add_key_alt_name('$k', 'adm-c') IS NOT NULL}, 't',
	'add a keyAltName');
can('bc_admin', qq{SELECT bsoncrypt.remove_key_alt_name('$k', 'adm-a') IS NOT NULL;
SELECT bsoncrypt.get_key('$k') ->> 'keyAltNames'}, "t\n[ \"adm-b\", \"adm-c\" ]",
	'remove a keyAltName');
can('bc_admin', q{SELECT bsoncrypt.rewrap_many_data_key('{"keyAltNames": "adm-b"}')}, '1',
	'rewrap a key (rewrap_many_data_key)');
# export a key with get_key, delete it, import the document again
can('bc_admin', qq{CREATE TEMP TABLE saved AS SELECT bsoncrypt.get_key('$k') AS d;
SELECT bsoncrypt.delete_key('$k');
SELECT bsoncrypt.get_key('$k') IS NULL;
SELECT bsoncrypt.import_key(d) FROM saved;
SELECT bsoncrypt.get_key('$k') = d FROM saved;}, "t\nt\n$k\nt",
	'delete a key and import its exported document again');
can('bc_admin', q{SELECT bsoncrypt.get_key_by_alt_name('adm-b') IS NOT NULL}, 't',
	'find the imported key by its keyAltName');
can('bc_admin', qq{SELECT bsoncrypt.delete_key('$k')}, 't', 'delete a key');

# NULLs where the key vault has none (rows built with ROW(...), which no
# constraint checks): errors, never a crash of the server
my $log_offset = -s $node->logfile;
like(as('bc_admin', q{SELECT bsoncrypt.create_data_key(NULL)}),
	qr/^ERROR 22023: unknown master key provider "\(null\)"/, 'create_data_key(NULL) is an error');
like(as('bc_admin', q{SELECT bsoncrypt._new_key_material(NULL)}),
	qr/^ERROR 22023: unknown master key provider "\(null\)"/, '_new_key_material(NULL) is an error');
my @columns = qw(_id key_alt_names key_material master_key master_key_version
  creation_date update_date status);
for my $i (0 .. $#columns)
{
	next if $columns[$i] eq 'master_key_version';    # not part of a key document
	my $row = join(', ', map { $_ == $i ? 'NULL' : "k.$columns[$_]" } 0 .. $#columns);
	like(as('bc_admin', qq{SELECT bsoncrypt._key_document(ROW($row)::bsoncrypt.key_vault)
  FROM bsoncrypt.key_vault k WHERE 'shared' = ANY (k.key_alt_names)}),
		qr/^ERROR 22004: cannot make a key document of a key vault row whose $columns[$i] is NULL/,
		"_key_document of a row whose $columns[$i] is NULL is an error");
}
can('bc_admin', q{SELECT bsoncrypt._key_document(ROW(k._id, '{NULL, a, NULL}', k.key_material,
    k.master_key, k.master_key_version, k.creation_date, k.update_date, k.status)::bsoncrypt.key_vault)
    ->> 'keyAltNames' FROM bsoncrypt.key_vault k WHERE 'shared' = ANY (k.key_alt_names)},
	'[ "a" ]', 'export a row whose keyAltNames hold NULLs (without them)');
unlike(slurp_file($node->logfile, $log_offset), qr/terminated by signal/,
	'no server process crashed');

cannot('bc_admin', q{SHOW bsoncrypt.local_master_key_file}, 'read the master key file setting');
# ... nor from an error about a master key version the file does not hold
my $keyfile = $node->basedir . '/master.key';
my $err_text = sub {
	my ($role, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql",
		extra_params => [ '-U', $role ]);
	return $err;
};
my $e = $err_text->('bc_admin', q{SELECT bsoncrypt.rewrap_many_data_key('{}', 'local', 'retired')});
like($e, qr/ERROR:  42704: master key version "retired" is not in local master key file/,
	'bc_admin: rewrapping to a version the key file lacks is an error');
unlike($e, qr/\Q$keyfile\E/, 'bc_admin cannot read the master key file setting from that error');
cannot('bc_admin', q{SELECT current_setting('bsoncrypt.master_key_command')},
	'read the master key command setting');
cannot('bc_admin', q{SELECT bsoncrypt.rotate_master_key()}, 'run rotate_master_key');
cannot('bc_admin', q{SELECT bsoncrypt.encrypt_value('{"": 1}', 'shared')}, 'encrypt');
cannot('bc_admin', q{SELECT bsoncrypt.encrypt_field('{"a": 1}', 'a', 'shared')}, 'encrypt fields');
cannot('bc_admin', qq{SELECT bsoncrypt.decrypt_value('$ct')}, 'decrypt');
cannot('bc_admin', q{SELECT bsoncrypt.grant_encryption('bc_admin')}, 'grant itself encryption');

# ------------------------------------------------------------------------
# the writer (grant_encryption) and the reader (grant_decryption)
# ------------------------------------------------------------------------
can('bc_writer', q{SELECT bsoncrypt.encrypt_value('{"": "for readers"}', 'shared', 'deterministic')},
	$ct, 'encrypt with a keyAltName');
can('bc_writer', q{SELECT bsoncrypt.encrypt_field('{"a": "x"}', 'a', 'shared')::text LIKE '%"06"%'},
	't', 'encrypt a field with a keyAltName');
cannot('bc_writer', qq{SELECT bsoncrypt.decrypt_value('$ct')}, 'decrypt');
$node->safe_psql('postgres', q{CREATE TEMP TABLE v AS SELECT bsoncrypt.create_data_key('local', '{retired}') AS k;
UPDATE bsoncrypt.key_vault SET master_key_version = 'retired' FROM v WHERE _id = v.k});
$e = $err_text->('bc_writer', q{SELECT bsoncrypt.encrypt_value('{"": 1}', 'retired')});
like($e, qr/ERROR:  42704: master key version "retired" is not in local master key file/,
	'bc_writer: a key whose master key version the file lacks is an error');
unlike($e, qr/\Q$keyfile\E/, 'bc_writer cannot read the master key file setting from that error');
cannot('bc_writer', q{SELECT count(*) FROM bsoncrypt.key_vault}, 'SELECT the key vault');
cannot('bc_writer', q{SELECT bsoncrypt.get_key_by_alt_name('shared')}, 'read keys');
cannot('bc_writer', q{SELECT bsoncrypt.create_data_key('local', '{w}')}, 'create keys');

can('bc_reader', qq{SELECT bsoncrypt.decrypt_value('$ct')}, '{ "" : "for readers" }', 'decrypt');
can('bc_reader', qq{SELECT bsoncrypt.bson_from_jsonb(jsonb_build_object('s', 1)) IS NOT NULL}, 't',
	'use the bson type');
cannot('bc_reader', q{SELECT bsoncrypt.encrypt_value('{"": 1}', 'shared')}, 'encrypt');
cannot('bc_reader', q{SELECT count(*) FROM bsoncrypt.key_vault}, 'SELECT the key vault');
cannot('bc_reader', q{SELECT bsoncrypt.get_keys()}, 'read keys');
cannot('bc_reader', q{SELECT bsoncrypt.create_data_key('local', '{r}')}, 'create keys');

# ------------------------------------------------------------------------
# a role with nothing, and PUBLIC
# ------------------------------------------------------------------------
can('bc_nobody', q{SELECT '{"a": {"b": 1}}'::bsoncrypt.bson -> 'a', bsoncrypt.bson_get_text('{"s": "t"}', 's')},
	'{ "" : { "b" : 1 } }|t', 'use the bson type (PUBLIC)');
cannot('bc_nobody', q{SELECT count(*) FROM bsoncrypt.key_vault}, 'SELECT the key vault');
cannot('bc_nobody', q{SELECT bsoncrypt.create_data_key('local', '{n}')}, 'create keys');
cannot('bc_nobody', q{SELECT bsoncrypt.get_keys()}, 'read keys');
cannot('bc_nobody', q{SELECT bsoncrypt.delete_key(_id) FROM bsoncrypt.key_vault}, 'delete keys');
cannot('bc_nobody', q{SELECT bsoncrypt.encrypt_value('{"": 1}', 'shared')}, 'encrypt');
cannot('bc_nobody', qq{SELECT bsoncrypt.decrypt_value('$ct')}, 'decrypt');
cannot('bc_nobody', q{SELECT bsoncrypt.rotate_master_key()}, 'run rotate_master_key');
cannot('bc_nobody', q{SELECT bsoncrypt.grant_key_admin('bc_nobody')}, 'make itself a key administrator');
cannot('bc_nobody', q{SHOW bsoncrypt.local_master_key_file}, 'read the master key file setting');

$node->stop;
done_testing();
