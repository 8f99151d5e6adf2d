/*-------------------------------------------------------------------------
 *
 * bson_type.c
 *	  The bsoncrypt.bson data type: validation of raw BSON bytes, text I/O
 *	  through MongoDB Extended JSON, binary send/receive, and the casts to
 *	  and from bytea.
 *
 *	  A bson datum is a plain varlena holding exactly one BSON document, the
 *	  same representation as DocumentDB's documentdb_core.bson.  Everything
 *	  that enters the type is validated here, so the rest of the extension
 *	  may iterate documents without re-checking their structure.
 *
 *-------------------------------------------------------------------------
 */
#include "bsoncrypt.h"

#include "libpq/pqformat.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(bsoncrypt_bson_in);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_out);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_recv);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_send);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_from_bytea);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_to_json_text);

#define BSONHEX_PREFIX "BSONHEX"

/* Where in the input a validation error was found, for the message. */
typedef struct BsonValidation
{
	const char *context;		/* what was being read, e.g. "bson input" */
	const uint8_t *base;		/* start of the whole document */
	StringInfoData path;		/* dotted path of the current element */
} BsonValidation;

static void validate_elements(BsonValidation *v, bson_iter_t *iter,
							  const uint8_t *doc_start, int depth);

/*
 * Human-readable name of a BSON element type, MongoDB's $type alias.
 */
const char *
bson_type_name(bson_type_t type)
{
	switch (type)
	{
		case BSON_TYPE_DOUBLE:
			return "double";
		case BSON_TYPE_UTF8:
			return "string";
		case BSON_TYPE_DOCUMENT:
			return "object";
		case BSON_TYPE_ARRAY:
			return "array";
		case BSON_TYPE_BINARY:
			return "binData";
		case BSON_TYPE_UNDEFINED:
			return "undefined";
		case BSON_TYPE_OID:
			return "objectId";
		case BSON_TYPE_BOOL:
			return "bool";
		case BSON_TYPE_DATE_TIME:
			return "date";
		case BSON_TYPE_NULL:
			return "null";
		case BSON_TYPE_REGEX:
			return "regex";
		case BSON_TYPE_DBPOINTER:
			return "dbPointer";
		case BSON_TYPE_CODE:
			return "javascript";
		case BSON_TYPE_SYMBOL:
			return "symbol";
		case BSON_TYPE_CODEWSCOPE:
			return "javascriptWithScope";
		case BSON_TYPE_INT32:
			return "int";
		case BSON_TYPE_TIMESTAMP:
			return "timestamp";
		case BSON_TYPE_INT64:
			return "long";
		case BSON_TYPE_DECIMAL128:
			return "decimal";
		case BSON_TYPE_MINKEY:
			return "minKey";
		case BSON_TYPE_MAXKEY:
			return "maxKey";
		default:
			return "unknown";
	}
}

/* Longest field path quoted in a message; longer ones keep their tail. */
#define MAX_PATH_IN_MESSAGE 120

static void
report_invalid_bson(BsonValidation *v, const char *problem, size_t offset)
{
	const char *path = v->path.data;

	if (v->path.len > MAX_PATH_IN_MESSAGE)
		path = psprintf("...%s", v->path.data + v->path.len - MAX_PATH_IN_MESSAGE);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid BSON in %s: %s", v->context, problem),
			 v->path.len > 0
			 ? errdetail("At byte offset %zu, field \"%s\".", offset, path)
			 : errdetail("At byte offset %zu.", offset)));
}

static void
check_utf8(BsonValidation *v, const char *str, size_t len, bool allow_nul,
		   const uint8_t *at, const char *what)
{
	if (!bson_utf8_validate(str, len, allow_nul))
	{
		char		problem[64];

		snprintf(problem, sizeof(problem), "%s is not valid UTF-8", what);
		report_invalid_bson(v, problem, at - v->base);
	}
}

/* Append one path component to v->path; returns the previous length. */
static int
path_push(BsonValidation *v, const char *key, size_t keylen)
{
	int			saved = v->path.len;

	if (saved > 0)
		appendStringInfoChar(&v->path, '.');
	appendBinaryStringInfo(&v->path, key, keylen);
	return saved;
}

static void
path_pop(BsonValidation *v, int saved)
{
	v->path.len = saved;
	v->path.data[saved] = '\0';
}

/* Validate an embedded document given as bytes (documents, arrays, scopes). */
static void
validate_embedded(BsonValidation *v, const uint8_t *data, uint32_t len,
				  int depth)
{
	bson_t		child;
	bson_iter_t iter;

	if (depth > BSON_MAX_NESTING_DEPTH)
		report_invalid_bson(v, psprintf("nesting deeper than %d levels",
										BSON_MAX_NESTING_DEPTH),
							data - v->base);
	if (!bson_init_static(&child, data, len) || !bson_iter_init(&iter, &child))
		report_invalid_bson(v, "embedded document has a bad length", data - v->base);
	validate_elements(v, &iter, data, depth);
}

