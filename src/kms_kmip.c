/*-------------------------------------------------------------------------
 *
 * kms_kmip.c
 *	  The "kmip" master-key provider: master keys kept by a KMIP server, as
 *	  MongoDB drivers and libmongocrypt use them.
 *
 *	  A master key is a KMIP object named by its unique identifier (keyId),
 *	  on the server of bsoncrypt.kmip_endpoint or on another endpoint that
 *	  setting lists.  Its version name is the keyId, or "keyId@endpoint"
 *	  when the key document names an endpoint; bsoncrypt.kmip_key_id is the
 *	  current version (new keys are wrapped with it).  Two kinds of object:
 *
 *	  - SecretData of 96 bytes (libmongocrypt's kmip provider): fetched with
 *		Get and handed out as the key-encryption key of the "local" format.
 *		Key documents: {provider: "kmip", [endpoint,] keyId}.
 *	  - an AES-256 SymmetricKey that never leaves the server ("delegated",
 *		libmongocrypt 1.10 and later): wrapping is KMIP Encrypt with AES-CBC,
 *		PKCS#5 padding and a random IV from the server, the key material
 *		being IV || ciphertext (128 bytes for a data key); unwrapping is
 *		Decrypt.  Key documents: {provider: "kmip", [endpoint,]
 *		delegated: true, keyId}.
 *
 *	  A key document says which kind it is (delegated); without one (table
 *	  keys, the current version, a rewrap target) the object's type is
 *	  asked of the server once per backend (GetAttributes "Object Type").
 *
 *	  Caches (per backend): fetched secret data for bsoncrypt.key_cache_ttl
 *	  seconds, counted from the start of the statement that fetched it, as
 *	  unwrapped data keys are (0: once per statement), zeroed when they
 *	  expire: at the next use of the provider or at the end of the
 *	  transaction, whichever comes first, and when a KMIP setting changes.
 *	  Object types are kept until a KMIP setting changes.
 *
 *	  bsoncrypt.kmip_create_master_key() makes a master key on the server:
 *	  Register of 96 random bytes as SecretData and Activate (as
 *	  libmongocrypt's createDataKey without a keyId does), or Create of an
 *	  AES-256 key and Activate.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "key_cache.h"
#include "kmip_client.h"
#include "kms.h"

PG_FUNCTION_INFO_V1(bsoncrypt_kmip_create_master_key);

#define KMIP_SECRET_LEN FLE_KEY_LEN
#define KMIP_IV_LEN 16
#define KMIP_REQUEST_MAX 2048

/* bsoncrypt.kmip_key_id: the current version */
static char *kmip_key_id = NULL;

/* A master key of the provider. */
typedef struct KmipKeyRef
{
	char	   *key_id;
	char	   *endpoint;		/* as the key document names it; NULL: default */
	bool		delegated;		/* a symmetric key used by Encrypt/Decrypt */
} KmipKeyRef;

/* a remote handle: where to Encrypt and Decrypt */
typedef struct KmipRemote
{
	char	   *key_id;
	char	   *endpoint;		/* resolved: never NULL */
} KmipRemote;

typedef struct KekEntry
{
	char	   *endpoint;
	char	   *key_id;
	uint8_t    *key;			/* KMIP_SECRET_LEN bytes, zeroed on removal */
	TimestampTz expires;
} KekEntry;

typedef struct TypeEntry
{
	char	   *endpoint;
	char	   *key_id;
	uint32_t	object_type;
} TypeEntry;

/* in TopMemoryContext */
static List *kek_cache = NIL;
static List *type_cache = NIL;
static uint64 caches_generation = 0;
static bool xact_callback_registered = false;

static void
assign_key_id(const char *newval, void *extra)
{
	kmip_settings_generation++;
}

static bool
valid_key_id(const char *key_id)
{
	size_t		len = strlen(key_id);

	if (len == 0 || len > KMIP_MAX_ID_LEN)
		return false;
	for (const char *p = key_id; *p; p++)
		if (*p <= ' ' || *p > '~' || *p == '@')
			return false;
	return true;
}

static bool
check_key_id(char **newval, void **extra, GucSource source)
{
	if (**newval != '\0' && !valid_key_id(*newval))
	{
		GUC_check_errdetail("A KMIP unique identifier of 1 to %d printable ASCII characters without spaces or '@'.",
							KMIP_MAX_ID_LEN);
		return false;
	}
	return true;
}

