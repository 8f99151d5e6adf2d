/*-------------------------------------------------------------------------
 *
 * test_gcm_key.c
 *	  Unit tests of src/gcm_key.c, each run twice: with the CPU way
 *	  (AES-NI and PCLMULQDQ, where the CPU has them; then it must be taken)
 *	  and with OpenSSL's GCM functions only.  Either way it seals the same
 *	  bytes as OpenSSL's EVP AES-256-GCM and opens what EVP sealed (random keys, nonces,
 *	  associated data of several lengths, every plaintext length across the
 *	  batch boundaries, in place or not), refuses every single-bit change of the ciphertext, tag,
 *	  associated data or nonce (output zeroed), and opens the GCM
 *	  specification's test case 14 (McGrew and Viega, "The Galois/Counter
 *	  Mode of Operation", 2005: AES-256, zero key and IV, one zero block).
 *	  Single blocks: gcm_key_encipher_block and gcm_key_decipher_block give
 *	  EVP's AES-256-ECB bytes both ways (random keys and blocks, in place or
 *	  not), undo each other, and encipher the AES-256 example of FIPS 197
 *	  (appendix C.3).
 *
 *	  --bench: nanoseconds per open of an 8-byte value with 12 bytes of
 *	  associated data (an encrypted_btree key): EVP, gcm_key with OpenSSL's
 *	  GCM functions, gcm_key the CPU way.
 *
 *-------------------------------------------------------------------------
 */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <time.h>

#include "unit_harness.h"
#include "../../src/gcm_key.h"

#define MAX_LEN 1100			/* more than two batches of counter blocks */

static int	cpu_way;			/* the way under test: 1 CPU, 0 OpenSSL */

/* A GcmKey of the way under test (checked to be that way). */
static GcmKey *
new_key(const uint8_t *key)
{
	GcmKey	   *gk;

	gcm_key_allow_cpu_way(cpu_way);
	gk = gcm_key_new(key);
	if (gk == NULL)
		fatal("gcm_key_new");
	if (gcm_key_uses_cpu_way(gk) != cpu_way)
		fatal(cpu_way ? "gcm_key_new took the OpenSSL way" : "gcm_key_new took the CPU way");
	return gk;
}

/* begin_case, the way under test named */
static void
begin_way_case(const char *name)
{
	static char named[200];

	snprintf(named, sizeof(named), "%s (%s way)", name, cpu_way ? "CPU" : "OpenSSL");
	begin_case(named);
}

/* Does this CPU have what the CPU way needs? (asked independently of gcm_key.c) */
static int
cpu_has_aes_clmul(void)
{
#if defined(__x86_64__)
	__builtin_cpu_init();
	return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") &&
		__builtin_cpu_supports("ssse3") && __builtin_cpu_supports("sse4.1");
#else
	return 0;
#endif
}

/* EVP's AES-256-GCM (the oracle) */
static void
evp_seal(const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aadlen,
		 const uint8_t *plain, size_t len, uint8_t *ct, uint8_t *tag)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int			outl = 0,
				finl = 0;

	if (ctx == NULL ||
		EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, nonce) != 1 ||
		(aadlen > 0 && EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int) aadlen) != 1) ||
		EVP_EncryptUpdate(ctx, ct, &outl, plain, (int) len) != 1 ||
		EVP_EncryptFinal_ex(ctx, ct + outl, &finl) != 1 ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
		fatal("EVP AES-256-GCM failed");
	EVP_CIPHER_CTX_free(ctx);
}

static void
random_bytes(uint8_t *p, size_t len)
{
	if (len > 0 && RAND_bytes(p, (int) len) != 1)
		fatal("RAND_bytes");
}

static int
all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != 0)
			return 0;
	return 1;
}

