/*-------------------------------------------------------------------------
 *
 * tde_keys.c
 *	  Relation keys of the encrypted_heap access method, and AES-256-GCM of
 *	  one stored value.
 *
 *	  Every relation file (tablespace, relfilenode) of an encrypted_heap
 *	  table has one or more random 256-bit keys, each a row of
 *	  bsoncrypt.relation_keys wrapped by a master key (kms_wrap_secret).
 *	  A new file (CREATE TABLE, TRUNCATE, VACUUM FULL, CLUSTER, table
 *	  rewrites) gets a new key, so rewriting a table re-keys it; the newest
 *	  key of a file encrypts new values, and every value names the key it
 *	  was encrypted with, so a file may hold values under several keys.
 *	  Rows are written in the caller's transaction: they commit or roll
 *	  back with the file they describe, and reach standbys and base backups
 *	  with the rest of the database.
 *
 *	  Temporary tables are the exception: their files live and die with one
 *	  session, so their keys do too.  A session key has a negative id, is
 *	  made from random bytes in the backend's memory and never written
 *	  anywhere (no relation_keys row, nothing to wrap, nothing to take a
 *	  sequence value for, so read-only transactions can write temporary
 *	  tables); its use is counted exactly, in memory.
 *
 *	  Unwrapped keys are cached per backend keyed once (gcm_key.c: an
 *	  AES-256 key schedule and GHASH key).  The cache is dropped
 *	  when relation_keys changes (a statement trigger sends a relcache
 *	  invalidation, as for the key vault, so a master-key rotation that
 *	  rewraps rows, or a deleted key, takes effect everywhere), and the
 *	  "newest key of a file" map also on transaction abort.  Key bytes are
 *	  zeroed after use and never appear in messages.  Rows are looked up
 *	  with the catalog snapshot (for a table that is not a catalog, a fresh
 *	  MVCC snapshot per lookup), which parallel workers may take too.
 *
 *	  Invalidations arrive whenever a relation is opened or locked, that is
 *	  in the middle of every lookup here.  So: the relids of the
 *	  extension's tables are never forgotten once resolved (an invalidation
 *	  of relation_keys is recognized also while they are being checked
 *	  again), identifiers are copied out of cache entries before anything
 *	  that may accept invalidations, and a row read from relation_keys is
 *	  cached only if no flush happened while it was read (keys_generation);
 *	  else it is read again.
 *
 *	  Use of each key is counted in tde_key_uses.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/indexing.h"
#include "catalog/pg_authid_d.h"
#include "catalog/pg_type_d.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/smgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "customer_keys.h"
#include "gcm_key.h"
#include "kms.h"
#include "key_audit.h"
#include "tde.h"
#include "trusted_sql.h"

PG_FUNCTION_INFO_V1(bsoncrypt_relation_keys_changed);

struct TdeKey
{
	int32		key_id;			/* hash key */
	uint16		key_number;		/* what stored values name it by */
	Oid			reltablespace;	/* the file it belongs to (0: database default) */
	Oid			relfilenode;
	GcmKey	   *gcm;			/* keyed once: AES-256-GCM with this key */
	int64		session_uses;	/* a session key's encryptions (exact) */
};

/* session keys (temporary tables): never flushed, swept when files go */
#define SESSION_SWEEP_MIN	32

typedef struct FileKeyEntry
{
	Oid			file[2];		/* hash key: reltablespace, relfilenode */
	int32		key_id;
} FileKeyEntry;

typedef struct NumberedKeyEntry
{
	Oid			file_number[3];	/* hash key: reltablespace, relfilenode, key number */
	int32		key_id;
} NumberedKeyEntry;

#define KEY_NUMBER(key_id)	((uint16) ((uint32) (key_id) & 0xFFFF))

static char *tde_key_provider = NULL;
int			tde_key_max_uses = 1 << 30;

static HTAB *keys_by_id = NULL;
static HTAB *current_keys = NULL;
static HTAB *numbered_keys = NULL;	/* file + key number -> key id */
static uint64 keys_generation = 0;	/* flushes of the caches above */
static uint64 keys_epoch = 0;	/* flushes of every unwrapped key */
static bool callbacks_registered = false;

/*
 * The extension's relations this file uses, resolved through
 * bsoncrypt_relation_oid().  Kept once resolved: checked again after an
 * invalidation of any of them (relids_generation moved), resolved again
 * only if one is gone (the extension was dropped and made again).
 */
static TdeRelids relids;
static uint64 relids_generation = 1;	/* invalidations of relids */
static uint64 relids_checked = 0;	/* relids_generation when last checked */

static HTAB *session_keys = NULL;	/* negative key id -> TdeKey */
static HTAB *session_current = NULL;	/* file -> newest session key id */
static int32 last_session_key_id = 0;
static long session_keys_after_sweep = 0;

/*
 * Session key moves of this transaction (SET TABLESPACE of a temporary
 * table), undone if the (sub)transaction that made them aborts: the table
 * is then back on its old file.
 */
typedef struct SessionKeyMove
{
	RelFileNode from;
	RelFileNode to;
	SubTransactionId subid;
} SessionKeyMove;

static List *session_key_moves = NIL;	/* in TopMemoryContext */

/* Table keys must be readable by every process, so never by customer keys. */
static bool
check_key_provider(char **newval, void **extra, GucSource source)
{
	if (strcmp(*newval, CUSTOMER_PROVIDER_NAME) == 0)
	{
		GUC_check_errdetail("Customer keys exist only in the session that supplies them; table files are read by every session, the checkpointer and recovery.");
		return false;
	}
	return true;
}

