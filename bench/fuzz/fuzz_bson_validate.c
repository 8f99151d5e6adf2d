/*-------------------------------------------------------------------------
 *
 * fuzz_bson_validate.c
 *	  libFuzzer target for bson_validate_document() (src/bson_validate.c).
 *
 *	  Arbitrary bytes go to the validator.  Whatever it accepts must load
 *	  into libbson, iterate to the end (sub-documents, arrays and
 *	  code-with-scope scopes included), pass libbson's own bson_validate
 *	  with UTF-8 checks, and print as Extended JSON that reads back to the
 *	  identical bytes: bsoncrypt's own writer (src/bson_ejson.c, canonical
 *	  and relaxed, which must also be valid UTF-8) and libbson's canonical
 *	  printer; libbson's relaxed JSON must read back.  Apart from the limits
 *	  listed in checks.h, anything else aborts: a finding.
 *
 *	  Built with libFuzzer by `make -C bench/fuzz`, and without it (plain
 *	  gcc, replay_main.c) by `make -C bench/fuzz check`.
 *
 *-------------------------------------------------------------------------
 */
#include "checks.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	BsonValidationError verr;
	bson_error_t error;
	uint8_t    *copy;
	bson_t		doc;

	fuzz_set_input(data, size);
	if (!bson_validate_document(data, size, &verr))
	{
		/* a rejection must say something */
		if (verr.message[0] == '\0' || verr.offset > size)
			fuzz_fail("rejection without message or with offset %zu past the end",
					  verr.offset);
		return 0;
	}

	/* an exact-size heap copy, so that ASan sees any over-read */
	copy = malloc(size);
	if (copy == NULL)
		abort();
	memcpy(copy, data, size);

	if (!bson_init_static(&doc, copy, size))
		fuzz_fail("bson_init_static refuses a validated document");
	fuzz_walk(&doc, 1);
	if (!bson_validate_with_error(&doc, BSON_VALIDATE_UTF8 | BSON_VALIDATE_UTF8_ALLOW_NULL,
								  &error))
		fuzz_fail("libbson's bson_validate rejects a validated document: %s",
				  error.message);
	fuzz_check_json_round_trip(&doc, false);

	free(copy);
	return 0;
}
