/*-------------------------------------------------------------------------
 *
 * key_rewrap.c
 *	  Rewrapping of wrapped keys under another master key (version): the
 *	  rewrap_many_data_key SQL function (MongoDB's rewrapManyDataKey) and
 *	  the batches of the rotation worker (rotation_worker.c), over the key
 *	  vault and, when it exists, bsoncrypt.relation_keys (table keys of the
 *	  at-rest encryption).
 *
 *	  A rewrap never changes the secret: the wrapped bytes are unwrapped
 *	  with the master key version recorded on the row, wrapped again with
 *	  the target version, and the new wrapping is checked to unwrap to the
 *	  same secret before the row is updated.  key_material and
 *	  master_key_version change in one UPDATE of the row, so every row is
 *	  always wrapped by exactly the version it names, whatever happens to
 *	  the transaction.  The target version is probed (loaded twice, a
 *	  random secret wrapped and unwrapped) before any row is touched.
 *	  The worker's batches pause bsoncrypt.rotation_row_delay after each
 *	  key (off by default), so that a test can crash the server while a
 *	  batch transaction is open.
 *
 *	  Updates are plain UPDATEs through SPI, so key_vault's statement
 *	  trigger tells every session to drop its cached data keys.  Every
 *	  statement names each object with its schema and is parsed with a
 *	  pinned search_path (trusted_sql.c): callers are superusers, whose
 *	  search_path other roles may have set (ALTER DATABASE ... SET).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/uuid.h"
#include "utils/wait_event.h"

#include "bsoncrypt.h"
#include "key_cache.h"
#include "kms.h"
#include "rotation.h"
#include "trusted_sql.h"

PG_FUNCTION_INFO_V1(bsoncrypt_rewrap_many_data_key);
PG_FUNCTION_INFO_V1(bsoncrypt_current_master_key_version);

#define REWRAP_FETCH_SIZE 1000

typedef struct MasterKeyEntry
{
	char	   *provider;
	char	   *version;
	KmsKek	   *kek;			/* the opened master key */
	bool		current;		/* probed as the provider's current version */
} MasterKeyEntry;

/* ----------------------------------------------------------------
 *		Master keys of one job
 * ----------------------------------------------------------------
 */

MasterKeyCache *
master_key_cache_create(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "bsoncrypt master keys",
											  ALLOCSET_SMALL_SIZES);
	MasterKeyCache *cache = MemoryContextAllocZero(cxt, sizeof(MasterKeyCache));

	cache->cxt = cxt;
	return cache;
}

/* Zero every key and free the cache; NULL is accepted. */
void
master_key_cache_free(MasterKeyCache *cache)
{
	ListCell   *lc;

	if (cache == NULL)
		return;
	foreach(lc, cache->entries)
	{
		MasterKeyEntry *entry = (MasterKeyEntry *) lfirst(lc);

		kms_kek_close(entry->kek);
		entry->kek = NULL;
	}
	MemoryContextDelete(cache->cxt);
}

static MasterKeyEntry *
cache_find(MasterKeyCache *cache, const char *provider, const char *version)
{
	ListCell   *lc;

	foreach(lc, cache->entries)
	{
		MasterKeyEntry *entry = (MasterKeyEntry *) lfirst(lc);

		if (strcmp(entry->provider, provider) == 0 &&
			strcmp(entry->version, version) == 0)
			return entry;
	}
	return NULL;
}

/* Keep kek (opened in the cache's context) as provider's version. */
static MasterKeyEntry *
cache_add(MasterKeyCache *cache, const char *provider, const char *version,
		  KmsKek *kek)
{
	MemoryContext old = MemoryContextSwitchTo(cache->cxt);
	MasterKeyEntry *entry = palloc0(sizeof(MasterKeyEntry));

	entry->provider = pstrdup(provider);
	entry->version = pstrdup(version);
	entry->kek = kek;
	cache->entries = lappend(cache->entries, entry);
	MemoryContextSwitchTo(old);
	return entry;
}