static void
test_spec_case_14(void)
{
	static const uint8_t ct[16] = {
		0xce, 0xa7, 0x40, 0x3d, 0x4d, 0x60, 0x6b, 0x6e,
		0x07, 0x4e, 0xc5, 0xd3, 0xba, 0xf3, 0x9d, 0x18
	};
	static const uint8_t tag[16] = {
		0xd0, 0xd1, 0xc8, 0xa7, 0x99, 0x99, 0x6b, 0xf0,
		0x26, 0x5b, 0x98, 0xb5, 0xd4, 0x8a, 0xb9, 0x19
	};
	uint8_t		key[32] = {0};
	uint8_t		nonce[12] = {0};
	uint8_t		out[16];
	GcmKey	   *gk = new_key(key);

	begin_way_case("GCM specification test case 14");
	check(gcm_key_open(gk, nonce, NULL, 0, ct, 16, tag, out) == 1, "does not open");
	check(all_zero(out, 16), "the plaintext is not the zero block");
	gcm_key_free(gk);
	end_case();
}

/* EVP's AES-256-ECB of one block, forward or inverse (the oracle) */
static void
evp_ecb_block(const uint8_t *key, int encrypt, const uint8_t *in, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int			outl = 0;

	if (ctx == NULL ||
		EVP_CipherInit_ex(ctx, EVP_aes_256_ecb(), NULL, key, NULL, encrypt) != 1 ||
		EVP_CIPHER_CTX_set_padding(ctx, 0) != 1 ||
		EVP_CipherUpdate(ctx, out, &outl, in, 16) != 1 || outl != 16)
		fatal("EVP AES-256-ECB failed");
	EVP_CIPHER_CTX_free(ctx);
}

static void
test_fips_197_example(void)
{
	static const uint8_t plain[16] = {
		0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
		0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff
	};
	static const uint8_t want[16] = {
		0x8e, 0xa2, 0xb7, 0xca, 0x51, 0x67, 0x45, 0xbf,
		0xea, 0xfc, 0x49, 0x90, 0x4b, 0x49, 0x60, 0x89
	};
	uint8_t		key[32];
	uint8_t		out[16];
	GcmKey	   *gk;

	for (int i = 0; i < 32; i++)
		key[i] = (uint8_t) i;
	gk = new_key(key);
	begin_way_case("AES-256 single block, FIPS 197 appendix C.3");
	check(gcm_key_encipher_block(gk, plain, out) == 1 && bytes_equal(out, 16, want, 16),
		  "enciphers other bytes");
	check(gcm_key_decipher_block(gk, want, out) == 1 && bytes_equal(out, 16, plain, 16),
		  "deciphers other bytes");
	gcm_key_free(gk);
	end_case();
}

static void
test_blocks_match_evp_ecb(void)
{
	begin_way_case("single blocks are EVP's AES-256-ECB both ways");
	for (int k = 0; k < 8 && case_ok; k++)
	{
		uint8_t		key[32];
		GcmKey	   *gk;

		random_bytes(key, sizeof(key));
		gk = new_key(key);
		for (int b = 0; b < 64 && case_ok; b++)
		{
			uint8_t		in[16],
						want[16],
						out[16],
						back[16];

			random_bytes(in, sizeof(in));
			evp_ecb_block(key, 1, in, want);
			check(gcm_key_encipher_block(gk, in, out) == 1 && bytes_equal(out, 16, want, 16),
				  "key %d block %d: enciphers other bytes than EVP", k, b);
			check(gcm_key_decipher_block(gk, out, back) == 1 && bytes_equal(back, 16, in, 16),
				  "key %d block %d: deciphering does not give the block back", k, b);
			/* the inverse on a block nobody enciphered, in place */
			evp_ecb_block(key, 0, in, want);
			memcpy(out, in, 16);
			check(gcm_key_decipher_block(gk, out, out) == 1 && bytes_equal(out, 16, want, 16),
				  "key %d block %d: deciphers other bytes than EVP", k, b);
		}
		gcm_key_free(gk);
	}
	end_case();
}

/*
 * Checks of a seal or open (what) that returned result and wrote len bytes
 * to out (filled with 0xAA first, MAX_LEN bytes): it succeeded, wrote want,
 * and nothing past the end.
 */
static int
wrote_exactly(int result, const uint8_t *out, const uint8_t *want, size_t len,
			  const char *what)
{
	return check(result == 1, "len %zu: %s failed", len, what) &&
		check(bytes_equal(out, len, want, len), "len %zu: %s wrote other bytes than EVP's seal or its plaintext", len, what) &&
		check(len == MAX_LEN || out[len] == 0xAA, "len %zu: %s wrote past the end", len, what);
}

