/*-------------------------------------------------------------------------
 *
 * bson_path.c
 *	  Dotted-path access into BSON documents: bson_get (operator ->),
 *	  bson_get_text (operator ->>) and the lookup helpers the field
 *	  encryption code shares.
 *
 *	  A path is a dot-separated list of field names; a component that names
 *	  an array element is its decimal index ("a.b.0.c"), which is also how
 *	  BSON stores array keys, so the same lookup serves both.
 *
 *-------------------------------------------------------------------------
 */
#include "bsoncrypt.h"

#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(bsoncrypt_bson_get);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_get_text);

/*
 * Find the element at a dotted path.  Returns false when any component is
 * missing or a non-final component is not a document or array.
 */
bool
bson_find_path(const bson_t *doc, const char *path, bson_iter_t *found)
{
	bson_iter_t iter;
	const char *component = path;

	if (!bson_iter_init(&iter, doc))
		return false;
	for (;;)
	{
		const char *dot = strchr(component, '.');
		size_t		len = dot ? (size_t) (dot - component) : strlen(component);

		if (len == 0 || !bson_iter_find_w_len(&iter, component, (int) len))
			return false;
		if (dot == NULL)
		{
			*found = iter;
			return true;
		}
		if (!BSON_ITER_HOLDS_DOCUMENT(&iter) && !BSON_ITER_HOLDS_ARRAY(&iter))
			return false;
		if (!bson_iter_recurse(&iter, &iter))
			return false;
		component = dot + 1;
	}
}

/* {"": value} for the element an iterator points at (DocumentDB's form). */
BsonData *
bson_wrap_value(const bson_iter_t *value)
{
	bson_t		b;
	BsonData   *result;

	bson_init(&b);
	if (!bson_append_iter(&b, "", 0, value))
	{
		bson_destroy(&b);
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("bson value is too large")));
	}
	result = bson_data_from_bson(&b);
	bson_destroy(&b);
	return result;
}

/* bson_get(doc, path) -> {"": value}, NULL when the path is absent */
Datum
bsoncrypt_bson_get(PG_FUNCTION_ARGS)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bson_t		doc;
	bson_iter_t found;

	bson_init_from_data(&doc, data);
	if (!bson_find_path(&doc, path, &found))
		PG_RETURN_NULL();
	PG_RETURN_BSON_P(bson_wrap_value(&found));
}

/*
 * bson_get_text(doc, path): a string's contents; any other value as relaxed
 * Extended JSON (like jsonb's ->>); SQL NULL for BSON null or a missing path.
 */
Datum
bsoncrypt_bson_get_text(PG_FUNCTION_ARGS)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bson_t		doc;
	bson_iter_t found;
	char	   *json;
	size_t		len;
	static const char prefix[] = "{ \"\" : ";
	static const char suffix[] = " }";

	bson_init_from_data(&doc, data);
	if (!bson_find_path(&doc, path, &found) || BSON_ITER_HOLDS_NULL(&found))
		PG_RETURN_NULL();
	if (BSON_ITER_HOLDS_UTF8(&found))
	{
		uint32_t	slen;
		const char *s = bson_iter_utf8(&found, &slen);

		PG_RETURN_TEXT_P(cstring_to_text_with_len(s, slen));
	}

	/* render {"": value} and keep only the value's text */
	json = bson_data_to_json(bson_wrap_value(&found), BSON_OUTPUT_RELAXED);
	len = strlen(json);
	if (len < strlen(prefix) + strlen(suffix) ||
		strncmp(json, prefix, strlen(prefix)) != 0 ||
		strcmp(json + len - strlen(suffix), suffix) != 0)
		elog(ERROR, "unexpected Extended JSON layout from libbson: %s", json);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(json + strlen(prefix),
											  len - strlen(prefix) - strlen(suffix)));
}
