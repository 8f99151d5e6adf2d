/*-------------------------------------------------------------------------
 *
 * rotation_worker.c
 *	  Automatic master-key rotation by background workers.
 *
 *	  A launcher (a static background worker, started once recovery has
 *	  finished, so never on a standby) starts, every minute, a rotation
 *	  worker for every connectable, non-template database that has the
 *	  extension (rotation_registry.c knows which) and no worker yet (at
 *	  most once a minute per database).  A rotation worker does the
 *	  rotations that are due (requested, interrupted, a retry whose time
 *	  has come, or a periodic one) and leaves when it has been idle for two
 *	  seconds, so that it never keeps a database from being dropped or used
 *	  as a template for long.  bsoncrypt.rotate_master_key() wakes the
 *	  worker of its database when its transaction commits, or starts one.
 *
 *	  A worker runs as a superuser in a database whose owner (and anyone
 *	  with CREATE there) may have planted functions, operators and types,
 *	  and set the database's search_path: it forces search_path to be
 *	  empty, learns facts (is the extension here? which of its tables
 *	  exist?) from the catalog rather than from SQL, checks that the tables
 *	  it uses are the extension's own, and every statement it runs names
 *	  each object with its schema and is parsed with a pinned search_path
 *	  (trusted_sql.c).
 *
 *	  The state of rotations lives in the table bsoncrypt.rotation_state,
 *	  one row per master key provider, so that a rotation survives crashes
 *	  and restarts: a row in state 'requested' or 'rewrapping' (or 'failed'
 *	  whose next_attempt has come) is work to do.  A rotation of a provider:
 *
 *	  1. asks the provider for its current version and probes it (loaded by
 *		 name as well, a random secret wrapped and unwrapped) before any row
 *		 is touched;
 *	  2. rewraps, in batches of bsoncrypt.rotation_batch_size rows, each in
 *		 its own transaction, every data key of the provider not wrapped by
 *		 that version (walking key_vault by _id), then the rows of
 *		 bsoncrypt.relation_keys likewise when that table exists.  Rows
 *		 locked by other sessions are skipped and picked up by another pass.
 *		 Before every batch it looks whether the rotation was asked for
 *		 again or the provider's current version changed: then it starts
 *		 over towards the newest version at once (re-targeting), so that no
 *		 key is rewrapped to a version that is already old;
 *	  3. marks the row 'done' when no key of the provider is left on another
 *		 version.
 *
 *	  On a Citus cluster (citus_cluster.c) rotate_master_key() on the
 *	  coordinator asks every node; a worker rewraps its own relation_keys
 *	  only, since its key vault is a copy of the coordinator's, whose
 *	  rewraps reach every node in the same distributed transaction.  A
 *	  batch fails while a worker cannot be reached and is retried; a node
 *	  that was down finds its rotation in its rotation_state when it comes
 *	  back.
 *
 *	  Every batch UPDATE changes key_material and master_key_version of a row
 *	  together, so each key is wrapped by exactly the version it names at
 *	  every instant: a crash anywhere loses nothing, and the worker just
 *	  starts the rotation again (keys already on the new version are
 *	  skipped).  Errors stop the rotation with last_error set; it is retried
 *	  after bsoncrypt.rotation_retry_delay, doubling up to 64 times that.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/resource.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cluster.h"
#include "kms.h"
#include "key_audit.h"
#include "rotation.h"
#include "trusted_sql.h"

PG_FUNCTION_INFO_V1(bsoncrypt_rotation_wake);
PG_FUNCTION_INFO_V1(bsoncrypt_rotation_worker_pid);

/* entry points, looked up by name: exported like SQL functions */
extern PGDLLEXPORT void bsoncrypt_rotation_launcher_main(Datum main_arg);
extern PGDLLEXPORT void bsoncrypt_rotation_worker_main(Datum main_arg);

#define ROTATION_MAX_DATABASES 64
#define ROTATION_LINGER_MS 2000L		/* an idle worker leaves after this */
#define LAUNCHER_NAPTIME_MS 60000L		/* look for new databases */
#define LAUNCHER_RESPAWN_SECS 60		/* at most one start per database per minute */
#define ROTATION_LOCKED_RETRY_MS 1000L	/* wait for rows locked by others */
#define ROTATION_STALL_MS 30000L	/* then leave; the launcher comes back */
#define ROUND_LEAVE (-2L)			/* worker_round: the worker should exit */

