# Tampering with an encrypted_btree index file gives an error, never a wrong
# row: a flipped byte in a stored key's ciphertext fails authentication, and
# an entry's heap TID changed to point at another row no longer matches the
# TID its key was sealed for.  The same TID change in a plain btree index
# returns the other row (the control: the tampering works).  REINDEX
# repairs the index.
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
INSERT INTO enc SELECT g, 'name' || g FROM generate_series(1, 2000) g;
INSERT INTO plain SELECT g, 'name' || g FROM generate_series(1, 2000) g;
CHECKPOINT;
});
is($node->safe_psql('postgres', q{SELECT amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE relname = 'enc_pkey'}),
	'encrypted_btree', 'the encrypted table\'s primary key is encrypted_btree');
is($node->safe_psql('postgres', q{SELECT ctid FROM enc WHERE id = 2}), '(0,2)', 'row 2 is at (0,2)');
my %path = map { $_ => $node->data_dir . '/' . $node->safe_psql('postgres', "SELECT pg_relation_filepath('$_')") }
  ('enc_pkey', 'plain_pkey');

# block 1 is the leftmost leaf (item 1 its high key): item 2 is id 1, item 3
# id 2, item 4 id 3
sub item_offset
{
	my ($page, $item) = @_;
	my $lp = unpack('V', substr($page, 24 + 4 * ($item - 1), 4));
	return $lp & 0x7fff;
}

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
patch_block1($path{enc_pkey}, \&retarget_id2);
patch_block1($path{plain_pkey}, \&retarget_id2);
$node->start;

my $scan = 'SET enable_seqscan = off; SET enable_bitmapscan = off;';
is($node->safe_psql('postgres', "$scan SELECT name FROM plain WHERE id = 2"), 'name5',
	'control: the retargeted plain btree entry returns another row');

my ($ret, $out, $err) = $node->psql('postgres', "$scan SELECT name FROM enc WHERE id = 2");
isnt($ret, 0, 'retargeted encrypted entry: the query fails');
like($err, qr/invalid entry for heap TID \(0,5\): a key was encrypted for heap TID \(0,2\)/,
	'retargeted encrypted entry: the error names the TID mismatch');
is($out, '', 'retargeted encrypted entry: no row');

# a byte of id 3's ciphertext: tuple header 8, varlena header 1, then the
# 24 bytes before the ciphertext (format, key, type code, TID, nonce)
$node->stop;
patch_block1($path{enc_pkey}, sub {
	my ($page) = @_;
	my $at = item_offset($$page, 4) + 8 + 1 + 24;
	substr($$page, $at, 1) = chr(ord(substr($$page, $at, 1)) ^ 0x01);
});
$node->start;

($ret, $out, $err) = $node->psql('postgres', "$scan SELECT id, name FROM enc WHERE id = 3");
isnt($ret, 0, 'flipped ciphertext byte: the query fails');
like($err, qr/could not decrypt an encrypted_btree index key: authentication with relation key \d+ failed/,
	'flipped ciphertext byte: authentication fails');
is($out, '', 'flipped ciphertext byte: no row');

($ret, $out, $err) = $node->psql('postgres', "$scan SELECT count(*) FROM enc WHERE id < 100");
isnt($ret, 0, 'a range over the tampered entries fails');
($ret, $out, $err) = $node->psql('postgres', q{SELECT bsoncrypt.encrypted_index_check('enc_pkey')});
isnt($ret, 0, 'encrypted_index_check reports the tampered index');
like($err, qr/index "enc_pkey"|could not decrypt/, 'encrypted_index_check names the problem');

# entries away from the tampered ones still answer; REINDEX repairs
is($node->safe_psql('postgres', "$scan SELECT name FROM enc WHERE id = 1500"), 'name1500',
	'other keys still found');
$node->safe_psql('postgres', 'REINDEX INDEX enc_pkey');
is($node->safe_psql('postgres', "$scan SELECT string_agg(name, ',' ORDER BY id) FROM enc WHERE id BETWEEN 1 AND 3"),
	'name1,name2,name3', 'after REINDEX the index answers correctly');
is($node->safe_psql('postgres', q{SELECT bsoncrypt.encrypted_index_check('enc_pkey')}), '2000',
	'after REINDEX the index checks out');

$node->stop;
done_testing();
