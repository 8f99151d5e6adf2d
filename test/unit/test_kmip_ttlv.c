/*-------------------------------------------------------------------------
 *
 * test_kmip_ttlv.c
 *	  Standalone unit test of src/kmip_ttlv.c (no PostgreSQL, no server).
 *
 * Proves the KMIP TTLV code against references that do not come from it:
 *	- the encoding examples of the KMIP 1.x specification (section 9.1.2);
 *	- kmip_vectors.h, made by gen_kmip_vectors.py with PyKMIP: every
 *	  request of ours was parsed by PyKMIP and written again by it to the
 *	  same bytes, then processed by PyKMIP's server engine, whose responses
 *	  (successes and failures) are the vectors parsed here;
 * and checks that the parser refuses malformed responses without reading
 * outside them (every byte of every vector flipped, every truncation,
 * hostile lengths and nesting), and that no writer goes past its buffer.
 * Run it under valgrind (make valgrind) to catch out-of-bounds reads.
 *
 * Usage:
 *	test_kmip_ttlv				run the tests; the last line is
 *								"N passed, M failed", the exit status is
 *								non-zero if anything failed
 *	test_kmip_ttlv --dump		print our requests as "name hex" lines
 *								(input of gen_kmip_vectors.py)
 *	test_kmip_ttlv --dump-decrypt ID DATAHEX IVHEX
 *
 *-------------------------------------------------------------------------
 */
#include "../../src/kmip_ttlv.h"
#include "unit_harness.h"

#ifdef KMIP_NO_VECTORS
/* the build that makes the vectors (--dump only) */
typedef struct KmipVector
{
	const char *name;
	const char *hex;
} KmipVector;
static const KmipVector kmip_request_vectors[] = {{"", ""}};
static const KmipVector kmip_response_vectors[] = {{"", ""}};
#else
#include "kmip_vectors.h"
#endif

/* ----------------------------------------------------------------
 *		Data helpers (the harness is unit_harness.h)
 * ----------------------------------------------------------------
 */

/* hex (spaces allowed) into exactly-sized malloc'd bytes */
static Bytes
from_hex(const char *hex)
{
	Bytes		b;
	int			hi = -1;

	b.data = malloc(strlen(hex) / 2 + 1);
	b.len = 0;
	if (b.data == NULL)
		fatal("out of memory");
	for (; *hex; hex++)
	{
		int			v = hex_nibble(*hex);

		if (v < 0)
			continue;
		if (hi < 0)
			hi = v;
		else
		{
			b.data[b.len++] = (uint8_t) (hi << 4 | v);
			hi = -1;
		}
	}
	if (hi >= 0)
		fatal("odd hex");
	/* exactly sized, so that valgrind sees reads past the end */
	b.data = realloc(b.data, b.len ? b.len : 1);
	return b;
}

static void
print_hex(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		printf("%02x", p[i]);
}

static int
bytes_are(KmipBytes got, const char *text)
{
	return bytes_equal(got.data, got.len, (const uint8_t *) text, strlen(text));
}

/* the fixed inputs of the requests (kmip_vectors.h was made from them) */
static uint8_t secret[96];
static uint8_t plaintext[96];
static uint8_t iv[16];

static void
init_inputs(void)
{
	for (int i = 0; i < 96; i++)
	{
		secret[i] = (uint8_t) i;
		plaintext[i] = (uint8_t) (0xA5 ^ i);
	}
	for (int i = 0; i < 16; i++)
		iv[i] = (uint8_t) (0x10 + i);
}

/* ----------------------------------------------------------------
 *		Our requests, by name
 * ----------------------------------------------------------------
 */

typedef size_t (*BuildFn) (uint8_t *buf, size_t cap);

static size_t
build_register(uint8_t *buf, size_t cap)
{
	return kmip_request_register_secret(buf, cap, secret, sizeof(secret), NULL);
}

static size_t
build_register_named(uint8_t *buf, size_t cap)
{
	return kmip_request_register_secret(buf, cap, secret, sizeof(secret), "bsoncrypt test");
}

static size_t
build_activate(uint8_t *buf, size_t cap)
{
	return kmip_request_activate(buf, cap, "1");
}

