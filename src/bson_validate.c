/*-------------------------------------------------------------------------
 *
 * bson_validate.c
 *	  Structural validation of raw BSON documents (see bson_validate.h).
 *	  Uses libbson's iterator for element bounds and adds what bsoncrypt
 *	  needs on top: exact length, a nesting limit checked before descending,
 *	  UTF-8 checks, and the offset and field path of the first problem.
 *	  No PostgreSQL headers: tested alone and fuzzed by bench/fuzz.
 *
 *-------------------------------------------------------------------------
 */
#include "bson_validate.h"

#include <stdio.h>
#include <string.h>

#include <bson/bson.h>

typedef struct Validator
{
	const uint8_t *base;		/* start of the whole document */
	BsonValidationError *err;
	char		path[4096];		/* current dotted path (bounded) */
	size_t		path_len;
	bool		path_overflow;
} Validator;

static bool validate_embedded(Validator *v, const uint8_t *data, uint32_t len,
							  int depth, bool is_array);

static bool
fail(Validator *v, size_t offset, const char *message)
{
	BsonValidationError *err = v->err;
	const char *path = v->path;
	size_t		len = v->path_len;

	err->offset = offset;
	snprintf(err->message, sizeof(err->message), "%s", message);
	if (len > BSON_VALIDATE_PATH_MAX)
		snprintf(err->path, sizeof(err->path), "...%s",
				 path + len - BSON_VALIDATE_PATH_MAX);
	else
		snprintf(err->path, sizeof(err->path), "%s", path);
	return false;
}

static size_t
path_push(Validator *v, const char *key, size_t keylen)
{
	size_t		saved = v->path_len;
	size_t		need = keylen + (saved > 0 ? 1 : 0);

	if (saved + need >= sizeof(v->path))
	{
		v->path_overflow = true;
		return saved;
	}
	if (saved > 0)
		v->path[v->path_len++] = '.';
	memcpy(v->path + v->path_len, key, keylen);
	v->path_len += keylen;
	v->path[v->path_len] = '\0';
	return saved;
}

static void
path_pop(Validator *v, size_t saved)
{
	v->path_len = saved;
	v->path[saved] = '\0';
}

/*
 * UTF-8 validity, with a fast path for the ASCII that most strings are:
 * eight bytes at a time while no byte has its high bit set (nor is zero,
 * unless NULs are allowed); libbson checks whatever remains.
 */
static bool
utf8_valid(const char *s, size_t len, bool allow_nul)
{
	const uint64_t high = UINT64_C(0x8080808080808080);
	const uint64_t ones = UINT64_C(0x0101010101010101);
	size_t		i = 0;

	for (; i + 8 <= len; i += 8)
	{
		uint64_t	w;

		memcpy(&w, s + i, sizeof(w));
		if ((w & high) != 0 || (!allow_nul && ((w - ones) & ~w & high) != 0))
			break;
	}
	if (i == len)
		return true;
	/* 0xC0 and 0xC1 never occur in UTF-8; libbson lets C0 80 (an overlong NUL) pass */
	if (memchr(s + i, 0xC0, len - i) != NULL || memchr(s + i, 0xC1, len - i) != NULL)
		return false;
	return bson_utf8_validate(s + i, len - i, allow_nul);
}

static bool
check_utf8(Validator *v, const char *s, size_t len, bool allow_nul,
		   const uint8_t *at, const char *what)
{
	char		message[96];

	if (utf8_valid(s, len, allow_nul))
		return true;
	snprintf(message, sizeof(message), "%s is not valid UTF-8", what);
	return fail(v, at - v->base, message);
}

