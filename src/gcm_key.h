/*-------------------------------------------------------------------------
 *
 * gcm_key.h
 *	  AES-256-GCM with one key (seal, and open with the tag checked), for
 *	  short values at a fraction of the cost of OpenSSL's EVP AEAD
 *	  interface.
 *
 *	  encrypted_btree opens a stored index key at every comparison (some
 *	  twenty per lookup) and seals one per entry; encrypted_heap seals and
 *	  opens one value per column; most are a few bytes.  For those, EVP's
 *	  AES-256-GCM spends most of its time in the EVP and provider layers
 *	  (about 200 ns per open on a current x86-64 CPU).  Here, on x86-64
 *	  CPUs with AES-NI and PCLMULQDQ, messages up to 256 bytes are sealed
 *	  and opened by AES rounds and GHASH multiplications written with those
 *	  instructions (about 25 ns an open of 8 bytes); longer messages, and
 *	  every message on other CPUs, go through OpenSSL's own GCM mode code
 *	  (CRYPTO_gcm128_*, GHASH with the CPU's carry-less multiply) over
 *	  OpenSSL's AES-256-ECB, the counter blocks encrypted in batches
 *	  (about 80 ns).  Either way the bytes are EVP's and the tag is
 *	  compared in constant time; test/unit/test_gcm_key.c checks both ways
 *	  against EVP's AES-256-GCM, and `make -C test/unit bench` times EVP and
 *	  both ways.
 *
 *	  Single AES-256 blocks (no mode) are enciphered and deciphered the
 *	  same two ways: AES-NI rounds where the key has the CPU way, else
 *	  OpenSSL's AES-256-ECB.
 *
 *	  Plain C on OpenSSL 3, no PostgreSQL header.  A GcmKey holds the key
 *	  schedule and GHASH key of one AES-256 key; it must not be used by two
 *	  threads at once.  Nonces are 96 bits, tags 128 bits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef GCM_KEY_H
#define GCM_KEY_H

#include <stddef.h>
#include <stdint.h>

#define GCM_KEY_KEY_LEN 32
#define GCM_KEY_NONCE_LEN 12
#define GCM_KEY_TAG_LEN 16

typedef struct GcmKey GcmKey;

/*
 * A GcmKey for an AES-256 key (32 bytes); NULL when out of memory or
 * OpenSSL failed.  gcm_key_free zeroes what it holds.
 */
extern GcmKey *gcm_key_new(const uint8_t *key);
extern void gcm_key_free(GcmKey *gk);

/*
 * For tests: whether GcmKeys made from now on may use the CPU's AES-NI and
 * PCLMULQDQ instructions for short messages (1, the default; they do where
 * the CPU has them), or must use OpenSSL's GCM functions for every length
 * (0, as on other CPUs); and whether gk does.
 */
extern void gcm_key_allow_cpu_way(int allow);
extern int	gcm_key_uses_cpu_way(const GcmKey *gk);

/*
 * Encrypt len bytes of plain with nonce and the associated data aad
 * (aadlen bytes): the ciphertext (len bytes) to ciphertext, the tag to
 * tag.  Returns 1, or 0 if OpenSSL failed (ciphertext and tag zeroed).
 * plain and ciphertext may be the same buffer.
 */
extern int	gcm_key_seal(GcmKey *gk, const uint8_t *nonce,
						 const uint8_t *aad, size_t aadlen,
						 const uint8_t *plain, size_t len,
						 uint8_t *ciphertext, uint8_t *tag);

/*
 * Decrypt len bytes of ciphertext made with nonce, aad and tag.  Returns 1
 * and the plaintext in out when the tag verifies; 0 otherwise, with out
 * zeroed.  ciphertext and out may be the same buffer.
 */
extern int	gcm_key_open(GcmKey *gk, const uint8_t *nonce,
						 const uint8_t *aad, size_t aadlen,
						 const uint8_t *ciphertext, size_t len,
						 const uint8_t *tag, uint8_t *out);

/*
 * AES-256 of one 16-byte block, forward (encipher) or inverse (decipher),
 * with no mode: what encrypted_btree seals short fixed-length keys with
 * (encode-then-encipher, see sealed_key.c).  The CPU way where the key has
 * it, else OpenSSL's AES-256-ECB.  Returns 1, or 0 if OpenSSL failed (out
 * zeroed).  in and out may be the same buffer.
 */
extern int	gcm_key_encipher_block(GcmKey *gk, const uint8_t *in, uint8_t *out);
extern int	gcm_key_decipher_block(GcmKey *gk, const uint8_t *in, uint8_t *out);

#endif							/* GCM_KEY_H */
