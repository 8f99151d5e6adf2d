/*-------------------------------------------------------------------------
 *
 * fle_aead.h
 *	  MongoDB client-side field level encryption (FLE1) primitives.
 *
 * This header and fle_aead.c own the pure cryptography of FLE1:
 *
 *	- AEAD_AES_256_CBC_HMAC_SHA_512 (encrypt, decrypt, deterministic IV),
 *	- the FLE1 blob carried in a BSON Binary of subtype 6,
 *	- wrapping and unwrapping of data keys with a "local" master key,
 *	- a pooled, fork-safe CSPRNG.
 *
 * The code is plain C99 on top of OpenSSL 3 EVP.  It includes no PostgreSQL
 * and no libbson header, knows nothing about which BSON types may be
 * encrypted, and never reports key bytes in its messages.
 *
 * Blob layout (the payload of BSON Binary subtype 6):
 *
 *	byte 0		subtype: 1 deterministic, 2 random (FleAlgorithm)
 *	bytes 1..16	key UUID (raw bytes of the data key's _id)
 *	byte 17		BSON type of the original value
 *	bytes 18..	IV (16) || AES-256-CBC(PKCS#7 padded value) || tag (32)
 *
 * The first 18 bytes are the AEAD's associated data; the plaintext is the
 * raw BSON value bytes (no type byte, no field name).
 *
 * Buffer contract: output buffers are sized by the caller with the *_len
 * helpers below; "out_len" arguments are output only (set to 0 on failure).
 * Input and output buffers must not overlap.  NULL buffers and plaintexts
 * over FLE_MAX_PLAINTEXT_LEN are reported as FLE_ERR_LENGTH.
 *
 * Thread safety: an FleAeadCtx must not be used by two threads at once,
 * and fle_random_bytes keeps one process-wide pool without locking.
 * PostgreSQL backends are single-threaded, which is the intended use.
 *
 *-------------------------------------------------------------------------
 */
#ifndef FLE_AEAD_H
#define FLE_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define FLE_KEY_LEN 96			/* DEK and local master key length */
#define FLE_SUBKEY_LEN 32		/* MAC_KEY, ENC_KEY and IV_KEY lengths */
#define FLE_IV_LEN 16
#define FLE_BLOCK_LEN 16		/* AES block */
#define FLE_TAG_LEN 32
#define FLE_UUID_LEN 16
#define FLE_BLOB_HEADER_LEN 18	/* subtype(1) + key uuid(16) + bson type(1) */
#define FLE_WRAPPED_DEK_LEN 160

/* largest plaintext accepted (OpenSSL lengths are int) */
#define FLE_MAX_PLAINTEXT_LEN ((size_t) 0x7fff0000)

/* smallest AEAD ciphertext: IV + one padding block + tag */
#define FLE_MIN_CIPHERTEXT_LEN (FLE_IV_LEN + FLE_BLOCK_LEN + FLE_TAG_LEN)
/* smallest blob: 82 bytes */
#define FLE_MIN_BLOB_LEN (FLE_BLOB_HEADER_LEN + FLE_MIN_CIPHERTEXT_LEN)

typedef enum FleStatus
{
	FLE_OK = 0,
	FLE_ERR_LENGTH,				/* buffer has an impossible length */
	FLE_ERR_TAG,				/* authentication failed: tampered or wrong key */
	FLE_ERR_PADDING,			/* tag valid but PKCS#7 padding invalid */
	FLE_ERR_CRYPTO,				/* OpenSSL or the random generator failed */
	FLE_ERR_SUBTYPE				/* blob subtype / algorithm is not 1 or 2 */
} FleStatus;

typedef enum FleAlgorithm
{
	FLE_DETERMINISTIC = 1,
	FLE_RANDOM = 2
} FleAlgorithm;					/* == blob subtype byte */

/* Human readable text for a status; never contains key or data bytes. */
extern const char *fle_status_message(FleStatus status);

/*
 * An AEAD context: the OpenSSL HMAC and AES contexts keyed once with one
 * 96-byte key and reused for every operation.
 */
typedef struct FleAeadCtx FleAeadCtx;

/* Returns NULL on allocation or OpenSSL failure. */
extern FleAeadCtx *fle_aead_new(const uint8_t key[FLE_KEY_LEN]);

/* Zeroes and frees; NULL is accepted. */
extern void fle_aead_free(FleAeadCtx *ctx);

/* 16 + 16 * (floor(n / 16) + 1) + 32 */
extern size_t fle_aead_ciphertext_len(size_t plaintext_len);