/* Open a master key in the cache's context (not yet kept). */
static KmsKek *
cache_open(MasterKeyCache *cache, const char *provider, const char *version,
		   const BsonData *master_key)
{
	MemoryContext old = MemoryContextSwitchTo(cache->cxt);
	KmsKek	   *kek = kms_kek_open(kms_get_provider(provider), version, master_key);

	MemoryContextSwitchTo(old);
	return kek;
}

/*
 * The master key of a version, opened once per job (master_key: the
 * masterKey document of a key it wraps, when known).
 */
static KmsKek *
master_key_cache_get(MasterKeyCache *cache, const char *provider,
					 const char *version, const BsonData *master_key)
{
	MasterKeyEntry *entry = cache_find(cache, provider, version);
	KmsKek	   *kek;

	if (entry != NULL)
		return entry->kek;
	kek = cache_open(cache, provider, version, master_key);
	return cache_add(cache, provider, version, kek)->kek;
}

/*
 * Check that the provider's current master key, opened as current, and
 * the one opened by the name of that version are the same key: a random
 * secret wrapped with the first must unwrap with the second.  Also with
 * old, the key opened before under that name, when there is one.
 */
static void
probe_current(KmsKek *current, KmsKek *by_name, KmsKek *old)
{
	uint8_t		probe[FLE_KEY_LEN];
	bytea	   *wrapped;
	uint8_t    *plain;
	size_t		plain_len;
	bool		same;

	if (!fle_random_bytes(probe, sizeof(probe)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for a master key probe")));
	wrapped = kms_kek_wrap(current, probe, sizeof(probe));
	plain_len = kms_kek_unwrap(by_name, (uint8_t *) VARDATA(wrapped),
							   VARSIZE(wrapped) - VARHDRSZ, &plain);
	same = plain != NULL && plain_len == sizeof(probe) &&
		memcmp(plain, probe, sizeof(probe)) == 0;
	if (plain != NULL)
	{
		explicit_bzero(plain, plain_len);
		pfree(plain);
	}
	explicit_bzero(probe, sizeof(probe));
	if (plain == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("master key version \"%s\" of provider \"%s\" differs when loaded by its name",
						current->version, current->provider->name),
				 errdetail("The current master key and the key loaded as version \"%s\" are not the same key.",
						   current->version),
				 errhint("Fix the key ring or the master key command so that every version name always gives the same key.")));
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("master key version \"%s\" of provider \"%s\" failed the wrap/unwrap probe",
						current->version, current->provider->name)));
	if (old != NULL)
	{
		/* loaded before as an old version: it must be the same key */
		plain_len = kms_kek_unwrap(old, (uint8_t *) VARDATA(wrapped),
								   VARSIZE(wrapped) - VARHDRSZ, &plain);
		if (plain != NULL)
		{
			explicit_bzero(plain, plain_len);
			pfree(plain);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("master key version \"%s\" of provider \"%s\" changed during the rewrap",
							current->version, current->provider->name)));
	}
	pfree(wrapped);
}

/*
 * The provider's current version, after checking that it works: opening
 * it by its name must give the same key as asking for the current one
 * (later unwraps open it by name), and a random secret wrapped with it
 * must unwrap again.  Returns the version name (in the cache's context).
 */
