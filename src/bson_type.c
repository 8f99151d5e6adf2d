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

/*
 * Check that data[0..len) is exactly one well-formed BSON document (see
 * bson_validate.c); raises an ERROR naming what is wrong and where.
 * context says what was being read, e.g. "bytea to bson cast".
 */
void
bson_validate_bytes(const uint8_t *data, size_t len, const char *context)
{
	BsonValidationError err;

	if (bson_validate_document(data, len, &err))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("invalid BSON in %s: %s", context, err.message),
			 err.path[0] != '\0'
			 ? errdetail("At byte offset %zu, field \"%s\".", err.offset, err.path)
			 : errdetail("At byte offset %zu.", err.offset)));
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
