/*-------------------------------------------------------------------------
 *
 * rotation_registry.c
 *	  Which databases of the cluster have the bsoncrypt extension: the
 *	  rotation launcher starts workers only there.
 *
 *	  The launcher is connected to no database and can read only shared
 *	  catalogs, and a worker connected to a database without the extension
 *	  would run as a superuser with that database's owner's settings (its
 *	  search_path, ...).  So databases are registered by what knows the
 *	  extension is there: CREATE EXTENSION, rotate_master_key() and every
 *	  session whose bsoncrypt code finds the extension's tables register
 *	  their database at once, durably (the file below is written before
 *	  they go on), so that a rotation requested just before a crash is
 *	  resumed after it; DROP EXTENSION unregisters the database at commit,
 *	  and the launcher forgets dropped databases.  (A CREATE EXTENSION that
 *	  rolls back leaves its database registered; the worker started there
 *	  finds no extension in the catalog, runs nothing and unregisters it.)
 *
 *	  The registry lives in shared memory and in the file
 *	  $PGDATA/bsoncrypt_rotation_databases (one database OID per line),
 *	  which the launcher reads when it starts; it is rewritten atomically,
 *	  under the registry's lock, by whoever changed the registry.  The file travels with base backups; a
 *	  database that pg_upgrade or a lost file leaves out is registered
 *	  again by its next use of bsoncrypt.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "rotation.h"

#define REGISTRY_FILE "bsoncrypt_rotation_databases"
#define REGISTRY_TMP_FILE REGISTRY_FILE ".tmp"
#define REGISTRY_MAX 8192
#define REGISTRY_TRANCHE "bsoncrypt rotation registry"

typedef struct RotationRegistry
{
	LWLock	   *lock;
	bool		dirty;			/* changed since the file was written */
	bool		full_reported;
	int			ndatabases;
	Oid			databases[REGISTRY_MAX];
} RotationRegistry;

static RotationRegistry *registry = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static object_access_hook_type prev_object_access_hook = NULL;

/* DROP EXTENSION in this transaction: unregister at commit */
static bool unregister_at_commit = false;
static bool registered_by_this_backend = false;
static bool xact_callback_registered = false;

static void
registry_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(RotationRegistry)));
	RequestNamedLWLockTranche(REGISTRY_TRANCHE, 1);
}

static void
registry_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	registry = ShmemInitStruct("bsoncrypt rotation registry", sizeof(RotationRegistry), &found);
	if (!found)
	{
		memset(registry, 0, sizeof(RotationRegistry));
		registry->lock = &(GetNamedLWLockTranche(REGISTRY_TRANCHE))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

static int
registry_find(Oid dboid)
{
	for (int i = 0; i < registry->ndatabases; i++)
		if (registry->databases[i] == dboid)
			return i;
	return -1;
}

/* Add a database; the caller holds the lock exclusively. */
static void
registry_add_locked(Oid dboid)
{
	if (registry_find(dboid) >= 0)
		return;
	if (registry->ndatabases < REGISTRY_MAX)
	{
		registry->databases[registry->ndatabases++] = dboid;
		registry->dirty = true;
	}
	else if (!registry->full_reported)
	{
		registry->full_reported = true;
		ereport(LOG,
				(errmsg("bsoncrypt: more than %d databases have the extension; automatic rotation skips the others",
						REGISTRY_MAX)));
	}
}

void
rotation_registry_remove(Oid dboid)
{
	int			i;

	if (registry == NULL)
		return;
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	i = registry_find(dboid);
	if (i >= 0)
	{
		registry->databases[i] = registry->databases[--registry->ndatabases];
		registry->dirty = true;
	}
	LWLockRelease(registry->lock);
}

bool
rotation_registry_contains(Oid dboid)
{
	bool		found;

	if (registry == NULL)
		return false;
	LWLockAcquire(registry->lock, LW_SHARED);
	found = registry_find(dboid) >= 0;
	LWLockRelease(registry->lock);
	return found;
}

/* The registered databases, in CurrentMemoryContext. */
List *
rotation_registry_list(void)
{
	List	   *dbs = NIL;

	LWLockAcquire(registry->lock, LW_SHARED);
	for (int i = 0; i < registry->ndatabases; i++)
		dbs = lappend_oid(dbs, registry->databases[i]);
	LWLockRelease(registry->lock);
	return dbs;
}

/* ------------------------------------------------------------------------
 * The file (read and written by the launcher only)
 * ------------------------------------------------------------------------
 */

/* Merge the file's databases into the registry. */
void
rotation_registry_load(void)
{
	FILE	   *file = AllocateFile(REGISTRY_FILE, "r");
	char		line[64];

	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("bsoncrypt: could not read \"%s\": %m", REGISTRY_FILE)));
		return;
	}
	while (fgets(line, sizeof(line), file) != NULL)
	{
		char	   *end;
		unsigned long oid;

		if (line[0] == '#')
			continue;
		errno = 0;
		oid = strtoul(line, &end, 10);
		if (errno == 0 && end != line && (*end == '\n' || *end == '\0') &&
			oid > 0 && oid <= PG_UINT32_MAX)
		{
			LWLockAcquire(registry->lock, LW_EXCLUSIVE);
			registry_add_locked((Oid) oid);
			LWLockRelease(registry->lock);
		}
	}
	FreeFile(file);
}

