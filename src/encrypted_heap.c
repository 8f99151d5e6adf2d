/*-------------------------------------------------------------------------
 *
 * encrypted_heap.c
 *	  The encrypted_heap table access method: heap's routine table with the
 *	  callbacks that see tuple contents wrapped.
 *
 *	  Writes (insert, multi-insert, speculative insert, update) replace every
 *	  varlena value by its AES-256-GCM ciphertext (tde_keys.c) before heap
 *	  stores the tuple, so the main fork, TOAST, WAL records and full-page
 *	  images only ever see ciphertext.  Large values are compressed before
 *	  they are encrypted (ciphertext does not compress).  An update reuses
 *	  the stored ciphertext of values whose plaintext did not change, which
 *	  keeps HOT updates and unchanged TOAST values as heap has them.  heap
 *	  sets xmin, cmin, xmax and the flags on the encrypted tuple it is
 *	  given; the caller's slot takes that header over (tde_slot_written),
 *	  so RETURNING reads the system columns heap's slot would show.
 *
 *	  Reads let heap fill a BufferHeapTuple slot of our own (visibility is
 *	  decided on the on-page tuple, by heap) and hand the stored tuple to the
 *	  caller's slot: our slots (encrypted_heap_slot.c) keep it by reference
 *	  and decrypt a column only when it is read; other slots get a decrypted
 *	  copy, header included.  A row lock hands over the tuple heap left in
 *	  its slot whatever the result, as heap does (ON CONFLICT reads xmin of
 *	  a row it could not lock).  Callbacks that only look at tuple headers
 *	  (delete, vacuum, index deletion, sizes) are heap's own.
 *
 *	  Index builds and CLUSTER/VACUUM FULL live in encrypted_heap_build.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/heapam.h"
#include "access/heaptoast.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/tableam.h"
#include "access/toast_compression.h"
#include "access/toast_internals.h"
#include "access/valid.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_class.h"
#include "commands/defrem.h"
#include "utils/syscache.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/tidbitmap.h"
#include "storage/bufmgr.h"
#include "utils/snapmgr.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "tde.h"

PG_FUNCTION_INFO_V1(bsoncrypt_encrypted_heap_handler);

/* values at least this large are compressed before encryption (setting) */
int			tde_compress_min = TOAST_TUPLE_THRESHOLD;

static TableAmRoutine eh_routine;
static const TableAmRoutine *heaprt = NULL;
static MemoryContext scratch_cxt = NULL;

typedef struct EhScanDescData
{
	TableScanDescData base;		/* what generic code looks at */
	TableScanDesc inner;		/* heap's scan */
	TupleTableSlot *bslot;		/* heap fills this */
	int			nkeys;			/* keys tested on decrypted tuples */
	ScanKey		keys;
} EhScanDescData;
typedef EhScanDescData *EhScanDesc;

typedef struct EhIndexFetchData
{
	IndexFetchTableData base;
	IndexFetchTableData *inner;
	TupleTableSlot *bslot;
} EhIndexFetchData;

const TableAmRoutine *
tde_heap_routine(void)
{
	if (heaprt == NULL)
		heaprt = GetHeapamTableAmRoutine();
	return heaprt;
}

bool
tde_is_encrypted_rel(Relation rel)
{
	return rel->rd_tableam == &eh_routine;
}

/*
 * A context for the intermediate results of one callback (deformed
 * values, detoasted and decrypted datums); reset when the next begins.
 * Nothing in it outlives the callback that made it.
 */
MemoryContext
tde_scratch_context(void)
{
	if (scratch_cxt == NULL)
		scratch_cxt = AllocSetContextCreate(TopMemoryContext,
											"encrypted_heap scratch",
											ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(scratch_cxt);
	return scratch_cxt;
}

TableScanDesc
tde_inner_scan(TableScanDesc scan)
{
	return ((EhScanDesc) scan)->inner;
}

/*
 * table_scan_update_snapshot (parallel bitmap heap scans) changes only our
 * descriptor: hand the snapshot, and its ownership, to heap's.
 */
static void
sync_snapshot(EhScanDesc s)
{
	if (s->inner->rs_snapshot != s->base.rs_snapshot)
	{
		s->inner->rs_snapshot = s->base.rs_snapshot;
		if (s->base.rs_flags & SO_TEMP_SNAPSHOT)
		{
			s->inner->rs_flags |= SO_TEMP_SNAPSHOT;
			s->base.rs_flags &= ~SO_TEMP_SNAPSHOT;
		}
	}
}

/* Does the stored tuple hold any non-null varlena value (ciphertext)? */
static bool
holds_ciphertext(TupleDesc desc, HeapTuple tuple, int stored_natts)
{
	bool		hasnulls = HeapTupleHasNulls(tuple);
	bits8	   *bp = tuple->t_data->t_bits;

	for (int i = 0; i < stored_natts && i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attlen != -1 || att->attisdropped)
			continue;
		if (hasnulls && att_isnull(i, bp))
			continue;
		return true;
	}
	return false;
}

