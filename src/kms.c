/*-------------------------------------------------------------------------
 *
 * kms.c
 *	  Master-key providers: the registry, the settings of the local and
 *	  command providers, masterKey documents, and wrapping of secrets with
 *	  an opened master key (KmsKek).
 *
 *	  A key handed out by its provider wraps in MongoDB's "local" KMS
 *	  format (the FLE1 AEAD keyed by the 96-byte key, random IV, no AAD), so
 *	  a data key wrapped here can be read by a MongoDB driver that has the
 *	  same key: the local key itself, or the 96-byte KMIP secret data that
 *	  libmongocrypt fetches with Get.  A key kept in the KMS wraps through
 *	  its provider (remote_wrap / remote_unwrap).  Every copy of a handed-out
 *	  key is zeroed; keyed contexts are freed with fle_aead_free.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "common/base64.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "kms.h"
#include "key_audit.h"

char	   *kms_local_master_key_file = NULL;
char	   *kms_master_key_command = NULL;

static const KmsProvider *const providers[] = {
	&kms_local_provider,
	&kms_command_provider,
	&kms_kmip_provider,
	&kms_customer_provider,
};

void
kms_define_settings(void)
{
	DefineCustomStringVariable("bsoncrypt.local_master_key_file",
							   "File holding the local provider's master keys (base64, one version per line).",
							   "Must be readable only by the server's OS user (or root and its group).",
							   &kms_local_master_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("bsoncrypt.master_key_command",
							   "Shell command printing a master key for the command provider; %n is replaced by the wanted version.",
							   "Prints \"<version> <base64 key>\" (or just the key) on its standard output.",
							   &kms_master_key_command,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	kmip_define_settings();
}

static const KmsProvider *
find_provider(const char *name)
{
	for (int i = 0; i < lengthof(providers); i++)
		if (name != NULL && strcmp(name, providers[i]->name) == 0)
			return providers[i];
	return NULL;
}

const KmsProvider *
kms_get_provider(const char *name)
{
	const KmsProvider *provider = find_provider(name);

	if (provider == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown master key provider \"%s\"", name ? name : "(null)"),
				 errhint("Known providers are \"local\", \"command\", \"kmip\" and \"customer\".")));
	return provider;
}

/*
 * A version name starts with a letter or digit: the command provider puts
 * it on a command line, where "-x" would be an option of the command (and
 * "." or ".." a directory), and whoever may write the key vault chooses the
 * versions that keys name.
 */
#define VERSION_NAME_ALNUM "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

bool
kms_valid_version_name(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || len > KMS_VERSION_NAME_MAX || strspn(name, VERSION_NAME_ALNUM) == 0)
		return false;
	return strspn(name, VERSION_NAME_ALNUM "._-") == len;
}

bool
kms_valid_version(const KmsProvider *provider, const char *version)
{
	if (provider->valid_version != NULL)
		return provider->valid_version(version);
	return kms_valid_version_name(version);
}

/* The name of the provider's current master key version (palloc'd). */
char *
kms_current_version_name(const KmsProvider *provider)
{
	KmsKek	   *kek;
	char	   *version;

	if (provider->current_version != NULL)
		return provider->current_version();
	kek = kms_kek_open(provider, NULL, NULL);
	version = pstrdup(kek->version);
	kms_kek_close(kek);
	return version;
}

/* The masterKey document {provider: <name>} (palloc'd). */
BsonData *
kms_provider_document(const KmsProvider *provider)
{
	bson_t		doc;
	BsonData   *result;

	bson_init(&doc);
	bson_append_utf8(&doc, "provider", 8, provider->name, -1);
	result = bson_data_from_bson(&doc);
	bson_destroy(&doc);
	return result;
}

/* The "provider" string of a masterKey document; what names its key. */
char *
kms_document_provider(const BsonData *master_key, const char *what)
{
	bson_t		doc;
	bson_iter_t iter;

	bson_init_from_data(&doc, master_key);
	if (!bson_iter_init_find(&iter, &doc, "provider") || !BSON_ITER_HOLDS_UTF8(&iter))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%s has no masterKey.provider", what)));
	return pstrdup(bson_iter_utf8(&iter, NULL));
}