static size_t
build_get(uint8_t *buf, size_t cap)
{
	return kmip_request_get(buf, cap, "1");
}

static size_t
build_get_missing(uint8_t *buf, size_t cap)
{
	return kmip_request_get(buf, cap, "no-such-key");
}

static size_t
build_get_object_type(uint8_t *buf, size_t cap)
{
	return kmip_request_get_object_type(buf, cap, "1");
}

static size_t
build_create(uint8_t *buf, size_t cap)
{
	return kmip_request_create_aes256(buf, cap, NULL);
}

static size_t
build_create_named(uint8_t *buf, size_t cap)
{
	return kmip_request_create_aes256(buf, cap, "bsoncrypt aes");
}

static size_t
build_activate_aes(uint8_t *buf, size_t cap)
{
	return kmip_request_activate(buf, cap, "2");
}

static size_t
build_encrypt(uint8_t *buf, size_t cap)
{
	return kmip_request_encrypt(buf, cap, "2", plaintext, sizeof(plaintext));
}

static size_t
build_decrypt_bad(uint8_t *buf, size_t cap)
{
	/* not a ciphertext of the key: the server refuses the padding */
	return kmip_request_decrypt(buf, cap, "2", plaintext, 32, iv, sizeof(iv));
}

static const struct
{
	const char *name;
	BuildFn		build;
} requests[] = {
	{"register", build_register},
	{"activate", build_activate},
	{"get", build_get},
	{"get_object_type", build_get_object_type},
	{"get_missing", build_get_missing},
	{"create", build_create},
	{"activate_aes", build_activate_aes},
	{"encrypt", build_encrypt},
	{"decrypt_bad", build_decrypt_bad},
	{"register_named", build_register_named},
	{"create_named", build_create_named},
};

#define NREQUESTS (sizeof(requests) / sizeof(requests[0]))

static int
dump_requests(void)
{
	uint8_t		buf[4096];

	for (size_t i = 0; i < NREQUESTS; i++)
	{
		size_t		len = requests[i].build(buf, sizeof(buf));

		if (len == 0)
			fatal(requests[i].name);
		printf("%s ", requests[i].name);
		print_hex(buf, len);
		putchar('\n');
	}
	return 0;
}

static int
dump_decrypt(const char *id, const char *data_hex, const char *iv_hex)
{
	Bytes		data = from_hex(data_hex);
	Bytes		v = from_hex(iv_hex);
	uint8_t		buf[4096];
	size_t		len = kmip_request_decrypt(buf, sizeof(buf), id, data.data, data.len,
										   v.data, v.len);

	if (len == 0)
		fatal("decrypt");
	print_hex(buf, len);
	putchar('\n');
	free(data.data);
	free(v.data);
	return 0;
}

/* ----------------------------------------------------------------
 *		Cases
 * ----------------------------------------------------------------
 */