char *
master_key_cache_current(MasterKeyCache *cache, const char *provider_name)
{
	const KmsProvider *provider = kms_get_provider(provider_name);
	ListCell   *lc;
	KmsKek	   *volatile current = NULL;
	KmsKek	   *volatile by_name = NULL;
	MasterKeyEntry *entry;

	foreach(lc, cache->entries)
	{
		MasterKeyEntry *e = (MasterKeyEntry *) lfirst(lc);

		if (e->current && strcmp(e->provider, provider_name) == 0)
			return e->version;
	}

	PG_TRY();
	{
		current = cache_open(cache, provider_name, NULL, NULL);
		if (current->version == NULL || !kms_valid_version(provider, current->version))
			ereport(ERROR,
					(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
					 errmsg("master key provider \"%s\" named no valid current version",
							provider_name)));
		by_name = cache_open(cache, provider_name, current->version, NULL);
		entry = cache_find(cache, provider_name, current->version);
		probe_current(current, by_name, entry ? entry->kek : NULL);
	}
	PG_CATCH();
	{
		kms_kek_close(current);
		kms_kek_close(by_name);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (entry == NULL)
		entry = cache_add(cache, provider_name, current->version, by_name);
	else
		kms_kek_close(by_name);
	kms_kek_close(current);
	entry->current = true;
	return entry->version;
}

/*
 * Forget which version is the provider's current one, so that the next
 * master_key_cache_current asks the provider again (a rotation that is
 * re-targeted).  Loaded keys stay.
 */
void
master_key_cache_forget_current(MasterKeyCache *cache, const char *provider)
{
	ListCell   *lc;

	foreach(lc, cache->entries)
	{
		MasterKeyEntry *entry = (MasterKeyEntry *) lfirst(lc);

		if (strcmp(entry->provider, provider) == 0)
			entry->current = false;
	}
}

/*
 * Rewrap one wrapped secret from old_kek to new_kek.  expect_len is the
 * secret's length, or 0 for any.  what names the row in messages.
 */
static bytea *
rewrap_secret(KmsKek *old_kek, const char *old_desc,
			  KmsKek *new_kek, const char *new_desc,
			  const uint8_t *wrapped, size_t wrapped_len,
			  size_t expect_len, const char *what)
{
	uint8_t    *plain;
	uint8_t    *check = NULL;
	size_t		plain_len;
	size_t		check_len = 0;
	bytea	   *result = NULL;
	bool		same;

	plain_len = kms_kek_unwrap(old_kek, wrapped, wrapped_len, &plain);
	if (plain == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("cannot unwrap %s with %s", what, old_desc),
				 errhint("The master key is not the one that wrapped this key, or the key material was modified; nothing was rewrapped.")));
	if (expect_len != 0 && plain_len != expect_len)
	{
		explicit_bzero(plain, plain_len);
		pfree(plain);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cannot rewrap %s: it holds %zu bytes, expected %zu",
						what, plain_len, expect_len)));
	}

	/* plain is set before and not changed in the block: safe in the handler */
	PG_TRY();
	{
		result = kms_kek_wrap(new_kek, plain, plain_len);
		check_len = kms_kek_unwrap(new_kek, (uint8_t *) VARDATA(result),
								   VARSIZE(result) - VARHDRSZ, &check);
	}
	PG_CATCH();
	{
		explicit_bzero(plain, plain_len);
		pfree(plain);
		PG_RE_THROW();
	}
	PG_END_TRY();
	same = check != NULL && check_len == plain_len &&
		memcmp(check, plain, plain_len) == 0;
	explicit_bzero(plain, plain_len);
	pfree(plain);
	if (check != NULL)
	{
		explicit_bzero(check, check_len);
		pfree(check);
	}
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("the new wrapping of %s with %s does not unwrap to the same key",
						what, new_desc)));
	return result;
}

static char *
version_desc(const char *provider, const char *version)
{
	return psprintf("master key version \"%s\" of provider \"%s\"", version, provider);
}

/*
 * bsoncrypt.rotation_row_delay: pause inside a batch of the rotation
 * worker, after a key, its rows still locked and its transaction open.
 */
static void
batch_row_pause(void)
{
	if (rotation_row_delay <= 0)
		return;
	(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 rotation_row_delay, PG_WAIT_EXTENSION);
	CHECK_FOR_INTERRUPTS();
}

/* ----------------------------------------------------------------
 *		The key vault
 * ----------------------------------------------------------------
 */

/* a key vault row read for rewrapping */
typedef struct RewrapRow
{
	pg_uuid_t	id;
	bytea	   *material;
	char	   *version;
	char	   *provider;
	BsonData   *master_key;
} RewrapRow;

