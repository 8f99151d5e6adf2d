/*-------------------------------------------------------------------------
 *
 * gcm_key.c
 *	  AES-256-GCM with one key (see gcm_key.h for why), two ways:
 *
 *	  - short messages, on x86-64 CPUs with AES-NI and PCLMULQDQ: AES
 *	    rounds and GHASH multiplications written with those instructions
 *	    here (no table lookups, so no data-dependent memory access), the
 *	    key schedule expanded once per key;
 *	  - otherwise, and for longer messages: OpenSSL's GCM mode functions
 *	    (CRYPTO_gcm128_*) over OpenSSL's AES-256-ECB.
 *
 *	  Both give EVP's AES-256-GCM bytes; test/unit/test_gcm_key.c checks
 *	  each way against EVP.
 *
 *	  The GHASH arithmetic below keeps blocks byte-reversed in a 128-bit
 *	  register, so that bit 127 - i holds the coefficient of x^i (GCM
 *	  stores x^0 in the top bit of the first byte): products come out of
 *	  PCLMULQDQ bit-reversed, one bit short, and are shifted left by one,
 *	  then reduced modulo x^128 + x^7 + x^2 + x + 1 in that bit order.
 *	  (The method: S. Gueron and M. E. Kounavis, "Intel Carry-Less
 *	  Multiplication Instruction and its Usage for Computing the GCM
 *	  Mode", Intel, 2014.)
 *
 *-------------------------------------------------------------------------
 */
#include "gcm_key.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/modes.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GCM_KEY_X86 1
#include <immintrin.h>
#define X86_TARGET __attribute__((target("aes,pclmul,ssse3,sse4.1")))
#endif

#define AES_BLOCK 16
#define BATCH_BLOCKS 32			/* counter blocks per AES-ECB call */
#define CPU_MAX_LEN 256			/* longer messages: OpenSSL's GCM (faster there) */

struct GcmKey
{
#ifdef GCM_KEY_X86
	__m128i		round_keys[15];	/* AES-256 key schedule (CPU way) */
	__m128i		decrypt_keys[15];	/* the inverse cipher's schedule (CPU way) */
	__m128i		hash_powers[3]; /* H = AES(K, 0), H^2, H^3, byte-reversed (CPU way) */
#endif
	int			cpu;			/* short messages the CPU way */
	EVP_CIPHER_CTX *ecb;		/* AES-256-ECB, padding off */
	EVP_CIPHER_CTX *ecb_decrypt;	/* its inverse (single blocks) */
	GCM128_CONTEXT *gcm;		/* GHASH key and per-message state */
	int			failed;			/* an AES call failed in this seal or open */
};

static int	cpu_way_allowed = 1;

void
gcm_key_allow_cpu_way(int allow)
{
	cpu_way_allowed = allow;
}

int
gcm_key_uses_cpu_way(const GcmKey *gk)
{
	return gk->cpu;
}

#ifdef GCM_KEY_X86
/* ------------------------------------------------------------------------
 * The CPU way: AES-NI and PCLMULQDQ
 * ------------------------------------------------------------------------
 */
static int
cpu_has_instructions(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") &&
		__builtin_cpu_supports("ssse3") && __builtin_cpu_supports("sse4.1");
}

/* each 32-bit word of w XORed with the words below it */
X86_TARGET static inline __m128i
prefix_xor(__m128i w)
{
	w = _mm_xor_si128(w, _mm_slli_si128(w, 4));
	w = _mm_xor_si128(w, _mm_slli_si128(w, 4));
	return _mm_xor_si128(w, _mm_slli_si128(w, 4));
}

/*
 * One step of the AES-256 key schedule, making round key 2j from round key
 * 2j - 2 (prev) and assist = AESKEYGENASSIST(round key 2j - 1, rcon):
 * word 3 of assist is SubWord(RotWord(last word)) ^ rcon.  Each word of the
 * new key is the XOR of the words of prev up to it, and of that.
 */
