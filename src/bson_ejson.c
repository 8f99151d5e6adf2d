/*-------------------------------------------------------------------------
 *
 * bson_ejson.c
 *	  Text output of bson values as MongoDB Extended JSON, relaxed or
 *	  canonical.
 *
 *	  A database type's text form must read back to the same value: pg_dump
 *	  writes it and restores from it.  MongoDB's relaxed form is lossy for
 *	  int64 (a small int64 reads back as int32), and libbson 1.23 prints
 *	  dates after year 9999 in a form its own parser refuses.  So this file
 *	  writes relaxed Extended JSON that is relaxed wherever that is lossless
 *	  — plain numbers for int32 and double, ISO dates for years 1970-9999 —
 *	  and keeps {"$numberLong": "..."} for int64.  Doubles are written in
 *	  their shortest exact form.  Canonical output follows the spec.  The
 *	  layout matches libbson's ({ "a" : 1 }).
 *
 *-------------------------------------------------------------------------
 */
#include "bsoncrypt.h"

#include <math.h>
#include <time.h>

#include "common/base64.h"
#include "common/shortest_dec.h"
#include "miscadmin.h"

/* largest date written as ISO in relaxed mode: 9999-12-31T23:59:59.999Z */
#define RELAXED_DATE_MAX_MS INT64CONST(253402300799999)

static void append_document(StringInfo out, const bson_iter_t *iter,
							bool is_array, bool canonical);

static void
append_json_string(StringInfo out, const char *s, size_t len)
{
	appendStringInfoChar(out, '"');
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		switch (c)
		{
			case '"':
				appendStringInfoString(out, "\\\"");
				break;
			case '\\':
				appendStringInfoString(out, "\\\\");
				break;
			case '\n':
				appendStringInfoString(out, "\\n");
				break;
			case '\r':
				appendStringInfoString(out, "\\r");
				break;
			case '\t':
				appendStringInfoString(out, "\\t");
				break;
			case '\b':
				appendStringInfoString(out, "\\b");
				break;
			case '\f':
				appendStringInfoString(out, "\\f");
				break;
			default:
				if (c < 0x20 || c == 0x7f)
					appendStringInfo(out, "\\u%04x", c);
				else
					appendStringInfoChar(out, (char) c);
		}
	}
	appendStringInfoChar(out, '"');
}

static void
append_double(StringInfo out, double d, bool canonical)
{
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN + 2];

	if (isnan(d))
		strcpy(buf, "NaN");
	else if (isinf(d))
		strcpy(buf, d > 0 ? "Infinity" : "-Infinity");
	else
	{
		int			n = double_to_shortest_decimal_buf(d, buf);

		/* keep it a double when read back: 1 -> 1.0 */
		if (strpbrk(buf, ".eE") == NULL)
			strcpy(buf + n, ".0");
		if (!canonical)
		{
			appendStringInfoString(out, buf);
			return;
		}
	}
	appendStringInfo(out, "{ \"$numberDouble\" : \"%s\" }", buf);
}