void
tde_define_settings(void)
{
	tde_define_decoding_settings();
	tde_key_uses_init();
	DefineCustomStringVariable("bsoncrypt.at_rest_key_provider",
							   "Master-key provider that wraps new relation keys of encrypted_heap tables.",
							   "\"local\", \"command\" or \"kmip\"; existing keys keep the provider they were wrapped with.",
							   &tde_key_provider,
							   "local",
							   PGC_SUSET,
							   0,
							   check_key_provider, NULL, NULL);
	DefineCustomIntVariable("bsoncrypt.at_rest_compress_min",
							"Values of encrypted_heap tables at least this large (bytes) are compressed before encryption.",
							"Ciphertext does not compress; heap itself compresses only values of rows above about 2 kB.",
							&tde_compress_min,
							tde_compress_min, 32, MaxAllocSize,
							PGC_USERSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("bsoncrypt.at_rest_key_max_uses",
							"Encryptions after which a relation file gets a new key.",
							"AES-GCM with random nonces allows about 2^32 encryptions per key; "
							"use is counted per key, conservatively (never below the truth, also across crashes).",
							&tde_key_max_uses,
							1 << 30, 1000, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
}

static Oid
normalize_tablespace(Oid spc)
{
	return spc == MyDatabaseTableSpace ? InvalidOid : spc;
}

static void
free_key(TdeKey *key)
{
	/* zeroes the key schedule */
	gcm_key_free(key->gcm);
	key->gcm = NULL;
}

static void
flush_current_keys(void)
{
	keys_generation++;
	if (current_keys != NULL)
	{
		hash_destroy(current_keys);
		current_keys = NULL;
	}
	if (numbered_keys != NULL)
	{
		hash_destroy(numbered_keys);
		numbered_keys = NULL;
	}
}

static void
flush_all_keys(void)
{
	HASH_SEQ_STATUS status;
	TdeKey	   *key;

	keys_epoch++;
	if (keys_by_id != NULL)
	{
		hash_seq_init(&status, keys_by_id);
		while ((key = hash_seq_search(&status)) != NULL)
			free_key(key);
		hash_destroy(keys_by_id);
		keys_by_id = NULL;
	}
	flush_current_keys();
}

static bool
is_watched_relid(Oid relid)
{
	const Oid  *oids = (const Oid *) &relids;

	for (int i = 0; i < sizeof(relids) / sizeof(Oid); i++)
		if (oids[i] == relid)
			return true;
	return false;
}

/*
 * An invalidation of relation_keys (or all relations): flush the key
 * caches.  The relids stay known, so that later invalidations are
 * recognized too; they are checked again at the next use.
 */
static void
relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == relids.relation_keys)
		flush_all_keys();
	if (relid == InvalidOid || is_watched_relid(relid))
		relids_generation++;
}

static void undo_session_key_moves(SubTransactionId subid);
static void end_session_key_moves(SubTransactionId subid, SubTransactionId parent);

static void
xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		flush_current_keys();
		undo_session_key_moves(InvalidSubTransactionId);
	}
	else if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PREPARE ||
			 event == XACT_EVENT_PARALLEL_COMMIT)
	{
		list_free_deep(session_key_moves);
		session_key_moves = NIL;
	}
}

static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		flush_current_keys();
		undo_session_key_moves(mySubid);
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
		end_session_key_moves(mySubid, parentSubid);
}

/* A per-backend hash table in TopMemoryContext, keyed by its first keysize bytes. */
static HTAB *
backend_hash(const char *name, long nelem, Size keysize, Size entrysize)
{
	HASHCTL		ctl;

	ctl.keysize = keysize;
	ctl.entrysize = entrysize;
	ctl.hcxt = TopMemoryContext;
	return hash_create(name, nelem, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static void
init_caches(void)
{
	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
		RegisterXactCallback(xact_callback, NULL);
		RegisterSubXactCallback(subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (keys_by_id == NULL)
		keys_by_id = backend_hash("bsoncrypt relation keys", 64,
								  sizeof(int32), sizeof(TdeKey));
	if (current_keys == NULL)
		current_keys = backend_hash("bsoncrypt current relation keys", 64,
									2 * sizeof(Oid), sizeof(FileKeyEntry));
	if (numbered_keys == NULL)
		numbered_keys = backend_hash("bsoncrypt relation keys by number", 64,
									 3 * sizeof(Oid), sizeof(NumberedKeyEntry));
}

/* do all relids still name relations? (catalog caches; no SQL) */
static bool
relids_exist(const TdeRelids *r)
{
	const Oid  *oids = (const Oid *) r;

	for (int i = 0; i < sizeof(*r) / sizeof(Oid); i++)
		if (!OidIsValid(oids[i]) ||
			!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(oids[i])))
			return false;
	return true;
}

/*
 * Resolve every relid by name among the extension's own relations; false
 * if one is missing and missing_ok (the extension is not installed, or is
 * being dropped: its relations go one by one).
 */
static bool
resolve_relids(TdeRelids *r, bool missing_ok)
{
	static const char *const names[] = {
		"relation_keys", "relation_keys_pkey", "relation_keys_file",
		"relation_keys_file_number", "relation_key_ids", "relation_key_uses",
		"relation_key_uses_pkey"
	};
	Oid		   *oids = (Oid *) r;

	StaticAssertStmt(lengthof(names) == sizeof(TdeRelids) / sizeof(Oid),
					 "a name for every relid");
	for (int i = 0; i < lengthof(names); i++)
	{
		oids[i] = bsoncrypt_relation_oid(names[i], missing_ok);
		if (!OidIsValid(oids[i]))
			return false;
	}
	return true;
}

/*
 * The extension's relations used by at-rest encryption; NULL if the
 * extension is not installed and missing_ok.  Callers copy the oids they
 * need before opening anything (which may move them).
 */
const TdeRelids *
tde_relids(bool missing_ok)
{
	uint64		generation = relids_generation;
	TdeRelids	resolved;

	init_caches();				/* registers the invalidation callback */
	if (relids_checked == generation)
		return &relids;
	if (!relids_exist(&relids))
	{
		if (!resolve_relids(&resolved, missing_ok))
			return NULL;
		relids = resolved;
	}
	/* valid until the next invalidation, also one that came meanwhile */
	relids_checked = generation;
	return &relids;
}

/* Key the AES-256-GCM state of a cache entry; the caller zeroes raw. */
static void
key_contexts(TdeKey *key, const uint8 *raw)
{
	key->gcm = gcm_key_new(raw);
	if (key->gcm == NULL)
	{
		free_key(key);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not set up AES-256-GCM for relation key %d", key->key_id)));
	}
}

static TdeKey *
cache_key(HTAB *cache, int32 key_id, Oid spc, Oid relnode, const uint8 *raw)
{
	TdeKey	   *key;
	bool		found;
	TdeKey		tmp;

	memset(&tmp, 0, sizeof(tmp));
	tmp.key_id = key_id;
	key_contexts(&tmp, raw);

	key = hash_search(cache, &key_id, HASH_ENTER, &found);
	if (found)
		free_key(key);
	key->key_number = KEY_NUMBER(key_id);
	key->reltablespace = spc;
	key->relfilenode = relnode;
	key->session_uses = 0;
	key->gcm = tmp.gcm;
	return key;
}

static void
set_current_key(Oid spc, Oid relnode, int32 key_id)
{
	FileKeyEntry *entry;
	Oid			file[2] = {spc, relnode};

	init_caches();
	entry = hash_search(current_keys, file, HASH_ENTER, NULL);
	entry->key_id = key_id;
}

/* ------------------------------------------------------------------------
 * Session keys: temporary tables
 * ------------------------------------------------------------------------
 */
static void
init_session_caches(void)
{
	if (session_keys != NULL)
		return;
	session_keys = backend_hash("bsoncrypt session keys", 16,
								sizeof(int32), sizeof(TdeKey));
	session_current = backend_hash("bsoncrypt current session keys", 16,
								   2 * sizeof(Oid), sizeof(FileKeyEntry));
}

/* Does this session's temporary relation file still exist? */
static bool
session_file_exists(Oid spc, Oid relnode)
{
	RelFileNode rnode;

	rnode.spcNode = OidIsValid(spc) ? spc : MyDatabaseTableSpace;
	rnode.dbNode = MyDatabaseId;
	rnode.relNode = relnode;
	return smgrexists(smgropen(rnode, MyBackendId), MAIN_FORKNUM);
}

/*
 * Forget the keys of temporary files that are gone (dropped tables, old
 * files of truncated ones), once the number of keys has doubled since
 * the last sweep: memory stays bounded by twice what is in use.
 */
static void
sweep_session_keys(void)
{
	HASH_SEQ_STATUS status;
	TdeKey	   *key;
	FileKeyEntry *entry;

	if (hash_get_num_entries(session_keys) <
		2 * Max(session_keys_after_sweep, SESSION_SWEEP_MIN))
		return;
	hash_seq_init(&status, session_keys);
	while ((key = hash_seq_search(&status)) != NULL)
	{
		if (session_file_exists(key->reltablespace, key->relfilenode))
			continue;
		free_key(key);
		hash_search(session_keys, &key->key_id, HASH_REMOVE, NULL);
	}
	hash_seq_init(&status, session_current);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (hash_search(session_keys, &entry->key_id, HASH_FIND, NULL) == NULL)
			hash_search(session_current, entry->file, HASH_REMOVE, NULL);
	}
	session_keys_after_sweep = hash_get_num_entries(session_keys);
}

static void
report_key_numbers_used(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("relation file has used all %d key numbers", TDE_KEY_NUMBERS),
			 errhint("Rewrite the table (VACUUM FULL) to give it a new file, or raise bsoncrypt.at_rest_key_max_uses.")));
}

