/*-------------------------------------------------------------------------
 *
 * gen_seeds.c
 *	  Writes the committed seed corpora of bench/fuzz (`make seeds`):
 *	  seeds_validate/ (raw BSON) and seeds_json/ (Extended JSON text).
 *
 *	  corpus-*: the fields of the test/data/fle-corpus JSON files split into
 *	  small documents (each distinct "value", one whole field per kind), as
 *	  BSON bytes and as canonical and relaxed JSON.  File names carry a hash
 *	  of the content, so duplicates collapse.
 *	  edge-*: hand-made cases, valid and invalid, for each BSON type and
 *	  for the limits (nesting, lengths, UTF-8, special numbers).
 *	  Files named finding-* are inputs of past findings, added by hand.
 *
 *	  usage: gen_seeds CORPUS_DIR SEEDS_VALIDATE_DIR SEEDS_JSON_DIR
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bson/bson.h>

static const char *validate_dir;
static const char *json_dir;
static int	nwritten;

static void
write_file(const char *dir, const char *name, const void *data, size_t len)
{
	char		path[1024];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (access(path, F_OK) == 0)
		return;					/* same content, written already */
	f = fopen(path, "wb");
	if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
	{
		perror(path);
		exit(1);
	}
	nwritten++;
}

static uint64_t
fnv1a(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t	h = UINT64_C(0xcbf29ce484222325);
	size_t		i;

	for (i = 0; i < len; i++)
		h = (h ^ p[i]) * UINT64_C(0x100000001b3);
	return h;
}

/* a document as BSON and as canonical and relaxed JSON */
static void
emit_doc(const char *prefix, const bson_t *doc)
{
	char		name[256];
	uint64_t	h = fnv1a(bson_get_data(doc), doc->len);
	char	   *json;
	size_t		len;

	snprintf(name, sizeof(name), "%s-%016llx.bson", prefix, (unsigned long long) h);
	write_file(validate_dir, name, bson_get_data(doc), doc->len);

	json = bson_as_canonical_extended_json(doc, &len);
	snprintf(name, sizeof(name), "%s-%016llx-canonical.json", prefix, (unsigned long long) h);
	write_file(json_dir, name, json, len);
	bson_free(json);

	json = bson_as_relaxed_extended_json(doc, &len);
	snprintf(name, sizeof(name), "%s-%016llx-relaxed.json", prefix, (unsigned long long) h);
	write_file(json_dir, name, json, len);
	bson_free(json);
}

/* raw bytes given in hex, for the validator only (often invalid) */
static void
emit_hex(const char *name, const char *hex)
{
	size_t		n = strlen(hex) / 2;
	uint8_t    *buf = malloc(n + 1);
	size_t		i;
	char		file[256];

	for (i = 0; i < n; i++)
	{
		unsigned int byte;

		if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
		{
			fprintf(stderr, "bad hex in %s\n", name);
			exit(1);
		}
		buf[i] = (uint8_t) byte;
	}
	snprintf(file, sizeof(file), "edge-%s.bson", name);
	write_file(validate_dir, file, buf, n);
	free(buf);
}

static void
emit_json(const char *name, const char *text)
{
	char		file[256];

	snprintf(file, sizeof(file), "edge-%s.json", name);
	write_file(json_dir, file, text, strlen(text));
}

static bson_t *
load_json_file(const char *dir, const char *name)
{
	char		path[1024];
	FILE	   *f;
	long		size;
	char	   *text;
	bson_t	   *doc;
	bson_error_t error;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0)
	{
		perror(path);
		exit(1);
	}
	rewind(f);
	text = malloc(size + 1);
	if (fread(text, 1, size, f) != (size_t) size)
	{
		perror(path);
		exit(1);
	}
	fclose(f);
	text[size] = '\0';
	doc = bson_new_from_json((const uint8_t *) text, size, &error);
	if (doc == NULL)
	{
		fprintf(stderr, "%s: %s\n", path, error.message);
		exit(1);
	}
	free(text);
	return doc;
}

