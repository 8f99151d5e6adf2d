/*-------------------------------------------------------------------------
 *
 * checks.h
 *	  Checks shared by the bench/fuzz harnesses: reporting a finding, a full
 *	  walk of a document with libbson, and the Extended JSON round trips
 *	  (libbson's printer, and bsoncrypt's own writer src/bson_ejson.c run
 *	  through pg_glue.c) with the exact list of what JSON cannot carry.
 *
 *	  Included by fuzz_bson_validate.c and fuzz_bson_json.c only (static
 *	  functions, plus fuzz_glue_error once per program); no PostgreSQL
 *	  headers.  Findings in src/bson_validate.c are never excluded.
 *
 *	  What Extended JSON or libbson 1.23 cannot carry, and so is excluded
 *	  here and nowhere else (bench/fuzz findings, docs/bson-type.md):
 *	  - a double NaN reads back as libbson's one NaN (sign, payload lost);
 *	  - a decimal128 NaN or Infinity reads back as libbson's encoding of it;
 *		a non-canonical decimal128 (coefficient over 10^34 - 1) may print as
 *		a string libbson cannot read: then nothing is read back;
 *	  - array keys are not printed: arrays read back numbered 0, 1, ...;
 *	  - regex options read back sorted, without duplicates and without
 *		characters outside "ilmsux";
 *	  - a code or code-with-scope string is cut at its first NUL on reading;
 *	  - an embedded document whose first key is a type-wrapper key ("$oid",
 *		"$numberLong", ...) is read as that type or rejected, and code inside
 *		a code-with-scope scope reads back as a {"$code": ...} document
 *		(fuzz_scan): such documents from arbitrary bytes are printed and
 *		read, not compared; one the JSON reader built must read back exactly
 *		from canonical JSON, but relaxed JSON may not read back at all (e.g.
 *		{"$type": 5}, the $type query operator over a number);
 *	  - libbson's relaxed JSON writes dates from year 10000 on as ISO
 *		strings its reader refuses: not read back (a libbson 1.23 bug, fixed
 *		upstream later; bsoncrypt's writer avoids it);
 *	  - a code, code-with-scope or dbPointer value directly in an array reads
 *		back under a garbage key (stale bytes of libbson's key buffer instead
 *		of the index; libbson 1.23 bug CDRIVER-4678, fixed in 1.25): such
 *		documents are printed and read, not compared;
 *	  - JSON nested deeper than libbson's reader allows (98 levels of objects
 *		and arrays, type wrappers included) is not read back.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BENCH_FUZZ_CHECKS_H
#define BENCH_FUZZ_CHECKS_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bson/bson.h>

#include "bson_validate.h"
#include "pg_glue.h"

/* libbson's JSON parser rejects deeper nesting (jsonsl LEVELS_EXCEEDED) */
#define FUZZ_JSON_MAX_NESTING	98

/* a copy of the input is shown in hex up to this many bytes */
#define FUZZ_HEX_SHOWN			512

/* first date relaxed JSON prints with a five-digit year: 10000-01-01 */
#define FUZZ_FIRST_YEAR_10000_MS	INT64_C(253402300800000)

/* How often each exclusion applied (read in a debugger). */
typedef struct FuzzStats
{
	unsigned long too_deep;
	unsigned long ambiguous;
	unsigned long bad_decimal;
	unsigned long late_date;
	unsigned long array_code;
	unsigned long normalized;
} FuzzStats;

static FuzzStats fuzz_stats;

static const uint8_t *fuzz_input;
static size_t fuzz_input_len;

/* Remember the current input so that a finding can print it. */
static void
fuzz_set_input(const uint8_t *data, size_t len)
{
	fuzz_input = data;
	fuzz_input_len = len;
}

/*
 * Report a finding and abort: libFuzzer saves the input as a crash, the
 * replay driver counts the seed as failed.
 */
static void
fuzz_fail(const char *fmt,...)
	__attribute__((format(printf, 1, 2), noreturn));