static bool
validate_element(Validator *v, const bson_iter_t *iter, int depth)
{
	const uint8_t *at = iter->raw + iter->off;
	uint32_t	len;
	const uint8_t *data;

	switch (bson_iter_type(iter))
	{
		case BSON_TYPE_UTF8:
			{
				const char *s = bson_iter_utf8(iter, &len);

				return check_utf8(v, s, len, true, at, "string");
			}
		case BSON_TYPE_CODE:
			{
				const char *s = bson_iter_code(iter, &len);

				return check_utf8(v, s, len, true, at, "code");
			}
		case BSON_TYPE_SYMBOL:
			{
				const char *s = bson_iter_symbol(iter, &len);

				return check_utf8(v, s, len, true, at, "symbol");
			}
		case BSON_TYPE_REGEX:
			{
				const char *options;
				const char *pattern = bson_iter_regex(iter, &options);

				return check_utf8(v, pattern, strlen(pattern), false, at, "regex pattern") &&
					check_utf8(v, options, strlen(options), false, at, "regex options");
			}
		case BSON_TYPE_DBPOINTER:
			{
				const char *collection;
				const bson_oid_t *oid;

				bson_iter_dbpointer(iter, &len, &collection, &oid);
				return check_utf8(v, collection, len, false, at, "dbPointer namespace");
			}
		case BSON_TYPE_CODEWSCOPE:
			{
				uint32_t	scope_len;
				const uint8_t *scope;
				const char *code = bson_iter_codewscope(iter, &len, &scope_len, &scope);

				/* libbson's iterator does not check this terminator */
				if (code[len] != '\0')
					return fail(v, at - v->base, "code string is not terminated");
				return check_utf8(v, code, len, true, at, "code") &&
					validate_embedded(v, scope, scope_len, depth + 1, false);
			}
		case BSON_TYPE_DOCUMENT:
			bson_iter_document(iter, &len, &data);
			return validate_embedded(v, data, len, depth + 1, false);
		case BSON_TYPE_ARRAY:
			bson_iter_array(iter, &len, &data);
			return validate_embedded(v, data, len, depth + 1, true);
		default:
			/* fixed-size and binary values: bson_iter_next checked bounds */
			return true;
	}
}

static bool
validate_elements(Validator *v, bson_iter_t *iter, const uint8_t *doc_start,
				  int depth, bool is_array)
{
	unsigned long index = 0;

	while (bson_iter_next(iter))
	{
		const char *key = bson_iter_key(iter);
		uint32_t	keylen = bson_iter_key_len(iter);
		size_t		saved;
		bool		ok;

		/* array keys are "0", "1", ... in order (paths and output rely on it) */
		if (is_array)
		{
			char		expected[24];

			snprintf(expected, sizeof(expected), "%lu", index++);
			if (strcmp(key, expected) != 0)
				return fail(v, iter->off + (doc_start - v->base),
							"array element keys must be 0, 1, 2, ... in order");
		}

		/* check the name before it goes into any message */
		if (!check_utf8(v, key, keylen, false, (const uint8_t *) key, "field name"))
			return false;
		saved = path_push(v, key, keylen);
		ok = validate_element(v, iter, depth);
		if (!ok)
			return false;
		path_pop(v, saved);
	}
	if (iter->err_off != 0)
		return fail(v, (doc_start - v->base) + iter->err_off,
					"corrupt or unsupported element");
	return true;
}

static bool
validate_embedded(Validator *v, const uint8_t *data, uint32_t len, int depth,
				  bool is_array)
{
	bson_t		child;
	bson_iter_t iter;

	if (depth > BSON_MAX_NESTING_DEPTH)
	{
		char		message[96];

		snprintf(message, sizeof(message), "nesting deeper than %d levels",
				 BSON_MAX_NESTING_DEPTH);
		return fail(v, data - v->base, message);
	}
	if (!bson_init_static(&child, data, len) || !bson_iter_init(&iter, &child))
		return fail(v, data - v->base, "embedded document has a bad length");
	return validate_elements(v, &iter, data, depth, is_array);
}

bool
bson_validate_document(const uint8_t *data, size_t len,
					   BsonValidationError *err)
{
	Validator	v;
	uint32_t	declared;
	char		message[96];

	memset(err, 0, sizeof(*err));
	v.base = data;
	v.err = err;
	v.path[0] = '\0';
	v.path_len = 0;
	v.path_overflow = false;

	if (len < 5)
	{
		snprintf(message, sizeof(message),
				 "document is %zu bytes, shorter than the minimum of 5", len);
		return fail(&v, 0, message);
	}
	if (len > BSON_MAX_DOCUMENT_SIZE)
	{
		snprintf(message, sizeof(message),
				 "document is %zu bytes, over the limit of %d", len, BSON_MAX_DOCUMENT_SIZE);
		return fail(&v, 0, message);
	}
	memcpy(&declared, data, sizeof(declared));
	declared = BSON_UINT32_FROM_LE(declared);
	if ((size_t) declared != len)
	{
		snprintf(message, sizeof(message),
				 "length prefix says %d bytes but %zu were given", (int32_t) declared, len);
		return fail(&v, 0, message);
	}
	if (data[len - 1] != 0)
		return fail(&v, len - 1, "document is not terminated by a zero byte");
	return validate_embedded(&v, data, (uint32_t) len, 1, false);
}
