/*-------------------------------------------------------------------------
 *
 * encrypted_heap_build.c
 *	  The encrypted_heap callbacks that read a whole table for maintenance:
 *	  index builds (CREATE INDEX, also parallel and CONCURRENTLY, BRIN
 *	  summarization), the validation pass of CREATE INDEX CONCURRENTLY,
 *	  and the copy made by CLUSTER and VACUUM FULL.
 *
 *	  heap's versions compute index keys from, and sort by, the stored
 *	  tuples, which here hold ciphertext.  These versions decide which
 *	  tuples take part exactly as heap does (by heap's visibility routines
 *	  on the stored tuple, HOT chains indexed under their root), but give
 *	  the index and the sort the decrypted tuple.  The CLUSTER/VACUUM FULL
 *	  copy re-encrypts every value with the new file's key: rewriting a
 *	  table re-keys it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/rewriteheap.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplesort.h"

#include "tde.h"

/*
 * Index entries of heap-only tuples point at the root of their HOT chain.
 */
static void
root_tid(Relation rel, HeapTuple tuple, OffsetNumber *root_offsets,
		 ItemPointer tid)
{
	if (HeapTupleIsHeapOnly(tuple))
	{
		OffsetNumber off = ItemPointerGetOffsetNumber(&tuple->t_self);
		OffsetNumber root = root_offsets[off - 1];

		if (!OffsetNumberIsValid(root))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("failed to find parent tuple for heap-only tuple at (%u,%u) in table \"%s\"",
							ItemPointerGetBlockNumber(&tuple->t_self), off,
							RelationGetRelationName(rel))));
		ItemPointerSet(tid, ItemPointerGetBlockNumber(&tuple->t_self), root);
	}
	else
		*tid = tuple->t_self;
}

static void
page_roots(Buffer buf, OffsetNumber *root_offsets)
{
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	heap_get_root_tuples(BufferGetPage(buf), root_offsets);
	LockBuffer(buf, BUFFER_LOCK_UNLOCK);
}