/*
 * Check a masterKey document as libmongocrypt does: a known provider and
 * the fields that provider takes.  Returns NULL if it is valid (*version
 * then gets the version it names, or NULL if the provider's documents
 * name none), else the problem.
 */
const char *
kms_check_document(const bson_t *master_key, char **version)
{
	bson_iter_t iter;
	const KmsProvider *provider;
	const char *problem = NULL;

	*version = NULL;
	if (!bson_iter_init_find(&iter, master_key, "provider"))
		return "masterKey has no provider";
	if (!BSON_ITER_HOLDS_UTF8(&iter))
		return "masterKey.provider must be a string";
	provider = find_provider(bson_iter_utf8(&iter, NULL));
	if (provider == NULL)
		return psprintf("masterKey.provider \"%s\" is not supported (only \"local\", \"command\", \"kmip\" and \"customer\")",
						bson_iter_utf8(&iter, NULL));
	if (provider->document_version != NULL)
	{
		*version = provider->document_version(master_key, &problem);
		return problem;
	}
	if (!bson_iter_init(&iter, master_key))
		return "masterKey must be a document";
	while (bson_iter_next(&iter))
		if (strcmp(bson_iter_key(&iter), "provider") != 0)
			return psprintf("unexpected field \"%s\" in masterKey", bson_iter_key(&iter));
	return NULL;
}

/*
 * A secret file inside the data directory goes wherever the data goes (base
 * backups, pg_basebackup to a standby, file-level copies): the key travels
 * with the ciphertext it protects.  Said in the server log, once per
 * process and file setting.
 */
static void
warn_if_in_data_directory(const char *path, const char *what)
{
	static char *warned_for = NULL;
	char	   *real_path = realpath(path, NULL);
	char	   *real_data = DataDir ? realpath(DataDir, NULL) : NULL;
	bool		inside = false;

	if (real_path != NULL && real_data != NULL)
	{
		size_t		n = strlen(real_data);

		inside = strncmp(real_path, real_data, n) == 0 && real_path[n] == '/';
	}
	free(real_path);
	free(real_data);
	if (!inside || (warned_for != NULL && strcmp(warned_for, path) == 0))
		return;
	if (warned_for != NULL)
		pfree(warned_for);
	warned_for = MemoryContextStrdup(TopMemoryContext, path);
	ereport(LOG,
			(errmsg("%s is inside the data directory", what),
			 errdetail_log("The %s is \"%s\".", what, path),
			 errhint("Base backups and copies of the data directory then carry the key with the data it protects; keep the file outside it.")));
}

/*
 * Refuse a file holding secrets that group or others could read, as
 * PostgreSQL does for ssl_key_file.  what names it in messages (e.g.
 * "local master key file"); its path, a superuser-only setting, goes to
 * the server log only.
 */
void
kms_check_secret_file(const char *path, const char *what)
{
	struct stat st;

	if (stat(path, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not access %s: %m", what),
				 errdetail_log("The %s is \"%s\".", what, path)));
	if (!S_ISREG(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s is not a regular file", what),
				 errdetail_log("The %s is \"%s\".", what, path)));
	if (st.st_uid != geteuid() && st.st_uid != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s must be owned by the database user or root", what),
				 errdetail_log("The %s is \"%s\".", what, path)));
	if ((st.st_uid == geteuid() && (st.st_mode & (S_IRWXG | S_IRWXO))) ||
		(st.st_uid == 0 && (st.st_mode & (S_IWGRP | S_IXGRP | S_IRWXO))))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s has group or world access", what),
				 errdetail("File must have permissions u=rw (0600) or less if owned by the database user, or permissions u=rw,g=r (0640) or less if owned by root."),
				 errdetail_log("The %s is \"%s\"; it must have permissions u=rw (0600) or less if owned by the database user, or u=rw,g=r (0640) or less if owned by root.",
							   what, path)));
	warn_if_in_data_directory(path, what);
}

/* Decode a base64 master key; true if it is exactly FLE_KEY_LEN bytes. */
bool
kms_decode_master_key(const char *base64, size_t len, uint8_t key[FLE_KEY_LEN])
{
	char		buf[FLE_KEY_LEN + 8];
	int			n;

	if (len == 0 || pg_b64_dec_len((int) len) > (int) sizeof(buf))
		return false;
	n = pg_b64_decode(base64, (int) len, buf, sizeof(buf));
	if (n == FLE_KEY_LEN)
		memcpy(key, buf, FLE_KEY_LEN);
	explicit_bzero(buf, sizeof(buf));
	return n == FLE_KEY_LEN;
}