void
kmip_define_settings(void)
{
	kmip_client_define_settings();
	DefineCustomStringVariable("bsoncrypt.kmip_key_id",
							   "Unique identifier of the KMIP object that wraps new keys of the kmip provider (its current master key version).",
							   "A 96-byte SecretData object, or an AES-256 SymmetricKey used through KMIP Encrypt and Decrypt.",
							   &kmip_key_id,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_key_id, assign_key_id, NULL);
}

/* ----------------------------------------------------------------
 *		Versions and key documents
 * ----------------------------------------------------------------
 */

static char *
ref_version(const KmipKeyRef *ref)
{
	if (ref->endpoint == NULL)
		return pstrdup(ref->key_id);
	return psprintf("%s@%s", ref->key_id, ref->endpoint);
}

/* "keyId" or "keyId@endpoint" into *ref; false if it is not valid. */
static bool
parse_version(const char *version, KmipKeyRef *ref)
{
	const char *at = strrchr(version, '@');

	memset(ref, 0, sizeof(*ref));
	ref->key_id = at ? pnstrdup(version, at - version) : pstrdup(version);
	ref->endpoint = at ? pstrdup(at + 1) : NULL;
	return valid_key_id(ref->key_id) &&
		(ref->endpoint == NULL || kmip_valid_endpoint(ref->endpoint));
}

static bool
kmip_valid_version(const char *version)
{
	KmipKeyRef	ref;

	return parse_version(version, &ref);
}

/*
 * A kmip masterKey document into *ref, checked as libmongocrypt does:
 * provider, endpoint (string), keyId (string, required), delegated (bool).
 */
static const char *
parse_document(const bson_t *doc, KmipKeyRef *ref)
{
	bson_iter_t iter;

	memset(ref, 0, sizeof(*ref));
	if (!bson_iter_init(&iter, doc))
		return "masterKey must be a document";
	while (bson_iter_next(&iter))
	{
		const char *field = bson_iter_key(&iter);

		if (strcmp(field, "provider") == 0)
			continue;
		if (strcmp(field, "keyId") == 0 || strcmp(field, "endpoint") == 0)
		{
			const char *value;

			if (!BSON_ITER_HOLDS_UTF8(&iter))
				return psprintf("masterKey.%s must be a string", field);
			value = bson_iter_utf8(&iter, NULL);
			if (field[0] == 'k')
			{
				if (!valid_key_id(value))
					return psprintf("masterKey.keyId \"%s\" is not a valid KMIP unique identifier", value);
				ref->key_id = pstrdup(value);
			}
			else
			{
				if (!kmip_valid_endpoint(value))
					return psprintf("masterKey.endpoint \"%s\" is not host[:port]", value);
				ref->endpoint = pstrdup(value);
			}
		}
		else if (strcmp(field, "delegated") == 0)
		{
			if (!BSON_ITER_HOLDS_BOOL(&iter))
				return "masterKey.delegated must be a boolean";
			ref->delegated = bson_iter_bool(&iter);
		}
		else
			return psprintf("unexpected field \"%s\" in masterKey", field);
	}
	if (ref->key_id == NULL)
		return "masterKey.keyId is required for provider \"kmip\"";
	return NULL;
}

static char *
kmip_document_version(const bson_t *master_key, const char **problem)
{
	KmipKeyRef	ref;

	*problem = parse_document(master_key, &ref);
	return *problem ? NULL : ref_version(&ref);
}

/* The masterKey document of ref, in libmongocrypt's field order. */
static BsonData *
make_document(const KmipKeyRef *ref)
{
	bson_t		doc;
	BsonData   *result;

	bson_init(&doc);
	bson_append_utf8(&doc, "provider", 8, "kmip", 4);
	if (ref->endpoint != NULL)
		bson_append_utf8(&doc, "endpoint", 8, ref->endpoint, -1);
	if (ref->delegated)
		bson_append_bool(&doc, "delegated", 9, true);
	bson_append_utf8(&doc, "keyId", 5, ref->key_id, -1);
	result = bson_data_from_bson(&doc);
	bson_destroy(&doc);
	return result;
}

