/*-------------------------------------------------------------------------
 *
 * fle_field.c
 *	  Field-level encryption of BSON documents in MongoDB's FLE1 format:
 *	  encrypt_field(s), decrypt_field, decrypt (every encrypted value),
 *	  encrypt_value / decrypt_value (single values, e.g. query constants)
 *	  and the decrypting accessors behind the ~> and ~>> operators.
 *
 *	  An encrypted value is a BSON Binary of subtype 6 holding an FLE1 blob
 *	  (fle_aead.h).  Encrypting or decrypting one path splices the new
 *	  element into a copy of the document and fixes the length prefixes of
 *	  the enclosing documents, without re-encoding anything else.  The
 *	  types MongoDB refuses to encrypt are refused here with the same rules.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "bsoncrypt.h"
#include "key_cache.h"

PG_FUNCTION_INFO_V1(bsoncrypt_encrypt_field);
PG_FUNCTION_INFO_V1(bsoncrypt_encrypt_field_by_id);
PG_FUNCTION_INFO_V1(bsoncrypt_encrypt_fields);
PG_FUNCTION_INFO_V1(bsoncrypt_encrypt_fields_by_id);
PG_FUNCTION_INFO_V1(bsoncrypt_decrypt_field);
PG_FUNCTION_INFO_V1(bsoncrypt_decrypt);
PG_FUNCTION_INFO_V1(bsoncrypt_encrypt_value);
PG_FUNCTION_INFO_V1(bsoncrypt_encrypt_value_by_id);
PG_FUNCTION_INFO_V1(bsoncrypt_encrypt_deterministic);
PG_FUNCTION_INFO_V1(bsoncrypt_decrypt_value);
PG_FUNCTION_INFO_V1(bsoncrypt_decrypt_get);
PG_FUNCTION_INFO_V1(bsoncrypt_decrypt_get_text);

#define BSON_SUBTYPE_ENCRYPTED 6

/* What a function remembers between calls in one query (fn_extra). */
typedef struct FieldCryptCache
{
	/* encryption key, as named by the caller */
	bool		enc_by_id;
	char	   *enc_name;		/* alt name (when !enc_by_id) */
	pg_uuid_t	enc_id;
	DataKey    *enc_key;
	uint64		enc_generation;
	/* algorithm text last parsed */
	char	   *alg_text;
	FleAlgorithm alg;
	/* last key used to decrypt */
	pg_uuid_t	dec_id;
	DataKey    *dec_key;
	uint64		dec_generation;
} FieldCryptCache;


static FieldCryptCache *
get_cache(FunctionCallInfo fcinfo)
{
	if (fcinfo->flinfo->fn_extra == NULL)
		fcinfo->flinfo->fn_extra = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt,
														  sizeof(FieldCryptCache));
	return (FieldCryptCache *) fcinfo->flinfo->fn_extra;
}

static void
put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v & 0xff;
	p[1] = (v >> 8) & 0xff;
	p[2] = (v >> 16) & 0xff;
	p[3] = (v >> 24) & 0xff;
}

static uint32_t
get_le32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) |
		((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

/* ---------- algorithms and type rules ---------- */

static FleAlgorithm
parse_algorithm(const char *name)
{
	if (pg_strcasecmp(name, "random") == 0 ||
		strcmp(name, "AEAD_AES_256_CBC_HMAC_SHA_512-Random") == 0)
		return FLE_RANDOM;
	if (pg_strcasecmp(name, "deterministic") == 0 ||
		strcmp(name, "AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic") == 0)
		return FLE_DETERMINISTIC;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown encryption algorithm \"%s\"", name),
			 errhint("Use \"random\" or \"deterministic\" (or MongoDB's names AEAD_AES_256_CBC_HMAC_SHA_512-Random and -Deterministic).")));
	return FLE_RANDOM;			/* keep compiler quiet */
}

static FleAlgorithm
algorithm_arg(FunctionCallInfo fcinfo, int argno)
{
	FieldCryptCache *cache = get_cache(fcinfo);
	text	   *arg = PG_GETARG_TEXT_PP(argno);
	size_t		len = VARSIZE_ANY_EXHDR(arg);

	if (cache->alg_text == NULL || strlen(cache->alg_text) != len ||
		memcmp(cache->alg_text, VARDATA_ANY(arg), len) != 0)
	{
		char	   *name = text_to_cstring(arg);
		FleAlgorithm alg = parse_algorithm(name);

		if (cache->alg_text)
			pfree(cache->alg_text);
		cache->alg_text = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, name);
		cache->alg = alg;
	}
	return cache->alg;
}

