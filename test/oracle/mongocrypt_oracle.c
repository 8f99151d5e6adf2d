/*-------------------------------------------------------------------------
 *
 * mongocrypt_oracle.c
 *	  Command-line test oracle: creates FLE1 data keys, encrypts values and
 *	  decrypts documents with libmongocrypt's public API, so that bsoncrypt's
 *	  tests can check interoperability against the reference implementation.
 *
 * This file owns the whole oracle program: argument parsing, base64 and
 * key-vault loading, the libmongocrypt context state machine (including
 * carrying libmongocrypt's KMIP requests to a KMIP server over TLS and its
 * replies back), and the create-key, encrypt, decrypt and bench
 * subcommands.  It is test tooling only; nothing here is linked into the
 * extension.
 *
 * All JSON is MongoDB canonical Extended JSON, one document per line.
 * Per-line refusals by libmongocrypt are printed as {"error": "..."} and
 * processing continues; usage and setup errors go to stderr, exit status 1.
 * See README.md in this directory for the interface.
 *
 * test/oracle/mongocrypt_oracle.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <bson.h>
#include <mongocrypt.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define MASTER_KEY_LEN		96
#define KEY_ID_LEN			16
#define BENCH_STRING_LEN	100

/* Parsed command line. */
typedef struct OracleOptions
{
	const char *command;
	uint8_t    *master_key;		/* decoded --master-key */
	size_t		master_key_len;
	const char *key_vault_path; /* --key-vault */
	uint8_t    *key_id;			/* decoded --key-id-b64 */
	size_t		key_id_len;
	const char *key_alt_name;	/* --key-alt-name (encrypt, bench) */
	const char **alt_names;		/* --alt-name ... (create-key) */
	int			n_alt_names;
	const char *algorithm;		/* libmongocrypt algorithm string */
	long		count;			/* --count (bench) */
	const char *provider;		/* --provider local|kmip (create-key) */
	const char *kmip_key_id;	/* --kmip-key-id (create-key) */
	const char *kmip_endpoint;	/* --kmip-endpoint HOST:PORT */
	const char *kmip_ca;		/* --kmip-ca FILE */
	const char *kmip_cert;		/* --kmip-cert FILE */
	const char *kmip_key;		/* --kmip-key FILE */
} OracleOptions;

/* the KMIP server's TLS settings, for run_ctx */
static const OracleOptions *kmip_tls = NULL;

/* Key-vault documents loaded from --key-vault. */
typedef struct KeyVault
{
	bson_t	  **keys;
	size_t		nkeys;
} KeyVault;

/* How to encrypt: key by id or by alternate name, and the algorithm. */
typedef struct EncryptSpec
{
	const uint8_t *key_id;
	size_t		key_id_len;
	const char *key_alt_name;
	const char *algorithm;
} EncryptSpec;


/* ---------------------------------------------------------------------
 * Small utilities
 * ---------------------------------------------------------------------
 */

static void
usage(void)
{
	fprintf(stderr,
			"usage:\n"
			"  mongocrypt_oracle create-key --master-key B64 [--alt-name NAME ...]\n"
			"  mongocrypt_oracle create-key --provider kmip [--kmip-key-id ID] [--alt-name NAME ...]\n"
			"  mongocrypt_oracle encrypt --master-key B64 --key-vault FILE\n"
			"                    (--key-id-b64 B64UUID | --key-alt-name NAME)\n"
			"                    --algorithm det|rand   < {\"v\": value} lines\n"
			"  mongocrypt_oracle decrypt --master-key B64 --key-vault FILE < document lines\n"
			"  mongocrypt_oracle bench --master-key B64 --key-vault FILE\n"
			"                    --key-alt-name NAME --count N\n"
			"KMIP (any command): --kmip-endpoint HOST:PORT --kmip-ca FILE\n"
			"                    --kmip-cert FILE --kmip-key FILE\n"
			"  (then --master-key is optional: without it, only kmip keys work)\n");
	exit(1);
}

