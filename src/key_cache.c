/*-------------------------------------------------------------------------
 *
 * key_cache.c
 *	  Reading data keys from bsoncrypt.key_vault and caching them unwrapped,
 *	  per backend.
 *
 *	  Lookups use the key vault's indexes directly (no SPI): fast on a cache
 *	  miss, and independent of the caller's privileges on the table, so a
 *	  role may be allowed to encrypt without being able to read the vault.
 *	  Entries live bsoncrypt.key_cache_ttl seconds (libmongocrypt's 60 s by
 *	  default), counted from the start of the statement that unwrapped them:
 *	  0 means once per statement, and the per-row check reads no clock.
 *	  They are dropped as soon as the key vault changes: triggers on
 *	  key_vault send a relcache invalidation that every backend receives
 *	  (rewraps, which leave data keys unchanged, do not).  Keys unwrapped
 *	  with a customer key are dropped when that key goes: at the end of the
 *	  transaction that supplied it, or when it is cleared or replaced
 *	  (key_cache_forget_customer_keys).  Dropped keys are zeroed
 *	  (fle_aead_free).
 *
 *	  Invalidations can arrive whenever a relation is opened or locked, so
 *	  in the middle of a lookup: identifiers are copied before anything
 *	  that can accept them, the relation whose invalidations flush the
 *	  cache is never forgotten (only replaced by a newer lookup), and a key
 *	  whose fetch saw a flush is fetched again before it is cached.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "bsoncrypt.h"
#include "customer_keys.h"
#include "key_cache.h"
#include "kms.h"
#include "key_audit.h"
#include "trusted_sql.h"

PG_FUNCTION_INFO_V1(bsoncrypt_key_vault_changed);

#define ALT_NAME_CACHE_MAX 256	/* longer alt names are looked up every time */
#define KEY_FETCH_TRIES 8		/* fetches of one key that may see a flush */

typedef struct AltNameEntry
{
	char		name[ALT_NAME_CACHE_MAX];	/* hash key */
	pg_uuid_t	id;
	TimestampTz expires;
} AltNameEntry;

uint64		key_cache_generation = 1;
int			key_cache_ttl = 60;

static HTAB *keys_by_id = NULL;
static HTAB *keys_by_alt_name = NULL;
/*
 * The key vault whose invalidations flush the cache: set by every lookup
 * that reads the vault, never reset (a dropped vault's invalidation flushed
 * the cache, and the next lookup finds the new one).
 */
static Oid	key_vault_oid = InvalidOid;
static bool callback_registered = false;
/* may keys_by_id hold keys that customer keys unwrapped? */
static bool any_customer_entries = false;

void
key_cache_define_settings(void)
{
	DefineCustomIntVariable("bsoncrypt.key_cache_ttl",
							"Seconds an unwrapped data key stays cached in a session.",
							"0 unwraps the key again for every statement that needs it.",
							&key_cache_ttl,
							60, 0, 86400,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

char *
uuid_to_cstring(const pg_uuid_t *id)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(id)));
}

/* Drop every cached key, zeroing it. */
static void
key_cache_flush(void)
{
	HASH_SEQ_STATUS status;
	DataKey    *key;

	if (keys_by_id != NULL)
	{
		hash_seq_init(&status, keys_by_id);
		while ((key = hash_seq_search(&status)) != NULL)
		{
			fle_aead_free(key->ctx);
			key->ctx = NULL;
		}
		hash_destroy(keys_by_id);
		keys_by_id = NULL;
	}
	if (keys_by_alt_name != NULL)
	{
		hash_destroy(keys_by_alt_name);
		keys_by_alt_name = NULL;
	}
	key_cache_generation++;
}

/*
 * Drop (zeroed) every cached key that a customer key unwrapped: that key
 * is gone or replaced, and withholding it must make them unreadable.
 */
void
key_cache_forget_customer_keys(void)
{
	HASH_SEQ_STATUS status;
	DataKey    *key;
	bool		any = false;

	if (keys_by_id == NULL || !any_customer_entries)
		return;
	any_customer_entries = false;
	hash_seq_init(&status, keys_by_id);
	while ((key = hash_seq_search(&status)) != NULL)
	{
		if (!key->customer)
			continue;
		fle_aead_free(key->ctx);
		key->ctx = NULL;
		(void) hash_search(keys_by_id, &key->id, HASH_REMOVE, NULL);
		any = true;
	}
	if (any)
		key_cache_generation++;
}

static void
key_cache_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == key_vault_oid)
		key_cache_flush();
}

