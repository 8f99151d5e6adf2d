/*-------------------------------------------------------------------------
 *
 * encrypted_btree.c
 *	  The encrypted_btree index access method: PostgreSQL's btree (its
 *	  routine table, obtained from bthandler, its page format, WAL, vacuum,
 *	  page splits and deletion, unique checks) over key columns of type
 *	  bsoncrypt.sealed_key, so that index pages, their WAL records and
 *	  full-page images hold AES-256-GCM ciphertext (sealed_key.c).
 *
 *	  What is wrapped, and why:
 *	  - aminsert seals each key value (a new random nonce, the entry's heap
 *	    TID in the associated data) before btree forms the tuple.  btree's
 *	    unique-violation message describes the entry being inserted with
 *	    the output function of the opclass input type; during the insert
 *	    the index says its input type is sealed_key, whose output opens it.
 *	  - amrescan turns scan arguments into probes and wraps each scan key's
 *	    operator so that it opens both sides (btree evaluates scan keys on
 *	    stored keys, and compares scan keys with each other).  A probe of
 *	    the column's type keeps subtype "none", so _bt_first takes the
 *	    column's comparison (from the relation cache); others, and arrays,
 *	    get subtype sealed_key, so that _bt_first takes the comparison
 *	    registered for (input type, sealed_key) and array keys are sorted
 *	    with (sealed_key, sealed_key): all are the sealed comparison.
 *	  - amgettuple (and amgetbitmap, built on it) opens every key of every
 *	    entry it returns and checks that it was sealed for that entry's
 *	    heap TID under a key of this index's file: a tampered key, or a
 *	    tampered or moved TID, is an error, never another row.  Index-only
 *	    scans get the opened plaintext.
 *	  - ambuild sorts the plaintext and inserts sealed entries
 *	    (encrypted_btree_build.c); btree's own build sorts with a btree
 *	    index relation only.
 *	  Deduplication stays off (no opclass declares equal images; equal keys
 *	  are not equal bytes), INCLUDE columns are refused (they would be
 *	  stored as they are), and the scan-side state of each scan is kept in
 *	  a per-backend list (btree owns scan->opaque), its memory handed on to
 *	  the next scan when it ends.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/amapi.h"
#include "access/genam.h"
#include "access/nbtree.h"
#include "access/reloptions.h"
#include "access/relscan.h"
#include "access/xact.h"
#include "catalog/pg_amop.h"
#include "catalog/pg_amproc.h"
#include "catalog/pg_opclass.h"
#include "commands/defrem.h"
#include "nodes/tidbitmap.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/selfuncs.h"
#include "utils/syscache.h"

#include "tde.h"
#include "tde_index.h"

PG_FUNCTION_INFO_V1(bsoncrypt_encrypted_btree_handler);

static IndexAmRoutine *btree_rt = NULL;

/*
 * Per-scan state: ours, next to btree's scan->opaque.  It lives in its own
 * memory context, cxt, with keycxt and tupcxt as children and btree's
 * tuple workspace; ended scans leave the whole to the next scan
 * (idle_states): a lookup's scan then creates and deletes no memory
 * context and allocates no workspace.
 */
typedef struct EbScan
{
	IndexScanDesc scan;			/* whose state this is */
	MemoryContext cxt;			/* this state's */
	MemoryContext keycxt;		/* probes and wrapped operators, per rescan */
	MemoryContext tupcxt;		/* opened entries, per returned tuple */
	char	   *workspace;		/* btree's currTuples and markTuples */
	bool		rescanned;
	bool		want_itup;		/* the caller's (index-only scan) */
	TupleDesc	plaindesc;		/* what index-only scans get (made for them) */
	int32		own_keys[8];	/* keys already seen to be of this index's file */
	int			n_own_keys;
} EbScan;

/* states of ended scans, reset, under TopMemoryContext */
#define IDLE_STATES_MAX	4
static EbScan *idle_states[IDLE_STATES_MAX];
static int	n_idle_states = 0;

/*
 * The states of the scans open in this backend, newest last: a few at a
 * time (a query's index scans), so searched from the end.  The states live
 * in their scans' memory; scans an error left open are forgotten at
 * transaction end.  Entries are found by the scan's address, without
 * reading the state: a new scan at the address of one an error left open
 * (a subtransaction's) replaces its entry.
 */
typedef struct ScanRef
{
	IndexScanDesc scan;
	EbScan	   *st;
} ScanRef;

static ScanRef *scans = NULL;
static int	nscans = 0;
static int	maxscans = 0;
static bool scans_callback_registered = false;