static void
fuzz_fail(const char *fmt,...)
{
	va_list		ap;
	size_t		i;

	fprintf(stderr, "FINDING: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\ninput (%zu bytes): ", fuzz_input_len);
	for (i = 0; i < fuzz_input_len && i < FUZZ_HEX_SHOWN; i++)
		fprintf(stderr, "%02x", fuzz_input[i]);
	fprintf(stderr, "%s\n", fuzz_input_len > FUZZ_HEX_SHOWN ? "..." : "");
	abort();
}

/* pg_glue.c: bsoncrypt's writer raised an ERROR */
void
fuzz_glue_error(const char *message)
{
	fuzz_fail("bsoncrypt's Extended JSON writer raised ERROR: %s", message);
}

/*
 * Deepest nesting of objects and arrays in a JSON text, strings skipped.
 */
static int
fuzz_json_nesting(const char *json, size_t len)
{
	int			depth = 0;
	int			max = 0;
	bool		in_string = false;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		char		c = json[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > max)
				max = depth;
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return max;
}

/* the keys libbson 1.23's JSON reader takes as a type wrapper */
static bool
fuzz_is_wrapper_key(const char *key)
{
	static const char *const keys[] = {
		"$regularExpression", "$regex", "$options", "$code", "$scope",
		"$oid", "$binary", "$type", "$date", "$undefined", "$maxKey",
		"$minKey", "$timestamp", "$numberInt", "$numberLong",
		"$numberDouble", "$numberDecimal", "$dbPointer", "$symbol", "$uuid",
	};
	size_t		i;

	if (key[0] != '$')
		return false;
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (strcmp(key, keys[i]) == 0)
			return true;
	return false;
}

/* What in a document keeps its JSON from reading back as it is. */
typedef struct FuzzScan
{
	bool		ambiguous;		/* see fuzz_scan */
	bool		bad_decimal;	/* a decimal128 printed as unreadable text */
	bool		late_date;		/* a date in year 10000 or later */
	bool		array_code;		/* code or dbPointer as an array element */
} FuzzScan;

/*
 * Scan a document (top: the top level or a scope, which the reader never
 * takes as a type wrapper; is_array: an array; in_scope: inside a
 * code-with-scope scope).
 * ambiguous is set when canonical JSON would read back as something else
 * because of how libbson's reader treats "$" keys:
 * - an embedded document starts with a type-wrapper key, except "$code"
 *	 and "$scope" inside a scope, which the reader takes as plain keys;
 * - a scope holds a code or code-with-scope value: the reader cannot build
 *	 one there, it builds a {"$code": ...} document instead.
 */
static void
fuzz_scan(const bson_t *doc, bool top, bool is_array, bool in_scope,
		  FuzzScan *scan)
{
	bson_iter_t iter;
	bool		first = true;

	if (!bson_iter_init(&iter, doc))
		return;
	while (bson_iter_next(&iter))
	{
		const char *key = bson_iter_key(&iter);
		uint32_t	len;
		const uint8_t *data;
		bson_t		child;

		if (first && !top && fuzz_is_wrapper_key(key) &&
			!(in_scope && (strcmp(key, "$code") == 0 || strcmp(key, "$scope") == 0)))
			scan->ambiguous = true;
		first = false;
		switch (bson_iter_type(&iter))
		{
			case BSON_TYPE_DOCUMENT:
			case BSON_TYPE_ARRAY:
				if (BSON_ITER_HOLDS_DOCUMENT(&iter))
					bson_iter_document(&iter, &len, &data);
				else
					bson_iter_array(&iter, &len, &data);
				if (bson_init_static(&child, data, len))
					fuzz_scan(&child, false, BSON_ITER_HOLDS_ARRAY(&iter),
							  in_scope, scan);
				break;
			case BSON_TYPE_CODE:
				scan->ambiguous |= in_scope;
				scan->array_code |= is_array;
				break;
			case BSON_TYPE_DBPOINTER:
				scan->array_code |= is_array;
				break;
			case BSON_TYPE_CODEWSCOPE:
				{
					uint32_t	code_len;

					scan->ambiguous |= in_scope;
					scan->array_code |= is_array;
					bson_iter_codewscope(&iter, &code_len, &len, &data);
					if (bson_init_static(&child, data, len))
						fuzz_scan(&child, true, false, true, scan);
				}
				break;
			case BSON_TYPE_DECIMAL128:
				{
					bson_decimal128_t dec;
					bson_decimal128_t back;
					char		str[BSON_DECIMAL128_STRING];

					bson_iter_decimal128(&iter, &dec);
					bson_decimal128_to_string(&dec, str);
					if (!bson_decimal128_from_string(str, &back))
						scan->bad_decimal = true;
				}
				break;
			case BSON_TYPE_DATE_TIME:
				if (bson_iter_date_time(&iter) >= FUZZ_FIRST_YEAR_10000_MS)
					scan->late_date = true;
				break;
			default:
				break;
		}
	}
}

