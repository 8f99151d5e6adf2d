/*-------------------------------------------------------------------------
 *
 * test_fle_aead.c
 *	  Standalone unit test of src/fle_aead.c against MongoDB's FLE1 corpus.
 *
 * Proves the FLE1 primitives against the real specification corpus (files
 * in ../data/fle-corpus, see its README): local key unwrapping, every deterministic
 * local entry byte for byte, every random local entry by decryption, and
 * tampering, truncation, padding and fork-safety of the random pool.
 *
 * Usage:
 *	test_fle_aead [DATA_DIR]			run the tests (default DATA_DIR: data)
 *	test_fle_aead --bench [ITERATIONS]	microbenchmark (default 1000000)
 *
 * The last line of a test run is "N passed, M failed"; the exit status is
 * non-zero if anything failed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include <bson/bson.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../src/fle_aead.h"
#include "unit_harness.h"

/* spec's LOCAL_MASTERKEY, base64 of 96 bytes (see ../data/fle-corpus/README.md) */
static const char *local_master_b64 =
	"Mng0NCt4ZHVUYUJCa1kxNkVyNUR1QURhZ2h2UzR2d2RrZzh0cFBwM3R6NmdWMDFBMUN3YkQ5"
	"aXRRMkhGRGdQV09wOGVNYUMxT2k3NjZKelhaQmRCZGJkTXVyZG9uSjFk";

/* ----------------------------------------------------------------
 *		Data helpers (the harness is unit_harness.h)
 * ----------------------------------------------------------------
 */

static void
bytes_free(Bytes *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

static Bytes
base64_decode(const char *b64)
{
	size_t		in_len = strlen(b64);
	Bytes		b;
	int			n;

	b.data = malloc(in_len / 4 * 3 + 3);
	if (b.data == NULL)
		fatal("out of memory");
	n = EVP_DecodeBlock(b.data, (const unsigned char *) b64, (int) in_len);
	if (n < 0)
		fatal("bad base64");
	/* EVP_DecodeBlock keeps the bytes standing for '=' padding */
	while (in_len > 0 && b64[in_len - 1] == '=')
	{
		in_len--;
		n--;
	}
	b.len = (size_t) n;
	return b;
}

static Bytes
read_hex_file(const char *path)
{
	FILE	   *f = fopen(path, "r");
	Bytes		b = {NULL, 0};
	int			c;
	int			hi = -1;

	if (f == NULL)
		fatal(path);
	b.data = malloc(4096);
	if (b.data == NULL)
		fatal("out of memory");
	while ((c = fgetc(f)) != EOF)
	{
		int			v = hex_nibble(c);

		if (v < 0)
			continue;
		if (hi < 0)
			hi = v;
		else
		{
			if (b.len == 4096)
				fatal("hex file too long");
			b.data[b.len++] = (uint8_t) (hi << 4 | v);
			hi = -1;
		}
	}
	fclose(f);
	return b;
}

static bson_t *
load_json(const char *dir, const char *name)
{
	char		path[4096];
	bson_error_t error;
	bson_json_reader_t *reader;
	bson_t	   *doc = bson_new();

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	reader = bson_json_reader_new_from_file(path, &error);
	if (reader == NULL)
		fatal(path);
	if (bson_json_reader_read(reader, doc, &error) != 1)
	{
		fprintf(stderr, "%s: %s\n", path, error.message);
		fatal("cannot parse JSON");
	}
	bson_json_reader_destroy(reader);
	return doc;
}

/*
 * The raw BSON value bytes and type of the element at iter: what FLE1
 * encrypts.  The element is re-appended under an empty key to a scratch
 * document, whose layout is then int32 length, type byte, "" (one NUL),
 * value bytes, final NUL.  Only public libbson API is used.
 */
static Bytes
iter_raw_value(const bson_iter_t *iter, uint8_t *type)
{
	bson_t		scratch = BSON_INITIALIZER;
	const uint8_t *data;
	const size_t head = 4 + 1 + 1;
	Bytes		b;

	if (!bson_append_iter(&scratch, "", 0, iter))
		fatal("bson_append_iter");
	data = bson_get_data(&scratch);
	*type = data[4];
	b.len = scratch.len - head - 1;
	b.data = malloc(b.len > 0 ? b.len : 1);
	if (b.data == NULL)
		fatal("out of memory");
	memcpy(b.data, data + head, b.len);
	bson_destroy(&scratch);
	return b;
}

static Bytes
binary_field(const bson_t *doc, const char *key, bson_subtype_t want)
{
	bson_iter_t it;
	bson_subtype_t subtype;
	uint32_t	len;
	const uint8_t *data;
	Bytes		b;

	if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_BINARY(&it))
		fatal(key);
	bson_iter_binary(&it, &subtype, &len, &data);
	if (subtype != want)
		fatal("unexpected binary subtype");
	b.data = malloc(len);
	if (b.data == NULL)
		fatal("out of memory");
	memcpy(b.data, data, len);
	b.len = len;
	return b;
}

/* ----------------------------------------------------------------
 *		Fixture
 * ----------------------------------------------------------------
 */

