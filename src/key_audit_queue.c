/*-------------------------------------------------------------------------
 *
 * key_audit_queue.c
 *	  The durable path of the audit trail: events of transactions that may
 *	  roll back (unwrap failures, provider errors), unwrap counts and
 *	  customer keys supplied are copied into a bounded queue in shared
 *	  memory at once, and a background worker per database ("bsoncrypt
 *	  audit writer") inserts them into bsoncrypt.key_audit in transactions
 *	  of its own, so that a rollback of the transaction that saw the event
 *	  does not take the event with it.
 *
 *	  The queue holds bsoncrypt.audit_queue_size events.  When it is full, events
 *	  are counted as lost (and written to the server log); the writer
 *	  records the count as an "audit_events_lost" row.  A writer is started
 *	  when its database has events and none runs; it takes a batch, marks
 *	  it in flight, inserts it, and frees it only once its transaction has
 *	  committed (a failed batch is retried), and it leaves after
 *	  WRITER_LINGER_MS without events.
 *
 *	  Events of a database dropped before its writer wrote them are dropped
 *	  by the next writer that goes idle (counted as lost).
 *
 *	  What a crash loses: events still in the queue (shared memory does not
 *	  survive a crash or a restart; the server log has them when
 *	  bsoncrypt.audit_log is on).  What a rollback loses: nothing.  On a
 *	  standby no writer runs (nothing can be written); events wait in the
 *	  queue until promotion, up to its size.  Without shared_preload_libraries
 *	  there is no queue: such events go to the server log only.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "funcapi.h"

#include "bsoncrypt.h"
#include "key_audit.h"
#include "trusted_sql.h"

PG_FUNCTION_INFO_V1(bsoncrypt_key_audit_queue_status);

extern PGDLLEXPORT void bsoncrypt_audit_writer_main(Datum main_arg);

#define WRITER_MAX_DATABASES 64
#define WRITER_BATCH 64
#define WRITER_LINGER_MS 1000L
#define WRITER_RETRY_MS 1000L
#define WRITER_START_TIMEOUT_SECS 30	/* a writer that never claimed its slot */
#define QUEUE_TRANCHE "bsoncrypt audit queue"

typedef struct QueueEntry
{
	bool		used;
	bool		in_flight;
	uint64		seq;
	KeyAuditRecord rec;
} QueueEntry;

typedef struct WriterSlot
{
	Oid			dboid;			/* InvalidOid: free */
	pid_t		pid;			/* 0: being started */
	Latch	   *latch;
	TimestampTz requested;
} WriterSlot;

typedef struct AuditQueue
{
	LWLock	   *lock;
	uint64		next_seq;
	uint64		lost;			/* events dropped, not yet recorded */
	Oid			lost_dboid;		/* where to record them */
	uint64		lost_total;
	WriterSlot	writers[WRITER_MAX_DATABASES];
	int			size;			/* entries */
	int			free_hint;		/* where to look for a free entry first */
	QueueEntry	entries[FLEXIBLE_ARRAY_MEMBER];
} AuditQueue;

/* bsoncrypt.audit_queue_size */
int			key_audit_queue_size = 2048;

static AuditQueue *queue = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
queue_shmem_size(void)
{
	return MAXALIGN(add_size(offsetof(AuditQueue, entries),
							 mul_size(key_audit_queue_size, sizeof(QueueEntry))));
}

static void
queue_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(queue_shmem_size());
	RequestNamedLWLockTranche(QUEUE_TRANCHE, 1);
}

static void
queue_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	queue = ShmemInitStruct("bsoncrypt audit queue", queue_shmem_size(), &found);
	if (!found)
	{
		memset(queue, 0, queue_shmem_size());
		queue->lock = &(GetNamedLWLockTranche(QUEUE_TRANCHE))->lock;
		queue->size = key_audit_queue_size;
	}
	LWLockRelease(AddinShmemInitLock);
}

