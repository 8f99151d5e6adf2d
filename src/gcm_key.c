/*-------------------------------------------------------------------------
 *
 * gcm_key.c
 *	  AES-256-GCM decryption through OpenSSL's GCM mode functions over
 *	  AES-256-ECB (see gcm_key.h for why).
 *
 *-------------------------------------------------------------------------
 */
#include "gcm_key.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/modes.h>

#define AES_BLOCK 16
#define BATCH_BLOCKS 32			/* counter blocks per AES-ECB call */

struct GcmKey
{
	EVP_CIPHER_CTX *ecb;		/* AES-256-ECB, padding off */
	GCM128_CONTEXT *gcm;		/* GHASH key and per-message state */
	int			failed;			/* an AES call failed in this seal or open */
};

/* block128_f: one AES block (H, the tag's mask, a last partial block) */
static void
aes_block(const unsigned char in[16], unsigned char out[16], const void *key)
{
	GcmKey	   *gk = (GcmKey *) key;
	int			outl = 0;

	if (EVP_EncryptUpdate(gk->ecb, out, &outl, in, AES_BLOCK) != 1 ||
		outl != AES_BLOCK)
	{
		gk->failed = 1;
		memset(out, 0, AES_BLOCK);
	}
}

/*
 * ctr128_f: in XOR the AES keystream of nblocks counter blocks from ivec,
 * whose last 32 bits count (big endian, wrapping), as GCM wants.
 */
static void
aes_ctr32(const unsigned char *in, unsigned char *out, size_t nblocks,
		  const void *key, const unsigned char ivec[16])
{
	GcmKey	   *gk = (GcmKey *) key;
	unsigned char stream[BATCH_BLOCKS * AES_BLOCK];
	uint32_t	counter = ((uint32_t) ivec[12] << 24) | ((uint32_t) ivec[13] << 16) |
		((uint32_t) ivec[14] << 8) | ivec[15];

	while (nblocks > 0)
	{
		size_t		n = nblocks < BATCH_BLOCKS ? nblocks : BATCH_BLOCKS;
		int			outl = 0;

		for (size_t b = 0; b < n; b++, counter++)
		{
			unsigned char *block = stream + b * AES_BLOCK;

			memcpy(block, ivec, 12);
			block[12] = (unsigned char) (counter >> 24);
			block[13] = (unsigned char) (counter >> 16);
			block[14] = (unsigned char) (counter >> 8);
			block[15] = (unsigned char) counter;
		}
		if (EVP_EncryptUpdate(gk->ecb, stream, &outl, stream, (int) (n * AES_BLOCK)) != 1 ||
			outl != (int) (n * AES_BLOCK))
		{
			gk->failed = 1;
			memset(stream, 0, sizeof(stream));
		}
		for (size_t i = 0; i < n * AES_BLOCK; i++)
			out[i] = in[i] ^ stream[i];
		in += n * AES_BLOCK;
		out += n * AES_BLOCK;
		nblocks -= n;
	}
}

GcmKey *
gcm_key_new(const uint8_t *key)
{
	GcmKey	   *gk = calloc(1, sizeof(GcmKey));

	if (gk == NULL)
		return NULL;
	gk->ecb = EVP_CIPHER_CTX_new();
	if (gk->ecb == NULL ||
		EVP_EncryptInit_ex(gk->ecb, EVP_aes_256_ecb(), NULL, key, NULL) != 1 ||
		EVP_CIPHER_CTX_set_padding(gk->ecb, 0) != 1)
	{
		gcm_key_free(gk);
		return NULL;
	}
	/* computes the GHASH key H = AES(K, 0) with aes_block */
	gk->gcm = CRYPTO_gcm128_new(gk, aes_block);
	if (gk->gcm == NULL || gk->failed)
	{
		gcm_key_free(gk);
		return NULL;
	}
	return gk;
}

void
gcm_key_free(GcmKey *gk)
{
	if (gk == NULL)
		return;
	if (gk->gcm != NULL)
		CRYPTO_gcm128_release(gk->gcm); /* cleanses H and its tables */
	if (gk->ecb != NULL)
		EVP_CIPHER_CTX_free(gk->ecb);	/* cleanses the key schedule */
	free(gk);
}

int
gcm_key_open(GcmKey *gk, const uint8_t *nonce, const uint8_t *aad,
				size_t aadlen, const uint8_t *ciphertext, size_t len,
				const uint8_t *tag, uint8_t *out)
{
	gk->failed = 0;
	CRYPTO_gcm128_setiv(gk->gcm, nonce, GCM_KEY_NONCE_LEN);
	if ((aadlen > 0 && CRYPTO_gcm128_aad(gk->gcm, aad, aadlen) != 0) ||
		(len > 0 && CRYPTO_gcm128_decrypt_ctr32(gk->gcm, ciphertext, out, len,
												aes_ctr32) != 0) ||
		CRYPTO_gcm128_finish(gk->gcm, tag, GCM_KEY_TAG_LEN) != 0 ||
		gk->failed)
	{
		memset(out, 0, len);
		return 0;
	}
	return 1;
}

int
gcm_key_seal(GcmKey *gk, const uint8_t *nonce, const uint8_t *aad,
			 size_t aadlen, const uint8_t *plain, size_t len,
			 uint8_t *ciphertext, uint8_t *tag)
{
	gk->failed = 0;
	CRYPTO_gcm128_setiv(gk->gcm, nonce, GCM_KEY_NONCE_LEN);
	if ((aadlen > 0 && CRYPTO_gcm128_aad(gk->gcm, aad, aadlen) != 0) ||
		(len > 0 && CRYPTO_gcm128_encrypt_ctr32(gk->gcm, plain, ciphertext, len,
												aes_ctr32) != 0) ||
		gk->failed)
	{
		memset(ciphertext, 0, len);
		memset(tag, 0, GCM_KEY_TAG_LEN);
		return 0;
	}
	CRYPTO_gcm128_tag(gk->gcm, tag, GCM_KEY_TAG_LEN);
	return 1;
}
