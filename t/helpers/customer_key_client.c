/*
 * customer_key_client: a libpq client for the tests of customer keys
 * (t/051_customer_keys.pl, t/090_docs_examples.pl).  psql 15 cannot send
 * bind parameters; this sends keys as parameters of the extended query
 * protocol, as an application would.
 *
 *   customer_key_client CONNINFO [--stop-on-error] < commands
 *
 * One command per line:
 *   supply NAME FILE         SELECT bsoncrypt.supply_customer_key($1, $2),
 *                            $2 = FILE's bytes (binary format)
 *   supplytext NAME FILE     the same, $2 in text format ('\x<hex>')
 *   supplynamed NAME FILE    the same through a named prepared statement
 *   param FILE STATEMENT     STATEMENT with $1 = FILE's bytes (binary)
 *   sql STATEMENT            STATEMENT (simple query protocol)
 *   script FILE              FILE's statements (simple query protocol)
 * Prints each result row tab-separated, or "ERROR <sqlstate> <message>"
 * (then "HINT <hint>" if there is one).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#define SUPPLY "SELECT bsoncrypt.supply_customer_key($1, $2)"

static int	failed = 0;

static char *
read_file(const char *path, int *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf = malloc(1 << 20);
	size_t		n;

	if (f == NULL || buf == NULL)
	{
		fprintf(stderr, "cannot read %s\n", path);
		exit(2);
	}
	n = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	buf[n] = '\0';
	*len = (int) n;
	return buf;
}

static void
show(PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	if (st == PGRES_TUPLES_OK)
	{
		for (int r = 0; r < PQntuples(res); r++)
		{
			for (int c = 0; c < PQnfields(res); c++)
				printf("%s%s", c ? "\t" : "", PQgetisnull(res, r, c) ? "" : PQgetvalue(res, r, c));
			printf("\n");
		}
	}
	else if (st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY)
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);

		printf("ERROR %s %s\n", state ? state : "?????", msg ? msg : PQresultErrorMessage(res));
		if (hint)
			printf("HINT %s\n", hint);
		failed = 1;
	}
	PQclear(res);
	fflush(stdout);
}

static char *
to_hex_text(const char *bytes, int len)
{
	char	   *s = malloc(2 * len + 3);

	strcpy(s, "\\x");
	for (int i = 0; i < len; i++)
		sprintf(s + 2 + 2 * i, "%02x", (unsigned char) bytes[i]);
	return s;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	char		line[65536];
	int			stop_on_error = argc > 2 && strcmp(argv[2], "--stop-on-error") == 0;
	int			prepared = 0;

	if (argc < 2)
	{
		fprintf(stderr, "usage: %s CONNINFO [--stop-on-error] < commands\n", argv[0]);
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "%s", PQerrorMessage(conn));
		return 2;
	}
	while (fgets(line, sizeof(line), stdin) != NULL)
	{
		char	   *cmd = strtok(line, " \n");
		char	   *a = strtok(NULL, " \n");
		char	   *rest = strtok(NULL, "\n");

		if (cmd == NULL)
			continue;
		if (strncmp(cmd, "supply", 6) == 0 && a != NULL && rest != NULL)
		{
			int			len;
			char	   *key = read_file(rest, &len);
			const char *values[2] = {a, key};
			int			lengths[2] = {0, len};
			int			formats[2] = {0, 1};

			if (strcmp(cmd, "supplytext") == 0)
			{
				values[1] = to_hex_text(key, len);
				formats[1] = 0;
			}
			if (strcmp(cmd, "supplynamed") == 0)
			{
				if (!prepared)
					show(PQprepare(conn, "supply_stmt", SUPPLY, 2, NULL));
				prepared = 1;
				show(PQexecPrepared(conn, "supply_stmt", 2, values, lengths, formats, 0));
			}
			else
				show(PQexecParams(conn, SUPPLY, 2, NULL, values, lengths, formats, 0));
		}
		else if (strcmp(cmd, "param") == 0 && a != NULL && rest != NULL)
		{
			int			len;
			char	   *value = read_file(a, &len);
			const char *values[1] = {value};
			int			lengths[1] = {len};
			int			formats[1] = {1};

			show(PQexecParams(conn, rest, 1, NULL, values, lengths, formats, 0));
		}
		else if (strcmp(cmd, "sql") == 0 && a != NULL)
		{
			char		stmt[65536];

			snprintf(stmt, sizeof(stmt), "%s%s%s", a, rest ? " " : "", rest ? rest : "");
			show(PQexec(conn, stmt));
		}
		else if (strcmp(cmd, "script") == 0 && a != NULL)
		{
			int			len;
			char	   *text = read_file(a, &len);
			PGresult   *res;

			if (!PQsendQuery(conn, text))
			{
				fprintf(stderr, "%s", PQerrorMessage(conn));
				return 2;
			}
			while ((res = PQgetResult(conn)) != NULL)
				show(res);
		}
		else
		{
			fprintf(stderr, "bad command: %s\n", cmd);
			return 2;
		}
		if (failed && stop_on_error)
			return 1;
	}
	PQfinish(conn);
	return failed && stop_on_error ? 1 : 0;
}
