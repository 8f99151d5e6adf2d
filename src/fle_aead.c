/*-------------------------------------------------------------------------
 *
 * fle_aead.c
 *	  MongoDB FLE1 cryptography: AEAD_AES_256_CBC_HMAC_SHA_512, the FLE1
 *	  blob, "local" key wrapping and a pooled fork-safe CSPRNG.
 *
 * This file owns every byte of FLE1 ciphertext the extension produces or
 * accepts.  It is plain C99 + POSIX on OpenSSL 3 EVP and includes no
 * PostgreSQL or libbson header.  See fle_aead.h for the formats and
 * contracts.
 *
 * Key layout (96 bytes): MAC_KEY = K[0:32], ENC_KEY = K[32:64],
 * IV_KEY = K[64:96].  With AL = bit length of the AAD as a big-endian
 * 64-bit integer:
 *
 *	IV (deterministic) = HMAC-SHA-512(IV_KEY, AAD || AL || P)[0:16]
 *	S				   = AES-256-CBC(ENC_KEY, IV, PKCS7(P))
 *	T				   = HMAC-SHA-512(MAC_KEY, AAD || IV || S || AL)[0:32]
 *	output			   = IV || S || T
 *
 * Performance: every OpenSSL context is keyed once in fle_aead_new.  Per
 * operation, the HMAC contexts are re-initialised with a NULL key (which
 * reuses the precomputed key state) and the AES contexts only get a new
 * IV.  OpenSSL padding is disabled; PKCS#7 is done here, using a stack
 * block for the partial last block, so no operation allocates memory in
 * this file.
 *
 *-------------------------------------------------------------------------
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE			/* explicit_bzero, getpid */
#endif

#include "fle_aead.h"

#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define FLE_HMAC_LEN 64			/* SHA-512 output */
#define FLE_AL_LEN 8
#define FLE_MAC_KEY_OFFSET 0
#define FLE_ENC_KEY_OFFSET 32
#define FLE_IV_KEY_OFFSET 64

struct FleAeadCtx
{
	EVP_MAC_CTX *mac_ctx;		/* HMAC-SHA-512 keyed with MAC_KEY */
	EVP_MAC_CTX *iv_ctx;		/* HMAC-SHA-512 keyed with IV_KEY */
	EVP_CIPHER_CTX *enc_ctx;	/* AES-256-CBC encryption, ENC_KEY */
	EVP_CIPHER_CTX *dec_ctx;	/* AES-256-CBC decryption, ENC_KEY */
};


/* ----------------------------------------------------------------
 *		Small helpers
 * ----------------------------------------------------------------
 */

static void
fle_secure_zero(void *p, size_t len)
{
	if (p != NULL && len > 0)
		explicit_bzero(p, len);
}

/* AL: the AAD length in bits, 64-bit big-endian. */
static void
fle_encode_al(size_t aad_len, uint8_t al[FLE_AL_LEN])
{
	uint64_t	bits = (uint64_t) aad_len * 8;
	int			i;

	for (i = FLE_AL_LEN - 1; i >= 0; i--)
	{
		al[i] = (uint8_t) (bits & 0xff);
		bits >>= 8;
	}
}

/* Length of PKCS#7 padded plaintext: always adds 1..16 bytes. */
static size_t
fle_padded_len(size_t plaintext_len)
{
	return FLE_BLOCK_LEN * (plaintext_len / FLE_BLOCK_LEN + 1);
}

/* A buffer pointer is acceptable if it is non-NULL or the length is 0. */
static int
fle_buffer_ok(const void *p, size_t len)
{
	return p != NULL || len == 0;
}

const char *
fle_status_message(FleStatus status)
{
	switch (status)
	{
		case FLE_OK:
			return "success";
		case FLE_ERR_LENGTH:
			return "invalid length: truncated or malformed ciphertext, or missing buffer";
		case FLE_ERR_TAG:
			return "authentication failed: wrong key or modified ciphertext";
		case FLE_ERR_PADDING:
			return "invalid padding after decryption";
		case FLE_ERR_CRYPTO:
			return "cryptographic library failure";
		case FLE_ERR_SUBTYPE:
			return "unsupported encryption subtype: expected 1 (deterministic) or 2 (random)";
	}
	return "unknown status";
}