/* growable byte buffer for building normalized documents */
typedef struct FuzzBuf
{
	uint8_t    *data;
	size_t		len;
	size_t		cap;
} FuzzBuf;

static void
fuzz_buf_put(FuzzBuf *buf, const void *p, size_t n)
{
	if (buf->len + n > buf->cap)
	{
		buf->cap = (buf->len + n) * 2 + 64;
		buf->data = realloc(buf->data, buf->cap);
		if (buf->data == NULL)
			abort();
	}
	memcpy(buf->data + buf->len, p, n);
	buf->len += n;
}

static size_t
fuzz_buf_reserve_int32(FuzzBuf *buf)
{
	static const uint8_t zero[4] = {0};
	size_t		at = buf->len;

	fuzz_buf_put(buf, zero, 4);
	return at;
}

static void
fuzz_buf_patch_length(FuzzBuf *buf, size_t at)
{
	uint32_t	len = BSON_UINT32_TO_LE((uint32_t) (buf->len - at));

	memcpy(buf->data + at, &len, 4);
}

/* the 8 bytes libbson's reader produces for {"$numberDouble": "NaN"} */
static uint8_t fuzz_nan_bytes[8];
static bool fuzz_nan_known;

static void
fuzz_learn_nan(void)
{
	bson_t		b;
	bson_iter_t iter;
	bson_error_t error;

	if (fuzz_nan_known)
		return;
	if (!bson_init_from_json(&b, "{\"a\": {\"$numberDouble\": \"NaN\"}}", -1, &error) ||
		!bson_iter_init_find(&iter, &b, "a"))
		abort();
	memcpy(fuzz_nan_bytes, iter.raw + iter.d1, 8);
	bson_destroy(&b);
	fuzz_nan_known = true;
}

/* NaN, Infinity, or a coefficient over 10^34 - 1 (which reads as zero) */
static bool
fuzz_decimal_is_special(const bson_decimal128_t *dec)
{
	/* 10^34 - 1 = 0x0001ed09bead87c0_378d8e63ffffffff */
	const uint64_t max_high = UINT64_C(0x0001ed09bead87c0);
	const uint64_t max_low = UINT64_C(0x378d8e63ffffffff);
	uint64_t	high_coef;

	if (((dec->high >> 61) & 3) == 3)
		return true;			/* 11 combination: Inf, NaN or too big */
	high_coef = dec->high & UINT64_C(0x0001ffffffffffff);
	return high_coef > max_high || (high_coef == max_high && dec->low > max_low);
}

/*
 * Copy the document to buf, byte for byte, except for the values canonical
 * Extended JSON cannot carry exactly, which get the bytes libbson reads
 * back for what it prints.  Sets *changed when something was replaced.
 */
static void
fuzz_put_string_to_nul(FuzzBuf *buf, const char *s, uint32_t len, bool *changed)
{
	uint32_t	cut = (uint32_t) strlen(s);
	uint32_t	le;

	if (cut > len)
		cut = len;
	le = BSON_UINT32_TO_LE(cut + 1);
	fuzz_buf_put(buf, &le, 4);
	fuzz_buf_put(buf, s, cut);
	fuzz_buf_put(buf, "", 1);
	*changed |= cut != len;
}