/*
 * MongoDB's rules: some types are never encrypted, some only randomly
 * (their values have several encodings or are not meaningful to match).
 */
static void
check_encryptable(const bson_iter_t *value, FleAlgorithm alg, const char *path)
{
	bson_type_t type = bson_iter_type(value);
	const char *name = bson_type_name(type);

	if (type == BSON_TYPE_BINARY)
	{
		bson_subtype_t subtype;
		uint32_t	len;
		const uint8_t *bytes;

		bson_iter_binary(value, &subtype, &len, &bytes);
		if (subtype == BSON_SUBTYPE_ENCRYPTED)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("cannot encrypt field \"%s\": it is already encrypted (binary subtype 6)", path)));
	}
	if (type == BSON_TYPE_NULL || type == BSON_TYPE_UNDEFINED ||
		type == BSON_TYPE_MINKEY || type == BSON_TYPE_MAXKEY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot encrypt field \"%s\": values of BSON type %s are never encrypted", path, name)));
	if (alg == FLE_DETERMINISTIC &&
		(type == BSON_TYPE_DOUBLE || type == BSON_TYPE_DECIMAL128 ||
		 type == BSON_TYPE_DOCUMENT || type == BSON_TYPE_ARRAY ||
		 type == BSON_TYPE_BOOL || type == BSON_TYPE_CODEWSCOPE))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot encrypt field \"%s\" deterministically: BSON type %s allows only random encryption", path, name),
				 errhint("Use algorithm 'random'; MongoDB permits deterministic encryption only for types with one exact encoding per value.")));
}

static bool
is_encrypted(const bson_iter_t *value, const uint8_t **blob, uint32_t *blob_len)
{
	bson_subtype_t subtype;

	if (!BSON_ITER_HOLDS_BINARY(value))
		return false;
	bson_iter_binary(value, &subtype, blob_len, blob);
	return subtype == BSON_SUBTYPE_ENCRYPTED;
}

/* ---------- keys ---------- */

/* The key named by argument argno: a keyAltName (text) or an _id (uuid). */
static DataKey *
encryption_key(FunctionCallInfo fcinfo, int argno, bool by_id)
{
	FieldCryptCache *cache = get_cache(fcinfo);

	if (by_id)
	{
		pg_uuid_t  *id = PG_GETARG_UUID_P(argno);

		if (!cache->enc_by_id || memcmp(id, &cache->enc_id, sizeof(pg_uuid_t)) != 0 ||
			!key_cache_still_valid(cache->enc_key, cache->enc_generation))
		{
			cache->enc_key = key_cache_get_by_id(id);
			cache->enc_generation = key_cache_generation;
			cache->enc_id = *id;
			cache->enc_by_id = true;
		}
	}
	else
	{
		text	   *name = PG_GETARG_TEXT_PP(argno);
		size_t		len = VARSIZE_ANY_EXHDR(name);

		if (cache->enc_by_id || cache->enc_name == NULL ||
			strlen(cache->enc_name) != len ||
			memcmp(cache->enc_name, VARDATA_ANY(name), len) != 0 ||
			!key_cache_still_valid(cache->enc_key, cache->enc_generation))
		{
			char	   *alt_name = text_to_cstring(name);

			cache->enc_key = key_cache_get_by_alt_name(alt_name);
			cache->enc_generation = key_cache_generation;
			if (cache->enc_name)
				pfree(cache->enc_name);
			cache->enc_name = MemoryContextStrdup(fcinfo->flinfo->fn_mcxt, alt_name);
			cache->enc_by_id = false;
		}
	}
	return cache->enc_key;
}

static DataKey *
decryption_key(FunctionCallInfo fcinfo, const uint8_t *key_uuid)
{
	FieldCryptCache *cache = get_cache(fcinfo);

	if (memcmp(key_uuid, cache->dec_id.data, UUID_LEN) != 0 ||
		!key_cache_still_valid(cache->dec_key, cache->dec_generation))
	{
		pg_uuid_t	id;

		memcpy(id.data, key_uuid, UUID_LEN);
		cache->dec_key = key_cache_get_by_id(&id);
		cache->dec_generation = key_cache_generation;
		cache->dec_id = id;
	}
	return cache->dec_key;
}

/*
 * A copy of doc with the element m->elem replaced by one of new_len bytes;
 * *slot points where the caller writes the new element.
 */
