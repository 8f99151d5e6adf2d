# Master-key providers: the local key file (permissions, reload, key ring
# versions, wrong key) and the command provider (success, failures); no key
# bytes in error messages or the server log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $node = PostgreSQL::Test::Cluster->new('keys');
$node->init(extra => [ '-E', 'UTF8', '--locale=C' ]);
my $dir = $node->basedir;
my $keyfile = "$dir/master.key";
my ($k1, $k2, $k3) = (random_master_key(), random_master_key(), random_master_key());
write_secret_file($keyfile, "$k1\n", 0600);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'bsoncrypt'
bsoncrypt.local_master_key_file = '$keyfile'
bsoncrypt.key_cache_ttl = 0
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION bsoncrypt');

sub sql { return $node->safe_psql('postgres', "SET search_path = bsoncrypt, public; $_[0]"); }
sub sql_error
{
	my ($ret, $out, $err) = $node->psql('postgres', "SET search_path = bsoncrypt, public; $_[0]");
	return $ret == 0 ? '' : $err;
}

# a key and a document under the first master key
sql(q{CREATE TABLE docs (id int, doc bson)});
sql(q{SELECT create_data_key('local', '{a}')});
sql(q{INSERT INTO docs VALUES (1, encrypt_field('{"s": "one"}', 's', 'a', 'deterministic'))});
is(sql(q{SELECT doc ~>> 's' FROM docs}), 'one', 'encrypted with the first master key');
is(sql(q{SELECT master_key_version FROM key_vault}), 'default', 'a one-key file is version "default"');

# permissions: group/world access is refused, like ssl_key_file
chmod 0644, $keyfile;
like(sql_error(q{SELECT create_data_key()}), qr/local master key file has group or world access/,
	'a world-readable key file is refused');
like(sql_error(q{SELECT doc ~>> 's' FROM docs}), qr/group or world access/,
	'also for unwrapping');
chmod 0600, $keyfile;
is(sql(q{SELECT doc ~>> 's' FROM docs}), 'one', 'mode 0600 is accepted again');

# a missing file, a malformed file
$node->safe_psql('postgres', "ALTER SYSTEM SET bsoncrypt.local_master_key_file = '$dir/nope.key'");
$node->reload;
like(sql_error(q{SELECT create_data_key()}), qr/could not access local master key file: No such file or directory/,
	'a missing key file is a clear error');
write_secret_file("$dir/bad.key", "v1 not-base64!!\n", 0600);
$node->safe_psql('postgres', "ALTER SYSTEM SET bsoncrypt.local_master_key_file = '$dir/bad.key'");
$node->reload;
my $err = sql_error(q{SELECT create_data_key()});
like($err, qr/invalid master key in local master key file, line 1/, 'a malformed key is a clear error');
# the file's path (a superuser-only setting) is in the server log, not in messages
my $server_log = slurp_file($node->logfile);
like($server_log, qr/DETAIL:  The local master key file is ".*nope.key"/,
	'the server log names the missing file');
like($server_log, qr/DETAIL:  The local master key file is ".*bad.key"/, 'and the malformed one');
unlike($err, qr/bad\.key/, 'messages do not');
$node->safe_psql('postgres', "ALTER SYSTEM RESET bsoncrypt.local_master_key_file");
$node->reload;

# a key file inside the data directory works, with a word in the server log
# (base backups would carry the key with the data)
my $inside = $node->data_dir . '/inside.key';
write_secret_file($inside, "$k1\n", 0600);
$node->safe_psql('postgres', "ALTER SYSTEM SET bsoncrypt.local_master_key_file = '$inside'");
$node->reload;
my $log_offset = -s $node->logfile;
is(sql(q{SELECT doc ~>> 's' FROM docs}), 'one', 'a key file inside the data directory is used');
$node->wait_for_log(qr/LOG:  local master key file is inside the data directory/, $log_offset);
like(slurp_file($node->logfile, $log_offset), qr/HINT:  Base backups and copies of the data directory then carry the key/,
	'the server log warns of a key file inside the data directory');
unlike(slurp_file($node->logfile, $log_offset), qr/LOG:  local master key file is inside.*\n(?:.*\n)*.*LOG:  local master key file is inside/,
	'once per process');
$node->safe_psql('postgres', "ALTER SYSTEM RESET bsoncrypt.local_master_key_file");
$node->reload;
unlink $inside;

# key ring: the old key keeps its version name, the last line is current
write_secret_file($keyfile, "# ring\ndefault $k1\nv2 $k2\n", 0600);
sql(q{SELECT create_data_key('local', '{b}')});
is(sql(q{SELECT string_agg(master_key_version, ',' ORDER BY key_alt_names[1]) FROM key_vault}),
	'default,v2', 'new keys use the last (current) version');
sql(q{INSERT INTO docs VALUES (2, encrypt_field('{"s": "two"}', 's', 'b'))});
is(sql(q{SELECT string_agg(doc ~>> 's', ',' ORDER BY id) FROM docs}), 'one,two',
	'keys of both versions unwrap');