/*
 * Read rows (_id, key_material, master_key_version, provider, master_key)
 * of the current SPI tuple table into RewrapRow copies.
 */
static RewrapRow *
collect_rows(uint64 n)
{
	RewrapRow  *rows = palloc0(sizeof(RewrapRow) * Max(n, 1));
	TupleDesc	desc = SPI_tuptable->tupdesc;

	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		bool		isnull;
		Datum		d;

		d = SPI_getbinval(tuple, desc, 1, &isnull);
		rows[i].id = *DatumGetUUIDP(d);
		d = SPI_getbinval(tuple, desc, 2, &isnull);
		rows[i].material = DatumGetByteaPCopy(d);
		d = SPI_getbinval(tuple, desc, 3, &isnull);
		rows[i].version = TextDatumGetCString(d);
		d = SPI_getbinval(tuple, desc, 4, &isnull);
		if (isnull)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("data key %s has no masterKey.provider",
							uuid_to_cstring(&rows[i].id))));
		rows[i].provider = TextDatumGetCString(d);
		d = SPI_getbinval(tuple, desc, 5, &isnull);
		rows[i].master_key = (BsonData *) PG_DETOAST_DATUM_COPY(d);
	}
	return rows;
}

/*
 * Rewrap rows of the key vault (already locked by the caller) with
 * new_provider (NULL: each row's own) at new_version (NULL: the provider's
 * current version), in one UPDATE.  in_batch: a batch of the rotation
 * worker (batch_row_pause after each key).  Returns the number of rows
 * updated.
 */