/* The session key of a temporary file with this key number, or NULL. */
static TdeKey *
session_key_by_number(Oid spc, Oid relnode, uint16 number)
{
	HASH_SEQ_STATUS status;
	TdeKey	   *key;
	Oid			file[2] = {spc, relnode};
	FileKeyEntry *entry;

	init_session_caches();
	/* usually the newest key of the file */
	entry = hash_search(session_current, file, HASH_FIND, NULL);
	if (entry != NULL && KEY_NUMBER(entry->key_id) == number)
		return hash_search(session_keys, &entry->key_id, HASH_FIND, NULL);
	hash_seq_init(&status, session_keys);
	while ((key = hash_seq_search(&status)) != NULL)
	{
		if (key->reltablespace == spc && key->relfilenode == relnode &&
			key->key_number == number)
		{
			hash_seq_term(&status);
			return key;
		}
	}
	return NULL;
}

/* A new random key for a temporary relation file, held in memory only. */
static TdeKey *
create_session_key(const RelFileNode *rnode)
{
	int			tries;
	uint8		raw[TDE_KEY_LEN];
	Oid			file[2];
	FileKeyEntry *entry;
	TdeKey	   *key;

	init_session_caches();
	sweep_session_keys();
	if (fle_random_bytes(raw, sizeof(raw)) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random relation key")));
	file[0] = normalize_tablespace(rnode->spcNode);
	file[1] = rnode->relNode;
	/* the next id whose key number no key of this file has */
	tries = 0;
	do
	{
		if (++tries > TDE_KEY_NUMBERS)
			report_key_numbers_used();
		if (last_session_key_id == PG_INT32_MIN)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("this session made too many keys for temporary tables"),
					 errhint("Start a new session.")));
		last_session_key_id--;
	} while (session_key_by_number(file[0], file[1], KEY_NUMBER(last_session_key_id)) != NULL);
	PG_TRY();
	{
		key = cache_key(session_keys, last_session_key_id, file[0], file[1], raw);
	}
	PG_FINALLY();
	{
		explicit_bzero(raw, sizeof(raw));
	}
	PG_END_TRY();
	elog(DEBUG1, "new session key for a temporary relation file");
	entry = hash_search(session_current, file, HASH_ENTER, NULL);
	entry->key_id = key->key_id;
	return key;
}

static TdeKey *
current_session_key(Relation rel)
{
	Oid			file[2];
	FileKeyEntry *entry;

	init_session_caches();
	file[0] = normalize_tablespace(rel->rd_node.spcNode);
	file[1] = rel->rd_node.relNode;
	entry = hash_search(session_current, file, HASH_FIND, NULL);
	if (entry != NULL)
		return hash_search(session_keys, &entry->key_id, HASH_FIND, NULL);
	/* a file whose key was swept cannot exist; a new file gets one here */
	return create_session_key(&rel->rd_node);
}

static void relabel_session_keys(const RelFileNode *from, const RelFileNode *to);