typedef struct Fixture
{
	Bytes		master;			/* 96 bytes */
	Bytes		dek;			/* corpus-local-dek.hex */
	Bytes		key_uuid;		/* corpus key _id */
	Bytes		key_material;	/* wrapped DEK */
	bson_t	   *corpus;
	bson_t	   *encrypted;
	FleAeadCtx *ctx;			/* keyed with dek */
} Fixture;

static void
fixture_load(Fixture *fx, const char *dir)
{
	bson_t	   *keydoc = load_json(dir, "corpus-key-local.json");
	char		path[4096];

	fx->master = base64_decode(local_master_b64);
	snprintf(path, sizeof(path), "%s/corpus-local-dek.hex", dir);
	fx->dek = read_hex_file(path);
	fx->key_uuid = binary_field(keydoc, "_id", BSON_SUBTYPE_UUID);
	fx->key_material = binary_field(keydoc, "keyMaterial", BSON_SUBTYPE_BINARY);
	bson_destroy(keydoc);
	fx->corpus = load_json(dir, "corpus.json");
	fx->encrypted = load_json(dir, "corpus-encrypted.json");

	if (fx->master.len != FLE_KEY_LEN || fx->dek.len != FLE_KEY_LEN ||
		fx->key_uuid.len != 16)
		fatal("unexpected fixture key lengths");
	fx->ctx = fle_aead_new(fx->dek.data);
	if (fx->ctx == NULL)
		fatal("fle_aead_new");
}

static void
fixture_free(Fixture *fx)
{
	fle_aead_free(fx->ctx);
	bytes_free(&fx->master);
	bytes_free(&fx->dek);
	bytes_free(&fx->key_uuid);
	bytes_free(&fx->key_material);
	bson_destroy(fx->corpus);
	bson_destroy(fx->encrypted);
}

/* ----------------------------------------------------------------
 *		Length formulas and API basics
 * ----------------------------------------------------------------
 */

static void
test_lengths(void)
{
	size_t		n;

	begin_case("length formulas");
	for (n = 0; n <= 200; n++)
	{
		size_t		ct = 16 + 16 * (n / 16 + 1) + 32;

		check(fle_aead_ciphertext_len(n) == ct, "ciphertext_len(%zu)", n);
		check(fle_blob_len(n) == 18 + ct, "blob_len(%zu)", n);
		check(fle_aead_plaintext_max_len(ct) >= n, "plaintext_max_len(%zu)", ct);
		check(fle_blob_plaintext_max_len(18 + ct) >= n,
			  "blob_plaintext_max_len(%zu)", 18 + ct);
	}
	check(fle_blob_len(0) == 82 && FLE_MIN_BLOB_LEN == 82, "smallest blob is 82");
	check(fle_aead_ciphertext_len(96) == FLE_WRAPPED_DEK_LEN, "wrapped DEK is 160");
	check(fle_aead_plaintext_max_len(63) == 0, "plaintext_max_len(63)");
	end_case();
}

static void
test_api_errors(Fixture *fx)
{
	uint8_t		out[256];
	size_t		out_len = 12345;
	const uint8_t pt[4] = {1, 2, 3, 4};
	int			s;

	begin_case("status messages and argument errors");
	for (s = FLE_OK; s <= FLE_ERR_SUBTYPE; s++)
	{
		const char *m = fle_status_message((FleStatus) s);

		check(m != NULL && strlen(m) > 0, "message for %d", s);
		check(strcmp(m, fle_status_message((FleStatus) 99)) != 0,
			  "message for %d distinct from unknown", s);
	}
	check(fle_blob_encrypt(fx->ctx, (FleAlgorithm) 0, fx->key_uuid.data, 0x10,
						   pt, 4, out, &out_len) == FLE_ERR_SUBTYPE, "alg 0");
	check(out_len == 0, "out_len reset on failure");
	check(fle_blob_encrypt(fx->ctx, (FleAlgorithm) 3, fx->key_uuid.data, 0x10,
						   pt, 4, out, &out_len) == FLE_ERR_SUBTYPE, "alg 3");
	check(fle_blob_encrypt(NULL, FLE_RANDOM, fx->key_uuid.data, 0x10,
						   pt, 4, out, &out_len) == FLE_ERR_LENGTH, "NULL ctx");
	check(fle_blob_encrypt(fx->ctx, FLE_RANDOM, fx->key_uuid.data, 0x10,
						   NULL, 4, out, &out_len) == FLE_ERR_LENGTH, "NULL pt");
	check(fle_aead_encrypt(fx->ctx, NULL, 0, pt, 4, NULL, NULL, &out_len)
		  == FLE_ERR_LENGTH, "NULL out");
	check(fle_aead_decrypt(fx->ctx, NULL, 0, NULL, 64, out, &out_len)
		  == FLE_ERR_LENGTH, "NULL ct");
	check(fle_blob_parse_header(NULL, 100, NULL, NULL, NULL) == FLE_ERR_LENGTH,
		  "NULL blob");
	check(fle_aead_new(NULL) == NULL, "fle_aead_new(NULL)");
	fle_aead_free(NULL);
	end_case();
}

/* ----------------------------------------------------------------
 *		1. Local KMS key wrapping
 * ----------------------------------------------------------------
 */