static char *
current_key_id(void)
{
	if (kmip_key_id == NULL || kmip_key_id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no current KMIP master key is configured"),
				 errhint("Set bsoncrypt.kmip_key_id to the unique identifier of a KMIP object (for example one made by bsoncrypt.kmip_create_master_key()), then reload.")));
	return pstrdup(kmip_key_id);
}

static char *
kmip_current_version(void)
{
	return current_key_id();
}

/* ----------------------------------------------------------------
 *		Caches
 * ----------------------------------------------------------------
 */

static void
kek_entry_free(KekEntry *entry)
{
	explicit_bzero(entry->key, KMIP_SECRET_LEN);
	pfree(entry->key);
	pfree(entry->endpoint);
	pfree(entry->key_id);
	pfree(entry);
}

/* Drop entries that expired before now (every one if all). */
static void
kek_cache_sweep(TimestampTz now, bool all)
{
	ListCell   *lc;

	foreach(lc, kek_cache)
	{
		KekEntry   *entry = (KekEntry *) lfirst(lc);

		if (all || entry->expires < now)
		{
			kek_cache = foreach_delete_current(kek_cache, lc);
			kek_entry_free(entry);
		}
	}
}

static void
kek_cache_xact_callback(XactEvent event, void *arg)
{
	if (kek_cache != NIL)
		kek_cache_sweep(GetCurrentTimestamp(), false);
}

/* Forget everything learned under older settings. */
static void
caches_check_settings(void)
{
	ListCell   *lc;

	if (caches_generation == kmip_settings_generation)
		return;
	kek_cache_sweep(0, true);
	foreach(lc, type_cache)
	{
		TypeEntry  *entry = (TypeEntry *) lfirst(lc);

		pfree(entry->endpoint);
		pfree(entry->key_id);
	}
	list_free_deep(type_cache);
	type_cache = NIL;
	caches_generation = kmip_settings_generation;
}

static KekEntry *
kek_cache_find(const char *endpoint, const char *key_id)
{
	ListCell   *lc;

	caches_check_settings();
	kek_cache_sweep(GetCurrentStatementStartTimestamp(), false);
	foreach(lc, kek_cache)
	{
		KekEntry   *entry = (KekEntry *) lfirst(lc);

		if (strcmp(entry->endpoint, endpoint) == 0 && strcmp(entry->key_id, key_id) == 0)
			return entry;
	}
	return NULL;
}

static void
kek_cache_add(const char *endpoint, const char *key_id, const uint8_t *key)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	KekEntry   *entry = palloc(sizeof(KekEntry));

	if (!xact_callback_registered)
	{
		RegisterXactCallback(kek_cache_xact_callback, NULL);
		xact_callback_registered = true;
	}
	entry->endpoint = pstrdup(endpoint);
	entry->key_id = pstrdup(key_id);
	entry->key = palloc(KMIP_SECRET_LEN);
	memcpy(entry->key, key, KMIP_SECRET_LEN);
	entry->expires = GetCurrentStatementStartTimestamp() +
		(TimestampTz) key_cache_ttl * USECS_PER_SEC;
	kek_cache = lappend(kek_cache, entry);
	MemoryContextSwitchTo(old);
}

/* ----------------------------------------------------------------
 *		Talking to the server
 * ----------------------------------------------------------------
 */

/* A request built by a kmip_request_* function; ERROR if it failed. */
static size_t
check_built(size_t len, const char *what)
{
	if (len == 0)
		elog(ERROR, "could not build a KMIP %s request", what);
	return len;
}

/*
 * Send a request that carries a secret: request (KMIP_REQUEST_MAX bytes,
 * request_len of them used, 0 if it could not be built) is zeroed, also
 * on error.
 */
static void
call_with_secret(const char *endpoint, uint8_t *request, size_t request_len,
				 bool idempotent, const char *what,
				 uint8_t **msg, size_t *msg_len, KmipResponse *r)
{
	PG_TRY();
	{
		kmip_call(endpoint, request, check_built(request_len, what), idempotent,
				  msg, msg_len, r);
	}
	PG_FINALLY();
	{
		explicit_bzero(request, KMIP_REQUEST_MAX);
	}
	PG_END_TRY();
}

static void
free_reply(uint8_t *msg, size_t len)
{
	explicit_bzero(msg, len);
	pfree(msg);
}

