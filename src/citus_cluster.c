/*-------------------------------------------------------------------------
 *
 * citus_cluster.c
 *	  bsoncrypt on a Citus cluster: one key vault for every node.
 *
 *	  Every node keeps its own bsoncrypt.key_vault, an ordinary member of
 *	  the extension that key_cache.c reads through its indexes, so that
 *	  encryption and decryption pushed down to a worker find their keys
 *	  there.  The coordinator's vault is the one that changes; its copies
 *	  on the workers change only with it:
 *
 *	  - Statement triggers on key_vault (with transition tables) send every
 *	    INSERT, UPDATE, DELETE and TRUNCATE of the coordinator's vault to
 *	    every active primary worker, as one call of
 *	    bsoncrypt._cluster_apply_key_vault() per statement, through Citus's
 *	    connections in Citus's coordinated transaction: the statement
 *	    commits on every node or on none (two-phase commit, with Citus's
 *	    recovery of prepared transactions).  A worker that cannot be
 *	    reached makes the change fail.  Whatever makes the change (the key
 *	    functions, a key administrator's own DML, rewrap_many_data_key, the
 *	    rotation worker) is covered, and the command runs as the same role
 *	    on the worker, with its privileges there.
 *	  - A worker applies such a call only after checking that it can unwrap
 *	    the keys it receives with its own master keys (one key per master
 *	    key version): a node missing a master key version fails the change
 *	    everywhere instead of holding keys it cannot use.
 *	  - On a worker, any other change of the vault is refused (set
 *	    bsoncrypt.cluster_local_key_vault_changes to repair one by hand).
 *	  - A node that Citus activates (citus_add_node, citus_activate_node)
 *	    gets the whole vault, and the privileges on the extension's objects,
 *	    in the transaction that activates it, before that transaction
 *	    commits: it serves no query without them.  A node holding keys the
 *	    coordinator does not have is refused rather than stripped of them.
 *	  - GRANT and REVOKE on the coordinator are followed by the privileges
 *	    of the extension's objects on every worker (an event trigger).
 *
 *	  Citus is reached through a few of its C functions, looked up in the
 *	  already loaded citus library (never loaded from here): the module
 *	  refuses Citus versions other than 13.0, whose functions these are.
 *	  bsoncrypt must be loaded after citus (shared_preload_libraries =
 *	  'citus,bsoncrypt'): its pre-commit callback must run before Citus
 *	  prepares the remote transactions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <dlfcn.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "parser/parse_relation.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "bsoncrypt.h"
#include "cluster.h"
#include "key_cache.h"
#include "kms.h"
#include "trusted_sql.h"

PG_FUNCTION_INFO_V1(bsoncrypt_key_vault_propagate);
PG_FUNCTION_INFO_V1(bsoncrypt_cluster_apply_key_vault);
PG_FUNCTION_INFO_V1(bsoncrypt_cluster_run_on_workers);
PG_FUNCTION_INFO_V1(bsoncrypt_cluster_sync_key_vault);
PG_FUNCTION_INFO_V1(bsoncrypt_cluster_role);
PG_FUNCTION_INFO_V1(bsoncrypt_cluster_acls_changed);

#define CITUS_SUPPORTED_VERSION "13.0-"

/* Citus's functions (worker_transaction.h, worker_manager.h of Citus 13.0) */
typedef void (*SendToWorkersFn) (const char *command);
typedef void *(*FindWorkerNodeFn) (const char *nodeName, int32 nodePort);
typedef void (*SendListToNodesFn) (List *workerNodeList, const char *nodeUser,
								   List *commandList);
typedef void (*Use2PCFn) (void);

typedef struct CitusApi
{
	bool		bound;			/* looked up (whether found or not) */
	bool		loaded;			/* the citus library is loaded */
	bool		after_citus;	/* our transaction callback runs before Citus's */
	SendToWorkersFn send_to_workers;
	FindWorkerNodeFn find_worker_node;
	SendListToNodesFn send_list_to_nodes;
	Use2PCFn use_2pc;
	bool	   *node_metadata_modified; /* TransactionModifiedNodeMetadata */
} CitusApi;

static CitusApi citus;

/* > 0 while _cluster_apply_key_vault changes this node's vault */
static int	applying_depth = 0;

static bool local_key_vault_changes = false;	/* setting */
static bool cluster_requires_ssl = true;	/* setting */

static void cluster_xact_callback(XactEvent event, void *arg);

/* ------------------------------------------------------------------------
 * Citus: is it there, which node is this
 * ------------------------------------------------------------------------
 */

/*
 * Find Citus's functions in the citus library if it is loaded (dlopen with
 * RTLD_NOLOAD never loads it: Citus may only be preloaded).
 */