static const IndexAmRoutine *
btree_routine(void)
{
	if (btree_rt == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		btree_rt = (IndexAmRoutine *) DatumGetPointer(DirectFunctionCall1(bthandler, (Datum) 0));
		MemoryContextSwitchTo(old);
	}
	return btree_rt;
}

static IndexScanDesc eb_beginscan(Relation index, int nkeys, int norderbys);

bool
eb_is_encrypted_index(Relation rel)
{
	return rel->rd_rel->relkind == RELKIND_INDEX && rel->rd_indam != NULL &&
		rel->rd_indam->ambeginscan == eb_beginscan;
}

Oid
eb_am_oid(bool missing_ok)
{
	return get_index_am_oid("encrypted_btree", missing_ok);
}

/* ------------------------------------------------------------------------
 * Inserts
 * ------------------------------------------------------------------------
 */
static bool
eb_insert(Relation index, Datum *values, bool *isnull, ItemPointer tid,
		  Relation heap, IndexUniqueCheck checkUnique, bool indexUnchanged,
		  IndexInfo *indexInfo)
{
	int			nkeys = IndexRelationGetNumberOfKeyAttributes(index);
	Oid			sealed_type = TupleDescAttr(RelationGetDescr(index), 0)->atttypid;
	Datum		sealed[INDEX_MAX_KEYS];
	Oid			input_types[INDEX_MAX_KEYS];
	bool		result;

	for (int i = 0; i < nkeys; i++)
	{
		if (isnull[i])
			sealed[i] = (Datum) 0;
		else if (checkUnique == UNIQUE_CHECK_EXISTING)
			/* a recheck only looks: nothing is stored, nothing to seal */
			sealed[i] = sealed_key_probe(index->rd_opcintype[i], values[i]);
		else
			sealed[i] = PointerGetDatum(sealed_key_seal(index, index->rd_opcintype[i],
														values[i], tid));
	}

	/*
	 * A unique violation describes the entry being inserted by the output
	 * function of rd_opcintype: make that sealed_key's (which opens it) for
	 * the duration.  Index relcache entries are never rebuilt while open, so
	 * the array stays where it is.
	 */
	memcpy(input_types, index->rd_opcintype, nkeys * sizeof(Oid));
	for (int i = 0; i < nkeys; i++)
		index->rd_opcintype[i] = sealed_type;
	PG_TRY();
	{
		result = btree_routine()->aminsert(index, sealed, isnull, tid, heap,
										   checkUnique, indexUnchanged, indexInfo);
	}
	PG_FINALLY();
	{
		memcpy(index->rd_opcintype, input_types, nkeys * sizeof(Oid));
	}
	PG_END_TRY();
	return result;
}

/* ------------------------------------------------------------------------
 * Scans
 * ------------------------------------------------------------------------
 */
static void
scans_xact_callback(XactEvent event, void *arg)
{
	/* scans not ended (errors) went with their memory */
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE)
		nscans = 0;
}

static int
scan_index(IndexScanDesc scan)
{
	for (int i = nscans - 1; i >= 0; i--)
		if (scans[i].scan == scan)
			return i;
	return -1;
}

static EbScan *
scan_state(IndexScanDesc scan)
{
	int			i = scan_index(scan);

	if (i < 0)
		elog(ERROR, "encrypted_btree scan state is missing");
	return scans[i].st;
}

/* Remember st; a state left by a scan at the same address (an error) goes. */
static void
remember_scan(EbScan *st)
{
	int			i = scan_index(st->scan);

	if (i >= 0)
	{
		scans[i].st = st;
		return;
	}
	if (!scans_callback_registered)
	{
		RegisterXactCallback(scans_xact_callback, NULL);
		scans_callback_registered = true;
	}
	if (nscans == maxscans)
	{
		int			n = Max(8, maxscans * 2);

		scans = scans == NULL ?
			MemoryContextAlloc(TopMemoryContext, n * sizeof(ScanRef)) :
			repalloc(scans, n * sizeof(ScanRef));
		maxscans = n;
	}
	scans[nscans].scan = st->scan;
	scans[nscans].st = st;
	nscans++;
}

static void
forget_scan(IndexScanDesc scan)
{
	int			i = scan_index(scan);

	if (i < 0)
		return;
	memmove(&scans[i], &scans[i + 1], (nscans - i - 1) * sizeof(ScanRef));
	nscans--;
}