static BsonData *
splice_element(const bson_t *doc, const BsonPathMatch *m, uint32_t new_len,
			   uint8_t **slot)
{
	const uint8_t *base = bson_get_data(doc);
	uint32_t	len = doc->len;
	uint32_t	start = (uint32_t) (m->elem.raw - base) + m->elem.off;
	uint32_t	end = (uint32_t) (m->elem.raw - base) + m->elem.next_off;
	int64		delta = (int64) new_len - (int64) (end - start);
	int64		total = (int64) len + delta;
	BsonData   *result;
	uint8_t    *dst;

	if (total > BSON_MAX_DOCUMENT_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("document would grow to %lld bytes, over the BSON limit of %d",
						(long long) total, BSON_MAX_DOCUMENT_SIZE)));
	result = (BsonData *) palloc(VARHDRSZ + total);
	SET_VARSIZE(result, VARHDRSZ + total);
	dst = (uint8_t *) VARDATA(result);
	memcpy(dst, base, start);
	memcpy(dst + start + new_len, base + end, len - end);
	for (int i = 0; i < m->ndocs; i++)
	{
		uint8_t    *prefix = dst + m->doc_offsets[i];

		put_le32(prefix, (uint32_t) ((int64) get_le32(prefix) + delta));
	}
	*slot = dst + start;
	return result;
}

/* ---------- encrypting ---------- */

/* Bytes of an element: type(1) key\0 then value */
static uint32_t
element_key_len(const bson_iter_t *elem)
{
	return elem->d1 - elem->key;	/* the key and its NUL */
}

/*
 * Write the encrypted form of elem at dst: a Binary subtype 6 element with
 * the same key.  Returns bytes written (== encrypted_element_len).
 */
static uint32_t
encrypted_element_len(const bson_iter_t *elem)
{
	uint32_t	value_len = elem->next_off - elem->d1;

	return 1 + element_key_len(elem) + 4 + 1 + (uint32_t) fle_blob_len(value_len);
}

static void
write_encrypted_element(uint8_t *dst, const bson_iter_t *elem, DataKey *key,
						FleAlgorithm alg, const char *path)
{
	uint32_t	keylen = element_key_len(elem);
	const uint8_t *value = elem->raw + elem->d1;
	uint32_t	value_len = elem->next_off - elem->d1;
	size_t		blob_len = fle_blob_len(value_len);
	size_t		written = 0;
	FleStatus	status;

	dst[0] = BSON_TYPE_BINARY;
	memcpy(dst + 1, elem->raw + elem->key, keylen);
	put_le32(dst + 1 + keylen, (uint32_t) blob_len);
	dst[1 + keylen + 4] = BSON_SUBTYPE_ENCRYPTED;
	status = fle_blob_encrypt(key->ctx, alg, key->id.data,
							  (uint8_t) bson_iter_type(elem),
							  value, value_len,
							  dst + 1 + keylen + 5, &written);
	if (status != FLE_OK || written != blob_len)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not encrypt field \"%s\": %s", path, fle_status_message(status))));
}

/*
 * Encrypt the value at path; the document unchanged (NULL returned) when
 * the path is absent or already encrypted.
 */
static BsonData *
encrypt_path(const bson_t *doc, const char *path, DataKey *key, FleAlgorithm alg)
{
	BsonPathMatch m;
	const uint8_t *blob;
	uint32_t	blob_len;
	uint8_t    *slot;
	BsonData   *result;

	if (!bson_find_path_with_parents(doc, path, &m) || is_encrypted(&m.elem, &blob, &blob_len))
		return NULL;
	check_encryptable(&m.elem, alg, path);
	result = splice_element(doc, &m, encrypted_element_len(&m.elem), &slot);
	write_encrypted_element(slot, &m.elem, key, alg, path);
	return result;
}

static Datum
encrypt_field_common(FunctionCallInfo fcinfo, bool by_id)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	FleAlgorithm alg = algorithm_arg(fcinfo, 3);
	DataKey    *key = encryption_key(fcinfo, 2, by_id);
	bson_t		doc;
	BsonData   *result;

	bson_init_from_data(&doc, data);
	result = encrypt_path(&doc, path, key, alg);
	if (result == NULL)
		PG_RETURN_POINTER(data);
	PG_RETURN_BSON_P(result);
}

Datum
bsoncrypt_encrypt_field(PG_FUNCTION_ARGS)
{
	return encrypt_field_common(fcinfo, false);
}

Datum
bsoncrypt_encrypt_field_by_id(PG_FUNCTION_ARGS)
{
	return encrypt_field_common(fcinfo, true);
}