/*
 * Decrypt, in place, the values [from, to) of a stored tuple of rel,
 * deformed with desc; plaintext goes to cxt.  desc is the descriptor the
 * tuple was written with, which is not always rel's: a rewriting ALTER
 * TABLE ... ALTER COLUMN TYPE reads old tuples while the relation already
 * has the new column types.  Dropped columns read as NULL; attributes
 * beyond those stored are defaults (attmissingval), never ciphertext.
 * With keep_toast_pointers, values stored out of line stay TOAST pointers
 * (logical decoding: an UPDATE's unchanged TOASTed value, which the WAL
 * record does not carry).
 */
void
tde_decrypt_datums(Relation rel, TupleDesc desc, HeapTuple stored,
				   Datum *values, bool *isnull, int from, int to,
				   MemoryContext cxt, bool keep_toast_pointers)
{
	int			stored_natts = HeapTupleHeaderGetNatts(stored->t_data);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	for (int i = from; i < to && i < stored_natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			isnull[i] = true;
		if (isnull[i] || att->attlen != -1 ||
			(keep_toast_pointers && VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(values[i]))))
			continue;
		values[i] = PointerGetDatum(tde_decrypt_value(rel, i + 1,
													  (struct varlena *) DatumGetPointer(values[i]),
													  &stored->t_self));
	}
	MemoryContextSwitchTo(old);
}

/*
 * Form a plaintext tuple from decrypted values, in CurrentMemoryContext,
 * with the stored tuple's header (xmin, xmax, ctid, infomask, t_self) so
 * that system columns and update-chain logic see the stored tuple.
 */
HeapTuple
tde_form_with_header(TupleDesc desc, Datum *values, bool *isnull,
					 HeapTuple stored)
{
	HeapTuple	result = heap_form_tuple(desc, values, isnull);

	tde_copy_header(result, stored);
	return result;
}

/*
 * Give a plaintext tuple the transaction part of a stored tuple's header
 * (xmin, xmax, cid, ctid, the transaction and update-chain flags), its
 * t_self and its table: what system columns and update-chain logic read.
 * The plaintext tuple's own layout (natts, null bitmap, hoff) stays.
 */
void
tde_copy_header(HeapTuple plain, HeapTuple stored)
{
	HeapTupleHeader hdr = plain->t_data;

	hdr->t_choice = stored->t_data->t_choice;
	hdr->t_ctid = stored->t_data->t_ctid;
	hdr->t_infomask = (hdr->t_infomask & ~HEAP_XACT_MASK) |
		(stored->t_data->t_infomask & HEAP_XACT_MASK);
	hdr->t_infomask2 = (hdr->t_infomask2 & HEAP_NATTS_MASK) |
		(stored->t_data->t_infomask2 & ~HEAP_NATTS_MASK);
	plain->t_self = stored->t_self;
	plain->t_tableOid = stored->t_tableOid;
}

/*
 * Decrypt an on-page tuple of rel into a new plaintext tuple allocated in
 * dest (see tde_form_with_header).
 */