/* A scan state, under the current memory context: an idle one, or new. */
static EbScan *
take_state(void)
{
	EbScan	   *st;
	MemoryContext cxt;

	if (n_idle_states > 0)
	{
		st = idle_states[--n_idle_states];
		MemoryContextSetParent(st->cxt, CurrentMemoryContext);
		return st;
	}
	cxt = AllocSetContextCreate(CurrentMemoryContext, "encrypted_btree scan",
								ALLOCSET_SMALL_SIZES);
	st = MemoryContextAlloc(cxt, sizeof(EbScan));
	st->cxt = cxt;
	st->keycxt = AllocSetContextCreate(cxt, "encrypted_btree scan keys",
									   ALLOCSET_SMALL_SIZES);
	st->tupcxt = AllocSetContextCreate(cxt, "encrypted_btree entries",
									   ALLOCSET_SMALL_SIZES);
	st->workspace = MemoryContextAlloc(cxt, BLCKSZ * 2);
	return st;
}

/* Keep an ended scan's state for the next scan, or free it. */
static void
leave_state(EbScan *st)
{
	if (st->plaindesc != NULL)
		FreeTupleDesc(st->plaindesc);
	if (n_idle_states == IDLE_STATES_MAX)
	{
		MemoryContextDelete(st->cxt);
		return;
	}
	MemoryContextReset(st->keycxt);
	MemoryContextReset(st->tupcxt);
	MemoryContextSetParent(st->cxt, TopMemoryContext);
	idle_states[n_idle_states++] = st;
}

static IndexScanDesc
eb_beginscan(Relation index, int nkeys, int norderbys)
{
	IndexScanDesc scan = btree_routine()->ambeginscan(index, nkeys, norderbys);
	BTScanOpaque so = (BTScanOpaque) scan->opaque;
	EbScan	   *st = take_state();

	st->scan = scan;
	st->rescanned = false;
	st->want_itup = false;
	st->n_own_keys = 0;
	st->plaindesc = NULL;
	/* btree allocates its workspace at the first rescan unless it has one */
	so->currTuples = st->workspace;
	so->markTuples = st->workspace + BLCKSZ;
	remember_scan(st);
	return scan;
}

/* The descriptor of the plaintext entries index-only scans get. */
static TupleDesc
plain_desc(Relation index, MemoryContext cxt)
{
	int			natts = IndexRelationGetNumberOfAttributes(index);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	TupleDesc	desc = CreateTemplateTupleDesc(natts);

	for (int i = 0; i < natts; i++)
	{
		TupleDescInitEntry(desc, i + 1, NULL, index->rd_opcintype[i], -1, 0);
		TupleDescInitEntryCollation(desc, i + 1, index->rd_indcollation[i]);
	}
	MemoryContextSwitchTo(old);
	return desc;
}

/*
 * A scan key of the executor made to work on sealed keys: its argument a
 * probe (an array of probes, or row members with probes), its operator
 * wrapped to open both sides, its subtype sealed_key.
 */
static void
seal_scan_key(ScanKey key, Relation index, Oid sealed_type, MemoryContext cxt)
{
	Oid			argtype;

	if (key->sk_flags & SK_ISNULL)
		return;					/* IS [NOT] NULL, or a null argument: no call */
	if (key->sk_flags & SK_ROW_HEADER)
	{
		ScanKey		members = (ScanKey) DatumGetPointer(key->sk_argument);
		int			n = 1;

		while (!(members[n - 1].sk_flags & SK_ROW_END))
			n++;
		members = memcpy(palloc(n * sizeof(ScanKeyData)), members, n * sizeof(ScanKeyData));
		for (int i = 0; i < n; i++)
		{
			/* members compare with support function 1: the sealed comparison */
			if (members[i].sk_flags & SK_ISNULL)
				continue;
			argtype = OidIsValid(members[i].sk_subtype) ? members[i].sk_subtype :
				index->rd_opcintype[members[i].sk_attno - 1];
			members[i].sk_argument = sealed_key_probe(argtype, members[i].sk_argument);
			members[i].sk_subtype = sealed_type;
		}
		key->sk_argument = PointerGetDatum(members);
		return;
	}
	argtype = OidIsValid(key->sk_subtype) ? key->sk_subtype :
		index->rd_opcintype[key->sk_attno - 1];
	if (key->sk_flags & SK_SEARCHARRAY)
		key->sk_argument = sealed_key_probe_array(argtype, key->sk_argument, sealed_type);
	else
		key->sk_argument = sealed_key_probe(argtype, key->sk_argument);
	sealed_key_wrap_operator(&key->sk_func, cxt);

	/*
	 * The subtype says which comparison btree takes.  A key of the column's
	 * own type says none (the column's), which btree has at hand (a lookup
	 * in the relation cache): the column's support function is the sealed
	 * comparison too.  btree compares such keys with one another with the
	 * operator of one of them, wrapped, on the opened values, which are of
	 * the types it expects.  Other keys, and arrays (btree sorts their
	 * elements and picks extremes with the family's members for the
	 * subtype), say sealed_key: the sealed comparison and operators, which
	 * open both sides whatever their types.
	 */
	if (argtype == index->rd_opcintype[key->sk_attno - 1] &&
		!(key->sk_flags & SK_SEARCHARRAY))
		key->sk_subtype = InvalidOid;
	else
		key->sk_subtype = sealed_type;
}