/* the encoding examples of KMIP 1.x, section 9.1.2 (tag 0x420020) */
static void
test_spec_examples(void)
{
	uint8_t		buf[128];
	KmipWriter	w;
	Bytes		want;
	size_t		len;
	static const uint8_t bytes[] = {1, 2, 3};

	begin_case("KMIP specification encoding examples");

	kmip_writer_init(&w, buf, sizeof(buf));
	kmip_write_integer(&w, 0x420020, 8);
	want = from_hex("42 00 20 02 00 00 00 04 00 00 00 08 00 00 00 00");
	len = kmip_writer_finish(&w);
	check(bytes_equal(buf, len, want.data, want.len), "Integer 8");
	free(want.data);

	kmip_writer_init(&w, buf, sizeof(buf));
	kmip_write_enum(&w, 0x420020, 255);
	want = from_hex("42 00 20 05 00 00 00 04 00 00 00 FF 00 00 00 00");
	len = kmip_writer_finish(&w);
	check(bytes_equal(buf, len, want.data, want.len), "Enumeration 255");
	free(want.data);

	kmip_writer_init(&w, buf, sizeof(buf));
	kmip_write_bool(&w, 0x420020, true);
	want = from_hex("42 00 20 06 00 00 00 08 00 00 00 00 00 00 00 01");
	len = kmip_writer_finish(&w);
	check(bytes_equal(buf, len, want.data, want.len), "Boolean True");
	free(want.data);

	kmip_writer_init(&w, buf, sizeof(buf));
	kmip_write_text(&w, 0x420020, "Hello World", 11);
	want = from_hex("42 00 20 07 00 00 00 0B 48 65 6C 6C 6F 20 57 6F 72 6C 64 00 00 00 00 00");
	len = kmip_writer_finish(&w);
	check(bytes_equal(buf, len, want.data, want.len), "Text String");
	free(want.data);

	kmip_writer_init(&w, buf, sizeof(buf));
	kmip_write_bytes(&w, 0x420020, bytes, sizeof(bytes));
	want = from_hex("42 00 20 08 00 00 00 03 01 02 03 00 00 00 00 00");
	len = kmip_writer_finish(&w);
	check(bytes_equal(buf, len, want.data, want.len), "Byte String");
	free(want.data);

	kmip_writer_init(&w, buf, sizeof(buf));
	kmip_begin_struct(&w, 0x420020);
	kmip_write_enum(&w, 0x420004, 254);
	kmip_write_integer(&w, 0x420005, 255);
	kmip_end_struct(&w);
	want = from_hex("42 00 20 01 00 00 00 20 42 00 04 05 00 00 00 04 00 00 00 FE 00 00 00 00"
					"42 00 05 02 00 00 00 04 00 00 00 FF 00 00 00 00");
	len = kmip_writer_finish(&w);
	check(bytes_equal(buf, len, want.data, want.len), "Structure");
	free(want.data);

	/* unbalanced structures and overflowing writers fail */
	kmip_writer_init(&w, buf, sizeof(buf));
	kmip_begin_struct(&w, 0x420020);
	check(kmip_writer_finish(&w) == 0, "an open structure is refused");
	kmip_writer_init(&w, buf, sizeof(buf));
	kmip_end_struct(&w);
	check(kmip_writer_finish(&w) == 0, "closing no structure is refused");
	kmip_writer_init(&w, buf, 15);
	kmip_write_integer(&w, 0x420020, 8);
	check(kmip_writer_finish(&w) == 0, "a 16-byte item does not fit in 15 bytes");
	end_case();
}

/* our requests are the bytes PyKMIP parsed and wrote again identically */
static void
test_requests_match_vectors(void)
{
	begin_case("requests equal the PyKMIP-checked vectors");
	for (size_t i = 0; i < NREQUESTS; i++)
	{
		uint8_t		buf[4096];
		size_t		len = requests[i].build(buf, sizeof(buf));
		const char *hex = NULL;
		Bytes		want;

		for (size_t j = 0; j < sizeof(kmip_request_vectors) / sizeof(kmip_request_vectors[0]); j++)
			if (strcmp(kmip_request_vectors[j].name, requests[i].name) == 0)
				hex = kmip_request_vectors[j].hex;
		if (!check(hex != NULL, "no vector for %s", requests[i].name))
			continue;
		want = from_hex(hex);
		check(len > 0 && bytes_equal(buf, len, want.data, want.len),
			  "%s request differs from its vector", requests[i].name);
		free(want.data);
	}
	end_case();
}

/* a writer never writes past its buffer, and fails when it does not fit */
static void
test_requests_overflow(void)
{
	begin_case("requests never overflow their buffer");
	for (size_t i = 0; i < NREQUESTS; i++)
	{
		uint8_t		full[4096];
		size_t		need = requests[i].build(full, sizeof(full));

		for (size_t cap = 0; cap < need; cap++)
		{
			uint8_t    *buf = malloc(cap + 16);

			memset(buf, 0xCC, cap + 16);
			check(requests[i].build(buf, cap) == 0, "%s fits in %zu < %zu bytes",
				  requests[i].name, cap, need);
			for (size_t j = cap; j < cap + 16; j++)
				if (!check(buf[j] == 0xCC, "%s wrote past %zu bytes", requests[i].name, cap))
					break;
			free(buf);
		}
		check(requests[i].build(full, need) == need, "%s fits exactly", requests[i].name);
	}
	end_case();
}

