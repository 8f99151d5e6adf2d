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
 *	  - the same plugin under another plugin's name: "make install" puts a
 *	    link $libdir/bsoncrypt_decoders/pgoutput.so to bsoncrypt.so, so
 *	    that with dynamic_library_path = '$libdir/bsoncrypt_decoders:$libdir'
 *	    every slot made with "pgoutput" (those of CREATE SUBSCRIPTION, of
 *	    Citus's shard moves) loads bsoncrypt, which then wraps the real
 *	    pgoutput (loaded with that directory left out of the path);
 *	  - decrypted changes leave the server only over SSL or a Unix-domain
 *	    socket (bsoncrypt.decoding_requires_ssl);
 *	  - tde_check_decoding(), called by the access method's handler, which
 *	    runs when decoding opens an encrypted table, refuses any plugin that
 *	    is not bsoncrypt under one name or the other.  The real pgoutput only
 *	    sends the tables of its publications, so it is refused only while
 *	    some publication publishes an encrypted table.  A walsender that read
 *	    an encrypted table with SQL drops its cache entry
 *	    (tde_note_walsender_read), so that decoding cannot reuse it
 *	    unchecked.
 *
 *	  Keys are read with the decoding's historic snapshot: relation_keys is
 *	  a user_catalog_table, so a key made in the decoded transaction is
 *	  visible to it, and the keys of a table dropped later stay readable
 *	  until the slot has passed the drop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

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
#include "libpq/libpq-be.h"
#include "miscadmin.h"
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
#define TDE_DECODERS_DIR "bsoncrypt_decoders"	/* holds the link below */
#define TDE_LINKED_PLUGIN "pgoutput"	/* the link's name: bsoncrypt as pgoutput */

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

static char *inner_plugin_name = NULL;	/* setting */
static bool decoding_requires_ssl = true;	/* setting */
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
	DefineCustomBoolVariable("bsoncrypt.decoding_requires_ssl",
							 "Send decrypted changes of encrypted_heap tables only over SSL or a Unix-domain socket.",
							 "Off lets the bsoncrypt output plugin send plaintext over unencrypted TCP connections.",
							 &decoding_requires_ssl,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
}

/* ------------------------------------------------------------------------
 * Which plugin a name stands for
 * ------------------------------------------------------------------------
 */

/* Is this element of dynamic_library_path the directory of bsoncrypt's links? */
static bool
is_decoders_dir(const char *dir, size_t len)
{
	size_t		dirlen = strlen(TDE_DECODERS_DIR);

	while (len > 0 && dir[len - 1] == '/')
		len--;
	return len >= dirlen && strncmp(dir + len - dirlen, TDE_DECODERS_DIR, dirlen) == 0 &&
		(len == dirlen || dir[len - dirlen - 1] == '/');
}

/* dynamic_library_path without bsoncrypt_decoders (palloc'd) */
static char *
path_without_decoders(const char *path)
{
	StringInfoData result;
	const char *p = path;

	initStringInfo(&result);
	while (*p != '\0')
	{
		const char *end = strchr(p, ':');
		size_t		len = end ? (size_t) (end - p) : strlen(p);

		if (!is_decoders_dir(p, len))
		{
			if (result.len > 0)
				appendStringInfoChar(&result, ':');
			appendBinaryStringInfo(&result, p, len);
		}
		p += len;
		if (*p == ':')
			p++;
	}
	return result.data;
}

/*
 * The init function of the output plugin library called name, found on
 * dynamic_library_path without bsoncrypt's own links (so that "pgoutput"
 * is the real one when bsoncrypt was loaded under that name).
 */
static LogicalOutputPluginInit
load_plugin_init(const char *name)
{
	char	   *saved = Dynamic_library_path;
	LogicalOutputPluginInit init;

	Dynamic_library_path = path_without_decoders(saved);
	PG_TRY();
	{
		init = (LogicalOutputPluginInit)
			load_external_function(name, "_PG_output_plugin_init", false, NULL);
	}
	PG_FINALLY();
	{
		Dynamic_library_path = saved;
	}
	PG_END_TRY();
	return init;
}

/*
 * Does a slot of this plugin decode through bsoncrypt: the plugin
 * "bsoncrypt", or a plugin name that dynamic_library_path resolves to
 * bsoncrypt's library (a link in bsoncrypt_decoders)?  Resolved the way
 * decoding resolved it when it loaded the plugin.
 */
static bool
plugin_is_bsoncrypt(const char *plugin)
{
	if (strcmp(plugin, TDE_PLUGIN_NAME) == 0)
		return true;
	return load_external_function(plugin, "_PG_output_plugin_init", false, NULL) ==
		(void *) _PG_output_plugin_init;
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
	if (plugin_is_bsoncrypt(plugin))
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
						 "and subscribe with create_slot = false; or put $libdir/%s first in dynamic_library_path, "
						 "so that \"pgoutput\" slots decrypt too.", TDE_PLUGIN_NAME, TDE_DECODERS_DIR)));
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