/* ----------------------------------------------------------------
 *		Context setup
 * ----------------------------------------------------------------
 */

/* An HMAC-SHA-512 context keyed once with a 32-byte subkey. */
static EVP_MAC_CTX *
fle_new_hmac(EVP_MAC *hmac, const uint8_t *subkey)
{
	EVP_MAC_CTX *mctx;
	OSSL_PARAM	params[2];
	char		digest[] = "SHA512";

	mctx = EVP_MAC_CTX_new(hmac);
	if (mctx == NULL)
		return NULL;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
												 digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (EVP_MAC_init(mctx, subkey, FLE_SUBKEY_LEN, params) != 1)
	{
		EVP_MAC_CTX_free(mctx);
		return NULL;
	}
	return mctx;
}

/* An AES-256-CBC context keyed once, OpenSSL padding off. */
static EVP_CIPHER_CTX *
fle_new_cbc(EVP_CIPHER *aes, const uint8_t *subkey, int encrypt)
{
	EVP_CIPHER_CTX *cctx;

	cctx = EVP_CIPHER_CTX_new();
	if (cctx == NULL)
		return NULL;

	if (EVP_CipherInit_ex(cctx, aes, NULL, subkey, NULL, encrypt) != 1 ||
		EVP_CIPHER_CTX_set_padding(cctx, 0) != 1)
	{
		EVP_CIPHER_CTX_free(cctx);
		return NULL;
	}
	return cctx;
}

FleAeadCtx *
fle_aead_new(const uint8_t key[FLE_KEY_LEN])
{
	FleAeadCtx *ctx;
	EVP_MAC    *hmac;
	EVP_CIPHER *aes;

	if (key == NULL)
		return NULL;

	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return NULL;

	hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	if (hmac != NULL && aes != NULL)
	{
		ctx->mac_ctx = fle_new_hmac(hmac, key + FLE_MAC_KEY_OFFSET);
		ctx->iv_ctx = fle_new_hmac(hmac, key + FLE_IV_KEY_OFFSET);
		ctx->enc_ctx = fle_new_cbc(aes, key + FLE_ENC_KEY_OFFSET, 1);
		ctx->dec_ctx = fle_new_cbc(aes, key + FLE_ENC_KEY_OFFSET, 0);
	}
	/* the contexts hold their own references */
	EVP_MAC_free(hmac);
	EVP_CIPHER_free(aes);

	if (ctx->mac_ctx == NULL || ctx->iv_ctx == NULL ||
		ctx->enc_ctx == NULL || ctx->dec_ctx == NULL)
	{
		fle_aead_free(ctx);
		return NULL;
	}
	return ctx;
}

void
fle_aead_free(FleAeadCtx *ctx)
{
	if (ctx == NULL)
		return;

	/* OpenSSL cleanses the key schedules and HMAC states it frees */
	EVP_MAC_CTX_free(ctx->mac_ctx);
	EVP_MAC_CTX_free(ctx->iv_ctx);
	EVP_CIPHER_CTX_free(ctx->enc_ctx);
	EVP_CIPHER_CTX_free(ctx->dec_ctx);
	fle_secure_zero(ctx, sizeof(*ctx));
	free(ctx);
}


/* ----------------------------------------------------------------
 *		Primitives: HMAC and CBC with PKCS#7
 * ----------------------------------------------------------------
 */

/*
 * HMAC-SHA-512 over the concatenation a || b || c with a pre-keyed context.
 * Re-initialising with a NULL key reuses the key set in fle_new_hmac.
 */
static int
fle_hmac3(EVP_MAC_CTX *mctx,
		  const uint8_t *a, size_t a_len,
		  const uint8_t *b, size_t b_len,
		  const uint8_t *c, size_t c_len,
		  uint8_t out[FLE_HMAC_LEN])
{
	size_t		out_len = 0;

	if (EVP_MAC_init(mctx, NULL, 0, NULL) != 1)
		return 0;
	if (a_len > 0 && EVP_MAC_update(mctx, a, a_len) != 1)
		return 0;
	if (b_len > 0 && EVP_MAC_update(mctx, b, b_len) != 1)
		return 0;
	if (c_len > 0 && EVP_MAC_update(mctx, c, c_len) != 1)
		return 0;
	if (EVP_MAC_final(mctx, out, &out_len, FLE_HMAC_LEN) != 1)
		return 0;
	return out_len == FLE_HMAC_LEN;
}