HeapTuple
tde_decrypt_tuple(Relation rel, HeapTuple tuple, MemoryContext dest)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			stored_natts = HeapTupleHeaderGetNatts(tuple->t_data);
	MemoryContext scratch = tde_scratch_context();
	MemoryContext old;
	Datum	   *values;
	bool	   *isnull;
	HeapTuple	result;

	/* nothing encrypted in it (all varlena values NULL): a plain copy */
	if (!holds_ciphertext(desc, tuple, stored_natts))
	{
		old = MemoryContextSwitchTo(dest);
		result = heap_copytuple(tuple);
		MemoryContextSwitchTo(old);
		result->t_tableOid = RelationGetRelid(rel);
		return result;
	}

	old = MemoryContextSwitchTo(scratch);
	values = palloc(desc->natts * sizeof(Datum));
	isnull = palloc(desc->natts * sizeof(bool));
	heap_deform_tuple(tuple, desc, values, isnull);
	tde_decrypt_datums(rel, desc, tuple, values, isnull, 0, desc->natts, scratch, false);
	tuple->t_tableOid = RelationGetRelid(rel);
	MemoryContextSwitchTo(dest);
	result = tde_form_with_header(desc, values, isnull, tuple);
	MemoryContextSwitchTo(old);
	return result;
}

/*
 * Store a decrypted tuple (palloc'd in slot->tts_mcxt, now owned by the
 * slot) into any slot.
 */
void
tde_store_plain(HeapTuple plain, TupleTableSlot *slot)
{
	ItemPointerData tid = plain->t_self;
	Oid			relid = plain->t_tableOid;

	if (slot->tts_ops == &TTSOpsEncryptedHeap)
		tde_slot_store_plain(slot, plain);
	else if (TTS_IS_HEAPTUPLE(slot))
		ExecStoreHeapTuple(plain, slot, true);
	else
		ExecForceStoreHeapTuple(plain, slot, true);
	slot->tts_tid = tid;
	slot->tts_tableOid = relid;
}

/*
 * Show slot the stored tuple heap left in bslot: by reference, decrypted
 * column by column on demand, in our own slots; decrypted at once in any
 * other kind.
 */
void
tde_store_from_bslot(Relation rel, TupleTableSlot *bslot, TupleTableSlot *slot)
{
	BufferHeapTupleTableSlot *b = (BufferHeapTupleTableSlot *) bslot;

	if (slot->tts_ops == &TTSOpsEncryptedHeap)
		tde_slot_store_stored(slot, rel, b->base.tuple, b->buffer);
	else
		tde_store_plain(tde_decrypt_tuple(rel, b->base.tuple, slot->tts_mcxt), slot);
}

static TupleTableSlot *
make_bslot(Relation rel)
{
	return MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsBufferHeapTuple);
}

/* plaintext of a stored value equal to a new value? */
static bool
same_plaintext(Relation rel, AttrNumber attnum, Datum stored, Datum newval,
			   ItemPointer tid)
{
	struct varlena *old = tde_decrypt_value(rel, attnum,
											(struct varlena *) DatumGetPointer(stored), tid);
	struct varlena *new = (struct varlena *) DatumGetPointer(newval);
	bool		same;

	if (VARATT_IS_COMPRESSED(old))
		old = detoast_attr(old);
	if (VARATT_IS_EXTERNAL(new) || VARATT_IS_COMPRESSED(new))
		new = detoast_attr(new);
	same = VARSIZE_ANY_EXHDR(old) == VARSIZE_ANY_EXHDR(new) &&
		memcmp(VARDATA_ANY(old), VARDATA_ANY(new), VARSIZE_ANY_EXHDR(old)) == 0;
	return same;
}

/*
 * Form the stored tuple for new values of rel: every non-null varlena
 * encrypted with the relation file's current key.  With old_tid, values
 * whose plaintext equals the stored one at old_tid keep their stored
 * ciphertext (or TOAST pointer).  The tuple is allocated in dest.
 */