/* The object type of key_id on endpoint, asked once per backend. */
static uint32_t
object_type(const char *endpoint, const char *key_id)
{
	ListCell   *lc;
	uint8_t		request[KMIP_REQUEST_MAX];
	size_t		request_len;
	uint8_t    *msg;
	size_t		msg_len;
	KmipResponse r;
	TypeEntry  *entry;
	MemoryContext old;

	caches_check_settings();
	foreach(lc, type_cache)
	{
		entry = (TypeEntry *) lfirst(lc);
		if (strcmp(entry->endpoint, endpoint) == 0 && strcmp(entry->key_id, key_id) == 0)
			return entry->object_type;
	}
	request_len = check_built(kmip_request_get_object_type(request, sizeof(request), key_id),
							  "GetAttributes");
	kmip_call(endpoint, request, request_len, true, &msg, &msg_len, &r);
	kmip_check_result(endpoint, KMIP_OP_GET_ATTRIBUTES, key_id, &r);
	free_reply(msg, msg_len);
	if (r.object_type == 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("KMIP server \"%s\" did not say the object type of \"%s\"", endpoint, key_id)));
	old = MemoryContextSwitchTo(TopMemoryContext);
	entry = palloc(sizeof(TypeEntry));
	entry->endpoint = pstrdup(endpoint);
	entry->key_id = pstrdup(key_id);
	entry->object_type = r.object_type;
	type_cache = lappend(type_cache, entry);
	MemoryContextSwitchTo(old);
	return entry->object_type;
}

/* Get the 96-byte secret data key_id into key (from the cache if there). */
static void
fetch_secret(const char *endpoint, const char *key_id, uint8_t key[KMIP_SECRET_LEN])
{
	KekEntry   *cached = kek_cache_find(endpoint, key_id);
	uint8_t		request[KMIP_REQUEST_MAX];
	size_t		request_len;
	uint8_t    *msg;
	size_t		msg_len;
	KmipResponse r;
	const char *problem = NULL;

	if (cached != NULL)
	{
		memcpy(key, cached->key, KMIP_SECRET_LEN);
		return;
	}
	request_len = check_built(kmip_request_get(request, sizeof(request), key_id), "Get");
	kmip_call(endpoint, request, request_len, true, &msg, &msg_len, &r);
	PG_TRY();
	{
		kmip_check_result(endpoint, KMIP_OP_GET, key_id, &r);
		if (r.object_type == KMIP_OBJECT_SYMMETRIC_KEY)
			problem = "it is a SymmetricKey, used with KMIP Encrypt and Decrypt: a key document for it needs \"delegated\": true";
		else if (r.object_type != KMIP_OBJECT_SECRET_DATA)
			problem = psprintf("it is %s, not SecretData", kmip_object_type_name(r.object_type));
		else if (r.key_wrapped)
			problem = "its key block is wrapped";
		else if (r.key_format_type != KMIP_FORMAT_RAW && r.key_format_type != KMIP_FORMAT_OPAQUE)
			problem = "its key format is neither Raw nor Opaque";
		else if (r.key_material.len != KMIP_SECRET_LEN)
			problem = psprintf("it holds %zu bytes, not %d", r.key_material.len, KMIP_SECRET_LEN);
		else
			memcpy(key, r.key_material.data, KMIP_SECRET_LEN);
	}
	PG_FINALLY();
	{
		free_reply(msg, msg_len);
	}
	PG_END_TRY();
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("KMIP object \"%s\" on \"%s\" cannot be a master key: %s",
						key_id, endpoint, problem),
				 errhint("The kmip provider uses 96-byte SecretData objects (as libmongocrypt does) or AES-256 SymmetricKeys with delegated: true.")));
	kek_cache_add(endpoint, key_id, key);
}

/* Activate key_id (just made) on endpoint. */
static void
activate(const char *endpoint, const char *key_id)
{
	uint8_t		request[KMIP_REQUEST_MAX];
	size_t		request_len;
	uint8_t    *msg;
	size_t		msg_len;
	KmipResponse r;

	request_len = check_built(kmip_request_activate(request, sizeof(request), key_id), "Activate");
	kmip_call(endpoint, request, request_len, false, &msg, &msg_len, &r);
	kmip_check_result(endpoint, KMIP_OP_ACTIVATE, key_id, &r);
	free_reply(msg, msg_len);
}