/* settings */
static int	rotation_interval = 0;		/* seconds, 0 = off */
static int	rotation_batch_size = 1000;
static int	rotation_batch_delay = 3;	/* milliseconds */
static int	rotation_retry_delay = 10;	/* seconds */
static int	rotation_nice = 0;			/* CPU niceness of the worker */
int			rotation_row_delay = 0;		/* milliseconds, read by key_rewrap.c */

typedef struct RotationSlot
{
	Oid			dboid;			/* InvalidOid: free */
	pid_t		pid;
	Latch	   *latch;
} RotationSlot;

typedef struct RotationShmem
{
	slock_t		mutex;
	RotationSlot slots[ROTATION_MAX_DATABASES];
} RotationShmem;

static RotationShmem *rotation_shmem = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool wake_at_commit = false;

/*
 * Does this node's rotation rewrap the key vault?  Not on a Citus worker,
 * whose vault is a copy of the coordinator's: the coordinator's rewraps
 * reach it (citus_cluster.c).  Set when a rotation starts.
 */
static bool rotate_key_vault = true;
static bool xact_callback_registered = false;

/* ----------------------------------------------------------------
 *		Settings and shared memory
 * ----------------------------------------------------------------
 */

static void
rotation_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(RotationShmem)));
}

static void
rotation_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rotation_shmem = ShmemInitStruct("bsoncrypt rotation", sizeof(RotationShmem), &found);
	if (!found)
	{
		memset(rotation_shmem, 0, sizeof(RotationShmem));
		SpinLockInit(&rotation_shmem->mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
rotation_init(void)
{
	BackgroundWorker worker;

	DefineCustomIntVariable("bsoncrypt.master_key_rotation_interval",
							"Time between automatic master-key rotations.",
							"The rotation worker rewraps every key not on its provider's current master key version this often; 0 turns periodic rotation off.",
							&rotation_interval,
							0, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("bsoncrypt.rotation_batch_size",
							"Keys rewrapped per transaction by the rotation worker.",
							"Sessions that change a key wait at most one batch; encryption and decryption never wait.",
							&rotation_batch_size,
							1000, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("bsoncrypt.rotation_batch_delay",
							"Pause of the rotation worker between two batches.",
							"Leaves CPU to sessions: on 2 CPUs, 3 ms keeps a concurrent session at about 0.8-1.0x of its throughput while 100k keys rewrap in about 3 s.",
							&rotation_batch_delay,
							3, 0, 60000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("bsoncrypt.rotation_row_delay",
							"Pause of the rotation worker after each key it rewraps, inside a batch.",
							"For testing crash safety: makes every batch transaction last batch_size times this, with its rows locked. 0 (the default) turns it off.",
							&rotation_row_delay,
							0, 0, 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("bsoncrypt.rotation_retry_delay",
							"Wait before retrying a failed rotation; doubles after each failure, up to 64 times.",
							NULL,
							&rotation_retry_delay,
							10, 1, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("bsoncrypt.rotation_nice",
							"CPU niceness of the rotation worker (as nice(1)).",
							"With a higher value the worker yields the CPU to sessions and rotates with the CPU left over; 0 runs it at the priority of the server. Taken when a worker starts.",
							&rotation_nice,
							0, 0, 19,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	rotation_registry_init();
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = rotation_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = rotation_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	strlcpy(worker.bgw_library_name, "bsoncrypt", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "bsoncrypt_rotation_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "bsoncrypt rotation launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "bsoncrypt rotation launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/* Is a rotation worker registered for the database?  Its pid, or 0. */
static pid_t
slot_pid(Oid dboid, Latch **latch)
{
	pid_t		pid = 0;

	SpinLockAcquire(&rotation_shmem->mutex);
	for (int i = 0; i < ROTATION_MAX_DATABASES; i++)
	{
		if (rotation_shmem->slots[i].dboid == dboid)
		{
			pid = rotation_shmem->slots[i].pid;
			if (latch)
				*latch = rotation_shmem->slots[i].latch;
			break;
		}
	}
	SpinLockRelease(&rotation_shmem->mutex);
	return pid;
}

static bool
slot_claim(Oid dboid)
{
	int			free_slot = -1;

	SpinLockAcquire(&rotation_shmem->mutex);
	for (int i = 0; i < ROTATION_MAX_DATABASES; i++)
	{
		if (rotation_shmem->slots[i].dboid == dboid)
		{
			SpinLockRelease(&rotation_shmem->mutex);
			return false;
		}
		if (free_slot < 0 && rotation_shmem->slots[i].dboid == InvalidOid)
			free_slot = i;
	}
	if (free_slot >= 0)
	{
		rotation_shmem->slots[free_slot].dboid = dboid;
		rotation_shmem->slots[free_slot].pid = MyProcPid;
		rotation_shmem->slots[free_slot].latch = MyLatch;
	}
	SpinLockRelease(&rotation_shmem->mutex);
	if (free_slot < 0)
		ereport(LOG,
				(errmsg("bsoncrypt: no free rotation worker slot for database %u", dboid),
				 errhint("At most %d databases can have a bsoncrypt rotation worker.",
						 ROTATION_MAX_DATABASES)));
	return free_slot >= 0;
}

static void
slot_release(int code, Datum arg)
{
	SpinLockAcquire(&rotation_shmem->mutex);
	for (int i = 0; i < ROTATION_MAX_DATABASES; i++)
	{
		if (rotation_shmem->slots[i].dboid == DatumGetObjectId(arg) &&
			rotation_shmem->slots[i].pid == MyProcPid)
		{
			rotation_shmem->slots[i].dboid = InvalidOid;
			rotation_shmem->slots[i].pid = 0;
			rotation_shmem->slots[i].latch = NULL;
		}
	}
	SpinLockRelease(&rotation_shmem->mutex);
}

static bool
start_database_worker(Oid dboid, pid_t notify_pid)
{
	return bsoncrypt_start_database_worker("bsoncrypt_rotation_worker_main",
										   "bsoncrypt rotation worker", dboid, notify_pid);
}

static void
check_preloaded(void)
{
	if (rotation_shmem == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the bsoncrypt rotation worker is not available"),
				 errhint("Add bsoncrypt to shared_preload_libraries and restart the server.")));
}

/* ----------------------------------------------------------------
 *		SQL-callable
 * ----------------------------------------------------------------
 */

/* Wake this database's rotation worker, or start one. */
static void
wake_or_start_worker(void)
{
	Latch	   *latch = NULL;

	if (rotation_shmem == NULL)
		return;
	if (slot_pid(MyDatabaseId, &latch) != 0 && latch != NULL)
		SetLatch(latch);
	else if (!start_database_worker(MyDatabaseId, 0))
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a bsoncrypt rotation worker for this database"),
				 errhint("Raise max_worker_processes; the launcher starts the rotation within a minute once a worker is free.")));
}

/*
 * At commit, wake the worker.  A prepared transaction (a Citus worker's
 * part of rotate_master_key on the coordinator) commits later, maybe in
 * another session: wake it at PREPARE already; a worker that finds nothing
 * yet looks again before it leaves (ROTATION_LINGER_MS), and the launcher
 * comes by within a minute.
 */
static void
rotation_xact_callback(XactEvent event, void *arg)
{
	if (!wake_at_commit)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PREPARE)
	{
		wake_at_commit = false;
		wake_or_start_worker();
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_at_commit = false;
}

/*
 * _wake_rotation_worker(): when the transaction commits, wake this
 * database's rotation worker, or start one.
 */
Datum
bsoncrypt_rotation_wake(PG_FUNCTION_ARGS)
{
	check_preloaded();
	rotation_note_extension();
	if (!xact_callback_registered)
	{
		RegisterXactCallback(rotation_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
	PG_RETURN_VOID();
}

/* _rotation_worker_pid() -> integer: this database's rotation worker */
Datum
bsoncrypt_rotation_worker_pid(PG_FUNCTION_ARGS)
{
	pid_t		pid;

	if (rotation_shmem == NULL)
		PG_RETURN_NULL();
	pid = slot_pid(MyDatabaseId, NULL);
	if (pid == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32((int32) pid);
}

/* ----------------------------------------------------------------
 *		The launcher
 * ----------------------------------------------------------------
 */

typedef struct LaunchedDb
{
	Oid			dboid;
	TimestampTz started;
} LaunchedDb;

/*
 * The databases that have the extension and accept connections.
 * Registered databases that no longer exist are forgotten.
 */
static List *
databases_to_serve(MemoryContext cxt)
{
	List	   *registered;
	List	   *existing = NIL;
	List	   *dbs = NIL;
	ListCell   *lc;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	MemoryContext old = MemoryContextSwitchTo(cxt);

	registered = rotation_registry_list();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);

		if (!list_member_oid(registered, db->oid))
			continue;
		existing = lappend_oid(existing, db->oid);
		if (db->datallowconn && !db->datistemplate && !database_is_invalid_form(db))
			dbs = lappend_oid(dbs, db->oid);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	foreach(lc, registered)
		if (!list_member_oid(existing, lfirst_oid(lc)))
			rotation_registry_remove(lfirst_oid(lc));
	MemoryContextSwitchTo(old);
	return dbs;
}

void
bsoncrypt_rotation_launcher_main(Datum main_arg)
{
	MemoryContext cxt;
	LaunchedDb *launched = NULL;
	int			nlaunched = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("bsoncrypt rotation launcher");

	cxt = AllocSetContextCreate(TopMemoryContext, "bsoncrypt launcher", ALLOCSET_DEFAULT_SIZES);
	launched = MemoryContextAllocZero(TopMemoryContext, sizeof(LaunchedDb) * ROTATION_MAX_DATABASES);
	rotation_registry_load();

	for (;;)
	{
		List	   *dbs;
		ListCell   *lc;
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(cxt);
		dbs = databases_to_serve(cxt);
		rotation_registry_save();
		now = GetCurrentTimestamp();
		foreach(lc, dbs)
		{
			Oid			dboid = lfirst_oid(lc);
			int			i;

			if (slot_pid(dboid, NULL) != 0)
				continue;
			for (i = 0; i < nlaunched; i++)
				if (launched[i].dboid == dboid)
					break;
			if (i < nlaunched &&
				!TimestampDifferenceExceeds(launched[i].started, now,
											LAUNCHER_RESPAWN_SECS * 1000))
				continue;
			if (i == nlaunched)
			{
				if (nlaunched == ROTATION_MAX_DATABASES)
				{
					/* forget the oldest start; it is past its respawn delay */
					memmove(&launched[0], &launched[1], sizeof(LaunchedDb) * (nlaunched - 1));
					i = --nlaunched;
				}
				nlaunched++;
			}
			launched[i].dboid = dboid;
			launched[i].started = now;
			if (!start_database_worker(dboid, MyProcPid))
			{
				ereport(LOG,
						(errmsg("bsoncrypt: could not start a rotation worker for database %u", dboid),
						 errhint("Raise max_worker_processes.")));
				break;
			}
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LAUNCHER_NAPTIME_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ----------------------------------------------------------------
 *		The rotation worker of a database
 * ----------------------------------------------------------------
 */

static void
begin_tx(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
commit_tx(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
}

static void
run_sql(const char *sql, int nargs, Oid *argtypes, Datum *values, int expected)
{
	int			rc = bsoncrypt_spi_execute(sql, nargs, argtypes, values, NULL, false, 0);

	if (rc != expected)
		elog(ERROR, "bsoncrypt rotation: SPI failed (%s) running: %s",
			 SPI_result_code_string(rc), sql);
}

/* bsoncrypt.relation_keys exists (and is the extension's own) */
static bool
relation_keys_exist(void)
{
	return OidIsValid(bsoncrypt_relation_oid("relation_keys", true));
}

/*
 * Record a rotation event in the audit trail, in the current transaction
 * (with the rotation_state change).  keys: the keys to rewrap, or -1.
 */
static void
audit_rotation(KeyAuditKind kind, const char *provider, const char *version,
			   int64 keys, const ErrorData *edata)
{
	KeyAuditEvent ev = {0};

	ev.kind = kind;
	ev.provider = provider;
	ev.master_key_version = version;
	if (keys >= 0)
		ev.detail = psprintf("{\"keys_to_rewrap\":" INT64_FORMAT "}", keys);
	if (edata != NULL)
	{
		ev.sqlerrcode = edata->sqlerrcode;
		ev.message = edata->message;
	}
	key_audit_event(&ev);
}

/* Keys of provider not on version: how many, and on which versions. */
static int64
keys_to_rewrap(const char *provider, const char *version, Datum *versions)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, BOOLOID};
	Datum		values[3];
	bool		isnull;
	int64		count;
	StringInfoData sql;

	values[0] = CStringGetTextDatum(provider);
	values[1] = CStringGetTextDatum(version);
	values[2] = BoolGetDatum(rotate_key_vault);
	initStringInfo(&sql);
	appendStringInfoString(&sql,
						   "SELECT pg_catalog.count(*)::pg_catalog.int8,"
						   "       COALESCE(pg_catalog.array_agg(DISTINCT x.v ORDER BY x.v), '{}'::pg_catalog.text[])"
						   "  FROM (SELECT k.master_key_version FROM bsoncrypt.key_vault k"
						   "         WHERE bsoncrypt.bson_get_text(k.master_key, 'provider') OPERATOR(pg_catalog.=) $1"
						   "           AND k.master_key_version OPERATOR(pg_catalog.<>) $2"
						   "           AND $3");
	if (relation_keys_exist())
		appendStringInfoString(&sql,
							   " UNION ALL SELECT r.master_key_version FROM bsoncrypt.relation_keys r"
							   "  WHERE r.provider OPERATOR(pg_catalog.=) $1"
							   "    AND r.master_key_version OPERATOR(pg_catalog.<>) $2");
	appendStringInfoString(&sql, ") AS x(v)");
	run_sql(sql.data, 3, argtypes, values, SPI_OK_SELECT);
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (versions)
		*versions = SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 2, &isnull),
									  false, -1);
	return count;
}

static void
add_keys_done(const char *provider, uint64 n)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		values[2];

	if (n == 0)
		return;
	values[0] = CStringGetTextDatum(provider);
	values[1] = Int64GetDatum((int64) n);
	run_sql("UPDATE bsoncrypt.rotation_state"
			"   SET keys_done = keys_done OPERATOR(pg_catalog.+) $2,"
			"       keys_total = GREATEST(keys_total, keys_done OPERATOR(pg_catalog.+) $2)"
			" WHERE provider OPERATOR(pg_catalog.=) $1",
			2, argtypes, values, SPI_OK_UPDATE);
}

static void
between_batches(long delay_ms)
{
	if (!PostmasterIsAlive())
		proc_exit(1);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	if (delay_ms > 0)
	{
		(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 delay_ms, PG_WAIT_EXTENSION);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Start the rotation of provider towards its current version, checked
 * before any row is touched (a rotation interrupted by a crash resumes
 * with its progress).  Returns the version, in cxt.
 */
static char *
start_rotation(MasterKeyCache *cache, const char *provider, MemoryContext cxt)
{
	char	   *version;
	Datum		from_versions;
	int64		remaining;
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INT8OID, TEXTARRAYOID};
	Datum		values[4];
	MemoryContext old;

	begin_tx();
	rotate_key_vault = cluster_role() != CLUSTER_WORKER;
	old = MemoryContextSwitchTo(cxt);
	version = pstrdup(master_key_cache_current(cache, provider));
	MemoryContextSwitchTo(old);
	remaining = keys_to_rewrap(provider, version, &from_versions);
	values[0] = CStringGetTextDatum(provider);
	values[1] = CStringGetTextDatum(version);
	values[2] = Int64GetDatum(remaining);
	values[3] = from_versions;
	run_sql("UPDATE bsoncrypt.rotation_state s"
			"   SET state = 'rewrapping', to_version = $2,"
			"       from_versions = CASE WHEN s.state OPERATOR(pg_catalog.=) 'rewrapping'"
			"                             AND s.to_version OPERATOR(pg_catalog.=) $2"
			"                            THEN ARRAY(SELECT DISTINCT v"
			"                                         FROM pg_catalog.unnest(s.from_versions OPERATOR(pg_catalog.||) $4) v"
			"                                        ORDER BY v)"
			"                            ELSE $4 END,"
			"       keys_total = CASE WHEN s.state OPERATOR(pg_catalog.=) 'rewrapping'"
			"                          AND s.to_version OPERATOR(pg_catalog.=) $2"
			"                         THEN s.keys_done OPERATOR(pg_catalog.+) $3 ELSE $3 END,"
			"       keys_done = CASE WHEN s.state OPERATOR(pg_catalog.=) 'rewrapping'"
			"                         AND s.to_version OPERATOR(pg_catalog.=) $2"
			"                        THEN s.keys_done ELSE 0 END,"
			"       started = CASE WHEN s.state OPERATOR(pg_catalog.=) 'rewrapping'"
			"                       AND s.to_version OPERATOR(pg_catalog.=) $2"
			"                      THEN s.started ELSE pg_catalog.now() END,"
			"       finished = NULL"
			" WHERE s.provider OPERATOR(pg_catalog.=) $1",
			4, argtypes, values, SPI_OK_UPDATE);
	audit_rotation(KEY_AUDIT_ROTATION_STARTED, provider, version, remaining, NULL);
	commit_tx();
	ereport(LOG,
			(errmsg("bsoncrypt: rotating " INT64_FORMAT " keys of provider \"%s\" to master key version \"%s\"",
					remaining, provider, version)));
	return version;
}

/*
 * Must the rotation towards version start over (run in the transaction of
 * the next batch)?  Yes when it was asked for again (rotation_state is
 * 'requested' anew) or the provider's current version is no longer
 * version: every key rewrapped to version from now on would have to be
 * rewrapped once more.
 */
static bool
retarget_due(const char *provider, const char *version)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	char	   *current;
	bool		due;

	values[0] = CStringGetTextDatum(provider);
	run_sql("SELECT 1 FROM bsoncrypt.rotation_state"
			" WHERE provider OPERATOR(pg_catalog.=) $1"
			"   AND state OPERATOR(pg_catalog.=) 'requested'",
			1, argtypes, values, SPI_OK_SELECT);
	if (SPI_processed > 0)
		return true;
	current = kms_current_version_name(kms_get_provider(provider));
	due = strcmp(current, version) != 0;
	pfree(current);
	return due;
}

/*
 * One pass of batches over the key vault, then over relation_keys; adds
 * the keys it rewrapped to *rewrapped.  Returns false as soon as the
 * rotation must start over (retarget_due).
 */
static bool
rewrap_pass(MasterKeyCache *cache, const char *provider, const char *version,
			uint64 *rewrapped)
{
	pg_uuid_t	after;
	bool		have_after = false;
	bool		relation_keys;

	while (rotate_key_vault)
	{
		RewrapBatch batch;
		int			size = rotation_batch_size;

		begin_tx();
		if (retarget_due(provider, version))
		{
			commit_tx();
			return false;
		}
		rewrap_key_vault_batch(cache, provider, version, size,
							   have_after ? &after : NULL, &batch);
		add_keys_done(provider, batch.rewrapped);
		*rewrapped += batch.rewrapped;
		commit_tx();
		if (batch.scanned == 0)
			break;
		after = batch.last_id;
		have_after = true;
		if (batch.scanned < (uint64) size)
			break;
		between_batches(rotation_batch_delay);
	}

	begin_tx();
	relation_keys = relation_keys_exist();
	commit_tx();
	while (relation_keys)
	{
		RewrapBatch batch;

		begin_tx();
		if (retarget_due(provider, version))
		{
			commit_tx();
			return false;
		}
		rewrap_relation_keys_batch(cache, provider, version, rotation_batch_size, &batch);
		add_keys_done(provider, batch.rewrapped);
		*rewrapped += batch.rewrapped;
		commit_tx();
		if (batch.scanned == 0)
			break;
		between_batches(rotation_batch_delay);
	}
	return true;
}

/*
 * Rotate every key of a provider to its current version.  Returns false if
 * it left because the keys still to rewrap stayed locked by other sessions
 * for ROTATION_STALL_MS (an open transaction holding them must not keep a
 * worker busy): the rotation stays 'rewrapping' and resumes later.
 */
static bool
rotate_provider(MasterKeyCache *cache, const char *provider, MemoryContext cxt)
{
	char	   *version = start_rotation(cache, provider, cxt);
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	int64		remaining;
	TimestampTz stalled_since = 0;	/* first pass that rewrapped nothing */

	for (;;)
	{
		uint64		rewrapped = 0;

		if (!rewrap_pass(cache, provider, version, &rewrapped))
		{
			char	   *old_version = version;

			master_key_cache_forget_current(cache, provider);
			version = start_rotation(cache, provider, cxt);
			ereport(LOG,
					(errmsg("bsoncrypt: rotation of provider \"%s\" re-targeted from master key version \"%s\" to \"%s\"",
							provider, old_version, version)));
			stalled_since = 0;
			continue;
		}

		/* done when nothing is left on another version */
		begin_tx();
		remaining = keys_to_rewrap(provider, version, NULL);
		if (remaining == 0)
		{
			values[0] = CStringGetTextDatum(provider);
			run_sql("UPDATE bsoncrypt.rotation_state"
					"   SET state = 'done', finished = pg_catalog.now(),"
					"       failures = 0, next_attempt = NULL"
					" WHERE provider OPERATOR(pg_catalog.=) $1"
					"   AND state OPERATOR(pg_catalog.=) 'rewrapping'",
					1, argtypes, values, SPI_OK_UPDATE);
			if (SPI_processed > 0)
				audit_rotation(KEY_AUDIT_ROTATION_FINISHED, provider, version, -1, NULL);
		}
		commit_tx();
		if (remaining == 0)
			break;
		/* keys locked by other sessions (or just created on an old version) */
		if (rewrapped > 0 || stalled_since == 0)
			stalled_since = GetCurrentTimestamp();
		else if (TimestampDifferenceExceeds(stalled_since, GetCurrentTimestamp(),
											ROTATION_STALL_MS))
		{
			ereport(LOG,
					(errmsg("bsoncrypt: " INT64_FORMAT " keys of provider \"%s\" stayed locked by other sessions; the rotation to \"%s\" resumes within a minute",
							remaining, provider, version)));
			return false;
		}
		between_batches(ROTATION_LOCKED_RETRY_MS);
	}
	ereport(LOG,
			(errmsg("bsoncrypt: every key of provider \"%s\" is on master key version \"%s\"",
					provider, version)));
	return true;
}

static void
record_failure(const char *provider, const ErrorData *edata)
{
	const char *message = edata->message;
	Oid			argtypes[3] = {TEXTOID, TEXTOID, INT4OID};
	Datum		values[3];

	begin_tx();
	values[0] = CStringGetTextDatum(provider);
	values[1] = CStringGetTextDatum(message);
	values[2] = Int32GetDatum(rotation_retry_delay);
	run_sql("UPDATE bsoncrypt.rotation_state"
			"   SET state = 'failed', last_error = $2, last_error_time = pg_catalog.now(),"
			"       failures = failures OPERATOR(pg_catalog.+) 1,"
			"       next_attempt = pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs =>"
			"           $3::pg_catalog.float8 OPERATOR(pg_catalog.*)"
			"           pg_catalog.power(2::pg_catalog.float8, LEAST(failures, 6)::pg_catalog.float8))"
			" WHERE provider OPERATOR(pg_catalog.=) $1",
			3, argtypes, values, SPI_OK_UPDATE);
	audit_rotation(KEY_AUDIT_ROTATION_FAILED, provider, NULL, -1, edata);
	commit_tx();
}

/* rotation_state rows (alias s) with work to do now */
#define ROTATION_DUE_CONDITION \
	"s.state OPERATOR(pg_catalog.=) ANY ('{requested,rewrapping}'::pg_catalog.text[])" \
	" OR (s.state OPERATOR(pg_catalog.=) 'failed'" \
	"     AND s.next_attempt OPERATOR(pg_catalog.<=) pg_catalog.now())"

/*
 * In a transaction: leave if the extension is gone from this database
 * (and forget the database), and make sure that the tables the worker's
 * statements name are the extension's own (bsoncrypt_relation_oid raises
 * an error for a planted one).  Catalog lookups only: no SQL runs here.
 */
static void
check_extension_tables(void)
{
	if (!OidIsValid(bsoncrypt_extension_oid()))
	{
		commit_tx();
		rotation_registry_remove(MyDatabaseId);
		ereport(LOG,
				(errmsg("bsoncrypt: the extension is no longer installed in database %u; its rotation worker exits",
						MyDatabaseId)));
		proc_exit(0);
	}
	(void) bsoncrypt_relation_oid("rotation_state", false);
	(void) bsoncrypt_relation_oid("key_vault", false);
	(void) bsoncrypt_relation_oid("relation_keys", true);
}

/*
 * One round: request a periodic rotation if due, then rotate one provider
 * that has work.  Returns 0 after a rotation, else the milliseconds until a
 * failed rotation is due for a retry, -1 when there is nothing to do, or
 * ROUND_LEAVE when the rotation waits for keys locked by other sessions.
 */
static long
worker_round(MemoryContext cxt)
{
	char	   *provider = NULL;
	long		wait_ms = -1;
	bool		isnull;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];

	begin_tx();
	check_extension_tables();
	if (rotation_interval > 0 && !RecoveryInProgress())
	{
		values[0] = Int32GetDatum(rotation_interval);
		run_sql("SELECT bsoncrypt._request_rotation(NULL::pg_catalog.text)"
				" WHERE NOT EXISTS (SELECT 1 FROM bsoncrypt.rotation_state s"
				"                    WHERE s.state OPERATOR(pg_catalog.=) ANY ('{requested,rewrapping,failed}'::pg_catalog.text[])"
				"                       OR COALESCE(s.finished, s.requested) OPERATOR(pg_catalog.>)"
				"                          (pg_catalog.now() OPERATOR(pg_catalog.-)"
				"                           pg_catalog.make_interval(secs => $1::pg_catalog.float8)))",
				1, argtypes, values, SPI_OK_SELECT);
	}
	run_sql("SELECT s.provider FROM bsoncrypt.rotation_state s"
			" WHERE " ROTATION_DUE_CONDITION
			" ORDER BY s.state OPERATOR(pg_catalog.=) 'failed', s.provider LIMIT 1",
			0, NULL, NULL, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		provider = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		MemoryContextSwitchTo(old);
	}
	else
	{
		Datum		d;

		run_sql("SELECT ((EXTRACT(epoch FROM pg_catalog.min(s.next_attempt) OPERATOR(pg_catalog.-) pg_catalog.now()))"
				"        OPERATOR(pg_catalog.*) 1000::pg_catalog.numeric)::pg_catalog.int8"
				"  FROM bsoncrypt.rotation_state s WHERE s.state OPERATOR(pg_catalog.=) 'failed'",
				0, NULL, NULL, SPI_OK_SELECT);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			wait_ms = Max(DatumGetInt64(d), 10);
	}
	commit_tx();

	if (provider != NULL)
	{
		MasterKeyCache *volatile cache = NULL;
		volatile bool stalled = false;

		PG_TRY();
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			cache = master_key_cache_create();
			MemoryContextSwitchTo(old);
			stalled = !rotate_provider(cache, provider, cxt);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			AbortOutOfAnyTransaction();
			master_key_cache_free(cache);
			cache = NULL;
			ereport(LOG,
					(errmsg("bsoncrypt: rotation of the master keys of provider \"%s\" failed: %s",
							provider, edata->message),
					 errhint("It is retried after bsoncrypt.rotation_retry_delay; see bsoncrypt.rotation_status.")));
			record_failure(provider, edata);
			FreeErrorData(edata);
		}
		PG_END_TRY();
		master_key_cache_free(cache);
		wait_ms = stalled ? ROUND_LEAVE : 0;
	}
	return wait_ms;
}

/* Is a rotation waiting (requested, interrupted, or a retry due)? */
static bool
has_work(void)
{
	bool		found;

	begin_tx();
	run_sql("SELECT 1 FROM bsoncrypt.rotation_state s WHERE " ROTATION_DUE_CONDITION,
			0, NULL, NULL, SPI_OK_SELECT);
	found = SPI_processed > 0;
	commit_tx();
	return found;
}

void
bsoncrypt_rotation_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	MemoryContext cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("bsoncrypt rotation worker");

	/*
	 * The database's own settings (ALTER DATABASE ... SET, which its owner
	 * controls) applied at connection; search_path must not be one of them.
	 */
	SetConfigOption("search_path", "", PGC_SUSET, PGC_S_SESSION);

	if (!slot_claim(dboid))
		proc_exit(0);
	on_shmem_exit(slot_release, ObjectIdGetDatum(dboid));

	/* rotate with the CPU that sessions leave over */
	errno = 0;
	if (rotation_nice > 0 && getpriority(PRIO_PROCESS, 0) < rotation_nice && errno == 0 &&
		setpriority(PRIO_PROCESS, 0, rotation_nice) != 0)
		ereport(LOG,
				(errmsg("bsoncrypt: could not set the rotation worker's niceness to %d: %m",
						rotation_nice)));

	cxt = AllocSetContextCreate(TopMemoryContext, "bsoncrypt rotation", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		long		wait_ms;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(cxt);
		wait_ms = worker_round(cxt);
		if (wait_ms == ROUND_LEAVE)
			break;
		if (wait_ms == 0)
			continue;
		if (wait_ms > 0 && wait_ms <= ROTATION_LINGER_MS)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 wait_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}

		/*
		 * Nothing to do soon: wait a little for a new request, then leave,
		 * so that the database can be dropped or used as a template.  The
		 * launcher comes back within a minute (for periodic rotations and
		 * retries), rotate_master_key() at once.  The slot is released
		 * before the last look at rotation_state, so a request committed
		 * in between either sees no worker (and starts one) or is seen.
		 */
		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   ROTATION_LINGER_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		if (rc & WL_LATCH_SET)
			continue;
		slot_release(0, ObjectIdGetDatum(dboid));
		if (!has_work() || !slot_claim(dboid))
			break;
	}
	proc_exit(0);
}