static void
eb_rescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys,
		  int norderbys)
{
	EbScan	   *st = scan_state(scan);
	Relation	index = scan->indexRelation;
	Oid			sealed_type = TupleDescAttr(RelationGetDescr(index), 0)->atttypid;
	ScanKey		sealed = NULL;
	MemoryContext old;

	if (!st->rescanned)
	{
		/* the executor says before the first rescan whether it wants tuples */
		st->want_itup = scan->xs_want_itup;
		st->rescanned = true;
		if (st->want_itup)
			st->plaindesc = plain_desc(index, st->cxt);
	}
	/* every entry returned is checked, which needs its stored keys */
	scan->xs_want_itup = true;

	MemoryContextReset(st->keycxt);
	old = MemoryContextSwitchTo(st->keycxt);
	if (keys != NULL && nkeys > 0)
	{
		sealed = palloc(nkeys * sizeof(ScanKeyData));
		memcpy(sealed, keys, nkeys * sizeof(ScanKeyData));
		for (int i = 0; i < nkeys; i++)
			seal_scan_key(&sealed[i], index, sealed_type, st->keycxt);
	}
	MemoryContextSwitchTo(old);

	btree_routine()->amrescan(scan, sealed, nkeys, orderbys, norderbys);
	if (st->want_itup)
		scan->xs_itupdesc = st->plaindesc;
}

static void
report_bad_entry(Relation index, IndexTuple itup, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("index \"%s\" has an invalid entry for heap TID (%u,%u): %s",
					RelationGetRelationName(index),
					ItemPointerGetBlockNumberNoCheck(&itup->t_tid),
					ItemPointerGetOffsetNumberNoCheck(&itup->t_tid), why),
			 errhint("REINDEX the index to rebuild it from its table.")));
}

/* Is key_id one of the keys of index's file? (remembered per scan) */
static bool
own_key(EbScan *st, Relation index, int32 key_id)
{
	TdeKey	   *key;

	for (int i = 0; i < st->n_own_keys; i++)
		if (st->own_keys[i] == key_id)
			return true;
	key = tde_key_by_id(key_id);
	if (key == NULL || !tde_key_is_of_file(key, &index->rd_node))
		return false;
	if (st->n_own_keys < lengthof(st->own_keys))
		st->own_keys[st->n_own_keys++] = key_id;
	return true;
}

/*
 * Open every key of the entry btree returns (scan->xs_itup), check that
 * each was sealed for this entry's heap TID, with the type of its column,
 * under a key of this index's file; give index-only scans the plaintext.
 */
static void
check_entry(EbScan *st, IndexScanDesc scan)
{
	Relation	index = scan->indexRelation;
	IndexTuple	itup = scan->xs_itup;
	TupleDesc	desc = RelationGetDescr(index);
	int			natts = IndexRelationGetNumberOfAttributes(index);
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];
	MemoryContext old;

	MemoryContextReset(st->tupcxt);
	old = MemoryContextSwitchTo(st->tupcxt);
	for (int i = 0; i < natts; i++)
	{
		SealedValue v;
		Datum		d = index_getattr(itup, i + 1, desc, &isnull[i]);

		if (isnull[i])
			continue;
		sealed_key_open(d, &v);
		if (!v.stored)
			report_bad_entry(index, itup, "a key is not encrypted");
		if (!ItemPointerEquals(&v.tid, &itup->t_tid))
			report_bad_entry(index, itup,
							 psprintf("a key was encrypted for heap TID (%u,%u)",
									  ItemPointerGetBlockNumberNoCheck(&v.tid),
									  ItemPointerGetOffsetNumberNoCheck(&v.tid)));
		if (v.typid != index->rd_opcintype[i])
			report_bad_entry(index, itup, "a key has the wrong type");
		if (!own_key(st, index, v.key_id))
			report_bad_entry(index, itup,
							 psprintf("relation key %d is not a key of this index", v.key_id));
		values[i] = v.value;
	}
	if (st->want_itup)
	{
		IndexTuple	plain = index_form_tuple(st->plaindesc, values, isnull);

		plain->t_tid = itup->t_tid;
		scan->xs_itup = plain;
	}
	MemoryContextSwitchTo(old);
}