static uint64
rewrap_key_vault_rows(MasterKeyCache *cache, RewrapRow *rows, uint64 n,
					  const char *new_provider, const char *new_version,
					  bool in_batch)
{
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *materials = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *versions = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *documents = palloc(sizeof(Datum) * Max(n, 1));
	Oid			argtypes[4] = {UUIDARRAYOID, BYTEAARRAYOID, TEXTARRAYOID, BYTEAARRAYOID};
	Datum		values[4];
	int			rc;
	int			nestlevel;
	MemoryContext rowcxt;

	if (n == 0)
		return 0;
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "bsoncrypt rewrap row",
								   ALLOCSET_SMALL_SIZES);
	for (uint64 i = 0; i < n; i++)
	{
		const char *provider = new_provider ? new_provider : rows[i].provider;
		const char *version = new_version ? new_version
			: master_key_cache_current(cache, provider);
		KmsKek	   *old_kek = master_key_cache_get(cache, rows[i].provider, rows[i].version,
													rows[i].master_key);
		KmsKek	   *new_kek = master_key_cache_get(cache, provider, version, NULL);
		MemoryContext old = MemoryContextSwitchTo(rowcxt);
		char	   *what = psprintf("data key %s", uuid_to_cstring(&rows[i].id));
		char	   *old_desc = version_desc(rows[i].provider, rows[i].version);
		char	   *new_desc = version_desc(provider, version);

		MemoryContextSwitchTo(old);
		ids[i] = UUIDPGetDatum(&rows[i].id);
		materials[i] = PointerGetDatum(rewrap_secret(old_kek, old_desc, new_kek, new_desc,
													 (const uint8_t *) VARDATA_ANY(rows[i].material),
													 VARSIZE_ANY_EXHDR(rows[i].material),
													 FLE_KEY_LEN, what));
		versions[i] = PointerGetDatum(cstring_to_text(version));
		/* the masterKey document of the target: {provider}, or kmip's keyId */
		documents[i] = PointerGetDatum(new_kek->document);
		MemoryContextReset(rowcxt);
		if (in_batch)
			batch_row_pause();
	}
	MemoryContextDelete(rowcxt);
	values[0] = PointerGetDatum(construct_array(ids, (int) n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	values[1] = PointerGetDatum(construct_array(materials, (int) n, BYTEAOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(versions, (int) n, TEXTOID, -1, false, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_array(documents, (int) n, BYTEAOID, -1, false, TYPALIGN_INT));
	/*
	 * Join the batch to the vault through its primary key: a hash join
	 * would read the whole vault for every batch.  The settings are
	 * restored right after, as for a function's SET clause.
	 */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = bsoncrypt_spi_execute(
							   "UPDATE bsoncrypt.key_vault k"
							   "   SET key_material = u.m, master_key_version = u.v,"
							   "       master_key = bsoncrypt.bson_from_bytea(u.d),"
							   "       update_date = pg_catalog.now()"
							   "  FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),"
							   "                  pg_catalog.unnest($3), pg_catalog.unnest($4)) AS u(id, m, v, d)"
							   " WHERE k._id OPERATOR(pg_catalog.=) u.id",
							   4, argtypes, values, NULL, false, 0);
	AtEOXact_GUC(true, nestlevel);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "SPI_execute_with_args failed updating the key vault: %s",
			 SPI_result_code_string(rc));
	for (uint64 i = 0; i < n; i++)
	{
		pfree(DatumGetPointer(materials[i]));
		pfree(DatumGetPointer(versions[i]));
	}
	pfree(ids);
	pfree(materials);
	pfree(versions);
	pfree(documents);
	return SPI_processed;
}

/*
 * One batch of the rotation worker over the key vault: the next
 * batch_size keys by _id (after *after when given); those of provider not
 * wrapped by version, and not locked by other sessions, are rewrapped to
 * version.  The range is taken from the primary key first, so that every
 * batch reads only its own part of the vault, whatever the statistics.
 * Runs in the caller's transaction (SPI connected).
 */
void
rewrap_key_vault_batch(MasterKeyCache *cache, const char *provider,
					   const char *version, int batch_size,
					   const pg_uuid_t *after, RewrapBatch *result)
{
	Oid			argtypes[4] = {UUIDOID, INT4OID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int			rc;
	uint64		n;
	bool		isnull;
	Datum		upper;
	RewrapRow  *rows;

	memset(result, 0, sizeof(RewrapBatch));
	if (after != NULL)
		values[0] = UUIDPGetDatum(after);
	else
	{
		values[0] = (Datum) 0;
		nulls[0] = 'n';
	}
	values[1] = Int32GetDatum(batch_size);
	rc = bsoncrypt_spi_execute(
							   "SELECT pg_catalog.count(*)::pg_catalog.int8,"
							   "       pg_catalog.max(r._id::pg_catalog.text COLLATE pg_catalog.\"C\")::pg_catalog.uuid"
							   "  FROM (SELECT k._id FROM bsoncrypt.key_vault k"
							   "         WHERE $1::pg_catalog.uuid IS NULL OR k._id OPERATOR(pg_catalog.>) $1"
							   "         ORDER BY k._id LIMIT $2) r",
							   2, argtypes, values, nulls, true, 0);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "SPI_execute_with_args failed reading the key vault: %s",
			 SPI_result_code_string(rc));
	result->scanned = (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 1, &isnull));
	upper = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (result->scanned == 0 || isnull)
		return;
	result->have_last = true;
	result->last_id = *DatumGetUUIDP(upper);
	SPI_freetuptable(SPI_tuptable);

	values[1] = UUIDPGetDatum(&result->last_id);
	values[2] = CStringGetTextDatum(provider);
	values[3] = CStringGetTextDatum(version);
	argtypes[1] = UUIDOID;
	rc = bsoncrypt_spi_execute(
							   "SELECT k._id, k.key_material, k.master_key_version,"
							   "       bsoncrypt.bson_get_text(k.master_key, 'provider'), k.master_key"
							   "  FROM bsoncrypt.key_vault k"
							   " WHERE ($1::pg_catalog.uuid IS NULL OR k._id OPERATOR(pg_catalog.>) $1)"
							   "   AND k._id OPERATOR(pg_catalog.<=) $2"
							   "   AND k.master_key_version OPERATOR(pg_catalog.<>) $4"
							   "   AND bsoncrypt.bson_get_text(k.master_key, 'provider') OPERATOR(pg_catalog.=) $3"
							   " FOR NO KEY UPDATE OF k SKIP LOCKED",
							   4, argtypes, values, nulls, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed reading the key vault: %s",
			 SPI_result_code_string(rc));
	n = SPI_processed;
	rows = collect_rows(n);
	SPI_freetuptable(SPI_tuptable);
	result->rewrapped = rewrap_key_vault_rows(cache, rows, n, NULL, version, true);
}

/* ----------------------------------------------------------------
 *		bsoncrypt.relation_keys (table keys of at-rest encryption)
 * ----------------------------------------------------------------
 */

/*
 * One batch over bsoncrypt.relation_keys (the caller checked that it
 * exists): up to batch_size rows of provider not wrapped by version,
 * skipping locked rows, rewrapped to version whatever their secret's
 * length.
 */
void
rewrap_relation_keys_batch(MasterKeyCache *cache, const char *provider,
						   const char *version, int batch_size,
						   RewrapBatch *result)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, INT4OID};
	Datum		values[3];
	int			rc;
	uint64		n;
	ItemPointerData *tids;
	bytea	  **materials;
	char	  **versions;
	SPIPlanPtr	update;
	KmsKek	   *new_kek;
	char	   *new_desc;

	memset(result, 0, sizeof(RewrapBatch));
	values[0] = CStringGetTextDatum(provider);
	values[1] = CStringGetTextDatum(version);
	values[2] = Int32GetDatum(batch_size);
	rc = bsoncrypt_spi_execute(
							   "SELECT r.ctid, r.key_material, r.master_key_version"
							   "  FROM bsoncrypt.relation_keys r"
							   " WHERE r.provider OPERATOR(pg_catalog.=) $1"
							   "   AND r.master_key_version OPERATOR(pg_catalog.<>) $2"
							   " LIMIT $3 FOR NO KEY UPDATE OF r SKIP LOCKED",
							   3, argtypes, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed reading bsoncrypt.relation_keys: %s",
			 SPI_result_code_string(rc));
	n = SPI_processed;
	result->scanned = n;
	if (n == 0)
		return;
	tids = palloc(sizeof(ItemPointerData) * n);
	materials = palloc(sizeof(bytea *) * n);
	versions = palloc(sizeof(char *) * n);
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		tids[i] = *((ItemPointer) DatumGetPointer(SPI_getbinval(tuple, desc, 1, &isnull)));
		materials[i] = DatumGetByteaPCopy(SPI_getbinval(tuple, desc, 2, &isnull));
		versions[i] = TextDatumGetCString(SPI_getbinval(tuple, desc, 3, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);

	new_kek = master_key_cache_get(cache, provider, version, NULL);
	new_desc = version_desc(provider, version);
	argtypes[0] = TIDOID;
	argtypes[1] = BYTEAOID;
	argtypes[2] = TEXTOID;
	update = bsoncrypt_spi_prepare("UPDATE bsoncrypt.relation_keys"
								   "   SET key_material = $2, master_key_version = $3,"
								   "       update_date = pg_catalog.now()"
								   " WHERE ctid OPERATOR(pg_catalog.=) $1",
								   3, argtypes);
	if (update == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	for (uint64 i = 0; i < n; i++)
	{
		char	   *what = psprintf("the table key in bsoncrypt.relation_keys at (%u,%u)",
									ItemPointerGetBlockNumber(&tids[i]),
									ItemPointerGetOffsetNumber(&tids[i]));
		bytea	   *rewrapped;

		rewrapped = rewrap_secret(master_key_cache_get(cache, provider, versions[i], NULL),
								  version_desc(provider, versions[i]),
								  new_kek, new_desc,
								  (const uint8_t *) VARDATA_ANY(materials[i]),
								  VARSIZE_ANY_EXHDR(materials[i]),
								  0, what);
		values[0] = PointerGetDatum(&tids[i]);
		values[1] = PointerGetDatum(rewrapped);
		values[2] = CStringGetTextDatum(version);
		rc = SPI_execute_plan(update, values, NULL, false, 0);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "SPI_execute_plan failed updating bsoncrypt.relation_keys: %s",
				 SPI_result_code_string(rc));
		result->rewrapped += SPI_processed;
		pfree(rewrapped);
		batch_row_pause();
	}
	SPI_freeplan(update);
}