/*
 * Split one corpus file: {"value": v} for each field's value (if
 * each_value), and the whole field {name: {...}} for the first field of each
 * (type, algo, allowed).
 */
static void
split_corpus(const char *dir, const char *name, const char *prefix,
			 bool each_value)
{
	bson_t	   *corpus = load_json_file(dir, name);
	bson_iter_t iter;
	char		seen[64][64];
	int			nseen = 0;

	bson_iter_init(&iter, corpus);
	while (bson_iter_next(&iter))
	{
		bson_iter_t field;
		bson_t		doc = BSON_INITIALIZER;
		char		kind[64] = "";
		int			i;

		if (!BSON_ITER_HOLDS_DOCUMENT(&iter))
		{
			bson_append_iter(&doc, bson_iter_key(&iter), -1, &iter);
			emit_doc(prefix, &doc);
			bson_destroy(&doc);
			continue;
		}
		if (each_value &&
			bson_iter_recurse(&iter, &field) && bson_iter_find(&field, "value"))
		{
			bson_append_iter(&doc, "value", -1, &field);
			emit_doc(prefix, &doc);
			bson_reinit(&doc);
		}

		/* kind = type/algo/allowed */
		if (bson_iter_recurse(&iter, &field))
			while (bson_iter_next(&field))
			{
				const char *k = bson_iter_key(&field);

				if (strcmp(k, "type") == 0 || strcmp(k, "algo") == 0)
					strncat(kind, bson_iter_utf8(&field, NULL),
							sizeof(kind) - strlen(kind) - 2);
				else if (strcmp(k, "allowed") == 0)
					strncat(kind, bson_iter_bool(&field) ? "1" : "0",
							sizeof(kind) - strlen(kind) - 2);
			}
		for (i = 0; i < nseen; i++)
			if (strcmp(seen[i], kind) == 0)
				break;
		if (i == nseen && nseen < 64)
		{
			strcpy(seen[nseen++], kind);
			bson_append_iter(&doc, bson_iter_key(&iter), -1, &iter);
			emit_doc(prefix, &doc);
		}
		bson_destroy(&doc);
	}
	/* small corpus files are seeds as a whole, too */
	if (corpus->len < 4096)
		emit_doc(prefix, corpus);
	bson_destroy(corpus);
}

/* {"a": {"a": ... {"a": 1} ...}} with depth levels, top level included */
static bson_t *
nested(int depth)
{
	bson_t	   *doc = bson_new();

	if (depth <= 1)
		BSON_APPEND_INT32(doc, "a", 1);
	else
	{
		bson_t	   *child = nested(depth - 1);

		BSON_APPEND_DOCUMENT(doc, "a", child);
		bson_destroy(child);
	}
	return doc;
}

static void
append_decimal(bson_t *doc, const char *key, const char *str)
{
	bson_decimal128_t dec;

	if (!bson_decimal128_from_string(str, &dec))
		abort();
	BSON_APPEND_DECIMAL128(doc, key, &dec);
}

