/*-------------------------------------------------------------------------
 *
 * tde_decoding.c
 *	  Logical decoding of encrypted_heap tables.
 *
 *	  Heap's WAL records hold what heap stores, so for an encrypted_heap
 *	  table they hold ciphertext.  An output plugin that does not know this
 *	  would hand the ciphertext on as column values, or crash reading it as,
 *	  say, jsonb.  This file owns both answers:
 *
 *	  - bsoncrypt is itself an output plugin, "bsoncrypt": it loads another
 *	    plugin (setting bsoncrypt.logical_decoding_plugin, by default
 *	    pgoutput, the plugin of logical replication), and hands it every
 *	    change of an encrypted table with the values decrypted, and no
 *	    change (or TRUNCATE) of bsoncrypt.relation_keys (this server's file
 *	    keys);
 *	  - tde_check_decoding(), called by the access method's handler, which
 *	    runs when decoding opens an encrypted table, refuses any other
 *	    plugin with an error.  pgoutput only sends the tables of its
 *	    publications, so it is refused only while some publication
 *	    publishes an encrypted table.  A walsender that read an encrypted
 *	    table with SQL drops its cache entry (tde_note_walsender_read), so
 *	    that decoding cannot reuse it unchecked.
 *
 *	  Keys are read with the decoding's historic snapshot: relation_keys is
 *	  a user_catalog_table, so a key made in the decoded transaction is
 *	  visible to it, and the keys of a table dropped later stay readable
 *	  until the slot has passed the drop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xlog.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_publication.h"
#include "catalog/pg_publication_namespace.h"
#include "catalog/pg_publication_rel.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "replication/reorderbuffer.h"
#include "replication/slot.h"
#include "replication/walsender.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "tde.h"

#define TDE_PLUGIN_NAME "bsoncrypt"

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

static char *inner_plugin_name = NULL;	/* setting */
static OutputPluginCallbacks inner;		/* the wrapped plugin's callbacks */
static MemoryContext change_cxt = NULL; /* decrypted tuples of one change */

void
tde_define_decoding_settings(void)
{
	DefineCustomStringVariable("bsoncrypt.logical_decoding_plugin",
							   "Output plugin that the bsoncrypt output plugin hands decrypted changes to.",
							   "A slot made with output plugin \"bsoncrypt\" decodes like this plugin, "
							   "with the values of encrypted_heap tables decrypted.",
							   &inner_plugin_name,
							   "pgoutput",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);
}

/* ------------------------------------------------------------------------
 * Refusing other plugins
 * ------------------------------------------------------------------------
 */

/* Is relid a permanent encrypted_heap table? */
static bool
is_encrypted_table(Oid relid, Oid amoid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	bool		result = false;

	if (HeapTupleIsValid(tuple))
	{
		Form_pg_class c = (Form_pg_class) GETSTRUCT(tuple);

		result = c->relam == amoid && c->relkind == RELKIND_RELATION &&
			c->relpersistence == RELPERSISTENCE_PERMANENT;
		ReleaseSysCache(tuple);
	}
	return result;
}

/*
 * A table that a publication names (FOR TABLE), or one of its partitions,
 * if it is an encrypted_heap table: its name, else NULL.
 */
