/*-------------------------------------------------------------------------
 *
 * kms.h
 *	  The master-key provider interface.  A provider hands out 96-byte
 *	  master keys by version; kms.c wraps and unwraps secrets (data keys,
 *	  table keys) with them in MongoDB's "local" KMS format.  Each provider
 *	  lives in its own file (kms_local.c, kms_command.c, ...).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSONCRYPT_KMS_H
#define BSONCRYPT_KMS_H

#include "postgres.h"
#include "nodes/pg_list.h"

#include "fle_aead.h"

/* a version name: [A-Za-z0-9][A-Za-z0-9._-]*, at most this long */
#define KMS_VERSION_NAME_MAX 64

typedef struct KmsProvider
{
	const char *name;			/* "local", "command" */

	/*
	 * Load the master key of a version into key.  version == NULL asks for
	 * the current version, whose name is then returned in *version_out
	 * (palloc'd).  Raises an ERROR naming the provider and version, never
	 * key bytes.
	 */
	void		(*load_master_key) (const char *version,
									uint8_t key[FLE_KEY_LEN],
									char **version_out);

	/* every version this provider can load now (for imports); may be NIL */
	List	   *(*list_versions) (void);
} KmsProvider;

/* providers, one file each */
extern const KmsProvider kms_local_provider;
extern const KmsProvider kms_command_provider;

/* settings */
extern char *kms_local_master_key_file;
extern char *kms_master_key_command;
extern void kms_define_settings(void);

extern const KmsProvider *kms_get_provider(const char *name);
extern bool kms_valid_version_name(const char *name);
extern char *kms_current_version_name(const KmsProvider *provider);

extern bytea *kms_wrap_secret(const KmsProvider *provider, const char *version,
							  const uint8_t *secret, size_t secret_len,
							  char **version_out);
extern void kms_unwrap_secret(const KmsProvider *provider, const char *version,
							  const uint8_t *wrapped, size_t wrapped_len,
							  uint8_t *out, size_t out_len,
							  const char *what);
extern char *kms_find_unwrapping_version(const KmsProvider *provider,
										 const uint8_t *wrapped,
										 size_t wrapped_len);
extern bool kms_decode_master_key(const char *base64, size_t len,
								  uint8_t key[FLE_KEY_LEN]);

#endif							/* BSONCRYPT_KMS_H */