static void
test_unwrap_corpus_key(Fixture *fx)
{
	uint8_t		out[FLE_WRAPPED_DEK_LEN];
	size_t		out_len = 0;
	FleStatus	st;

	begin_case("unwrap corpus keyMaterial with the spec master key");
	check(fx->key_material.len == FLE_WRAPPED_DEK_LEN, "keyMaterial is 160 bytes");
	st = fle_unwrap_key(fx->master.data, fx->key_material.data,
						fx->key_material.len, out, &out_len);
	check(st == FLE_OK, "unwrap: %s", fle_status_message(st));
	check(bytes_equal(out, out_len, fx->dek.data, fx->dek.len),
		  "unwrapped DEK equals corpus-local-dek.hex");
	end_case();
}

static void
test_wrap_round_trip(Fixture *fx)
{
	static const size_t lens[] = {0, 1, 15, 16, 17, 32, 95, 96, 97, 200};
	size_t		i;

	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
	{
		char		name[64];
		uint8_t		secret[256];
		uint8_t		w1[512],
					w2[512],
					back[512];
		size_t		w1_len,
					w2_len,
					back_len;
		FleStatus	st;

		snprintf(name, sizeof(name), "wrap/unwrap round trip, %zu bytes", lens[i]);
		begin_case(name);
		if (lens[i] == 96)
			memcpy(secret, fx->dek.data, 96);
		else
			check(fle_random_bytes(secret, lens[i]) == 1, "random secret");

		st = fle_wrap_key(fx->master.data, secret, lens[i], w1, &w1_len);
		check(st == FLE_OK, "wrap: %s", fle_status_message(st));
		check(w1_len == fle_aead_ciphertext_len(lens[i]), "wrapped length");
		if (lens[i] == 96)
			check(w1_len == FLE_WRAPPED_DEK_LEN, "a DEK wraps to 160 bytes");
		st = fle_wrap_key(fx->master.data, secret, lens[i], w2, &w2_len);
		check(st == FLE_OK && !bytes_equal(w1, w1_len, w2, w2_len),
			  "two wraps differ (random IV)");
		st = fle_unwrap_key(fx->master.data, w1, w1_len, back, &back_len);
		check(st == FLE_OK, "unwrap: %s", fle_status_message(st));
		check(bytes_equal(back, back_len, secret, lens[i]), "round trip bytes");
		end_case();
	}
}

static void
test_unwrap_tampered(Fixture *fx)
{
	uint8_t		wrapped[FLE_WRAPPED_DEK_LEN];
	uint8_t		out[FLE_WRAPPED_DEK_LEN];
	size_t		out_len;
	size_t		i,
				len;
	static const uint8_t masks[] = {0x01, 0x80, 0xff};
	size_t		m;

	begin_case("every flipped keyMaterial byte -> FLE_ERR_TAG");
	for (i = 0; i < FLE_WRAPPED_DEK_LEN; i++)
	{
		for (m = 0; m < sizeof(masks); m++)
		{
			FleStatus	st;

			memcpy(wrapped, fx->key_material.data, FLE_WRAPPED_DEK_LEN);
			wrapped[i] ^= masks[m];
			st = fle_unwrap_key(fx->master.data, wrapped, FLE_WRAPPED_DEK_LEN,
								out, &out_len);
			check(st == FLE_ERR_TAG, "byte %zu ^ 0x%02x: %s", i, masks[m],
				  fle_status_message(st));
		}
	}
	end_case();

	begin_case("truncated keyMaterial -> error");
	for (len = 0; len < FLE_WRAPPED_DEK_LEN; len++)
	{
		FleStatus	st = fle_unwrap_key(fx->master.data, fx->key_material.data,
										len, out, &out_len);

		check(st != FLE_OK, "length %zu accepted", len);
		check(st == ((len >= 64 && len % 16 == 0) ? FLE_ERR_TAG : FLE_ERR_LENGTH),
			  "length %zu: %s", len, fle_status_message(st));
	}
	end_case();
}

static void
test_unwrap_wrong_master(Fixture *fx)
{
	uint8_t		master[FLE_KEY_LEN];
	uint8_t		out[FLE_WRAPPED_DEK_LEN];
	size_t		out_len;
	FleStatus	st;
	size_t		i;

	begin_case("wrong master key -> error");
	check(fle_random_bytes(master, sizeof(master)) == 1, "random master");
	st = fle_unwrap_key(master, fx->key_material.data, fx->key_material.len,
						out, &out_len);
	check(st == FLE_ERR_TAG, "random master: %s", fle_status_message(st));

	/* any change of the MAC half is caught by the tag */
	for (i = 0; i < 32; i++)
	{
		memcpy(master, fx->master.data, FLE_KEY_LEN);
		master[i] ^= 0x01;
		st = fle_unwrap_key(master, fx->key_material.data,
							fx->key_material.len, out, &out_len);
		check(st == FLE_ERR_TAG, "master byte %zu flipped: %s", i,
			  fle_status_message(st));
	}

	/*
	 * The format does not authenticate ENC_KEY: a master key differing only
	 * in bytes 32..63 passes the tag, and only the padding check (or the
	 * caller) can notice.  It must never yield the real DEK.
	 */
	for (i = 32; i < 64; i++)
	{
		memcpy(master, fx->master.data, FLE_KEY_LEN);
		master[i] ^= 0x01;
		st = fle_unwrap_key(master, fx->key_material.data,
							fx->key_material.len, out, &out_len);
		check(st != FLE_OK || !bytes_equal(out, out_len, fx->dek.data, 96),
			  "ENC half byte %zu flipped gave the DEK", i);
	}
	end_case();

	begin_case("master key bytes 64..95 are unused by the local wrap");
	for (i = 64; i < 96; i++)
	{
		memcpy(master, fx->master.data, FLE_KEY_LEN);
		master[i] ^= 0xff;
		st = fle_unwrap_key(master, fx->key_material.data,
							fx->key_material.len, out, &out_len);
		check(st == FLE_OK && bytes_equal(out, out_len, fx->dek.data, 96),
			  "byte %zu", i);
	}
	end_case();
}

