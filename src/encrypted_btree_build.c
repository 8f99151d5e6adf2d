/*-------------------------------------------------------------------------
 *
 * encrypted_btree_build.c
 *	  ambuild of encrypted_btree: CREATE INDEX (also CONCURRENTLY), REINDEX,
 *	  and the rebuilds of TRUNCATE, CLUSTER, VACUUM FULL and table rewrites.
 *
 *	  btree's own build sorts index tuples with a tuplesort that accepts
 *	  btree index relations only, and would compare sealed keys on every
 *	  step of the sort.  This build sorts the plaintext instead (the table
 *	  scan, including encrypted_heap's, hands over plaintext values), by
 *	  the btree operators the encrypted operator families mirror, then the
 *	  heap TID; checks uniqueness on the sorted stream as btree does (among
 *	  live rows; NULLs distinct unless NULLS NOT DISTINCT); and inserts the
 *	  sealed entries in that order through btree's insertion, which appends
 *	  to the rightmost leaf (its comparisons hit the cache of opened keys,
 *	  which sealing fills).
 *
 *	  Each new index file gets its own key (relation_keys, like a table
 *	  file); the keys of the files this transaction replaces (REINDEX,
 *	  TRUNCATE, rewrites) are deleted with them (encrypted_btree_ddl.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/nbtree.h"
#include "access/tableam.h"
#include "access/xloginsert.h"
#include "catalog/index.h"
#include "catalog/pg_operator_d.h"
#include "catalog/pg_type_d.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplesort.h"

#include "tde.h"
#include "tde_index.h"

typedef struct BuildState
{
	Relation	heap;
	Relation	index;
	int			nkeys;
	Tuplesortstate *sort;
	TupleTableSlot *slot;		/* keys, heap TID, alive */
	FmgrInfo	cmp[INDEX_MAX_KEYS];	/* plaintext comparisons (uniqueness) */
	double		index_tuples;
} BuildState;

/* The sort: every key column by its btree operator, then the heap TID. */
static Tuplesortstate *
begin_sort(Relation index, int nkeys, TupleDesc *desc, FmgrInfo *cmp)
{
	AttrNumber	attnums[INDEX_MAX_KEYS + 1];
	Oid			ops[INDEX_MAX_KEYS + 1];
	Oid			colls[INDEX_MAX_KEYS + 1];
	bool		nulls_first[INDEX_MAX_KEYS + 1];
	TupleDesc	d = CreateTemplateTupleDesc(nkeys + 2);

	for (int i = 0; i < nkeys; i++)
	{
		Oid			type = index->rd_opcintype[i];
		Oid			family = sealed_btree_family(type);
		int16		option = index->rd_indoption[i];

		if (!OidIsValid(family))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("type %s has no default btree operator class", format_type_be(type))));
		TupleDescInitEntry(d, i + 1, NULL, type, -1, 0);
		TupleDescInitEntryCollation(d, i + 1, index->rd_indcollation[i]);
		attnums[i] = i + 1;
		ops[i] = get_opfamily_member(family, type, type,
									 (option & INDOPTION_DESC) ? BTGreaterStrategyNumber
									 : BTLessStrategyNumber);
		if (!OidIsValid(ops[i]))
			elog(ERROR, "missing btree ordering operator for type %s", format_type_be(type));
		colls[i] = index->rd_indcollation[i];
		nulls_first[i] = (option & INDOPTION_NULLS_FIRST) != 0;
		fmgr_info(get_opfamily_proc(family, type, type, BTORDER_PROC), &cmp[i]);
	}
	TupleDescInitEntry(d, nkeys + 1, NULL, TIDOID, -1, 0);
	TupleDescInitEntry(d, nkeys + 2, NULL, BOOLOID, -1, 0);
	attnums[nkeys] = nkeys + 1;
	ops[nkeys] = TIDLessOperator;
	colls[nkeys] = InvalidOid;
	nulls_first[nkeys] = false;
	*desc = d;
	return tuplesort_begin_heap(d, nkeys + 1, attnums, ops, colls, nulls_first,
								maintenance_work_mem, NULL, TUPLESORT_NONE);
}

static void
build_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
			   bool alive, void *arg)
{
	BuildState *bs = (BuildState *) arg;
	TupleTableSlot *slot = bs->slot;

	ExecClearTuple(slot);
	for (int i = 0; i < bs->nkeys; i++)
	{
		slot->tts_values[i] = values[i];
		slot->tts_isnull[i] = isnull[i];
	}
	slot->tts_values[bs->nkeys] = PointerGetDatum(tid);
	slot->tts_isnull[bs->nkeys] = false;
	slot->tts_values[bs->nkeys + 1] = BoolGetDatum(alive);
	slot->tts_isnull[bs->nkeys + 1] = false;
	ExecStoreVirtualTuple(slot);
	tuplesort_puttupleslot(bs->sort, slot);
}

/* Are the keys of two sorted entries equal, for uniqueness? */
static bool
same_keys(BuildState *bs, Datum *a, bool *anull, Datum *b, bool *bnull,
		  bool nulls_not_distinct)
{
	for (int i = 0; i < bs->nkeys; i++)
	{
		if (anull[i] || bnull[i])
		{
			if (!(nulls_not_distinct && anull[i] && bnull[i]))
				return false;
			continue;
		}
		if (DatumGetInt32(FunctionCall2Coll(&bs->cmp[i], bs->index->rd_indcollation[i],
											a[i], b[i])) != 0)
			return false;
	}
	return true;
}