static void
edge_documents(void)
{
	bson_t		doc = BSON_INITIALIZER;
	bson_t		child;
	bson_t		scope = BSON_INITIALIZER;
	bson_oid_t	oid;
	bson_t	   *deep;
	static const uint8_t bytes[] = {0, 1, 2, 0xfe, 0xff};
	static const char nul_string[] = "a\0b";

	/* empty */
	emit_doc("edge-empty", &doc);

	/* every type once */
	bson_oid_init_from_string(&oid, "5f1e2d3c4b5a697887766554");
	BSON_APPEND_DOUBLE(&doc, "double", 1.5);
	BSON_APPEND_UTF8(&doc, "string", "héllo \"wörld\" \\ \t €𝄞");
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "doc", &child);
	BSON_APPEND_INT32(&child, "x", 1);
	bson_append_document_end(&doc, &child);
	BSON_APPEND_ARRAY_BEGIN(&doc, "array", &child);
	BSON_APPEND_INT32(&child, "0", 1);
	BSON_APPEND_UTF8(&child, "1", "two");
	bson_append_array_end(&doc, &child);
	BSON_APPEND_BINARY(&doc, "bin0", BSON_SUBTYPE_BINARY, bytes, sizeof(bytes));
	BSON_APPEND_BINARY(&doc, "bin2", BSON_SUBTYPE_BINARY_DEPRECATED, bytes, sizeof(bytes));
	BSON_APPEND_BINARY(&doc, "bin4", BSON_SUBTYPE_UUID, (const uint8_t *) "0123456789abcdef", 16);
	BSON_APPEND_BINARY(&doc, "bin6", BSON_SUBTYPE_ENCRYPTED, bytes, sizeof(bytes));
	BSON_APPEND_BINARY(&doc, "bin80", BSON_SUBTYPE_USER, bytes, 0);
	BSON_APPEND_UNDEFINED(&doc, "undefined");
	BSON_APPEND_OID(&doc, "oid", &oid);
	BSON_APPEND_BOOL(&doc, "bool", true);
	BSON_APPEND_DATE_TIME(&doc, "date", INT64_C(1577836800000));
	BSON_APPEND_DATE_TIME(&doc, "date_old", INT64_C(-62135596800001));
	BSON_APPEND_NULL(&doc, "null");
	BSON_APPEND_REGEX(&doc, "regex", "^a.*\\d$", "ix");
	BSON_APPEND_DBPOINTER(&doc, "dbpointer", "db.coll", &oid);
	BSON_APPEND_CODE(&doc, "code", "function() { return 1; }");
	BSON_APPEND_SYMBOL(&doc, "symbol", "sym");
	BSON_APPEND_INT32(&scope, "x", 1);
	BSON_APPEND_CODE_WITH_SCOPE(&doc, "codewscope", "return x;", &scope);
	BSON_APPEND_INT32(&doc, "int32", -2147483647 - 1);
	BSON_APPEND_TIMESTAMP(&doc, "timestamp", 4294967295u, 1);
	BSON_APPEND_INT64(&doc, "int64", INT64_MAX);
	append_decimal(&doc, "decimal", "1.234567890123456789012345678901234E-6143");
	BSON_APPEND_MINKEY(&doc, "minkey");
	BSON_APPEND_MAXKEY(&doc, "maxkey");
	emit_doc("edge-all-types", &doc);
	bson_reinit(&doc);

	/* special numbers */
	BSON_APPEND_DOUBLE(&doc, "negzero", -0.0);
	BSON_APPEND_DOUBLE(&doc, "nan", NAN);
	BSON_APPEND_DOUBLE(&doc, "inf", INFINITY);
	BSON_APPEND_DOUBLE(&doc, "neginf", -INFINITY);
	BSON_APPEND_DOUBLE(&doc, "denormal", 4.9406564584124654e-324);
	BSON_APPEND_DOUBLE(&doc, "max", 1.7976931348623157e308);
	BSON_APPEND_DOUBLE(&doc, "third", 1.0 / 3.0);
	append_decimal(&doc, "dnan", "NaN");
	append_decimal(&doc, "dinf", "-Infinity");
	append_decimal(&doc, "dnegzero", "-0E+3");
	append_decimal(&doc, "dmax", "9.999999999999999999999999999999999E+6144");
	append_decimal(&doc, "dtrailing", "1.000");
	BSON_APPEND_INT64(&doc, "small64", 5);
	BSON_APPEND_INT64(&doc, "min64", INT64_MIN);
	emit_doc("edge-numbers", &doc);
	bson_reinit(&doc);

	/* strings and keys */
	bson_append_utf8(&doc, "nul", -1, nul_string, 3);
	BSON_APPEND_UTF8(&doc, "", "empty key");
	BSON_APPEND_UTF8(&doc, "a.b", "dotted key");
	BSON_APPEND_UTF8(&doc, "$foo", "dollar key");
	BSON_APPEND_UTF8(&doc, "ключ", "\x01\x1f\x7f control");
	BSON_APPEND_INT32(&doc, "dup", 1);
	BSON_APPEND_INT32(&doc, "dup", 2);
	BSON_APPEND_REGEX(&doc, "regex_unsorted", "a", "xsmi");
	emit_doc("edge-strings", &doc);
	bson_reinit(&doc);

	/* a sub-document that looks like a type wrapper */
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "w", &child);
	BSON_APPEND_UTF8(&child, "$numberLong", "5");
	bson_append_document_end(&doc, &child);
	emit_doc("edge-wrapper-key", &doc);
	bson_reinit(&doc);

	/* what Extended JSON or libbson 1.23 cannot carry (checks.h) */
	BSON_APPEND_DATE_TIME(&doc, "year10000", INT64_C(253402300800000));
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "type_operator", &child);
	BSON_APPEND_INT64(&child, "$type", 5);
	bson_append_document_end(&doc, &child);
	emit_doc("edge-json-limits", &doc);
	bson_reinit(&doc);
	emit_hex("array-keys", "1d000000046100" "15000000" "103500" "01000000" "02780002000000" "7900" "00" "00");
	emit_hex("code-nul", "100000000d6300" "04000000" "61006200" "00");
	emit_hex("code-in-array", "16000000046100" "0e000000" "0d3000" "02000000" "7800" "00" "00");
	emit_hex("decimal-noncanonical", "18000000136400" "00000000648e8d37" "c087adbe09ed4130" "00");

	/* nesting: 98 (JSON limit), 100 (BSON limit); 101 is invalid */
	deep = nested(98);
	emit_doc("edge-depth98", deep);
	bson_destroy(deep);
	deep = nested(100);
	emit_doc("edge-depth100", deep);
	bson_destroy(deep);
	deep = nested(101);
	write_file(validate_dir, "edge-depth101.bson", bson_get_data(deep), deep->len);
	bson_destroy(deep);

	bson_destroy(&doc);
	bson_destroy(&scope);

	/* hand-made raw bytes, mostly invalid */
	emit_hex("min", "0500000000");
	emit_hex("short", "04000000");
	emit_hex("len-too-big", "0600000000");
	emit_hex("no-terminator", "0500000001");
	emit_hex("trailing-eod", "0a000000" "0061" "00000000");
	emit_hex("bool-2", "0900000008610002" "00");
	emit_hex("string-bad-utf8", "0e0000000261000200000080" "0000");
	emit_hex("key-bad-utf8", "0c00000010ff000100000000");
	emit_hex("string-len-zero", "0d000000026100000000000000");
	emit_hex("string-no-nul", "0e00000002610002000000616100");
	emit_hex("unknown-type", "0800000014610000");
	emit_hex("sub-len-wrong", "1000000003610006000000000000" "0000");
	emit_hex("bin2-inner-len", "150000000561000800000002" "05000000" "00000000" "00");
	emit_hex("cws-minimal", "170000000f6100" "0f000000" "02000000" "7800" "0500000000" "00");
	emit_hex("dbpointer", "1a0000000c6100" "02000000" "6300" "0102030405060708090a0b0c" "00");
	emit_hex("regex-no-options-nul", "0a0000000b61006100" "00");
}

