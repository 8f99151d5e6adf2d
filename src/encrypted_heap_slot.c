/*-------------------------------------------------------------------------
 *
 * encrypted_heap_slot.c
 *	  The tuple slot of encrypted_heap tables: it holds the stored tuple
 *	  (ciphertext, usually by reference into a pinned buffer, like heap's
 *	  buffer slot) and decrypts a column only when the executor asks for
 *	  it.  A query that reads the fixed-width columns of a row, or only some
 *	  of its varlena columns, pays for no other decryption.
 *
 *	  States:
 *	    empty
 *	    stored   tuple is the on-page tuple (or a private copy of one);
 *	             tts_values[0 .. ndecrypted) are plaintext, the rest of
 *	             what is deformed is ciphertext and never shown (tts_nvalid
 *	             never exceeds ndecrypted)
 *	    plain    tuple is a plaintext tuple owned by the slot (materialized,
 *	             copied in, or formed from virtual values)
 *	    virtual  values only (ExecStoreVirtualTuple); no tuple, and no
 *	             system columns until the values are written
 *
 *	  System columns are what heap's slots show.  A stored tuple's header
 *	  is the on-page one, and plaintext copies of it carry it along
 *	  (tde_form_with_header).  When the table AM writes the slot's contents
 *	  (insert, multi-insert, speculative insert, update), heap has just set
 *	  xmin, cmin, xmax and the flags on the encrypted tuple it was given;
 *	  tde_slot_written hands that header to the slot, as heap's own
 *	  callbacks leave it in the tuple of their slot: a plain tuple takes it
 *	  over, a virtual slot keeps a copy of it (no tuple is formed for it),
 *	  and a stored tuple, which is not the one written, is materialized
 *	  first (heap copies such a slot's tuple too).  ctid and tableoid are
 *	  tts_tid and tts_tableOid, which every store keeps.  A slot of another
 *	  kind given to a write (CREATE TABLE AS passes the query's) gets only
 *	  its tid and table: the executor reads no system column from it.
 *
 *	  Decrypted values live in a per-slot context reset whenever the slot
 *	  is cleared, so memory does not grow with the rows read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "executor/tuptable.h"
#include "storage/bufmgr.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "tde.h"

typedef struct EncryptedHeapSlot
{
	TupleTableSlot base;
	HeapTuple	tuple;			/* stored or plain tuple; NULL if virtual */
	HeapTupleData tupdata;		/* tuple header when tuple is on a page */
	Buffer		buffer;			/* pin held for an on-page tuple */
	bool		plain;			/* tuple holds plaintext */
	HeapTuple	plaincopy;		/* get_heap_tuple's plaintext copy of a
								 * stored tuple; freed on clear */
	Relation	rel;			/* owner of a stored tuple (open while pinned) */
	bool		deformed;		/* tts_values filled from tuple */
	int			ndecrypted;		/* tts_values[0 .. ndecrypted) are plaintext */
	MemoryContext valcxt;		/* decrypted values; reset on clear */
	bool		has_header;		/* virtual values written: header is valid */
	union
	{
		HeapTupleHeaderData hdr;
		char		bytes[MAXALIGN(SizeofHeapTupleHeader)];
	}			header;			/* stored header of written virtual values */
} EncryptedHeapSlot;

static void
ehs_init(TupleTableSlot *slot)
{
	EncryptedHeapSlot *s = (EncryptedHeapSlot *) slot;

	s->tuple = NULL;
	s->plaincopy = NULL;
	s->buffer = InvalidBuffer;
	s->valcxt = NULL;
	s->has_header = false;
}

static void
ehs_release(TupleTableSlot *slot)
{
	EncryptedHeapSlot *s = (EncryptedHeapSlot *) slot;

	if (s->valcxt != NULL)
		MemoryContextDelete(s->valcxt);
	s->valcxt = NULL;
}

static void
ehs_clear(TupleTableSlot *slot)
{
	EncryptedHeapSlot *s = (EncryptedHeapSlot *) slot;

	if (TTS_SHOULDFREE(slot))
	{
		heap_freetuple(s->tuple);
		slot->tts_flags &= ~TTS_FLAG_SHOULDFREE;
	}
	if (s->plaincopy != NULL)
		heap_freetuple(s->plaincopy);
	if (BufferIsValid(s->buffer))
		ReleaseBuffer(s->buffer);
	if (s->valcxt != NULL)
		MemoryContextReset(s->valcxt);
	s->plaincopy = NULL;
	s->tuple = NULL;
	s->buffer = InvalidBuffer;
	s->plain = false;
	s->rel = NULL;
	s->deformed = false;
	s->ndecrypted = 0;
	s->has_header = false;
	slot->tts_nvalid = 0;
	slot->tts_flags |= TTS_FLAG_EMPTY;
	ItemPointerSetInvalid(&slot->tts_tid);
}

/*
 * Make tts_values[0 .. natts) valid: deform the tuple once, then decrypt
 * the varlena columns not decrypted yet.  Attributes beyond those stored
 * are left to slot_getmissingattrs.
 */