/* ----------------------------------------------------------------
 *		rewrap_many_data_key
 * ----------------------------------------------------------------
 */

static void
refuse_filter(const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unsupported rewrap_many_data_key filter: %s", problem),
			 errhint("Supported filters: {}, {\"_id\": <UUID>}, {\"_id\": {\"$in\": [<UUID>, ...]}}, "
					 "{\"keyAltNames\": \"<name>\"}, {\"keyAltNames\": {\"$in\": [\"<name>\", ...]}}, "
					 "or _id and keyAltNames together.")));
}

static Datum
filter_uuid(const bson_iter_t *iter)
{
	bson_subtype_t subtype;
	uint32_t	len;
	const uint8_t *bytes;
	pg_uuid_t  *id;

	if (!BSON_ITER_HOLDS_BINARY(iter))
		refuse_filter("_id must be a UUID (binary subtype 4)");
	bson_iter_binary(iter, &subtype, &len, &bytes);
	if (subtype != BSON_SUBTYPE_UUID || len != UUID_LEN)
		refuse_filter("_id must be a UUID (binary subtype 4)");
	id = palloc(sizeof(pg_uuid_t));
	memcpy(id->data, bytes, UUID_LEN);
	return UUIDPGetDatum(id);
}

static Datum
filter_name(const bson_iter_t *iter)
{
	uint32_t	len;
	const char *name;

	if (!BSON_ITER_HOLDS_UTF8(iter))
		refuse_filter("keyAltNames must be matched with a string");
	name = bson_iter_utf8(iter, &len);
	return PointerGetDatum(cstring_to_text_with_len(name, (int) len));
}