static void
move_session_keys(const RelFileNode *from, const RelFileNode *to)
{
	MemoryContext old;
	SessionKeyMove *move;

	init_caches();				/* registers the (sub)transaction callbacks */
	old = MemoryContextSwitchTo(TopMemoryContext);
	move = palloc(sizeof(SessionKeyMove));

	move->from = *from;
	move->to = *to;
	move->subid = GetCurrentSubTransactionId();
	session_key_moves = lappend(session_key_moves, move);
	MemoryContextSwitchTo(old);
	relabel_session_keys(from, to);
}

/* Undo the moves of subtransaction subid (all of them when invalid), newest first. */
static void
undo_session_key_moves(SubTransactionId subid)
{
	for (int i = list_length(session_key_moves) - 1; i >= 0; i--)
	{
		SessionKeyMove *move = list_nth(session_key_moves, i);

		if (subid != InvalidSubTransactionId && move->subid != subid)
			continue;
		relabel_session_keys(&move->to, &move->from);
		session_key_moves = list_delete_nth_cell(session_key_moves, i);
		pfree(move);
	}
}

static void
end_session_key_moves(SubTransactionId subid, SubTransactionId parent)
{
	ListCell   *lc;

	foreach(lc, session_key_moves)
	{
		SessionKeyMove *move = lfirst(lc);

		if (move->subid == subid)
			move->subid = parent;
	}
}

/* The session keys of one file now belong to another. */
static void
relabel_session_keys(const RelFileNode *from, const RelFileNode *to)
{
	HASH_SEQ_STATUS status;
	TdeKey	   *key;
	Oid			file[2];
	FileKeyEntry *entry;
	int32		current = 0;

	init_session_caches();
	file[0] = normalize_tablespace(from->spcNode);
	file[1] = from->relNode;
	entry = hash_search(session_current, file, HASH_REMOVE, NULL);
	if (entry != NULL)
		current = entry->key_id;
	hash_seq_init(&status, session_keys);
	while ((key = hash_seq_search(&status)) != NULL)
	{
		if (key->reltablespace != file[0] || key->relfilenode != file[1])
			continue;
		key->reltablespace = normalize_tablespace(to->spcNode);
		key->relfilenode = to->relNode;
	}
	if (current != 0)
	{
		file[0] = normalize_tablespace(to->spcNode);
		file[1] = to->relNode;
		entry = hash_search(session_current, file, HASH_ENTER, NULL);
		entry->key_id = current;
	}
}

/* ------------------------------------------------------------------------
 * Relation keys
 * ------------------------------------------------------------------------
 */
static void
set_numbered_key(Oid spc, Oid relnode, int32 key_id)
{
	NumberedKeyEntry *entry;
	Oid			file_number[3] = {spc, relnode, KEY_NUMBER(key_id)};

	init_caches();
	entry = hash_search(numbered_keys, file_number, HASH_ENTER, NULL);
	entry->key_id = key_id;
}

/*
 * The id of a key of a relation file, or 0: the key with this key number
 * if number >= 0, else the newest key of the file.
 */
static int32
file_key_id(Oid spc, Oid relnode, int number)
{
	TdeRelids	r = *tde_relids(false);
	Relation	rel = table_open(r.relation_keys, AccessShareLock);
	Relation	idx = index_open(number >= 0 ? r.relation_keys_file_number :
								 r.relation_keys_file, AccessShareLock);
	ScanKeyData skey[3];
	SysScanDesc scan;
	HeapTuple	tuple;
	int32		key_id = 0;

	ScanKeyInit(&skey[0], Anum_relation_keys_reltablespace, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(spc));
	ScanKeyInit(&skey[1], Anum_relation_keys_relfilenode, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relnode));
	ScanKeyInit(&skey[2], Anum_relation_keys_key_number, BTEqualStrategyNumber,
				F_INT4EQ, Int32GetDatum(number));
	scan = systable_beginscan_ordered(rel, idx, NULL, number >= 0 ? 3 : 2, skey);
	/* relation_keys_file ends with key_id: the last is the newest */
	tuple = systable_getnext_ordered(scan, BackwardScanDirection);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;

		key_id = DatumGetInt32(heap_getattr(tuple, Anum_relation_keys_key_id,
											RelationGetDescr(rel), &isnull));
	}
	systable_endscan_ordered(scan);
	index_close(idx, AccessShareLock);
	table_close(rel, AccessShareLock);
	return key_id;
}

/*
 * The key a stored value of rel names by its key number, or NULL: among
 * the session keys of a temporary table, else among the relation_keys of
 * the relation's file.
 */
static TdeKey *
key_by_number(Relation rel, uint16 number)
{
	Oid			file_number[3];

	file_number[0] = normalize_tablespace(rel->rd_node.spcNode);
	file_number[1] = rel->rd_node.relNode;
	file_number[2] = number;
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		return session_key_by_number(file_number[0], file_number[1], number);

	for (;;)
	{
		uint64		generation = keys_generation;
		NumberedKeyEntry *entry;
		int32		key_id;
		TdeKey	   *key;

		init_caches();
		entry = hash_search(numbered_keys, file_number, HASH_FIND, NULL);
		key_id = entry != NULL ? entry->key_id :
			file_key_id(file_number[0], file_number[1], number);
		key = key_id != 0 ? tde_key_by_id(key_id) : NULL;
		if (generation == keys_generation)
		{
			if (entry == NULL && key != NULL)
				set_numbered_key(file_number[0], file_number[1], key_id);
			return key;
		}
		/* the caches were flushed meanwhile: look again */
	}
}

/*
 * Record a table key event in the audit trail, in the current transaction.
 * rel names the relation when known (a file is made before its pg_class
 * row); else the relation is named by its file.
 */
static void
audit_table_key(KeyAuditKind kind, Oid spc, Oid relnode, Relation rel,
				const char *provider, const char *version, int32 key_id,
				int64 count)
{
	KeyAuditEvent ev = {0};

	ev.kind = kind;
	ev.provider = provider;
	ev.master_key_version = version;
	ev.count = count;
	if (rel != NULL)
	{
		char	   *nsp = get_namespace_name(RelationGetNamespace(rel));

		ev.relation = quote_qualified_identifier(nsp ? nsp : "", RelationGetRelationName(rel));
	}
	else
		ev.relation = psprintf("file %u/%u", spc, relnode);
	if (key_id != 0)
		ev.detail = psprintf("{\"table_key\":%d,\"file\":\"%u/%u\"}", key_id, spc, relnode);
	else
		ev.detail = psprintf("{\"file\":\"%u/%u\"}", spc, relnode);
	key_audit_event(&ev);
}