static void
die(const char *fmt,...)
{
	va_list		ap;

	fputs("mongocrypt_oracle: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int
base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Decode standard base64 (padding optional).  Returns false on any
 * character outside the alphabet or an impossible length.
 */
static bool
base64_decode(const char *in, uint8_t **out, size_t *outlen)
{
	size_t		len = strlen(in);
	size_t		npad = 0;
	uint8_t    *buf;
	uint32_t	acc = 0;
	int			bits = 0;
	size_t		n = 0;

	while (len > 0 && in[len - 1] == '=' && npad < 2)
	{
		len--;
		npad++;
	}
	if (len % 4 == 1 || (npad > 0 && (len + npad) % 4 != 0))
		return false;

	buf = bson_malloc(len * 3 / 4 + 1);
	for (size_t i = 0; i < len; i++)
	{
		int			v = base64_value(in[i]);

		if (v < 0)
		{
			bson_free(buf);
			return false;
		}
		acc = (acc << 6) | (uint32_t) v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			buf[n++] = (uint8_t) (acc >> bits);
		}
	}
	*out = buf;
	*outlen = n;
	return true;
}

static uint8_t *
decode_option(const char *name, const char *value, size_t want_len,
			  size_t *outlen)
{
	uint8_t    *buf;

	if (!base64_decode(value, &buf, outlen))
		die("%s: not valid base64", name);
	if (*outlen != want_len)
		die("%s: decodes to %zu bytes, expected %zu", name, *outlen, want_len);
	return buf;
}

/* A mongocrypt_binary_t viewing (not copying) a BSON document. */
static mongocrypt_binary_t *
binary_view(const bson_t *doc)
{
	return mongocrypt_binary_new_from_data((uint8_t *) bson_get_data(doc),
										   doc->len);
}

/* Print one document as canonical extended JSON on its own line. */
static void
print_doc(const bson_t *doc)
{
	char	   *json = bson_as_canonical_extended_json(doc, NULL);

	if (json == NULL)
		die("cannot render result as extended JSON");
	puts(json);
	bson_free(json);
}

/* Print {"error": msg} on its own line. */
static void
print_error(const char *msg)
{
	bson_t		doc = BSON_INITIALIZER;

	if (!bson_utf8_validate(msg, strlen(msg), false))
		msg = "(error message is not valid UTF-8)";
	BSON_APPEND_UTF8(&doc, "error", msg);
	print_doc(&doc);
	bson_destroy(&doc);
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}


/* ---------------------------------------------------------------------
 * Command line
 * ---------------------------------------------------------------------
 */

static const char *
algorithm_name(const char *arg)
{
	if (strcmp(arg, "det") == 0)
		return MONGOCRYPT_ALGORITHM_DETERMINISTIC_STR;
	if (strcmp(arg, "rand") == 0)
		return MONGOCRYPT_ALGORITHM_RANDOM_STR;
	die("--algorithm must be det or rand, not \"%s\"", arg);
	return NULL;				/* keep compiler quiet */
}

static void
check_required(const OracleOptions *opts)
{
	const char *cmd = opts->command;
	bool		needs_vault = strcmp(cmd, "create-key") != 0;

	if (opts->kmip_endpoint != NULL &&
		(opts->kmip_ca == NULL || opts->kmip_cert == NULL || opts->kmip_key == NULL))
		die("%s: --kmip-endpoint needs --kmip-ca, --kmip-cert and --kmip-key", cmd);
	if (opts->master_key == NULL && opts->kmip_endpoint == NULL)
		die("%s: --master-key (or --kmip-endpoint ...) is required", cmd);
	if (strcmp(opts->provider, "local") != 0 && strcmp(opts->provider, "kmip") != 0)
		die("%s: --provider must be local or kmip", cmd);
	if (strcmp(opts->provider, "kmip") == 0 && opts->kmip_endpoint == NULL)
		die("%s: --provider kmip needs --kmip-endpoint", cmd);
	if (strcmp(opts->provider, "local") == 0 && opts->master_key == NULL &&
		strcmp(cmd, "create-key") == 0)
		die("create-key: --master-key is required for --provider local");
	if (needs_vault && opts->key_vault_path == NULL)
		die("%s: --key-vault is required", cmd);
	if (opts->n_alt_names > 0 && strcmp(cmd, "create-key") != 0)
		die("%s: --alt-name is only for create-key", cmd);

	if (strcmp(cmd, "encrypt") == 0)
	{
		if ((opts->key_id == NULL) == (opts->key_alt_name == NULL))
			die("encrypt: give exactly one of --key-id-b64, --key-alt-name");
		if (opts->algorithm == NULL)
			die("encrypt: --algorithm is required");
	}
	else if (strcmp(cmd, "bench") == 0)
	{
		if (opts->key_alt_name == NULL)
			die("bench: --key-alt-name is required");
		if (opts->count <= 0)
			die("bench: --count N (N > 0) is required");
	}
}

static void
parse_options(int argc, char **argv, OracleOptions *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->provider = "local";
	if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
		strcmp(argv[1], "--help") == 0)
		usage();
	opts->command = argv[1];
	if (strcmp(argv[1], "create-key") != 0 && strcmp(argv[1], "encrypt") != 0 &&
		strcmp(argv[1], "decrypt") != 0 && strcmp(argv[1], "bench") != 0)
		die("unknown command \"%s\" (try --help)", argv[1]);
	opts->alt_names = bson_malloc0(sizeof(char *) * argc);

	for (int i = 2; i < argc; i++)
	{
		const char *opt = argv[i];
		const char *val;

		if (i + 1 >= argc)
			die("option %s needs a value", opt);
		val = argv[++i];

		if (strcmp(opt, "--master-key") == 0)
		{
			bson_free(opts->master_key);
			opts->master_key = decode_option(opt, val, MASTER_KEY_LEN,
											 &opts->master_key_len);
		}
		else if (strcmp(opt, "--key-vault") == 0)
			opts->key_vault_path = val;
		else if (strcmp(opt, "--key-id-b64") == 0)
		{
			bson_free(opts->key_id);
			opts->key_id = decode_option(opt, val, KEY_ID_LEN,
										 &opts->key_id_len);
		}
		else if (strcmp(opt, "--key-alt-name") == 0)
			opts->key_alt_name = val;
		else if (strcmp(opt, "--alt-name") == 0)
			opts->alt_names[opts->n_alt_names++] = val;
		else if (strcmp(opt, "--algorithm") == 0)
			opts->algorithm = algorithm_name(val);
		else if (strcmp(opt, "--count") == 0)
			opts->count = strtol(val, NULL, 10);
		else if (strcmp(opt, "--provider") == 0)
			opts->provider = val;
		else if (strcmp(opt, "--kmip-key-id") == 0)
			opts->kmip_key_id = val;
		else if (strcmp(opt, "--kmip-endpoint") == 0)
			opts->kmip_endpoint = val;
		else if (strcmp(opt, "--kmip-ca") == 0)
			opts->kmip_ca = val;
		else if (strcmp(opt, "--kmip-cert") == 0)
			opts->kmip_cert = val;
		else if (strcmp(opt, "--kmip-key") == 0)
			opts->kmip_key = val;
		else
			die("unknown option %s", opt);
	}
	check_required(opts);
}

