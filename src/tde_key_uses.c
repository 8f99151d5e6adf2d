/*-------------------------------------------------------------------------
 *
 * tde_key_uses.c
 *	  How many encryptions each relation key has done: the count that makes
 *	  a relation file get a new key before bsoncrypt.at_rest_key_max_uses.
 *
 *	  The count of a key is an upper bound of its encryptions ("uses"): it
 *	  never falls below the truth, after aborts (a rolled-back write still
 *	  left its ciphertext), crashes, on a promoted standby or after
 *	  point-in-time recovery.  It counts this key's encryptions only: other
 *	  tables, other keys and cache flushes do not move it.
 *
 *	  Three levels:
 *
 *	  - Persisted: bsoncrypt.relation_key_uses.reserved, one row per key,
 *	    inserted with the key (in the same transaction) and afterwards only
 *	    overwritten in place (systable_inplace_update_*: WAL-logged, not
 *	    transactional, no new row version).  No use beyond it is ever handed
 *	    out: it is raised first, and its WAL record precedes every
 *	    ciphertext written under the uses it covers, so whatever survives a
 *	    crash or reaches a standby is covered.  Nothing else writes the
 *	    table, so raising it races with nobody (rotation UPDATEs
 *	    relation_keys, never this table).
 *
 *	  - Shared (bsoncrypt in shared_preload_libraries): a shared-memory hash
 *	    (database, key id) -> {used, reserved}.  Sessions take leases from
 *	    `used` under the entry's spinlock; when a lease would pass
 *	    `reserved`, one session (holding a heavyweight lock on the key, so
 *	    that refills and loads of one key are serialized) raises the
 *	    persisted bound by a block that doubles from 8 leases up to
 *	    max_uses / 64, then raises `reserved`.  An entry that is missing
 *	    (after a restart, or evicted when the table of at most
 *	    bsoncrypt.at_rest_key_use_slots entries is full) is loaded at the
 *	    persisted bound: the uses of the last block are counted as done.
 *	    Without shared memory (bsoncrypt not preloaded), each lease is taken
 *	    from the persisted bound directly.
 *
 *	  - Local: each session's leases, key id -> [next, end), in
 *	    TopMemoryContext.  Invalidations never flush them (a lease is valid
 *	    whatever happens to the key caches); when the session holds too many,
 *	    it forgets them all, which only wastes their rest.
 *
 *	  Writes in parallel mode (CREATE TABLE AS and REFRESH MATERIALIZED VIEW
 *	  with a parallel plan; the leader inserts) cannot write the persisted
 *	  bound.  They only ever write relations made in their own transaction,
 *	  whose keys nobody else can see and which vanish with the transaction
 *	  if it does not commit: such a key may go past its persisted bound in
 *	  parallel mode, and the bound is raised before the transaction commits
 *	  (or prepares).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "tde.h"

PG_FUNCTION_INFO_V1(bsoncrypt_key_uses_bound);

/* a row of bsoncrypt.relation_key_uses */
typedef struct FormData_relation_key_uses
{
	int32		key_id;
	int64		reserved;
} FormData_relation_key_uses;

#define Anum_relation_key_uses_key_id	1
#define Anum_relation_key_uses_reserved 2
#define Natts_relation_key_uses			2

#define LEASE_MAX			1024	/* encryptions per lease, at most */
#define FIRST_BLOCK_LEASES	8	/* the first reserved block, in leases */
#define LOCAL_LEASES_MAX	1024	/* leases a session keeps before forgetting */

typedef struct KeyUsesTag
{
	Oid			dbid;
	int32		key_id;
} KeyUsesTag;

typedef struct KeyUsesEntry
{
	KeyUsesTag	tag;			/* hash key */
	slock_t		mutex;			/* protects the fields below */
	uint64		used;			/* uses handed out in leases */
	uint64		reserved;		/* persisted: used never passes it */
	uint64		loaded;			/* used when the entry was made (block growth) */
	uint64		last_use;		/* tick of the last lease (eviction) */
} KeyUsesEntry;

typedef struct KeyUsesShared
{
	LWLock	   *lock;			/* the hash: shared to look up, exclusive to
								 * add or evict entries */
	pg_atomic_uint64 tick;
} KeyUsesShared;

typedef struct LocalLease
{
	int32		key_id;			/* hash key */
	uint64		next;
	uint64		end;
} LocalLease;

typedef struct OwedBound
{
	int32		key_id;			/* hash key */
	uint64		reserved;		/* to persist before commit */
} OwedBound;