static void
bind_citus(void)
{
	char		path[MAXPGPATH];
	void	   *handle;

	if (citus.bound)
		return;
	citus.bound = true;
	snprintf(path, sizeof(path), "%s/citus%s", pkglib_path, DLSUFFIX);
	handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	if (handle == NULL)
		return;
	citus.loaded = true;
	citus.send_to_workers = (SendToWorkersFn) dlsym(handle, "SendCommandToWorkersWithMetadata");
	citus.find_worker_node = (FindWorkerNodeFn) dlsym(handle, "FindWorkerNode");
	citus.send_list_to_nodes = (SendListToNodesFn)
		dlsym(handle, "SendMetadataCommandListToWorkerListInCoordinatedTransaction");
	citus.use_2pc = (Use2PCFn) dlsym(handle, "Use2PCForCoordinatedTransaction");
	citus.node_metadata_modified = (bool *) dlsym(handle, "TransactionModifiedNodeMetadata");
}

void
cluster_init(void)
{
	DefineCustomBoolVariable("bsoncrypt.cluster_local_key_vault_changes",
							 "Allow changes of a Citus worker's own key vault (repairs).",
							 "Off: a worker's key vault changes only with the coordinator's.",
							 &local_key_vault_changes,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("bsoncrypt.cluster_requires_ssl",
							 "Send to other Citus nodes only when Citus's connections require SSL.",
							 "On: key vault changes, node activations and rotation requests are refused "
							 "unless citus.node_conninfo sets sslmode to require, verify-ca or verify-full.",
							 &cluster_requires_ssl,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	/*
	 * Transaction callbacks run newest first: registered now, after citus
	 * registered its own, ours runs before Citus prepares its remote
	 * transactions.
	 */
	bind_citus();
	if (citus.loaded)
	{
		RegisterXactCallback(cluster_xact_callback, NULL);
		citus.after_citus = true;
	}
}

/* pg_extension.extversion of an extension */
static char *
extension_version(Oid extoid)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *version = NULL;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/* A table of Citus's metadata in pg_catalog, checked to be Citus's own. */
static Oid
citus_table(Oid citus_oid, const char *name)
{
	Oid			relid = get_relname_relid(name, PG_CATALOG_NAMESPACE);

	if (!OidIsValid(relid) ||
		getExtensionOfObject(RelationRelationId, relid) != citus_oid)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("Citus's table pg_catalog.%s is missing", name)));
	return relid;
}

/* pg_dist_local_group.groupid: 0 on the coordinator */
static int32
local_group_id(Oid citus_oid)
{
	Relation	rel = table_open(citus_table(citus_oid, "pg_dist_local_group"), AccessShareLock);
	AttrNumber	attnum = attnameAttNum(rel, "groupid", false);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tuple = systable_getnext(scan);
	int32		groupid = 0;

	if (HeapTupleIsValid(tuple) && attnum > 0)
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, attnum, RelationGetDescr(rel), &isnull);

		if (!isnull)
			groupid = DatumGetInt32(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return groupid;
}

/*
 * Which node of a Citus cluster this is, for this database: CLUSTER_NONE
 * without the citus extension.  ERROR for a Citus that bsoncrypt cannot
 * work with (another version, not loaded, loaded after bsoncrypt): better
 * no key management than key vaults that drift apart.
 */
ClusterRole
cluster_role(void)
{
	Oid			citus_oid = get_extension_oid("citus", true);
	char	   *version;

	if (!OidIsValid(citus_oid))
		return CLUSTER_NONE;
	version = extension_version(citus_oid);
	if (version == NULL || strncmp(version, CITUS_SUPPORTED_VERSION,
								   strlen(CITUS_SUPPORTED_VERSION)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("bsoncrypt works with Citus 13.0, not with Citus %s",
						version ? version : "?"),
				 errhint("Install Citus 13.0, or keep bsoncrypt out of databases with Citus.")));
	bind_citus();
	if (!citus.loaded || !citus.after_citus || citus.send_to_workers == NULL ||
		citus.find_worker_node == NULL || citus.send_list_to_nodes == NULL ||
		citus.use_2pc == NULL || citus.node_metadata_modified == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bsoncrypt cannot reach Citus in this server"),
				 errhint("Load citus first: shared_preload_libraries = 'citus,bsoncrypt'.")));
	return local_group_id(citus_oid) == 0 ? CLUSTER_COORDINATOR : CLUSTER_WORKER;
}

static const char *
cluster_role_name(ClusterRole role)
{
	switch (role)
	{
		case CLUSTER_COORDINATOR:
			return "coordinator";
		case CLUSTER_WORKER:
			return "worker";
		default:
			return "none";
	}
}

/* cluster_role() -> text: 'none', 'coordinator' or 'worker' */
Datum
bsoncrypt_cluster_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(cluster_role_name(cluster_role())));
}

/* ------------------------------------------------------------------------
 * pg_dist_node
 * ------------------------------------------------------------------------
 */

/* A node of pg_dist_node written by this transaction */
typedef struct ActivatedNode
{
	char	   *name;
	int32		port;
} ActivatedNode;

static Datum
node_attr(HeapTuple tuple, Relation rel, const char *name, bool *isnull)
{
	AttrNumber	attnum = attnameAttNum(rel, name, false);

	return heap_getattr(tuple, attnum, RelationGetDescr(rel), isnull);
}

static bool
node_flag(HeapTuple tuple, Relation rel, const char *name)
{
	bool		isnull;
	Datum		d = node_attr(tuple, rel, name, &isnull);

	return !isnull && DatumGetBool(d);
}

