# bsoncrypt.so must use its own statically linked libbson, even when another
# module (DocumentDB's pg_documentdb_core.so) has exported libbson's symbols
# globally: no bson_* symbol may be exported or left undefined, and a server
# preloading a fake libbson-exporting module must still run bsoncrypt right.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
my $so = "$pkglibdir/bsoncrypt.so";
ok(-f $so, "bsoncrypt.so is installed");

my @dynsyms = split /\n/, `nm -D $so`;
my @libbson = grep { /\s(?:_?bson_|bcon_|jsonsl_|_bson)\w*$/ } @dynsyms;
is(scalar(@libbson), 0, 'no libbson symbol exported or undefined in bsoncrypt.so')
  or diag(join("\n", @libbson[0 .. ($#libbson < 10 ? $#libbson : 10)]));
my @defined = grep { /\s[TDBR]\s/ } @dynsyms;
ok(scalar(grep { /\sbsoncrypt_bson_in$/ } @defined), 'SQL-callable functions are exported');
ok(scalar(grep { /\s_PG_output_plugin_init$/ } @defined), 'the output plugin entry is exported');
ok(!scalar(grep { /\s[TDBR]\s(?!bsoncrypt_|pg_finfo_bsoncrypt_|Pg_magic_func|_PG_init$|_PG_output_plugin_init$)\w+$/ } @defined),
	'nothing else is exported');

# Build the fake DocumentDB-style module and preload it before bsoncrypt.
my $incdir = `pg_config --includedir-server`;
chomp $incdir;
my $fake = PostgreSQL::Test::Utils::tempdir() . "/fake_libbson.so";
my $src = ($ENV{BSONCRYPT_SRC} // '.') . "/t/helpers/fake_libbson.c";
system("cc -shared -fPIC -O0 -I$incdir -o $fake $src") == 0
  or die "cannot build fake libbson module";

my $node = PostgreSQL::Test::Cluster->new('isolation');
$node->init(extra => [ '-E', 'UTF8', '--locale=C' ]);
$node->append_conf('postgresql.conf', "shared_preload_libraries = '$fake, bsoncrypt'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION bsoncrypt');
is( $node->safe_psql('postgres',
		q{SELECT '{"a": {"$numberLong": "5"}}'::bsoncrypt.bson::text}),
	'{ "a" : { "$numberLong" : "5" } }',
	'bson I/O works with a foreign libbson loaded globally');
is( $node->safe_psql('postgres',
		q{SELECT bsoncrypt.bson_get_text('{"a": {"b": "x"}}', 'a.b')}),
	'x', 'path access works with a foreign libbson loaded globally');
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT '\x0400'::bytea::bsoncrypt.bson});
like($err, qr/invalid BSON in bytea to bson cast/, 'validation still ours');
unlike($err, qr/fake libbson/, 'the fake library was never called');
$node->stop;
done_testing();