/* T = HMAC-SHA-512(MAC_KEY, AAD || IV || S || AL)[0:32] */
static int
fle_compute_tag(FleAeadCtx *ctx, const uint8_t *aad, size_t aad_len,
				const uint8_t *iv_and_s, size_t iv_and_s_len,
				uint8_t tag[FLE_TAG_LEN])
{
	uint8_t		al[FLE_AL_LEN];
	uint8_t		mac[FLE_HMAC_LEN];

	fle_encode_al(aad_len, al);
	if (!fle_hmac3(ctx->mac_ctx, aad, aad_len, iv_and_s, iv_and_s_len,
				   al, FLE_AL_LEN, mac))
		return 0;
	memcpy(tag, mac, FLE_TAG_LEN);
	return 1;
}

/*
 * AES-256-CBC over PKCS#7(pt); writes fle_padded_len(pt_len) bytes to out.
 * Whole blocks go straight from pt to out; the last, padded block is built
 * on the stack.
 */
static int
fle_cbc_encrypt(EVP_CIPHER_CTX *cctx, const uint8_t iv[FLE_IV_LEN],
				const uint8_t *pt, size_t pt_len, uint8_t *out)
{
	size_t		whole = pt_len - pt_len % FLE_BLOCK_LEN;
	size_t		rest = pt_len - whole;
	uint8_t		last[FLE_BLOCK_LEN];
	int			n;
	int			ok;

	if (EVP_EncryptInit_ex(cctx, NULL, NULL, NULL, iv) != 1)
		return 0;
	if (whole > 0 &&
		(EVP_EncryptUpdate(cctx, out, &n, pt, (int) whole) != 1 ||
		 (size_t) n != whole))
		return 0;

	if (rest > 0)
		memcpy(last, pt + whole, rest);
	memset(last + rest, (int) (FLE_BLOCK_LEN - rest), FLE_BLOCK_LEN - rest);
	ok = EVP_EncryptUpdate(cctx, out + whole, &n, last, FLE_BLOCK_LEN) == 1 &&
		n == FLE_BLOCK_LEN;
	fle_secure_zero(last, sizeof(last));
	return ok;
}

/*
 * Returns the PKCS#7 padding length (1..16) of the final block, or 0 if the
 * padding is invalid.  Runs over the whole block without early exit.
 */
static size_t
fle_pkcs7_pad_len(const uint8_t block[FLE_BLOCK_LEN])
{
	unsigned int pad = block[FLE_BLOCK_LEN - 1];
	unsigned int bad = (pad == 0) | (pad > FLE_BLOCK_LEN);
	unsigned int i;

	for (i = 0; i < FLE_BLOCK_LEN; i++)
	{
		unsigned int in_pad = (i >= FLE_BLOCK_LEN - pad);

		bad |= in_pad & (block[i] != pad);
	}
	return bad ? 0 : pad;
}

/*
 * AES-256-CBC decryption of s (a non-empty multiple of 16 bytes) and PKCS#7
 * removal.  All blocks but the last are decrypted into out, the last into a
 * stack block so that out never needs room for the padding.
 */
static FleStatus
fle_cbc_decrypt(EVP_CIPHER_CTX *cctx, const uint8_t iv[FLE_IV_LEN],
				const uint8_t *s, size_t s_len,
				uint8_t *out, size_t *out_len)
{
	size_t		head = s_len - FLE_BLOCK_LEN;
	uint8_t		last[FLE_BLOCK_LEN];
	size_t		pad;
	int			n;
	FleStatus	status = FLE_ERR_CRYPTO;

	if (EVP_DecryptInit_ex(cctx, NULL, NULL, NULL, iv) != 1)
		return FLE_ERR_CRYPTO;
	if (head > 0 &&
		(EVP_DecryptUpdate(cctx, out, &n, s, (int) head) != 1 ||
		 (size_t) n != head))
		goto fail;
	if (EVP_DecryptUpdate(cctx, last, &n, s + head, FLE_BLOCK_LEN) != 1 ||
		n != FLE_BLOCK_LEN)
		goto fail;

	pad = fle_pkcs7_pad_len(last);
	if (pad == 0)
	{
		status = FLE_ERR_PADDING;
		goto fail;
	}
	memcpy(out + head, last, FLE_BLOCK_LEN - pad);
	fle_secure_zero(last, sizeof(last));
	*out_len = head + FLE_BLOCK_LEN - pad;
	return FLE_OK;

fail:
	fle_secure_zero(out, head);
	fle_secure_zero(last, sizeof(last));
	return status;
}