static void
free_options(OracleOptions *opts)
{
	bson_free(opts->master_key);
	bson_free(opts->key_id);
	bson_free(opts->alt_names);
}


/* ---------------------------------------------------------------------
 * Key vault
 * ---------------------------------------------------------------------
 */

/*
 * Load every document of FILE (one per line, or any concatenation of
 * extended JSON documents, canonical or relaxed).
 */
static void
keyvault_load(const char *path, KeyVault *vault)
{
	bson_error_t error;
	bson_json_reader_t *reader;
	bson_t		doc = BSON_INITIALIZER;
	size_t		cap = 8;
	int			rc;

	reader = bson_json_reader_new_from_file(path, &error);
	if (reader == NULL)
		die("--key-vault %s: %s", path, error.message);

	vault->keys = bson_malloc(sizeof(bson_t *) * cap);
	vault->nkeys = 0;
	while ((rc = bson_json_reader_read(reader, &doc, &error)) == 1)
	{
		if (vault->nkeys == cap)
		{
			cap *= 2;
			vault->keys = bson_realloc(vault->keys, sizeof(bson_t *) * cap);
		}
		vault->keys[vault->nkeys++] = bson_copy(&doc);
		bson_reinit(&doc);
	}
	if (rc < 0)
		die("--key-vault %s: %s", path, error.message);
	bson_destroy(&doc);
	bson_json_reader_destroy(reader);
}

static void
keyvault_free(KeyVault *vault)
{
	for (size_t i = 0; i < vault->nkeys; i++)
		bson_destroy(vault->keys[i]);
	bson_free(vault->keys);
}

/* Are two BSON values the same binary (same subtype) or the same string? */
static bool
values_equal(const bson_value_t *a, const bson_value_t *b)
{
	if (a->value_type != b->value_type)
		return false;
	if (a->value_type == BSON_TYPE_BINARY)
		return a->value.v_binary.subtype == b->value.v_binary.subtype &&
			a->value.v_binary.data_len == b->value.v_binary.data_len &&
			memcmp(a->value.v_binary.data, b->value.v_binary.data,
				   a->value.v_binary.data_len) == 0;
	if (a->value_type == BSON_TYPE_UTF8)
		return a->value.v_utf8.len == b->value.v_utf8.len &&
			memcmp(a->value.v_utf8.str, b->value.v_utf8.str,
				   a->value.v_utf8.len) == 0;
	return false;
}

/*
 * Does the key's FIELD (_id, or any element of the keyAltNames array)
 * equal WANTED?
 */
static bool
key_has_value(const bson_t *key, const char *field, const bson_value_t *wanted)
{
	bson_iter_t it;
	bson_iter_t elem;

	if (!bson_iter_init_find(&it, key, field))
		return false;
	if (!BSON_ITER_HOLDS_ARRAY(&it))
		return values_equal(bson_iter_value(&it), wanted);

	bson_iter_recurse(&it, &elem);
	while (bson_iter_next(&elem))
		if (values_equal(bson_iter_value(&elem), wanted))
			return true;
	return false;
}