/*
 * Make a new key for a (not temporary) relation file, its relation_keys
 * and relation_key_uses rows, and make it the file's current key; returns
 * its id.
 */
static int32
create_file_key(const RelFileNode *rnode, Relation owner)
{
	TdeRelids	r = *tde_relids(false);
	const KmsProvider *provider = kms_get_provider(tde_key_provider);
	uint8		raw[TDE_KEY_LEN];
	bytea	   *wrapped;
	char	   *version = NULL;
	int32		key_id;
	int			tries;
	Relation	rel;
	Datum		values[Natts_relation_keys];
	bool		nulls[Natts_relation_keys];
	HeapTuple	tuple;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Oid			spc = normalize_tablespace(rnode->spcNode);

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot create a relation key during recovery")));

	if (fle_random_bytes(raw, sizeof(raw)) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random relation key")));
	PG_TRY();
	{
		wrapped = kms_wrap_secret(provider, NULL, NULL, raw, sizeof(raw), &version, NULL);
		/* the next id whose key number no key of this file has */
		tries = 0;
		do
		{
			if (++tries > TDE_KEY_NUMBERS)
				report_key_numbers_used();
			key_id = (int32) nextval_internal(r.relation_key_ids, false);
		} while (file_key_id(spc, rnode->relNode, KEY_NUMBER(key_id)) != 0);
		init_caches();
		cache_key(keys_by_id, key_id, spc, rnode->relNode, raw);
	}
	PG_FINALLY();
	{
		explicit_bzero(raw, sizeof(raw));
	}
	PG_END_TRY();

	memset(nulls, 0, sizeof(nulls));
	values[Anum_relation_keys_key_id - 1] = Int32GetDatum(key_id);
	values[Anum_relation_keys_reltablespace - 1] = ObjectIdGetDatum(spc);
	values[Anum_relation_keys_relfilenode - 1] = ObjectIdGetDatum(rnode->relNode);
	values[Anum_relation_keys_key_material - 1] = PointerGetDatum(wrapped);
	values[Anum_relation_keys_provider - 1] = CStringGetTextDatum(provider->name);
	values[Anum_relation_keys_master_key_version - 1] = CStringGetTextDatum(version);
	values[Anum_relation_keys_creation_date - 1] = TimestampTzGetDatum(now);
	values[Anum_relation_keys_update_date - 1] = TimestampTzGetDatum(now);
	values[Anum_relation_keys_key_number - 1] = Int32GetDatum(KEY_NUMBER(key_id));

	rel = table_open(r.relation_keys, RowExclusiveLock);
	tuple = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	CatalogTupleInsert(rel, tuple);
	heap_freetuple(tuple);
	table_close(rel, RowExclusiveLock);
	tde_key_uses_insert(key_id);
	audit_table_key(KEY_AUDIT_TABLE_KEY_CREATED, spc, rnode->relNode, owner,
					provider->name, version, key_id, 1);

	/*
	 * Make the row visible to this command's own lookups at once (the caches
	 * may be flushed by other sessions' invalidations before the command
	 * ends, and lookups then read relation_keys), before queueing our own
	 * invalidation, which others and we process at the next command.
	 */
	CommandCounterIncrement();
	CacheInvalidateRelcacheByRelid(r.relation_keys);
	set_current_key(spc, rnode->relNode, key_id);
	set_numbered_key(spc, rnode->relNode, key_id);
	return key_id;
}

/*
 * Create a new key for a relation file and make it the file's current key.
 * Runs in the caller's transaction; a temporary file gets a session key.
 */
void
tde_create_file_key(Relation rel, const RelFileNode *rnode, char persistence)
{
	if (persistence == RELPERSISTENCE_TEMP)
		(void) create_session_key(rnode);
	else
		(void) create_file_key(rnode, rel);
}

/*
 * Run one statement on relation_keys through SPI, as the bootstrap
 * superuser (the table owner acting need not be able to write
 * relation_keys), with every name and operator schema-qualified and the
 * search_path pinned.  Through the executor, a concurrent update of the
 * same rows (master-key rotation rewrapping them) is waited for and the
 * statement acts on the newest row version (EvalPlanQual), where a direct
 * heap update would fail with "tuple concurrently updated".  Returns the
 * number of rows processed.
 */
static uint64
relation_keys_statement(const char *sql, int nargs, Oid *argtypes, Datum *values)
{
	Oid			save_userid;
	int			save_sec_context;
	int			rc;
	uint64		processed;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = bsoncrypt_spi_execute(sql, nargs, argtypes, values, NULL, false, 0);
	if (rc < 0)
		elog(ERROR, "SPI_execute_with_args failed on bsoncrypt.relation_keys: %s",
			 SPI_result_code_string(rc));
	processed = SPI_processed;
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return processed;
}

/* ALTER TABLE SET TABLESPACE copied a file as it is: its keys follow it. */
void
tde_move_file_keys(const RelFileNode *from, const RelFileNode *to,
				   char persistence)
{
	Oid			argtypes[4] = {OIDOID, OIDOID, OIDOID, OIDOID};
	Datum		values[4];

	if (persistence == RELPERSISTENCE_TEMP)
	{
		move_session_keys(from, to);
		return;
	}
	values[0] = ObjectIdGetDatum(normalize_tablespace(to->spcNode));
	values[1] = ObjectIdGetDatum(to->relNode);
	values[2] = ObjectIdGetDatum(normalize_tablespace(from->spcNode));
	values[3] = ObjectIdGetDatum(from->relNode);
	relation_keys_statement("UPDATE bsoncrypt.relation_keys"
							"   SET reltablespace = $1, relfilenode = $2"
							" WHERE reltablespace OPERATOR(pg_catalog.=) $3"
							"   AND relfilenode OPERATOR(pg_catalog.=) $4",
							4, argtypes, values);
	flush_current_keys();
}

/*
 * A relation file goes away at commit (DROP, TRUNCATE, the old file of a
 * rewrite): delete its keys in the same transaction, so that they go with
 * it, or stay if it rolls back (their relation_key_uses rows go with them,
 * ON DELETE CASCADE).  Nothing to do for temporary files (session keys
 * are swept) or before the extension's tables exist.  Returns how many
 * keys were deleted.
 */
uint64
tde_drop_file_keys(Oid reltablespace, Oid relfilenode, char persistence)
{
	Oid			argtypes[2] = {OIDOID, OIDOID};
	Datum		values[2];
	uint64		deleted;

	if (persistence == RELPERSISTENCE_TEMP || tde_relids(true) == NULL)
		return 0;
	values[0] = ObjectIdGetDatum(normalize_tablespace(reltablespace));
	values[1] = ObjectIdGetDatum(relfilenode);
	deleted = relation_keys_statement("DELETE FROM bsoncrypt.relation_keys"
									  " WHERE reltablespace OPERATOR(pg_catalog.=) $1"
									  "   AND relfilenode OPERATOR(pg_catalog.=) $2",
									  2, argtypes, values);
	flush_current_keys();
	if (deleted > 0)
		audit_table_key(KEY_AUDIT_TABLE_KEY_DELETED, DatumGetObjectId(values[0]), relfilenode,
						NULL, NULL, NULL, 0, (int64) deleted);
	return deleted;
}

/*
 * Unwrap a relation key, its outcome recorded in the audit trail (the
 * relation named by its file: looking its name up here could read the
 * catalog in the middle of a scan of the table).
 */
static void
unwrap_audited(int32 key_id, Oid spc, Oid relnode, const char *provider,
			   const char *version, bytea *material, uint8 *raw)
{
	KeyAuditEvent ev = {0};

	ev.provider = provider;
	ev.master_key_version = version;
	ev.relation = psprintf("file %u/%u", spc, relnode);
	ev.detail = psprintf("{\"table_key\":%d}", key_id);
	PG_TRY();
	{
		kms_unwrap_secret(kms_get_provider(provider), version, NULL,
						  (const uint8_t *) VARDATA_ANY(material),
						  VARSIZE_ANY_EXHDR(material),
						  raw, TDE_KEY_LEN, psprintf("relation key %d", key_id));
	}
	PG_CATCH();
	{
		ev.kind = KEY_AUDIT_UNWRAP_FAILED;
		key_audit_error(&ev);
		PG_RE_THROW();
	}
	PG_END_TRY();
	ev.kind = KEY_AUDIT_TABLE_KEY_UNWRAPPED;
	key_audit_count_unwrap(&ev);
}

/*
 * Read relation key key_id and unwrap it into raw (the caller zeroes it),
 * with the file it belongs to; false if relation_keys has no such row.
 * May accept invalidations.
 */
static bool
read_key(int32 key_id, uint8 *raw, Oid *spc, Oid *relnode)
{
	TdeRelids	r = *tde_relids(false);
	Relation	rel = table_open(r.relation_keys, AccessShareLock);
	ScanKeyData skey;
	SysScanDesc scan;
	HeapTuple	tuple;
	bytea	   *material = NULL;
	char	   *provider = NULL;
	char	   *version = NULL;

	ScanKeyInit(&skey, Anum_relation_keys_key_id, BTEqualStrategyNumber,
				F_INT4EQ, Int32GetDatum(key_id));
	scan = systable_beginscan(rel, r.relation_keys_pkey, true, NULL, 1, &skey);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;

		*spc = DatumGetObjectId(heap_getattr(tuple, Anum_relation_keys_reltablespace, desc, &isnull));
		*relnode = DatumGetObjectId(heap_getattr(tuple, Anum_relation_keys_relfilenode, desc, &isnull));
		material = DatumGetByteaPCopy(heap_getattr(tuple, Anum_relation_keys_key_material, desc, &isnull));
		provider = TextDatumGetCString(heap_getattr(tuple, Anum_relation_keys_provider, desc, &isnull));
		version = TextDatumGetCString(heap_getattr(tuple, Anum_relation_keys_master_key_version, desc, &isnull));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (material == NULL)
		return false;
	unwrap_audited(key_id, *spc, *relnode, provider, version, material, raw);
	return true;
}

/* A key of keys_by_id: found there, or read from relation_keys and kept there. */
static TdeKey *
look_up_key_by_id(int32 key_id)
{
	for (;;)
	{
		uint64		generation = keys_generation;
		uint8		raw[TDE_KEY_LEN];
		Oid			spc = InvalidOid;
		Oid			relnode = InvalidOid;
		bool		found;
		TdeKey	   *key;

		init_caches();
		key = hash_search(keys_by_id, &key_id, HASH_FIND, NULL);
		if (key != NULL)
			return key;
		PG_TRY();
		{
			found = read_key(key_id, raw, &spc, &relnode);
			/* cached only if no flush came in while the row was read */
			if (found && generation == keys_generation)
			{
				init_caches();
				key = cache_key(keys_by_id, key_id, spc, relnode, raw);
			}
		}
		PG_FINALLY();
		{
			explicit_bzero(raw, sizeof(raw));
		}
		PG_END_TRY();
		if (!found || key != NULL)
			return key;
	}
}

/*
 * The last two keys found by id: an encrypted_btree lookup asks for its
 * index's key some twenty times, with its table's key asked for in
 * between.  Entries of keys_by_id stay where they are until
 * flush_all_keys, which moves keys_epoch.
 */
static int32 last_id[2] = {0, 0};
static TdeKey *last_key[2] = {NULL, NULL};
static uint64 last_epoch = 0;

static pg_attribute_always_inline TdeKey *
recent_key_by_id(int32 key_id)
{
	if (likely(last_epoch == keys_epoch))
	{
		if (key_id == last_id[0] && last_key[0] != NULL)
			return last_key[0];
		if (key_id == last_id[1] && last_key[1] != NULL)
			return last_key[1];
	}
	return NULL;
}

TdeKey *
tde_key_by_id(int32 key_id)
{
	TdeKey	   *key;

	if (key_id < 0)
	{
		init_session_caches();
		return hash_search(session_keys, &key_id, HASH_FIND, NULL);
	}
	key = recent_key_by_id(key_id);
	if (key != NULL)
		return key;
	if (last_epoch != keys_epoch)
	{
		last_key[0] = last_key[1] = NULL;
		last_id[0] = last_id[1] = 0;
		last_epoch = keys_epoch;
	}
	key = look_up_key_by_id(key_id);
	if (key != NULL && last_epoch == keys_epoch)
	{
		/* the other one found becomes the older */
		last_id[1] = last_id[0];
		last_key[1] = last_key[0];
		last_id[0] = key_id;
		last_key[0] = key;
	}
	return key;
}

/* The key new values of rel are encrypted with; created if the file has none. */
TdeKey *
tde_current_key(Relation rel)
{
	Oid			file[2];

	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		return current_session_key(rel);
	file[0] = normalize_tablespace(rel->rd_node.spcNode);
	file[1] = rel->rd_node.relNode;
	for (;;)
	{
		uint64		generation = keys_generation;
		FileKeyEntry *entry;
		int32		key_id;
		TdeKey	   *key;

		init_caches();
		entry = hash_search(current_keys, file, HASH_FIND, NULL);
		key_id = entry != NULL ? entry->key_id : file_key_id(file[0], file[1], -1);
		if (key_id == 0)
		{
			/* a file without a key (should not happen): give it one now */
			key_id = create_file_key(&rel->rd_node, rel);
		}
		key = tde_key_by_id(key_id);
		if (generation != keys_generation)
			continue;			/* the caches were flushed meanwhile: look again */
		if (key == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("relation key %d of relation \"%s\" is missing",
							key_id, RelationGetRelationName(rel))));
		if (entry == NULL)
			set_current_key(file[0], file[1], key_id);
		return key;
	}
}

