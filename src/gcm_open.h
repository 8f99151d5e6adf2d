/*-------------------------------------------------------------------------
 *
 * gcm_open.h
 *	  AES-256-GCM decryption with its tag checked, for short values at a
 *	  fraction of the cost of OpenSSL's EVP AEAD interface.
 *
 *	  encrypted_btree opens a stored index key at every comparison (some
 *	  twenty per lookup) and encrypted_heap one value per column read;
 *	  most are a few bytes.  For those, EVP's AES-256-GCM spends most of
 *	  its time in the EVP and provider layers (about 200 ns per open on a
 *	  current x86-64 CPU).  This module runs OpenSSL's own GCM mode code
 *	  (CRYPTO_gcm128_*: GHASH with the CPU's carry-less multiply, the tag
 *	  compared in constant time) over OpenSSL's AES-256-ECB for the block
 *	  cipher, encrypting the counter blocks in batches: the same
 *	  computation, about 80 ns.  test/unit/test_gcm_open.c checks it
 *	  against EVP's AES-256-GCM, and `make -C test/unit bench` times both.
 *
 *	  Plain C on OpenSSL 3, no PostgreSQL header.  A GcmOpener holds the
 *	  key schedule and GHASH key of one AES-256 key; it must not be used
 *	  by two threads at once.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GCM_OPEN_H
#define GCM_OPEN_H

#include <stddef.h>
#include <stdint.h>

#define GCM_OPEN_KEY_LEN 32
#define GCM_OPEN_NONCE_LEN 12
#define GCM_OPEN_TAG_LEN 16

typedef struct GcmOpener GcmOpener;

/*
 * An opener for an AES-256 key (32 bytes); NULL when out of memory or
 * OpenSSL failed.  gcm_opener_free zeroes what it holds.
 */
extern GcmOpener *gcm_opener_new(const uint8_t *key);
extern void gcm_opener_free(GcmOpener *opener);

/*
 * Decrypt len bytes of AES-256-GCM ciphertext made with a 96-bit nonce,
 * the associated data aad (aadlen bytes) and a 16-byte tag.  Returns 1 and
 * the plaintext in out when the tag verifies; 0 otherwise, with out
 * zeroed.  ciphertext and out may be the same buffer.
 */
extern int	gcm_opener_open(GcmOpener *opener, const uint8_t *nonce,
							const uint8_t *aad, size_t aadlen,
							const uint8_t *ciphertext, size_t len,
							const uint8_t *tag, uint8_t *out);

#endif							/* GCM_OPEN_H */