void
key_audit_queue_init(void)
{
	/* the queue exists only when preloaded (a postmaster setting) */
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomIntVariable("bsoncrypt.audit_queue_size",
							"Audit events the queue in shared memory holds for the audit writer.",
							"Events that happen when it is full are counted as lost and written to the server log.",
							&key_audit_queue_size,
							2048, 64, 1048576,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = queue_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = queue_shmem_startup;
}

bool
key_audit_queue_available(void)
{
	return queue != NULL;
}

/* The writer slot of a database, or NULL; under the lock. */
static WriterSlot *
find_writer(Oid dboid)
{
	for (int i = 0; i < WRITER_MAX_DATABASES; i++)
		if (queue->writers[i].dboid == dboid)
			return &queue->writers[i];
	return NULL;
}

/*
 * Make sure the database has a writer: wake it, or start one (not on a
 * standby, where it could not write).  Called without the lock.
 */
static void
wake_writer(Oid dboid)
{
	WriterSlot *slot;
	Latch	   *latch = NULL;
	bool		start = false;
	TimestampTz now = GetCurrentTimestamp();

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	slot = find_writer(dboid);
	if (slot != NULL && slot->pid == 0 &&
		TimestampDifferenceExceeds(slot->requested, now, WRITER_START_TIMEOUT_SECS * 1000))
	{
		slot->dboid = InvalidOid;	/* it never came: start another */
		slot = NULL;
	}
	if (slot != NULL)
		latch = slot->latch;
	else if (!RecoveryInProgress())
	{
		slot = find_writer(InvalidOid);
		if (slot != NULL)
		{
			slot->dboid = dboid;
			slot->pid = 0;
			slot->latch = NULL;
			slot->requested = now;
			start = true;
		}
	}
	LWLockRelease(queue->lock);

	if (latch != NULL)
		SetLatch(latch);
	if (start && !bsoncrypt_start_database_worker("bsoncrypt_audit_writer_main",
												  "bsoncrypt audit writer", dboid, 0))
	{
		LWLockAcquire(queue->lock, LW_EXCLUSIVE);
		if (slot->dboid == dboid && slot->pid == 0)
			slot->dboid = InvalidOid;
		LWLockRelease(queue->lock);
		ereport(LOG,
				(errmsg("bsoncrypt: could not start an audit writer for database %u; audit events wait in the queue",
						dboid),
				 errhint("Raise max_worker_processes.")));
	}
}

/*
 * Queue a record for its database's table.  false if there is no queue
 * or it is full (the event is then counted as lost).
 */
bool
key_audit_enqueue(const KeyAuditRecord *rec)
{
	QueueEntry *free_entry = NULL;

	if (queue == NULL)
		return false;
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (int n = 0; n < queue->size; n++)
	{
		int			i = (queue->free_hint + n) % queue->size;

		if (!queue->entries[i].used)
		{
			free_entry = &queue->entries[i];
			queue->free_hint = (i + 1) % queue->size;
			break;
		}
	}
	if (free_entry != NULL)
	{
		free_entry->used = true;
		free_entry->in_flight = false;
		free_entry->seq = queue->next_seq++;
		memcpy(&free_entry->rec, rec, sizeof(KeyAuditRecord));
	}
	else
	{
		queue->lost++;
		queue->lost_total++;
		queue->lost_dboid = rec->dboid;
	}
	LWLockRelease(queue->lock);
	wake_writer(rec->dboid);
	return free_entry != NULL;
}

/*
 * key_audit_queue_status() -> (queued bigint, lost bigint): events waiting
 * in the queue (all databases) and events lost since the server started.
 */
Datum
bsoncrypt_key_audit_queue_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[2] = {0, 0};
	bool		nulls[2] = {false, false};
	int64		queued = 0;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "key_audit_queue_status must return a record");
	if (queue == NULL)
		nulls[0] = nulls[1] = true;
	else
	{
		LWLockAcquire(queue->lock, LW_SHARED);
		for (int i = 0; i < queue->size; i++)
			if (queue->entries[i].used)
				queued++;
		values[1] = Int64GetDatum((int64) queue->lost_total);
		LWLockRelease(queue->lock);
		values[0] = Int64GetDatum(queued);
	}
	desc = BlessTupleDesc(desc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* ----------------------------------------------------------------
 *		The writer of a database
 * ----------------------------------------------------------------
 */

static int	batch_index[WRITER_BATCH];
static int *candidates = NULL;	/* queue->size entries */

static int
compare_seq(const void *a, const void *b)
{
	uint64		x = queue->entries[*(const int *) a].seq;
	uint64		y = queue->entries[*(const int *) b].seq;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* Mark up to WRITER_BATCH events of the database in flight, oldest first. */
static int
take_batch(Oid dboid, KeyAuditRecord *batch, uint64 *lost)
{
	int			n = 0;
	int			ncandidates = 0;

	if (candidates == NULL)
		candidates = MemoryContextAlloc(TopMemoryContext, sizeof(int) * queue->size);
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (int i = 0; i < queue->size; i++)
	{
		QueueEntry *e = &queue->entries[i];

		if (e->used && !e->in_flight && e->rec.dboid == dboid)
			candidates[ncandidates++] = i;
	}
	qsort(candidates, ncandidates, sizeof(int), compare_seq);
	for (; n < ncandidates && n < WRITER_BATCH; n++)
	{
		batch_index[n] = candidates[n];
		queue->entries[candidates[n]].in_flight = true;
		memcpy(&batch[n], &queue->entries[candidates[n]].rec, sizeof(KeyAuditRecord));
	}
	*lost = 0;
	if (queue->lost > 0 && queue->lost_dboid == dboid)
	{
		*lost = queue->lost;
		queue->lost = 0;
	}
	LWLockRelease(queue->lock);
	return n;
}

/* done: free the batch; failed: put it (and the lost count) back */
static void
end_batch(int n, uint64 lost, bool done)
{
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		queue->entries[batch_index[i]].in_flight = false;
		if (done)
			queue->entries[batch_index[i]].used = false;
	}
	if (!done && lost > 0)
	{
		queue->lost += lost;
		queue->lost_dboid = MyDatabaseId;
	}
	LWLockRelease(queue->lock);
}

static void
release_writer(int code, Datum arg)
{
	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (int i = 0; i < WRITER_MAX_DATABASES; i++)
		if (queue->writers[i].pid == MyProcPid)
		{
			queue->writers[i].dboid = InvalidOid;
			queue->writers[i].pid = 0;
			queue->writers[i].latch = NULL;
		}
	for (int i = 0; i < queue->size; i++)
		if (queue->entries[i].in_flight && queue->entries[i].rec.dboid == MyDatabaseId)
			queue->entries[i].in_flight = false;
	LWLockRelease(queue->lock);
}

/* Claim the database's slot; false if another writer has it. */
static bool
claim_writer(Oid dboid)
{
	WriterSlot *slot;
	bool		ok = false;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	slot = find_writer(dboid);
	if (slot == NULL)
		slot = find_writer(InvalidOid);
	if (slot != NULL && (slot->dboid == InvalidOid || slot->pid == 0))
	{
		slot->dboid = dboid;
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
		ok = true;
	}
	LWLockRelease(queue->lock);
	return ok;
}

/* Leave if the database has no queued event (the slot is freed then). */
static bool
leave_if_idle(Oid dboid)
{
	bool		idle = true;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (int i = 0; i < queue->size && idle; i++)
		if (queue->entries[i].used && queue->entries[i].rec.dboid == dboid)
			idle = false;
	if (queue->lost > 0 && queue->lost_dboid == dboid)
		idle = false;
	if (idle)
	{
		WriterSlot *slot = find_writer(dboid);

		if (slot != NULL && slot->pid == MyProcPid)
		{
			slot->dboid = InvalidOid;
			slot->pid = 0;
			slot->latch = NULL;
		}
	}
	LWLockRelease(queue->lock);
	return idle;
}

/*
 * Drop the database's events (and the batch of taken ones, already
 * freed): it has no bsoncrypt.key_audit.
 */
static void
drop_events(Oid dboid, int taken)
{
	uint64		dropped = taken;

	LWLockAcquire(queue->lock, LW_EXCLUSIVE);
	for (int i = 0; i < queue->size; i++)
		if (queue->entries[i].used && queue->entries[i].rec.dboid == dboid)
		{
			queue->entries[i].used = false;
			dropped++;
		}
	if (queue->lost_dboid == dboid)
		queue->lost = 0;
	queue->lost_total += dropped;
	LWLockRelease(queue->lock);
	if (dropped > 0)
		ereport(LOG,
				(errmsg("bsoncrypt: dropped " UINT64_FORMAT " audit events of database %u, which no longer exists or has no bsoncrypt.key_audit",
						dropped, dboid)));
}

/*
 * Drop the events of databases that no longer exist (dropped while their
 * events waited): no writer can ever connect there.
 */
static void
drop_events_of_dropped_databases(void)
{
	Oid			dbs[WRITER_MAX_DATABASES];
	int			ndbs = 0;

	LWLockAcquire(queue->lock, LW_SHARED);
	for (int i = 0; i < queue->size && ndbs < WRITER_MAX_DATABASES; i++)
	{
		Oid			db = queue->entries[i].rec.dboid;
		bool		seen = false;

		if (!queue->entries[i].used || db == MyDatabaseId)
			continue;
		for (int j = 0; j < ndbs && !seen; j++)
			seen = dbs[j] == db;
		if (!seen)
			dbs[ndbs++] = db;
	}
	LWLockRelease(queue->lock);
	for (int j = 0; j < ndbs; j++)
	{
		bool		exists;

		StartTransactionCommand();
		exists = SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dbs[j]));
		CommitTransactionCommand();
		if (!exists)
			drop_events(dbs[j], 0);
	}
}