HeapTuple
tde_encrypt_values(Relation rel, Datum *values, bool *isnull,
				   ItemPointer old_tid, MemoryContext dest)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			natts = desc->natts;
	MemoryContext old = MemoryContextSwitchTo(tde_scratch_context());
	Datum	   *newvals = palloc(natts * sizeof(Datum));
	Datum	   *oldvals = NULL;
	bool	   *oldnulls = NULL;
	int			old_natts = 0;
	HeapTuple	result;

	memcpy(newvals, values, natts * sizeof(Datum));

	if (old_tid != NULL)
	{
		HeapTupleData oldtup;
		Buffer		buf = InvalidBuffer;

		oldtup.t_self = *old_tid;
		if (heap_fetch(rel, SnapshotAny, &oldtup, &buf, true))
		{
			HeapTuple	copy = heap_copytuple(&oldtup);

			old_natts = HeapTupleHeaderGetNatts(copy->t_data);
			oldvals = palloc(natts * sizeof(Datum));
			oldnulls = palloc(natts * sizeof(bool));
			heap_deform_tuple(copy, desc, oldvals, oldnulls);
		}
		if (BufferIsValid(buf))
			ReleaseBuffer(buf);
	}

	for (int i = 0; i < natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		struct varlena *p;

		if (isnull[i] || att->attlen != -1 || att->attisdropped)
			continue;
		if (oldvals != NULL && i < old_natts && !oldnulls[i] &&
			same_plaintext(rel, i + 1, oldvals[i], values[i], old_tid))
		{
			newvals[i] = oldvals[i];
			continue;
		}

		p = (struct varlena *) DatumGetPointer(values[i]);
		if (VARATT_IS_EXTERNAL(p))
			p = detoast_external_attr(p);
		if (!VARATT_IS_COMPRESSED(p) && VARSIZE_ANY(p) >= tde_compress_min &&
			(att->attstorage == TYPSTORAGE_EXTENDED || att->attstorage == TYPSTORAGE_MAIN))
		{
			Datum		c = toast_compress_datum(PointerGetDatum(p), att->attcompression);

			if (DatumGetPointer(c) != NULL)
				p = (struct varlena *) DatumGetPointer(c);
		}
		/* looked up per value: invalidations may have flushed the cache */
		newvals[i] = PointerGetDatum(tde_encrypt_value(tde_key_for_write(rel), i + 1, p));
	}

	MemoryContextSwitchTo(dest);
	result = heap_form_tuple(desc, newvals, isnull);
	MemoryContextSwitchTo(old);
	result->t_tableOid = RelationGetRelid(rel);
	return result;
}

/* ------------------------------------------------------------------------
 * Slots and scans
 * ------------------------------------------------------------------------
 */
static const TupleTableSlotOps *
eh_slot_callbacks(Relation rel)
{
	return &TTSOpsEncryptedHeap;
}

static TableScanDesc
eh_scan_begin(Relation rel, Snapshot snapshot, int nkeys, ScanKey key,
			  ParallelTableScanDesc pscan, uint32 flags)
{
	EhScanDesc	s = palloc0(sizeof(EhScanDescData));

	tde_note_walsender_read(rel);
	/* scan keys would be tested on ciphertext: test them after decryption */
	s->inner = tde_heap_routine()->scan_begin(rel, snapshot, 0, NULL, pscan, flags);
	s->base = *s->inner;
	s->base.rs_nkeys = nkeys;
	s->base.rs_key = NULL;
	s->nkeys = nkeys;
	if (nkeys > 0)
	{
		s->keys = palloc(sizeof(ScanKeyData) * nkeys);
		memcpy(s->keys, key, sizeof(ScanKeyData) * nkeys);
		s->base.rs_key = s->keys;
	}
	s->bslot = make_bslot(rel);
	return (TableScanDesc) s;
}

static void
eh_scan_end(TableScanDesc scan)
{
	EhScanDesc	s = (EhScanDesc) scan;

	ExecDropSingleTupleTableSlot(s->bslot);
	sync_snapshot(s);
	heaprt->scan_end(s->inner);
	if (s->keys)
		pfree(s->keys);
	pfree(s);
}

static void
eh_scan_rescan(TableScanDesc scan, ScanKey key, bool set_params,
			   bool allow_strat, bool allow_sync, bool allow_pagemode)
{
	EhScanDesc	s = (EhScanDesc) scan;

	if (key != NULL && s->nkeys > 0)
		memcpy(s->keys, key, sizeof(ScanKeyData) * s->nkeys);
	ExecClearTuple(s->bslot);
	heaprt->scan_rescan(s->inner, NULL, set_params, allow_strat, allow_sync,
						allow_pagemode);
	s->base.rs_flags = s->inner->rs_flags;
}

static bool
keys_match(EhScanDesc s, HeapTuple tuple)
{
	bool		match;

	if (s->nkeys == 0)
		return true;
	HeapKeyTest(tuple, RelationGetDescr(s->base.rs_rd), s->nkeys, s->keys, match);
	return match;
}