static Datum
encrypt_fields_common(FunctionCallInfo fcinfo, bool by_id)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	ArrayType  *paths = PG_GETARG_ARRAYTYPE_P(1);
	FleAlgorithm alg = algorithm_arg(fcinfo, 3);
	DataKey    *key = encryption_key(fcinfo, 2, by_id);
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(paths, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		bson_t		doc;
		BsonData   *next;

		if (nulls[i])
			continue;
		bson_init_from_data(&doc, data);
		next = encrypt_path(&doc, TextDatumGetCString(elems[i]), key, alg);
		if (next != NULL)
			data = next;
	}
	PG_RETURN_BSON_P(data);
}

Datum
bsoncrypt_encrypt_fields(PG_FUNCTION_ARGS)
{
	return encrypt_fields_common(fcinfo, false);
}

Datum
bsoncrypt_encrypt_fields_by_id(PG_FUNCTION_ARGS)
{
	return encrypt_fields_common(fcinfo, true);
}

/* The single element of a {"": value} document (DocumentDB's convention). */
static void
single_value(const bson_t *doc, bson_iter_t *value, const char *function)
{
	bson_iter_t extra;

	if (!bson_iter_init(value, doc) || !bson_iter_next(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s expects a document with one field, e.g. {\"\": value}, not an empty document", function)));
	extra = *value;
	if (bson_iter_next(&extra))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s expects a document with one field, e.g. {\"\": value}", function)));
}

static Datum
encrypt_value_common(FunctionCallInfo fcinfo, bool by_id, FleAlgorithm alg)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	DataKey    *key = encryption_key(fcinfo, 1, by_id);
	bson_t		doc;
	BsonPathMatch m;
	uint8_t    *slot;
	BsonData   *result;

	bson_init_from_data(&doc, data);
	single_value(&doc, &m.elem, "encrypt_value");
	m.ndocs = 1;
	m.doc_offsets[0] = 0;
	check_encryptable(&m.elem, alg, bson_iter_key(&m.elem));
	result = splice_element(&doc, &m, encrypted_element_len(&m.elem), &slot);
	write_encrypted_element(slot, &m.elem, key, alg, bson_iter_key(&m.elem));
	PG_RETURN_BSON_P(result);
}

Datum
bsoncrypt_encrypt_value(PG_FUNCTION_ARGS)
{
	return encrypt_value_common(fcinfo, false, algorithm_arg(fcinfo, 2));
}

Datum
bsoncrypt_encrypt_value_by_id(PG_FUNCTION_ARGS)
{
	return encrypt_value_common(fcinfo, true, algorithm_arg(fcinfo, 2));
}

/* value ## key: deterministic encryption, for equality predicates */
Datum
bsoncrypt_encrypt_deterministic(PG_FUNCTION_ARGS)
{
	return encrypt_value_common(fcinfo, false, FLE_DETERMINISTIC);
}

/* ---------- decrypting ---------- */

typedef struct DecryptErrorContext
{
	const char *path;
} DecryptErrorContext;

static void
decrypt_error_callback(void *arg)
{
	DecryptErrorContext *ctx = (DecryptErrorContext *) arg;

	errcontext("while decrypting field \"%s\"", ctx->path);
}

/*
 * A decrypted value passed the tag, so it is what the key's holder
 * encrypted; it must still be well-formed BSON of its declared type before
 * it goes into a document.
 */
static void
check_decrypted_value(const uint8_t *doc, uint32_t len, const char *path)
{
	BsonValidationError err;

	if (!bson_validate_document(doc, len, &err))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cannot decrypt field \"%s\": the decrypted value is not valid BSON: %s",
						path, err.message)));
}

/*
 * Decrypt an FLE1 blob into a new one-element document {key: value} (the
 * key given by key/keylen), checked to be well-formed BSON.  Returns NULL
 * for blobs that are not FLE1 (subtype byte other than 1 or 2) when
 * pass_through_foreign is set; raises an error naming path otherwise.
 */