static void
validate_element(BsonValidation *v, bson_iter_t *iter, int depth)
{
	const uint8_t *at = iter->raw + iter->off;
	uint32_t	len;
	const uint8_t *data;

	switch (bson_iter_type(iter))
	{
		case BSON_TYPE_UTF8:
			{
				const char *s = bson_iter_utf8(iter, &len);

				check_utf8(v, s, len, true, at, "string");
				break;
			}
		case BSON_TYPE_CODE:
			{
				const char *s = bson_iter_code(iter, &len);

				check_utf8(v, s, len, true, at, "code");
				break;
			}
		case BSON_TYPE_SYMBOL:
			{
				const char *s = bson_iter_symbol(iter, &len);

				check_utf8(v, s, len, true, at, "symbol");
				break;
			}
		case BSON_TYPE_REGEX:
			{
				const char *options;
				const char *pattern = bson_iter_regex(iter, &options);

				check_utf8(v, pattern, strlen(pattern), false, at, "regex pattern");
				check_utf8(v, options, strlen(options), false, at, "regex options");
				break;
			}
		case BSON_TYPE_DBPOINTER:
			{
				const char *collection;
				const bson_oid_t *oid;

				bson_iter_dbpointer(iter, &len, &collection, &oid);
				check_utf8(v, collection, len, false, at, "dbPointer namespace");
				break;
			}
		case BSON_TYPE_CODEWSCOPE:
			{
				uint32_t	scope_len;
				const uint8_t *scope;
				const char *code = bson_iter_codewscope(iter, &len, &scope_len, &scope);

				check_utf8(v, code, len, true, at, "code");
				validate_embedded(v, scope, scope_len, depth + 1);
				break;
			}
		case BSON_TYPE_DOCUMENT:
			bson_iter_document(iter, &len, &data);
			validate_embedded(v, data, len, depth + 1);
			break;
		case BSON_TYPE_ARRAY:
			bson_iter_array(iter, &len, &data);
			validate_embedded(v, data, len, depth + 1);
			break;
		default:
			/* fixed-size and binary values: bson_iter_next checked lengths */
			break;
	}
}

static void
validate_elements(BsonValidation *v, bson_iter_t *iter,
				  const uint8_t *doc_start, int depth)
{
	while (bson_iter_next(iter))
	{
		const char *key = bson_iter_key(iter);
		uint32_t	keylen = bson_iter_key_len(iter);
		int			saved;

		/* check the name before it goes into any message */
		check_utf8(v, key, keylen, false, (const uint8_t *) key, "field name");
		saved = path_push(v, key, keylen);
		validate_element(v, iter, depth);
		path_pop(v, saved);
	}
	if (iter->err_off != 0)
		report_invalid_bson(v, "corrupt or unsupported element",
							(doc_start - v->base) + iter->err_off);
}

/*
 * Check that data[0..len) is exactly one well-formed BSON document: length
 * prefix equal to len, terminated, every element's length in bounds, valid
 * UTF-8 in field names and strings, nesting within the limit.  Raises an
 * ERROR naming what is wrong and where; context says what was being read.
 */
void
bson_validate_bytes(const uint8_t *data, size_t len, const char *context)
{
	BsonValidation v;
	int32_t		declared;

	v.context = context;
	v.base = data;
	initStringInfo(&v.path);

	if (len < 5)
		report_invalid_bson(&v, psprintf("document is %zu bytes, shorter than the minimum of 5", len), 0);
	if (len > BSON_MAX_DOCUMENT_SIZE)
		report_invalid_bson(&v, psprintf("document is %zu bytes, over the limit of %d", len, BSON_MAX_DOCUMENT_SIZE), 0);
	memcpy(&declared, data, sizeof(declared));
	declared = BSON_UINT32_FROM_LE(declared);
	if (declared < 0 || (size_t) declared != len)
		report_invalid_bson(&v, psprintf("length prefix says %d bytes but %zu were given",
										 declared, len), 0);
	if (data[len - 1] != 0)
		report_invalid_bson(&v, "document is not terminated by a zero byte", len - 1);

	validate_embedded(&v, data, (uint32_t) len, 1);
	pfree(v.path.data);
}

/* Copy a libbson document into a new bson datum. */
BsonData *
bson_data_from_bson(const bson_t *b)
{
	BsonData   *result = (BsonData *) palloc(VARHDRSZ + b->len);

	SET_VARSIZE(result, VARHDRSZ + b->len);
	memcpy(VARDATA(result), bson_get_data(b), b->len);
	return result;
}

/* Point a read-only bson_t at a (detoasted) datum; validated on input. */
void
bson_init_from_data(bson_t *b, const BsonData *data)
{
	if (!bson_init_static(b, BsonDataPtr(data), BsonDataLen(data)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("bson value is corrupt: bad length")));
}