static bool
eh_scan_getnextslot(TableScanDesc scan, ScanDirection direction,
					TupleTableSlot *slot)
{
	EhScanDesc	s = (EhScanDesc) scan;

	sync_snapshot(s);
	while (heaprt->scan_getnextslot(s->inner, direction, s->bslot))
	{
		HeapTuple	tuple;
		HeapTuple	plain;

		if (s->nkeys == 0)
		{
			tde_store_from_bslot(s->base.rs_rd, s->bslot, slot);
			return true;
		}
		tuple = ((BufferHeapTupleTableSlot *) s->bslot)->base.tuple;
		plain = tde_decrypt_tuple(s->base.rs_rd, tuple, slot->tts_mcxt);

		if (!keys_match(s, plain))
		{
			heap_freetuple(plain);
			continue;
		}
		tde_store_plain(plain, slot);
		return true;
	}
	ExecClearTuple(slot);
	return false;
}

static void
eh_scan_set_tidrange(TableScanDesc scan, ItemPointer mintid, ItemPointer maxtid)
{
	heaprt->scan_set_tidrange(((EhScanDesc) scan)->inner, mintid, maxtid);
}

static bool
eh_scan_getnextslot_tidrange(TableScanDesc scan, ScanDirection direction,
							 TupleTableSlot *slot)
{
	EhScanDesc	s = (EhScanDesc) scan;

	if (heaprt->scan_getnextslot_tidrange(s->inner, direction, s->bslot))
	{
		tde_store_from_bslot(s->base.rs_rd, s->bslot, slot);
		return true;
	}
	ExecClearTuple(slot);
	return false;
}

/* ------------------------------------------------------------------------
 * Index fetches and row versions
 * ------------------------------------------------------------------------
 */
static IndexFetchTableData *
eh_index_fetch_begin(Relation rel)
{
	EhIndexFetchData *f = palloc0(sizeof(EhIndexFetchData));

	tde_note_walsender_read(rel);
	f->inner = tde_heap_routine()->index_fetch_begin(rel);
	f->base.rel = rel;
	f->bslot = make_bslot(rel);
	return &f->base;
}

static void
eh_index_fetch_reset(IndexFetchTableData *scan)
{
	EhIndexFetchData *f = (EhIndexFetchData *) scan;

	ExecClearTuple(f->bslot);
	heaprt->index_fetch_reset(f->inner);
}

static void
eh_index_fetch_end(IndexFetchTableData *scan)
{
	EhIndexFetchData *f = (EhIndexFetchData *) scan;

	ExecDropSingleTupleTableSlot(f->bslot);
	heaprt->index_fetch_end(f->inner);
	pfree(f);
}

static bool
eh_index_fetch_tuple(IndexFetchTableData *scan, ItemPointer tid,
					 Snapshot snapshot, TupleTableSlot *slot,
					 bool *call_again, bool *all_dead)
{
	EhIndexFetchData *f = (EhIndexFetchData *) scan;

	if (!heaprt->index_fetch_tuple(f->inner, tid, snapshot, f->bslot,
								   call_again, all_dead))
		return false;
	tde_store_from_bslot(f->base.rel, f->bslot, slot);
	return true;
}

static bool
eh_tuple_fetch_row_version(Relation rel, ItemPointer tid, Snapshot snapshot,
						   TupleTableSlot *slot)
{
	TupleTableSlot *bslot = make_bslot(rel);
	bool		found;

	found = tde_heap_routine()->tuple_fetch_row_version(rel, tid, snapshot, bslot);
	if (found)
		tde_store_from_bslot(rel, bslot, slot);
	ExecDropSingleTupleTableSlot(bslot);
	return found;
}

static bool
eh_tuple_tid_valid(TableScanDesc scan, ItemPointer tid)
{
	return heaprt->tuple_tid_valid(((EhScanDesc) scan)->inner, tid);
}

static void
eh_tuple_get_latest_tid(TableScanDesc scan, ItemPointer tid)
{
	heaprt->tuple_get_latest_tid(((EhScanDesc) scan)->inner, tid);
}

/* Visibility is a property of the stored tuple, not of our copy. */
static bool
eh_tuple_satisfies_snapshot(Relation rel, TupleTableSlot *slot, Snapshot snapshot)
{
	HeapTupleData tuple;
	Buffer		buf = InvalidBuffer;
	bool		res = false;

	tuple.t_self = slot->tts_tid;
	if (heap_fetch(rel, SnapshotAny, &tuple, &buf, true))
	{
		LockBuffer(buf, BUFFER_LOCK_SHARE);
		res = HeapTupleSatisfiesVisibility(&tuple, snapshot, buf);
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
	}
	if (BufferIsValid(buf))
		ReleaseBuffer(buf);
	return res;
}