double
tde_index_build_range_scan(Relation rel, Relation index, IndexInfo *indexInfo,
						   bool allow_sync, bool anyvisible, bool progress,
						   BlockNumber start_blockno, BlockNumber numblocks,
						   IndexBuildCallback callback, void *callback_state,
						   TableScanDesc scan)
{
	const TableAmRoutine *h = tde_heap_routine();
	EState	   *estate = CreateExecutorState();
	ExprContext *econtext = GetPerTupleExprContext(estate);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TupleTableSlot *bslot = MakeSingleTupleTableSlot(RelationGetDescr(rel),
													 &TTSOpsBufferHeapTuple);
	ExprState  *predicate;
	TransactionId OldestXmin = InvalidTransactionId;
	Snapshot	snapshot;
	bool		unregister = false;
	TableScanDesc inner;
	OffsetNumber root_offsets[MaxHeapTuplesPerPage];
	BlockNumber root_blkno = InvalidBlockNumber;
	double		reltuples = 0;
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];

	econtext->ecxt_scantuple = slot;
	predicate = ExecPrepareQual(indexInfo->ii_Predicate, estate);

	/* which tuples: all that anyone may still see, or a snapshot's (CIC) */
	if (!IsBootstrapProcessingMode() && !indexInfo->ii_Concurrent)
		OldestXmin = GetOldestNonRemovableTransactionId(rel);

	if (scan == NULL)
	{
		uint32		flags = SO_TYPE_SEQSCAN | SO_ALLOW_STRAT | SO_ALLOW_PAGEMODE;

		if (!TransactionIdIsValid(OldestXmin))
		{
			snapshot = RegisterSnapshot(GetTransactionSnapshot());
			unregister = true;
		}
		else
			snapshot = SnapshotAny;
		if (allow_sync)
			flags |= SO_ALLOW_SYNC;
		inner = h->scan_begin(rel, snapshot, 0, NULL, NULL, flags);
	}
	else
	{
		/* parallel build: the leader set up the scan and its snapshot */
		inner = tde_inner_scan(scan);
		snapshot = inner->rs_snapshot;
		if (snapshot != SnapshotAny)
			OldestXmin = InvalidTransactionId;
		else if (!TransactionIdIsValid(OldestXmin))
			OldestXmin = GetOldestNonRemovableTransactionId(rel);
	}
	if (!allow_sync)
		heap_setscanlimits(inner, start_blockno, numblocks);

	while (h->scan_getnextslot(inner, ForwardScanDirection, bslot))
	{
		BufferHeapTupleTableSlot *b = (BufferHeapTupleTableSlot *) bslot;
		HeapTuple	tuple = b->base.tuple;
		Buffer		buf = b->buffer;
		BlockNumber blk = ItemPointerGetBlockNumber(&tuple->t_self);
		bool		alive = true;
		bool		indexit = true;
		ItemPointerData tid;

		CHECK_FOR_INTERRUPTS();
		if (blk != root_blkno)
		{
			page_roots(buf, root_offsets);
			root_blkno = blk;
		}

		if (snapshot == SnapshotAny)
		{
			TransactionId xwait;

	recheck:
			LockBuffer(buf, BUFFER_LOCK_SHARE);
			switch (HeapTupleSatisfiesVacuum(tuple, OldestXmin, buf))
			{
				case HEAPTUPLE_DEAD:
					indexit = alive = false;
					break;
				case HEAPTUPLE_LIVE:
					reltuples += 1;
					break;
				case HEAPTUPLE_RECENTLY_DEAD:
					/* older snapshots may still see it; a dead HOT member breaks the chain */
					alive = false;
					if (HeapTupleIsHotUpdated(tuple))
					{
						indexit = false;
						indexInfo->ii_BrokenHotChain = true;
					}
					break;
				case HEAPTUPLE_INSERT_IN_PROGRESS:
					xwait = HeapTupleHeaderGetXmin(tuple->t_data);
					if (!anyvisible && !TransactionIdIsCurrentTransactionId(xwait))
					{
						LockBuffer(buf, BUFFER_LOCK_UNLOCK);
						XactLockTableWait(xwait, rel, &tuple->t_self, XLTW_InsertIndexUnique);
						CHECK_FOR_INTERRUPTS();
						goto recheck;
					}
					reltuples += 1;
					break;
				case HEAPTUPLE_DELETE_IN_PROGRESS:
					xwait = HeapTupleHeaderGetUpdateXid(tuple->t_data);
					if (anyvisible)
					{
						reltuples += 1;
						break;
					}
					if (!TransactionIdIsCurrentTransactionId(xwait))
					{
						LockBuffer(buf, BUFFER_LOCK_UNLOCK);
						XactLockTableWait(xwait, rel, &tuple->t_self, XLTW_InsertIndexUnique);
						CHECK_FOR_INTERRUPTS();
						goto recheck;
					}
					/* deleted by ourselves: like recently dead */
					alive = false;
					if (HeapTupleIsHotUpdated(tuple))
					{
						indexit = false;
						indexInfo->ii_BrokenHotChain = true;
					}
					break;
				default:
					elog(ERROR, "unexpected HeapTupleSatisfiesVacuum result");
			}
			LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		}
		else
			reltuples += 1;

		if (!indexit)
			continue;

		MemoryContextReset(econtext->ecxt_per_tuple_memory);
		tde_store_from_bslot(rel, bslot, slot);
		if (predicate != NULL && !ExecQual(predicate, econtext))
			continue;
		FormIndexDatum(indexInfo, slot, estate, values, isnull);
		root_tid(rel, tuple, root_offsets, &tid);
		callback(index, &tid, values, isnull, alive, callback_state);
	}

	ExecDropSingleTupleTableSlot(bslot);
	if (scan != NULL)
		table_endscan(scan);
	else
		h->scan_end(inner);
	if (unregister)
		UnregisterSnapshot(snapshot);
	ExecDropSingleTupleTableSlot(slot);
	FreeExecutorState(estate);
	indexInfo->ii_ExpressionsState = NIL;
	indexInfo->ii_PredicateState = NULL;
	return reltuples;
}

/* the next TID of the index (sorted), false when there is none */
static bool
next_index_tid(ValidateIndexState *state, ItemPointer tid)
{
	Datum		ts_val;
	bool		ts_isnull;

	if (!tuplesort_getdatum(state->tuplesort, true, &ts_val, &ts_isnull, NULL))
	{
		ItemPointerSetInvalid(tid);
		return false;
	}
	Assert(!ts_isnull);
	itemptr_decode(tid, DatumGetInt64(ts_val));
#ifndef USE_FLOAT8_BYVAL
	pfree(DatumGetPointer(ts_val));
#endif
	return true;
}

/*
 * Second pass of CREATE INDEX CONCURRENTLY: insert every tuple visible to
 * snapshot whose root TID is not among the index's TIDs (state->tuplesort,
 * sorted).
 */