typedef enum LeaseResult
{
	LEASE_TAKEN,
	LEASE_USED_UP,				/* the key has done its max_uses */
	LEASE_REFILL				/* the shared count needs a new block */
} LeaseResult;

static int	key_use_slots = 16384;
static KeyUsesShared *key_uses_shared = NULL;
static HTAB *key_uses_hash = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static HTAB *local_leases = NULL;
static HTAB *owed_bounds = NULL;	/* in TopTransactionContext's lifetime */
static bool xact_callback_registered = false;

#define KEY_USES_TRANCHE "bsoncrypt key uses"

/* A session's hash table keyed by key id (an int32 first in the entry). */
static HTAB *
key_id_hash(const char *name, Size entrysize)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(int32);
	ctl.entrysize = entrysize;
	ctl.hcxt = TopMemoryContext;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* ------------------------------------------------------------------------
 * Sizes
 * ------------------------------------------------------------------------
 */
static uint64
max_uses(void)
{
	return (uint64) tde_key_max_uses;
}

/* encryptions per lease: at most 1024, and 1/1024 of the limit */
static uint64
lease_size(void)
{
	return Max(1, Min(LEASE_MAX, max_uses() / 1024));
}

/*
 * The next block to reserve for an entry: doubling with what it used since
 * it was made, from FIRST_BLOCK_LEASES leases up to 1/64 of the limit.
 */
static uint64
next_block(uint64 used_since_loaded)
{
	uint64		first = FIRST_BLOCK_LEASES * lease_size();
	uint64		cap = Max(first, max_uses() / 64);

	return Min(Max(first, used_since_loaded), cap);
}

/* ------------------------------------------------------------------------
 * Shared memory
 * ------------------------------------------------------------------------
 */
static Size
key_uses_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(KeyUsesShared)),
					hash_estimate_size(key_use_slots, sizeof(KeyUsesEntry)));
}

static void
key_uses_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(key_uses_shmem_size());
	RequestNamedLWLockTranche(KEY_USES_TRANCHE, 1);
}

static void
key_uses_shmem_startup(void)
{
	bool		found;
	HASHCTL		ctl;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	key_uses_shared = ShmemInitStruct("bsoncrypt key uses", sizeof(KeyUsesShared), &found);
	if (!found)
	{
		key_uses_shared->lock = &(GetNamedLWLockTranche(KEY_USES_TRANCHE))->lock;
		pg_atomic_init_u64(&key_uses_shared->tick, 0);
	}
	ctl.keysize = sizeof(KeyUsesTag);
	ctl.entrysize = sizeof(KeyUsesEntry);
	key_uses_hash = ShmemInitHash("bsoncrypt key uses hash", key_use_slots,
								  key_use_slots, &ctl, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);
}