/* ----------------------------------------------------------------
 *		AEAD_AES_256_CBC_HMAC_SHA_512
 * ----------------------------------------------------------------
 */

size_t
fle_aead_ciphertext_len(size_t plaintext_len)
{
	return FLE_IV_LEN + fle_padded_len(plaintext_len) + FLE_TAG_LEN;
}

size_t
fle_aead_plaintext_max_len(size_t ciphertext_len)
{
	if (ciphertext_len < FLE_MIN_CIPHERTEXT_LEN)
		return 0;
	return ciphertext_len - FLE_IV_LEN - FLE_TAG_LEN - 1;
}

FleStatus
fle_aead_deterministic_iv(FleAeadCtx *ctx,
						  const uint8_t *aad, size_t aad_len,
						  const uint8_t *pt, size_t pt_len,
						  uint8_t iv[FLE_IV_LEN])
{
	uint8_t		al[FLE_AL_LEN];
	uint8_t		mac[FLE_HMAC_LEN];

	if (ctx == NULL || iv == NULL || !fle_buffer_ok(aad, aad_len) ||
		!fle_buffer_ok(pt, pt_len))
		return FLE_ERR_LENGTH;

	fle_encode_al(aad_len, al);
	if (!fle_hmac3(ctx->iv_ctx, aad, aad_len, al, FLE_AL_LEN, pt, pt_len, mac))
		return FLE_ERR_CRYPTO;
	memcpy(iv, mac, FLE_IV_LEN);
	return FLE_OK;
}

FleStatus
fle_aead_encrypt(FleAeadCtx *ctx,
				 const uint8_t *aad, size_t aad_len,
				 const uint8_t *pt, size_t pt_len,
				 const uint8_t *iv,
				 uint8_t *out, size_t *out_len)
{
	uint8_t    *s;
	size_t		s_len;

	if (out_len != NULL)
		*out_len = 0;
	if (ctx == NULL || out == NULL || out_len == NULL ||
		!fle_buffer_ok(aad, aad_len) || !fle_buffer_ok(pt, pt_len) ||
		pt_len > FLE_MAX_PLAINTEXT_LEN)
		return FLE_ERR_LENGTH;

	s = out + FLE_IV_LEN;
	s_len = fle_padded_len(pt_len);

	if (iv == NULL)
	{
		if (!fle_random_bytes(out, FLE_IV_LEN))
			return FLE_ERR_CRYPTO;
	}
	else
		memmove(out, iv, FLE_IV_LEN);

	if (!fle_cbc_encrypt(ctx->enc_ctx, out, pt, pt_len, s))
		return FLE_ERR_CRYPTO;
	if (!fle_compute_tag(ctx, aad, aad_len, out, FLE_IV_LEN + s_len,
						 s + s_len))
		return FLE_ERR_CRYPTO;

	*out_len = FLE_IV_LEN + s_len + FLE_TAG_LEN;
	return FLE_OK;
}

FleStatus
fle_aead_decrypt(FleAeadCtx *ctx,
				 const uint8_t *aad, size_t aad_len,
				 const uint8_t *ct, size_t ct_len,
				 uint8_t *out, size_t *out_len)
{
	size_t		body_len;		/* IV || S */
	uint8_t		expected[FLE_TAG_LEN];

	if (out_len != NULL)
		*out_len = 0;
	if (ctx == NULL || ct == NULL || out == NULL || out_len == NULL ||
		!fle_buffer_ok(aad, aad_len))
		return FLE_ERR_LENGTH;
	if (ct_len < FLE_MIN_CIPHERTEXT_LEN ||
		(ct_len - FLE_IV_LEN - FLE_TAG_LEN) % FLE_BLOCK_LEN != 0 ||
		ct_len - FLE_MIN_CIPHERTEXT_LEN > FLE_MAX_PLAINTEXT_LEN)
		return FLE_ERR_LENGTH;

	body_len = ct_len - FLE_TAG_LEN;
	if (!fle_compute_tag(ctx, aad, aad_len, ct, body_len, expected))
		return FLE_ERR_CRYPTO;
	if (CRYPTO_memcmp(expected, ct + body_len, FLE_TAG_LEN) != 0)
		return FLE_ERR_TAG;

	return fle_cbc_decrypt(ctx->dec_ctx, ct, ct + FLE_IV_LEN,
						   body_len - FLE_IV_LEN, out, out_len);
}


