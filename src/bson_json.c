/*-------------------------------------------------------------------------
 *
 * bson_json.c
 *	  Casts between bsoncrypt.bson and jsonb.
 *
 *	  jsonb -> bson reads the JSON as MongoDB Extended JSON (so
 *	  {"$numberLong": "5"} becomes an int64; integers that fit become int32
 *	  or int64, other numbers double).  bson -> jsonb accepts only values
 *	  that JSON can hold (documents, arrays, strings, booleans, null and
 *	  finite numbers) and refuses the rest with an error naming the field,
 *	  rather than silently turning a date or an ObjectId into a string.
 *
 *-------------------------------------------------------------------------
 */
#include "bsoncrypt.h"

#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(bsoncrypt_bson_from_jsonb);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_to_jsonb);

static void append_json_document(StringInfo out, bson_iter_t *iter,
								 bool is_array, StringInfo path);

static void
refuse_json_value(StringInfo path, const char *type_name)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("cannot cast bson to jsonb: field \"%s\" holds a value of type %s, which JSON cannot represent",
					path->data, type_name),
			 errhint("Cast the document to text for Extended JSON, or extract JSON-compatible fields with ->.")));
}

static void
append_json_double(StringInfo out, double value, StringInfo path)
{
	if (isnan(value) || isinf(value))
		refuse_json_value(path, "non-finite double");
	appendStringInfoString(out, float8out_internal(value));
}

static void
append_json_decimal(StringInfo out, const bson_iter_t *iter, StringInfo path)
{
	bson_decimal128_t dec;
	char		str[BSON_DECIMAL128_STRING];

	bson_iter_decimal128(iter, &dec);
	bson_decimal128_to_string(&dec, str);
	if (strpbrk(str, "NI") != NULL)	/* NaN, Infinity */
		refuse_json_value(path, "non-finite decimal");
	appendStringInfoString(out, str);
}

static void
append_json_value(StringInfo out, bson_iter_t *iter, StringInfo path)
{
	switch (bson_iter_type(iter))
	{
		case BSON_TYPE_DOUBLE:
			append_json_double(out, bson_iter_double(iter), path);
			break;
		case BSON_TYPE_INT32:
			appendStringInfo(out, "%d", bson_iter_int32(iter));
			break;
		case BSON_TYPE_INT64:
			appendStringInfo(out, INT64_FORMAT, (int64) bson_iter_int64(iter));
			break;
		case BSON_TYPE_DECIMAL128:
			append_json_decimal(out, iter, path);
			break;
		case BSON_TYPE_BOOL:
			appendStringInfoString(out, bson_iter_bool(iter) ? "true" : "false");
			break;
		case BSON_TYPE_NULL:
			appendStringInfoString(out, "null");
			break;
		case BSON_TYPE_UTF8:
			{
				uint32_t	len;
				const char *s = bson_iter_utf8(iter, &len);

				if (memchr(s, '\0', len) != NULL)
					refuse_json_value(path, "string with a NUL character");
				escape_json(out, pnstrdup(s, len));
				break;
			}
		case BSON_TYPE_DOCUMENT:
		case BSON_TYPE_ARRAY:
			{
				bson_iter_t child;

				if (!bson_iter_recurse(iter, &child))
					elog(ERROR, "corrupt bson at \"%s\"", path->data);
				append_json_document(out, &child, BSON_ITER_HOLDS_ARRAY(iter), path);
				break;
			}
		default:
			refuse_json_value(path, bson_type_name(bson_iter_type(iter)));
	}
}

static void
append_json_document(StringInfo out, bson_iter_t *iter, bool is_array,
					 StringInfo path)
{
	bool		first = true;

	appendStringInfoChar(out, is_array ? '[' : '{');
	while (bson_iter_next(iter))
	{
		int			saved = path->len;

		if (path->len > 0)
			appendStringInfoChar(path, '.');
		appendStringInfoString(path, bson_iter_key(iter));
		if (!first)
			appendStringInfoString(out, ", ");
		first = false;
		if (!is_array)
		{
			escape_json(out, bson_iter_key(iter));
			appendStringInfoString(out, ": ");
		}
		append_json_value(out, iter, path);
		path->len = saved;
		path->data[saved] = '\0';
	}
	appendStringInfoChar(out, is_array ? ']' : '}');
}

Datum
bsoncrypt_bson_to_jsonb(PG_FUNCTION_ARGS)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	bson_t		doc;
	bson_iter_t iter;
	StringInfoData out;
	StringInfoData path;

	bson_init_from_data(&doc, data);
	if (!bson_iter_init(&iter, &doc))
		elog(ERROR, "corrupt bson value");
	initStringInfo(&out);
	initStringInfo(&path);
	append_json_document(&out, &iter, false, &path);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}

Datum
bsoncrypt_bson_from_jsonb(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb = PG_GETARG_JSONB_P(0);
	char	   *json;

	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot cast jsonb to bson: a BSON document must be a JSON object")));
	json = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	PG_RETURN_BSON_P(bson_data_from_json(json, strlen(json)));
}