static void
fuzz_normalize(const uint8_t *data, uint32_t len, bool is_array, FuzzBuf *buf,
			   bool *changed)
{
	bson_t		doc;
	bson_iter_t iter;
	size_t		start = fuzz_buf_reserve_int32(buf);
	uint32_t	index = 0;

	if (!bson_init_static(&doc, data, len) || !bson_iter_init(&iter, &doc))
		fuzz_fail("validated document does not load into libbson");
	while (bson_iter_next(&iter))
	{
		uint8_t		type = (uint8_t) bson_iter_type(&iter);
		const uint8_t *value = iter.raw + iter.d1;
		size_t		value_len = iter.next_off - iter.d1;

		fuzz_buf_put(buf, &type, 1);
		if (is_array)
		{
			char		key[16];

			snprintf(key, sizeof(key), "%u", index++);
			fuzz_buf_put(buf, key, strlen(key) + 1);
			*changed |= strcmp(key, bson_iter_key(&iter)) != 0;
		}
		else
			fuzz_buf_put(buf, bson_iter_key(&iter), bson_iter_key_len(&iter) + 1);
		switch (type)
		{
			case BSON_TYPE_DOCUMENT:
			case BSON_TYPE_ARRAY:
				{
					uint32_t	child_len;
					const uint8_t *child;

					if (type == BSON_TYPE_DOCUMENT)
						bson_iter_document(&iter, &child_len, &child);
					else
						bson_iter_array(&iter, &child_len, &child);
					fuzz_normalize(child, child_len, type == BSON_TYPE_ARRAY,
								   buf, changed);
				}
				break;
			case BSON_TYPE_CODEWSCOPE:
				{
					uint32_t	code_len,
								scope_len;
					const uint8_t *scope;
					size_t		cws = fuzz_buf_reserve_int32(buf);

					const char *code;

					code = bson_iter_codewscope(&iter, &code_len, &scope_len, &scope);
					fuzz_put_string_to_nul(buf, code, code_len, changed);
					fuzz_normalize(scope, scope_len, false, buf, changed);
					fuzz_buf_patch_length(buf, cws);
				}
				break;
			case BSON_TYPE_CODE:
				{
					uint32_t	code_len;
					const char *code = bson_iter_code(&iter, &code_len);

					fuzz_put_string_to_nul(buf, code, code_len, changed);
				}
				break;
			case BSON_TYPE_DOUBLE:
				if (isnan(bson_iter_double(&iter)) &&
					memcmp(value, fuzz_nan_bytes, 8) != 0)
				{
					fuzz_buf_put(buf, fuzz_nan_bytes, 8);
					*changed = true;
				}
				else
					fuzz_buf_put(buf, value, value_len);
				break;
			case BSON_TYPE_DECIMAL128:
				{
					bson_decimal128_t dec;
					bson_decimal128_t back;
					char		str[BSON_DECIMAL128_STRING];
					uint64_t	le[2];

					bson_iter_decimal128(&iter, &dec);
					if (!fuzz_decimal_is_special(&dec))
					{
						fuzz_buf_put(buf, value, value_len);
						break;
					}
					bson_decimal128_to_string(&dec, str);
					if (!bson_decimal128_from_string(str, &back))
						fuzz_fail("decimal128 prints as \"%s\", which does not parse", str);
					le[0] = BSON_UINT64_TO_LE(back.low);
					le[1] = BSON_UINT64_TO_LE(back.high);
					fuzz_buf_put(buf, le, 16);
					*changed |= memcmp(le, value, 16) != 0;
				}
				break;
			case BSON_TYPE_REGEX:
				{
					const char *options;
					const char *pattern = bson_iter_regex(&iter, &options);
					const char *c;
					char		sorted[8];
					size_t		n = 0;

					fuzz_buf_put(buf, pattern, strlen(pattern) + 1);
					for (c = "ilmsux"; *c; c++)
						if (strchr(options, *c) != NULL)
							sorted[n++] = *c;
					sorted[n++] = '\0';
					fuzz_buf_put(buf, sorted, n);
					*changed |= strcmp(sorted, options) != 0;
				}
				break;
			default:
				fuzz_buf_put(buf, value, value_len);
				break;
		}
	}
	if (iter.err_off != 0)
		fuzz_fail("libbson stops iterating a validated document at offset %u",
				  iter.err_off);
	fuzz_buf_put(buf, "", 1);
	fuzz_buf_patch_length(buf, start);
}