/* ----------------------------------------------------------------
 *		FLE1 blob
 * ----------------------------------------------------------------
 */

size_t
fle_blob_len(size_t plaintext_len)
{
	return FLE_BLOB_HEADER_LEN + fle_aead_ciphertext_len(plaintext_len);
}

size_t
fle_blob_plaintext_max_len(size_t blob_len)
{
	if (blob_len < FLE_MIN_BLOB_LEN)
		return 0;
	return fle_aead_plaintext_max_len(blob_len - FLE_BLOB_HEADER_LEN);
}

static int
fle_algorithm_valid(int alg)
{
	return alg == FLE_DETERMINISTIC || alg == FLE_RANDOM;
}

FleStatus
fle_blob_encrypt(FleAeadCtx *ctx, FleAlgorithm alg,
				 const uint8_t key_uuid[FLE_UUID_LEN],
				 uint8_t bson_type,
				 const uint8_t *pt, size_t pt_len,
				 uint8_t *out, size_t *out_len)
{
	uint8_t		iv[FLE_IV_LEN];
	const uint8_t *iv_or_random = NULL;
	size_t		ct_len = 0;
	FleStatus	status;

	if (out_len != NULL)
		*out_len = 0;
	if (!fle_algorithm_valid(alg))
		return FLE_ERR_SUBTYPE;
	if (ctx == NULL || key_uuid == NULL || out == NULL || out_len == NULL)
		return FLE_ERR_LENGTH;

	/* the header is the associated data */
	out[0] = (uint8_t) alg;
	memcpy(out + 1, key_uuid, FLE_UUID_LEN);
	out[1 + FLE_UUID_LEN] = bson_type;

	if (alg == FLE_DETERMINISTIC)
	{
		status = fle_aead_deterministic_iv(ctx, out, FLE_BLOB_HEADER_LEN,
										   pt, pt_len, iv);
		if (status != FLE_OK)
			return status;
		iv_or_random = iv;
	}

	status = fle_aead_encrypt(ctx, out, FLE_BLOB_HEADER_LEN, pt, pt_len,
							  iv_or_random, out + FLE_BLOB_HEADER_LEN,
							  &ct_len);
	if (status != FLE_OK)
		return status;

	*out_len = FLE_BLOB_HEADER_LEN + ct_len;
	return FLE_OK;
}

FleStatus
fle_blob_parse_header(const uint8_t *blob, size_t len,
					  FleAlgorithm *alg,
					  const uint8_t **key_uuid,
					  uint8_t *bson_type)
{
	if (blob == NULL || len < FLE_MIN_BLOB_LEN)
		return FLE_ERR_LENGTH;
	if (!fle_algorithm_valid(blob[0]))
		return FLE_ERR_SUBTYPE;

	if (alg != NULL)
		*alg = (FleAlgorithm) blob[0];
	if (key_uuid != NULL)
		*key_uuid = blob + 1;
	if (bson_type != NULL)
		*bson_type = blob[1 + FLE_UUID_LEN];
	return FLE_OK;
}

FleStatus
fle_blob_decrypt(FleAeadCtx *ctx, const uint8_t *blob, size_t len,
				 uint8_t *out, size_t *out_len)
{
	FleStatus	status;

	if (out_len != NULL)
		*out_len = 0;
	status = fle_blob_parse_header(blob, len, NULL, NULL, NULL);
	if (status != FLE_OK)
		return status;

	return fle_aead_decrypt(ctx, blob, FLE_BLOB_HEADER_LEN,
							blob + FLE_BLOB_HEADER_LEN,
							len - FLE_BLOB_HEADER_LEN, out, out_len);
}


/* ----------------------------------------------------------------
 *		"local" KMS key wrapping
 * ----------------------------------------------------------------
 */