/* FIELD_IT holds {$in: [candidates]}: does the key match any candidate? */
static bool
in_clause_matches(bson_iter_t *field_it, const bson_t *key)
{
	const char *field = bson_iter_key(field_it);
	bson_iter_t in_it;
	bson_iter_t cand;

	if (!BSON_ITER_HOLDS_DOCUMENT(field_it) ||
		!bson_iter_recurse(field_it, &in_it) ||
		!bson_iter_find(&in_it, "$in") ||
		!BSON_ITER_HOLDS_ARRAY(&in_it))
		return false;

	bson_iter_recurse(&in_it, &cand);
	while (bson_iter_next(&cand))
		if (key_has_value(key, field, bson_iter_value(&cand)))
			return true;
	return false;
}

/*
 * Does KEY satisfy the key-vault find filter libmongocrypt asked for?
 * libmongocrypt 1.7 asks for
 *		{$or: [{_id: {$in: [ids]}}, {keyAltNames: {$in: [names]}}]}
 * We accept $or nesting of {_id|keyAltNames: {$in: [...]}} clauses.
 */
static bool
filter_matches_key(bson_iter_t *filter, const bson_t *key)
{
	while (bson_iter_next(filter))
	{
		const char *field = bson_iter_key(filter);
		bson_iter_t arm;
		bson_iter_t sub;

		if (strcmp(field, "_id") == 0 || strcmp(field, "keyAltNames") == 0)
		{
			if (in_clause_matches(filter, key))
				return true;
		}
		else if (strcmp(field, "$or") == 0 && BSON_ITER_HOLDS_ARRAY(filter))
		{
			bson_iter_recurse(filter, &arm);
			while (bson_iter_next(&arm))
				if (BSON_ITER_HOLDS_DOCUMENT(&arm) &&
					bson_iter_recurse(&arm, &sub) &&
					filter_matches_key(&sub, key))
					return true;
		}
	}
	return false;
}


/* ---------------------------------------------------------------------
 * libmongocrypt plumbing
 * ---------------------------------------------------------------------
 */

/*
 * Create the one mongocrypt_t of this process: the local KMS provider
 * when there is a master key, the kmip provider when there is an endpoint.
 */
static mongocrypt_t *
crypt_new(const OracleOptions *opts)
{
	mongocrypt_t *crypt = mongocrypt_new();
	mongocrypt_binary_t *bin;
	bson_t		providers = BSON_INITIALIZER;
	bson_t		child;
	bool		ok;

	if (opts->master_key != NULL)
	{
		BSON_APPEND_DOCUMENT_BEGIN(&providers, "local", &child);
		BSON_APPEND_BINARY(&child, "key", BSON_SUBTYPE_BINARY, opts->master_key,
						   (uint32_t) opts->master_key_len);
		bson_append_document_end(&providers, &child);
	}
	if (opts->kmip_endpoint != NULL)
	{
		BSON_APPEND_DOCUMENT_BEGIN(&providers, "kmip", &child);
		BSON_APPEND_UTF8(&child, "endpoint", opts->kmip_endpoint);
		bson_append_document_end(&providers, &child);
		kmip_tls = opts;
	}

	bin = binary_view(&providers);
	ok = mongocrypt_setopt_kms_providers(crypt, bin) && mongocrypt_init(crypt);
	mongocrypt_binary_destroy(bin);
	bson_destroy(&providers);

	if (!ok)
	{
		mongocrypt_status_t *status = mongocrypt_status_new();

		mongocrypt_status(crypt, status);
		die("mongocrypt_init: %s", mongocrypt_status_message(status, NULL));
	}
	return crypt;
}

/* Copy the ctx's error message into *errmsg (caller frees); returns false. */
static bool
ctx_error(mongocrypt_ctx_t *ctx, char **errmsg)
{
	mongocrypt_status_t *status = mongocrypt_status_new();
	const char *msg;

	mongocrypt_ctx_status(ctx, status);
	msg = mongocrypt_status_message(status, NULL);
	*errmsg = bson_strdup(msg && *msg ? msg : "unknown libmongocrypt error");
	mongocrypt_status_destroy(status);
	return false;
}

