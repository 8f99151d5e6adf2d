# Every ```sql block in docs/*.md runs without error on a fresh database with
# the extension (a documented example that does not run is a bug).
# Blocks run in file order, each in its own psql session; per-page setup such
# as master-key files is done by the page's own examples or by the conf below.
# A block whose first line is "-- customer keys: NAME ..." runs in one
# transaction after those customer keys are supplied as bind parameters
# (psql cannot send them): through t/helpers/customer_key_client.c, with one
# random key per page and name.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use BsoncryptTest;

my $src = $ENV{BSONCRYPT_SRC} // '.';
# wal_level = logical and the bsoncrypt output plugin allowed: the logical
# decoding example of at-rest-encryption.md
my $node = bsoncrypt_node('docs', init => { allows_streaming => 'logical' });
$node->start;
allow_bsoncrypt_output_plugin($node);

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $client;

# Run a block with customer keys supplied; returns (status, errors).
sub run_with_customer_keys
{
	my ($db, $page, $sql, @names) = @_;
	$client //= customer_key_client($tmp);
	my $commands = "sql BEGIN\n";
	for my $name (@names)
	{
		my $file = "$tmp/$page.$name.key";
		if (!-e $file)
		{
			open my $in, '<:raw', '/dev/urandom' or die;
			read($in, my $key, 96) == 96 or die;
			open my $out, '>:raw', $file or die;
			print $out $key;
			close $out;
		}
		$commands .= "supply $name $file\n";
	}
	open my $fh, '>', "$tmp/block.sql" or die;
	print $fh $sql;
	close $fh;
	$commands .= "script $tmp/block.sql\nsql COMMIT\n";
	my ($out, $err) = ('', '');
	IPC::Run::run([ $client, $node->connstr($db), '--stop-on-error' ],
		'<', \$commands, '>', \$out, '2>', \$err);
	return ($? >> 8, join("\n", grep { /^(ERROR|HINT)/ } split /\n/, $out) . $err);
}

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
		my ($ret, $out, $err);
		if ($sql =~ /^-- customer keys: (.*)\n/)
		{
			($ret, $err) = run_with_customer_keys($db, $db, $sql, split ' ', $1);
		}
		else
		{
			($ret, $out, $err) =
			  $node->psql($db, $sql, on_error_stop => 1, extra_params => ['-X']);
		}
		is($ret, 0, "$name example $i runs") or diag("$sql\n$err");
	}
}
$node->stop;
done_testing();