/* ----------------------------------------------------------------
 *		2 and 3. The corpus
 * ----------------------------------------------------------------
 */

typedef struct CorpusEntry
{
	const char *name;
	char		kms[16];
	char		algo[8];
	int			allowed;
	Bytes		plain;			/* raw BSON value bytes */
	uint8_t		plain_type;
	Bytes		expected;		/* Binary subtype 6 payload (allowed only) */
} CorpusEntry;

static int
read_utf8(const bson_t *doc, const char *key, char *out, size_t size)
{
	bson_iter_t it;

	if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_UTF8(&it))
		return 0;
	snprintf(out, size, "%s", bson_iter_utf8(&it, NULL));
	return 1;
}

/* Fills e from the corpus document at it; 0 if it is not a test entry. */
static int
corpus_entry_load(Fixture *fx, bson_iter_t *it, CorpusEntry *e)
{
	bson_t		entry;
	bson_t		enc_entry;
	bson_iter_t vit;
	bson_iter_t eit;
	const uint8_t *data;
	uint32_t	len;

	memset(e, 0, sizeof(*e));
	if (!BSON_ITER_HOLDS_DOCUMENT(it))
		return 0;
	bson_iter_document(it, &len, &data);
	if (!bson_init_static(&entry, data, len))
		fatal("bad corpus entry");
	if (!read_utf8(&entry, "kms", e->kms, sizeof(e->kms)) ||
		!read_utf8(&entry, "algo", e->algo, sizeof(e->algo)))
		return 0;

	e->name = bson_iter_key(it);
	if (!bson_iter_init_find(&vit, &entry, "allowed") ||
		!BSON_ITER_HOLDS_BOOL(&vit))
		fatal("entry without allowed");
	e->allowed = bson_iter_bool(&vit);
	if (!bson_iter_init_find(&vit, &entry, "value"))
		fatal("entry without value");
	e->plain = iter_raw_value(&vit, &e->plain_type);

	if (!e->allowed)
		return 1;

	/* the matching entry in corpus-encrypted.json */
	if (!bson_iter_init_find(&eit, fx->encrypted, e->name) ||
		!BSON_ITER_HOLDS_DOCUMENT(&eit))
		fatal("entry missing from corpus-encrypted.json");
	bson_iter_document(&eit, &len, &data);
	if (!bson_init_static(&enc_entry, data, len))
		fatal("bad corpus-encrypted entry");
	e->expected = binary_field(&enc_entry, "value", BSON_SUBTYPE_ENCRYPTED);
	return 1;
}

static void
corpus_entry_free(CorpusEntry *e)
{
	bytes_free(&e->plain);
	bytes_free(&e->expected);
}

/* Header of an expected blob names our key, algorithm and value type. */
static void
check_expected_header(Fixture *fx, CorpusEntry *e, FleAlgorithm want_alg)
{
	FleAlgorithm alg;
	const uint8_t *uuid = NULL;
	uint8_t		type = 0;
	FleStatus	st;

	st = fle_blob_parse_header(e->expected.data, e->expected.len,
							   &alg, &uuid, &type);
	check(st == FLE_OK, "parse header: %s", fle_status_message(st));
	if (st != FLE_OK)
		return;
	check(alg == want_alg, "subtype %d", (int) alg);
	check(memcmp(uuid, fx->key_uuid.data, 16) == 0, "key uuid");
	check(type == e->plain_type, "bson type 0x%02x vs 0x%02x", type,
		  e->plain_type);
	check(e->expected.len == fle_blob_len(e->plain.len), "blob length");
}

static void
check_decrypts_to_plain(Fixture *fx, CorpusEntry *e, const uint8_t *blob,
						size_t len, const char *what)
{
	uint8_t    *out = malloc(len);
	size_t		out_len = 0;
	FleStatus	st;

	st = fle_blob_decrypt(fx->ctx, blob, len, out, &out_len);
	check(st == FLE_OK, "%s decrypt: %s", what, fle_status_message(st));
	check(bytes_equal(out, out_len, e->plain.data, e->plain.len),
		  "%s decrypts to the plaintext value", what);
	free(out);
}