/* NEED_MONGO_KEYS: feed every key-vault document matching the filter. */
static bool
feed_keys(mongocrypt_ctx_t *ctx, const KeyVault *vault)
{
	mongocrypt_binary_t *op = mongocrypt_binary_new();
	bson_t		filter;
	bool		ok;

	ok = mongocrypt_ctx_mongo_op(ctx, op) &&
		bson_init_static(&filter, mongocrypt_binary_data(op),
						 mongocrypt_binary_len(op));

	for (size_t i = 0; ok && vault != NULL && i < vault->nkeys; i++)
	{
		bson_iter_t it;
		mongocrypt_binary_t *bin;

		if (!bson_iter_init(&it, &filter) ||
			!filter_matches_key(&it, vault->keys[i]))
			continue;
		bin = binary_view(vault->keys[i]);
		ok = mongocrypt_ctx_mongo_feed(ctx, bin);
		mongocrypt_binary_destroy(bin);
	}
	mongocrypt_binary_destroy(op);
	return ok && mongocrypt_ctx_mongo_done(ctx);
}

/* Print the OpenSSL error queue's first entry after what, and exit. */
static void
die_tls(const char *what, const char *endpoint)
{
	char		buf[256];

	ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
	die("KMIP %s with %s: %s", what, endpoint, buf);
}

/*
 * A blocking TLS connection to endpoint (host:port), verifying the server
 * against --kmip-ca and presenting --kmip-cert / --kmip-key; socket
 * timeouts of 10 s so that a dead server fails the test instead of hanging.
 */
static SSL *
kmip_connect(const char *endpoint, SSL_CTX **ctx_out)
{
	char	   *host = bson_strdup(endpoint);
	char	   *port = strrchr(host, ':');
	struct addrinfo hints = {0};
	struct addrinfo *ai = NULL;
	struct timeval tv = {10, 0};
	SSL_CTX    *ctx;
	SSL		   *ssl;
	int			sock = -1;

	if (port == NULL)
		die("KMIP endpoint %s has no port", endpoint);
	*port++ = '\0';
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &ai) != 0)
		die("cannot resolve KMIP endpoint %s", endpoint);
	for (struct addrinfo *a = ai; a != NULL; a = a->ai_next)
	{
		sock = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
		if (sock >= 0 && connect(sock, a->ai_addr, a->ai_addrlen) == 0)
			break;
		if (sock >= 0)
			close(sock);
		sock = -1;
	}
	freeaddrinfo(ai);
	if (sock < 0)
		die("cannot connect to KMIP endpoint %s", endpoint);
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL ||
		SSL_CTX_load_verify_locations(ctx, kmip_tls->kmip_ca, NULL) != 1 ||
		SSL_CTX_use_certificate_chain_file(ctx, kmip_tls->kmip_cert) != 1 ||
		SSL_CTX_use_PrivateKey_file(ctx, kmip_tls->kmip_key, SSL_FILETYPE_PEM) != 1)
		die_tls("TLS set-up", endpoint);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ssl = SSL_new(ctx);
	if (ssl == NULL || SSL_set_fd(ssl, sock) != 1 ||
		(strspn(host, "0123456789.") == strlen(host)
		 ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
		 : SSL_set1_host(ssl, host)) != 1)
		die_tls("TLS set-up", endpoint);
	if (SSL_connect(ssl) != 1)
		die_tls("TLS handshake", endpoint);
	bson_free(host);
	*ctx_out = ctx;
	return ssl;
}

/* Send one KMS request of libmongocrypt and feed it the reply. */
static bool
serve_kms_ctx(mongocrypt_kms_ctx_t *kms)
{
	const char *endpoint;
	mongocrypt_binary_t *msg = mongocrypt_binary_new();
	SSL_CTX    *ctx;
	SSL		   *ssl;
	uint32_t	needed;
	bool		ok = true;

	if (!mongocrypt_kms_ctx_endpoint(kms, &endpoint) ||
		!mongocrypt_kms_ctx_message(kms, msg))
	{
		mongocrypt_binary_destroy(msg);
		return false;
	}
	ssl = kmip_connect(endpoint, &ctx);
	if (SSL_write(ssl, mongocrypt_binary_data(msg), (int) mongocrypt_binary_len(msg)) !=
		(int) mongocrypt_binary_len(msg))
		die_tls("write", endpoint);
	while (ok && (needed = mongocrypt_kms_ctx_bytes_needed(kms)) > 0)
	{
		uint8_t		buf[4096];
		int			n = SSL_read(ssl, buf, needed < sizeof(buf) ? (int) needed : (int) sizeof(buf));
		mongocrypt_binary_t *bin;

		if (n <= 0)
			die_tls("read", endpoint);
		bin = mongocrypt_binary_new_from_data(buf, (uint32_t) n);
		ok = mongocrypt_kms_ctx_feed(kms, bin);
		mongocrypt_binary_destroy(bin);
	}
	SSL_shutdown(ssl);
	close(SSL_get_fd(ssl));
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	mongocrypt_binary_destroy(msg);
	return ok;
}