/*
 * The values a filter field matches: a single value, or {"$in": [...]}.
 * Returns an array datum of elemtype.
 */
static Datum
filter_values(const bson_iter_t *iter, bool is_id)
{
	List	   *values = NIL;
	Datum	   *elems;
	int			n = 0;
	ListCell   *lc;

	if (BSON_ITER_HOLDS_DOCUMENT(iter))
	{
		bson_iter_t child;
		bson_iter_t item;
		bool		seen_in = false;

		if (!bson_iter_recurse(iter, &child))
			refuse_filter("malformed document");
		while (bson_iter_next(&child))
		{
			if (strcmp(bson_iter_key(&child), "$in") != 0)
				refuse_filter(psprintf("operator \"%s\" is not supported (only $in)",
									   bson_iter_key(&child)));
			if (seen_in)
				refuse_filter("$in given twice");
			seen_in = true;
			if (!BSON_ITER_HOLDS_ARRAY(&child) || !bson_iter_recurse(&child, &item))
				refuse_filter("$in needs an array");
			while (bson_iter_next(&item))
				values = lappend(values, DatumGetPointer(is_id ? filter_uuid(&item)
														 : filter_name(&item)));
		}
		if (!seen_in)
			refuse_filter("an operator document must hold $in");
	}
	else
		values = list_make1(DatumGetPointer(is_id ? filter_uuid(iter) : filter_name(iter)));

	elems = palloc(sizeof(Datum) * Max(list_length(values), 1));
	foreach(lc, values)
		elems[n++] = PointerGetDatum(lfirst(lc));
	if (is_id)
		return PointerGetDatum(construct_array(elems, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * rewrap_many_data_key(filter bson, provider text, master_key_version text)
 *	 -> bigint
 * Rewraps the data keys matching filter under provider's (or each key's
 * own provider's) master key version (or current version), in the
 * caller's transaction.
 */
Datum
bsoncrypt_rewrap_many_data_key(PG_FUNCTION_ARGS)
{
	char	   *new_provider = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *new_version = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	Oid			argtypes[2] = {UUIDARRAYOID, TEXTARRAYOID};
	Datum		values[2] = {(Datum) 0, (Datum) 0};
	char		nulls[2] = {'n', 'n'};
	MasterKeyCache *volatile cache = NULL;
	uint64		total = 0;

	if (!PG_ARGISNULL(0))
	{
		BsonData   *filter = PG_GETARG_BSON_P(0);
		bson_t		doc;
		bson_iter_t iter;

		bson_init_from_data(&doc, filter);
		if (!bson_iter_init(&iter, &doc))
			refuse_filter("not a document");
		while (bson_iter_next(&iter))
		{
			const char *field = bson_iter_key(&iter);
			int			which;

			if (strcmp(field, "_id") == 0)
				which = 0;
			else if (strcmp(field, "keyAltNames") == 0)
				which = 1;
			else
				refuse_filter(psprintf("field \"%s\" cannot be filtered on", field));
			if (nulls[which] != 'n')
				refuse_filter(psprintf("field \"%s\" given twice", field));
			values[which] = filter_values(&iter, which == 0);
			nulls[which] = ' ';
		}
	}
	if (new_provider != NULL)
		(void) kms_get_provider(new_provider);
	if (new_version != NULL && new_provider == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("master_key_version needs a provider"),
				 errhint("Give provider => 'local' (or 'command' or 'kmip') together with master_key_version.")));
	if (new_version != NULL && !kms_valid_version(kms_get_provider(new_provider), new_version))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid master key version name \"%s\"", new_version)));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PG_TRY();
	{
		Portal		portal;

		cache = master_key_cache_create();
		/* check the target before touching any key */
		if (new_provider != NULL && new_version == NULL)
			new_version = master_key_cache_current(cache, new_provider);
		else if (new_version != NULL)
		{
			/* an explicit older version: must load (probe by wrap/unwrap below) */
			(void) master_key_cache_get(cache, new_provider, new_version, NULL);
		}

		portal = bsoncrypt_spi_cursor_open(
										   "SELECT k._id, k.key_material, k.master_key_version,"
										   "       bsoncrypt.bson_get_text(k.master_key, 'provider'), k.master_key"
										   "  FROM bsoncrypt.key_vault k"
										   " WHERE ($1 IS NULL OR k._id OPERATOR(pg_catalog.=) ANY ($1))"
										   "   AND ($2 IS NULL OR k.key_alt_names OPERATOR(pg_catalog.&&) $2)"
										   " ORDER BY k._id"
										   " FOR NO KEY UPDATE OF k",
										   2, argtypes, values, nulls, false);
		for (;;)
		{
			uint64		n;
			RewrapRow  *rows;

			CHECK_FOR_INTERRUPTS();
			SPI_cursor_fetch(portal, true, REWRAP_FETCH_SIZE);
			n = SPI_processed;
			if (n == 0)
				break;
			rows = collect_rows(n);
			SPI_freetuptable(SPI_tuptable);
			total += rewrap_key_vault_rows(cache, rows, n, new_provider, new_version,
										   false);
			for (uint64 i = 0; i < n; i++)
				pfree(rows[i].material);
			pfree(rows);
		}
		SPI_cursor_close(portal);
	}
	PG_FINALLY();
	{
		master_key_cache_free(cache);
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_INT64((int64) total);
}

/*
 * current_master_key_version(provider) -> text: the provider's current
 * master key version, after the same checks a rotation makes.
 */
Datum
bsoncrypt_current_master_key_version(PG_FUNCTION_ARGS)
{
	char	   *provider = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MasterKeyCache *volatile cache = master_key_cache_create();
	char	   *version = NULL;

	PG_TRY();
	{
		version = pstrdup(master_key_cache_current(cache, provider));
	}
	PG_FINALLY();
	{
		master_key_cache_free(cache);
	}
	PG_END_TRY();
	PG_RETURN_TEXT_P(cstring_to_text(version));
}