static void
test_det_entry(Fixture *fx, CorpusEntry *e)
{
	size_t		cap = fle_blob_len(e->plain.len);
	uint8_t    *out = malloc(cap);
	uint8_t    *again = malloc(cap);
	size_t		out_len = 0,
				again_len = 0;
	FleStatus	st;

	check_expected_header(fx, e, FLE_DETERMINISTIC);
	st = fle_blob_encrypt(fx->ctx, FLE_DETERMINISTIC, fx->key_uuid.data,
						  e->plain_type, e->plain.data, e->plain.len,
						  out, &out_len);
	check(st == FLE_OK, "encrypt: %s", fle_status_message(st));
	check(out_len == cap, "encrypted length");
	check(bytes_equal(out, out_len, e->expected.data, e->expected.len),
		  "deterministic encryption equals corpus-encrypted.json");
	st = fle_blob_encrypt(fx->ctx, FLE_DETERMINISTIC, fx->key_uuid.data,
						  e->plain_type, e->plain.data, e->plain.len,
						  again, &again_len);
	check(st == FLE_OK && bytes_equal(out, out_len, again, again_len),
		  "deterministic twice gives the same bytes");
	check_decrypts_to_plain(fx, e, e->expected.data, e->expected.len, "expected");
	free(out);
	free(again);
}

static void
test_rand_entry(Fixture *fx, CorpusEntry *e)
{
	size_t		cap = fle_blob_len(e->plain.len);
	uint8_t    *out = malloc(cap);
	uint8_t    *out2 = malloc(cap);
	size_t		out_len = 0,
				out2_len = 0;
	FleStatus	st;

	check_expected_header(fx, e, FLE_RANDOM);
	check_decrypts_to_plain(fx, e, e->expected.data, e->expected.len, "expected");

	st = fle_blob_encrypt(fx->ctx, FLE_RANDOM, fx->key_uuid.data,
						  e->plain_type, e->plain.data, e->plain.len,
						  out, &out_len);
	check(st == FLE_OK, "encrypt: %s", fle_status_message(st));
	check(out_len == e->expected.len, "fresh blob has the corpus length");
	check(out_len >= 18 && memcmp(out, e->expected.data, 18) == 0,
		  "fresh blob has the corpus header");
	check(!bytes_equal(out, out_len, e->expected.data, e->expected.len),
		  "fresh random encryption differs from the corpus");
	st = fle_blob_encrypt(fx->ctx, FLE_RANDOM, fx->key_uuid.data,
						  e->plain_type, e->plain.data, e->plain.len,
						  out2, &out2_len);
	check(st == FLE_OK && !bytes_equal(out, out_len, out2, out2_len),
		  "two random encryptions differ");
	check_decrypts_to_plain(fx, e, out, out_len, "fresh");
	free(out);
	free(out2);
}

static void
test_corpus(Fixture *fx, int *n_det, int *n_rand, int *n_disallowed)
{
	bson_iter_t it;

	*n_det = *n_rand = *n_disallowed = 0;
	if (!bson_iter_init(&it, fx->corpus))
		fatal("corpus");
	while (bson_iter_next(&it))
	{
		CorpusEntry e;
		char		name[256];

		if (!corpus_entry_load(fx, &it, &e))
			continue;
		if (strcmp(e.kms, "local") != 0)
		{
			corpus_entry_free(&e);
			continue;
		}
		if (!e.allowed)
			(*n_disallowed)++;
		else if (strcmp(e.algo, "det") == 0)
		{
			snprintf(name, sizeof(name), "corpus det %s", e.name);
			begin_case(name);
			test_det_entry(fx, &e);
			end_case();
			(*n_det)++;
		}
		else if (strcmp(e.algo, "rand") == 0)
		{
			snprintf(name, sizeof(name), "corpus rand %s", e.name);
			begin_case(name);
			test_rand_entry(fx, &e);
			end_case();
			(*n_rand)++;
		}
		else
			fatal("unknown algo in corpus");
		corpus_entry_free(&e);
	}

	begin_case("corpus entry counts (53 det, 89 rand, 28 disallowed local)");
	check(*n_det == 53, "det local allowed: %d", *n_det);
	check(*n_rand == 89, "rand local allowed: %d", *n_rand);
	check(*n_disallowed == 28, "disallowed local: %d", *n_disallowed);
	end_case();
}

/* ----------------------------------------------------------------
 *		4. Tampering and truncation
 * ----------------------------------------------------------------
 */

static Bytes
expected_blob_of(Fixture *fx, const char *name)
{
	bson_iter_t it;
	CorpusEntry e;
	Bytes		blob;

	if (!bson_iter_init_find(&it, fx->corpus, name) ||
		!corpus_entry_load(fx, &it, &e))
		fatal(name);
	blob = e.expected;
	e.expected.data = NULL;
	corpus_entry_free(&e);
	return blob;
}