X86_TARGET static inline __m128i
next_even_round_key(__m128i prev, __m128i assist)
{
	return _mm_xor_si128(prefix_xor(prev), _mm_shuffle_epi32(assist, 0xff));
}

/*
 * ... and round key 2j + 1 from round key 2j - 1 (prev), with word 2 of
 * assist = AESKEYGENASSIST(round key 2j, 0): SubWord(last word).
 */
X86_TARGET static inline __m128i
next_odd_round_key(__m128i prev, __m128i assist)
{
	return _mm_xor_si128(prefix_xor(prev), _mm_shuffle_epi32(assist, 0xaa));
}

/* AESKEYGENASSIST takes its round constant as an immediate: one macro per step */
#define EXPAND_STEP(rk, j, rcon) \
	do { \
		(rk)[2 * (j)] = next_even_round_key((rk)[2 * (j) - 2], \
											_mm_aeskeygenassist_si128((rk)[2 * (j) - 1], (rcon))); \
		if ((j) < 7) \
			(rk)[2 * (j) + 1] = next_odd_round_key((rk)[2 * (j) - 1], \
												   _mm_aeskeygenassist_si128((rk)[2 * (j)], 0)); \
	} while (0)

X86_TARGET static void
expand_key(const uint8_t *key, __m128i *rk)
{
	rk[0] = _mm_loadu_si128((const __m128i *) key);
	rk[1] = _mm_loadu_si128((const __m128i *) (key + 16));
	EXPAND_STEP(rk, 1, 0x01);
	EXPAND_STEP(rk, 2, 0x02);
	EXPAND_STEP(rk, 3, 0x04);
	EXPAND_STEP(rk, 4, 0x08);
	EXPAND_STEP(rk, 5, 0x10);
	EXPAND_STEP(rk, 6, 0x20);
	EXPAND_STEP(rk, 7, 0x40);
}

X86_TARGET static inline __m128i
aes_encrypt(const __m128i *rk, __m128i b)
{
	b = _mm_xor_si128(b, rk[0]);
#pragma GCC unroll 13
	for (int r = 1; r < 14; r++)
		b = _mm_aesenc_si128(b, rk[r]);
	return _mm_aesenclast_si128(b, rk[14]);
}

/*
 * The inverse cipher's schedule (the "equivalent inverse cipher" of
 * FIPS 197, 5.3.5): the round keys in reverse order, InvMixColumns applied
 * to all but the first and last.
 */
X86_TARGET static void
invert_key(const __m128i *rk, __m128i *dk)
{
	dk[0] = rk[14];
	for (int r = 1; r < 14; r++)
		dk[r] = _mm_aesimc_si128(rk[14 - r]);
	dk[14] = rk[0];
}

X86_TARGET static inline __m128i
aes_decrypt(const __m128i *dk, __m128i b)
{
	b = _mm_xor_si128(b, dk[0]);
#pragma GCC unroll 13
	for (int r = 1; r < 14; r++)
		b = _mm_aesdec_si128(b, dk[r]);
	return _mm_aesdeclast_si128(b, dk[14]);
}

/* two blocks at once (their rounds overlap in the CPU) */
X86_TARGET static inline void
aes_encrypt2(const __m128i *rk, __m128i *a, __m128i *b)
{
	__m128i		x = _mm_xor_si128(*a, rk[0]);
	__m128i		y = _mm_xor_si128(*b, rk[0]);

#pragma GCC unroll 13
	for (int r = 1; r < 14; r++)
	{
		x = _mm_aesenc_si128(x, rk[r]);
		y = _mm_aesenc_si128(y, rk[r]);
	}
	*a = _mm_aesenclast_si128(x, rk[14]);
	*b = _mm_aesenclast_si128(y, rk[14]);
}

X86_TARGET static inline __m128i
byte_reverse(__m128i x)
{
	return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7,
											8, 9, 10, 11, 12, 13, 14, 15));
}

/* x >> n as one 128-bit number, 0 < n < 64 */
X86_TARGET static inline __m128i
shift_right_128(__m128i x, int n)
{
	return _mm_xor_si128(_mm_srli_epi64(x, n),
						 _mm_srli_si128(_mm_slli_epi64(x, 64 - n), 8));
}

