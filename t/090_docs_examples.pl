# Every ```sql block in docs/*.md runs without error on a fresh database with
# the extension (a documented example that does not run is a bug).
# Blocks run in file order, each in its own psql session; per-page setup such
# as master-key files is done by the page's own examples or by the conf below.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use BsoncryptTest;

my $src = $ENV{BSONCRYPT_SRC} // '.';
# wal_level = logical and the bsoncrypt output plugin allowed: the logical
# decoding example of at-rest-encryption.md
my $node = bsoncrypt_node('docs', init => { allows_streaming => 'logical' });
$node->start;
allow_bsoncrypt_output_plugin($node);

for my $page (sort glob("$src/docs/*.md"))
{
	(my $name = $page) =~ s{.*/}{};
	open my $fh, '<', $page or die "$page: $!";
	local $/;
	my $text = <$fh>;
	close $fh;
	my $db = $name;
	$db =~ s/\W/_/g;
	my @blocks = $text =~ /^```sql\n(.*?)^```/msg;
	next unless @blocks;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION bsoncrypt');
	my $i = 0;
	for my $sql (@blocks)
	{
		$i++;
		my ($ret, $out, $err) =
		  $node->psql($db, $sql, on_error_stop => 1, extra_params => ['-X']);
		is($ret, 0, "$name example $i runs") or diag("$sql\n$err");
	}
}
$node->stop;
done_testing();
