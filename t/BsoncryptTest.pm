# BsoncryptTest: what bsoncrypt's TAP tests share — master keys, key files
# and a PostgreSQL::Test::Cluster node set up for the extension.
package BsoncryptTest;

use strict;
use warnings;
use Exporter 'import';
use MIME::Base64 qw(encode_base64);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use Test::More;

our @EXPORT = qw(SPEC_LOCAL_MASTER_KEY random_master_key write_secret_file
  bsoncrypt_node allow_bsoncrypt_output_plugin require_oracle oracle sql_literal
  customer_key_client wal_segments count_in_files);

# MongoDB's spec LOCAL_MASTERKEY (the FLE corpus key is wrapped by it).
use constant SPEC_LOCAL_MASTER_KEY =>
  'Mng0NCt4ZHVUYUJCa1kxNkVyNUR1QURhZ2h2UzR2d2RrZzh0cFBwM3R6NmdWMDFBMUN3YkQ5aXRRMkhGRGdQV09wOGVNYUMxT2k3NjZKelhaQmRCZGJkTXVyZG9uSjFk';

# base64 of 96 random bytes: a fresh local master key
sub random_master_key
{
	open my $fh, '<:raw', '/dev/urandom' or die "/dev/urandom: $!";
	read($fh, my $bytes, 96) == 96 or die "short read from /dev/urandom";
	close $fh;
	return encode_base64($bytes, '');
}

# Write a file readable only by its owner (as key files must be).
sub write_secret_file
{
	my ($path, $content, $mode) = @_;
	open my $fh, '>', $path or die "$path: $!";
	print $fh $content;
	close $fh;
	chmod($mode // 0600, $path) or die "chmod $path: $!";
	return $path;
}

# A new (not started) node preloading bsoncrypt, UTF-8, with a local master
# key file holding key_file (default: the spec key) and extra conf lines.
sub bsoncrypt_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(extra => [ '-E', 'UTF8', '--locale=C' ], %{ $opts{init} // {} });
	my $keyfile = write_secret_file($node->basedir . '/master.key',
		($opts{key_file} // SPEC_LOCAL_MASTER_KEY) . "\n");
	$node->append_conf('postgresql.conf', "shared_preload_libraries = 'bsoncrypt'\n"
		  . "bsoncrypt.local_master_key_file = '$keyfile'\n"
		  . ($opts{conf} // ''));
	return $node;
}

# Let a started node's slots use the "bsoncrypt" output plugin: Debian's
# PostgreSQL 15.19 and later allow only the plugins of output_plugin_libraries.
sub allow_bsoncrypt_output_plugin
{
	my ($node) = @_;
	return
	  unless $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_settings WHERE name = 'output_plugin_libraries'}) eq '1';
	$node->safe_psql('postgres',
		q{ALTER SYSTEM SET output_plugin_libraries = pgoutput, test_decoding, bsoncrypt});
	$node->reload;
}

# Build t/helpers/customer_key_client.c (a libpq client that sends customer
# keys as bind parameters) into directory dir; returns its path.
sub customer_key_client
{
	my ($dir) = @_;
	my $src = $ENV{BSONCRYPT_SRC} // '.';
	my $libdir = `pg_config --libdir`;
	$libdir =~ s/\s+$//;	# callers may have undefined $/
	my $client = "$dir/customer_key_client";
	system("cc -O1 -Wall -Werror -I/usr/include/postgresql -o $client "
		  . "$src/t/helpers/customer_key_client.c -L$libdir -lpq") == 0
	  or die 'cannot build t/helpers/customer_key_client.c';
	return $client;
}

my $oracle_path;

# The libmongocrypt oracle (test/oracle), built if missing; skips the whole
# test file when it cannot be built.
sub require_oracle
{
	my $src = $ENV{BSONCRYPT_SRC} // '.';
	$oracle_path = "$src/test/oracle/mongocrypt_oracle";
	system("make -s -C $src/test/oracle >/dev/null 2>&1") unless -x $oracle_path;
	plan skip_all =>
	  "libmongocrypt oracle $oracle_path is missing and `make -C $src/test/oracle` could not build it"
	  unless -x $oracle_path;
	return $oracle_path;
}

# Run an oracle command with input on stdin; its stdout lines.  Dies if it fails.
sub oracle
{
	my ($cmd, $input, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ $oracle_path, $cmd, @args ], '<', \$input, '>', \$out, '2>', \$err)
	  or die "mongocrypt_oracle $cmd @args failed: $err";
	return split /\n/, $out;
}

# A string as an SQL literal.
sub sql_literal
{
	my $s = shift;
	$s =~ s/'/''/g;
	return "'$s'";
}

# The WAL segment files of $node from segment name $start to $end.
sub wal_segments
{
	my ($node, $start, $end) = @_;
	my $dir = $node->data_dir . '/pg_wal';
	opendir my $dh, $dir or die "$dir: $!";
	my @w = sort grep { /^[0-9A-F]{24}$/ && $_ ge $start && $_ le $end } readdir $dh;
	closedir $dh;
	return map { "$dir/$_" } @w;
}

# How many times $needle occurs in the bytes of @files.
sub count_in_files
{
	my ($needle, @files) = @_;
	my $hits = 0;
	for my $f (@files)
	{
		open my $fh, '<:raw', $f or die "$f: $!";
		local $/;
		my $content = <$fh>;
		close $fh;
		my @m = $content =~ /\Q$needle\E/g;
		$hits += scalar @m;
	}
	return $hits;
}

1;
