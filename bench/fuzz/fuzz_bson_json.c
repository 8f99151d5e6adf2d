/*-------------------------------------------------------------------------
 *
 * fuzz_bson_json.c
 *	  libFuzzer target for the Extended JSON input path of bsoncrypt.bson:
 *	  the same steps as bson_data_from_json() in src/bson_type.c.
 *
 *	  The input is made a C string (cut at its first NUL, as a PostgreSQL
 *	  cstring would be), must start with '{' after whitespace, and goes to
 *	  libbson's bson_init_from_json.  Whatever libbson builds must pass
 *	  bson_validate_document() (the parser must never produce BSON the
 *	  validator rejects), and bsoncrypt's text output of it (src/bson_ejson.c,
 *	  canonical and relaxed) and libbson's canonical JSON must read back to
 *	  the identical bytes ("$" keys included: the reader built it), libbson's
 *	  relaxed JSON must read back; apart from the limits listed in
 *	  checks.h.  Anything else aborts: a finding.
 *
 *-------------------------------------------------------------------------
 */
#include "checks.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *json;
	size_t		len;
	size_t		start;
	bson_t		doc;
	bson_error_t error;
	BsonValidationError verr;

	fuzz_set_input(data, size);
	json = malloc(size + 1);
	if (json == NULL)
		abort();
	memcpy(json, data, size);
	json[size] = '\0';
	len = strlen(json);

	/* bson_data_from_json: a document must be a JSON object */
	start = strspn(json, " \t\r\n");
	if (start < len && json[start] != '{')
	{
		free(json);
		return 0;
	}
	if (!bson_init_from_json(&doc, json, (ssize_t) len, &error))
	{
		free(json);
		return 0;
	}

	if (!bson_validate_document(bson_get_data(&doc), doc.len, &verr))
	{
		FuzzScan	scan = {0};

		/*
		 * libbson 1.23 names a $code or $dbPointer array element with stale
		 * bytes (CDRIVER-4678); the validator rightly refuses the document
		 * (the key is not the element's index, or not UTF-8), so bson_in
		 * raises an error instead of storing garbage.  Known, excluded.
		 */
		fuzz_scan(&doc, true, false, false, &scan);
		if (scan.array_code &&
			(strcmp(verr.message, "field name is not valid UTF-8") == 0 ||
			 strcmp(verr.message, "array element keys must be 0, 1, 2, ... in order") == 0))
		{
			fuzz_stats.array_code++;
			bson_destroy(&doc);
			free(json);
			return 0;
		}
		fuzz_fail("the JSON reader built BSON the validator rejects: %s "
				  "(offset %zu, field \"%s\")", verr.message, verr.offset, verr.path);
	}
	fuzz_walk(&doc, 1);
	fuzz_check_json_round_trip(&doc, true);

	bson_destroy(&doc);
	free(json);
	return 0;
}
