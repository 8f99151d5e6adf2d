/*-------------------------------------------------------------------------
 *
 * kms.h
 *	  The master-key provider interface.
 *
 *	  A provider protects secrets (data keys, table keys) with master keys
 *	  it names by version.  For each master key it opens, it either hands
 *	  out a 96-byte key-encryption key, with which kms.c wraps in MongoDB's
 *	  "local" KMS format (fle_wrap_key), or keeps the key and wraps and
 *	  unwraps remotely (KMIP Encrypt/Decrypt).  A key vault row records the
 *	  provider's masterKey document (MongoDB's, e.g. {provider: "kmip",
 *	  keyId: "17"}) and the version, so that a provider can take per-key
 *	  parameters from the document.  Each provider lives in its own file
 *	  (kms_local.c, kms_command.c, kms_kmip.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSONCRYPT_KMS_H
#define BSONCRYPT_KMS_H

#include "postgres.h"
#include "nodes/pg_list.h"

#include "bsoncrypt.h"
#include "fle_aead.h"

/* a version name of local and command: [A-Za-z0-9][A-Za-z0-9._-]*, at most this long */
#define KMS_VERSION_NAME_MAX 64

/* What a provider's open callback found. */
typedef struct KmsOpened
{
	bool		handed_out;		/* key holds the key-encryption key */
	uint8_t		key[FLE_KEY_LEN];
	void	   *remote;			/* else: the provider's handle (palloc'd) */
	char	   *version;		/* the version opened (palloc'd) */
	BsonData   *document;		/* masterKey document of keys it wraps */
} KmsOpened;

typedef struct KmsProvider
{
	const char *name;			/* "local", "command", "kmip" */

	/* Is version a valid version name of this provider? */
	bool		(*valid_version) (const char *version);

	/*
	 * Open master key version (NULL: the current one) for keys whose
	 * masterKey document is master_key (NULL when unknown, as for table
	 * keys).  Fills *opened; raises an ERROR naming the provider and the
	 * version, never key bytes.
	 */
	void		(*open) (const char *version, const BsonData *master_key,
						 KmsOpened *opened);

	/*
	 * For keys that stay in the KMS (opened->remote): wrap a secret, and
	 * unwrap, returning a palloc'd plaintext (*plain, its length returned)
	 * or 0 with *plain NULL if the wrapping does not belong to this key.
	 * NULL for providers that always hand out their keys.
	 */
	bytea	   *(*remote_wrap) (void *remote, const uint8_t *secret, size_t len);
	size_t		(*remote_unwrap) (void *remote, const uint8_t *wrapped,
								  size_t len, uint8_t **plain);

	/* the current version's name without opening it; NULL: open it */
	char	   *(*current_version) (void);

	/* every version loadable now (for imports); may be NIL */
	List	   *(*list_versions) (void);

	/*
	 * The version a masterKey document names, after checking its fields
	 * (NULL callback: documents name no version and hold only "provider").
	 * Returns NULL and sets *problem if the document is not valid.
	 */
	char	   *(*document_version) (const bson_t *master_key,
									 const char **problem);
} KmsProvider;

/*
 * An opened master key, used to wrap and unwrap (kms_kek_*): a keyed
 * AEAD context when the provider handed the key out, else the provider's
 * remote handle.
 */
typedef struct KmsKek
{
	const KmsProvider *provider;
	char	   *version;
	BsonData   *document;		/* masterKey document of keys it wraps */
	FleAeadCtx *ctx;			/* handed-out key; NULL if remote */
	void	   *remote;
} KmsKek;

/* providers, one file each */
extern const KmsProvider kms_local_provider;
extern const KmsProvider kms_command_provider;
extern const KmsProvider kms_kmip_provider;

/* settings */
extern char *kms_local_master_key_file;
extern char *kms_master_key_command;
extern void kms_define_settings(void);
extern void kmip_define_settings(void);

extern const KmsProvider *kms_get_provider(const char *name);
extern bool kms_valid_version_name(const char *name);
extern bool kms_valid_version(const KmsProvider *provider, const char *version);
extern char *kms_current_version_name(const KmsProvider *provider);
extern BsonData *kms_provider_document(const KmsProvider *provider);
extern char *kms_document_provider(const BsonData *master_key, const char *what);
extern const char *kms_check_document(const bson_t *master_key, char **version);
extern void kms_check_secret_file(const char *path, const char *what);

extern KmsKek *kms_kek_open(const KmsProvider *provider, const char *version,
							const BsonData *master_key);
extern void kms_kek_close(KmsKek *kek);
extern bytea *kms_kek_wrap(KmsKek *kek, const uint8_t *secret, size_t len);
extern size_t kms_kek_unwrap(KmsKek *kek, const uint8_t *wrapped,
							 size_t wrapped_len, uint8_t **plain);

extern bytea *kms_wrap_secret(const KmsProvider *provider, const char *version,
							  const BsonData *master_key,
							  const uint8_t *secret, size_t secret_len,
							  char **version_out, BsonData **document_out);
extern void kms_unwrap_secret(const KmsProvider *provider, const char *version,
							  const BsonData *master_key,
							  const uint8_t *wrapped, size_t wrapped_len,
							  uint8_t *out, size_t out_len,
							  const char *what);
extern char *kms_find_unwrapping_version(const BsonData *master_key,
										 const uint8_t *wrapped,
										 size_t wrapped_len);
extern bool kms_decode_master_key(const char *base64, size_t len,
								  uint8_t key[FLE_KEY_LEN]);

#endif							/* BSONCRYPT_KMS_H */