static void
edge_json(void)
{
	char		deep[1024];
	char	   *p;
	int			i;

	emit_json("whitespace", " \t\r\n{ } ");
	emit_json("relaxed", "{\"i\": 1, \"l\": 3000000000, \"d\": 1.5, \"e\": 1e300, \"s\": \"x\", \"b\": true, \"n\": null, \"a\": [1, [2, {}]]}");
	emit_json("dates", "{\"a\": {\"$date\": \"2020-01-01T00:00:00Z\"}, \"b\": {\"$date\": \"2020-01-01T00:00:00.123+01:30\"}, \"c\": {\"$date\": {\"$numberLong\": \"-1\"}}, \"d\": {\"$date\": 1234}}");
	emit_json("legacy", "{\"a\": {\"$binary\": \"AQID\", \"$type\": \"80\"}, \"r\": {\"$regex\": \"^a\", \"$options\": \"mi\"}, \"u\": {\"$undefined\": true}, \"o\": {\"$oid\": \"000102030405060708090a0b\"}}");
	emit_json("uuid", "{\"u\": {\"$uuid\": \"00112233-4455-6677-8899-aabbccddeeff\"}}");
	emit_json("numbers", "{\"a\": {\"$numberDouble\": \"-0.0\"}, \"b\": {\"$numberDouble\": \"NaN\"}, \"c\": {\"$numberDouble\": \"-Infinity\"}, \"d\": {\"$numberDecimal\": \"1.10E-6176\"}, \"e\": {\"$numberLong\": \"-9223372036854775808\"}, \"f\": {\"$numberInt\": \"-2147483648\"}, \"g\": -0.0, \"h\": 12345678901234567890}");
	emit_json("escapes", "{\"k\\u00e9\\ud834\\udd1e\": \"\\u0000\\b\\f\\n\\r\\t\\/\\\\\\\"\", \"s\": {\"$symbol\": \"\\u0001\"}}");
	emit_json("code", "{\"c\": {\"$code\": \"f()\"}, \"s\": {\"$code\": \"g()\", \"$scope\": {\"x\": {\"$code\": \"h\"}, \"y\": [1]}}}");
	emit_json("dbpointer", "{\"p\": {\"$dbPointer\": {\"$ref\": \"db.c\", \"$id\": {\"$oid\": \"000102030405060708090a0b\"}}}}");
	emit_json("timestamp-keys", "{\"t\": {\"$timestamp\": {\"t\": 4294967295, \"i\": 0}}, \"mn\": {\"$minKey\": 1}, \"mx\": {\"$maxKey\": 1}}");
	emit_json("dollar-keys", "{\"$numberLong\": \"5\", \"a\": {\"$foo\": 1, \"$oid\": 2}, \"r\": {\"$ref\": \"c\", \"$id\": 1}}");
	emit_json("two-docs", "{\"a\": 1} {\"b\": 2}");
	emit_json("code-in-array", "{\"x\": [{\"$code\": \"w\"}, {\"$dbPointer\": {\"$ref\": \"c\", \"$id\": {\"$oid\": \"000102030405060708090a0b\"}}}]}");
	emit_json("type-operator", "{\"a\": {\"$type\": {\"$numberLong\": \"5\"}}, \"b\": {\"$type\": \"string\"}}");
	emit_json("year10000", "{\"d\": {\"$date\": {\"$numberLong\": \"253402300800000\"}}}");
	emit_json("lenient-numbers", "{\"d\": {\"$numberDecimal\": \"abc\"}, \"e\": {\"$numberDouble\": \"abc\"}}");
	emit_json("not-object", "[1, 2]");

	/* {"a": [[...]]}: 98 levels of nesting in all, the reader's limit */
	p = deep;
	p += sprintf(p, "{\"a\": ");
	for (i = 0; i < 97; i++)
		*p++ = '[';
	for (i = 0; i < 97; i++)
		*p++ = ']';
	*p++ = '}';
	*p = '\0';
	emit_json("depth98", deep);
}

int
main(int argc, char **argv)
{
	if (argc != 4)
	{
		fprintf(stderr, "usage: %s CORPUS_DIR SEEDS_VALIDATE_DIR SEEDS_JSON_DIR\n", argv[0]);
		return 2;
	}
	validate_dir = argv[2];
	json_dir = argv[3];

	split_corpus(argv[1], "corpus.json", "corpus", true);
	/* encrypted values are all different: one field per kind is enough */
	split_corpus(argv[1], "corpus-encrypted.json", "corpus-encrypted", false);
	split_corpus(argv[1], "corpus-key-local.json", "corpus-key", true);
	edge_documents();
	edge_json();
	printf("wrote %d seed files\n", nwritten);
	return 0;
}