void
tde_key_uses_init(void)
{
	/* shared memory (and its size, a PGC_POSTMASTER setting) only if preloaded */
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomIntVariable("bsoncrypt.at_rest_key_use_slots",
							"Relation keys whose use is counted in shared memory at once.",
							"Keys beyond it are evicted, least recently used first; an evicted key's count goes on from its persisted bound. "
							"Needs bsoncrypt in shared_preload_libraries.",
							&key_use_slots,
							16384, 64, 1 << 24,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = key_uses_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = key_uses_shmem_startup;
}

static void
make_tag(KeyUsesTag *tag, int32 key_id)
{
	memset(tag, 0, sizeof(*tag));
	tag->dbid = MyDatabaseId;
	tag->key_id = key_id;
}

/* Take a lease from a shared entry; the caller holds the hash lock. */
static LeaseResult
lease_from_entry(KeyUsesEntry *entry, uint64 *start, uint64 *count)
{
	uint64		tick = pg_atomic_fetch_add_u64(&key_uses_shared->tick, 1);
	LeaseResult result;

	SpinLockAcquire(&entry->mutex);
	if (entry->used >= max_uses())
		result = LEASE_USED_UP;
	else
	{
		uint64		n = Min(lease_size(), max_uses() - entry->used);

		if (entry->used + n <= entry->reserved)
		{
			*start = entry->used;
			*count = n;
			entry->used += n;
			entry->last_use = tick;
			result = LEASE_TAKEN;
		}
		else
			result = LEASE_REFILL;
	}
	SpinLockRelease(&entry->mutex);
	return result;
}

/* The fast path: a lease within the key's reserved uses. */
static LeaseResult
lease_shared(int32 key_id, uint64 *start, uint64 *count)
{
	KeyUsesTag	tag;
	KeyUsesEntry *entry;
	LeaseResult result = LEASE_REFILL;

	make_tag(&tag, key_id);
	LWLockAcquire(key_uses_shared->lock, LW_SHARED);
	entry = hash_search(key_uses_hash, &tag, HASH_FIND, NULL);
	if (entry != NULL)
		result = lease_from_entry(entry, start, count);
	LWLockRelease(key_uses_shared->lock);
	return result;
}

static int
compare_uint64(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * Make room in a full table: forget the least recently used eighth of the
 * entries.  Their keys' counts go on from the persisted bounds, which
 * cover every use handed out.  The caller holds the hash lock exclusively.
 */
static void
evict_entries(void)
{
	long		n = hash_get_num_entries(key_uses_hash);
	uint64	   *ticks = palloc(Max(n, 1) * sizeof(uint64));
	long		i = 0;
	uint64		threshold;
	HASH_SEQ_STATUS status;
	KeyUsesEntry *entry;

	hash_seq_init(&status, key_uses_hash);
	while ((entry = hash_seq_search(&status)) != NULL)
		ticks[i++] = entry->last_use;
	Assert(i == n);
	if (i == 0)
	{
		pfree(ticks);
		return;
	}
	qsort(ticks, i, sizeof(uint64), compare_uint64);
	threshold = ticks[i / 8];
	pfree(ticks);

	hash_seq_init(&status, key_uses_hash);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (entry->last_use <= threshold)
			hash_search(key_uses_hash, &entry->tag, HASH_REMOVE, NULL);
	}
}

/*
 * Set the shared entry of a key, made if missing (or if reset: a new key):
 * a made entry counts from `from`, and `reserved` is raised to at least the
 * given value.  Then take a lease from it, if start is given.  The caller
 * holds the key's lock, or made the key.
 */
static LeaseResult
set_entry_and_lease(int32 key_id, uint64 from, uint64 reserved, bool reset,
					uint64 *start, uint64 *count)
{
	KeyUsesTag	tag;
	KeyUsesEntry *entry;
	bool		found;
	LeaseResult result;

	make_tag(&tag, key_id);
	LWLockAcquire(key_uses_shared->lock, LW_EXCLUSIVE);
	entry = hash_search(key_uses_hash, &tag, HASH_FIND, NULL);
	if (entry == NULL && hash_get_num_entries(key_uses_hash) >= key_use_slots)
		evict_entries();
	entry = hash_search(key_uses_hash, &tag, HASH_ENTER_NULL, &found);
	if (entry == NULL)
	{
		LWLockRelease(key_uses_shared->lock);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of shared memory counting uses of relation key %d", key_id)));
	}
	if (!found)
		SpinLockInit(&entry->mutex);
	if (!found || reset)
	{
		entry->used = entry->loaded = from;
		entry->reserved = reserved;
		entry->last_use = 0;
	}
	else
	{
		SpinLockAcquire(&entry->mutex);
		entry->reserved = Max(entry->reserved, reserved);
		SpinLockRelease(&entry->mutex);
	}
	result = start != NULL ? lease_from_entry(entry, start, count) : LEASE_TAKEN;
	LWLockRelease(key_uses_shared->lock);
	return result;
}

/* (used, reserved, loaded) of a key's shared entry; false if it has none */
static bool
read_entry(int32 key_id, uint64 *used, uint64 *reserved, uint64 *loaded)
{
	KeyUsesTag	tag;
	KeyUsesEntry *entry;

	make_tag(&tag, key_id);
	LWLockAcquire(key_uses_shared->lock, LW_SHARED);
	entry = hash_search(key_uses_hash, &tag, HASH_FIND, NULL);
	if (entry != NULL)
	{
		SpinLockAcquire(&entry->mutex);
		*used = entry->used;
		*reserved = entry->reserved;
		*loaded = entry->loaded;
		SpinLockRelease(&entry->mutex);
	}
	LWLockRelease(key_uses_shared->lock);
	return entry != NULL;
}

/* ------------------------------------------------------------------------
 * Persisted bounds: bsoncrypt.relation_key_uses
 * ------------------------------------------------------------------------
 */

/* The persisted bound of a key; false if it has no row. */
static bool
read_persisted(int32 key_id, uint64 *reserved, bool *made_here)
{
	TdeRelids	relids = *tde_relids(false);
	Relation	rel = table_open(relids.relation_key_uses, AccessShareLock);
	ScanKeyData skey;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found;

	ScanKeyInit(&skey, Anum_relation_key_uses_key_id, BTEqualStrategyNumber,
				F_INT4EQ, Int32GetDatum(key_id));
	scan = systable_beginscan(rel, relids.relation_key_uses_pkey, true, NULL, 1, &skey);
	tuple = systable_getnext(scan);
	found = HeapTupleIsValid(tuple);
	if (found)
	{
		*reserved = (uint64) ((FormData_relation_key_uses *) GETSTRUCT(tuple))->reserved;
		if (made_here)
			*made_here = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tuple->t_data));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Raise the persisted bound of a key to at least target, in place.  False
 * if the key has no row (deleted with its key).
 */
static bool
persist_bound(int32 key_id, uint64 target)
{
	TdeRelids	relids = *tde_relids(false);
	Relation	rel = table_open(relids.relation_key_uses, RowExclusiveLock);
	ScanKeyData skey;
	HeapTuple	tuple;
	void	   *state;
	FormData_relation_key_uses *form;

	ScanKeyInit(&skey, Anum_relation_key_uses_key_id, BTEqualStrategyNumber,
				F_INT4EQ, Int32GetDatum(key_id));
	systable_inplace_update_begin(rel, relids.relation_key_uses_pkey, true, NULL,
								  1, &skey, &tuple, &state);
	if (!HeapTupleIsValid(tuple))
	{
		table_close(rel, RowExclusiveLock);
		return false;
	}
	form = (FormData_relation_key_uses *) GETSTRUCT(tuple);
	if ((uint64) form->reserved >= target)
		systable_inplace_update_cancel(state);
	else
	{
		form->reserved = (int64) target;
		systable_inplace_update_finish(state, tuple);
	}
	heap_freetuple(tuple);
	table_close(rel, RowExclusiveLock);
	return true;
}

static uint64
owed_bound(int32 key_id)
{
	OwedBound  *owed;

	if (owed_bounds == NULL)
		return 0;
	owed = hash_search(owed_bounds, &key_id, HASH_FIND, NULL);
	return owed != NULL ? owed->reserved : 0;
}

/* Persist what parallel mode owed before the transaction commits. */
static void
xact_callback(XactEvent event, void *arg)
{
	HASH_SEQ_STATUS status;
	OwedBound  *owed;

	if (owed_bounds == NULL)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			/* a key whose row is gone went with its subtransaction */
			hash_seq_init(&status, owed_bounds);
			while ((owed = hash_seq_search(&status)) != NULL)
				(void) persist_bound(owed->key_id, owed->reserved);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_ABORT:
			hash_destroy(owed_bounds);
			owed_bounds = NULL;
			break;
		default:
			break;
	}
}