/*
 * Walk every element with libbson's accessors, recursing into documents,
 * arrays and code-with-scope scopes; a validated document must never stop
 * the iterator early.
 */
static void
fuzz_walk(const bson_t *doc, int depth)
{
	bson_iter_t iter;
	bson_iter_t child;

	if (depth > BSON_MAX_NESTING_DEPTH)
		fuzz_fail("validated document nests deeper than %d", BSON_MAX_NESTING_DEPTH);
	if (!bson_iter_init(&iter, doc))
		fuzz_fail("bson_iter_init refuses a validated document");
	while (bson_iter_next(&iter))
	{
		bson_value_t copy;

		/* every value can be copied out (touches each value's bytes) */
		bson_value_copy(bson_iter_value(&iter), &copy);
		bson_value_destroy(&copy);

		if (BSON_ITER_HOLDS_DOCUMENT(&iter) || BSON_ITER_HOLDS_ARRAY(&iter))
		{
			uint32_t	len;
			const uint8_t *data;
			bson_t		sub;

			if (!bson_iter_recurse(&iter, &child))
				fuzz_fail("bson_iter_recurse refuses a validated sub-document");
			if (BSON_ITER_HOLDS_DOCUMENT(&iter))
				bson_iter_document(&iter, &len, &data);
			else
				bson_iter_array(&iter, &len, &data);
			if (!bson_init_static(&sub, data, len))
				fuzz_fail("sub-document of a validated document does not load");
			fuzz_walk(&sub, depth + 1);
		}
		else if (BSON_ITER_HOLDS_CODEWSCOPE(&iter))
		{
			uint32_t	code_len,
						scope_len;
			const uint8_t *scope;
			const char *code;
			bson_t		sub;

			code = bson_iter_codewscope(&iter, &code_len, &scope_len, &scope);
			if (code[code_len] != '\0')
				fuzz_fail("code-with-scope code string is not NUL-terminated");
			if (!bson_init_static(&sub, scope, scope_len))
				fuzz_fail("code-with-scope scope of a validated document does not load");
			fuzz_walk(&sub, depth + 1);
		}
	}
	if (iter.err_off != 0)
		fuzz_fail("libbson stops iterating a validated document at offset %u",
				  iter.err_off);
}

/*
 * Read json back as bson_in does and require the bytes of doc, normalized
 * for what JSON cannot carry (fuzz_normalize); what: whose output it is.
 */
static void
fuzz_expect_read_back(const char *json, size_t json_len, const bson_t *doc,
					  const char *what)
{
	bson_t		back;
	bson_error_t error;
	BsonValidationError verr;
	FuzzBuf		expect = {0};
	bool		changed = false;

	if (!bson_init_from_json(&back, json, (ssize_t) json_len, &error))
		fuzz_fail("%s does not read back: %s\njson: %s", what, error.message, json);
	fuzz_normalize(bson_get_data(doc), doc->len, false, &expect, &changed);
	if (changed)
		fuzz_stats.normalized++;
	if (back.len != expect.len ||
		memcmp(bson_get_data(&back), expect.data, expect.len) != 0)
	{
		char	   *again = bson_as_canonical_extended_json(&back, NULL);
		size_t		at = 0;

		while (at < back.len && at < expect.len &&
			   bson_get_data(&back)[at] == expect.data[at])
			at++;
		fuzz_fail("%s reads back to different bytes (from byte %zu)\n"
				  "json:  %s\nagain: %s", what, at, json, again ? again : "(null)");
	}
	if (!bson_validate_document(bson_get_data(&back), back.len, &verr))
		fuzz_fail("%s reads back to BSON the validator rejects: %s", what, verr.message);
	free(expect.data);
	bson_destroy(&back);
}