/* a 256-bit carry-less product, hi:lo */
typedef struct Product256
{
	__m128i		lo;
	__m128i		hi;
} Product256;

/* the carry-less product of a and b (byte-reversed blocks), unreduced */
X86_TARGET static inline Product256
clmul_product(__m128i a, __m128i b)
{
	Product256	p;
	__m128i		mid = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x01),
									_mm_clmulepi64_si128(a, b, 0x10));

	p.lo = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x00), _mm_slli_si128(mid, 8));
	p.hi = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x11), _mm_srli_si128(mid, 8));
	return p;
}

X86_TARGET static inline Product256
product_xor(Product256 a, Product256 b)
{
	a.lo = _mm_xor_si128(a.lo, b.lo);
	a.hi = _mm_xor_si128(a.hi, b.hi);
	return a;
}

/*
 * A product (or a sum of products: reduction is linear) reduced to an
 * element of GF(2^128), GCM's field, byte-reversed (bit 127 - i: x^i).
 */
X86_TARGET static inline __m128i
reduce_product(Product256 p)
{
	__m128i		lo = p.lo;
	__m128i		hi = p.hi;
	__m128i		carry_lo = _mm_srli_epi64(lo, 63);
	__m128i		carry_hi = _mm_srli_epi64(hi, 63);
	__m128i		fold;

	/* shifted left by one: the reversed product of two 128-bit numbers has 255 bits */
	lo = _mm_or_si128(_mm_slli_epi64(lo, 1), _mm_slli_si128(carry_lo, 8));
	hi = _mm_or_si128(_mm_or_si128(_mm_slli_epi64(hi, 1), _mm_slli_si128(carry_hi, 8)),
					  _mm_srli_si128(carry_lo, 8));

	/*
	 * Reduce: lo holds the terms of degree 128 and up (bit 127 - m: x^(128 +
	 * m)), each x^(128 + m) = x^(m + 7) + x^(m + 2) + x^(m + 1) + x^m.  The
	 * terms those shifts push below bit 0 (degree 128 and up again) are
	 * folded first: they come from the low word of lo, and land in its high
	 * word.
	 */
	fold = _mm_xor_si128(_mm_xor_si128(_mm_slli_epi64(lo, 63), _mm_slli_epi64(lo, 62)),
						 _mm_slli_epi64(lo, 57));
	lo = _mm_xor_si128(lo, _mm_slli_si128(fold, 8));
	return _mm_xor_si128(hi,
						 _mm_xor_si128(_mm_xor_si128(lo, shift_right_128(lo, 1)),
									   _mm_xor_si128(shift_right_128(lo, 2),
													 shift_right_128(lo, 7))));
}

/* a * b in GCM's field, byte-reversed */
X86_TARGET static inline __m128i
ghash_multiply(__m128i a, __m128i b)
{
	return reduce_product(clmul_product(a, b));
}

/*
 * Partial blocks go between memory and registers in 64-bit halves and
 * overlapping smaller words, without loops: a 16-byte load of bytes just
 * stored piecemeal into a buffer would wait for the stores to retire.
 */
static inline uint64_t
load_tail(const uint8_t *p, size_t n)
{
	uint32_t	a,
				b;

	if (n >= 4)
	{
		/* two 4-byte words, overlapping when n < 8 (same bytes, same places) */
		memcpy(&a, p, 4);
		memcpy(&b, p + n - 4, 4);
		return a | ((uint64_t) b << (8 * (n - 4)));
	}
	if (n == 0)
		return 0;
	return p[0] | ((uint64_t) p[n / 2] << (8 * (n / 2))) |
		((uint64_t) p[n - 1] << (8 * (n - 1)));
}