static BsonData *
bson_data_from_hex(const char *hex, size_t len)
{
	BsonData   *result;
	size_t		nbytes;

	if (len % 2 != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type bson: odd number of hex digits after BSONHEX")));
	nbytes = len / 2;
	result = (BsonData *) palloc(VARHDRSZ + nbytes);
	hex_decode(hex, len, VARDATA(result));
	SET_VARSIZE(result, VARHDRSZ + nbytes);
	bson_validate_bytes(BsonDataPtr(result), nbytes, "BSONHEX input");
	return result;
}

/*
 * Parse MongoDB Extended JSON (canonical or relaxed) into a bson datum.
 */
BsonData *
bson_data_from_json(const char *json, size_t len)
{
	bson_t		b;
	bson_error_t error;
	BsonData   *result;
	size_t		start = strspn(json, " \t\r\n");

	if (start < len && json[start] != '{')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type bson: a document must be a JSON object"),
				 errdetail("Input starts with \"%c\" at position %zu.", json[start], start)));
	if (!bson_init_from_json(&b, json, (ssize_t) len, &error))
	{
		if (strstr(error.message, "LEVELS_EXCEEDED") != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid input syntax for type bson: JSON nesting is too deep"),
					 errdetail("%s", error.message),
					 errhint("Extended JSON input is limited to %d levels of objects and arrays.",
							 BSON_MAX_JSON_NESTING_DEPTH)));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type bson: %s", error.message),
				 errhint("Input must be a MongoDB Extended JSON document, e.g. {\"a\": {\"$numberLong\": \"5\"}}, or BSONHEX followed by hex bytes.")));
	}
	result = (BsonData *) palloc(VARHDRSZ + b.len);
	SET_VARSIZE(result, VARHDRSZ + b.len);
	memcpy(VARDATA(result), bson_get_data(&b), b.len);
	bson_destroy(&b);
	bson_validate_bytes(BsonDataPtr(result), BsonDataLen(result), "bson input");
	return result;
}

/* Render a bson datum as Extended JSON text (palloc'd). */
char *
bson_data_to_json(const BsonData *data, BsonOutputMode mode)
{
	bson_t		b;
	char	   *json;
	char	   *result;
	size_t		len;

	bson_init_from_data(&b, data);
	if (mode == BSON_OUTPUT_CANONICAL)
		json = bson_as_canonical_extended_json(&b, &len);
	else
		json = bson_as_relaxed_extended_json(&b, &len);
	if (json == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("bson value cannot be rendered as Extended JSON")));
	result = pnstrdup(json, len);
	bson_free(json);
	return result;
}

Datum
bsoncrypt_bson_in(PG_FUNCTION_ARGS)
{
	const char *str = PG_GETARG_CSTRING(0);
	size_t		len = strlen(str);

	if (len >= strlen(BSONHEX_PREFIX) &&
		strncmp(str, BSONHEX_PREFIX, strlen(BSONHEX_PREFIX)) == 0)
		PG_RETURN_BSON_P(bson_data_from_hex(str + strlen(BSONHEX_PREFIX),
											len - strlen(BSONHEX_PREFIX)));
	PG_RETURN_BSON_P(bson_data_from_json(str, len));
}

Datum
bsoncrypt_bson_out(PG_FUNCTION_ARGS)
{
	BsonData   *data = PG_GETARG_BSON_P(0);

	PG_RETURN_CSTRING(bson_data_to_json(data, (BsonOutputMode) bsoncrypt_bson_output));
}

/* bson_to_json(doc, canonical bool): Extended JSON in the chosen mode */
Datum
bsoncrypt_bson_to_json_text(PG_FUNCTION_ARGS)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	bool		canonical = PG_GETARG_BOOL(1);

	PG_RETURN_TEXT_P(cstring_to_text(bson_data_to_json(data,
													   canonical ? BSON_OUTPUT_CANONICAL : BSON_OUTPUT_RELAXED)));
}

Datum
bsoncrypt_bson_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int			nbytes = buf->len - buf->cursor;
	BsonData   *result = (BsonData *) palloc(VARHDRSZ + nbytes);

	SET_VARSIZE(result, VARHDRSZ + nbytes);
	pq_copymsgbytes(buf, VARDATA(result), nbytes);
	bson_validate_bytes(BsonDataPtr(result), nbytes, "binary bson input");
	PG_RETURN_BSON_P(result);
}

Datum
bsoncrypt_bson_send(PG_FUNCTION_ARGS)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, (const char *) BsonDataPtr(data), BsonDataLen(data));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* bytea -> bson: the same bytes, validated */
Datum
bsoncrypt_bson_from_bytea(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	BsonData   *result;

	bson_validate_bytes((const uint8_t *) VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw),
						"bytea to bson cast");
	result = (BsonData *) palloc(VARSIZE_ANY_EXHDR(raw) + VARHDRSZ);
	SET_VARSIZE(result, VARSIZE_ANY_EXHDR(raw) + VARHDRSZ);
	memcpy(VARDATA(result), VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw));
	PG_RETURN_BSON_P(result);
}