/* Is the node's role (an enum, citus.noderole) 'primary'? */
static bool
node_is_primary(HeapTuple tuple, Relation rel)
{
	bool		isnull;
	Datum		d = node_attr(tuple, rel, "noderole", &isnull);
	HeapTuple	label;
	bool		primary = false;

	if (isnull)
		return false;
	label = SearchSysCache1(ENUMOID, d);
	if (HeapTupleIsValid(label))
	{
		primary = strcmp(NameStr(((Form_pg_enum) GETSTRUCT(label))->enumlabel), "primary") == 0;
		ReleaseSysCache(label);
	}
	return primary;
}

/*
 * Refuse to send when an active primary worker lacks Citus's metadata:
 * Citus sends to nodes with metadata only, and such a node would silently
 * keep an old key vault.
 */
static void
check_workers_have_metadata(void)
{
	Relation	rel = table_open(citus_table(get_extension_oid("citus", false), "pg_dist_node"),
								 AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tuple;

	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		bool		isnull;

		if (node_flag(tuple, rel, "isactive") && node_is_primary(tuple, rel) &&
			DatumGetInt32(node_attr(tuple, rel, "groupid", &isnull)) != 0 &&
			!node_flag(tuple, rel, "hasmetadata"))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("Citus worker %s:%d has no metadata: it would not get key vault changes",
							TextDatumGetCString(node_attr(tuple, rel, "nodename", &isnull)),
							DatumGetInt32(node_attr(tuple, rel, "nodeport", &isnull))),
					 errhint("Sync metadata to it (start_metadata_sync_to_node) or disable it (citus_disable_node).")));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/* ------------------------------------------------------------------------
 * Sending to the workers
 * ------------------------------------------------------------------------
 */

/*
 * The value of keyword in a libpq connection string ("key = value ...",
 * values optionally single-quoted, backslash escapes), the last one
 * given, or NULL.
 */
static char *
conninfo_value(const char *conninfo, const char *keyword)
{
	const char *p = conninfo;
	char	   *found = NULL;

	while (*p != '\0')
	{
		StringInfoData key;
		StringInfoData value;

		while (isspace((unsigned char) *p))
			p++;
		if (*p == '\0')
			break;
		initStringInfo(&key);
		while (*p != '\0' && *p != '=' && !isspace((unsigned char) *p))
			appendStringInfoChar(&key, *p++);
		while (isspace((unsigned char) *p))
			p++;
		if (*p != '=')
			return NULL;		/* malformed: Citus would refuse it too */
		p++;
		while (isspace((unsigned char) *p))
			p++;
		initStringInfo(&value);
		if (*p == '\'')
		{
			for (p++; *p != '\0' && *p != '\''; p++)
			{
				if (*p == '\\' && p[1] != '\0')
					p++;
				appendStringInfoChar(&value, *p);
			}
			if (*p == '\'')
				p++;
		}
		else
		{
			for (; *p != '\0' && !isspace((unsigned char) *p); p++)
			{
				if (*p == '\\' && p[1] != '\0')
					p++;
				appendStringInfoChar(&value, *p);
			}
		}
		if (strcmp(key.data, keyword) == 0)
			found = value.data;
		else
			pfree(value.data);
		pfree(key.data);
	}
	return found;
}

/*
 * Refuse to send anything to other nodes over connections that do not
 * require SSL (bsoncrypt.cluster_requires_ssl): decrypted values travel on
 * Citus's connections (decryption pushed down, rows of moved shards), so a
 * cluster whose connections may fall back to plaintext is not run.
 */
static void
check_connections_require_ssl(void)
{
	const char *conninfo;
	char	   *mode;

	if (!cluster_requires_ssl)
		return;
	conninfo = GetConfigOption("citus.node_conninfo", true, false);
	mode = conninfo_value(conninfo ? conninfo : "", "sslmode");
	if (mode != NULL && (strcmp(mode, "require") == 0 || strcmp(mode, "verify-ca") == 0 ||
						 strcmp(mode, "verify-full") == 0))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("Citus's connections between nodes do not require SSL"),
			 errdetail("citus.node_conninfo sets sslmode to \"%s\"; decrypted values and keys cross those connections.",
					   mode ? mode : "prefer"),
			 errhint("Set sslmode=verify-full (or require) in citus.node_conninfo on every node, "
					 "or turn bsoncrypt.cluster_requires_ssl off.")));
}

/*
 * Run command on every active primary worker (all have metadata), as the
 * current role, in
 * Citus's coordinated transaction (committed with ours, by two-phase
 * commit).  The caller checked that this is the coordinator.
 */
static void
send_to_workers(const char *command)
{
	check_connections_require_ssl();
	check_workers_have_metadata();
	citus.send_to_workers(command);
}

/* The same, on one node (that Citus is activating) */
static void
send_to_node(const char *name, int32 port, const char *command)
{
	void	   *node = citus.find_worker_node(name, port);

	check_connections_require_ssl();
	if (node == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("Citus does not know node %s:%d", name, port)));
	citus.use_2pc();
	citus.send_list_to_nodes(list_make1(node), GetUserNameFromId(GetUserId(), false),
							 list_make1(pstrdup(command)));
}

