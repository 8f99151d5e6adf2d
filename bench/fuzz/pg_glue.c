/*-------------------------------------------------------------------------
 *
 * pg_glue.c
 *	  Runs bsoncrypt's own Extended JSON writer (src/bson_ejson.c, the text
 *	  output of bsoncrypt.bson) outside the server, for the bench/fuzz
 *	  harnesses: stand-ins for the few backend functions it calls
 *	  (ereport/elog, check_stack_depth, bson_init_from_data); StringInfo,
 *	  base64 and shortest-double printing come from libpgcommon.
 *
 *	  An ERROR raised by the writer on a validated document is a finding:
 *	  it is reported through fuzz_glue_error() (checks.h).
 *
 *-------------------------------------------------------------------------
 */
#include "bsoncrypt.h"

#include <stdarg.h>

#include "miscadmin.h"

#include "pg_glue.h"

static char glue_message[512];

void
check_stack_depth(void)
{
	/* nesting is bounded by the validator (100 levels) */
}

bool
errstart(int elevel, const char *domain)
{
	glue_message[0] = '\0';
	return elevel >= ERROR;
}

bool
errstart_cold(int elevel, const char *domain)
{
	return errstart(elevel, domain);
}

int
errcode(int sqlerrcode)
{
	return 0;
}

int
errmsg(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(glue_message, sizeof(glue_message), fmt, ap);
	va_end(ap);
	return 0;
}

int
errmsg_internal(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(glue_message, sizeof(glue_message), fmt, ap);
	va_end(ap);
	return 0;
}

void
errfinish(const char *filename, int lineno, const char *funcname)
{
	char		where[768];

	snprintf(where, sizeof(where), "%s (%s:%d)", glue_message, filename, lineno);
	fuzz_glue_error(where);
	abort();
}

void
bson_init_from_data(bson_t *b, const BsonData *data)
{
	if (!bson_init_static(b, BsonDataPtr(data), BsonDataLen(data)))
		elog(ERROR, "bson value is corrupt: bad length");
}

char *
fuzz_bsoncrypt_json(const uint8_t *data, size_t len, bool canonical)
{
	BsonData   *datum = (BsonData *) palloc(VARHDRSZ + len);
	char	   *json;
	char	   *copy;

	SET_VARSIZE(datum, VARHDRSZ + len);
	memcpy(VARDATA(datum), data, len);
	json = bson_data_to_json(datum, canonical ? BSON_OUTPUT_CANONICAL : BSON_OUTPUT_RELAXED);
	copy = strdup(json);
	pfree(json);
	pfree(datum);
	return copy;
}