/*
 * Raise the persisted bound of a key to target before uses up to it are
 * handed out.  In parallel mode it cannot be written: allowed for a key made
 * by this transaction, persisted before commit.
 */
static bool
raise_bound(int32 key_id, uint64 target, bool made_here)
{
	OwedBound  *owed;
	bool		found;

	if (!IsInParallelMode())
		return persist_bound(key_id, target);
	if (!made_here)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot count uses of relation key %d during a parallel operation", key_id)));
	if (owed_bounds == NULL)
		owed_bounds = key_id_hash("bsoncrypt key uses owed", sizeof(OwedBound));
	if (!xact_callback_registered)
	{
		RegisterXactCallback(xact_callback, NULL);
		xact_callback_registered = true;
	}
	owed = hash_search(owed_bounds, &key_id, HASH_ENTER, &found);
	if (!found || owed->reserved < target)
		owed->reserved = target;
	return true;
}

/* ------------------------------------------------------------------------
 * Leases
 * ------------------------------------------------------------------------
 */

/* refill, or load, the shared entry of a key and lease; holding its lock */
static LeaseResult
refill_shared(int32 key_id, uint64 *start, uint64 *count)
{
	uint64		used,
				reserved,
				loaded,
				persisted,
				from,
				target;
	bool		made_here;
	bool		have_entry = read_entry(key_id, &used, &reserved, &loaded);

	if (!read_persisted(key_id, &persisted, &made_here))
		return LEASE_USED_UP;	/* a key without a count is not used again */
	if (have_entry)
		from = reserved;		/* what is not reserved yet */
	else
		from = loaded = Max(persisted, owed_bound(key_id));
	if (from >= max_uses())
		return LEASE_USED_UP;
	target = Min(from + next_block(from - loaded), max_uses());
	if (target > persisted && !raise_bound(key_id, target, made_here))
		return LEASE_USED_UP;
	return set_entry_and_lease(key_id, from, target, false, start, count);
}