/*
 * Run a query returning one text value (SPI connected), not read-only (a
 * new snapshot, which sees what this transaction did so far): the value,
 * copied to CurTransactionContext, or NULL.
 */
static char *
query_text(const char *sql, const char *what)
{
	int			rc = bsoncrypt_spi_execute(sql, 0, NULL, NULL, NULL, false, 0);
	char	   *value;
	MemoryContext old;

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "reading %s failed: %s", what, SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return NULL;
	value = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (value == NULL)
		return NULL;
	old = MemoryContextSwitchTo(CurTransactionContext);
	value = pstrdup(value);
	MemoryContextSwitchTo(old);
	return value;
}

/*
 * _cluster_run_on_workers(command text): run a command on every worker in
 * this transaction (superusers; a no-op but on a Citus coordinator).  For
 * bsoncrypt's own SQL: rotation requests.
 */
Datum
bsoncrypt_cluster_run_on_workers(PG_FUNCTION_ARGS)
{
	char	   *command = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only superusers may run commands on the workers")));
	if (cluster_role() == CLUSTER_COORDINATOR)
		send_to_workers(command);
	PG_RETURN_VOID();
}

/* ------------------------------------------------------------------------
 * Key vault changes on the coordinator
 * ------------------------------------------------------------------------
 */

/*
 * The columns of _cluster_apply_key_vault's row arrays, aggregated from
 * the relation alias n in scan order (so that the arrays line up):
 * _id, key_alt_names as text, key_material, master_key as bytea,
 * master_key_version, the dates as microseconds since 1970, status.
 */
#define KEY_ROW_ARRAYS(n) \
	"pg_catalog.array_agg(" n "._id), " \
	"pg_catalog.array_agg(" n ".key_alt_names::pg_catalog.text), " \
	"pg_catalog.array_agg(" n ".key_material), " \
	"pg_catalog.array_agg(" n ".master_key::pg_catalog.bytea), " \
	"pg_catalog.array_agg(" n ".master_key_version), " \
	"pg_catalog.array_agg((EXTRACT(epoch FROM " n ".creation_date) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8), " \
	"pg_catalog.array_agg((EXTRACT(epoch FROM " n ".update_date) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8), " \
	"pg_catalog.array_agg(" n ".status)"

/* The call of _cluster_apply_key_vault that format() fills in */
#define APPLY_CALL_FORMAT \
	"'SELECT bsoncrypt._cluster_apply_key_vault(%L, %L::pg_catalog.uuid[], %L::pg_catalog.uuid[], " \
	"%L::pg_catalog.text[], %L::pg_catalog.bytea[], %L::pg_catalog.bytea[], %L::pg_catalog.text[], " \
	"%L::pg_catalog.int8[], %L::pg_catalog.int8[], %L::pg_catalog.int4[])'"

/*
 * The command that applies a statement's change on a worker, built by SQL
 * over the statement's transition tables (SPI connected, trigger data
 * registered); NULL when the statement changed no row.
 */
static char *
change_command(TriggerEvent event)
{
	const char *sql;

	if (TRIGGER_FIRED_BY_INSERT(event))
		sql = "SELECT pg_catalog.format(" APPLY_CALL_FORMAT ", 'insert', NULL, "
			KEY_ROW_ARRAYS("n") ") FROM new_rows n HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0";
	else if (TRIGGER_FIRED_BY_UPDATE(event))
		sql = "SELECT pg_catalog.format(" APPLY_CALL_FORMAT ", 'update', "
			"(SELECT pg_catalog.array_agg(o._id) FROM old_rows o), "
			KEY_ROW_ARRAYS("n") ") FROM new_rows n HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0";
	else if (TRIGGER_FIRED_BY_DELETE(event))
		sql = "SELECT pg_catalog.format(" APPLY_CALL_FORMAT ", 'delete', pg_catalog.array_agg(o._id), "
			"NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)"
			" FROM old_rows o HAVING pg_catalog.count(*) OPERATOR(pg_catalog.>) 0";
	else
		sql = "SELECT 'SELECT bsoncrypt._cluster_apply_key_vault(''truncate'', NULL, NULL, NULL, "
			"NULL, NULL, NULL, NULL, NULL, NULL)'";
	return query_text(sql, "the key vault change");
}

static void
refuse_local_change(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("the key vault of a Citus worker changes only with the coordinator's"),
			 errdetail("Every node holds a copy of the coordinator's bsoncrypt.key_vault."),
			 errhint("Manage keys on the coordinator: it applies each change to every node in the same distributed transaction.")));
}

/*
 * Statement trigger on key_vault (AFTER INSERT, UPDATE, DELETE with
 * transition tables new_rows/old_rows, and AFTER TRUNCATE): on a Citus
 * coordinator, apply the statement's change on every worker in this
 * transaction; on a worker, refuse changes that do not come from the
 * coordinator.  Without Citus: nothing.
 */