static inline void
store_tail(uint8_t *p, uint64_t v, size_t n)
{
	uint32_t	a = (uint32_t) v;
	uint32_t	b;

	if (n >= 4)
	{
		b = (uint32_t) (v >> (8 * (n - 4)));
		memcpy(p, &a, 4);
		memcpy(p + n - 4, &b, 4);
	}
	else if (n > 0)
	{
		p[0] = (uint8_t) v;
		p[n / 2] = (uint8_t) (v >> (8 * (n / 2)));
		p[n - 1] = (uint8_t) (v >> (8 * (n - 1)));
	}
}

/* up to 16 bytes at p as a block, zero-padded */
X86_TARGET static inline __m128i
load_partial(const uint8_t *p, size_t n)
{
	uint64_t	lo;

	if (n == AES_BLOCK)
		return _mm_loadu_si128((const __m128i *) p);
	if (n < 8)
		return _mm_cvtsi64_si128((long long) load_tail(p, n));
	memcpy(&lo, p, 8);
	return _mm_set_epi64x((long long) load_tail(p + 8, n - 8), (long long) lo);
}

X86_TARGET static inline void
store_partial(uint8_t *p, __m128i x, size_t n)
{
	uint64_t	lo = (uint64_t) _mm_cvtsi128_si64(x);

	if (n == AES_BLOCK)
		_mm_storeu_si128((__m128i *) p, x);
	else if (n < 8)
		store_tail(p, lo, n);
	else
	{
		memcpy(p, &lo, 8);
		store_tail(p + 8, (uint64_t) _mm_extract_epi64(x, 1), n - 8);
	}
}

/* GHASH state y after len bytes of data (the last block zero-padded) */
X86_TARGET static inline __m128i
ghash_bytes(__m128i y, __m128i h, const uint8_t *data, size_t len)
{
	for (size_t off = 0; off < len; off += AES_BLOCK)
	{
		size_t		n = len - off < AES_BLOCK ? len - off : AES_BLOCK;

		y = ghash_multiply(_mm_xor_si128(y, byte_reverse(load_partial(data + off, n))), h);
	}
	return y;
}

/* the counter block of the nonce and counter value c (J0 is c = 1) */
X86_TARGET static inline __m128i
counter_block(__m128i nonce_block, uint32_t c)
{
	return _mm_insert_epi32(nonce_block, (int) __builtin_bswap32(c), 3);
}

/*
 * AES(K, J0), the tag's mask, to *mask and the first block of keystream
 * (counter block 2) to *first: together, their rounds overlap.
 */
X86_TARGET static inline void
cpu_mask_and_first(const GcmKey *gk, __m128i nonce_block, __m128i *mask, __m128i *first)
{
	*mask = counter_block(nonce_block, 1);
	*first = counter_block(nonce_block, 2);
	aes_encrypt2(gk->round_keys, mask, first);
}

/* out = in XOR the keystream: first, then counter blocks 3, 4, ... */
X86_TARGET static inline void
cpu_ctr(const GcmKey *gk, __m128i nonce_block, __m128i first, const uint8_t *in,
		uint8_t *out, size_t len)
{
	uint32_t	c = 2;

	for (size_t off = 0; off < len; off += AES_BLOCK, c++)
	{
		size_t		n = len - off < AES_BLOCK ? len - off : AES_BLOCK;
		__m128i		ks = off == 0 ? first :
			aes_encrypt(gk->round_keys, counter_block(nonce_block, c));

		store_partial(out + off, _mm_xor_si128(load_partial(in + off, n), ks), n);
	}
}

/*
 * The tag of aad and ciphertext, masked with AES(K, J0).  GHASH of blocks
 * X1..Xn is X1 H^n + X2 H^(n-1) + ... + Xn H: when a message makes three
 * blocks or fewer (associated data and ciphertext of 16 bytes or less,
 * such as an index key's), the products are summed and reduced once.
 */