static void
report_duplicate(BuildState *bs, Datum *values, bool *isnull)
{
	char	   *key_desc = BuildIndexValueDescription(bs->index, values, isnull);

	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("could not create unique index \"%s\"",
					RelationGetRelationName(bs->index)),
			 key_desc ? errdetail("Key %s is duplicated.", key_desc) :
			 errdetail("Duplicate keys exist."),
			 errtableconstraint(bs->heap, RelationGetRelationName(bs->index))));
}

/* An empty btree: the metapage. */
static void
init_metapage(Relation index)
{
	Buffer		buf = ReadBufferExtended(index, MAIN_FORKNUM, P_NEW, RBM_NORMAL, NULL);

	Assert(BufferGetBlockNumber(buf) == BTREE_METAPAGE);
	LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	START_CRIT_SECTION();
	_bt_initmetapage(BufferGetPage(buf), P_NONE, 0, false);
	MarkBufferDirty(buf);
	if (RelationNeedsWAL(index))
		log_newpage_buffer(buf, true);
	END_CRIT_SECTION();
	UnlockReleaseBuffer(buf);
}

/* Insert the sorted entries, sealed, checking uniqueness on the way. */
static void
insert_sorted(BuildState *bs, IndexInfo *indexInfo, TupleDesc desc)
{
	int			nkeys = bs->nkeys;
	MemoryContext tuplecxt = AllocSetContextCreate(CurrentMemoryContext,
												   "encrypted_btree build entry",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext groupcxt = AllocSetContextCreate(CurrentMemoryContext,
												   "encrypted_btree build group",
												   ALLOCSET_SMALL_SIZES);
	Datum		prev[INDEX_MAX_KEYS];
	bool		prevnull[INDEX_MAX_KEYS];
	bool		have_prev = false;
	bool		group_alive = false;
	TupleDesc	itupdesc = RelationGetDescr(bs->index);

	while (tuplesort_gettupleslot(bs->sort, true, false, bs->slot, NULL))
	{
		Datum	   *values;
		bool	   *isnull;
		ItemPointerData tid;
		bool		alive;
		Datum		sealed[INDEX_MAX_KEYS];
		IndexTuple	itup;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		slot_getallattrs(bs->slot);
		values = bs->slot->tts_values;
		isnull = bs->slot->tts_isnull;
		tid = *(ItemPointer) DatumGetPointer(values[nkeys]);
		alive = DatumGetBool(values[nkeys + 1]);

		if (indexInfo->ii_Unique)
		{
			if (have_prev && same_keys(bs, prev, prevnull, values, isnull,
									   indexInfo->ii_NullsNotDistinct))
			{
				if (alive && group_alive)
					report_duplicate(bs, values, isnull);
				group_alive |= alive;
			}
			else
			{
				MemoryContextReset(groupcxt);
				old = MemoryContextSwitchTo(groupcxt);
				for (int i = 0; i < nkeys; i++)
				{
					Form_pg_attribute att = TupleDescAttr(desc, i);

					prevnull[i] = isnull[i];
					prev[i] = isnull[i] ? (Datum) 0 :
						datumCopy(values[i], att->attbyval, att->attlen);
				}
				MemoryContextSwitchTo(old);
				have_prev = true;
				group_alive = alive;
			}
		}

		old = MemoryContextSwitchTo(tuplecxt);
		for (int i = 0; i < nkeys; i++)
			sealed[i] = isnull[i] ? (Datum) 0 :
				PointerGetDatum(sealed_key_seal(bs->index, bs->index->rd_opcintype[i],
												values[i], &tid));
		itup = index_form_tuple(itupdesc, sealed, isnull);
		itup->t_tid = tid;
		_bt_doinsert(bs->index, itup, UNIQUE_CHECK_NO, false, bs->heap);
		MemoryContextSwitchTo(old);
		MemoryContextReset(tuplecxt);
		bs->index_tuples += 1;
	}
	MemoryContextDelete(tuplecxt);
	MemoryContextDelete(groupcxt);
}

IndexBuildResult *
eb_build(Relation heap, Relation index, IndexInfo *indexInfo)
{
	IndexBuildResult *result = palloc0(sizeof(IndexBuildResult));
	BuildState	bs;
	TupleDesc	desc;
	double		reltuples;

	if (RelationGetNumberOfBlocks(index) != 0)
		elog(ERROR, "index \"%s\" already contains data", RelationGetRelationName(index));
	if (!eb_reloptions_marked(index))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("encrypted_btree index \"%s\" is not marked WITH (encrypted = true)",
						RelationGetRelationName(index))));

	/*
	 * A new file, a new key (none during pg_upgrade, which brings the old
	 * files and the old relation_keys); the keys of the files it replaces
	 * go with them.
	 */
	if (!IsBinaryUpgrade)
	{
		tde_create_file_key(index, &index->rd_node, index->rd_rel->relpersistence);
		eb_drop_keys_of_replaced_files();
	}
	init_metapage(index);

	memset(&bs, 0, sizeof(bs));
	bs.heap = heap;
	bs.index = index;
	bs.nkeys = IndexRelationGetNumberOfKeyAttributes(index);
	bs.sort = begin_sort(index, bs.nkeys, &desc, bs.cmp);
	bs.slot = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);
	reltuples = table_index_build_scan(heap, index, indexInfo, true, true,
									   build_callback, &bs, NULL);
	tuplesort_performsort(bs.sort);
	ExecDropSingleTupleTableSlot(bs.slot);
	bs.slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	insert_sorted(&bs, indexInfo, desc);
	tuplesort_end(bs.sort);
	ExecDropSingleTupleTableSlot(bs.slot);

	result->heap_tuples = reltuples;
	result->index_tuples = bs.index_tuples;
	return result;
}
