/*-------------------------------------------------------------------------
 *
 * tde_dropped_keys.c
 *	  Keys of relation files that are gone: the sql_drop event trigger that
 *	  deletes the keys of the files a command dropped, and the manual sweep
 *	  bsoncrypt.drop_unused_relation_keys().
 *
 *	  Both decide from the catalog itself (systable scans of pg_class),
 *	  never from SQL on pg_class: extensions may filter what SQL sees (Citus
 *	  hides its shard tables with a planner hook), and a key deleted because
 *	  its relation was hidden makes that relation's data unreadable for
 *	  good.  The trigger never decides by absence at all: it deletes the
 *	  keys of the files that the relations of
 *	  pg_event_trigger_dropped_objects() had, read from the pg_class row
 *	  versions this transaction deleted.
 *
 *	  The access method's own object-access hook (encrypted_heap.c) deletes
 *	  a dropped relation's keys when bsoncrypt is loaded before the drop;
 *	  the trigger covers sessions that drop an encrypted table without
 *	  having loaded it.  Deleting a file's keys twice is harmless.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_class.h"
#include "commands/defrem.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "tde.h"
#include "trusted_sql.h"

PG_FUNCTION_INFO_V1(bsoncrypt_drop_keys_of_dropped_files);
PG_FUNCTION_INFO_V1(bsoncrypt_drop_unused_relation_keys);

/* The relations (classid pg_class, whole objects) the current command dropped. */
static List *
dropped_relations(void)
{
	MemoryContext outer = CurrentMemoryContext;
	List	   *relids = NIL;
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = bsoncrypt_spi_execute("SELECT objid FROM pg_catalog.pg_event_trigger_dropped_objects()"
							   " WHERE classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass"
							   "   AND objsubid OPERATOR(pg_catalog.=) 0",
							   0, NULL, NULL, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading pg_event_trigger_dropped_objects() failed: %s",
			 SPI_result_code_string(rc));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		objid = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
										  1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(outer);

		if (!isnull)
			relids = lappend_oid(relids, DatumGetObjectId(objid));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return relids;
}

/*
 * Did this transaction delete this version of a pg_class row (a DROP),
 * rather than update it or leave it alone?
 */
static bool
deleted_here(HeapTuple tuple)
{
	HeapTupleHeader header = tuple->t_data;

	if ((header->t_infomask & HEAP_XMAX_INVALID) ||
		HEAP_XMAX_IS_LOCKED_ONLY(header->t_infomask))
		return false;
	if (!TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetUpdateXid(header)))
		return false;
	/* a deleted version points at itself; an updated one at its successor */
	return ItemPointerEquals(&tuple->t_self, &header->t_ctid);
}

/*
 * Delete the keys of the file a relation had when this transaction dropped
 * it: the last version of its pg_class row, which the transaction deleted
 * (read with SnapshotAny; an aborted subtransaction's deletion does not
 * count).  Nothing for relations that are not encrypted (encrypted_heap
 * tables, encrypted_btree indexes), or whose row this transaction did not
 * delete.
 */
static void
drop_keys_of_dropped_relation(Oid relid)
{
	Relation	rel = table_open(RelationRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Form_pg_class form = NULL;

	ScanKeyInit(&key, Anum_pg_class_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, ClassOidIndexId, true, SnapshotAny, 1, &key);
	while ((tuple = systable_getnext(scan)) != NULL)
	{
		if (deleted_here(tuple))
		{
			form = palloc(sizeof(FormData_pg_class));
			memcpy(form, GETSTRUCT(tuple), sizeof(FormData_pg_class));
			break;
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (form != NULL && tde_is_encrypted_am(form->relam) && OidIsValid(form->relfilenode))
		(void) tde_drop_file_keys(form->reltablespace, form->relfilenode,
								  form->relpersistence);
}

/*
 * The sql_drop event trigger bsoncrypt_drop_relation_keys: the dropped
 * files' keys go in the dropping transaction.  A no-op while the extension
 * itself is being dropped (its tables are gone).
 */
Datum
bsoncrypt_drop_keys_of_dropped_files(PG_FUNCTION_ARGS)
{
	List	   *relids;
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired as an event trigger",
						"bsoncrypt._drop_keys_of_dropped_files")));
	if (tde_relids(true) == NULL)
		PG_RETURN_NULL();
	relids = dropped_relations();
	foreach(lc, relids)
		drop_keys_of_dropped_relation(lfirst_oid(lc));
	PG_RETURN_NULL();
}

/* Does a relation of this database have this file? (the catalog, directly) */
static bool
file_in_catalog(Oid reltablespace, Oid relfilenode)
{
	Relation	rel = table_open(RelationRelationId, AccessShareLock);
	ScanKeyData key[2];
	SysScanDesc scan;
	bool		found;

	ScanKeyInit(&key[0], Anum_pg_class_reltablespace, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(reltablespace));
	ScanKeyInit(&key[1], Anum_pg_class_relfilenode, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relfilenode));
	scan = systable_beginscan(rel, ClassTblspcRelfilenodeIndexId, true, NULL, 2, key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

typedef struct KeyFile
{
	Oid			reltablespace;
	Oid			relfilenode;
} KeyFile;

/* The distinct files relation_keys has keys of (in relation_keys_file order). */
static List *
files_with_keys(void)
{
	TdeRelids	r = *tde_relids(false);
	Relation	rel = table_open(r.relation_keys, AccessShareLock);
	Relation	idx = index_open(r.relation_keys_file, AccessShareLock);
	SysScanDesc scan = systable_beginscan_ordered(rel, idx, NULL, 0, NULL);
	HeapTuple	tuple;
	List	   *files = NIL;
	KeyFile    *last = NULL;

	while ((tuple = systable_getnext_ordered(scan, ForwardScanDirection)) != NULL)
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		Oid			spc = DatumGetObjectId(heap_getattr(tuple, Anum_relation_keys_reltablespace, desc, &isnull));
		Oid			relnode = DatumGetObjectId(heap_getattr(tuple, Anum_relation_keys_relfilenode, desc, &isnull));

		if (last != NULL && last->reltablespace == spc && last->relfilenode == relnode)
			continue;
		last = palloc(sizeof(KeyFile));
		last->reltablespace = spc;
		last->relfilenode = relnode;
		files = lappend(files, last);
	}
	systable_endscan_ordered(scan);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	return files;
}

/*
 * bsoncrypt.drop_unused_relation_keys(): delete the keys of files no
 * relation of the database has, as the catalog says (relation_keys is read
 * first, pg_class after: a key made meanwhile is not seen, a file made
 * with its key before is).  Needs DELETE on relation_keys.  Returns how many
 * keys were deleted.
 */
Datum
bsoncrypt_drop_unused_relation_keys(PG_FUNCTION_ARGS)
{
	Oid			relation_keys = tde_relids(false)->relation_keys;
	uint64		deleted = 0;
	List	   *files;
	ListCell   *lc;

	if (pg_class_aclcheck(relation_keys, GetUserId(), ACL_DELETE) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, "relation_keys");
	files = files_with_keys();
	foreach(lc, files)
	{
		KeyFile    *file = lfirst(lc);

		if (!file_in_catalog(file->reltablespace, file->relfilenode))
			deleted += tde_drop_file_keys(file->reltablespace, file->relfilenode,
										  RELPERSISTENCE_PERMANENT);
	}
	PG_RETURN_INT64((int64) deleted);
}