Datum
bsoncrypt_key_vault_propagate(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	ClusterRole role;
	char	   *command;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "bsoncrypt_key_vault_propagate: not called as a trigger");
	role = cluster_role();
	if (role == CLUSTER_NONE)
		PG_RETURN_POINTER(NULL);
	if (role == CLUSTER_WORKER)
	{
		if (applying_depth == 0 && !local_key_vault_changes)
			refuse_local_change();
		PG_RETURN_POINTER(NULL);
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
		elog(ERROR, "SPI_register_trigger_data failed");
	command = change_command(trigdata->tg_event);
	SPI_finish();
	if (command != NULL)
		send_to_workers(command);
	PG_RETURN_POINTER(NULL);
}

/* ------------------------------------------------------------------------
 * Applying a change on a worker
 * ------------------------------------------------------------------------
 */

/* Arguments of _cluster_apply_key_vault */
enum
{
	ARG_OP, ARG_OLD_IDS, ARG_IDS, ARG_NAMES, ARG_MATERIALS, ARG_MASTER_KEYS,
	ARG_VERSIONS, ARG_CREATED, ARG_UPDATED, ARG_STATUSES, NARGS
};

static const Oid row_types[NARGS] = {
	TEXTOID, UUIDARRAYOID, UUIDARRAYOID, TEXTARRAYOID, BYTEAARRAYOID, BYTEAARRAYOID,
	TEXTARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT4ARRAYOID
};

/* The rows of a call, deconstructed */
typedef struct ApplyRows
{
	int			n;
	Datum	   *values[NARGS];	/* per row array argument */
	Datum		args[NARGS];	/* the array arguments, dates as timestamptz[] */
} ApplyRows;

static int
array_items(Datum array, Oid elemtype, Datum **items)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	bool	   *nulls;
	int			n;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(DatumGetArrayTypeP(array), elemtype, typlen, typbyval,
					  typalign, items, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a key vault change holds a NULL value")));
	return n;
}

/* microseconds since 1970 -> timestamptz[] */
static Datum
timestamps_from_unix_usecs(Datum *usecs, int n)
{
	Datum	   *ts = palloc(sizeof(Datum) * Max(n, 1));
	const int64 epoch_diff = (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;

	for (int i = 0; i < n; i++)
		ts[i] = TimestampTzGetDatum(DatumGetInt64(usecs[i]) - epoch_diff);
	return PointerGetDatum(construct_array(ts, n, TIMESTAMPTZOID, sizeof(TimestampTz),
										   true, TYPALIGN_DOUBLE));
}

/* The row arrays of a call (ARG_IDS .. ARG_STATUSES), all of one length. */
static void
collect_rows(FunctionCallInfo fcinfo, ApplyRows *rows)
{
	memset(rows, 0, sizeof(*rows));
	if (PG_ARGISNULL(ARG_IDS))
		return;
	for (int a = ARG_IDS; a < NARGS; a++)
	{
		Oid			elemtype = get_element_type(row_types[a]);
		int			n;

		if (PG_ARGISNULL(a))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a key vault change lacks a column")));
		n = array_items(PG_GETARG_DATUM(a), elemtype, &rows->values[a]);
		if (a != ARG_IDS && n != rows->n)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("the columns of a key vault change differ in length")));
		rows->n = n;
		rows->args[a] = PG_GETARG_DATUM(a);
	}
	rows->args[ARG_CREATED] = timestamps_from_unix_usecs(rows->values[ARG_CREATED], rows->n);
	rows->args[ARG_UPDATED] = timestamps_from_unix_usecs(rows->values[ARG_UPDATED], rows->n);
}

/*
 * Can this node unwrap the keys it is given?  One key per (provider,
 * master key version) is unwrapped with this node's master keys; an
 * ERROR names the key and version otherwise.
 */