/*
 * Largest plaintext a ciphertext of ct_len bytes can decrypt to
 * (ct_len - 49), or 0 if ct_len is below the minimum.  Decryption output
 * buffers must hold this many bytes (ct_len bytes is always enough).
 */
extern size_t fle_aead_plaintext_max_len(size_t ciphertext_len);

/*
 * Low level AEAD_AES_256_CBC_HMAC_SHA_512.
 *
 * Encrypt: iv == NULL draws a random IV.  out receives IV || S || T and
 * must hold fle_aead_ciphertext_len(pt_len) bytes.  aad may be NULL when
 * aad_len is 0.
 *
 * Decrypt: verifies the tag in constant time before decrypting, then checks
 * the PKCS#7 padding.  out must hold fle_aead_plaintext_max_len(ct_len)
 * bytes; on failure nothing of the plaintext is left in it.
 */
extern FleStatus fle_aead_encrypt(FleAeadCtx *ctx,
								  const uint8_t *aad, size_t aad_len,
								  const uint8_t *pt, size_t pt_len,
								  const uint8_t *iv,
								  uint8_t *out, size_t *out_len);
extern FleStatus fle_aead_decrypt(FleAeadCtx *ctx,
								  const uint8_t *aad, size_t aad_len,
								  const uint8_t *ct, size_t ct_len,
								  uint8_t *out, size_t *out_len);

/*
 * Deterministic IV: HMAC-SHA-512(IV_KEY, AAD || AL || P)[0:16].
 * Returns FLE_ERR_CRYPTO only if OpenSSL fails.
 */
extern FleStatus fle_aead_deterministic_iv(FleAeadCtx *ctx,
										   const uint8_t *aad, size_t aad_len,
										   const uint8_t *pt, size_t pt_len,
										   uint8_t iv[FLE_IV_LEN]);

/* FLE1 blob (the payload of BSON Binary subtype 6) */

/* 18 + fle_aead_ciphertext_len(plaintext_len) */
extern size_t fle_blob_len(size_t plaintext_len);

/* out must hold fle_blob_len(pt_len) bytes. */
extern FleStatus fle_blob_encrypt(FleAeadCtx *ctx, FleAlgorithm alg,
								  const uint8_t key_uuid[FLE_UUID_LEN],
								  uint8_t bson_type,
								  const uint8_t *pt, size_t pt_len,
								  uint8_t *out, size_t *out_len);

/*
 * Checks len >= 82 and subtype 1 or 2, then returns the header fields.
 * Any of alg, key_uuid, bson_type may be NULL.  *key_uuid points into blob.
 */
extern FleStatus fle_blob_parse_header(const uint8_t *blob, size_t len,
									   FleAlgorithm *alg,
									   const uint8_t **key_uuid,
									   uint8_t *bson_type);

/*
 * Decrypts a blob with the key named by its header (the caller picks ctx
 * from fle_blob_parse_header's key_uuid).  out receives the raw BSON value
 * bytes and must hold fle_blob_plaintext_max_len(len) bytes (len is enough).
 */
extern size_t fle_blob_plaintext_max_len(size_t blob_len);
extern FleStatus fle_blob_decrypt(FleAeadCtx *ctx,
								  const uint8_t *blob, size_t len,
								  uint8_t *out, size_t *out_len);

/*
 * MongoDB "local" KMS key wrapping: the same AEAD keyed by the 96-byte master
 * key (bytes 64..95 are unused), a random IV and an empty AAD.  A 96-byte DEK
 * wraps to FLE_WRAPPED_DEK_LEN (160) bytes; other secret lengths work too.
 * Wrap: out must hold fle_aead_ciphertext_len(secret_len) bytes.
 * Unwrap: out must hold fle_aead_plaintext_max_len(wrapped_len) bytes.
 */
extern FleStatus fle_wrap_key(const uint8_t master[FLE_KEY_LEN],
							  const uint8_t *secret, size_t secret_len,
							  uint8_t *out, size_t *out_len);
extern FleStatus fle_unwrap_key(const uint8_t master[FLE_KEY_LEN],
								const uint8_t *wrapped, size_t wrapped_len,
								uint8_t *out, size_t *out_len);

/*
 * CSPRNG output from a batched pool refilled with OpenSSL's RAND_bytes.
 * Fork-safe: the pool remembers the pid that filled it and is discarded in
 * a child.  Handed-out bytes are zeroed in the pool.  Returns 1 on success,
 * 0 on failure (out is then zeroed).
 */
extern int	fle_random_bytes(uint8_t *out, size_t len);

/* Zeroes and forgets the random pool (e.g. before exit); optional. */
extern void fle_random_discard(void);

#endif							/* FLE_AEAD_H */