/* read json back, for crashes only: the result may differ or fail */
static void
fuzz_read_only(const char *json, size_t json_len)
{
	bson_t		back;
	bson_error_t error;

	if (bson_init_from_json(&back, json, (ssize_t) json_len, &error))
		bson_destroy(&back);
}

/*
 * Print doc as Extended JSON and read it back, apart from the limits listed
 * at the top:
 * - bsoncrypt's own writer (what bson_out and bson_to_json return) must
 *	 produce valid UTF-8 that reads back to the same bytes, canonical and
 *	 relaxed alike (docs/bson-type.md promises both);
 * - libbson's canonical JSON must read back to the same bytes, its relaxed
 *	 JSON must read back.
 * from_json: doc was built by libbson's JSON reader, so it must read back
 * exactly even where fuzz_scan finds it ambiguous.
 */
static void
fuzz_check_json_round_trip(const bson_t *doc, bool from_json)
{
	char	   *json;
	size_t		json_len;
	bson_t		back;
	bson_error_t error;
	BsonValidationError verr;
	FuzzScan	scan = {0};
	bool		ambiguous;
	bool		skip;
	int			canonical;

	fuzz_learn_nan();
	fuzz_scan(doc, true, false, false, &scan);
	ambiguous = scan.ambiguous && !from_json;
	skip = ambiguous || scan.bad_decimal || scan.array_code;
	fuzz_stats.ambiguous += ambiguous;
	fuzz_stats.bad_decimal += scan.bad_decimal;
	fuzz_stats.array_code += scan.array_code;

	/* bsoncrypt's writer, both forms: valid UTF-8, identical bytes */
	for (canonical = 1; canonical >= 0; canonical--)
	{
		const char *what = canonical ? "bsoncrypt's canonical output" :
			"bsoncrypt's relaxed output";

		json = fuzz_bsoncrypt_json(bson_get_data(doc), doc->len, canonical);
		json_len = strlen(json);
		if (!bson_utf8_validate(json, json_len, false))
			fuzz_fail("%s is not valid UTF-8", what);
		if (fuzz_json_nesting(json, json_len) > FUZZ_JSON_MAX_NESTING)
			fuzz_stats.too_deep++;
		else if (skip)
			fuzz_read_only(json, json_len);
		else
			fuzz_expect_read_back(json, json_len, doc, what);
		free(json);
	}

	/* libbson canonical: identical bytes */
	json = bson_as_canonical_extended_json(doc, &json_len);
	if (json == NULL)
		fuzz_fail("bson_as_canonical_extended_json fails on a validated document");
	if (fuzz_json_nesting(json, json_len) > FUZZ_JSON_MAX_NESTING)
		fuzz_stats.too_deep++;
	else if (skip)
		fuzz_read_only(json, json_len);
	else
		fuzz_expect_read_back(json, json_len, doc, "libbson's canonical JSON");
	bson_free(json);

	/* libbson relaxed: must print and read back */
	json = bson_as_relaxed_extended_json(doc, &json_len);
	if (json == NULL)
		fuzz_fail("bson_as_relaxed_extended_json fails on a validated document");
	if (scan.late_date)
		fuzz_stats.late_date++;
	else if (fuzz_json_nesting(json, json_len) <= FUZZ_JSON_MAX_NESTING &&
			 !scan.ambiguous && !skip)
	{
		if (!bson_init_from_json(&back, json, (ssize_t) json_len, &error))
			fuzz_fail("libbson's relaxed JSON does not read back: %s\njson: %s",
					  error.message, json);
		if (!bson_validate_document(bson_get_data(&back), back.len, &verr))
			fuzz_fail("libbson's relaxed JSON reads back to invalid BSON: %s",
					  verr.message);
		bson_destroy(&back);
	}
	bson_free(json);
}

#endif							/* BENCH_FUZZ_CHECKS_H */