static void
test_opens_what_evp_sealed(void)
{
	static const size_t aadlens[] = {0, 12, 16, 33};
	uint8_t		key[32],
				nonce[12],
				aad[33],
				tag[16];
	uint8_t		tag2[16];
	static uint8_t plain[MAX_LEN],
				ct[MAX_LEN],
				out[MAX_LEN];

	begin_way_case("seals as EVP AES-256-GCM does and opens what it sealed, lengths 0..1100");
	for (size_t len = 0; len <= MAX_LEN; len++)
	{
		size_t		aadlen = aadlens[len % 4];
		GcmKey	   *gk;

		random_bytes(key, sizeof(key));
		random_bytes(nonce, sizeof(nonce));
		random_bytes(aad, sizeof(aad));
		random_bytes(plain, len);
		evp_seal(key, nonce, aad, aadlen, plain, len, ct, tag);
		gk = new_key(key);
		/* sealing: EVP's bytes, in place too */
		memset(out, 0xAA, sizeof(out));
		if (!wrote_exactly(gcm_key_seal(gk, nonce, aad, aadlen, plain, len, out, tag2),
						   out, ct, len, "seal") ||
			!check(bytes_equal(tag2, 16, tag, 16), "len %zu: sealed another tag than EVP", len))
			len = MAX_LEN;
		memcpy(out, plain, len);
		if (!check(gcm_key_seal(gk, nonce, aad, aadlen, out, len, out, tag2) == 1 &&
				   bytes_equal(out, len, ct, len), "len %zu: sealing in place", len))
			len = MAX_LEN;
		memset(out, 0xAA, sizeof(out));
		if (!wrote_exactly(gcm_key_open(gk, nonce, aad, aadlen, ct, len, tag, out),
						   out, plain, len, "open"))
			len = MAX_LEN;
		/* in place, with the same gk again */
		memcpy(out, ct, len);
		if (!check(gcm_key_open(gk, nonce, aad, aadlen, out, len, tag, out) == 1 &&
				   bytes_equal(out, len, plain, len), "len %zu: in place", len))
			len = MAX_LEN;
		gcm_key_free(gk);
	}
	end_case();
}

/* flip bit `bit` of p */
static void
flip(uint8_t *p, size_t bit)
{
	p[bit / 8] ^= (uint8_t) (1 << (bit % 8));
}

static void
expect_refused(GcmKey *gk, const uint8_t *nonce, const uint8_t *aad,
			   size_t aadlen, const uint8_t *ct, size_t len, const uint8_t *tag,
			   const char *what, size_t bit)
{
	uint8_t		out[64];

	memset(out, 0xAA, sizeof(out));
	check(gcm_key_open(gk, nonce, aad, aadlen, ct, len, tag, out) == 0,
		  "%s bit %zu flipped: opened", what, bit);
	check(all_zero(out, len), "%s bit %zu flipped: output not zeroed", what, bit);
}

/*
 * Flip each bit of part (one of the buffers given, changed in place and
 * restored), in turn: every change must be refused.
 */
static void
refuse_each_bit(GcmKey *gk, const uint8_t *nonce, const uint8_t *aad,
				size_t aadlen, const uint8_t *ct, size_t len, const uint8_t *tag,
				uint8_t *part, size_t part_len, const char *what)
{
	for (size_t bit = 0; bit < 8 * part_len; bit++)
	{
		flip(part, bit);
		expect_refused(gk, nonce, aad, aadlen, ct, len, tag, what, bit);
		flip(part, bit);
	}
}