static void
test_invalid_arguments(void)
{
	uint8_t		buf[4096];
	char		long_id[KMIP_MAX_ID_LEN + 2];

	begin_case("invalid request arguments are refused");
	memset(long_id, 'x', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	check(kmip_request_get(buf, sizeof(buf), "") == 0, "empty id");
	check(kmip_request_get(buf, sizeof(buf), NULL) == 0, "NULL id");
	check(kmip_request_get(buf, sizeof(buf), long_id) == 0, "256-byte id");
	long_id[KMIP_MAX_ID_LEN] = '\0';
	check(kmip_request_get(buf, sizeof(buf), long_id) > 0, "255-byte id");
	check(kmip_request_decrypt(buf, sizeof(buf), "1", plaintext, 16, NULL, 0) == 0,
		  "decrypt without IV");
	check(kmip_request_encrypt(buf, sizeof(buf), "1", plaintext, 0) == 0, "encrypt of nothing");
	check(kmip_request_register_secret(buf, sizeof(buf), secret, 0, NULL) == 0,
		  "register of nothing");
	check(kmip_request_register_secret(buf, sizeof(buf), secret, 96, "") == 0,
		  "register with an empty name");
	end_case();
}

static const char *
response_hex(const char *name)
{
	for (size_t j = 0; j < sizeof(kmip_response_vectors) / sizeof(kmip_response_vectors[0]); j++)
		if (strcmp(kmip_response_vectors[j].name, name) == 0)
			return kmip_response_vectors[j].hex;
	fatal(name);
	return NULL;
}

/* Parse a vector response; NULL problem expected. */
static Bytes
parse_vector(const char *name, KmipResponse *r)
{
	Bytes		msg = from_hex(response_hex(name));
	const char *problem;

	check(kmip_response_length(msg.data) == msg.len, "%s: length from the header", name);
	problem = kmip_parse_response(msg.data, msg.len, r);
	check(problem == NULL, "%s: %s", name, problem ? problem : "");
	return msg;
}

/* the PyKMIP engine's answers to our requests */
static void
test_responses(void)
{
	KmipResponse r;
	Bytes		msg;

	begin_case("PyKMIP engine responses");

	msg = parse_vector("register", &r);
	check(r.operation == KMIP_OP_REGISTER && r.result_status == KMIP_STATUS_SUCCESS,
		  "register succeeded");
	check(bytes_are(r.unique_identifier, "1"), "register: id 1");
	free(msg.data);

	msg = parse_vector("activate", &r);
	check(r.operation == KMIP_OP_ACTIVATE && r.result_status == 0 &&
		  bytes_are(r.unique_identifier, "1"), "activate");
	free(msg.data);

	msg = parse_vector("get", &r);
	check(r.operation == KMIP_OP_GET && r.result_status == 0, "get succeeded");
	check(r.object_type == KMIP_OBJECT_SECRET_DATA, "get: SecretData (%u)", r.object_type);
	check(!r.key_wrapped, "get: key not wrapped");
	check(r.key_format_type == KMIP_FORMAT_OPAQUE, "get: opaque format");
	check(bytes_equal(r.key_material.data, r.key_material.len, secret, sizeof(secret)),
		  "get: the registered secret");
	free(msg.data);

	msg = parse_vector("get_object_type", &r);
	check(r.operation == KMIP_OP_GET_ATTRIBUTES && r.result_status == 0 &&
		  r.object_type == KMIP_OBJECT_SECRET_DATA, "object type: SecretData");
	free(msg.data);

	msg = parse_vector("get_missing", &r);
	check(r.result_status == 1 && r.result_reason == KMIP_REASON_ITEM_NOT_FOUND,
		  "get of an unknown id: Operation Failed / Item Not Found (%u/%u)",
		  r.result_status, r.result_reason);
	check(r.result_message.len > 0, "get of an unknown id: a result message");
	check(strcmp(kmip_result_reason_name(r.result_reason), "Item Not Found") == 0, "reason name");
	free(msg.data);

	msg = parse_vector("create", &r);
	check(r.operation == KMIP_OP_CREATE && r.result_status == 0 &&
		  bytes_are(r.unique_identifier, "2"), "create: id 2");
	free(msg.data);

	msg = parse_vector("encrypt", &r);
	check(r.operation == KMIP_OP_ENCRYPT && r.result_status == 0, "encrypt succeeded");
	check(r.data.len == 112 && r.iv.len == 16, "encrypt: 112 bytes and a 16-byte IV");
	free(msg.data);

	msg = parse_vector("decrypt", &r);
	check(r.operation == KMIP_OP_DECRYPT && r.result_status == 0 &&
		  bytes_equal(r.data.data, r.data.len, plaintext, sizeof(plaintext)),
		  "decrypt gives the plaintext back");
	free(msg.data);

	msg = parse_vector("decrypt_bad", &r);
	check(r.result_status == 1 && r.result_reason != 0, "decrypt of garbage fails");
	free(msg.data);

	msg = parse_vector("get_aes", &r);
	check(r.object_type == KMIP_OBJECT_SYMMETRIC_KEY && r.key_material.len == 32,
		  "get of the AES key: a 32-byte SymmetricKey");
	free(msg.data);

	msg = parse_vector("get_object_type_aes", &r);
	check(r.object_type == KMIP_OBJECT_SYMMETRIC_KEY, "object type: SymmetricKey");
	free(msg.data);

	msg = parse_vector("garbage", &r);
	check(r.result_status == 1 && r.result_reason != 0,
		  "a request the server cannot parse: an error response");
	free(msg.data);
	end_case();
}

/* A parsed response's byte fields lie inside the message. */
static int
inside(KmipBytes b, const Bytes *msg)
{
	return b.len == 0 || (b.data >= msg->data && b.data + b.len <= msg->data + msg->len);
}

static int
fields_inside(const KmipResponse *r, const Bytes *msg)
{
	return inside(r->result_message, msg) && inside(r->unique_identifier, msg) &&
		inside(r->key_material, msg) && inside(r->data, msg) && inside(r->iv, msg);
}

/* flip bits of every byte, truncate everywhere: never a crash or a read outside */
static void
test_mutations(void)
{
	size_t		nvectors = sizeof(kmip_response_vectors) / sizeof(kmip_response_vectors[0]);
	long		refused = 0;
	long		tried = 0;

	begin_case("mutated and truncated responses");
	for (size_t v = 0; v < nvectors; v++)
	{
		Bytes		orig = from_hex(kmip_response_vectors[v].hex);

		for (size_t i = 0; i < orig.len; i++)
		{
			static const uint8_t masks[] = {0x01, 0x80, 0xFF};

			for (size_t m = 0; m < sizeof(masks); m++)
			{
				Bytes		msg = {malloc(orig.len), orig.len};
				KmipResponse r;
				const char *problem;

				memcpy(msg.data, orig.data, orig.len);
				msg.data[i] ^= masks[m];
				problem = kmip_parse_response(msg.data, msg.len, &r);
				tried++;
				if (problem != NULL)
					refused++;
				else
					check(fields_inside(&r, &msg), "%s byte %zu ^ %02x: a field outside",
						  kmip_response_vectors[v].name, i, masks[m]);
				free(msg.data);
			}
		}
		/* truncations, with the header's length patched to match */
		for (size_t len = 0; len < orig.len; len++)
		{
			Bytes		msg = {malloc(len ? len : 1), len};
			KmipResponse r;
			const char *problem;

			memcpy(msg.data, orig.data, len);
			if (len >= 8)
			{
				uint32_t	inner = (uint32_t) (len - 8);

				msg.data[4] = inner >> 24;
				msg.data[5] = inner >> 16;
				msg.data[6] = inner >> 8;
				msg.data[7] = inner;
			}
			problem = kmip_parse_response(msg.data, msg.len, &r);
			if (problem == NULL)
				check(fields_inside(&r, &msg), "%s cut at %zu: a field outside",
					  kmip_response_vectors[v].name, len);
			/* a cut inside an item never parses */
			if (len % 8 != 0)
				check(problem != NULL, "%s cut at %zu parses", kmip_response_vectors[v].name, len);
			free(msg.data);
		}
		free(orig.data);
	}
	check(refused > tried / 4, "most mutations are refused (%ld of %ld)", refused, tried);
	end_case();
}

/* The message in hex must be refused: by its header or by the parser. */
static void
expect_refused(const char *hex, const char *what)
{
	Bytes		msg = from_hex(hex);
	KmipResponse r;

	check(kmip_response_length(msg.data) == 0 ||
		  kmip_parse_response(msg.data, msg.len, &r) != NULL, "%s is accepted", what);
	free(msg.data);
}

/* hostile lengths, types, padding and nesting */
static void
test_hostile(void)
{
	KmipResponse r;
	uint8_t		deep[8 * 40];

	begin_case("hostile responses are refused");
	check(kmip_response_length(NULL) == 0, "no header");
	expect_refused("42 00 7B 01 00 00 00 09", "a length that is not a multiple of 8");
	expect_refused("42 00 7B 01 FF FF FF F8", "a 4 GB message");
	expect_refused("42 00 78 01 00 00 00 00", "a request message");
	expect_refused("42 00 7B 02 00 00 00 00", "a message that is not a structure");
	expect_refused("42 00 7B 01 00 00 00 10 42 00 7A 01 FF FF FF F0 00 00 00 00 00 00 00 00",
				   "a child longer than its parent");
	expect_refused("42 00 7B 01 00 00 00 10 42 00 7A 0B 00 00 00 08 00 00 00 00 00 00 00 00",
				   "an unknown type");
	expect_refused("42 00 7B 01 00 00 00 10 42 00 0D 02 00 00 00 08 00 00 00 01 00 00 00 00",
				   "an integer of 8 bytes");
	expect_refused("42 00 7B 01 00 00 00 10 42 00 0D 02 00 00 00 04 00 00 00 01 00 00 00 01",
				   "non-zero padding");
	expect_refused("42 00 7B 01 00 00 00 10 42 00 0D 06 00 00 00 08 00 00 00 00 00 00 00 02",
				   "a boolean of 2");
	expect_refused("42 00 7B 01 00 00 00 10 43 00 0D 02 00 00 00 04 00 00 00 01 00 00 00 00",
				   "a tag outside 0x42xxxx and 0x54xxxx");
	expect_refused("42 00 7B 01 00 00 00 08 42 00 7A 01 00 00 00 00", "no batch item");

	/* 40 nested structures */
	for (int i = 0; i < 40; i++)
	{
		uint32_t	inner = (uint32_t) (8 * (40 - i - 1));
		uint8_t    *p = deep + 8 * i;

		p[0] = 0x42;
		p[1] = 0x00;
		p[2] = i == 0 ? 0x7B : 0x0F;
		p[3] = 0x01;
		p[4] = inner >> 24;
		p[5] = inner >> 16;
		p[6] = inner >> 8;
		p[7] = inner;
	}
	check(kmip_parse_response(deep, sizeof(deep), &r) != NULL, "40 nested structures");
	end_case();
}

static void
test_names(void)
{
	begin_case("names");
	check(strcmp(kmip_object_type_name(KMIP_OBJECT_SECRET_DATA), "SecretData") == 0, "SecretData");
	check(strcmp(kmip_object_type_name(KMIP_OBJECT_SYMMETRIC_KEY), "SymmetricKey") == 0, "SymmetricKey");
	check(kmip_object_type_name(1000) != NULL, "unknown object type");
	check(strcmp(kmip_result_reason_name(0x100), "General Failure") == 0, "General Failure");
	check(kmip_result_reason_name(0x99) != NULL, "unknown reason");
	check(strcmp(kmip_operation_name(KMIP_OP_GET), "Get") == 0, "Get");
	check(strcmp(kmip_result_status_name(1), "Operation Failed") == 0, "Operation Failed");
	end_case();
}

int
main(int argc, char **argv)
{
	init_inputs();
	if (argc == 2 && strcmp(argv[1], "--dump") == 0)
		return dump_requests();
	if (argc == 5 && strcmp(argv[1], "--dump-decrypt") == 0)
		return dump_decrypt(argv[2], argv[3], argv[4]);
	if (argc != 1)
	{
		fprintf(stderr, "usage: %s [--dump | --dump-decrypt ID DATAHEX IVHEX]\n", argv[0]);
		return 2;
	}

	test_spec_examples();
	test_requests_match_vectors();
	test_requests_overflow();
	test_invalid_arguments();
	test_responses();
	test_mutations();
	test_hostile();
	test_names();

	return report_cases();
}