/* ----------------------------------------------------------------
 *		The provider
 * ----------------------------------------------------------------
 */

static void
kmip_open(const char *version, const BsonData *master_key, KmsOpened *opened)
{
	KmipKeyRef	ref;
	const char *endpoint;

	if (master_key != NULL)
	{
		bson_t		doc;
		const char *problem;

		bson_init_from_data(&doc, master_key);
		problem = parse_document(&doc, &ref);
		if (problem != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("invalid kmip masterKey document: %s", problem)));
		if (version != NULL && strcmp(version, ref_version(&ref)) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("master key version \"%s\" does not match the masterKey document, which names \"%s\"",
							version, ref_version(&ref))));
	}
	else if (version != NULL)
	{
		if (!parse_version(version, &ref))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid kmip master key version \"%s\"", version),
					 errhint("A kmip version is a KMIP unique identifier, optionally followed by @host:port.")));
	}
	else
	{
		memset(&ref, 0, sizeof(ref));
		ref.key_id = current_key_id();
	}

	if (ref.endpoint != NULL)
	{
		kmip_check_endpoint_allowed(ref.endpoint);
		endpoint = ref.endpoint;
	}
	else
		endpoint = kmip_default_endpoint();

	if (master_key == NULL)
	{
		uint32_t	type = object_type(endpoint, ref.key_id);

		if (type != KMIP_OBJECT_SECRET_DATA && type != KMIP_OBJECT_SYMMETRIC_KEY)
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("KMIP object \"%s\" on \"%s\" cannot be a master key: it is %s",
							ref.key_id, endpoint, kmip_object_type_name(type)),
					 errhint("The kmip provider uses 96-byte SecretData objects or AES-256 SymmetricKeys.")));
		ref.delegated = (type == KMIP_OBJECT_SYMMETRIC_KEY);
	}

	if (ref.delegated)
	{
		KmipRemote *remote = palloc(sizeof(KmipRemote));

		remote->key_id = pstrdup(ref.key_id);
		remote->endpoint = pstrdup(endpoint);
		opened->remote = remote;
	}
	else
	{
		fetch_secret(endpoint, ref.key_id, opened->key);
		opened->handed_out = true;
	}
	opened->version = ref_version(&ref);
	opened->document = make_document(&ref);
}

/* Encrypt the secret with the AES key: IV || ciphertext. */
static bytea *
kmip_remote_wrap(void *handle, const uint8_t *secret, size_t len)
{
	KmipRemote *remote = (KmipRemote *) handle;
	uint8_t		request[KMIP_REQUEST_MAX];
	size_t		request_len;
	uint8_t    *msg;
	size_t		msg_len;
	KmipResponse r;
	bytea	   *result;

	request_len = kmip_request_encrypt(request, sizeof(request), remote->key_id, secret, len);
	call_with_secret(remote->endpoint, request, request_len, true, "Encrypt",
					 &msg, &msg_len, &r);
	kmip_check_result(remote->endpoint, KMIP_OP_ENCRYPT, remote->key_id, &r);
	if (r.iv.len != KMIP_IV_LEN || r.data.len == 0 || r.data.len % 16 != 0)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("KMIP server \"%s\" answered Encrypt with %zu bytes and an IV of %zu bytes",
						remote->endpoint, r.data.len, r.iv.len),
				 errhint("The key must be an AES key, used with CBC mode, PKCS#5 padding and a random IV.")));
	result = palloc(VARHDRSZ + KMIP_IV_LEN + r.data.len);
	SET_VARSIZE(result, VARHDRSZ + KMIP_IV_LEN + r.data.len);
	memcpy(VARDATA(result), r.iv.data, KMIP_IV_LEN);
	memcpy(VARDATA(result) + KMIP_IV_LEN, r.data.data, r.data.len);
	free_reply(msg, msg_len);
	return result;
}

/*
 * Decrypt IV || ciphertext with the AES key.  A Cryptographic Failure
 * (bad padding: another key's wrapping) is "does not unwrap"; other
 * failures are errors, with the server's reason (PyKMIP reports bad
 * padding as a General Failure, which is then such an error).
 */