/*
 * NEED_KMS: the local provider needs no network; a kmip key's requests
 * are carried to the KMIP server when one was given, else refused.
 */
static bool
serve_kms(mongocrypt_ctx_t *ctx, char **errmsg)
{
	mongocrypt_kms_ctx_t *kms;

	while ((kms = mongocrypt_ctx_next_kms_ctx(ctx)) != NULL)
	{
		if (kmip_tls == NULL)
		{
			*errmsg = bson_strdup("key needs a remote KMS provider; "
								  "give --kmip-endpoint ... for kmip keys");
			return false;
		}
		if (!serve_kms_ctx(kms))
		{
			mongocrypt_status_t *status = mongocrypt_status_new();

			mongocrypt_kms_ctx_status(kms, status);
			*errmsg = bson_strdup_printf("KMS request failed: %s",
										 mongocrypt_status_message(status, NULL));
			mongocrypt_status_destroy(status);
			return false;
		}
	}
	if (!mongocrypt_ctx_kms_done(ctx))
		return ctx_error(ctx, errmsg);
	return true;
}

/*
 * READY: finalize, copying the output document into *result unless
 * result is NULL (the bench does not need it).
 */
static bool
finalize_ctx(mongocrypt_ctx_t *ctx, bson_t *result, char **errmsg)
{
	mongocrypt_binary_t *out = mongocrypt_binary_new();
	bson_t		view;
	bool		ok;

	ok = mongocrypt_ctx_finalize(ctx, out) &&
		bson_init_static(&view, mongocrypt_binary_data(out),
						 mongocrypt_binary_len(out));
	if (ok && result != NULL)
		bson_copy_to(&view, result);
	mongocrypt_binary_destroy(out);
	return ok ? true : ctx_error(ctx, errmsg);
}

/*
 * Drive an initialized ctx through its states to completion.  On failure
 * set *errmsg (caller frees) and return false.
 */
static bool
run_ctx(mongocrypt_ctx_t *ctx, const KeyVault *vault, bson_t *result,
		char **errmsg)
{
	for (;;)
	{
		switch (mongocrypt_ctx_state(ctx))
		{
			case MONGOCRYPT_CTX_NEED_MONGO_KEYS:
				if (!feed_keys(ctx, vault))
					return ctx_error(ctx, errmsg);
				break;
			case MONGOCRYPT_CTX_NEED_KMS:
				if (!serve_kms(ctx, errmsg))
					return false;
				break;
			case MONGOCRYPT_CTX_READY:
				return finalize_ctx(ctx, result, errmsg);
			case MONGOCRYPT_CTX_ERROR:
				return ctx_error(ctx, errmsg);
			default:
				*errmsg = bson_strdup_printf("unexpected libmongocrypt state %d",
											 (int) mongocrypt_ctx_state(ctx));
				return false;
		}
	}
}

/* Pass a one-field document {name: str} to a ctx setopt function. */
static bool
setopt_utf8_doc(mongocrypt_ctx_t *ctx,
				bool (*setopt) (mongocrypt_ctx_t *, mongocrypt_binary_t *),
				const char *name, const char *str)
{
	bson_t		doc = BSON_INITIALIZER;
	mongocrypt_binary_t *bin;
	bool		ok;

	BSON_APPEND_UTF8(&doc, name, str);
	bin = binary_view(&doc);
	ok = setopt(ctx, bin);
	mongocrypt_binary_destroy(bin);
	bson_destroy(&doc);
	return ok;
}

/* Explicitly encrypt {"v": value}; *result receives {"v": Binary(6)}. */
static bool
encrypt_one(mongocrypt_t *crypt, const KeyVault *vault,
			const EncryptSpec *spec, const bson_t *input, bson_t *result,
			char **errmsg)
{
	mongocrypt_ctx_t *ctx = mongocrypt_ctx_new(crypt);
	mongocrypt_binary_t *bin = binary_view(input);
	bool		ok;

	if (spec->key_id != NULL)
	{
		mongocrypt_binary_t *id;

		id = mongocrypt_binary_new_from_data((uint8_t *) spec->key_id,
											 (uint32_t) spec->key_id_len);
		ok = mongocrypt_ctx_setopt_key_id(ctx, id);
		mongocrypt_binary_destroy(id);
	}
	else
		ok = setopt_utf8_doc(ctx, mongocrypt_ctx_setopt_key_alt_name,
							 "keyAltName", spec->key_alt_name);

	ok = ok &&
		mongocrypt_ctx_setopt_algorithm(ctx, spec->algorithm, -1) &&
		mongocrypt_ctx_explicit_encrypt_init(ctx, bin);
	ok = ok ? run_ctx(ctx, vault, result, errmsg) : ctx_error(ctx, errmsg);

	mongocrypt_binary_destroy(bin);
	mongocrypt_ctx_destroy(ctx);
	return ok;
}