static char *
named_encrypted_table(Oid amoid)
{
	Relation	pubrel = table_open(PublicationRelRelationId, AccessShareLock);
	SysScanDesc scan = systable_beginscan(pubrel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tuple;
	char	   *found = NULL;

	while (found == NULL && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Oid			relid = ((Form_pg_publication_rel) GETSTRUCT(tuple))->prrelid;
		List	   *rels = find_all_inheritors(relid, NoLock, NULL);
		ListCell   *lc;

		foreach(lc, rels)
			if (found == NULL && is_encrypted_table(lfirst_oid(lc), amoid))
				found = get_rel_name(lfirst_oid(lc));
	}
	systable_endscan(scan);
	table_close(pubrel, AccessShareLock);
	return found;
}

/* The schemas that publications publish (FOR TABLES IN SCHEMA). */
static List *
published_schemas(void)
{
	Relation	nsprel = table_open(PublicationNamespaceRelationId, AccessShareLock);
	SysScanDesc scan = systable_beginscan(nsprel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tuple;
	List	   *schemas = NIL;

	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
		schemas = list_append_unique_oid(schemas,
										 ((Form_pg_publication_namespace) GETSTRUCT(tuple))->pnnspid);
	systable_endscan(scan);
	table_close(nsprel, AccessShareLock);
	return schemas;
}

/* Is the partition relid under a partitioned table of one of schemas? */
static bool
ancestor_in_schemas(Oid relid, List *schemas)
{
	ListCell   *lc;

	foreach(lc, get_partition_ancestors(relid))
		if (list_member_oid(schemas, get_rel_namespace(lfirst_oid(lc))))
			return true;
	return false;
}

/*
 * The name of an encrypted_heap table that a publication publishes, or
 * NULL.  Publications name few tables: pg_class is read only when a
 * publication publishes all tables or whole schemas.
 */
static char *
published_encrypted_table(void)
{
	Oid			amoid = get_am_oid("encrypted_heap", true);
	bool		all_tables;
	List	   *schemas;
	Relation	classrel;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *found;

	if (!OidIsValid(amoid))
		return NULL;
	found = named_encrypted_table(amoid);
	all_tables = GetAllTablesPublications() != NIL;
	schemas = published_schemas();
	if (found != NULL || (!all_tables && schemas == NIL))
		return found;

	classrel = table_open(RelationRelationId, AccessShareLock);
	scan = systable_beginscan(classrel, InvalidOid, false, NULL, 0, NULL);
	while (found == NULL && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_class c = (Form_pg_class) GETSTRUCT(tuple);

		if (c->relam != amoid || c->relkind != RELKIND_RELATION ||
			c->relpersistence != RELPERSISTENCE_PERMANENT)
			continue;
		if (all_tables || list_member_oid(schemas, c->relnamespace) ||
			(c->relispartition && ancestor_in_schemas(c->oid, schemas)))
			found = pstrdup(NameStr(c->relname));
	}
	systable_endscan(scan);
	table_close(classrel, AccessShareLock);
	return found;
}

/*
 * Called whenever an encrypted_heap relation's cache entry is built.  While
 * this process holds a logical slot (it decodes: the SQL decoding functions
 * rebuild the entries in use when they take the slot, decoding builds the
 * others under its historic snapshot), refuse a plugin that would receive
 * ciphertext.
 */
void
tde_check_decoding(void)
{
	const char *plugin;
	char	   *published;

	if (MyReplicationSlot == NULL || !SlotIsLogical(MyReplicationSlot))
		return;
	plugin = NameStr(MyReplicationSlot->data.plugin);
	if (strcmp(plugin, TDE_PLUGIN_NAME) == 0)
		return;
	if (strcmp(plugin, "pgoutput") == 0)
	{
		published = published_encrypted_table();
		if (published == NULL)
			return;
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("replication slot \"%s\" cannot decode encrypted_heap tables with output plugin \"pgoutput\"",
						NameStr(MyReplicationSlot->data.name)),
				 errdetail("Encrypted tables are published (e.g. \"%s\"); pgoutput would send their ciphertext.",
						   published),
				 errhint("Create the slot with output plugin \"%s\", which decrypts and hands the changes to pgoutput, "
						 "and subscribe with create_slot = false.", TDE_PLUGIN_NAME)));
	}
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("replication slot \"%s\" cannot decode encrypted_heap tables with output plugin \"%s\"",
					NameStr(MyReplicationSlot->data.name), plugin),
			 errdetail("The WAL of encrypted_heap tables holds ciphertext; the plugin would receive it as values."),
			 errhint("Create the slot with output plugin \"%s\" and set bsoncrypt.logical_decoding_plugin to \"%s\".",
					 TDE_PLUGIN_NAME, plugin)));
}

/*
 * Called when a scan of an encrypted_heap relation begins.  A walsender
 * reads tables with SQL outside decoding (the initial COPY of a
 * subscription's table synchronization) and then decodes with the same
 * relation cache: drop rel's entry when the transaction commits, so that
 * decoding builds it again and tde_check_decoding() runs.  (A walsender
 * whose SQL opened an encrypted table without a committed scan, e.g. a
 * failed statement or LIMIT 0, keeps the entry: a known gap, documented.)
 */
