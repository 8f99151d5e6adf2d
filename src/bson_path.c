/*-------------------------------------------------------------------------
 *
 * bson_path.c
 *	  Dotted-path access into BSON documents: bson_get (operator ->),
 *	  bson_get_text (operator ->>), bson_object_keys, and the lookup helpers
 *	  the field encryption code shares.
 *
 *	  A path is a dot-separated list of field names; a component that names
 *	  an array element is its decimal index ("a.b.0.c"), which is also how
 *	  BSON stores array keys, so the same lookup serves both.  An empty
 *	  component names the empty key, so ".a" reaches into {"": {"a": 1}}.
 *
 *-------------------------------------------------------------------------
 */
#include "bsoncrypt.h"

#include "funcapi.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(bsoncrypt_bson_get);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_get_text);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_object_keys);

/*
 * Find the element at a dotted path, and the documents that enclose it:
 * m->doc_offsets holds the byte offsets of their length prefixes, outermost
 * (the whole document, offset 0) first, so that a caller replacing the
 * element can fix them up.  Returns false when any component is missing or
 * a non-final component is not a document or array.
 */
bool
bson_find_path_with_parents(const bson_t *doc, const char *path,
							BsonPathMatch *m)
{
	bson_iter_t iter;
	const uint8_t *base = bson_get_data(doc);
	const char *component = path;

	if (!bson_iter_init(&iter, doc))
		return false;
	m->ndocs = 0;
	m->doc_offsets[m->ndocs++] = 0;
	for (;;)
	{
		const char *dot = strchr(component, '.');
		size_t		len = dot ? (size_t) (dot - component) : strlen(component);

		if (!bson_iter_find_w_len(&iter, component, (int) len))
			return false;
		if (dot == NULL)
		{
			m->elem = iter;
			return true;
		}
		if ((!BSON_ITER_HOLDS_DOCUMENT(&iter) && !BSON_ITER_HOLDS_ARRAY(&iter)) ||
			m->ndocs > BSON_MAX_NESTING_DEPTH ||
			!bson_iter_recurse(&iter, &iter))
			return false;
		m->doc_offsets[m->ndocs++] = (uint32_t) (iter.raw - base);
		component = dot + 1;
	}
}

/* Find the element at a dotted path (see bson_find_path_with_parents). */
bool
bson_find_path(const bson_t *doc, const char *path, bson_iter_t *found)
{
	BsonPathMatch m;

	if (!bson_find_path_with_parents(doc, path, &m))
		return false;
	*found = m.elem;
	return true;
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
 * A value as text: a string's contents, anything else as relaxed Extended
 * JSON (like jsonb's ->>); NULL for BSON null.
 */
text *
bson_value_as_text(const bson_iter_t *value)
{
	if (BSON_ITER_HOLDS_NULL(value))
		return NULL;
	if (BSON_ITER_HOLDS_UTF8(value))
	{
		uint32_t	slen;
		const char *s = bson_iter_utf8(value, &slen);

		if (memchr(s, '\0', slen) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
					 errmsg("string value contains a NUL character, which type text cannot hold"),
					 errhint("Use -> (or ~>) to get the value as bson.")));
		return cstring_to_text_with_len(s, slen);
	}

	return cstring_to_text(bson_value_to_json(value, BSON_OUTPUT_RELAXED));
}

/* bson_get_text(doc, path): bson_value_as_text of the value at path */
Datum
bsoncrypt_bson_get_text(PG_FUNCTION_ARGS)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bson_t		doc;
	bson_iter_t found;
	text	   *result;

	bson_init_from_data(&doc, data);
	if (!bson_find_path(&doc, path, &found))
		PG_RETURN_NULL();
	result = bson_value_as_text(&found);
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(result);
}

/* bson_object_keys(doc): the top-level field names, in document order */
Datum
bsoncrypt_bson_object_keys(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	BsonData   *data = PG_GETARG_BSON_P(0);
	bson_t		doc;
	bson_iter_t iter;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	bson_init_from_data(&doc, data);
	if (!bson_iter_init(&iter, &doc))
		elog(ERROR, "corrupt bson value");
	while (bson_iter_next(&iter))
	{
		Datum		key = CStringGetTextDatum(bson_iter_key(&iter));
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &key, &isnull);
	}
	return (Datum) 0;
}