static bool
eb_gettuple(IndexScanDesc scan, ScanDirection dir)
{
	EbScan	   *st = scan_state(scan);

	if (!btree_routine()->amgettuple(scan, dir))
		return false;
	check_entry(st, scan);
	return true;
}

static int64
eb_getbitmap(IndexScanDesc scan, TIDBitmap *tbm)
{
	EbScan	   *st = scan_state(scan);
	int64		ntids = 0;

	while (btree_routine()->amgettuple(scan, ForwardScanDirection))
	{
		check_entry(st, scan);
		tbm_add_tuples(tbm, &scan->xs_heaptid, 1, false);
		ntids++;
	}
	return ntids;
}

static void
eb_endscan(IndexScanDesc scan)
{
	EbScan	   *st = scan_state(scan);
	BTScanOpaque so = (BTScanOpaque) scan->opaque;

	/* the workspace is the state's: btree's endscan would free it */
	so->currTuples = so->markTuples = NULL;
	forget_scan(scan);
	btree_routine()->amendscan(scan);
	leave_state(st);
}

/* Key columns can be returned: the scan opens them. */
static bool
eb_canreturn(Relation index, int attno)
{
	return attno <= IndexRelationGetNumberOfKeyAttributes(index);
}

/* ------------------------------------------------------------------------
 * Operator classes
 * ------------------------------------------------------------------------
 */

/*
 * An encrypted_btree operator class stores sealed_key, and its family has
 * the sealed comparison for (input type, input type) and (input type,
 * sealed_key), and the "<" btree maps the family to for ordering.
 */
static bool
eb_validate(Oid opclassoid)
{
	HeapTuple	tup = SearchSysCache1(CLAOID, ObjectIdGetDatum(opclassoid));
	Form_pg_opclass form;
	Oid			family,
				intype,
				keytype;
	bool		ok = true;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for operator class %u", opclassoid);
	form = (Form_pg_opclass) GETSTRUCT(tup);
	family = form->opcfamily;
	intype = form->opcintype;
	keytype = form->opckeytype;
	ReleaseSysCache(tup);

	if (!OidIsValid(keytype) || strcmp(format_type_be(keytype), "bsoncrypt.sealed_key") != 0)
	{
		ereport(INFO,
				(errmsg("encrypted_btree operator class %u does not store bsoncrypt.sealed_key",
						opclassoid)));
		ok = false;
	}
	if (!OidIsValid(get_opfamily_proc(family, intype, intype, BTORDER_PROC)) ||
		!OidIsValid(get_opfamily_proc(family, intype, keytype, BTORDER_PROC)) ||
		!OidIsValid(get_opfamily_proc(family, keytype, keytype, BTORDER_PROC)))
	{
		ereport(INFO,
				(errmsg("encrypted_btree operator family %u lacks a comparison function for type %s",
						family, format_type_be(intype))));
		ok = false;
	}
	if (!OidIsValid(get_opfamily_member(family, intype, intype, BTLessStrategyNumber)))
	{
		ereport(INFO,
				(errmsg("encrypted_btree operator family %u lacks a \"<\" operator for type %s",
						family, format_type_be(intype))));
		ok = false;
	}
	return ok;
}

/* ------------------------------------------------------------------------
 * The routine table
 * ------------------------------------------------------------------------
 */
Datum
bsoncrypt_encrypted_btree_handler(PG_FUNCTION_ARGS)
{
	IndexAmRoutine *r = makeNode(IndexAmRoutine);

	*r = *btree_routine();
	r->amsupport = 1;			/* the sealed comparison */
	r->amoptsprocnum = 0;
	r->amstorage = true;		/* key columns are of type sealed_key */
	r->amcaninclude = false;	/* INCLUDE columns would be stored in clear */
	r->amkeytype = InvalidOid;

	r->ambuild = eb_build;
	r->aminsert = eb_insert;
	r->amcanreturn = eb_canreturn;
	r->amoptions = eb_options;
	r->amvalidate = eb_validate;
	r->amadjustmembers = NULL;
	r->ambeginscan = eb_beginscan;
	r->amrescan = eb_rescan;
	r->amgettuple = eb_gettuple;
	r->amgetbitmap = eb_getbitmap;
	r->amendscan = eb_endscan;
	PG_RETURN_POINTER(r);
}