static void
check_unwrappable(const ApplyRows *rows)
{
	List	   *checked = NIL;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "bsoncrypt key check",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	for (int i = 0; i < rows->n; i++)
	{
		bytea	   *mk = DatumGetByteaPP(rows->values[ARG_MASTER_KEYS][i]);
		bytea	   *material = DatumGetByteaPP(rows->values[ARG_MATERIALS][i]);
		char	   *what = "a data key";
		char	   *pair;
		uint8_t		dek[FLE_KEY_LEN];
		ListCell   *lc;
		bool		seen = false;

		bson_validate_bytes((const uint8_t *) VARDATA_ANY(mk), VARSIZE_ANY_EXHDR(mk), what);
		pair = psprintf("%s/%s", kms_document_provider((BsonData *) mk, what),
						TextDatumGetCString(rows->values[ARG_VERSIONS][i]));
		foreach(lc, checked)
			seen = seen || strcmp((char *) lfirst(lc), pair) == 0;
		if (seen)
		{
			pfree(pair);
			continue;
		}
		what = psprintf("data key %s", uuid_to_cstring(DatumGetUUIDP(rows->values[ARG_IDS][i])));
		PG_TRY();
		{
			kms_unwrap_secret(kms_get_provider(kms_document_provider((BsonData *) mk, what)),
							  TextDatumGetCString(rows->values[ARG_VERSIONS][i]),
							  (BsonData *) mk,
							  (const uint8_t *) VARDATA_ANY(material),
							  VARSIZE_ANY_EXHDR(material), dek, sizeof(dek), what);
		}
		PG_FINALLY();
		{
			explicit_bzero(dek, sizeof(dek));
		}
		PG_END_TRY();
		checked = lappend(checked, pair);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* the row arrays as SQL parameters $1..$8 (ids first) */
#define ROWS_FROM_ARRAYS \
	"ROWS FROM (pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.text[]), " \
	"pg_catalog.unnest($3::pg_catalog.bytea[]), pg_catalog.unnest($4::pg_catalog.bytea[]), " \
	"pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.timestamptz[]), " \
	"pg_catalog.unnest($7::pg_catalog.timestamptz[]), pg_catalog.unnest($8::pg_catalog.int4[]))" \
	" WITH ORDINALITY AS u(id, names, material, master_key, version, created, updated, status, ord)"

/* the old ids ($9) with the new rows */
#define UPDATED_ROWS \
	"ROWS FROM (pg_catalog.unnest($9::pg_catalog.uuid[])," \
	"           pg_catalog.unnest($1::pg_catalog.uuid[]), pg_catalog.unnest($2::pg_catalog.text[])," \
	"           pg_catalog.unnest($3::pg_catalog.bytea[]), pg_catalog.unnest($4::pg_catalog.bytea[])," \
	"           pg_catalog.unnest($5::pg_catalog.text[]), pg_catalog.unnest($6::pg_catalog.timestamptz[])," \
	"           pg_catalog.unnest($7::pg_catalog.timestamptz[]), pg_catalog.unnest($8::pg_catalog.int4[]))" \
	" AS u(old_id, id, names, material, master_key, version, created, updated, status)"

#define KEY_VAULT_COLUMNS \
	"(_id, key_alt_names, key_material, master_key, master_key_version, creation_date, update_date, status)"

#define U_VALUES \
	"u.id, u.names::pg_catalog.text[], u.material, u.master_key::bsoncrypt.bson, u.version, " \
	"u.created, u.updated, u.status"

/* Run a statement over the rows (and $9: the old or known ids); rows processed. */
static uint64
apply_statement(const char *sql, const ApplyRows *rows, Datum ids)
{
	Oid			types[9] = {UUIDARRAYOID, TEXTARRAYOID, BYTEAARRAYOID, BYTEAARRAYOID,
	TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID, UUIDARRAYOID};
	Datum		values[9];
	char		nulls[9];
	int			nestlevel;
	int			rc;

	for (int a = ARG_IDS; a < NARGS; a++)
	{
		values[a - ARG_IDS] = rows->args[a];
		nulls[a - ARG_IDS] = rows->n > 0 ? ' ' : 'n';
	}
	values[8] = ids;
	nulls[8] = ids != (Datum) 0 ? ' ' : 'n';

	/* join by the primary key: a hash join would read the whole vault */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	rc = bsoncrypt_spi_execute(sql, 9, types, values, nulls, false, 0);
	AtEOXact_GUC(true, nestlevel);
	if (rc < 0)
		elog(ERROR, "applying a key vault change failed: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

static void
report_out_of_sync(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("the key vault of this node differs from the coordinator's: %s", why),
			 errhint("Run SELECT bsoncrypt.cluster_sync_key_vault() on the coordinator.")));
}

/*
 * Make this node's vault the coordinator's (rows: all of it): rows that
 * differ are replaced, missing ones inserted.  A key only this node has is
 * an ERROR: it may be a key this node's data needs (delete it here, with
 * bsoncrypt.cluster_local_key_vault_changes, if it was deleted on the
 * coordinator while this node was disabled).
 */
static uint64
apply_sync(const ApplyRows *rows)
{
	uint64		changed;

	apply_statement("SELECT k._id FROM bsoncrypt.key_vault k"
					" WHERE $1 IS NULL OR NOT (k._id OPERATOR(pg_catalog.=) ANY ($1))"
					" ORDER BY k._id LIMIT 1", rows, (Datum) 0);
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		id = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this node holds data key %s, which the coordinator's key vault does not have",
						uuid_to_cstring(DatumGetUUIDP(id))),
				 errdetail("Taking the coordinator's key vault would delete it, and with it every value encrypted with it."),
				 errhint("Import the node's keys on the coordinator (bsoncrypt.get_keys(), bsoncrypt.import_key()); "
						 "or, if they were deleted there while this node was away, delete them here "
						 "with bsoncrypt.cluster_local_key_vault_changes = on.")));
	}
	changed = apply_statement("DELETE FROM bsoncrypt.key_vault k USING " ROWS_FROM_ARRAYS
							  " WHERE k._id OPERATOR(pg_catalog.=) u.id"
							  "   AND (k.key_alt_names, k.key_material, k.master_key::pg_catalog.bytea,"
							  "        k.master_key_version, k.creation_date, k.update_date, k.status)"
							  "       IS DISTINCT FROM (u.names::pg_catalog.text[], u.material, u.master_key,"
							  "        u.version, u.created, u.updated, u.status)",
							  rows, (Datum) 0);
	changed += apply_statement("INSERT INTO bsoncrypt.key_vault " KEY_VAULT_COLUMNS
							   " SELECT " U_VALUES " FROM " ROWS_FROM_ARRAYS
							   " WHERE NOT EXISTS (SELECT 1 FROM bsoncrypt.key_vault k"
							   "                    WHERE k._id OPERATOR(pg_catalog.=) u.id)"
							   " ORDER BY u.ord",
							   rows, (Datum) 0);
	return changed;
}

