/*-------------------------------------------------------------------------
 *
 * kms.c
 *	  Master-key providers: the registry, their settings, and wrapping of
 *	  secrets with a provider's master key.  Wrapping is MongoDB's "local"
 *	  KMS format (fle_wrap_key), so a data key wrapped here can be read by a
 *	  MongoDB driver that has the same 96-byte master key.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "utils/guc.h"

#include "kms.h"

char	   *kms_local_master_key_file = NULL;
char	   *kms_master_key_command = NULL;

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
}

const KmsProvider *
kms_get_provider(const char *name)
{
	if (name != NULL && strcmp(name, kms_local_provider.name) == 0)
		return &kms_local_provider;
	if (name != NULL && strcmp(name, kms_command_provider.name) == 0)
		return &kms_command_provider;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown master key provider \"%s\"", name ? name : "(null)"),
			 errhint("Known providers are \"local\" and \"command\".")));
	return NULL;				/* keep compiler quiet */
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

/* The name of the provider's current master key version (palloc'd). */
char *
kms_current_version_name(const KmsProvider *provider)
{
	uint8_t		key[FLE_KEY_LEN];
	char	   *version = NULL;

	provider->load_master_key(NULL, key, &version);
	explicit_bzero(key, sizeof(key));
	if (version == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("master key provider \"%s\" named no current version", provider->name)));
	return version;
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

/*
 * Wrap a secret with the master key of version (NULL: the current one).
 * Returns the wrapped bytes; *version_out gets the version used.
 */
bytea *
kms_wrap_secret(const KmsProvider *provider, const char *version,
				const uint8_t *secret, size_t secret_len, char **version_out)
{
	uint8_t		master[FLE_KEY_LEN];
	size_t		len = fle_aead_ciphertext_len(secret_len);
	bytea	   *result = (bytea *) palloc(VARHDRSZ + len);
	char	   *used = NULL;
	FleStatus	status;

	provider->load_master_key(version, master, &used);
	status = fle_wrap_key(master, secret, secret_len,
						  (uint8_t *) VARDATA(result), &len);
	explicit_bzero(master, sizeof(master));
	if (status != FLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not wrap a key with master key version \"%s\" of provider \"%s\": %s",
						used, provider->name, fle_status_message(status))));
	SET_VARSIZE(result, VARHDRSZ + len);
	if (version_out)
		*version_out = used;
	return result;
}

/*
 * Unwrap a secret of exactly out_len bytes with the given master key
 * version.  what names the secret in messages (e.g. "data key <uuid>").
 */
void
kms_unwrap_secret(const KmsProvider *provider, const char *version,
				  const uint8_t *wrapped, size_t wrapped_len,
				  uint8_t *out, size_t out_len, const char *what)
{
	uint8_t		master[FLE_KEY_LEN];
	size_t		max = fle_aead_plaintext_max_len(wrapped_len);
	uint8_t    *plain;
	size_t		plain_len = 0;
	FleStatus	status;

	if (max == 0 || max < out_len)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cannot unwrap %s: wrapped key material is %zu bytes, too short",
						what, wrapped_len)));
	plain = palloc(max);
	provider->load_master_key(version, master, NULL);
	status = fle_unwrap_key(master, wrapped, wrapped_len, plain, &plain_len);
	explicit_bzero(master, sizeof(master));
	if (status == FLE_OK && plain_len == out_len)
		memcpy(out, plain, out_len);
	explicit_bzero(plain, max);
	pfree(plain);
	if (status != FLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("cannot unwrap %s with master key version \"%s\" of provider \"%s\": %s",
						what, version ? version : "(current)", provider->name,
						fle_status_message(status)),
				 errhint("The master key is not the one that wrapped this key, or the key material was modified.")));
	if (plain_len != out_len)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cannot unwrap %s: it holds %zu bytes, expected %zu",
						what, plain_len, out_len)));
}

/*
 * Which of the provider's versions unwraps this key material?  NULL if none.
 */
char *
kms_find_unwrapping_version(const KmsProvider *provider,
							const uint8_t *wrapped, size_t wrapped_len)
{
	List	   *versions = provider->list_versions();
	ListCell   *lc;
	size_t		max = fle_aead_plaintext_max_len(wrapped_len);
	uint8_t    *plain;
	char	   *found = NULL;

	if (max == 0)
		return NULL;
	plain = palloc(max);
	foreach(lc, versions)
	{
		char	   *version = (char *) lfirst(lc);
		uint8_t		master[FLE_KEY_LEN];
		size_t		plain_len;
		FleStatus	status;

		provider->load_master_key(version, master, NULL);
		status = fle_unwrap_key(master, wrapped, wrapped_len, plain, &plain_len);
		explicit_bzero(master, sizeof(master));
		explicit_bzero(plain, max);
		if (status == FLE_OK)
		{
			found = pstrdup(version);
			break;
		}
	}
	pfree(plain);
	return found;
}