# wrong master key under a known version: clear error, nothing modified
my $before = sql(q{SELECT string_agg(md5(key_material), ',' ORDER BY _id) FROM key_vault});
write_secret_file($keyfile, "default $k3\nv2 $k2\n", 0600);
$err = sql_error(q{SELECT doc ~>> 's' FROM docs WHERE id = 1});
like($err, qr/cannot unwrap data key [0-9a-f-]{36} with master key version "default" of provider "local"/,
	'a wrong master key is refused, naming the key and version');
like($err, qr/HINT:.*master key is not the one that wrapped/, 'with a hint');
is(sql(q{SELECT doc ~>> 's' FROM docs WHERE id = 2}), 'two', 'keys of other versions still work');
is(sql(q{SELECT string_agg(md5(key_material), ',' ORDER BY _id) FROM key_vault}), $before,
	'nothing in the key vault changed');
# a version that is no longer in the file
write_secret_file($keyfile, "v2 $k2\n", 0600);
like(sql_error(q{SELECT doc ~>> 's' FROM docs WHERE id = 1}),
	qr/master key version "default" is not in local master key file/, 'a retired version is named');
write_secret_file($keyfile, "default $k1\nv2 $k2\n", 0600);
is(sql(q{SELECT doc ~>> 's' FROM docs WHERE id = 1}), 'one', 'restoring the key restores access');

# the command provider
my $script = "$dir/kms.sh";
write_secret_file($script, qq{#!/bin/sh
# prints the wanted version of the master key (current: v7)
case "\$1" in
  ""|v7) echo "v7 $k3" ;;
  fail) echo "some diagnostics" >&2; exit 3 ;;
  junk) echo "v9 definitely-not-a-key" ;;
  *) echo "unknown version \$1" >&2; exit 1 ;;
esac
}, 0700);
$node->safe_psql('postgres', "ALTER SYSTEM SET bsoncrypt.master_key_command = '$script %n'");
$node->reload;
sql(q{SELECT create_data_key('command', '{c}')});
is(sql(q{SELECT master_key_version || ' ' || bson_get_text(master_key, 'provider') FROM key_vault WHERE 'c' = ANY (key_alt_names)}),
	'v7 command', 'the command reports the current version');
sql(q{INSERT INTO docs VALUES (3, encrypt_field('{"s": "three"}', 's', 'c'))});
is(sql(q{SELECT doc ~>> 's' FROM docs WHERE id = 3}), 'three', 'the command provider wraps and unwraps');
sql(q{UPDATE key_vault SET master_key_version = 'fail' WHERE 'c' = ANY (key_alt_names)});
$err = sql_error(q{SELECT doc ~>> 's' FROM docs WHERE id = 3});
like($err, qr/master key command failed for version "fail": child process exited with exit code 3/,
	'a failing command is a clear error');
unlike($err, qr/some diagnostics/, 'its stderr goes to the log, not to the client');
sql(q{UPDATE key_vault SET master_key_version = 'junk' WHERE 'c' = ANY (key_alt_names)});
like(sql_error(q{SELECT doc ~>> 's' FROM docs WHERE id = 3}),
	qr/master key command printed no valid key for version "junk"/, 'bad command output is a clear error');
# versions come from the key vault, which key administrators write: one
# that would be an option of the command (or a directory) is never passed
for my $bad ('-x', '--help', '..')
{
	sql(qq{UPDATE key_vault SET master_key_version = '$bad' WHERE 'c' = ANY (key_alt_names)});
	like(sql_error(q{SELECT doc ~>> 's' FROM docs WHERE id = 3}),
		qr/invalid master key version name "\Q$bad\E"/, "version \"$bad\" is refused");
	like(sql_error(qq{SELECT rewrap_many_data_key('{}', 'command', '$bad')}),
		qr/invalid master key version name "\Q$bad\E"/, "also as a rewrap target");
}
unlike(slurp_file($node->logfile), qr/unknown version (-x|--help|\.\.)/,
	'the command never ran with such a version');
sql(q{UPDATE key_vault SET master_key_version = 'v7' WHERE 'c' = ANY (key_alt_names)});
is(sql(q{SELECT doc ~>> 's' FROM docs WHERE id = 3}), 'three', 'back to a good version');
like(sql_error(q{SELECT create_data_key('command', '{d}') FROM (SELECT set_config('bsoncrypt.master_key_command', 'x', true)) s}),
	qr/parameter "bsoncrypt.master_key_command" cannot be changed now/, 'the command cannot be set per session');

# secrets never reach the log or error messages
my $log = slurp_file($node->logfile);
for my $k ($k1, $k2, $k3)
{
	ok(index($log, $k) < 0 && index($log, substr($k, 0, 24)) < 0, 'no master key in the server log');
}
$node->stop;
done_testing();