/* Apply one change (SPI connected, applying_depth raised). */
static uint64
apply_change(const char *op, const ApplyRows *rows, Datum old_ids, int n_old)
{
	uint64		processed;

	if (strcmp(op, "insert") == 0)
		return apply_statement("INSERT INTO bsoncrypt.key_vault " KEY_VAULT_COLUMNS
							   " SELECT " U_VALUES " FROM " ROWS_FROM_ARRAYS " ORDER BY u.ord",
							   rows, (Datum) 0);
	if (strcmp(op, "update") == 0)
	{
		if (n_old != rows->n)
			report_out_of_sync("an update with unmatched rows");

		/*
		 * First the rows whose _id and alt names stay (rewraps, status), then
		 * the others: only the second statement sets _id and key_alt_names,
		 * so only its rows fire the alt-name trigger (which runs for every row
		 * whose UPDATE sets key_alt_names, changed or not).  In this order a
		 * row the first statement updated no longer matches the second's test.
		 */
		processed = apply_statement("UPDATE bsoncrypt.key_vault k"
									"   SET key_material = u.material, master_key = u.master_key::bsoncrypt.bson,"
									"       master_key_version = u.version, creation_date = u.created,"
									"       update_date = u.updated, status = u.status"
									"  FROM " UPDATED_ROWS
									" WHERE k._id OPERATOR(pg_catalog.=) u.old_id"
									"   AND u.id OPERATOR(pg_catalog.=) u.old_id"
									"   AND k.key_alt_names IS NOT DISTINCT FROM u.names::pg_catalog.text[]",
									rows, old_ids);
		processed += apply_statement("UPDATE bsoncrypt.key_vault k"
									 "   SET _id = u.id, key_alt_names = u.names::pg_catalog.text[],"
									 "       key_material = u.material, master_key = u.master_key::bsoncrypt.bson,"
									 "       master_key_version = u.version, creation_date = u.created,"
									 "       update_date = u.updated, status = u.status"
									 "  FROM " UPDATED_ROWS
									 " WHERE k._id OPERATOR(pg_catalog.=) u.old_id"
									 "   AND (u.id OPERATOR(pg_catalog.<>) u.old_id"
									 "        OR k.key_alt_names IS DISTINCT FROM u.names::pg_catalog.text[])",
									 rows, old_ids);
		if (processed != (uint64) rows->n)
			report_out_of_sync("a key the coordinator updated is missing here");
		return processed;
	}
	if (strcmp(op, "delete") == 0)
		return apply_statement("DELETE FROM bsoncrypt.key_vault k"
							   " WHERE k._id OPERATOR(pg_catalog.=) ANY ($9)",
							   rows, old_ids);
	if (strcmp(op, "truncate") == 0)
		return apply_statement("DELETE FROM bsoncrypt.key_vault", rows, (Datum) 0);
	if (strcmp(op, "sync") == 0)
		return apply_sync(rows);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown key vault change \"%s\"", op)));
	return 0;
}

static void
apply_error_context(void *arg)
{
	errcontext("applying a change of the coordinator's key vault on this node");
}

/*
 * _cluster_apply_key_vault(op, old_ids, ids, alt names, key materials,
 * master keys, versions, creation dates, update dates, statuses) -> bigint
 *
 * Sent by the coordinator: apply one statement's change ('insert',
 * 'update', 'delete', 'truncate') or the whole vault ('sync') to this
 * node's vault, as the calling role (its privileges on key_vault apply).
 * Returns the number of rows changed.
 */
Datum
bsoncrypt_cluster_apply_key_vault(PG_FUNCTION_ARGS)
{
	char	   *op;
	ApplyRows	rows;
	Datum	   *old;
	Datum		old_ids = (Datum) 0;
	int			n_old = 0;
	uint64		processed = 0;
	ErrorContextCallback callback;

	if (PG_ARGISNULL(ARG_OP))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("a key vault change needs an operation")));
	op = text_to_cstring(PG_GETARG_TEXT_PP(ARG_OP));
	if (!PG_ARGISNULL(ARG_OLD_IDS))
	{
		old_ids = PG_GETARG_DATUM(ARG_OLD_IDS);
		n_old = array_items(old_ids, UUIDOID, &old);
	}

	callback.callback = apply_error_context;
	callback.arg = NULL;
	callback.previous = error_context_stack;
	error_context_stack = &callback;

	collect_rows(fcinfo, &rows);
	check_unwrappable(&rows);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	applying_depth++;
	PG_TRY();
	{
		processed = apply_change(op, &rows, old_ids, n_old);
	}
	PG_FINALLY();
	{
		applying_depth--;
	}
	PG_END_TRY();
	SPI_finish();
	error_context_stack = callback.previous;
	PG_RETURN_INT64((int64) processed);
}

/* ------------------------------------------------------------------------
 * The whole vault: nodes that Citus activates, and repairs
 * ------------------------------------------------------------------------
 */