/* ----------------------------------------------------------------
 *		Opened master keys
 * ----------------------------------------------------------------
 */

/*
 * Open master key version of provider (NULL: the current one), for keys
 * whose masterKey document is master_key (NULL when unknown).
 */
KmsKek *
kms_kek_open(const KmsProvider *provider, const char *version,
			 const BsonData *master_key)
{
	KmsOpened	opened;
	KmsKek	   *kek = palloc0(sizeof(KmsKek));

	memset(&opened, 0, sizeof(opened));
	PG_TRY();
	{
		provider->open(version, master_key, &opened);
		if (opened.handed_out)
		{
			kek->ctx = fle_aead_new(opened.key);
			if (kek->ctx == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("could not set up a context for master key version \"%s\" of provider \"%s\"",
								opened.version, provider->name)));
		}
	}
	PG_CATCH();
	{
		KeyAuditEvent ev = {0};

		explicit_bzero(opened.key, sizeof(opened.key));
		ev.kind = KEY_AUDIT_PROVIDER_ERROR;
		ev.provider = provider->name;
		ev.master_key_version = version;
		key_audit_error(&ev);
		PG_RE_THROW();
	}
	PG_END_TRY();
	explicit_bzero(opened.key, sizeof(opened.key));
	if (!opened.handed_out && opened.remote == NULL)
		elog(ERROR, "master key provider \"%s\" opened neither a key nor a remote handle",
			 provider->name);
	kek->provider = provider;
	kek->version = opened.version;
	kek->document = opened.document ? opened.document : kms_provider_document(provider);
	kek->remote = opened.remote;
	return kek;
}

/* Zero and free; NULL is accepted. */
void
kms_kek_close(KmsKek *kek)
{
	if (kek == NULL)
		return;
	fle_aead_free(kek->ctx);
	kek->ctx = NULL;
	pfree(kek);
}

bytea *
kms_kek_wrap(KmsKek *kek, const uint8_t *secret, size_t len)
{
	size_t		out_len = fle_aead_ciphertext_len(len);
	bytea	   *result;
	FleStatus	status;

	if (kek->ctx == NULL)
		return kek->provider->remote_wrap(kek->remote, secret, len);
	result = (bytea *) palloc(VARHDRSZ + out_len);
	status = fle_aead_encrypt(kek->ctx, NULL, 0, secret, len, NULL,
							  (uint8_t *) VARDATA(result), &out_len);
	if (status != FLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not wrap a key with master key version \"%s\" of provider \"%s\": %s",
						kek->version, kek->provider->name, fle_status_message(status))));
	SET_VARSIZE(result, VARHDRSZ + out_len);
	return result;
}

/*
 * Unwrap with an opened master key, whatever the secret's length:
 * *plain gets a palloc'd buffer the caller must explicit_bzero (the
 * returned length) and pfree.  Returns the plaintext length, or 0 if the
 * wrapping does not authenticate with this key (*plain is then NULL).
 */
size_t
kms_kek_unwrap(KmsKek *kek, const uint8_t *wrapped, size_t wrapped_len,
			   uint8_t **plain)
{
	size_t		max = fle_aead_plaintext_max_len(wrapped_len);
	uint8_t    *buf;
	size_t		len = 0;

	*plain = NULL;
	if (kek->ctx == NULL)
		return kek->provider->remote_unwrap(kek->remote, wrapped, wrapped_len, plain);
	if (max == 0)
		return 0;
	buf = palloc(max);
	if (fle_aead_decrypt(kek->ctx, NULL, 0, wrapped, wrapped_len, buf, &len) != FLE_OK ||
		len == 0)
	{
		explicit_bzero(buf, max);
		pfree(buf);
		return 0;
	}
	*plain = buf;
	return len;
}

/*
 * Wrap a secret with the master key of version (NULL: the current one)
 * for a key whose masterKey document is master_key (NULL: the one of
 * that version).  Returns the wrapped bytes; *version_out and
 * *document_out (when not NULL) get the version used and the masterKey
 * document of the wrapped key.
 */