static void
rekey_error_context(void *arg)
{
	errcontext("making a new key for relation \"%s\"", RelationGetRelationName((Relation) arg));
}

/* A new current key for rel's file, whose key reached the use limit. */
static TdeKey *
rekey(Relation rel)
{
	ErrorContextCallback callback;
	TdeKey	   *key;

	callback.callback = rekey_error_context;
	callback.arg = rel;
	callback.previous = error_context_stack;
	error_context_stack = &callback;
	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		key = create_session_key(&rel->rd_node);
	else
	{
		if (IsInParallelMode())
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
					 errmsg("a new relation key cannot be made during a parallel operation"),
					 errdetail("The key reached bsoncrypt.at_rest_key_max_uses."),
					 errhint("Run the statement without parallel workers (SET max_parallel_workers_per_gather = 0).")));
		(void) create_file_key(&rel->rd_node, rel);
		key = tde_current_key(rel);
	}
	error_context_stack = callback.previous;
	return key;
}

/*
 * The key to encrypt one new value of rel with, counting the use
 * (tde_key_uses.c); when the current key has done
 * bsoncrypt.at_rest_key_max_uses encryptions, the file gets a new key.
 */
TdeKey *
tde_key_for_write(Relation rel)
{
	TdeKey	   *key = tde_current_key(rel);

	if (key->key_id < 0)
	{
		/* a session key: counted exactly, in memory */
		if (key->session_uses >= tde_key_max_uses)
			key = rekey(rel);
		key->session_uses++;
		return key;
	}
	for (;;)
	{
		int32		key_id = key->key_id;	/* counting may flush the caches */

		if (tde_key_use(key_id))
		{
			key = tde_key_by_id(key_id);
			if (key == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("relation key %d of relation \"%s\" is missing",
								key_id, RelationGetRelationName(rel))));
			return key;
		}
		key = rekey(rel);
	}
}