X86_TARGET static __m128i
cpu_tag(const GcmKey *gk, const uint8_t *aad, size_t aadlen,
		const uint8_t *ciphertext, size_t len, __m128i mask)
{
	__m128i		lengths = _mm_set_epi64x((long long) (aadlen * 8), (long long) (len * 8));
	__m128i		y;

	if (aadlen <= AES_BLOCK && len <= AES_BLOCK)
	{
		const __m128i *power = gk->hash_powers;
		int			n = 1 + (aadlen > 0) + (len > 0);
		Product256	sum = clmul_product(lengths, power[0]);

		if (len > 0)
			sum = product_xor(sum, clmul_product(byte_reverse(load_partial(ciphertext, len)),
												 power[1]));
		if (aadlen > 0)
			sum = product_xor(sum, clmul_product(byte_reverse(load_partial(aad, aadlen)),
												 power[n - 1]));
		y = reduce_product(sum);
	}
	else
	{
		y = ghash_bytes(_mm_setzero_si128(), gk->hash_powers[0], aad, aadlen);
		y = ghash_bytes(y, gk->hash_powers[0], ciphertext, len);
		y = ghash_multiply(_mm_xor_si128(y, lengths), gk->hash_powers[0]);
	}
	return _mm_xor_si128(byte_reverse(y), mask);
}

X86_TARGET static inline __m128i
load_nonce(const uint8_t *nonce)
{
	return load_partial(nonce, GCM_KEY_NONCE_LEN);
}

X86_TARGET static void
cpu_init(GcmKey *gk, const uint8_t *key)
{
	__m128i		h;

	expand_key(key, gk->round_keys);
	invert_key(gk->round_keys, gk->decrypt_keys);
	h = byte_reverse(aes_encrypt(gk->round_keys, _mm_setzero_si128()));
	gk->hash_powers[0] = h;
	gk->hash_powers[1] = ghash_multiply(h, h);
	gk->hash_powers[2] = ghash_multiply(gk->hash_powers[1], h);
}

X86_TARGET static int
cpu_seal(const GcmKey *gk, const uint8_t *nonce, const uint8_t *aad,
		 size_t aadlen, const uint8_t *plain, size_t len, uint8_t *ciphertext,
		 uint8_t *tag)
{
	__m128i		nonce_block = load_nonce(nonce);
	__m128i		mask,
				first;

	cpu_mask_and_first(gk, nonce_block, &mask, &first);
	cpu_ctr(gk, nonce_block, first, plain, ciphertext, len);
	_mm_storeu_si128((__m128i *) tag, cpu_tag(gk, aad, aadlen, ciphertext, len, mask));
	return 1;
}

/*
 * The tag is checked (in constant time) before anything is decrypted: out
 * is written only when it verifies.
 */
X86_TARGET static int
cpu_open(const GcmKey *gk, const uint8_t *nonce, const uint8_t *aad,
		 size_t aadlen, const uint8_t *ciphertext, size_t len,
		 const uint8_t *tag, uint8_t *out)
{
	__m128i		nonce_block = load_nonce(nonce);
	__m128i		mask,
				first,
				diff;

	cpu_mask_and_first(gk, nonce_block, &mask, &first);
	diff = _mm_xor_si128(cpu_tag(gk, aad, aadlen, ciphertext, len, mask),
						 _mm_loadu_si128((const __m128i *) tag));
	if (!_mm_testz_si128(diff, diff))
	{
		memset(out, 0, len);
		return 0;
	}
	cpu_ctr(gk, nonce_block, first, ciphertext, out, len);
	return 1;
}

X86_TARGET static void
cpu_encipher(const GcmKey *gk, const uint8_t *in, uint8_t *out)
{
	_mm_storeu_si128((__m128i *) out,
					 aes_encrypt(gk->round_keys, _mm_loadu_si128((const __m128i *) in)));
}

X86_TARGET static void
cpu_decipher(const GcmKey *gk, const uint8_t *in, uint8_t *out)
{
	_mm_storeu_si128((__m128i *) out,
					 aes_decrypt(gk->decrypt_keys, _mm_loadu_si128((const __m128i *) in)));
}
#endif							/* GCM_KEY_X86 */

/* ------------------------------------------------------------------------
 * OpenSSL's way: CRYPTO_gcm128_* over AES-256-ECB
 * ------------------------------------------------------------------------
 */
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