void
tde_note_walsender_read(Relation rel)
{
	/* no logical decoding in recovery (and no WAL for the invalidation) */
	if (am_walsender && !HistoricSnapshotActive() && !RecoveryInProgress())
		CacheInvalidateRelcache(rel);
}

/* ------------------------------------------------------------------------
 * The bsoncrypt output plugin
 * ------------------------------------------------------------------------
 */

/*
 * A decoded tuple of rel with its values decrypted, in CurrentMemoryContext.
 * A value stored out of line that the record does not carry (an UPDATE that
 * left a TOASTed value alone) stays the TOAST pointer: plugins send it as
 * "unchanged".  TOASTed values the record does carry arrive reassembled.
 */
static HeapTuple
decrypt_decoded_tuple(Relation rel, HeapTuple stored)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *values = palloc(desc->natts * sizeof(Datum));
	bool	   *isnull = palloc(desc->natts * sizeof(bool));
	HeapTuple	plain;

	heap_deform_tuple(stored, desc, values, isnull);
	tde_decrypt_datums(rel, desc, stored, values, isnull, 0, desc->natts,
					   CurrentMemoryContext, true);
	plain = heap_form_tuple(desc, values, isnull);
	plain->t_self = stored->t_self;
	plain->t_tableOid = RelationGetRelid(rel);
	return plain;
}

static ReorderBufferTupleBuf *
decrypted_tuple_buf(Relation rel, ReorderBufferTupleBuf *stored)
{
	ReorderBufferTupleBuf *buf;

	if (stored == NULL)
		return NULL;
	buf = palloc0(sizeof(ReorderBufferTupleBuf));
	buf->tuple = *decrypt_decoded_tuple(rel, &stored->tuple);
	buf->alloc_tuple_size = buf->tuple.t_len;
	return buf;
}

/*
 * A copy of change (an INSERT, UPDATE or DELETE of rel) whose tuples are
 * decrypted, in change_cxt; the decoded change itself stays as it is.
 */
static ReorderBufferChange *
decrypted_change(Relation rel, ReorderBufferChange *change)
{
	MemoryContext old = MemoryContextSwitchTo(change_cxt);
	ReorderBufferChange *copy = palloc(sizeof(ReorderBufferChange));

	*copy = *change;
	copy->data.tp.newtuple = decrypted_tuple_buf(rel, change->data.tp.newtuple);
	copy->data.tp.oldtuple = decrypted_tuple_buf(rel, change->data.tp.oldtuple);
	MemoryContextSwitchTo(old);
	return copy;
}

/*
 * bsoncrypt.relation_keys (and relation_key_uses, their use counts): its
 * rows name this server's relation files and hold their wrapped keys; no
 * other server has a use for them.
 */
static bool
is_relation_keys(Relation rel)
{
	char	   *nsp;

	if (strcmp(RelationGetRelationName(rel), "relation_keys") != 0 &&
		strcmp(RelationGetRelationName(rel), "relation_key_uses") != 0)
		return false;
	nsp = get_namespace_name(RelationGetNamespace(rel));
	return nsp != NULL && strcmp(nsp, "bsoncrypt") == 0;
}

/*
 * Hand change of rel to the wrapped plugin's callback: decrypted if rel is
 * encrypted, not at all if it is bsoncrypt.relation_keys.
 */
static void
hand_on_change(LogicalDecodeChangeCB inner_cb, LogicalDecodingContext *ctx,
			   ReorderBufferTXN *txn, Relation rel, ReorderBufferChange *change)
{
	if (is_relation_keys(rel))
		return;
	if (!tde_is_encrypted_rel(rel))
	{
		inner_cb(ctx, txn, rel, change);
		return;
	}
	MemoryContextReset(change_cxt); /* also after an error in the last one */
	inner_cb(ctx, txn, rel, decrypted_change(rel, change));
	MemoryContextReset(change_cxt);
}

static void
decrypting_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				  Relation rel, ReorderBufferChange *change)
{
	hand_on_change(inner.change_cb, ctx, txn, rel, change);
}