/* format byte, the key's full id, the column */
static void
build_aad(uint8 format, int32 key_id, AttrNumber attnum, uint8 aad[7])
{
	uint32		id = (uint32) key_id;

	aad[0] = format;
	aad[1] = (uint8) (id >> 24);
	aad[2] = (uint8) (id >> 16);
	aad[3] = (uint8) (id >> 8);
	aad[4] = (uint8) id;
	aad[5] = (uint8) ((uint16) attnum >> 8);
	aad[6] = (uint8) ((uint16) attnum & 0xff);
}

int32
tde_key_id(const TdeKey *key)
{
	return key->key_id;
}

/* Is key one of the keys of this relation file? */
bool
tde_key_is_of_file(const TdeKey *key, const RelFileNode *rnode)
{
	return key->relfilenode == rnode->relNode &&
		key->reltablespace == normalize_tablespace(rnode->spcNode);
}

/*
 * How many times every unwrapped key was forgotten (relation_keys changed):
 * what callers caching results of decryption compare to drop theirs.
 */
uint64
tde_keys_epoch(void)
{
	return keys_epoch;
}

/*
 * AES-256-GCM of len bytes with key under a fresh random nonce: writes the
 * nonce (TDE_NONCE_LEN), the ciphertext (len) and the tag (TDE_TAG_LEN).
 */
void
tde_seal(TdeKey *key, const uint8 *aad, int aadlen, const uint8 *plain,
		 Size len, uint8 *nonce, uint8 *ciphertext, uint8 *tag)
{
	if (fle_random_bytes(nonce, TDE_NONCE_LEN) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random nonce")));
	if (gcm_key_seal(key->gcm, nonce, aad, aadlen, plain, len, ciphertext, tag) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("AES-256-GCM encryption failed with relation key %d", key->key_id)));
}

/*
 * The inverse of tde_seal: false (out zeroed) when the ciphertext, the
 * nonce, the tag or the associated data are not what key sealed.
 */
bool
tde_open(TdeKey *key, const uint8 *aad, int aadlen, const uint8 *nonce,
		 const uint8 *ciphertext, Size len, const uint8 *tag, uint8 *out)
{
	/* zeroes out on failure */
	return gcm_key_open(key->gcm, nonce, aad, aadlen, ciphertext, len, tag, out) == 1;
}

static void
report_block_failure(const char *what, const TdeKey *key)
{
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("AES-256 %s failed with relation key %d", what, key->key_id)));
}