static void
key_cache_init(void)
{
	HASHCTL		ctl;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(key_cache_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	if (keys_by_id == NULL)
	{
		ctl.keysize = sizeof(pg_uuid_t);
		ctl.entrysize = sizeof(DataKey);
		ctl.hcxt = TopMemoryContext;
		keys_by_id = hash_create("bsoncrypt data keys", 64, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	if (keys_by_alt_name == NULL)
	{
		ctl.keysize = ALT_NAME_CACHE_MAX;
		ctl.entrysize = sizeof(AltNameEntry);
		ctl.hcxt = TopMemoryContext;
		keys_by_alt_name = hash_create("bsoncrypt key alt names", 64, &ctl,
									   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
}

/*
 * The key vault relation, looked up again (it is checked to be the
 * extension's own) and remembered as the one whose invalidations flush
 * the cache.
 */
Oid
key_vault_relid(bool missing_ok)
{
	Oid			relid = bsoncrypt_relation_oid("key_vault", missing_ok);

	if (OidIsValid(relid))
		key_vault_oid = relid;
	return relid;
}

/*
 * The snapshot key lookups read with: the latest one, so that keys created
 * or deleted by statements that already finished are seen; in a parallel
 * worker (which may not take new snapshots) the query's own.
 */
static Snapshot
key_lookup_snapshot(void)
{
	if (IsInParallelMode())
		return ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();
	return GetLatestSnapshot();
}

/*
 * Fetch one row by a unique index on a text or uuid column.  Returns a copy
 * of the tuple or NULL.
 */
static HeapTuple
fetch_by_unique_key(const char *relname, const char *indexname,
					RegProcedure eqproc, Datum value, TupleDesc *desc)
{
	Oid			relid = bsoncrypt_relation_oid(relname, false);
	Oid			indexid = bsoncrypt_relation_oid(indexname, false);
	Relation	rel = table_open(relid, AccessShareLock);
	Relation	index = index_open(indexid, AccessShareLock);
	Snapshot	snapshot = RegisterSnapshot(key_lookup_snapshot());
	ScanKeyData skey;
	SysScanDesc scan;
	HeapTuple	tuple;

	ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], eqproc, value);
	scan = systable_beginscan(rel, indexid, true, snapshot, 1, &skey);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		tuple = heap_copytuple(tuple);
	*desc = CreateTupleDescCopy(RelationGetDescr(rel));
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return tuple;
}

/*
 * Read a key vault row and unwrap its data key into a new AEAD context.
 * ev gets the provider and version, for the audit trail; *customer tells
 * whether a customer key wrapped it.
 */
static FleAeadCtx *
unwrap_data_key(HeapTuple tuple, TupleDesc desc, const pg_uuid_t *id,
				KeyAuditEvent *ev, bool *customer)
{
	bool		isnull;
	char	   *what = psprintf("data key %s", uuid_to_cstring(id));
	bytea	   *material;
	BsonData   *master_key;
	char	   *version;
	uint8_t		dek[FLE_KEY_LEN];
	FleAeadCtx *ctx;
	const KmsProvider *provider;

	material = DatumGetByteaPP(heap_getattr(tuple, Anum_key_vault_key_material, desc, &isnull));
	if (isnull)
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED), errmsg("%s has no key material", what)));
	master_key = DatumGetBsonP(heap_getattr(tuple, Anum_key_vault_master_key, desc, &isnull));
	if (isnull)
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED), errmsg("%s has no master key", what)));
	version = TextDatumGetCString(heap_getattr(tuple, Anum_key_vault_master_key_version, desc, &isnull));
	ev->master_key_version = version;
	ev->provider = kms_document_provider(master_key, what);

	provider = kms_get_provider(ev->provider);
	*customer = (provider == &kms_customer_provider);
	kms_unwrap_secret(provider, version, master_key,
					  (const uint8_t *) VARDATA_ANY(material), VARSIZE_ANY_EXHDR(material),
					  dek, sizeof(dek), what);
	ctx = fle_aead_new(dek);
	explicit_bzero(dek, sizeof(dek));
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not set up encryption contexts for %s", what)));
	return ctx;
}

/*
 * Fetch the key vault row of id and unwrap it.  Retried while the cache
 * was flushed during the fetch: an invalidation processed after the
 * fetch's snapshot may be a delete of this very key, which must not be
 * cached.  After KEY_FETCH_TRIES the key is used, but cached for the
 * current statement only (*expires).
 */
static FleAeadCtx *
fetch_data_key_once(const pg_uuid_t *id, KeyAuditEvent *ev, bool *customer)
{
	HeapTuple	tuple;
	TupleDesc	desc;
	FleAeadCtx *ctx;

	/* remember which relation's invalidations flush this cache */
	(void) key_vault_relid(false);
	tuple = fetch_by_unique_key("key_vault", "key_vault_pkey", F_UUID_EQ,
								UUIDPGetDatum(id), &desc);
	if (tuple == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("data key %s is not in the key vault", uuid_to_cstring(id)),
				 errhint("The key was deleted (values encrypted with it cannot be decrypted any more) or never imported into bsoncrypt.key_vault.")));
	ctx = unwrap_data_key(tuple, desc, id, ev, customer);
	heap_freetuple(tuple);
	return ctx;
}