/* a lease straight from the persisted bound (no shared memory) */
static LeaseResult
lease_persisted(int32 key_id, uint64 *start, uint64 *count)
{
	uint64		persisted,
				from;
	bool		made_here;

	if (!read_persisted(key_id, &persisted, &made_here))
		return LEASE_USED_UP;
	from = Max(persisted, owed_bound(key_id));
	if (from >= max_uses())
		return LEASE_USED_UP;
	*start = from;
	*count = Min(lease_size(), max_uses() - from);
	if (!raise_bound(key_id, from + *count, made_here))
		return LEASE_USED_UP;
	return LEASE_TAKEN;
}

/*
 * A new lease of uses of a key.  The slow paths hold a heavyweight lock on
 * the key (an object lock tagged with relation_key_uses and the key id),
 * which serializes loading and raising one key's bound.
 */
static LeaseResult
take_lease(int32 key_id, uint64 *start, uint64 *count)
{
	LOCKTAG		tag;
	LeaseResult result;

	if (key_uses_hash != NULL &&
		(result = lease_shared(key_id, start, count)) != LEASE_REFILL)
		return result;

	/* an error releases the lock with the rest of the transaction's */
	SET_LOCKTAG_OBJECT(tag, MyDatabaseId, tde_relids(false)->relation_key_uses,
					   (uint32) key_id, 0);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	if (key_uses_hash == NULL)
		result = lease_persisted(key_id, start, count);
	else if ((result = lease_shared(key_id, start, count)) == LEASE_REFILL)
		result = refill_shared(key_id, start, count);
	LockRelease(&tag, ExclusiveLock, false);
	Assert(result != LEASE_REFILL);
	return result;
}

static LocalLease *
enter_local_lease(int32 key_id)
{
	if (local_leases != NULL &&
		hash_get_num_entries(local_leases) >= LOCAL_LEASES_MAX)
	{
		hash_destroy(local_leases);
		local_leases = NULL;
	}
	if (local_leases == NULL)
		local_leases = key_id_hash("bsoncrypt key use leases", sizeof(LocalLease));
	return hash_search(local_leases, &key_id, HASH_ENTER, NULL);
}

/*
 * Count one encryption with relation key key_id.  False if the key has
 * done bsoncrypt.at_rest_key_max_uses encryptions: the caller makes a new
 * one.  May read and write relation_key_uses, so it may accept
 * invalidations.
 */
bool
tde_key_use(int32 key_id)
{
	LocalLease *lease = NULL;
	uint64		start,
				count;

	Assert(key_id > 0);
	if (local_leases != NULL)
		lease = hash_search(local_leases, &key_id, HASH_FIND, NULL);
	if (lease != NULL && lease->next < lease->end && lease->next < max_uses())
	{
		lease->next++;
		return true;
	}
	if (take_lease(key_id, &start, &count) != LEASE_TAKEN)
		return false;
	lease = enter_local_lease(key_id);
	lease->next = start + 1;
	lease->end = start + count;
	return true;
}

/*
 * A key was just made (its relation_keys row inserted by this
 * transaction): insert its relation_key_uses row, reserving the first
 * block, and give this session the first lease.
 */
void
tde_key_uses_insert(int32 key_id)
{
	Oid			relid = tde_relids(false)->relation_key_uses;
	uint64		lease = lease_size();
	uint64		first = key_uses_hash != NULL ? next_block(0) : lease;
	Relation	rel;
	Datum		values[Natts_relation_key_uses];
	bool		nulls[Natts_relation_key_uses] = {false, false};
	HeapTuple	tuple;
	LocalLease *local;

	values[Anum_relation_key_uses_key_id - 1] = Int32GetDatum(key_id);
	values[Anum_relation_key_uses_reserved - 1] = Int64GetDatum((int64) first);
	rel = table_open(relid, RowExclusiveLock);
	tuple = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	CatalogTupleInsert(rel, tuple);
	heap_freetuple(tuple);
	table_close(rel, RowExclusiveLock);

	if (key_uses_hash != NULL)
		(void) set_entry_and_lease(key_id, lease, first, true, NULL, NULL);
	local = enter_local_lease(key_id);
	local->next = 0;
	local->end = lease;
}

/*
 * bsoncrypt._key_uses_bound(key_id): the key's count, an upper bound of its
 * encryptions: the shared count if the key has one, else the persisted
 * bound; NULL for a key without a count.
 */
Datum
bsoncrypt_key_uses_bound(PG_FUNCTION_ARGS)
{
	int32		key_id = PG_GETARG_INT32(0);
	uint64		used,
				reserved,
				loaded;

	if (key_uses_hash != NULL && read_entry(key_id, &used, &reserved, &loaded))
		PG_RETURN_INT64((int64) used);
	if (!read_persisted(key_id, &reserved, NULL))
		PG_RETURN_NULL();
	PG_RETURN_INT64((int64) reserved);
}