static size_t
kmip_remote_unwrap(void *handle, const uint8_t *wrapped, size_t len, uint8_t **plain)
{
	KmipRemote *remote = (KmipRemote *) handle;
	uint8_t		request[KMIP_REQUEST_MAX];
	size_t		request_len;
	uint8_t    *msg;
	size_t		msg_len;
	KmipResponse r;
	size_t		plain_len = 0;

	*plain = NULL;
	if (len < 2 * KMIP_IV_LEN || (len - KMIP_IV_LEN) % 16 != 0)
		return 0;
	request_len = check_built(kmip_request_decrypt(request, sizeof(request), remote->key_id,
												   wrapped + KMIP_IV_LEN, len - KMIP_IV_LEN,
												   wrapped, KMIP_IV_LEN), "Decrypt");
	kmip_call(remote->endpoint, request, request_len, true, &msg, &msg_len, &r);
	PG_TRY();
	{
		if (r.result_status != KMIP_STATUS_SUCCESS &&
			r.result_reason == KMIP_REASON_CRYPTOGRAPHIC_FAILURE)
			plain_len = 0;
		else
		{
			kmip_check_result(remote->endpoint, KMIP_OP_DECRYPT, remote->key_id, &r);
			if (r.data.len > 0)
			{
				*plain = palloc(r.data.len);
				memcpy(*plain, r.data.data, r.data.len);
				plain_len = r.data.len;
			}
		}
	}
	PG_FINALLY();
	{
		free_reply(msg, msg_len);
	}
	PG_END_TRY();
	return plain_len;
}

/* No list: key documents name their version (their keyId). */
static List *
kmip_list_versions(void)
{
	return NIL;
}

const KmsProvider kms_kmip_provider = {
	.name = "kmip",
	.valid_version = kmip_valid_version,
	.open = kmip_open,
	.remote_wrap = kmip_remote_wrap,
	.remote_unwrap = kmip_remote_unwrap,
	.current_version = kmip_current_version,
	.list_versions = kmip_list_versions,
	.document_version = kmip_document_version,
};

/* ----------------------------------------------------------------
 *		kmip_create_master_key
 * ----------------------------------------------------------------
 */

/* The unique identifier of a Register or Create response (palloc'd). */
static char *
made_id(const char *endpoint, uint32_t operation, const KmipResponse *r)
{
	char	   *id;

	kmip_check_result(endpoint, operation, NULL, r);
	id = pnstrdup((const char *) r->unique_identifier.data, r->unique_identifier.len);
	if (!valid_key_id(id))
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("KMIP server \"%s\" answered %s with an unusable unique identifier",
						endpoint, kmip_operation_name(operation))));
	return id;
}

/*
 * kmip_create_master_key(delegated boolean DEFAULT false, name text
 * DEFAULT NULL) -> text: make a master key on the default KMIP server
 * and return its unique identifier (for bsoncrypt.kmip_key_id).
 */
Datum
bsoncrypt_kmip_create_master_key(PG_FUNCTION_ARGS)
{
	bool		delegated = !PG_ARGISNULL(0) && PG_GETARG_BOOL(0);
	char	   *name = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	const char *endpoint;
	uint8_t		request[KMIP_REQUEST_MAX];
	size_t		request_len;
	uint8_t    *msg;
	size_t		msg_len;
	KmipResponse r;
	char	   *id;

	if (name != NULL && (name[0] == '\0' || strlen(name) > KMIP_MAX_ID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a KMIP object name must have 1 to %d bytes", KMIP_MAX_ID_LEN)));
	endpoint = kmip_default_endpoint();
	if (delegated)
		request_len = kmip_request_create_aes256(request, sizeof(request), name);
	else
	{
		uint8_t		secret[KMIP_SECRET_LEN];

		if (!fle_random_bytes(secret, sizeof(secret)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a random master key")));
		request_len = kmip_request_register_secret(request, sizeof(request),
												   secret, sizeof(secret), name);
		explicit_bzero(secret, sizeof(secret));
	}
	call_with_secret(endpoint, request, request_len, false,
					 delegated ? "Create" : "Register", &msg, &msg_len, &r);
	id = made_id(endpoint, delegated ? KMIP_OP_CREATE : KMIP_OP_REGISTER, &r);
	free_reply(msg, msg_len);
	activate(endpoint, id);
	PG_RETURN_TEXT_P(cstring_to_text(id));
}