static BsonData *
decrypt_blob_to_document(FunctionCallInfo fcinfo, const uint8_t *blob,
						 uint32_t blob_len, const char *key, uint32_t keylen,
						 const char *path, bool pass_through_foreign)
{
	const uint8_t *key_uuid;
	uint8_t		bson_type;
	FleStatus	status;
	DataKey    *dek;
	size_t		max;
	size_t		plain_len = 0;
	uint32_t	doc_len;
	BsonData   *result;
	uint8_t    *dst;
	ErrorContextCallback errcallback;
	DecryptErrorContext errctx;

	if (blob_len > 0 && blob[0] != FLE_DETERMINISTIC && blob[0] != FLE_RANDOM && pass_through_foreign)
		return NULL;
	status = fle_blob_parse_header(blob, blob_len, NULL, &key_uuid, &bson_type);
	if (status != FLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cannot decrypt field \"%s\": not an FLE1 ciphertext (%s)", path,
						fle_status_message(status)),
				 errdetail("The binary subtype 6 value is %u bytes, starting with byte %u.",
						   blob_len, blob_len > 0 ? blob[0] : 0)));

	errctx.path = path;
	errcallback.callback = decrypt_error_callback;
	errcallback.arg = &errctx;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	dek = decryption_key(fcinfo, key_uuid);
	error_context_stack = errcallback.previous;

	/* {key: value}: int32 len, type, key\0, value, terminating 0 */
	max = fle_blob_plaintext_max_len(blob_len);
	result = (BsonData *) palloc(VARHDRSZ + 4 + 1 + keylen + 1 + max + 1);
	dst = (uint8_t *) VARDATA(result);
	dst[4] = bson_type;
	memcpy(dst + 5, key, keylen);
	dst[5 + keylen] = '\0';
	status = fle_blob_decrypt(dek->ctx, blob, blob_len, dst + 6 + keylen, &plain_len);
	if (status != FLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cannot decrypt field \"%s\" with data key %s: %s", path,
						uuid_to_cstring(&dek->id), fle_status_message(status)),
				 errhint("The ciphertext was modified, or made with another key of the same _id.")));
	doc_len = 4 + 1 + keylen + 1 + (uint32_t) plain_len + 1;
	dst[doc_len - 1] = '\0';
	put_le32(dst, doc_len);
	SET_VARSIZE(result, VARHDRSZ + doc_len);
	check_decrypted_value(dst, doc_len, path);
	return result;
}

/* The one element of a document made by decrypt_blob_to_document. */
static void
first_element(const BsonData *one, uint32_t *offset, uint32_t *len)
{
	uint32_t	doc_len = BsonDataLen(one);

	*offset = 4;
	*len = doc_len - 5;
}

/* Replace the encrypted element m->elem of doc by its plaintext. */
static BsonData *
decrypt_path(FunctionCallInfo fcinfo, const bson_t *doc, BsonPathMatch *m,
			 const uint8_t *blob, uint32_t blob_len, const char *path)
{
	const char *key = bson_iter_key(&m->elem);
	BsonData   *one = decrypt_blob_to_document(fcinfo, blob, blob_len, key,
											   (uint32_t) strlen(key), path, false);
	uint32_t	offset;
	uint32_t	len;
	uint8_t    *slot;
	BsonData   *result;

	first_element(one, &offset, &len);
	result = splice_element(doc, m, len, &slot);
	memcpy(slot, BsonDataPtr(one) + offset, len);
	pfree(one);
	return result;
}

Datum
bsoncrypt_decrypt_field(PG_FUNCTION_ARGS)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bson_t		doc;
	BsonPathMatch m;
	const uint8_t *blob;
	uint32_t	blob_len;

	bson_init_from_data(&doc, data);
	if (!bson_find_path_with_parents(&doc, path, &m) || !is_encrypted(&m.elem, &blob, &blob_len))
		PG_RETURN_POINTER(data);
	PG_RETURN_BSON_P(decrypt_path(fcinfo, &doc, &m, blob, blob_len, path));
}

Datum
bsoncrypt_decrypt_value(PG_FUNCTION_ARGS)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	bson_t		doc;
	BsonPathMatch m;
	const uint8_t *blob;
	uint32_t	blob_len;

	bson_init_from_data(&doc, data);
	single_value(&doc, &m.elem, "decrypt_value");
	if (!is_encrypted(&m.elem, &blob, &blob_len))
		PG_RETURN_POINTER(data);
	m.ndocs = 1;
	m.doc_offsets[0] = 0;
	PG_RETURN_BSON_P(decrypt_path(fcinfo, &doc, &m, blob, blob_len, bson_iter_key(&m.elem)));
}

/*
 * Copy the elements of iter into out, decrypting every FLE1 value at any
 * depth.  Returns whether anything was decrypted.
 */