/*
 * The commands that make a worker's vault and privileges the
 * coordinator's (SPI connected): the whole vault in one call, then the
 * privileges on the extension's objects.
 */
static List *
sync_commands(void)
{
	List	   *commands = NIL;
	const char *sources[] = {
		"SELECT pg_catalog.format(" APPLY_CALL_FORMAT ", 'sync', NULL, " KEY_ROW_ARRAYS("n") ")"
		"  FROM (SELECT * FROM bsoncrypt.key_vault ORDER BY _id) n",
		"SELECT bsoncrypt._cluster_acl_command()"
	};

	for (int i = 0; i < lengthof(sources); i++)
	{
		char	   *command = query_text(sources[i], "the key vault for a node");

		if (command != NULL)
		{
			/* the list outlives SPI's memory too */
			MemoryContext old = MemoryContextSwitchTo(CurTransactionContext);

			commands = lappend(commands, command);
			MemoryContextSwitchTo(old);
		}
	}
	return commands;
}

/*
 * cluster_sync_key_vault() -> integer: make every worker's key vault and
 * privileges the coordinator's, in this transaction (superusers, on the
 * coordinator).  Returns the number of workers.
 */
Datum
bsoncrypt_cluster_sync_key_vault(PG_FUNCTION_ARGS)
{
	List	   *commands;
	ListCell   *lc;
	char	   *nodes;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only superusers may copy the key vault to the workers")));
	if (cluster_role() != CLUSTER_COORDINATOR)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cluster_sync_key_vault() runs on the coordinator of a Citus cluster")));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	commands = sync_commands();
	nodes = query_text("SELECT pg_catalog.count(*) FROM pg_catalog.pg_dist_node"
					   " WHERE isactive AND groupid OPERATOR(pg_catalog.<>) 0"
					   "   AND noderole OPERATOR(pg_catalog.=) 'primary'",
					   "pg_dist_node");
	SPI_finish();
	foreach(lc, commands)
		send_to_workers((char *) lfirst(lc));
	PG_RETURN_INT32(pg_strtoint32(nodes));
}

/*
 * Event trigger after GRANT and REVOKE: on a Citus coordinator, give every
 * worker the privileges the extension's objects now have here, in this
 * transaction.  Only superusers change them (the extension's objects
 * belong to one, and no grant option is given); other roles' GRANTs on
 * their own objects are left alone.  Not while an extension script runs
 * (Citus creates the extension on the workers afterwards).
 */
Datum
bsoncrypt_cluster_acls_changed(PG_FUNCTION_ARGS)
{
	char	   *command;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		elog(ERROR, "bsoncrypt_cluster_acls_changed: not called as an event trigger");
	if (creating_extension || !superuser() || cluster_role() != CLUSTER_COORDINATOR)
		PG_RETURN_VOID();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* a new snapshot: it sees the GRANT or REVOKE */
	command = query_text("SELECT bsoncrypt._cluster_acl_command()",
						 "the privileges of the extension's objects");
	SPI_finish();
	if (command != NULL)
		send_to_workers(command);
	PG_RETURN_VOID();
}

/*
 * The active primary workers with metadata whose pg_dist_node row this
 * transaction wrote: the nodes it adds or activates.
 */
static List *
nodes_written_by_this_transaction(Oid citus_oid)
{
	Relation	rel = table_open(citus_table(citus_oid, "pg_dist_node"), AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tuple;
	List	   *nodes = NIL;

	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		bool		isnull;
		ActivatedNode *node;

		if (!TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tuple->t_data)) ||
			!node_flag(tuple, rel, "isactive") || !node_flag(tuple, rel, "hasmetadata") ||
			!node_is_primary(tuple, rel) ||
			DatumGetInt32(node_attr(tuple, rel, "groupid", &isnull)) == 0)
			continue;
		node = palloc(sizeof(ActivatedNode));
		node->name = TextDatumGetCString(node_attr(tuple, rel, "nodename", &isnull));
		node->port = DatumGetInt32(node_attr(tuple, rel, "nodeport", &isnull));
		nodes = lappend(nodes, node);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nodes;
}

/*
 * Before a transaction that changed Citus's node metadata commits (Citus
 * then prepares its remote transactions): give the nodes it activated the
 * key vault and the privileges, in that transaction.
 */
static void
push_to_activated_nodes(void)
{
	Oid			citus_oid = get_extension_oid("citus", true);
	List	   *nodes;
	List	   *commands;
	ListCell   *lc;

	if (!OidIsValid(citus_oid) || !OidIsValid(bsoncrypt_extension_oid()) ||
		cluster_role() != CLUSTER_COORDINATOR)
		return;
	nodes = nodes_written_by_this_transaction(citus_oid);
	if (nodes == NIL)
		return;
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	commands = sync_commands();
	SPI_finish();
	PopActiveSnapshot();
	foreach(lc, nodes)
	{
		ActivatedNode *node = lfirst(lc);
		ListCell   *cc;

		foreach(cc, commands)
			send_to_node(node->name, node->port, (char *) lfirst(cc));
	}
}

static void
cluster_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT && citus.node_metadata_modified != NULL &&
		*citus.node_metadata_modified && IsTransactionState())
		push_to_activated_nodes();
}