/* Begin a message under nonce with its associated data; 0 if OpenSSL failed. */
static int
openssl_begin(GcmKey *gk, const uint8_t *nonce, const uint8_t *aad, size_t aadlen)
{
	gk->failed = 0;
	CRYPTO_gcm128_setiv(gk->gcm, nonce, GCM_KEY_NONCE_LEN);
	return aadlen == 0 || CRYPTO_gcm128_aad(gk->gcm, aad, aadlen) == 0;
}

/* ------------------------------------------------------------------------
 * The interface (gcm_key.h)
 * ------------------------------------------------------------------------
 */
GcmKey *
gcm_key_new(const uint8_t *key)
{
	void	   *mem = NULL;
	GcmKey	   *gk;

	/* aligned for the vector registers it holds */
	if (posix_memalign(&mem, 64, sizeof(GcmKey)) != 0)
		return NULL;
	gk = memset(mem, 0, sizeof(GcmKey));
	gk->ecb = EVP_CIPHER_CTX_new();
	if (gk->ecb == NULL ||
		EVP_EncryptInit_ex(gk->ecb, EVP_aes_256_ecb(), NULL, key, NULL) != 1 ||
		EVP_CIPHER_CTX_set_padding(gk->ecb, 0) != 1)
	{
		gcm_key_free(gk);
		return NULL;
	}
	gk->ecb_decrypt = EVP_CIPHER_CTX_new();
	if (gk->ecb_decrypt == NULL ||
		EVP_DecryptInit_ex(gk->ecb_decrypt, EVP_aes_256_ecb(), NULL, key, NULL) != 1 ||
		EVP_CIPHER_CTX_set_padding(gk->ecb_decrypt, 0) != 1)
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
#ifdef GCM_KEY_X86
	if (cpu_way_allowed && cpu_has_instructions())
	{
		cpu_init(gk, key);
		gk->cpu = 1;
	}
#endif
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
	if (gk->ecb_decrypt != NULL)
		EVP_CIPHER_CTX_free(gk->ecb_decrypt);
	OPENSSL_cleanse(gk, sizeof(GcmKey));	/* ours */
	free(gk);
}

int
gcm_key_open(GcmKey *gk, const uint8_t *nonce, const uint8_t *aad,
			 size_t aadlen, const uint8_t *ciphertext, size_t len,
			 const uint8_t *tag, uint8_t *out)
{
#ifdef GCM_KEY_X86
	if (gk->cpu && len <= CPU_MAX_LEN)
		return cpu_open(gk, nonce, aad, aadlen, ciphertext, len, tag, out);
#endif
	if (!openssl_begin(gk, nonce, aad, aadlen) ||
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
#ifdef GCM_KEY_X86
	if (gk->cpu && len <= CPU_MAX_LEN)
		return cpu_seal(gk, nonce, aad, aadlen, plain, len, ciphertext, tag);
#endif
	if (!openssl_begin(gk, nonce, aad, aadlen) ||
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

/* one block, forward or inverse: the CPU way where gk has it, else OpenSSL's ECB */
static int
cipher_block(GcmKey *gk, int forward, const uint8_t *in, uint8_t *out)
{
	int			outl = 0;

#ifdef GCM_KEY_X86
	if (gk->cpu)
	{
		if (forward)
			cpu_encipher(gk, in, out);
		else
			cpu_decipher(gk, in, out);
		return 1;
	}
#endif
	if (EVP_CipherUpdate(forward ? gk->ecb : gk->ecb_decrypt, out, &outl, in, AES_BLOCK) != 1 ||
		outl != AES_BLOCK)
	{
		memset(out, 0, AES_BLOCK);
		return 0;
	}
	return 1;
}

int
gcm_key_encipher_block(GcmKey *gk, const uint8_t *in, uint8_t *out)
{
	return cipher_block(gk, 1, in, out);
}

int
gcm_key_decipher_block(GcmKey *gk, const uint8_t *in, uint8_t *out)
{
	return cipher_block(gk, 0, in, out);
}