/*
 * Write the registry to its file if it changed, atomically and durably;
 * the caller holds the lock exclusively.  Failures are logged (never an
 * error: registering must not fail what the session does) and retried by
 * the next save.
 */
static void
save_locked(void)
{
	FILE	   *file;
	bool		ok;

	if (!registry->dirty)
		return;
	file = AllocateFile(REGISTRY_TMP_FILE, PG_BINARY_W);
	ok = file != NULL;
	if (ok)
	{
		fprintf(file, "# databases with the bsoncrypt extension (rotation launcher)\n");
		for (int i = 0; i < registry->ndatabases; i++)
			fprintf(file, "%u\n", registry->databases[i]);
		ok = fflush(file) == 0 && pg_fsync(fileno(file)) == 0;
		ok = FreeFile(file) == 0 && ok;
	}
	if (!ok)
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("bsoncrypt: could not write \"%s\": %m", REGISTRY_TMP_FILE)));
	else if (durable_rename(REGISTRY_TMP_FILE, REGISTRY_FILE, LOG) == 0)
		registry->dirty = false;
}

/* Write the registry's file if the registry changed since. */
void
rotation_registry_save(void)
{
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	save_locked();
	LWLockRelease(registry->lock);
}

/* ------------------------------------------------------------------------
 * Sessions register and unregister their database at commit
 * ------------------------------------------------------------------------
 */

static void
registry_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && unregister_at_commit)
		rotation_registry_remove(MyDatabaseId);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
		unregister_at_commit = false;
}

static void
ensure_xact_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(registry_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

/*
 * The extension is installed in this database (the caller found one of its
 * objects): register the database, durably, before going on.  Cheap once
 * it is registered.
 */
void
rotation_note_extension(void)
{
	if (registry == NULL || registered_by_this_backend || IsParallelWorker())
		return;
	if (!rotation_registry_contains(MyDatabaseId))
	{
		LWLockAcquire(registry->lock, LW_EXCLUSIVE);
		registry_add_locked(MyDatabaseId);
		save_locked();
		LWLockRelease(registry->lock);
	}
	registered_by_this_backend = true;
	unregister_at_commit = false;	/* DROP then CREATE EXTENSION */
}

/* DROP EXTENSION bsoncrypt: unregister the database when it commits. */
static void
registry_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					   int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (access == OAT_DROP && classId == ExtensionRelationId && registry != NULL &&
		objectId == get_extension_oid("bsoncrypt", true))
	{
		ensure_xact_callback();
		unregister_at_commit = true;
		registered_by_this_backend = false; /* a CREATE EXTENSION may follow */
	}
}

void
rotation_registry_init(void)
{
	prev_object_access_hook = object_access_hook;
	object_access_hook = registry_object_access;
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = registry_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = registry_shmem_startup;
}