static void
test_tamper_blob(Fixture *fx, const char *name)
{
	static const uint8_t masks[] = {0x01, 0x80, 0xff};
	Bytes		blob = expected_blob_of(fx, name);
	size_t		cap = blob.len + 64;
	uint8_t    *copy = malloc(cap);
	uint8_t    *out = malloc(cap);
	size_t		out_len;
	size_t		i,
				m,
				len;
	char		case_title[256];
	FleStatus	st;

	snprintf(case_title, sizeof(case_title), "tamper every byte of %s", name);
	begin_case(case_title);
	st = fle_blob_decrypt(fx->ctx, blob.data, blob.len, out, &out_len);
	check(st == FLE_OK, "untampered blob decrypts");
	for (i = 0; i < blob.len; i++)
	{
		for (m = 0; m < sizeof(masks); m++)
		{
			memcpy(copy, blob.data, blob.len);
			copy[i] ^= masks[m];
			st = fle_blob_decrypt(fx->ctx, copy, blob.len, out, &out_len);
			check(st == (i == 0 ? FLE_ERR_SUBTYPE : FLE_ERR_TAG),
				  "byte %zu ^ 0x%02x: %s", i, masks[m], fle_status_message(st));
			check(out_len == 0, "out_len 0 on failure");
		}
	}
	/* switching deterministic <-> random is caught by the tag (AAD) */
	memcpy(copy, blob.data, blob.len);
	copy[0] = copy[0] == 1 ? 2 : 1;
	st = fle_blob_decrypt(fx->ctx, copy, blob.len, out, &out_len);
	check(st == FLE_ERR_TAG, "subtype swapped: %s", fle_status_message(st));
	end_case();

	snprintf(case_title, sizeof(case_title), "truncate/extend %s", name);
	begin_case(case_title);
	for (len = 0; len < blob.len; len++)
	{
		FleStatus	want;

		st = fle_blob_decrypt(fx->ctx, blob.data, len, out, &out_len);
		if (len < FLE_MIN_BLOB_LEN || (len - 18 - 48) % 16 != 0)
			want = FLE_ERR_LENGTH;
		else
			want = FLE_ERR_TAG;
		check(st == want, "length %zu: %s", len, fle_status_message(st));
	}
	for (len = blob.len + 1; len <= blob.len + 32; len++)
	{
		memcpy(copy, blob.data, blob.len);
		memset(copy + blob.len, 0, len - blob.len);
		st = fle_blob_decrypt(fx->ctx, copy, len, out, &out_len);
		check(st == FLE_ERR_LENGTH || st == FLE_ERR_TAG,
			  "extended to %zu: %s", len, fle_status_message(st));
	}
	/* dropping a whole block from the front of S */
	if (blob.len >= 82 + 16)
	{
		memcpy(copy, blob.data, 18 + 16);
		memcpy(copy + 34, blob.data + 50, blob.len - 50);
		st = fle_blob_decrypt(fx->ctx, copy, blob.len - 16, out, &out_len);
		check(st == FLE_ERR_TAG, "block removed: %s", fle_status_message(st));
	}
	end_case();

	snprintf(case_title, sizeof(case_title), "wrong key for %s", name);
	begin_case(case_title);
	{
		uint8_t		key[FLE_KEY_LEN];
		FleAeadCtx *other;

		check(fle_random_bytes(key, sizeof(key)) == 1, "random key");
		other = fle_aead_new(key);
		check(other != NULL, "fle_aead_new");
		st = fle_blob_decrypt(other, blob.data, blob.len, out, &out_len);
		check(st == FLE_ERR_TAG, "other key: %s", fle_status_message(st));
		fle_aead_free(other);
	}
	end_case();

	free(copy);
	free(out);
	bytes_free(&blob);
}

/* ----------------------------------------------------------------
 *		Independent reference: one-shot OpenSSL, and bad padding
 * ----------------------------------------------------------------
 */

static void
ref_hmac_sha512(const uint8_t *key, const uint8_t *data, size_t len,
				uint8_t out[64])
{
	size_t		out_len = 0;

	if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA512", NULL, key, 32, data, len,
				  out, 64, &out_len) == NULL || out_len != 64)
		fatal("EVP_Q_mac");
}

/* AES-256-CBC without padding over already block-aligned data. */
static void
ref_cbc_nopad(const uint8_t *key, const uint8_t *iv, const uint8_t *in,
			  size_t len, uint8_t *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int			n = 0;

	if (c == NULL ||
		EVP_EncryptInit_ex(c, EVP_aes_256_cbc(), NULL, key, iv) != 1 ||
		EVP_CIPHER_CTX_set_padding(c, 0) != 1 ||
		EVP_EncryptUpdate(c, out, &n, in, (int) len) != 1 || (size_t) n != len)
		fatal("reference AES");
	EVP_CIPHER_CTX_free(c);
}

/*
 * Builds header || IV || S || T with S = CBC(padded) where padded is given
 * verbatim (so padding can be made invalid) and a correct tag.
 */
static size_t
ref_blob(const uint8_t *dek, const uint8_t header[18], const uint8_t iv[16],
		 const uint8_t *padded, size_t padded_len, uint8_t *out)
{
	uint8_t		mac_in[18 + 16 + 256 + 8];
	uint8_t		mac[64];
	size_t		s_end = 18 + 16 + padded_len;

	memcpy(out, header, 18);
	memcpy(out + 18, iv, 16);
	ref_cbc_nopad(dek + 32, iv, padded, padded_len, out + 34);
	memcpy(mac_in, out, s_end);
	memset(mac_in + s_end, 0, 8);
	mac_in[s_end + 6] = (18 * 8) >> 8;
	mac_in[s_end + 7] = (18 * 8) & 0xff;
	ref_hmac_sha512(dek, mac_in, s_end + 8, mac);
	memcpy(out + s_end, mac, 32);
	return s_end + 32;
}

