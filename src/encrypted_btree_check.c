/*-------------------------------------------------------------------------
 *
 * encrypted_btree_check.c
 *	  bsoncrypt.encrypted_index_check(index): amcheck's bt_index_check for
 *	  encrypted_btree indexes (amcheck accepts btree indexes only).  Walks
 *	  the leaf level from left to right along the sibling links and checks
 *	  that every entry's keys open (authenticated under a key of the index's
 *	  file, sealed for that entry's heap TID and column type) and that the
 *	  entries are in the index's order: by the plaintext keys with each
 *	  column's btree comparison, direction and NULLS placement, then by heap
 *	  TID, strictly increasing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/nbtree.h"
#include "access/relation.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "tde.h"
#include "tde_index.h"

PG_FUNCTION_INFO_V1(bsoncrypt_encrypted_index_check);

typedef struct CheckEntry
{
	SealedValue keys[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];
	ItemPointerData tid;
} CheckEntry;

static void
report_order(Relation index, BlockNumber blkno, OffsetNumber off, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("index \"%s\" is corrupted at block %u, item %u: %s",
					RelationGetRelationName(index), blkno, off, why),
			 errhint("REINDEX the index to rebuild it from its table.")));
}

/* Open the keys of a leaf entry into e (values in CurrentMemoryContext). */
static void
open_entry(Relation index, IndexTuple itup, CheckEntry *e, BlockNumber blkno,
		   OffsetNumber off)
{
	TupleDesc	desc = RelationGetDescr(index);
	int			nkeys = IndexRelationGetNumberOfKeyAttributes(index);

	if (BTreeTupleIsPosting(itup) || BTreeTupleIsPivot(itup))
		report_order(index, blkno, off, "a leaf entry is a posting list or a pivot");
	e->tid = itup->t_tid;
	for (int i = 0; i < nkeys; i++)
	{
		Datum		d = index_getattr(itup, i + 1, desc, &e->isnull[i]);
		TdeKey	   *key;

		if (e->isnull[i])
			continue;
		sealed_key_open(d, &e->keys[i]);
		if (!e->keys[i].stored)
			report_order(index, blkno, off, "a key is not encrypted");
		if (!ItemPointerEquals(&e->keys[i].tid, &e->tid))
			report_order(index, blkno, off, "a key was encrypted for another heap TID");
		if (e->keys[i].typid != index->rd_opcintype[i])
			report_order(index, blkno, off, "a key has the wrong type");
		key = tde_key_by_id(e->keys[i].key_id);
		if (key == NULL || !tde_key_is_of_file(key, &index->rd_node))
			report_order(index, blkno, off, "a key was encrypted under another file's key");
	}
}

/* a's order against b's in the index: <0, 0, >0 */
static int
compare_entries(Relation index, const CheckEntry *a, const CheckEntry *b)
{
	int			nkeys = IndexRelationGetNumberOfKeyAttributes(index);

	for (int i = 0; i < nkeys; i++)
	{
		int16		option = index->rd_indoption[i];
		int			c;

		if (a->isnull[i] || b->isnull[i])
		{
			if (a->isnull[i] && b->isnull[i])
				continue;
			/* NULLs sort last unless NULLS FIRST (DESC does not flip them) */
			c = a->isnull[i] ? 1 : -1;
			if (option & INDOPTION_NULLS_FIRST)
				c = -c;
			return c;
		}
		c = sealed_key_compare(&a->keys[i], &b->keys[i], index->rd_indcollation[i]);
		if (option & INDOPTION_DESC)
			INVERT_COMPARE_RESULT(c);
		if (c != 0)
			return c;
	}
	return ItemPointerCompare((ItemPointer) &a->tid, (ItemPointer) &b->tid);
}

static void
copy_entry(Relation index, const CheckEntry *from, CheckEntry *to)
{
	int			nkeys = IndexRelationGetNumberOfKeyAttributes(index);

	*to = *from;
	for (int i = 0; i < nkeys; i++)
	{
		int16		typlen;
		bool		typbyval;

		if (from->isnull[i])
			continue;
		get_typlenbyval(from->keys[i].typid, &typlen, &typbyval);
		to->keys[i].value = datumCopy(from->keys[i].value, typbyval, typlen);
	}
}

Datum
bsoncrypt_encrypted_index_check(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	index = index_open(relid, AccessShareLock);
	MemoryContext entrycxt = AllocSetContextCreate(CurrentMemoryContext,
												   "encrypted_index_check entry",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext prevcxt = AllocSetContextCreate(CurrentMemoryContext,
												  "encrypted_index_check previous",
												  ALLOCSET_DEFAULT_SIZES);
	CheckEntry	prev,
				cur;
	bool		have_prev = false;
	int64		checked = 0;
	Buffer		buf;

	if (!eb_is_encrypted_index(index))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not an encrypted_btree index", RelationGetRelationName(index))));

	buf = _bt_get_endpoint(index, 0, false, GetActiveSnapshot());
	while (BufferIsValid(buf))
	{
		Page		page = BufferGetPage(buf);
		BTPageOpaque opaque = BTPageGetOpaque(page);
		BlockNumber blkno = BufferGetBlockNumber(buf);
		BlockNumber next = opaque->btpo_next;

		CHECK_FOR_INTERRUPTS();
		if (!P_IGNORE(opaque))
		{
			for (OffsetNumber off = P_FIRSTDATAKEY(opaque);
				 off <= PageGetMaxOffsetNumber(page); off = OffsetNumberNext(off))
			{
				IndexTuple	itup = (IndexTuple) PageGetItem(page, PageGetItemId(page, off));
				MemoryContext old;

				MemoryContextReset(entrycxt);
				old = MemoryContextSwitchTo(entrycxt);
				open_entry(index, itup, &cur, blkno, off);
				if (have_prev && compare_entries(index, &prev, &cur) >= 0)
					report_order(index, blkno, off, "the entry is not after the previous one");
				MemoryContextSwitchTo(prevcxt);
				MemoryContextReset(prevcxt);
				copy_entry(index, &cur, &prev);
				MemoryContextSwitchTo(old);
				have_prev = true;
				checked++;
			}
		}
		_bt_relbuf(index, buf);
		buf = (next == P_NONE) ? InvalidBuffer : _bt_getbuf(index, next, BT_READ);
	}

	MemoryContextDelete(entrycxt);
	MemoryContextDelete(prevcxt);
	index_close(index, AccessShareLock);
	PG_RETURN_INT64(checked);
}