/*
 * Decrypt a document.  Explicit: INPUT is {"v": Binary(6)} and
 * mongocrypt_ctx_explicit_decrypt_init is used; otherwise automatic
 * decryption of every subtype-6 value anywhere in INPUT.
 */
static bool
decrypt_one(mongocrypt_t *crypt, const KeyVault *vault, bool explicit,
			const bson_t *input, bson_t *result, char **errmsg)
{
	mongocrypt_ctx_t *ctx = mongocrypt_ctx_new(crypt);
	mongocrypt_binary_t *bin = binary_view(input);
	bool		ok;

	ok = explicit ? mongocrypt_ctx_explicit_decrypt_init(ctx, bin)
		: mongocrypt_ctx_decrypt_init(ctx, bin);
	ok = ok ? run_ctx(ctx, vault, result, errmsg) : ctx_error(ctx, errmsg);

	mongocrypt_binary_destroy(bin);
	mongocrypt_ctx_destroy(ctx);
	return ok;
}


/* ---------------------------------------------------------------------
 * Subcommands
 * ---------------------------------------------------------------------
 */

static int
cmd_create_key(mongocrypt_t *crypt, const OracleOptions *opts)
{
	mongocrypt_ctx_t *ctx = mongocrypt_ctx_new(crypt);
	bson_t		result = BSON_INITIALIZER;
	char	   *errmsg = NULL;
	bool		ok;

	if (strcmp(opts->provider, "kmip") == 0)
	{
		bson_t		kek = BSON_INITIALIZER;
		mongocrypt_binary_t *bin;

		BSON_APPEND_UTF8(&kek, "provider", "kmip");
		if (opts->kmip_key_id != NULL)
			BSON_APPEND_UTF8(&kek, "keyId", opts->kmip_key_id);
		bin = binary_view(&kek);
		ok = mongocrypt_ctx_setopt_key_encryption_key(ctx, bin);
		mongocrypt_binary_destroy(bin);
		bson_destroy(&kek);
	}
	else
		ok = setopt_utf8_doc(ctx, mongocrypt_ctx_setopt_key_encryption_key,
							 "provider", "local");
	for (int i = 0; ok && i < opts->n_alt_names; i++)
		ok = setopt_utf8_doc(ctx, mongocrypt_ctx_setopt_key_alt_name,
							 "keyAltName", opts->alt_names[i]);
	ok = ok && mongocrypt_ctx_datakey_init(ctx);
	ok = ok ? run_ctx(ctx, NULL, &result, &errmsg) : ctx_error(ctx, &errmsg);
	mongocrypt_ctx_destroy(ctx);

	if (!ok)
		die("create-key: %s", errmsg);
	print_doc(&result);
	bson_destroy(&result);
	return 0;
}

/* Is LINE empty or only whitespace? */
static bool
blank_line(const char *line)
{
	for (; *line; line++)
		if (*line != ' ' && *line != '\t' && *line != '\r' && *line != '\n')
			return false;
	return true;
}

/* Signature of a per-line operation for process_lines(). */
typedef bool (*LineOp) (mongocrypt_t *crypt, const KeyVault *vault,
						const void *arg, const bson_t *input,
						bson_t *result, char **errmsg);

static bool
encrypt_line(mongocrypt_t *crypt, const KeyVault *vault, const void *arg,
			 const bson_t *input, bson_t *result, char **errmsg)
{
	return encrypt_one(crypt, vault, arg, input, result, errmsg);
}

static bool
decrypt_line(mongocrypt_t *crypt, const KeyVault *vault, const void *arg,
			 const bson_t *input, bson_t *result, char **errmsg)
{
	return decrypt_one(crypt, vault, false, input, result, errmsg);
}

/*
 * Read extended-JSON documents from stdin, one per line (blank lines are
 * skipped), apply OP to each and print the result or {"error": ...}.
 * An unparseable line is a caller bug: fatal.
 */
static int
process_lines(mongocrypt_t *crypt, const KeyVault *vault, LineOp op,
			  const void *arg)
{
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		len;
	long		lineno = 0;

	while ((len = getline(&line, &cap, stdin)) >= 0)
	{
		bson_error_t error;
		bson_t	   *input;
		bson_t		result = BSON_INITIALIZER;
		char	   *errmsg = NULL;

		lineno++;
		if (blank_line(line))
			continue;
		input = bson_new_from_json((const uint8_t *) line, len, &error);
		if (input == NULL)
			die("stdin line %ld: %s", lineno, error.message);

		if (op(crypt, vault, arg, input, &result, &errmsg))
			print_doc(&result);
		else
			print_error(errmsg);

		bson_free(errmsg);
		bson_destroy(&result);
		bson_destroy(input);
	}
	free(line);
	return 0;
}