static void
ehs_getsomeattrs(TupleTableSlot *slot, int natts)
{
	EncryptedHeapSlot *s = (EncryptedHeapSlot *) slot;
	int			stored_natts;

	if (s->tuple == NULL)
		elog(ERROR, "encrypted_heap slot holds no tuple to deform");
	stored_natts = HeapTupleHeaderGetNatts(s->tuple->t_data);
	natts = Min(natts, stored_natts);
	if (!s->deformed)
	{
		heap_deform_tuple(s->tuple, slot->tts_tupleDescriptor,
						  slot->tts_values, slot->tts_isnull);
		s->deformed = true;
	}
	if (!s->plain && s->ndecrypted < natts)
	{
		if (s->valcxt == NULL)
			s->valcxt = AllocSetContextCreate(slot->tts_mcxt,
											  "encrypted_heap slot values",
											  ALLOCSET_SMALL_SIZES);
		tde_decrypt_datums(s->rel, slot->tts_tupleDescriptor, s->tuple,
						   slot->tts_values, slot->tts_isnull,
						   s->ndecrypted, natts, s->valcxt, false);
	}
	s->ndecrypted = Max(s->ndecrypted, natts);
	slot->tts_nvalid = natts;
}

/*
 * The header written for the slot's virtual values, as a tuple without
 * data in *buf (enough for heap_getsysattr and tde_copy_header).
 */
static HeapTuple
written_header(EncryptedHeapSlot *s, HeapTuple buf)
{
	Assert(s->has_header);
	buf->t_data = &s->header.hdr;
	buf->t_len = SizeofHeapTupleHeader;
	buf->t_self = s->base.tts_tid;
	buf->t_tableOid = s->base.tts_tableOid;
	return buf;
}

static Datum
ehs_getsysattr(TupleTableSlot *slot, int attnum, bool *isnull)
{
	EncryptedHeapSlot *s = (EncryptedHeapSlot *) slot;
	HeapTupleData hdrbuf;

	if (s->tuple != NULL)
		return heap_getsysattr(s->tuple, attnum, slot->tts_tupleDescriptor,
							   isnull);
	if (s->has_header)
		return heap_getsysattr(written_header(s, &hdrbuf), attnum,
							   slot->tts_tupleDescriptor, isnull);
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot retrieve a system column in this context")));
	return (Datum) 0;			/* keep the compiler quiet */
}

/* A plaintext copy of what the slot holds, allocated in CurrentMemoryContext. */
static HeapTuple
plain_copy(EncryptedHeapSlot *s)
{
	TupleTableSlot *slot = &s->base;
	HeapTuple	tuple;
	HeapTupleData hdrbuf;

	if (s->tuple != NULL && s->plain)
		return heap_copytuple(s->tuple);
	slot_getallattrs(slot);
	if (s->tuple != NULL)
		return tde_form_with_header(slot->tts_tupleDescriptor, slot->tts_values,
									slot->tts_isnull, s->tuple);
	tuple = heap_form_tuple(slot->tts_tupleDescriptor, slot->tts_values,
							slot->tts_isnull);
	if (s->has_header)
		tde_copy_header(tuple, written_header(s, &hdrbuf));
	return tuple;
}

/* Own the plaintext tuple: no buffer pin, no ciphertext, no outside memory. */
static void
ehs_materialize(TupleTableSlot *slot)
{
	EncryptedHeapSlot *s = (EncryptedHeapSlot *) slot;
	MemoryContext old;
	HeapTuple	tuple;

	Assert(!TTS_EMPTY(slot));
	if (TTS_SHOULDFREE(slot) && s->plain)
		return;
	old = MemoryContextSwitchTo(slot->tts_mcxt);
	tuple = plain_copy(s);
	MemoryContextSwitchTo(old);

	if (TTS_SHOULDFREE(slot))
		heap_freetuple(s->tuple);
	if (s->plaincopy != NULL)
		heap_freetuple(s->plaincopy);
	s->plaincopy = NULL;
	if (BufferIsValid(s->buffer))
		ReleaseBuffer(s->buffer);
	s->buffer = InvalidBuffer;
	s->tuple = tuple;
	s->plain = true;
	s->rel = NULL;
	s->has_header = false;		/* the tuple carries it now */
	s->deformed = false;		/* old values may point into the page */
	s->ndecrypted = 0;
	slot->tts_nvalid = 0;
	slot->tts_flags |= TTS_FLAG_SHOULDFREE;
}

/*
 * Store a plaintext tuple palloc'd in the slot's context; the slot owns it
 * from now on.  Its header is kept (system columns).
 */
void
tde_slot_store_plain(TupleTableSlot *slot, HeapTuple tuple)
{
	EncryptedHeapSlot *s = (EncryptedHeapSlot *) slot;

	Assert(slot->tts_ops == &TTSOpsEncryptedHeap);
	ExecClearTuple(slot);
	s->tuple = tuple;
	s->plain = true;
	slot->tts_flags &= ~TTS_FLAG_EMPTY;
	slot->tts_flags |= TTS_FLAG_SHOULDFREE;
	slot->tts_tid = tuple->t_self;
	slot->tts_tableOid = tuple->t_tableOid;
}