/* ------------------------------------------------------------------------
 * Writes
 * ------------------------------------------------------------------------
 */
static HeapTuple
encrypt_slot(Relation rel, TupleTableSlot *slot, ItemPointer old_tid,
			 MemoryContext dest)
{
	slot_getallattrs(slot);
	slot->tts_tableOid = RelationGetRelid(rel);
	return tde_encrypt_values(rel, slot->tts_values, slot->tts_isnull, old_tid, dest);
}

static void
eh_tuple_insert(Relation rel, TupleTableSlot *slot, CommandId cid,
				int options, BulkInsertState bistate)
{
	HeapTuple	tuple = encrypt_slot(rel, slot, NULL, CurrentMemoryContext);

	heap_insert(rel, tuple, cid, options, bistate);
	tde_slot_written(slot, tuple);
	heap_freetuple(tuple);
}

static void
eh_tuple_insert_speculative(Relation rel, TupleTableSlot *slot, CommandId cid,
							int options, BulkInsertState bistate, uint32 specToken)
{
	HeapTuple	tuple = encrypt_slot(rel, slot, NULL, CurrentMemoryContext);

	HeapTupleHeaderSetSpeculativeToken(tuple->t_data, specToken);
	heap_insert(rel, tuple, cid, options | HEAP_INSERT_SPECULATIVE, bistate);
	tde_slot_written(slot, tuple);
	heap_freetuple(tuple);
}