static void
append_date(StringInfo out, int64 ms, bool canonical)
{
	time_t		secs;
	struct tm	tm;

	if (canonical || ms < 0 || ms > RELAXED_DATE_MAX_MS)
	{
		appendStringInfo(out, "{ \"$date\" : { \"$numberLong\" : \"" INT64_FORMAT "\" } }", ms);
		return;
	}
	secs = (time_t) (ms / 1000);
	gmtime_r(&secs, &tm);
	appendStringInfo(out, "{ \"$date\" : \"%04d-%02d-%02dT%02d:%02d:%02d",
					 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (ms % 1000 != 0)
		appendStringInfo(out, ".%03d", (int) (ms % 1000));
	appendStringInfoString(out, "Z\" }");
}

static void
append_binary(StringInfo out, const bson_iter_t *iter)
{
	bson_subtype_t subtype;
	uint32_t	len;
	const uint8_t *data;
	int			enclen;

	bson_iter_binary(iter, &subtype, &len, &data);
	enclen = pg_b64_enc_len((int) len);
	appendStringInfoString(out, "{ \"$binary\" : { \"base64\" : \"");
	enlargeStringInfo(out, enclen + 1);
	enclen = pg_b64_encode((const char *) data, (int) len, out->data + out->len, enclen);
	if (enclen < 0)
		elog(ERROR, "could not encode binary value as base64");
	out->len += enclen;
	out->data[out->len] = '\0';
	appendStringInfo(out, "\", \"subType\" : \"%02x\" } }", (unsigned) subtype);
}

static void
append_oid(StringInfo out, const bson_oid_t *oid)
{
	char		hex[25];

	bson_oid_to_string(oid, hex);
	appendStringInfo(out, "{ \"$oid\" : \"%s\" }", hex);
}

static void
append_value(StringInfo out, const bson_iter_t *iter, bool canonical)
{
	uint32_t	len;

	switch (bson_iter_type(iter))
	{
		case BSON_TYPE_DOUBLE:
			append_double(out, bson_iter_double(iter), canonical);
			break;
		case BSON_TYPE_UTF8:
			{
				const char *s = bson_iter_utf8(iter, &len);

				append_json_string(out, s, len);
				break;
			}
		case BSON_TYPE_DOCUMENT:
		case BSON_TYPE_ARRAY:
			{
				bson_iter_t child;

				if (!bson_iter_recurse(iter, &child))
					elog(ERROR, "corrupt bson value");
				append_document(out, &child, BSON_ITER_HOLDS_ARRAY(iter), canonical);
				break;
			}
		case BSON_TYPE_BINARY:
			append_binary(out, iter);
			break;
		case BSON_TYPE_UNDEFINED:
			appendStringInfoString(out, "{ \"$undefined\" : true }");
			break;
		case BSON_TYPE_OID:
			append_oid(out, bson_iter_oid(iter));
			break;
		case BSON_TYPE_BOOL:
			appendStringInfoString(out, bson_iter_bool(iter) ? "true" : "false");
			break;
		case BSON_TYPE_DATE_TIME:
			append_date(out, bson_iter_date_time(iter), canonical);
			break;
		case BSON_TYPE_NULL:
			appendStringInfoString(out, "null");
			break;
		case BSON_TYPE_REGEX:
			{
				const char *options;
				const char *pattern = bson_iter_regex(iter, &options);

				appendStringInfoString(out, "{ \"$regularExpression\" : { \"pattern\" : ");
				append_json_string(out, pattern, strlen(pattern));
				appendStringInfoString(out, ", \"options\" : ");
				append_json_string(out, options, strlen(options));
				appendStringInfoString(out, " } }");
				break;
			}
		case BSON_TYPE_DBPOINTER:
			{
				const char *collection;
				const bson_oid_t *oid;

				bson_iter_dbpointer(iter, &len, &collection, &oid);
				appendStringInfoString(out, "{ \"$dbPointer\" : { \"$ref\" : ");
				append_json_string(out, collection, len);
				appendStringInfoString(out, ", \"$id\" : ");
				append_oid(out, oid);
				appendStringInfoString(out, " } }");
				break;
			}
		case BSON_TYPE_CODE:
			{
				const char *code = bson_iter_code(iter, &len);

				appendStringInfoString(out, "{ \"$code\" : ");
				append_json_string(out, code, len);
				appendStringInfoString(out, " }");
				break;
			}
		case BSON_TYPE_SYMBOL:
			{
				const char *symbol = bson_iter_symbol(iter, &len);

				appendStringInfoString(out, "{ \"$symbol\" : ");
				append_json_string(out, symbol, len);
				appendStringInfoString(out, " }");
				break;
			}
		case BSON_TYPE_CODEWSCOPE:
			{
				uint32_t	scope_len;
				const uint8_t *scope_data;
				const char *code = bson_iter_codewscope(iter, &len, &scope_len, &scope_data);
				bson_t		scope;
				bson_iter_t scope_iter;

				appendStringInfoString(out, "{ \"$code\" : ");
				append_json_string(out, code, len);
				appendStringInfoString(out, ", \"$scope\" : ");
				if (!bson_init_static(&scope, scope_data, scope_len) ||
					!bson_iter_init(&scope_iter, &scope))
					elog(ERROR, "corrupt bson value");
				append_document(out, &scope_iter, false, canonical);
				appendStringInfoString(out, " }");
				break;
			}
		case BSON_TYPE_INT32:
			if (canonical)
				appendStringInfo(out, "{ \"$numberInt\" : \"%d\" }", bson_iter_int32(iter));
			else
				appendStringInfo(out, "%d", bson_iter_int32(iter));
			break;
		case BSON_TYPE_TIMESTAMP:
			{
				uint32_t	t;
				uint32_t	i;

				bson_iter_timestamp(iter, &t, &i);
				appendStringInfo(out, "{ \"$timestamp\" : { \"t\" : %u, \"i\" : %u } }", t, i);
				break;
			}
		case BSON_TYPE_INT64:
			/* also in relaxed mode: a plain number would read back as int32 */
			appendStringInfo(out, "{ \"$numberLong\" : \"" INT64_FORMAT "\" }",
							 (int64) bson_iter_int64(iter));
			break;
		case BSON_TYPE_DECIMAL128:
			{
				bson_decimal128_t dec;
				char		str[BSON_DECIMAL128_STRING];

				bson_iter_decimal128(iter, &dec);
				bson_decimal128_to_string(&dec, str);
				appendStringInfo(out, "{ \"$numberDecimal\" : \"%s\" }", str);
				break;
			}
		case BSON_TYPE_MINKEY:
			appendStringInfoString(out, "{ \"$minKey\" : 1 }");
			break;
		case BSON_TYPE_MAXKEY:
			appendStringInfoString(out, "{ \"$maxKey\" : 1 }");
			break;
		default:
			elog(ERROR, "unexpected BSON element type 0x%02x", (unsigned) bson_iter_type(iter));
	}
}

static void
append_document(StringInfo out, const bson_iter_t *start, bool is_array,
				bool canonical)
{
	bson_iter_t iter = *start;
	bool		first = true;

	check_stack_depth();
	appendStringInfoString(out, is_array ? "[ " : "{ ");
	while (bson_iter_next(&iter))
	{
		if (!first)
			appendStringInfoString(out, ", ");
		first = false;
		if (!is_array)
		{
			append_json_string(out, bson_iter_key(&iter), bson_iter_key_len(&iter));
			appendStringInfoString(out, " : ");
		}

		/*
		 * Under a $-key ({"$type": 5}, a query operator) a relaxed value could
		 * read back as an Extended JSON wrapper; keep such values canonical.
		 */
		append_value(out, &iter, canonical || (!is_array && bson_iter_key(&iter)[0] == '$'));
	}
	appendStringInfoString(out, is_array ? " ]" : " }");
}

/* Render a bson datum as Extended JSON text (palloc'd). */
char *
bson_data_to_json(const BsonData *data, BsonOutputMode mode)
{
	bson_t		b;
	bson_iter_t iter;
	StringInfoData out;

	bson_init_from_data(&b, data);
	if (!bson_iter_init(&iter, &b))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("bson value is corrupt: bad length")));
	initStringInfo(&out);
	append_document(&out, &iter, false, mode == BSON_OUTPUT_CANONICAL);
	return out.data;
}

/* The text of one value (as it appears inside a document). */
char *
bson_value_to_json(const bson_iter_t *value, BsonOutputMode mode)
{
	StringInfoData out;

	initStringInfo(&out);
	append_value(&out, value, mode == BSON_OUTPUT_CANONICAL);
	return out.data;
}