FleStatus
fle_wrap_key(const uint8_t master[FLE_KEY_LEN],
			 const uint8_t *secret, size_t secret_len,
			 uint8_t *out, size_t *out_len)
{
	FleAeadCtx *kek;
	FleStatus	status;

	if (out_len != NULL)
		*out_len = 0;
	if (master == NULL)
		return FLE_ERR_LENGTH;

	kek = fle_aead_new(master);
	if (kek == NULL)
		return FLE_ERR_CRYPTO;
	status = fle_aead_encrypt(kek, NULL, 0, secret, secret_len, NULL,
							  out, out_len);
	fle_aead_free(kek);
	return status;
}

FleStatus
fle_unwrap_key(const uint8_t master[FLE_KEY_LEN],
			   const uint8_t *wrapped, size_t wrapped_len,
			   uint8_t *out, size_t *out_len)
{
	FleAeadCtx *kek;
	FleStatus	status;

	if (out_len != NULL)
		*out_len = 0;
	if (master == NULL)
		return FLE_ERR_LENGTH;

	kek = fle_aead_new(master);
	if (kek == NULL)
		return FLE_ERR_CRYPTO;
	status = fle_aead_decrypt(kek, NULL, 0, wrapped, wrapped_len,
							  out, out_len);
	fle_aead_free(kek);
	return status;
}


/* ----------------------------------------------------------------
 *		Pooled, fork-safe CSPRNG
 * ----------------------------------------------------------------
 */

#define FLE_RANDOM_POOL_LEN 4096
#define FLE_RANDOM_CHUNK_MAX (1 << 30)	/* RAND_bytes takes an int */

/*
 * Bytes [FLE_RANDOM_POOL_LEN - avail, FLE_RANDOM_POOL_LEN) are unused;
 * everything before them has been handed out and zeroed.  A forked child
 * must never reuse its parent's bytes: a fork handler, registered before
 * the first fill, empties the pool in every child.  (Checking getpid() on
 * every draw would also work, but it is a system call, too slow to make
 * for every IV.)
 */
static struct
{
	uint8_t		bytes[FLE_RANDOM_POOL_LEN];
	size_t		avail;
	int			fork_handler_registered;
}			fle_pool;

void
fle_random_discard(void)
{
	fle_secure_zero(fle_pool.bytes, sizeof(fle_pool.bytes));
	fle_pool.avail = 0;
}

static void
fle_random_after_fork_in_child(void)
{
	fle_random_discard();
}

static int
fle_pool_refill(void)
{
	if (!fle_pool.fork_handler_registered)
	{
		if (pthread_atfork(NULL, NULL, fle_random_after_fork_in_child) != 0)
			return 0;
		fle_pool.fork_handler_registered = 1;
	}
	if (RAND_bytes(fle_pool.bytes, FLE_RANDOM_POOL_LEN) != 1)
	{
		fle_random_discard();
		return 0;
	}
	fle_pool.avail = FLE_RANDOM_POOL_LEN;
	return 1;
}

/* Large requests bypass the pool. */
static int
fle_random_direct(uint8_t *out, size_t len)
{
	while (len > 0)
	{
		int			chunk = len > FLE_RANDOM_CHUNK_MAX ?
			FLE_RANDOM_CHUNK_MAX : (int) len;

		if (RAND_bytes(out, chunk) != 1)
			return 0;
		out += chunk;
		len -= (size_t) chunk;
	}
	return 1;
}

static int
fle_random_from_pool(uint8_t *out, size_t len)
{
	while (len > 0)
	{
		uint8_t    *src;
		size_t		n;

		if (fle_pool.avail == 0 && !fle_pool_refill())
			return 0;

		n = len < fle_pool.avail ? len : fle_pool.avail;
		src = fle_pool.bytes + (FLE_RANDOM_POOL_LEN - fle_pool.avail);
		memcpy(out, src, n);
		fle_secure_zero(src, n);
		fle_pool.avail -= n;
		out += n;
		len -= n;
	}
	return 1;
}

int
fle_random_bytes(uint8_t *out, size_t len)
{
	int			ok;

	if (out == NULL)
		return len == 0;

	if (len > FLE_RANDOM_POOL_LEN / 4)
		ok = fle_random_direct(out, len);
	else
		ok = fle_random_from_pool(out, len);

	if (!ok)
		fle_secure_zero(out, len);
	return ok;
}