static void
test_refuses_every_changed_bit(void)
{
	uint8_t		key[32],
				nonce[12],
				aad[12],
				plain[20],
				ct[20],
				tag[16];
	GcmKey	   *gk;

	begin_way_case("refuses every single-bit change of ciphertext, tag, associated data, nonce");
	random_bytes(key, sizeof(key));
	random_bytes(nonce, sizeof(nonce));
	random_bytes(aad, sizeof(aad));
	random_bytes(plain, sizeof(plain));
	evp_seal(key, nonce, aad, sizeof(aad), plain, sizeof(plain), ct, tag);
	gk = new_key(key);
	refuse_each_bit(gk, nonce, aad, sizeof(aad), ct, sizeof(ct), tag, ct, sizeof(ct), "ciphertext");
	refuse_each_bit(gk, nonce, aad, sizeof(aad), ct, sizeof(ct), tag, tag, sizeof(tag), "tag");
	refuse_each_bit(gk, nonce, aad, sizeof(aad), ct, sizeof(ct), tag, aad, sizeof(aad), "associated data");
	refuse_each_bit(gk, nonce, aad, sizeof(aad), ct, sizeof(ct), tag, nonce, sizeof(nonce), "nonce");
	/* and a shorter ciphertext (the tag covers the length) */
	expect_refused(gk, nonce, aad, sizeof(aad), ct, sizeof(ct) - 1, tag, "length", 0);
	{
		uint8_t		out[20];

		check(gcm_key_open(gk, nonce, aad, sizeof(aad), ct, sizeof(ct), tag, out) == 1 &&
			  bytes_equal(out, sizeof(out), plain, sizeof(plain)), "unchanged: does not open");
	}
	gcm_key_free(gk);
	end_case();
}

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* ns per gcm_key_open of the 8-byte value ct (sealed with key, nonce, aad) */
static double
time_opens(int cpu, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad,
		   const uint8_t *ct, const uint8_t *tag, int n)
{
	GcmKey	   *gk;
	uint8_t		out[8];
	double		t0;

	cpu_way = cpu;
	gk = new_key(key);
	t0 = now_ns();
	for (int i = 0; i < n; i++)
		if (gcm_key_open(gk, nonce, aad, 12, ct, 8, tag, out) != 1)
			fatal("gcm_key_open");
	t0 = (now_ns() - t0) / n;
	gcm_key_free(gk);
	return t0;
}

static int
bench(void)
{
	uint8_t		key[32] = {1},
				nonce[12] = {2},
				aad[12] = {3},
				plain[8] = {4},
				ct[8],
				tag[16],
				out[8];
	EVP_CIPHER_CTX *evp = EVP_CIPHER_CTX_new();
	const int	n = 1000000;
	double		t0,
				t1;

	evp_seal(key, nonce, aad, sizeof(aad), plain, sizeof(plain), ct, tag);
	EVP_DecryptInit_ex(evp, EVP_aes_256_gcm(), NULL, key, NULL);
	t0 = now_ns();
	for (int i = 0; i < n; i++)
	{
		int			outl,
					finl;

		if (EVP_DecryptInit_ex(evp, NULL, NULL, NULL, nonce) != 1 ||
			EVP_DecryptUpdate(evp, NULL, &outl, aad, sizeof(aad)) != 1 ||
			EVP_DecryptUpdate(evp, out, &outl, ct, sizeof(ct)) != 1 ||
			EVP_CIPHER_CTX_ctrl(evp, EVP_CTRL_GCM_SET_TAG, 16, tag) != 1 ||
			EVP_DecryptFinal_ex(evp, out + outl, &finl) != 1)
			fatal("EVP open");
	}
	t1 = now_ns();
	printf("AES-256-GCM open of an 8-byte value: EVP %.0f ns, gcm_key OpenSSL way %.0f ns",
		   (t1 - t0) / n, time_opens(0, key, nonce, aad, ct, tag, n));
	if (cpu_has_aes_clmul())
		printf(", gcm_key CPU way %.0f ns", time_opens(1, key, nonce, aad, ct, tag, n));
	printf("\n");
	EVP_CIPHER_CTX_free(evp);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--bench") == 0)
		return bench();
	for (cpu_way = cpu_has_aes_clmul(); cpu_way >= 0; cpu_way--)
	{
		test_spec_case_14();
		test_opens_what_evp_sealed();
		test_refuses_every_changed_bit();
		test_fips_197_example();
		test_blocks_match_evp_ecb();
	}
	return report_cases();
}