static bool
decrypt_all(FunctionCallInfo fcinfo, bson_iter_t *iter, StringInfo out,
			StringInfo path)
{
	int			start = out->len;
	bool		changed = false;
	static const char zero4[4] = {0, 0, 0, 0};

	appendBinaryStringInfo(out, zero4, 4);
	while (bson_iter_next(iter))
	{
		const uint8_t *raw = iter->raw;
		const uint8_t *blob;
		uint32_t	blob_len;
		int			saved = path->len;

		if (path->len > 0)
			appendStringInfoChar(path, '.');
		appendStringInfoString(path, bson_iter_key(iter));

		if (is_encrypted(iter, &blob, &blob_len))
		{
			BsonData   *one = decrypt_blob_to_document(fcinfo, blob, blob_len,
													   bson_iter_key(iter),
													   element_key_len(iter) - 1,
													   path->data, true);

			if (one != NULL)
			{
				uint32_t	offset;
				uint32_t	len;

				first_element(one, &offset, &len);
				appendBinaryStringInfo(out, (const char *) BsonDataPtr(one) + offset, len);
				pfree(one);
				changed = true;
			}
			else
				appendBinaryStringInfo(out, (const char *) raw + iter->off,
									   iter->next_off - iter->off);
		}
		else if (BSON_ITER_HOLDS_DOCUMENT(iter) || BSON_ITER_HOLDS_ARRAY(iter))
		{
			bson_iter_t child;

			appendBinaryStringInfo(out, (const char *) raw + iter->off, iter->d1 - iter->off);
			if (!bson_iter_recurse(iter, &child))
				elog(ERROR, "corrupt bson at \"%s\"", path->data);
			changed |= decrypt_all(fcinfo, &child, out, path);
		}
		else
			appendBinaryStringInfo(out, (const char *) raw + iter->off,
								   iter->next_off - iter->off);
		path->len = saved;
		path->data[saved] = '\0';
	}
	appendStringInfoChar(out, '\0');
	put_le32((uint8_t *) out->data + start, (uint32_t) (out->len - start));
	return changed;
}

/* decrypt(doc): every FLE1 value anywhere, like drivers' automatic decryption */
Datum
bsoncrypt_decrypt(PG_FUNCTION_ARGS)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	bson_t		doc;
	bson_iter_t iter;
	StringInfoData out;
	StringInfoData path;
	BsonData   *result;

	bson_init_from_data(&doc, data);
	if (!bson_iter_init(&iter, &doc))
		elog(ERROR, "corrupt bson value");
	initStringInfo(&out);
	initStringInfo(&path);
	appendStringInfoSpaces(&out, VARHDRSZ);
	if (!decrypt_all(fcinfo, &iter, &out, &path))
		PG_RETURN_POINTER(data);
	if (out.len - VARHDRSZ > BSON_MAX_DOCUMENT_SIZE)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("decrypted document is %d bytes, over the BSON limit of %d",
						out.len - VARHDRSZ, BSON_MAX_DOCUMENT_SIZE)));
	result = (BsonData *) out.data;
	SET_VARSIZE(result, out.len);
	PG_RETURN_BSON_P(result);
}

/* doc ~> path: the value at path as {"": value}, decrypted if encrypted */
static BsonData *
decrypted_value_at(FunctionCallInfo fcinfo, bool *found)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	char	   *path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	bson_t		doc;
	bson_iter_t value;
	const uint8_t *blob;
	uint32_t	blob_len;

	bson_init_from_data(&doc, data);
	*found = bson_find_path(&doc, path, &value);
	if (!*found)
		return NULL;
	if (!is_encrypted(&value, &blob, &blob_len))
		return bson_wrap_value(&value);
	return decrypt_blob_to_document(fcinfo, blob, blob_len, "", 0, path, false);
}

Datum
bsoncrypt_decrypt_get(PG_FUNCTION_ARGS)
{
	bool		found;
	BsonData   *value = decrypted_value_at(fcinfo, &found);

	if (!found)
		PG_RETURN_NULL();
	PG_RETURN_BSON_P(value);
}

Datum
bsoncrypt_decrypt_get_text(PG_FUNCTION_ARGS)
{
	bool		found;
	BsonData   *value = decrypted_value_at(fcinfo, &found);
	bson_t		doc;
	bson_iter_t iter;
	text	   *result;

	if (!found)
		PG_RETURN_NULL();
	bson_init_from_data(&doc, value);
	if (!bson_iter_init(&iter, &doc) || !bson_iter_next(&iter))
		elog(ERROR, "corrupt bson value");
	result = bson_value_as_text(&iter);
	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(result);
}