/* {"v": "xxx...x"} with a BENCH_STRING_LEN-byte string. */
static void
bench_plaintext(bson_t *doc)
{
	char		str[BENCH_STRING_LEN + 1];

	memset(str, 'x', BENCH_STRING_LEN);
	str[BENCH_STRING_LEN] = '\0';
	bson_init(doc);
	BSON_APPEND_UTF8(doc, "v", str);
}

/*
 * Encrypt PLAIN count times with SPEC; return operations per second and
 * leave the last ciphertext document in *last.
 */
static double
bench_encrypt(mongocrypt_t *crypt, const KeyVault *vault,
			  const EncryptSpec *spec, const bson_t *plain, long count,
			  bson_t *last)
{
	char	   *errmsg = NULL;
	double		start;

	/* warm-up: fetches the key into libmongocrypt's cache */
	if (!encrypt_one(crypt, vault, spec, plain, last, &errmsg))
		die("bench: encrypt: %s", errmsg);

	start = now_seconds();
	for (long i = 0; i < count; i++)
		if (!encrypt_one(crypt, vault, spec, plain, NULL, &errmsg))
			die("bench: encrypt: %s", errmsg);
	return count / (now_seconds() - start);
}

/* Decrypt CIPHER count times (explicit API); return operations per second. */
static double
bench_decrypt(mongocrypt_t *crypt, const KeyVault *vault,
			  const bson_t *cipher, const bson_t *plain, long count)
{
	bson_t		check = BSON_INITIALIZER;
	char	   *errmsg = NULL;
	double		start;

	if (!decrypt_one(crypt, vault, true, cipher, &check, &errmsg))
		die("bench: decrypt: %s", errmsg);
	if (!bson_equal(&check, plain))
		die("bench: decryption does not give back the plaintext");
	bson_destroy(&check);

	start = now_seconds();
	for (long i = 0; i < count; i++)
		if (!decrypt_one(crypt, vault, true, cipher, NULL, &errmsg))
			die("bench: decrypt: %s", errmsg);
	return count / (now_seconds() - start);
}

static int
cmd_bench(mongocrypt_t *crypt, const KeyVault *vault,
		  const OracleOptions *opts)
{
	EncryptSpec spec = {NULL, 0, opts->key_alt_name, NULL};
	bson_t		plain;
	bson_t		det_cipher = BSON_INITIALIZER;
	bson_t		rand_cipher = BSON_INITIALIZER;
	double		det_rate;
	double		rand_rate;
	double		dec_rate;

	bench_plaintext(&plain);
	spec.algorithm = MONGOCRYPT_ALGORITHM_DETERMINISTIC_STR;
	det_rate = bench_encrypt(crypt, vault, &spec, &plain, opts->count,
							 &det_cipher);
	spec.algorithm = MONGOCRYPT_ALGORITHM_RANDOM_STR;
	rand_rate = bench_encrypt(crypt, vault, &spec, &plain, opts->count,
							  &rand_cipher);
	dec_rate = bench_decrypt(crypt, vault, &rand_cipher, &plain, opts->count);

	printf("{\"det_encrypt_per_s\": %.0f, \"rand_encrypt_per_s\": %.0f, "
		   "\"decrypt_per_s\": %.0f}\n", det_rate, rand_rate, dec_rate);

	bson_destroy(&plain);
	bson_destroy(&det_cipher);
	bson_destroy(&rand_cipher);
	return 0;
}

int
main(int argc, char **argv)
{
	OracleOptions opts;
	KeyVault	vault = {NULL, 0};
	mongocrypt_t *crypt;
	int			rc;

	parse_options(argc, argv, &opts);
	/* line-buffered, so a test may drive us as a co-process */
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (opts.key_vault_path != NULL)
		keyvault_load(opts.key_vault_path, &vault);
	crypt = crypt_new(&opts);

	if (strcmp(opts.command, "create-key") == 0)
		rc = cmd_create_key(crypt, &opts);
	else if (strcmp(opts.command, "encrypt") == 0)
	{
		EncryptSpec spec = {opts.key_id, opts.key_id_len,
		opts.key_alt_name, opts.algorithm};

		rc = process_lines(crypt, &vault, encrypt_line, &spec);
	}
	else if (strcmp(opts.command, "decrypt") == 0)
		rc = process_lines(crypt, &vault, decrypt_line, NULL);
	else
		rc = cmd_bench(crypt, &vault, &opts);

	mongocrypt_destroy(crypt);
	keyvault_free(&vault);
	free_options(&opts);
	return rc;
}