/*
 * Decrypted changes go to the client of this process (a walsender's
 * subscriber, or the session calling the SQL decoding functions): refuse a
 * TCP client without SSL, unless bsoncrypt.decoding_requires_ssl is off.
 * Unix-domain sockets stay on the machine; background workers have no
 * client.
 */
static void
check_client_protected(void)
{
	if (!decoding_requires_ssl || MyProcPort == NULL ||
		MyProcPort->raddr.addr.ss_family == AF_UNIX || MyProcPort->ssl_in_use)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("replication slot \"%s\" would send decrypted changes over a connection without SSL",
					MyReplicationSlot ? NameStr(MyReplicationSlot->data.name) : "?"),
			 errdetail("Output plugin \"%s\" decrypts encrypted_heap tables; their values would cross the network in plaintext.",
					   TDE_PLUGIN_NAME),
			 errhint("Connect with sslmode=require (hostssl in pg_hba.conf), or set bsoncrypt.decoding_requires_ssl = off.")));
}

static void
wrapping_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
				 bool is_init)
{
	check_client_protected();
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
 * The plugin that bsoncrypt hands its changes to: for a slot of plugin
 * "bsoncrypt", bsoncrypt.logical_decoding_plugin; else bsoncrypt was loaded
 * as "pgoutput" (the link in bsoncrypt_decoders), by the slot's plugin
 * itself or by another plugin that wraps pgoutput (Citus's shard split
 * decoder), and wraps the real pgoutput.
 */
static const char *
wrapped_plugin_name(void)
{
	if (MyReplicationSlot != NULL &&
		strcmp(NameStr(MyReplicationSlot->data.plugin), TDE_PLUGIN_NAME) != 0)
		return TDE_LINKED_PLUGIN;
	if (inner_plugin_name == NULL || inner_plugin_name[0] == '\0' ||
		strcmp(inner_plugin_name, TDE_PLUGIN_NAME) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("bsoncrypt.logical_decoding_plugin must name another output plugin"),
				 errhint("For logical replication use \"pgoutput\".")));
	return inner_plugin_name;
}

/*
 * Entry point of the "bsoncrypt" output plugin (under its own name or
 * another's): the callbacks of the wrapped plugin, its change callbacks
 * wrapped.
 */
void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	static bool initializing = false;
	const char *name = wrapped_plugin_name();
	LogicalOutputPluginInit inner_init;

	check_plugin_allowed(name);
	inner_init = load_plugin_init(name);
	if (inner_init == _PG_output_plugin_init || initializing)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("output plugin \"%s\" leads back to bsoncrypt", name),
				 errhint("bsoncrypt.logical_decoding_plugin must name another output plugin, and dynamic_library_path "
						 "must list the real library of \"%s\" after $libdir/%s.", name, TDE_DECODERS_DIR)));
	if (inner_init == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("library \"%s\" is not a logical decoding output plugin", name),
				 errhint("Set bsoncrypt.logical_decoding_plugin to an output plugin such as \"pgoutput\".")));
	memset(&inner, 0, sizeof(inner));
	initializing = true;		/* a plugin whose init leads back here */
	PG_TRY();
	{
		inner_init(&inner);
	}
	PG_FINALLY();
	{
		initializing = false;
	}
	PG_END_TRY();
	if (inner.change_cb == NULL)
		elog(ERROR, "output plugin \"%s\" has no change callback", name);

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