static void
test_reference_and_padding(Fixture *fx)
{
	uint8_t		header[18];
	uint8_t		iv[16];
	uint8_t		padded[48];
	uint8_t		blob[18 + 16 + 48 + 32];
	uint8_t		ours[sizeof(blob)];
	uint8_t		out[sizeof(blob)];
	size_t		blob_len,
				ours_len,
				out_len;
	size_t		pt_len;
	FleStatus	st;

	header[0] = FLE_RANDOM;
	memcpy(header + 1, fx->key_uuid.data, 16);
	header[17] = 0x05;

	begin_case("independent one-shot OpenSSL reference, all padding lengths");
	for (pt_len = 0; pt_len <= 32; pt_len++)
	{
		size_t		pad = 16 - pt_len % 16;

		check(fle_random_bytes(iv, 16) == 1, "iv");
		check(fle_random_bytes(padded, pt_len) == 1, "pt");
		memset(padded + pt_len, (int) pad, pad);
		blob_len = ref_blob(fx->dek.data, header, iv, padded, pt_len + pad, blob);
		st = fle_aead_encrypt(fx->ctx, header, 18, padded, pt_len, iv,
							  ours + 18, &ours_len);
		memcpy(ours, header, 18);
		check(st == FLE_OK && ours_len + 18 == blob_len &&
			  memcmp(ours, blob, blob_len) == 0, "encrypt %zu bytes", pt_len);
		st = fle_blob_decrypt(fx->ctx, blob, blob_len, out, &out_len);
		check(st == FLE_OK && bytes_equal(out, out_len, padded, pt_len),
			  "decrypt %zu bytes", pt_len);
	}
	end_case();

	begin_case("valid tag, invalid PKCS#7 padding -> FLE_ERR_PADDING");
	{
		static const struct
		{
			uint8_t		last;	/* final byte */
			int			fill;	/* byte 14, or -1 for random */
		}			cases[] = {{0x00, -1}, {0x11, -1}, {0xff, -1},
		{0x02, 0x01}, {0x10, 0x0f}, {0x03, 0x00}};
		size_t		i;

		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		{
			check(fle_random_bytes(iv, 16) == 1, "iv");
			check(fle_random_bytes(padded, 32) == 1, "pt");
			padded[31] = cases[i].last;
			if (cases[i].fill >= 0)
			{
				memset(padded + 16, cases[i].last, 16);
				padded[30] = (uint8_t) cases[i].fill;
			}
			blob_len = ref_blob(fx->dek.data, header, iv, padded, 32, blob);
			out_len = 777;
			memset(out, 0xAA, sizeof(out));
			st = fle_blob_decrypt(fx->ctx, blob, blob_len, out, &out_len);
			check(st == FLE_ERR_PADDING, "case %zu: %s", i,
				  fle_status_message(st));
			check(out_len == 0, "out_len 0");
			check(memcmp(out, padded, 16) != 0,
				  "no plaintext left in out on padding failure");
		}
	}
	end_case();
}

/* ----------------------------------------------------------------
 *		Random pool
 * ----------------------------------------------------------------
 */

static void
test_random(void)
{
	uint8_t		a[32],
				b[32],
				zero[32] = {0};
	uint8_t    *big = malloc(100000);
	int			fds[2];
	pid_t		pid;
	int			status;
	size_t		i;

	begin_case("fle_random_bytes basics");
	check(fle_random_bytes(a, 32) == 1 && fle_random_bytes(b, 32) == 1,
		  "draws succeed");
	check(memcmp(a, b, 32) != 0 && memcmp(a, zero, 32) != 0, "draws differ");
	check(fle_random_bytes(a, 0) == 1, "zero length");
	check(fle_random_bytes(NULL, 0) == 1 && fle_random_bytes(NULL, 1) == 0,
		  "NULL out");
	/* walk across pool refills and the large-request path */
	for (i = 0; i < 1000; i++)
		check(fle_random_bytes(big, 1 + i % 600) == 1, "small draw %zu", i);
	check(fle_random_bytes(big, 100000) == 1, "large draw");
	fle_random_discard();
	check(fle_random_bytes(a, 32) == 1, "draw after discard");
	free(big);
	end_case();

	begin_case("fle_random_bytes is fork-safe");
	check(fle_random_bytes(a, 1) == 1, "fill the parent's pool");
	if (pipe(fds) != 0)
		fatal("pipe");
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fatal("fork");
	if (pid == 0)
	{
		uint8_t		child[32];
		int			ok;

		close(fds[0]);
		ok = fle_random_bytes(child, 32) == 1 &&
			write(fds[1], child, 32) == 32;
		close(fds[1]);
		_exit(ok ? 0 : 1);
	}
	close(fds[1]);
	check(read(fds[0], b, 32) == 32, "read child bytes");
	close(fds[0]);
	check(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
		  WEXITSTATUS(status) == 0, "child ok");
	check(fle_random_bytes(a, 32) == 1, "parent draw");
	check(memcmp(a, b, 32) != 0, "child did not reuse the parent's pool");
	end_case();
}