static void
eh_multi_insert(Relation rel, TupleTableSlot **slots, int nslots,
				CommandId cid, int options, BulkInsertState bistate)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "encrypted_heap multi insert",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	TupleTableSlot **eslots = palloc(sizeof(TupleTableSlot *) * nslots);
	int			i;

	for (i = 0; i < nslots; i++)
	{
		HeapTuple	tuple = encrypt_slot(rel, slots[i], NULL, cxt);

		eslots[i] = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
		ExecStoreHeapTuple(tuple, eslots[i], true);
	}
	heap_multi_insert(rel, eslots, nslots, cid, options, bistate);
	for (i = 0; i < nslots; i++)
	{
		/* heap set the header of our tuple, and only the slot's tid */
		HeapTuple	tuple = ExecFetchSlotHeapTuple(eslots[i], false, NULL);

		tuple->t_self = eslots[i]->tts_tid;
		tde_slot_written(slots[i], tuple);
		ExecDropSingleTupleTableSlot(eslots[i]);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

static TM_Result
eh_tuple_update(Relation rel, ItemPointer otid, TupleTableSlot *slot,
				CommandId cid, Snapshot snapshot, Snapshot crosscheck,
				bool wait, TM_FailureData *tmfd, LockTupleMode *lockmode,
				bool *update_indexes)
{
	HeapTuple	tuple = encrypt_slot(rel, slot, otid, CurrentMemoryContext);
	TM_Result	result;

	result = heap_update(rel, otid, tuple, cid, crosscheck, wait, tmfd, lockmode);
	if (result == TM_Ok)
		tde_slot_written(slot, tuple);
	else
		ItemPointerCopy(&tuple->t_self, &slot->tts_tid);
	*update_indexes = result == TM_Ok && !HeapTupleIsHeapOnly(tuple);
	heap_freetuple(tuple);
	return result;
}

static TM_Result
eh_tuple_lock(Relation rel, ItemPointer tid, Snapshot snapshot,
			  TupleTableSlot *slot, CommandId cid, LockTupleMode mode,
			  LockWaitPolicy wait_policy, uint8 flags, TM_FailureData *tmfd)
{
	TupleTableSlot *bslot = make_bslot(rel);
	TM_Result	result;

	result = tde_heap_routine()->tuple_lock(rel, tid, snapshot, bslot, cid, mode,
											wait_policy, flags, tmfd);

	/*
	 * Heap leaves the tuple in the slot for every result it does not return
	 * early, failures included: ON CONFLICT DO UPDATE reads xmin of an
	 * invisible tuple to tell "affected twice" from a bug.
	 */
	if (!TTS_EMPTY(bslot))
		tde_store_from_bslot(rel, bslot, slot);
	ExecDropSingleTupleTableSlot(bslot);
	return result;
}

/* ------------------------------------------------------------------------
 * Relation files
 * ------------------------------------------------------------------------
 */
static void
eh_relation_set_new_filenode(Relation rel, const RelFileNode *newrnode,
							 char persistence, TransactionId *freezeXid,
							 MultiXactId *minmulti)
{
	tde_heap_routine()->relation_set_new_filenode(rel, newrnode, persistence,
												  freezeXid, minmulti);

	/*
	 * pg_upgrade restores the schema, then brings the old files and the old
	 * relation_keys file (same file numbers); a key made now would be
	 * overwritten, and relation_keys may not even exist yet.
	 */
	if (IsBinaryUpgrade)
		return;
	tde_create_file_key(rel, newrnode, persistence);
	/* TRUNCATE: the old file goes at commit, and its keys with it */
	if (!RelFileNodeEquals(rel->rd_node, *newrnode) && OidIsValid(rel->rd_node.relNode))
		tde_drop_file_keys(rel->rd_node.spcNode, rel->rd_node.relNode,
						   rel->rd_rel->relpersistence);
}

static void
eh_relation_copy_data(Relation rel, const RelFileNode *newrnode)
{
	RelFileNode from = rel->rd_node;

	tde_heap_routine()->relation_copy_data(rel, newrnode);
	tde_move_file_keys(&from, newrnode, rel->rd_rel->relpersistence);
}

/* TOAST chunks already hold ciphertext: the TOAST table is a plain heap. */
static Oid
eh_relation_toast_am(Relation rel)
{
	return HEAP_TABLE_AM_OID;
}

/* ------------------------------------------------------------------------
 * ANALYZE, bitmap and sample scans
 * ------------------------------------------------------------------------
 */
static bool
eh_scan_analyze_next_block(TableScanDesc scan, BlockNumber blockno,
						   BufferAccessStrategy bstrategy)
{
	return heaprt->scan_analyze_next_block(((EhScanDesc) scan)->inner, blockno, bstrategy);
}

static bool
eh_scan_analyze_next_tuple(TableScanDesc scan, TransactionId OldestXmin,
						   double *liverows, double *deadrows,
						   TupleTableSlot *slot)
{
	EhScanDesc	s = (EhScanDesc) scan;

	if (!heaprt->scan_analyze_next_tuple(s->inner, OldestXmin, liverows,
										 deadrows, s->bslot))
		return false;
	tde_store_from_bslot(s->base.rs_rd, s->bslot, slot);
	return true;
}

static bool
eh_scan_bitmap_next_block(TableScanDesc scan, TBMIterateResult *tbmres)
{
	EhScanDesc	s = (EhScanDesc) scan;

	sync_snapshot(s);
	return heaprt->scan_bitmap_next_block(s->inner, tbmres);
}

static bool
eh_scan_bitmap_next_tuple(TableScanDesc scan, TBMIterateResult *tbmres,
						  TupleTableSlot *slot)
{
	EhScanDesc	s = (EhScanDesc) scan;

	if (!heaprt->scan_bitmap_next_tuple(s->inner, tbmres, s->bslot))
		return false;
	tde_store_from_bslot(s->base.rs_rd, s->bslot, slot);
	return true;
}

static bool
eh_scan_sample_next_block(TableScanDesc scan, SampleScanState *scanstate)
{
	return heaprt->scan_sample_next_block(((EhScanDesc) scan)->inner, scanstate);
}

static bool
eh_scan_sample_next_tuple(TableScanDesc scan, SampleScanState *scanstate,
						  TupleTableSlot *slot)
{
	EhScanDesc	s = (EhScanDesc) scan;

	if (!heaprt->scan_sample_next_tuple(s->inner, scanstate, s->bslot))
	{
		ExecClearTuple(slot);
		return false;
	}
	tde_store_from_bslot(s->base.rs_rd, s->bslot, slot);
	return true;
}

/* ------------------------------------------------------------------------
 * Dropped relations take their keys along
 * ------------------------------------------------------------------------
 */
static object_access_hook_type prev_object_access_hook = NULL;

/*
 * A relation of ours (an encrypted_heap table or an encrypted_btree index)
 * being dropped (DROP TABLE, DROP INDEX, DROP SCHEMA ... CASCADE,
 * and the transient relation that holds the old file after VACUUM FULL,
 * CLUSTER, REFRESH MATERIALIZED VIEW or a rewriting ALTER TABLE): its
 * file's keys are deleted in the dropping transaction.
 */
/* Is relam an access method whose files have relation keys? */
bool
tde_is_encrypted_am(Oid relam)
{
	return OidIsValid(relam) &&
		(relam == get_am_oid("encrypted_heap", true) ||
		 relam == get_am_oid("encrypted_btree", true));
}

static void
drop_keys_of_relation(Oid relid)
{
	HeapTuple	tuple;
	Form_pg_class form;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		return;
	form = (Form_pg_class) GETSTRUCT(tuple);
	if (tde_is_encrypted_am(form->relam) && OidIsValid(form->relfilenode))
		tde_drop_file_keys(form->reltablespace, form->relfilenode,
						   form->relpersistence);
	ReleaseSysCache(tuple);
}

static void
eh_object_access(ObjectAccessType access, Oid classId, Oid objectId,
				 int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	if (access == OAT_DROP && classId == RelationRelationId && subId == 0 &&
		!IsBinaryUpgrade)
		drop_keys_of_relation(objectId);
}

void
tde_install_hooks(void)
{
	prev_object_access_hook = object_access_hook;
	object_access_hook = eh_object_access;
}

static void
init_routine(void)
{
	const TableAmRoutine *h = tde_heap_routine();

	if (eh_routine.type == T_TableAmRoutine)
		return;
	eh_routine = *h;

	eh_routine.slot_callbacks = eh_slot_callbacks;
	eh_routine.scan_begin = eh_scan_begin;
	eh_routine.scan_end = eh_scan_end;
	eh_routine.scan_rescan = eh_scan_rescan;
	eh_routine.scan_getnextslot = eh_scan_getnextslot;
	eh_routine.scan_set_tidrange = eh_scan_set_tidrange;
	eh_routine.scan_getnextslot_tidrange = eh_scan_getnextslot_tidrange;

	eh_routine.index_fetch_begin = eh_index_fetch_begin;
	eh_routine.index_fetch_reset = eh_index_fetch_reset;
	eh_routine.index_fetch_end = eh_index_fetch_end;
	eh_routine.index_fetch_tuple = eh_index_fetch_tuple;

	eh_routine.tuple_fetch_row_version = eh_tuple_fetch_row_version;
	eh_routine.tuple_tid_valid = eh_tuple_tid_valid;
	eh_routine.tuple_get_latest_tid = eh_tuple_get_latest_tid;
	eh_routine.tuple_satisfies_snapshot = eh_tuple_satisfies_snapshot;

	eh_routine.tuple_insert = eh_tuple_insert;
	eh_routine.tuple_insert_speculative = eh_tuple_insert_speculative;
	eh_routine.multi_insert = eh_multi_insert;
	eh_routine.tuple_update = eh_tuple_update;
	eh_routine.tuple_lock = eh_tuple_lock;

	eh_routine.relation_set_new_filenode = eh_relation_set_new_filenode;
	eh_routine.relation_copy_data = eh_relation_copy_data;
	eh_routine.relation_copy_for_cluster = tde_copy_for_cluster;
	eh_routine.relation_toast_am = eh_relation_toast_am;

	eh_routine.scan_analyze_next_block = eh_scan_analyze_next_block;
	eh_routine.scan_analyze_next_tuple = eh_scan_analyze_next_tuple;
	eh_routine.index_build_range_scan = tde_index_build_range_scan;
	eh_routine.index_validate_scan = tde_index_validate_scan;

	eh_routine.scan_bitmap_next_block = eh_scan_bitmap_next_block;
	eh_routine.scan_bitmap_next_tuple = eh_scan_bitmap_next_tuple;
	eh_routine.scan_sample_next_block = eh_scan_sample_next_block;
	eh_routine.scan_sample_next_tuple = eh_scan_sample_next_tuple;
}

Datum
bsoncrypt_encrypted_heap_handler(PG_FUNCTION_ARGS)
{
	tde_check_decoding();
	init_routine();
	PG_RETURN_POINTER(&eh_routine);
}