/* fetch_data_key_once, its outcome recorded in the audit trail */
static FleAeadCtx *
fetch_data_key_audited(const pg_uuid_t *id, bool *customer)
{
	KeyAuditEvent ev = {0};
	FleAeadCtx *ctx;

	ev.key_id = id;
	PG_TRY();
	{
		ctx = fetch_data_key_once(id, &ev, customer);
	}
	PG_CATCH();
	{
		ev.kind = KEY_AUDIT_UNWRAP_FAILED;
		key_audit_error(&ev);
		PG_RE_THROW();
	}
	PG_END_TRY();
	ev.kind = KEY_AUDIT_DATA_KEY_UNWRAPPED;
	key_audit_count_unwrap(&ev);
	return ctx;
}

static FleAeadCtx *
fetch_data_key(const pg_uuid_t *id, TimestampTz *expires, bool *customer)
{
	for (int attempt = 1;; attempt++)
	{
		uint64		generation = key_cache_generation;
		FleAeadCtx *ctx = fetch_data_key_audited(id, customer);

		if (generation == key_cache_generation)
			return ctx;
		if (attempt == KEY_FETCH_TRIES)
		{
			*expires = GetCurrentStatementStartTimestamp();
			return ctx;
		}
		fle_aead_free(ctx);
	}
}

/*
 * The data key with this _id, unwrapped; ERROR if the key vault has none
 * (for example after delete_key: crypto-shredding).
 */
DataKey *
key_cache_get_by_id(const pg_uuid_t *key_id)
{
	pg_uuid_t	id = *key_id;	/* key_id may point into a cache entry */
	DataKey    *key;
	bool		found;
	TimestampTz now = GetCurrentStatementStartTimestamp();
	TimestampTz expires = now + (TimestampTz) key_cache_ttl * USECS_PER_SEC;
	FleAeadCtx *ctx;
	bool		customer = false;

	key_cache_init();
	key = hash_search(keys_by_id, &id, HASH_FIND, NULL);
	if (key != NULL && key->expires >= now)
		return key;

	ctx = fetch_data_key(&id, &expires, &customer);

	/* (re)insert only now that unwrapping worked */
	key_cache_init();
	key = hash_search(keys_by_id, &id, HASH_ENTER, &found);
	if (found)
	{
		fle_aead_free(key->ctx);
		key_cache_generation++;
	}
	key->ctx = ctx;
	key->expires = expires;
	key->customer = customer;
	any_customer_entries |= customer;
	return key;
}

/*
 * The _id of the key with this keyAltName, or false.  *stable is false if
 * the cache was flushed meanwhile (the name may have moved since).
 */
static bool
alt_name_to_id(const char *alt_name, pg_uuid_t *id, bool *stable)
{
	uint64		generation = key_cache_generation;
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;

	/* alt names change with key_vault rows, whose invalidations flush */
	(void) key_vault_relid(false);
	tuple = fetch_by_unique_key("key_alt_names", "key_alt_names_pkey", F_TEXTEQ,
								CStringGetTextDatum(alt_name), &desc);
	*stable = generation == key_cache_generation;
	if (tuple == NULL)
		return false;
	*id = *DatumGetUUIDP(heap_getattr(tuple, 2, desc, &isnull));
	heap_freetuple(tuple);
	return true;
}

/* The data key with this keyAltName; ERROR if there is none. */
DataKey *
key_cache_get_by_alt_name(const char *alt_name)
{
	AltNameEntry *entry = NULL;
	TimestampTz now = GetCurrentStatementStartTimestamp();
	pg_uuid_t	id;
	bool		cacheable = strlen(alt_name) < ALT_NAME_CACHE_MAX;
	bool		stable;

	key_cache_init();
	if (cacheable)
		entry = hash_search(keys_by_alt_name, alt_name, HASH_FIND, NULL);
	if (entry != NULL && entry->expires >= now)
	{
		id = entry->id;			/* the lookup may destroy the entry */
		return key_cache_get_by_id(&id);
	}

	if (!alt_name_to_id(alt_name, &id, &stable))
	{
		KeyAuditEvent ev = {0};

		ev.kind = KEY_AUDIT_UNWRAP_FAILED;
		ev.key_alt_name = alt_name;
		ev.sqlerrcode = ERRCODE_UNDEFINED_OBJECT;
		ev.message = psprintf("no data key has keyAltName \"%s\"", alt_name);
		key_audit_event(&ev);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no data key has keyAltName \"%s\"", alt_name),
				 errhint("Create one with bsoncrypt.create_data_key(key_alt_names => '{%s}').", alt_name)));
	}
	key_cache_init();
	if (cacheable && stable)
	{
		entry = hash_search(keys_by_alt_name, alt_name, HASH_ENTER, NULL);
		entry->id = id;
		entry->expires = now + (TimestampTz) key_cache_ttl * USECS_PER_SEC;
	}
	return key_cache_get_by_id(&id);
}

bool
key_cache_still_valid(const DataKey *key, uint64 generation)
{
	return key != NULL && generation == key_cache_generation &&
		key->expires >= GetCurrentStatementStartTimestamp();
}

/*
 * Statement trigger on key_vault: tell every backend (at commit) to drop
 * its cached keys.
 */
Datum
bsoncrypt_key_vault_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "bsoncrypt_key_vault_changed: not called as a trigger");
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	PG_RETURN_POINTER(NULL);
}