/* ----------------------------------------------------------------
 *		5. Benchmark
 * ----------------------------------------------------------------
 */

typedef struct BenchClock
{
	double		wall;
	double		cpu;
} BenchClock;

static BenchClock
bench_now(void)
{
	struct timespec wall,
				cpu;
	BenchClock	c;

	clock_gettime(CLOCK_MONOTONIC, &wall);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
	c.wall = (double) wall.tv_sec + (double) wall.tv_nsec / 1e9;
	c.cpu = (double) cpu.tv_sec + (double) cpu.tv_nsec / 1e9;
	return c;
}

/* ops/s by wall clock, and CPU time per op (steadier on a busy machine) */
static void
report(const char *what, long iterations, BenchClock start)
{
	BenchClock	end = bench_now();
	double		n = (double) iterations;

	printf("%-14s %9.0f ops/s  %7.3f us/op wall  %7.3f us/op cpu\n", what,
		   n / (end.wall - start.wall), (end.wall - start.wall) * 1e6 / n,
		   (end.cpu - start.cpu) * 1e6 / n);
}

static int
run_bench(long iterations)
{
	uint8_t		dek[FLE_KEY_LEN];
	uint8_t		uuid[16];
	uint8_t		pt[4 + 100 + 1];	/* BSON string "aaa...a" (100 chars) */
	uint8_t		blob[256],
				out[256];
	size_t		blob_len,
				out_len;
	FleAeadCtx *ctx;
	BenchClock	t;
	long		i;
	unsigned	sink = 0;

	if (fle_random_bytes(dek, sizeof(dek)) != 1 ||
		fle_random_bytes(uuid, sizeof(uuid)) != 1)
		return 1;
	ctx = fle_aead_new(dek);
	if (ctx == NULL)
		return 1;
	pt[0] = 101;
	pt[1] = pt[2] = pt[3] = 0;
	memset(pt + 4, 'a', 100);
	pt[104] = 0;

	printf("100-byte string value (plaintext %zu bytes, blob %zu bytes), %ld iterations\n",
		   sizeof(pt), fle_blob_len(sizeof(pt)), iterations);

	t = bench_now();
	for (i = 0; i < iterations; i++)
	{
		pt[5] = (uint8_t) i;	/* vary the value */
		if (fle_blob_encrypt(ctx, FLE_DETERMINISTIC, uuid, 0x02, pt, sizeof(pt),
							 blob, &blob_len) != FLE_OK)
			return 1;
		sink += blob[40];
	}
	report("det-encrypt", iterations, t);

	t = bench_now();
	for (i = 0; i < iterations; i++)
	{
		if (fle_blob_encrypt(ctx, FLE_RANDOM, uuid, 0x02, pt, sizeof(pt),
							 blob, &blob_len) != FLE_OK)
			return 1;
		sink += blob[40];
	}
	report("rand-encrypt", iterations, t);

	t = bench_now();
	for (i = 0; i < iterations; i++)
	{
		if (fle_blob_decrypt(ctx, blob, blob_len, out, &out_len) != FLE_OK)
			return 1;
		sink += out[5];
	}
	report("decrypt", iterations, t);

	fle_aead_free(ctx);
	printf("(checksum %u)\n", sink);	/* keeps the loops honest */
	return 0;
}

/* ----------------------------------------------------------------
 *		main
 * ----------------------------------------------------------------
 */

int
main(int argc, char **argv)
{
	const char *dir = "data";
	Fixture		fx;
	int			n_det,
				n_rand,
				n_disallowed;

	if (argc >= 2 && strcmp(argv[1], "--bench") == 0)
	{
		long		iterations = argc >= 3 ? atol(argv[2]) : 1000000L;

		if (iterations <= 0 || run_bench(iterations) != 0)
		{
			fprintf(stderr, "benchmark failed\n");
			return 1;
		}
		return 0;
	}
	if (argc >= 2)
		dir = argv[1];

	memset(&fx, 0, sizeof(fx));
	fixture_load(&fx, dir);

	test_lengths();
	test_api_errors(&fx);
	test_unwrap_corpus_key(&fx);
	test_wrap_round_trip(&fx);
	test_unwrap_tampered(&fx);
	test_unwrap_wrong_master(&fx);
	test_corpus(&fx, &n_det, &n_rand, &n_disallowed);
	test_tamper_blob(&fx, "local_string_det_explicit_id");
	test_tamper_blob(&fx, "local_object_rand_explicit_id");
	test_tamper_blob(&fx, "payload=0,algo=det");
	test_tamper_blob(&fx, "payload=15,algo=rand");
	test_tamper_blob(&fx, "payload=16,algo=det");
	test_reference_and_padding(&fx);
	test_random();

	fixture_free(&fx);
	fle_random_discard();

	printf("corpus local entries: %d deterministic, %d random, %d disallowed (not "
		   "applicable here: type policy is the caller's)\n",
		   n_det, n_rand, n_disallowed);
	return report_cases();
}