bytea *
kms_wrap_secret(const KmsProvider *provider, const char *version,
				const BsonData *master_key,
				const uint8_t *secret, size_t secret_len,
				char **version_out, BsonData **document_out)
{
	KmsKek	   *kek = kms_kek_open(provider, version, master_key);
	bytea	   *result;

	PG_TRY();
	{
		result = kms_kek_wrap(kek, secret, secret_len);
	}
	PG_CATCH();
	{
		kms_kek_close(kek);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (version_out)
		*version_out = kek->version;
	if (document_out)
		*document_out = kek->document;
	kms_kek_close(kek);
	return result;
}

/*
 * Unwrap with kek into a palloc'd buffer (length in *len); NULL if the
 * wrapping does not authenticate.  kek is closed, also on error.
 */
static uint8_t *
unwrap_and_close(KmsKek *kek, const uint8_t *wrapped, size_t wrapped_len,
				 size_t *len)
{
	uint8_t    *plain = NULL;

	PG_TRY();
	{
		*len = kms_kek_unwrap(kek, wrapped, wrapped_len, &plain);
	}
	PG_FINALLY();
	{
		kms_kek_close(kek);
	}
	PG_END_TRY();
	return plain;
}

/*
 * Unwrap a secret of exactly out_len bytes with the given master key
 * version.  what names the secret in messages (e.g. "data key <uuid>").
 */
void
kms_unwrap_secret(const KmsProvider *provider, const char *version,
				  const BsonData *master_key,
				  const uint8_t *wrapped, size_t wrapped_len,
				  uint8_t *out, size_t out_len, const char *what)
{
	KmsKek	   *kek = kms_kek_open(provider, version, master_key);
	char	   *used = kek->version;
	uint8_t    *plain;
	size_t		plain_len = 0;

	if (kek->ctx != NULL && fle_aead_plaintext_max_len(wrapped_len) < out_len)
	{
		kms_kek_close(kek);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cannot unwrap %s: wrapped key material is %zu bytes, too short",
						what, wrapped_len)));
	}
	plain = unwrap_and_close(kek, wrapped, wrapped_len, &plain_len);
	if (plain == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("cannot unwrap %s with master key version \"%s\" of provider \"%s\": %s",
						what, used, provider->name, fle_status_message(FLE_ERR_TAG)),
				 errhint("The master key is not the one that wrapped this key, or the key material was modified.")));
	if (plain_len == out_len)
		memcpy(out, plain, out_len);
	explicit_bzero(plain, plain_len);
	pfree(plain);
	if (plain_len != out_len)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cannot unwrap %s: it holds %zu bytes, expected %zu",
						what, plain_len, out_len)));
}

/* Does the master key unwrap this key material?  kek is closed. */
static bool
kek_unwraps(KmsKek *kek, const uint8_t *wrapped, size_t wrapped_len)
{
	size_t		len = 0;
	uint8_t    *plain = unwrap_and_close(kek, wrapped, wrapped_len, &len);

	if (plain == NULL)
		return false;
	explicit_bzero(plain, len);
	pfree(plain);
	return true;
}

/*
 * Which version of the document's provider unwraps this key material?
 * The one the document names, if its provider's documents name one;
 * else the first of the provider's versions that does.  NULL if none.
 */
char *
kms_find_unwrapping_version(const BsonData *master_key,
							const uint8_t *wrapped, size_t wrapped_len)
{
	const KmsProvider *provider = kms_get_provider(kms_document_provider(master_key, "the key document"));
	List	   *versions;
	ListCell   *lc;

	if (provider->document_version != NULL)
	{
		KmsKek	   *kek = kms_kek_open(provider, NULL, master_key);
		char	   *version = kek->version;

		return kek_unwraps(kek, wrapped, wrapped_len) ? version : NULL;
	}
	if (fle_aead_plaintext_max_len(wrapped_len) == 0)
		return NULL;
	versions = provider->list_versions();
	foreach(lc, versions)
	{
		KmsKek	   *kek = kms_kek_open(provider, (char *) lfirst(lc), master_key);

		if (kek_unwraps(kek, wrapped, wrapped_len))
			return pstrdup((char *) lfirst(lc));
	}
	return NULL;
}
