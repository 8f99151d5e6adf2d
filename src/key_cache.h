/*-------------------------------------------------------------------------
 *
 * key_cache.h
 *	  Per-backend cache of unwrapped data keys from bsoncrypt.key_vault.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSONCRYPT_KEY_CACHE_H
#define BSONCRYPT_KEY_CACHE_H

#include "postgres.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "fle_aead.h"

/* column numbers of bsoncrypt.key_vault (extension/parts/10_key_vault.sql) */
#define Anum_key_vault_id					1
#define Anum_key_vault_key_alt_names		2
#define Anum_key_vault_key_material			3
#define Anum_key_vault_master_key			4
#define Anum_key_vault_master_key_version	5
#define Anum_key_vault_creation_date		6
#define Anum_key_vault_update_date			7
#define Anum_key_vault_status				8
#define Natts_key_vault						8

typedef struct DataKey
{
	pg_uuid_t	id;				/* hash key: the key's _id */
	FleAeadCtx *ctx;			/* keyed AEAD contexts; the key bytes live here */
	TimestampTz expires;		/* unwrap again in statements starting after this */
} DataKey;

/*
 * Bumped whenever cached keys are dropped; a DataKey pointer remembered
 * with the generation it was fetched in is valid while both match and the
 * key has not expired.
 */
extern uint64 key_cache_generation;

/* bsoncrypt.key_cache_ttl: seconds unwrapped keys stay cached */
extern int	key_cache_ttl;

extern void key_cache_define_settings(void);
extern DataKey *key_cache_get_by_id(const pg_uuid_t *id);
extern DataKey *key_cache_get_by_alt_name(const char *alt_name);
extern bool key_cache_still_valid(const DataKey *key, uint64 generation);
extern Oid	key_vault_relid(bool missing_ok);
extern char *uuid_to_cstring(const pg_uuid_t *id);

#endif							/* BSONCRYPT_KEY_CACHE_H */