void
tde_index_validate_scan(Relation rel, Relation index, IndexInfo *indexInfo,
						Snapshot snapshot, ValidateIndexState *state)
{
	const TableAmRoutine *h = tde_heap_routine();
	EState	   *estate = CreateExecutorState();
	ExprContext *econtext = GetPerTupleExprContext(estate);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TupleTableSlot *bslot = MakeSingleTupleTableSlot(RelationGetDescr(rel),
													 &TTSOpsBufferHeapTuple);
	ExprState  *predicate;
	TableScanDesc inner;
	OffsetNumber root_offsets[MaxHeapTuplesPerPage];
	BlockNumber root_blkno = InvalidBlockNumber;
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];
	ItemPointerData indexcursor;
	bool		tuplesort_empty = false;
	bool		in_index[MaxHeapTuplesPerPage];

	ItemPointerSetInvalid(&indexcursor);
	econtext->ecxt_scantuple = slot;
	predicate = ExecPrepareQual(indexInfo->ii_Predicate, estate);
	inner = h->scan_begin(rel, snapshot, 0, NULL, NULL,
						  SO_TYPE_SEQSCAN | SO_ALLOW_STRAT | SO_ALLOW_PAGEMODE);

	while (h->scan_getnextslot(inner, ForwardScanDirection, bslot))
	{
		BufferHeapTupleTableSlot *b = (BufferHeapTupleTableSlot *) bslot;
		HeapTuple	tuple = b->base.tuple;
		BlockNumber blk = ItemPointerGetBlockNumber(&tuple->t_self);
		ItemPointerData tid;

		CHECK_FOR_INTERRUPTS();
		state->htups += 1;
		if (blk != root_blkno)
		{
			page_roots(b->buffer, root_offsets);
			root_blkno = blk;

			/*
			 * Pages come in block order: mark which offsets of this page
			 * the index has (the index TIDs are sorted).
			 */
			memset(in_index, 0, sizeof(in_index));
			while (!tuplesort_empty)
			{
				if (ItemPointerIsValid(&indexcursor))
				{
					BlockNumber iblk = ItemPointerGetBlockNumber(&indexcursor);

					if (iblk > blk)
						break;
					if (iblk == blk)
						in_index[ItemPointerGetOffsetNumber(&indexcursor) - 1] = true;
				}
				tuplesort_empty = !next_index_tid(state, &indexcursor);
			}
		}
		root_tid(rel, tuple, root_offsets, &tid);
		if (in_index[ItemPointerGetOffsetNumber(&tid) - 1])
			continue;			/* already indexed */

		MemoryContextReset(econtext->ecxt_per_tuple_memory);
		tde_store_from_bslot(rel, bslot, slot);
		if (predicate != NULL && !ExecQual(predicate, econtext))
			continue;
		FormIndexDatum(indexInfo, slot, estate, values, isnull);
		index_insert(index, values, isnull, &tid, rel,
					 indexInfo->ii_Unique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
					 false, indexInfo);
		state->tups_inserted += 1;
	}

	ExecDropSingleTupleTableSlot(bslot);
	h->scan_end(inner);
	ExecDropSingleTupleTableSlot(slot);
	FreeExecutorState(estate);
	indexInfo->ii_ExpressionsState = NIL;
	indexInfo->ii_PredicateState = NULL;
}

/* Write one (decrypted) tuple into the new heap, encrypted with its key. */
static void
rewrite_plain(Relation OldHeap, Relation NewHeap, HeapTuple plain,
			  RewriteState rwstate, MemoryContext tupcxt)
{
	TupleDesc	newdesc = RelationGetDescr(NewHeap);
	int			natts = newdesc->natts;
	MemoryContext old = MemoryContextSwitchTo(tupcxt);
	Datum	   *values = palloc(natts * sizeof(Datum));
	bool	   *isnull = palloc(natts * sizeof(bool));
	HeapTuple	newtup;

	heap_deform_tuple(plain, RelationGetDescr(OldHeap), values, isnull);
	for (int i = 0; i < natts; i++)
		if (TupleDescAttr(newdesc, i)->attisdropped)
			isnull[i] = true;
	newtup = tde_encrypt_values(NewHeap, values, isnull, NULL, tupcxt);
	rewrite_heap_tuple(rwstate, plain, newtup);
	MemoryContextSwitchTo(old);
	MemoryContextReset(tupcxt);
}

/*
 * CLUSTER and VACUUM FULL: copy what anyone may still see into NewHeap,
 * in index order if OldIndex is given, re-encrypted with NewHeap's key.
 */