/* Insert one batch in a transaction; true if it committed. */
static bool
write_batch(KeyAuditRecord *batch, int n, uint64 lost)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;
	volatile bool no_table = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	PG_TRY();
	{
		if (!OidIsValid(bsoncrypt_relation_oid("key_audit", true)))
			no_table = true;
		for (int i = 0; i < n && !no_table; i++)
			key_audit_insert_record(&batch[i]);
		if (lost > 0 && !no_table)
		{
			KeyAuditRecord rec;

			memset(&rec, 0, sizeof(rec));
			rec.dboid = MyDatabaseId;
			rec.kind = KEY_AUDIT_EVENTS_LOST;
			rec.event_time = GetCurrentTimestamp();
			rec.count = (int64) lost;
			strlcpy(rec.message, "the audit queue was full", sizeof(rec.message));
			rec.sqlerrcode = ERRCODE_CONFIGURATION_LIMIT_EXCEEDED;
			rec.backend_pid = MyProcPid;
			key_audit_insert_record(&rec);
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
	}
	PG_END_TRY();
	if (no_table)
	{
		end_batch(n, 0, true);
		drop_events(MyDatabaseId, n);
		return true;
	}
	end_batch(n, lost, ok);
	pgstat_report_stat(false);
	return ok;
}

void
bsoncrypt_audit_writer_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	KeyAuditRecord *batch;
	TimestampTz idle_since = GetCurrentTimestamp();

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("bsoncrypt audit writer");
	SetConfigOption("search_path", "", PGC_SUSET, PGC_S_SESSION);

	if (queue == NULL || !claim_writer(dboid))
		proc_exit(0);
	on_shmem_exit(release_writer, (Datum) 0);

	batch = MemoryContextAlloc(TopMemoryContext, sizeof(KeyAuditRecord) * WRITER_BATCH);
	for (;;)
	{
		uint64		lost;
		int			n;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		n = take_batch(dboid, batch, &lost);
		if (n > 0 || lost > 0)
		{
			if (!write_batch(batch, n, lost))
				(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 WRITER_RETRY_MS, PG_WAIT_EXTENSION);
			idle_since = GetCurrentTimestamp();
			continue;
		}
		if (TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(), WRITER_LINGER_MS))
		{
			drop_events_of_dropped_databases();
			if (leave_if_idle(dboid))
				break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 WRITER_LINGER_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	proc_exit(0);
}