/*
 * AES-256 of one 16-byte block with key, forward and inverse, no mode
 * (encrypted_btree's short keys, sealed_key.c).  Callers make every block
 * they encipher unique and check the redundancy of what they decipher.
 */
void
tde_encipher_block(TdeKey *key, const uint8 *in, uint8 *out)
{
	if (gcm_key_encipher_block(key->gcm, in, out) != 1)
		report_block_failure("encryption", key);
}

/*
 * The inverse, under the key named by key_id (a stored block names its
 * key): false if there is no such key.
 */
bool
tde_decipher_block_by_id(int32 key_id, const uint8 *in, uint8 *out)
{
	TdeKey	   *key = recent_key_by_id(key_id);

	if (unlikely(key == NULL))
	{
		key = tde_key_by_id(key_id);
		if (key == NULL)
			return false;
	}
	if (gcm_key_decipher_block(key->gcm, in, out) != 1)
		report_block_failure("decryption", key);
	return true;
}

/*
 * Encrypt a plaintext varlena (inline: plain, short or compressed) for
 * column attnum.  An uncompressed value is stored without its varlena
 * header (its length is the stored length), a compressed one whole.
 * Returns a palloc'd 4-byte-header varlena in CurrentMemoryContext.
 */
struct varlena *
tde_encrypt_value(TdeKey *key, AttrNumber attnum, const struct varlena *plain)
{
	bool		whole = VARATT_IS_COMPRESSED(plain);
	uint8		format = whole ? TDE_FORMAT_DATUM : TDE_FORMAT_DATA;
	const uint8 *data = whole ? (const uint8 *) plain : (const uint8 *) VARDATA_ANY(plain);
	Size		len = whole ? VARSIZE_ANY(plain) : VARSIZE_ANY_EXHDR(plain);
	Size		total = VARHDRSZ + TDE_OVERHEAD + len;
	struct varlena *result;
	uint8	   *p;
	uint8		aad[7];

	Assert(!VARATT_IS_EXTERNAL(plain));
	if (total > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value of %zu bytes is too large to encrypt", len)));
	result = (struct varlena *) palloc(total);
	SET_VARSIZE(result, total);
	p = (uint8 *) VARDATA(result);
	p[0] = format;
	p[1] = (uint8) (key->key_number >> 8);
	p[2] = (uint8) key->key_number;
	build_aad(format, key->key_id, attnum, aad);
	tde_seal(key, aad, sizeof(aad), data, len, p + 3, p + TDE_HEADER_LEN,
			 p + TDE_HEADER_LEN + len);
	return result;
}

static void
report_corrupt(Relation rel, AttrNumber attnum, ItemPointer tid, const char *why)
{
	const char *col = (attnum > 0 && attnum <= RelationGetDescr(rel)->natts) ?
		NameStr(TupleDescAttr(RelationGetDescr(rel), attnum - 1)->attname) : "?";

	if (tid != NULL && ItemPointerIsValid(tid))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("could not decrypt column \"%s\" of relation \"%s\" at ctid (%u,%u): %s",
						col, RelationGetRelationName(rel),
						ItemPointerGetBlockNumberNoCheck(tid),
						ItemPointerGetOffsetNumberNoCheck(tid), why)));
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("could not decrypt column \"%s\" of relation \"%s\": %s",
					col, RelationGetRelationName(rel), why)));
}

/*
 * Decrypt one stored value (inline, or an on-disk TOAST pointer) of
 * column attnum of rel; returns the plaintext varlena, palloc'd in
 * CurrentMemoryContext.  Tampering, a wrong or missing key or a value of
 * another relation file or column raise XX001 naming the relation, column
 * and ctid.
 */
struct varlena *
tde_decrypt_value(Relation rel, AttrNumber attnum, struct varlena *stored,
				  ItemPointer tid)
{
	const uint8 *p;
	Size		len;
	Size		ctlen;
	uint16		number;
	TdeKey	   *key;
	uint8		aad[7];
	struct varlena *result;
	uint8	   *out;
	bool		whole;

	if (VARATT_IS_EXTERNAL(stored) || VARATT_IS_COMPRESSED(stored))
		stored = detoast_attr(stored);
	p = (const uint8 *) VARDATA_ANY(stored);
	len = VARSIZE_ANY_EXHDR(stored);
	if (len < TDE_OVERHEAD || (p[0] != TDE_FORMAT_DATA && p[0] != TDE_FORMAT_DATUM))
		report_corrupt(rel, attnum, tid, "the stored value is not an encrypted value");
	whole = p[0] == TDE_FORMAT_DATUM;
	number = (uint16) ((p[1] << 8) | p[2]);
	key = key_by_number(rel, number);
	if (key == NULL)
		report_corrupt(rel, attnum, tid,
					   psprintf("the relation file has no key number %u", number));

	ctlen = len - TDE_OVERHEAD;
	if (whole)
	{
		result = (struct varlena *) palloc(Max(ctlen, VARHDRSZ));
		out = (uint8 *) result;
	}
	else
	{
		result = (struct varlena *) palloc(VARHDRSZ + ctlen);
		SET_VARSIZE(result, VARHDRSZ + ctlen);
		out = (uint8 *) VARDATA(result);
	}
	build_aad(p[0], key->key_id, attnum, aad);
	if (!tde_open(key, aad, sizeof(aad), p + 3, p + TDE_HEADER_LEN, ctlen,
				  p + TDE_HEADER_LEN + ctlen, out))
		report_corrupt(rel, attnum, tid,
					   psprintf("authentication with relation key %d failed", key->key_id));
	if (whole && (!VARATT_IS_COMPRESSED(result) || VARSIZE_ANY(result) != ctlen))
	{
		explicit_bzero(out, ctlen);
		report_corrupt(rel, attnum, tid, "the decrypted value has an invalid length");
	}
	return result;
}

/*
 * Statement trigger on relation_keys: every backend drops its cached keys
 * at commit (rotation rewraps rows with plain UPDATEs).
 */
Datum
bsoncrypt_relation_keys_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "bsoncrypt_relation_keys_changed: not called as a trigger");
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	PG_RETURN_POINTER(NULL);
}