void
tde_copy_for_cluster(Relation OldHeap, Relation NewHeap, Relation OldIndex,
					 bool use_sort, TransactionId OldestXmin,
					 TransactionId *xid_cutoff, MultiXactId *multi_cutoff,
					 double *num_tuples, double *tups_vacuumed,
					 double *tups_recently_dead)
{
	const TableAmRoutine *h = tde_heap_routine();
	RewriteState rwstate;
	Tuplesortstate *sorter = NULL;
	TableScanDesc inner = NULL;
	IndexScanDesc iscan = NULL;
	IndexFetchTableData *hfetch = NULL;
	TupleTableSlot *bslot = MakeSingleTupleTableSlot(RelationGetDescr(OldHeap),
													 &TTSOpsBufferHeapTuple);
	MemoryContext tupcxt = AllocSetContextCreate(CurrentMemoryContext,
												 "encrypted_heap rewrite",
												 ALLOCSET_DEFAULT_SIZES);
	bool		by_index = OldIndex != NULL && !use_sort;
	ItemPointer itid = NULL;
	bool		call_again = false;

	*num_tuples = *tups_vacuumed = *tups_recently_dead = 0;
	rwstate = begin_heap_rewrite(OldHeap, NewHeap, OldestXmin, *xid_cutoff, *multi_cutoff);
	if (OldIndex != NULL && use_sort)
		sorter = tuplesort_begin_cluster(RelationGetDescr(OldHeap), OldIndex,
										 maintenance_work_mem, NULL, TUPLESORT_NONE);

	if (by_index)
	{
		iscan = index_beginscan(OldHeap, OldIndex, SnapshotAny, 0, 0);
		index_rescan(iscan, NULL, 0, NULL, 0);
		hfetch = h->index_fetch_begin(OldHeap);
	}
	else
		inner = h->scan_begin(OldHeap, SnapshotAny, 0, NULL, NULL,
							  SO_TYPE_SEQSCAN | SO_ALLOW_STRAT | SO_ALLOW_SYNC);

	for (;;)
	{
		BufferHeapTupleTableSlot *b = (BufferHeapTupleTableSlot *) bslot;
		HeapTuple	tuple;
		Buffer		buf;
		bool		isdead;
		HeapTuple	plain;

		CHECK_FOR_INTERRUPTS();
		if (by_index)
		{
			bool		all_dead = false;
			bool		found = false;

			while (!found)
			{
				if (!call_again)
				{
					itid = index_getnext_tid(iscan, ForwardScanDirection);
					if (itid == NULL)
						break;
				}
				found = h->index_fetch_tuple(hfetch, itid, SnapshotAny, bslot,
											 &call_again, &all_dead);
				if (!found)
					call_again = false;
			}
			if (!found)
				break;
		}
		else if (!h->scan_getnextslot(inner, ForwardScanDirection, bslot))
			break;

		tuple = b->base.tuple;
		buf = b->buffer;
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		switch (HeapTupleSatisfiesVacuum(tuple, OldestXmin, buf))
		{
			case HEAPTUPLE_DEAD:
				isdead = true;
				break;
			case HEAPTUPLE_RECENTLY_DEAD:
				*tups_recently_dead += 1;
				isdead = false;
				break;
			case HEAPTUPLE_LIVE:
			case HEAPTUPLE_INSERT_IN_PROGRESS:
				/* with AccessExclusiveLock, only our own transaction */
				isdead = false;
				break;
			case HEAPTUPLE_DELETE_IN_PROGRESS:
				*tups_recently_dead += 1;
				isdead = false;
				break;
			default:
				elog(ERROR, "unexpected HeapTupleSatisfiesVacuum result");
				isdead = false;
				break;
		}
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);

		if (isdead)
		{
			*tups_vacuumed += 1;
			/* the rewrite module still tracks update chains through it */
			if (rewrite_heap_dead_tuple(rwstate, tuple))
			{
				*tups_vacuumed += 1;
				*tups_recently_dead -= 1;
			}
			continue;
		}

		*num_tuples += 1;
		plain = tde_decrypt_tuple(OldHeap, tuple, tupcxt);
		if (sorter != NULL)
		{
			tuplesort_putheaptuple(sorter, plain);
			MemoryContextReset(tupcxt);
		}
		else
			rewrite_plain(OldHeap, NewHeap, plain, rwstate, tupcxt);
	}

	if (by_index)
	{
		h->index_fetch_end(hfetch);
		index_endscan(iscan);
	}
	else
		h->scan_end(inner);
	ExecDropSingleTupleTableSlot(bslot);

	if (sorter != NULL)
	{
		HeapTuple	plain;

		tuplesort_performsort(sorter);
		while ((plain = tuplesort_getheaptuple(sorter, true)) != NULL)
		{
			CHECK_FOR_INTERRUPTS();
			rewrite_plain(OldHeap, NewHeap, plain, rwstate, tupcxt);
		}
		tuplesort_end(sorter);
	}

	end_heap_rewrite(rwstate);
	MemoryContextDelete(tupcxt);
}
