/*-------------------------------------------------------------------------
 *
 * rotation.h
 *	  Master-key rotation: rewrapping of wrapped keys (key_rewrap.c) and the
 *	  background workers that rotate automatically (rotation_worker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSONCRYPT_ROTATION_H
#define BSONCRYPT_ROTATION_H

#include "postgres.h"
#include "nodes/pg_list.h"
#include "utils/uuid.h"

#include "fle_aead.h"

/*
 * Master keys loaded during one rewrap job, as AEAD contexts keyed by them
 * (the key bytes live only in those contexts, zeroed on free).  Loading a
 * key is expensive for the command provider (one command per load), so
 * every (provider, version) is loaded once per job.
 */
typedef struct MasterKeyCache
{
	MemoryContext cxt;
	List	   *entries;		/* of MasterKeyEntry */
} MasterKeyCache;

extern MasterKeyCache *master_key_cache_create(void);
extern void master_key_cache_free(MasterKeyCache *cache);
extern char *master_key_cache_current(MasterKeyCache *cache, const char *provider);
extern void master_key_cache_forget_current(MasterKeyCache *cache, const char *provider);

/* Outcome of a batch of the rotation worker over one table */
typedef struct RewrapBatch
{
	uint64		scanned;		/* rows the batch query returned */
	uint64		rewrapped;		/* rows rewrapped */
	bool		have_last;
	pg_uuid_t	last_id;		/* key_vault: highest _id of the batch */
} RewrapBatch;

extern void rewrap_key_vault_batch(MasterKeyCache *cache, const char *provider,
								   const char *version, int batch_size,
								   const pg_uuid_t *after, RewrapBatch *result);
extern void rewrap_relation_keys_batch(MasterKeyCache *cache, const char *provider,
									   const char *version, int batch_size,
									   RewrapBatch *result);

/* rotation_worker.c */
extern PGDLLIMPORT int rotation_row_delay;	/* bsoncrypt.rotation_row_delay */
extern void rotation_init(void);

/* rotation_registry.c: databases that have the extension */
extern void rotation_registry_init(void);
extern void rotation_note_extension(void);
extern bool rotation_registry_contains(Oid dboid);
extern void rotation_registry_remove(Oid dboid);
extern List *rotation_registry_list(void);
extern void rotation_registry_load(void);
extern void rotation_registry_save(void);

#endif							/* BSONCRYPT_ROTATION_H */