static void
decrypting_stream_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
						 Relation rel, ReorderBufferChange *change)
{
	hand_on_change(inner.stream_change_cb, ctx, txn, rel, change);
}

/* Hand a TRUNCATE on to the wrapped plugin's callback without relation_keys. */
static void
hand_on_truncate(LogicalDecodeTruncateCB inner_cb, LogicalDecodingContext *ctx,
				 ReorderBufferTXN *txn, int nrelations, Relation *relations,
				 ReorderBufferChange *change)
{
	Relation   *kept = palloc(nrelations * sizeof(Relation));
	int			nkept = 0;

	for (int i = 0; i < nrelations; i++)
		if (!is_relation_keys(relations[i]))
			kept[nkept++] = relations[i];
	if (nkept > 0)
		inner_cb(ctx, txn, nkept, kept, change);
	pfree(kept);
}

static void
filtering_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				   int nrelations, Relation *relations, ReorderBufferChange *change)
{
	hand_on_truncate(inner.truncate_cb, ctx, txn, nrelations, relations, change);
}

static void
filtering_stream_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
						  int nrelations, Relation *relations, ReorderBufferChange *change)
{
	hand_on_truncate(inner.stream_truncate_cb, ctx, txn, nrelations, relations, change);
}

static void
wrapping_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
				 bool is_init)
{
	if (change_cxt == NULL)
		change_cxt = AllocSetContextCreate(TopMemoryContext,
										   "bsoncrypt decoded change",
										   ALLOCSET_DEFAULT_SIZES);
	if (inner.startup_cb != NULL)
		inner.startup_cb(ctx, opt, is_init);
}

/*
 * PostgreSQL 15.19 and later (Debian's, at least) load only the output
 * plugins listed in output_plugin_libraries; hold the wrapped plugin to the
 * same list.
 */
static void
check_plugin_allowed(const char *name)
{
	const char *setting = GetConfigOption("output_plugin_libraries", true, false);
	char	   *copy;
	List	   *allowed;
	ListCell   *lc;

	if (setting == NULL)
		return;					/* a server without the list */
	copy = pstrdup(setting);
	if (SplitIdentifierString(copy, ',', &allowed))
		foreach(lc, allowed)
			if (strcmp((char *) lfirst(lc), name) == 0)
				return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("output plugin \"%s\" (bsoncrypt.logical_decoding_plugin) is not listed in output_plugin_libraries",
					name),
			 errhint("Add it to output_plugin_libraries if replication users may use it.")));
}

/*
 * Entry point of the "bsoncrypt" output plugin: the callbacks of the plugin
 * named by bsoncrypt.logical_decoding_plugin, its change callbacks wrapped.
 */
void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	LogicalOutputPluginInit inner_init;

	if (inner_plugin_name == NULL || inner_plugin_name[0] == '\0' ||
		strcmp(inner_plugin_name, TDE_PLUGIN_NAME) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("bsoncrypt.logical_decoding_plugin must name another output plugin"),
				 errhint("For logical replication use \"pgoutput\".")));
	check_plugin_allowed(inner_plugin_name);
	inner_init = (LogicalOutputPluginInit)
		load_external_function(inner_plugin_name, "_PG_output_plugin_init", false, NULL);
	if (inner_init == _PG_output_plugin_init)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("bsoncrypt.logical_decoding_plugin must name another output plugin")));
	if (inner_init == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("library \"%s\" is not a logical decoding output plugin", inner_plugin_name),
				 errhint("Set bsoncrypt.logical_decoding_plugin to an output plugin such as \"pgoutput\".")));
	memset(&inner, 0, sizeof(inner));
	inner_init(&inner);
	if (inner.change_cb == NULL)
		elog(ERROR, "output plugin \"%s\" has no change callback", inner_plugin_name);

	*cb = inner;
	cb->startup_cb = wrapping_startup;
	cb->change_cb = decrypting_change;
	if (inner.stream_change_cb != NULL)
		cb->stream_change_cb = decrypting_stream_change;
	if (inner.truncate_cb != NULL)
		cb->truncate_cb = filtering_truncate;
	if (inner.stream_truncate_cb != NULL)
		cb->stream_truncate_cb = filtering_stream_truncate;
}
