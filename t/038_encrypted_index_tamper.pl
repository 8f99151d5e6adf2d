# Tampering with an encrypted_btree index file gives an error, never a wrong
# row: a flipped byte in a stored key's ciphertext fails authentication, and
# an entry's heap TID changed to point at another row no longer matches the
# TID its key was sealed for.  Both stored formats: int keys as single AES
# blocks (bsoncrypt.index_keys_as_blocks on, the default) and as
# AES-256-GCM (off).  The same TID change in a plain btree index returns the
# other row (the control: the tampering works).  REINDEX repairs the index.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $node = bsoncrypt_node('index_tamper', conf => qq{
autovacuum = off
bsoncrypt.encrypt_indexes = on
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION bsoncrypt;
CREATE TABLE enc (id int PRIMARY KEY, name text) USING encrypted_heap;
CREATE TABLE plain (id int PRIMARY KEY, name text) USING heap;
CREATE TABLE enc_gcm (id int PRIMARY KEY, name text) USING encrypted_heap;
INSERT INTO enc SELECT g, 'name' || g FROM generate_series(1, 2000) g;
INSERT INTO plain SELECT g, 'name' || g FROM generate_series(1, 2000) g;
SET bsoncrypt.index_keys_as_blocks = off;
INSERT INTO enc_gcm SELECT g, 'name' || g FROM generate_series(1, 2000) g;
CHECKPOINT;
});
is($node->safe_psql('postgres', q{SELECT amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE relname = 'enc_pkey'}),
	'encrypted_btree', 'the encrypted table\'s primary key is encrypted_btree');
is($node->safe_psql('postgres', q{SELECT ctid FROM enc WHERE id = 2}), '(0,2)', 'row 2 is at (0,2)');
my %path = map { $_ => $node->data_dir . '/' . $node->safe_psql('postgres', "SELECT pg_relation_filepath('$_')") }
  ('enc_pkey', 'plain_pkey', 'enc_gcm_pkey');

# block 1 is the leftmost leaf (item 1 its high key): item 2 is id 1, item 3
# id 2, item 4 id 3
sub item_offset
{
	my ($page, $item) = @_;
	my $lp = unpack('V', substr($page, 24 + 4 * ($item - 1), 4));
	return $lp & 0x7fff;
}

sub item_length
{
	my ($page, $item) = @_;
	my $lp = unpack('V', substr($page, 24 + 4 * ($item - 1), 4));
	return ($lp >> 17) & 0x7fff;
}

sub read_block1
{
	my ($file) = @_;
	open my $fh, '<:raw', $file or die "$file: $!";
	seek($fh, 8192, 0) or die;
	read($fh, my $page, 8192) == 8192 or die "short read of $file";
	close $fh;
	return $page;
}

# the entries' lengths show the format: tuple header 8, varlena header 1,
# then 21 bytes (a block key) or 44 (a GCM key of an int4), 8-aligned
is(item_length(read_block1($path{enc_pkey}), 3), 32, 'enc_pkey holds int keys as single blocks');
is(item_length(read_block1($path{enc_gcm_pkey}), 3), 56, 'enc_gcm_pkey holds int keys as AES-256-GCM');

sub patch_block1
{
	my ($file, $patch) = @_;
	open my $fh, '+<:raw', $file or die "$file: $!";
	seek($fh, 8192, 0) or die;
	read($fh, my $page, 8192) == 8192 or die "short read of $file";
	$patch->(\$page);
	seek($fh, 8192, 0) or die;
	print $fh $page;
	close $fh;
}

# an entry's heap TID (0,2) -> (0,5): its offset number is bytes 4-5 of the tuple
sub retarget_id2
{
	my ($page) = @_;
	my $off = item_offset($$page, 3);
	my $posid = unpack('v', substr($$page, $off + 4, 2));
	die "item 3 does not point at (0,2) but at offset $posid" unless $posid == 2;
	substr($$page, $off + 4, 2) = pack('v', 5);
}

$node->stop;
patch_block1($path{$_}, \&retarget_id2) for ('enc_pkey', 'plain_pkey', 'enc_gcm_pkey');
$node->start;

my $scan = 'SET enable_seqscan = off; SET enable_bitmapscan = off;';
is($node->safe_psql('postgres', "$scan SELECT name FROM plain WHERE id = 2"), 'name5',
	'control: the retargeted plain btree entry returns another row');

# the ciphertext of a key: after the tuple header (8), the varlena header
# (1) and, in a block key, format and key id (5); in a GCM key of an int4,
# also the type code, the TID and the nonce (24)
my %ciphertext_at = (enc => 8 + 1 + 5, enc_gcm => 8 + 1 + 24);

for my $t ('enc', 'enc_gcm')
{
	my ($ret, $out, $err) = $node->psql('postgres', "$scan SELECT name FROM $t WHERE id = 2");
	isnt($ret, 0, "$t: retargeted entry: the query fails");
	like($err, qr/invalid entry for heap TID \(0,5\): a key was encrypted for heap TID \(0,2\)/,
		"$t: retargeted entry: the error names the TID mismatch");
	is($out, '', "$t: retargeted entry: no row");

	# a byte of id 3's ciphertext
	$node->stop;
	patch_block1($path{"${t}_pkey"}, sub {
		my ($page) = @_;
		my $at = item_offset($$page, 4) + $ciphertext_at{$t} + 2;
		substr($$page, $at, 1) = chr(ord(substr($$page, $at, 1)) ^ 0x01);
	});
	$node->start;

	($ret, $out, $err) = $node->psql('postgres', "$scan SELECT id, name FROM $t WHERE id = 3");
	isnt($ret, 0, "$t: flipped ciphertext byte: the query fails");
	like($err, qr/could not decrypt an encrypted_btree index key: authentication with relation key \d+ failed/,
		"$t: flipped ciphertext byte: authentication fails");
	is($out, '', "$t: flipped ciphertext byte: no row");

	($ret, $out, $err) = $node->psql('postgres', "$scan SELECT count(*) FROM $t WHERE id < 100");
	isnt($ret, 0, "$t: a range over the tampered entries fails");
	($ret, $out, $err) = $node->psql('postgres', "SELECT bsoncrypt.encrypted_index_check('${t}_pkey')");
	isnt($ret, 0, "$t: encrypted_index_check reports the tampered index");
	like($err, qr/index "${t}_pkey"|could not decrypt/, "$t: encrypted_index_check names the problem");

	# entries away from the tampered ones still answer; REINDEX repairs
	is($node->safe_psql('postgres', "$scan SELECT name FROM $t WHERE id = 1500"), 'name1500',
		"$t: other keys still found");
	$node->safe_psql('postgres', "REINDEX INDEX ${t}_pkey");
	is($node->safe_psql('postgres', "$scan SELECT string_agg(name, ',' ORDER BY id) FROM $t WHERE id BETWEEN 1 AND 3"),
		'name1,name2,name3', "$t: after REINDEX the index answers correctly");
	is($node->safe_psql('postgres', "SELECT bsoncrypt.encrypted_index_check('${t}_pkey')"), '2000',
		"$t: after REINDEX the index checks out");
}

$node->stop;
done_testing();