/*
 * The table AM has written the slot's contents as the stored tuple
 * "stored", whose header heap has just set (its t_self and t_tableOid
 * name the new row): from now on the slot's system columns are that
 * header's, as in heap's slot after heap's writes.  Slots of other kinds
 * get the tid and table only (see the file header).
 */
void
tde_slot_written(TupleTableSlot *slot, HeapTuple stored)
{
	EncryptedHeapSlot *s = (EncryptedHeapSlot *) slot;

	slot->tts_tid = stored->t_self;
	slot->tts_tableOid = stored->t_tableOid;
	if (slot->tts_ops != &TTSOpsEncryptedHeap)
		return;
	if (s->tuple != NULL && !s->plain)
		ehs_materialize(slot);	/* another row's stored tuple */
	if (s->tuple != NULL)
		tde_copy_header(s->tuple, stored);
	else
	{
		memcpy(&s->header, stored->t_data, SizeofHeapTupleHeader);
		s->has_header = true;
	}
}

static void
ehs_copyslot(TupleTableSlot *dst, TupleTableSlot *src)
{
	MemoryContext old = MemoryContextSwitchTo(dst->tts_mcxt);
	HeapTuple	tuple = ExecCopySlotHeapTuple(src);

	MemoryContextSwitchTo(old);
	tde_slot_store_plain(dst, tuple);
}

/*
 * A heap tuple owned by the slot.  For a stored tuple, a plaintext copy
 * kept until the slot is cleared; the slot keeps its buffer pin and its
 * values, which callers may still hold (heap's buffer slot keeps them too).
 */
static HeapTuple
ehs_get_heap_tuple(TupleTableSlot *slot)
{
	EncryptedHeapSlot *s = (EncryptedHeapSlot *) slot;
	MemoryContext old;

	Assert(!TTS_EMPTY(slot));
	if (s->tuple == NULL)
		ehs_materialize(slot);	/* virtual: form it */
	if (s->plain)
		return s->tuple;
	if (s->plaincopy == NULL)
	{
		old = MemoryContextSwitchTo(slot->tts_mcxt);
		s->plaincopy = plain_copy(s);
		MemoryContextSwitchTo(old);
	}
	return s->plaincopy;
}

static HeapTuple
ehs_copy_heap_tuple(TupleTableSlot *slot)
{
	Assert(!TTS_EMPTY(slot));
	return plain_copy((EncryptedHeapSlot *) slot);
}

static MinimalTuple
ehs_copy_minimal_tuple(TupleTableSlot *slot)
{
	EncryptedHeapSlot *s = (EncryptedHeapSlot *) slot;

	Assert(!TTS_EMPTY(slot));
	if (s->tuple != NULL && s->plain)
		return minimal_tuple_from_heap_tuple(s->tuple);
	slot_getallattrs(slot);
	return heap_form_minimal_tuple(slot->tts_tupleDescriptor, slot->tts_values,
								   slot->tts_isnull);
}

const TupleTableSlotOps TTSOpsEncryptedHeap = {
	.base_slot_size = sizeof(EncryptedHeapSlot),
	.init = ehs_init,
	.release = ehs_release,
	.clear = ehs_clear,
	.getsomeattrs = ehs_getsomeattrs,
	.getsysattr = ehs_getsysattr,
	.materialize = ehs_materialize,
	.copyslot = ehs_copyslot,
	.get_heap_tuple = ehs_get_heap_tuple,
	.get_minimal_tuple = NULL,
	.copy_heap_tuple = ehs_copy_heap_tuple,
	.copy_minimal_tuple = ehs_copy_minimal_tuple
};

/*
 * Store a stored (encrypted) tuple of rel into an encrypted_heap slot.
 * With a valid buffer the slot references the tuple on the page and keeps
 * its own pin; otherwise it keeps a private copy.
 */
void
tde_slot_store_stored(TupleTableSlot *slot, Relation rel, HeapTuple tuple,
					  Buffer buffer)
{
	EncryptedHeapSlot *s = (EncryptedHeapSlot *) slot;

	Assert(slot->tts_ops == &TTSOpsEncryptedHeap);
	ExecClearTuple(slot);
	if (BufferIsValid(buffer))
	{
		IncrBufferRefCount(buffer);
		s->buffer = buffer;
		s->tupdata = *tuple;
		s->tuple = &s->tupdata;
	}
	else
	{
		MemoryContext old = MemoryContextSwitchTo(slot->tts_mcxt);

		s->tuple = heap_copytuple(tuple);
		MemoryContextSwitchTo(old);
		slot->tts_flags |= TTS_FLAG_SHOULDFREE;
	}
	s->tuple->t_tableOid = RelationGetRelid(rel);
	s->rel = rel;
	slot->tts_flags &= ~TTS_FLAG_EMPTY;
	slot->tts_tid = tuple->t_self;
	slot->tts_tableOid = RelationGetRelid(rel);
}
