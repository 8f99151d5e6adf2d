/*-------------------------------------------------------------------------
 *
 * encrypted_btree_ddl.c
 *	  What encrypted_btree needs around DDL and DML that no index AM
 *	  callback covers:
 *
 *	  - reloptions: btree's fillfactor, and "encrypted", which every
 *	    encrypted_btree index carries (= true).  PostgreSQL records no
 *	    access method for the index of a PRIMARY KEY or UNIQUE constraint:
 *	    pg_dump (and so pg_upgrade) writes "ADD CONSTRAINT ... PRIMARY KEY
 *	    (...) WITH (encrypted='true')", and the option is what makes that
 *	    an encrypted_btree index again.  A constraint recreated as a plain
 *	    btree over an encrypted index file would read ciphertext as keys.
 *	  - bsoncrypt.encrypt_indexes: btree indexes created on encrypted_heap
 *	    tables (CREATE INDEX, and the indexes of PRIMARY KEY and UNIQUE
 *	    constraints of CREATE TABLE and ALTER TABLE) become encrypted_btree
 *	    when every key column has an encrypted operator class.
 *	  - keys of index files: ALTER INDEX ... SET TABLESPACE copies the file
 *	    as it is, so its keys follow it; rebuilds (REINDEX, TRUNCATE,
 *	    rewrites) make a new file with a new key, and the keys of the files
 *	    they replace are deleted with them.
 *	  - INSERT ... ON CONFLICT: PostgreSQL 15 sets up the unique checks of
 *	    ON CONFLICT only for btree indexes (BuildSpeculativeIndexInfo);
 *	    bsoncrypt opens the target's indexes itself, with the same checks,
 *	    when one of them is an encrypted_btree unique index.
 *	  - foreign keys: PostgreSQL 15 refuses to reference a unique index
 *	    that is not btree, judging by the access method of its operator
 *	    classes; the encrypted ones pass as btree while a statement adds
 *	    foreign keys (see "Foreign keys" below).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/nbtree.h"
#include "access/reloptions.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_opclass.h"
#include "catalog/storage.h"
#include "commands/extension.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "parser/parse_type.h"
#include "parser/parse_utilcmd.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "tde.h"
#include "tde_index.h"
#include "trusted_sql.h"

#define MARKER_OPTION	"encrypted"

static bool encrypt_indexes = false;
static relopt_kind eb_relopt_kind;
static ProcessUtility_hook_type prev_process_utility = NULL;
static ExecutorStart_hook_type prev_executor_start = NULL;

/* rd_options of an encrypted_btree index: btree reads the BTOptions part */
typedef struct EbOptions
{
	BTOptions	bt;
	bool		encrypted;
} EbOptions;

/* ------------------------------------------------------------------------
 * Settings and reloptions
 * ------------------------------------------------------------------------
 */
void
eb_define_settings(void)
{
	eb_relopt_kind = add_reloption_kind();
	add_int_reloption(eb_relopt_kind, "fillfactor",
					  "Packs btree index pages only to this percentage",
					  BTREE_DEFAULT_FILLFACTOR, BTREE_MIN_FILLFACTOR, 100,
					  ShareUpdateExclusiveLock);
	add_bool_reloption(eb_relopt_kind, MARKER_OPTION,
					   "Index keys are stored encrypted (always true for encrypted_btree)",
					   false, AccessExclusiveLock);
	DefineCustomBoolVariable("bsoncrypt.encrypt_indexes",
							 "Creates btree indexes of encrypted_heap tables as encrypted_btree.",
							 "Covers CREATE INDEX and the indexes of PRIMARY KEY and UNIQUE constraints; "
							 "an index whose key types have no encrypted operator class stays btree, with a warning.",
							 &encrypt_indexes,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	sealed_define_settings();
}

bytea *
eb_options(Datum reloptions, bool validate)
{
	static const relopt_parse_elt tab[] = {
		{"fillfactor", RELOPT_TYPE_INT, offsetof(EbOptions, bt.fillfactor)},
		{MARKER_OPTION, RELOPT_TYPE_BOOL, offsetof(EbOptions, encrypted)}
	};
	EbOptions  *opts = (EbOptions *) build_reloptions(reloptions, validate, eb_relopt_kind,
												   sizeof(EbOptions), tab, lengthof(tab));

	if (validate && (opts == NULL || !opts->encrypted))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("encrypted_btree indexes are created WITH (%s = true)", MARKER_OPTION),
				 errdetail("The option records in the index definition, also in dumps of PRIMARY KEY and UNIQUE constraints, that its keys are encrypted."),
				 errhint("bsoncrypt adds the option itself when it is loaded before the command (shared_preload_libraries).")));
	if (opts != NULL)
		opts->bt.deduplicate_items = false; /* equal keys are never equal bytes */
	return (bytea *) opts;
}

bool
eb_reloptions_marked(Relation index)
{
	return index->rd_options != NULL && ((EbOptions *) index->rd_options)->encrypted;
}

/* Does a WITH (...) list ask for encrypted = true? */
static bool
options_marked(List *options)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (def->defnamespace == NULL && strcmp(def->defname, MARKER_OPTION) == 0)
			return defGetBoolean(def);
	}
	return false;
}

/* options with encrypted = true (replacing any encrypted = ... given) */
static List *
options_with_marker(List *options)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (!(def->defnamespace == NULL && strcmp(def->defname, MARKER_OPTION) == 0))
			result = lappend(result, def);
	}
	return lappend(result, makeDefElem(MARKER_OPTION, (Node *) makeString("true"), -1));
}

/* ------------------------------------------------------------------------
 * Which btree indexes become encrypted_btree
 * ------------------------------------------------------------------------
 */

/* Is the table encrypted_heap (for a partitioned table: every leaf)? */
static bool
table_is_encrypted(Oid relid)
{
	Oid			am = get_table_am_oid("encrypted_heap", true);
	char		relkind = get_rel_relkind(relid);
	List	   *leaves;
	ListCell   *lc;
	bool		all = true;
	int			n = 0;

	if (!OidIsValid(am))
		return false;
	if (relkind != RELKIND_PARTITIONED_TABLE)
	{
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
		bool		result;

		if (!HeapTupleIsValid(tup))
			return false;
		result = ((Form_pg_class) GETSTRUCT(tup))->relam == am;
		ReleaseSysCache(tup);
		return result;
	}
	leaves = find_all_inheritors(relid, NoLock, NULL);
	foreach(lc, leaves)
	{
		Oid			leaf = lfirst_oid(lc);

		if (get_rel_relkind(leaf) == RELKIND_PARTITIONED_TABLE)
			continue;
		n++;
		all &= table_is_encrypted(leaf);
	}
	return all && n > 0;
}

/*
 * Why a key column of type typid (with the btree operator class named
 * opclass, if any) cannot be encrypted, or NULL if it can.  *default_opclass
 * is set when the named class is the type's default btree class, which the
 * encrypted default replaces.
 */
static const char *
why_not_encryptable(Oid typid, List *opclass, bool *default_opclass)
{
	Oid			am = eb_am_oid(false);

	*default_opclass = false;
	if (opclass != NIL)
	{
		Oid			named = ResolveOpClass(opclass, typid, "btree", BTREE_AM_OID);

		if (named != GetDefaultOpClass(typid, BTREE_AM_OID))
			return psprintf("operator class %s is not the default of type %s",
							NameListToString(opclass), format_type_be(typid));
		*default_opclass = true;
	}
	if (!OidIsValid(GetDefaultOpClass(typid, am)))
		return psprintf("type %s has no encrypted_btree operator class", format_type_be(typid));
	return NULL;
}

static void
warn_not_encrypted(const char *what, const char *why)
{
	ereport(WARNING,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s is created as a plain btree index: %s", what, why),
			 errdetail("bsoncrypt.encrypt_indexes is on; this index will hold its keys in clear."),
			 errhint("See bsoncrypt.create_encrypted_opclass() and the at-rest encryption documentation.")));
}

/*
 * A CREATE INDEX (also of a constraint of CREATE TABLE) made encrypted_btree
 * if it asks for it (WITH (encrypted = true)) or bsoncrypt.encrypt_indexes
 * applies; an explicit encrypted_btree gets the marker.  Returns the
 * statement to run (a copy when changed).
 */
static IndexStmt *
convert_index_stmt(IndexStmt *stmt, const char *queryString)
{
	bool		marked = options_marked(stmt->options);
	Oid			relid;
	IndexStmt  *probe;
	ListCell   *lc,
			   *lc2;
	List	   *params = NIL;
	const char *why = NULL;

	if (strcmp(stmt->accessMethod, "encrypted_btree") == 0)
	{
		if (marked)
			return stmt;
		stmt = copyObject(stmt);
		stmt->options = options_with_marker(stmt->options);
		return stmt;
	}
	if (strcmp(stmt->accessMethod, "btree") != 0 || !OidIsValid(eb_am_oid(true)))
		return stmt;
	if (!marked && !encrypt_indexes)
		return stmt;
	relid = RangeVarGetRelid(stmt->relation, AccessShareLock, true);
	if (!OidIsValid(relid))
		return stmt;
	if (!marked && !table_is_encrypted(relid))
		return stmt;

	/* the key types: parse analysis of a copy */
	probe = transformIndexStmt(relid, copyObject(stmt), queryString);
	if (probe->indexIncludingParams != NIL)
		why = "encrypted_btree indexes have no INCLUDE columns";
	else if ((stmt->unique || stmt->primary) &&
			 get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE)
		why = "unique indexes of partitioned tables must be btree";
	foreach(lc, probe->indexParams)
	{
		IndexElem  *elem = lfirst_node(IndexElem, lc);
		Oid			typid = elem->expr ? exprType(elem->expr) :
			get_atttype(relid, get_attnum(relid, elem->name));
		bool		default_opclass;

		if (why == NULL)
			why = why_not_encryptable(typid, elem->opclass, &default_opclass);
		params = lappend_int(params, why == NULL && default_opclass);
	}
	if (why != NULL)
	{
		if (marked)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot create an encrypted index: %s", why)));
		warn_not_encrypted(stmt->idxname ? psprintf("index \"%s\"", stmt->idxname) : "the index",
						   why);
		return stmt;
	}

	stmt = copyObject(stmt);
	stmt->accessMethod = "encrypted_btree";
	stmt->options = options_with_marker(stmt->options);
	/* a named default btree class: the encrypted default instead */
	forboth(lc, stmt->indexParams, lc2, params)
	{
		if (lfirst_int(lc2))
			lfirst_node(IndexElem, lc)->opclass = NIL;
	}
	return stmt;
}

/* The type of a column named in a constraint: of the table, or added with it. */
static Oid
constraint_column_type(Oid relid, const char *name, List *added_columns)
{
	AttrNumber	attnum = get_attnum(relid, name);
	ListCell   *lc;

	if (attnum != InvalidAttrNumber)
		return get_atttype(relid, attnum);
	foreach(lc, added_columns)
	{
		ColumnDef  *def = lfirst_node(ColumnDef, lc);

		if (strcmp(def->colname, name) == 0)
			return typenameTypeId(NULL, def->typeName);
	}
	return InvalidOid;
}

/*
 * A PRIMARY KEY or UNIQUE constraint added by ALTER TABLE, made
 * encrypted_btree (in place) as convert_index_stmt would; its key columns
 * are con->keys, or for a column constraint the column of type coltype.
 */
static void
convert_constraint(Constraint *con, Oid relid, Oid coltype, List *added_columns)
{
	bool		marked = options_marked(con->options);
	const char *why = NULL;
	ListCell   *lc;

	if ((con->contype != CONSTR_PRIMARY && con->contype != CONSTR_UNIQUE) ||
		con->indexname != NULL || con->access_method != NULL)
		return;
	if (!marked && !(encrypt_indexes && table_is_encrypted(relid)))
		return;
	if (con->including != NIL)
		why = "encrypted_btree indexes have no INCLUDE columns";
	else if (get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE)
		why = "unique indexes of partitioned tables must be btree";
	else if (con->keys == NIL)
	{
		bool		default_opclass;

		why = why_not_encryptable(coltype, NIL, &default_opclass);
	}
	foreach(lc, con->keys)
	{
		const char *name = strVal(lfirst(lc));
		Oid			typid = constraint_column_type(relid, name, added_columns);
		bool		default_opclass;

		if (why != NULL)
			break;
		if (!OidIsValid(typid))
			why = psprintf("column \"%s\" is unknown", name);
		else
			why = why_not_encryptable(typid, NIL, &default_opclass);
	}
	if (why != NULL)
	{
		if (marked)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot create an encrypted index: %s", why)));
		warn_not_encrypted(con->conname ? psprintf("the index of constraint \"%s\"", con->conname) :
						   "the index of the constraint", why);
		return;
	}
	con->access_method = pstrdup("encrypted_btree");
	con->options = options_with_marker(con->options);
}

/* An ALTER TABLE whose PRIMARY KEY and UNIQUE constraints may become encrypted. */
static AlterTableStmt *
convert_alter_table(AlterTableStmt *stmt)
{
	Oid			relid;
	List	   *added_columns = NIL;
	ListCell   *lc;

	if (!OidIsValid(eb_am_oid(true)))
		return stmt;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (!OidIsValid(relid))
		return stmt;
	stmt = copyObject(stmt);
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		if (cmd->subtype == AT_AddColumn && IsA(cmd->def, ColumnDef))
			added_columns = lappend(added_columns, cmd->def);
	}
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);

		if (cmd->subtype == AT_AddConstraint && IsA(cmd->def, Constraint))
			convert_constraint((Constraint *) cmd->def, relid, InvalidOid, added_columns);
		else if (cmd->subtype == AT_AddColumn && IsA(cmd->def, ColumnDef))
		{
			ColumnDef  *def = (ColumnDef *) cmd->def;
			ListCell   *c;

			foreach(c, def->constraints)
				convert_constraint(lfirst_node(Constraint, c), relid,
								   typenameTypeId(NULL, def->typeName), added_columns);
		}
	}
	return stmt;
}

/* ------------------------------------------------------------------------
 * Keys of index files
 * ------------------------------------------------------------------------
 */
typedef struct IndexFile
{
	Oid			indexoid;
	RelFileNode node;			/* spcNode as in pg_class (0: database default) */
	char		persistence;
} IndexFile;

/* The files of the encrypted_btree indexes among relids (all when NIL). */
static List *
encrypted_index_files(List *relids, bool all)
{
	Oid			am = eb_am_oid(true);
	List	   *files = NIL;
	Relation	pg_class;
	SysScanDesc scan;
	HeapTuple	tup;

	if (!OidIsValid(am))
		return NIL;
	pg_class = table_open(RelationRelationId, AccessShareLock);
	scan = systable_beginscan(pg_class, InvalidOid, false, NULL, 0, NULL);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		Form_pg_class form = (Form_pg_class) GETSTRUCT(tup);
		IndexFile  *file;

		if (form->relam != am || form->relkind != RELKIND_INDEX ||
			(!all && !list_member_oid(relids, form->oid)))
			continue;
		file = palloc(sizeof(IndexFile));
		file->indexoid = form->oid;
		file->node.spcNode = form->reltablespace;
		file->node.dbNode = MyDatabaseId;
		file->node.relNode = form->relfilenode;
		file->persistence = form->relpersistence;
		files = lappend(files, file);
	}
	systable_endscan(scan);
	table_close(pg_class, AccessShareLock);
	return files;
}

/*
 * After ALTER INDEX ... SET TABLESPACE: an index whose file changed was
 * copied as it is, its keys go with it.
 */
static void
carry_keys_of_moved_files(List *before)
{
	ListCell   *lc;

	foreach(lc, before)
	{
		IndexFile  *old = lfirst(lc);
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(old->indexoid));
		RelFileNode now;

		if (!HeapTupleIsValid(tup))
			continue;
		now = old->node;
		now.spcNode = ((Form_pg_class) GETSTRUCT(tup))->reltablespace;
		now.relNode = ((Form_pg_class) GETSTRUCT(tup))->relfilenode;
		ReleaseSysCache(tup);
		if (!RelFileNodeEquals(now, old->node))
			tde_move_file_keys(&old->node, &now, old->persistence);
	}
}

/* The encrypted indexes an ALTER statement may move to another tablespace. */
static List *
files_that_may_move(Node *stmt)
{
	if (IsA(stmt, AlterTableMoveAllStmt))
		return ((AlterTableMoveAllStmt *) stmt)->objtype == OBJECT_INDEX ?
			encrypted_index_files(NIL, true) : NIL;
	if (IsA(stmt, AlterTableStmt))
	{
		AlterTableStmt *alter = (AlterTableStmt *) stmt;
		ListCell   *lc;
		Oid			relid;

		foreach(lc, alter->cmds)
		{
			if (lfirst_node(AlterTableCmd, lc)->subtype != AT_SetTableSpace)
				continue;
			relid = RangeVarGetRelid(alter->relation, NoLock, true);
			if (!OidIsValid(relid) || get_rel_relkind(relid) != RELKIND_INDEX)
				return NIL;
			return encrypted_index_files(list_make1_oid(relid), false);
		}
	}
	return NIL;
}

/*
 * ambuild of a new file: delete the keys of every file this (sub)transaction
 * deletes at commit: the old files of the indexes (and tables) it rebuilt.
 * Rolled back with it.  Each file once per transaction.
 */
void
eb_drop_keys_of_replaced_files(void)
{
	static LocalTransactionId lxid = InvalidLocalTransactionId;
	static List *done = NIL;
	RelFileNode *nodes;
	int			n = smgrGetPendingDeletes(true, &nodes);

	if (lxid != MyProc->lxid)
	{
		done = NIL;				/* was in the last transaction's memory */
		lxid = MyProc->lxid;
	}
	for (int i = 0; i < n; i++)
	{
		bool		seen = false;
		ListCell   *lc;
		MemoryContext old;

		foreach(lc, done)
			seen |= RelFileNodeEquals(*(RelFileNode *) lfirst(lc), nodes[i]);
		if (seen)
			continue;
		(void) tde_drop_file_keys(nodes[i].spcNode, nodes[i].relNode, RELPERSISTENCE_PERMANENT);
		old = MemoryContextSwitchTo(TopTransactionContext);
		done = lappend(done, memcpy(palloc(sizeof(RelFileNode)), &nodes[i], sizeof(RelFileNode)));
		MemoryContextSwitchTo(old);
	}
}

/* ------------------------------------------------------------------------
 * ON CONFLICT
 * ------------------------------------------------------------------------
 */

/* Does rel have an encrypted_btree unique index? */
static bool
has_encrypted_unique_index(Relation rel)
{
	Oid			am = eb_am_oid(true);
	List	   *indexes;
	ListCell   *lc;
	bool		found = false;

	if (!OidIsValid(am) || !rel->rd_rel->relhasindex)
		return false;
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(lfirst_oid(lc)));

		if (!HeapTupleIsValid(tup))
			continue;
		if (((Form_pg_class) GETSTRUCT(tup))->relam == am)
		{
			HeapTuple	idx = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));

			if (HeapTupleIsValid(idx))
			{
				found |= ((Form_pg_index) GETSTRUCT(idx))->indisunique;
				ReleaseSysCache(idx);
			}
		}
		ReleaseSysCache(tup);
	}
	list_free(indexes);
	return found;
}

/* What BuildSpeculativeIndexInfo sets up, for an encrypted_btree index. */
static void
speculative_info(Relation index, IndexInfo *ii)
{
	int			nkeys = IndexRelationGetNumberOfKeyAttributes(index);

	ii->ii_UniqueOps = palloc(sizeof(Oid) * nkeys);
	ii->ii_UniqueProcs = palloc(sizeof(Oid) * nkeys);
	ii->ii_UniqueStrats = palloc(sizeof(uint16) * nkeys);
	for (int i = 0; i < nkeys; i++)
	{
		ii->ii_UniqueStrats[i] = BTEqualStrategyNumber;
		ii->ii_UniqueOps[i] = get_opfamily_member(index->rd_opfamily[i],
												  index->rd_opcintype[i],
												  index->rd_opcintype[i],
												  BTEqualStrategyNumber);
		if (!OidIsValid(ii->ii_UniqueOps[i]))
			elog(ERROR, "missing operator %d(%u,%u) in opfamily %u",
				 BTEqualStrategyNumber, index->rd_opcintype[i],
				 index->rd_opcintype[i], index->rd_opfamily[i]);
		ii->ii_UniqueProcs[i] = get_opcode(ii->ii_UniqueOps[i]);
	}
}

/*
 * ExecOpenIndices for speculative insertion, done before ExecInsert would
 * (it opens indexes only when none are open yet), with the unique checks
 * of encrypted_btree indexes set up too.
 */
static void
open_indexes_for_on_conflict(ResultRelInfo *rri)
{
	Relation	rel = rri->ri_RelationDesc;
	List	   *oids = RelationGetIndexList(rel);
	int			n = list_length(oids);
	int			i = 0;
	ListCell   *lc;

	rri->ri_NumIndices = n;
	rri->ri_IndexRelationDescs = palloc(n * sizeof(Relation));
	rri->ri_IndexRelationInfo = palloc(n * sizeof(IndexInfo *));
	foreach(lc, oids)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexInfo  *ii = BuildIndexInfo(index);

		if (ii->ii_Unique)
		{
			if (eb_is_encrypted_index(index))
				speculative_info(index, ii);
			else
				BuildSpeculativeIndexInfo(index, ii);
		}
		rri->ri_IndexRelationDescs[i] = index;
		rri->ri_IndexRelationInfo[i] = ii;
		i++;
	}
	list_free(oids);
}

static bool
on_conflict_walker(PlanState *ps, void *context)
{
	if (ps == NULL)
		return false;
	if (IsA(ps, ModifyTableState) &&
		((ModifyTable *) ps->plan)->onConflictAction != ONCONFLICT_NONE)
	{
		ModifyTableState *mt = (ModifyTableState *) ps;
		MemoryContext old = MemoryContextSwitchTo(ps->state->es_query_cxt);

		for (int i = 0; i < mt->mt_nrels; i++)
		{
			ResultRelInfo *rri = &mt->resultRelInfo[i];

			if (rri->ri_IndexRelationDescs == NULL &&
				has_encrypted_unique_index(rri->ri_RelationDesc))
				open_indexes_for_on_conflict(rri);
		}
		MemoryContextSwitchTo(old);
	}
	return planstate_tree_walker(ps, on_conflict_walker, context);
}

static void
eb_executor_start(QueryDesc *queryDesc, int eflags)
{
	ListCell   *lc;

	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
	/* only an INSERT (or a data-modifying WITH) can have ON CONFLICT */
	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) || queryDesc->planstate == NULL ||
		(queryDesc->operation != CMD_INSERT && !queryDesc->plannedstmt->hasModifyingCTE) ||
		!OidIsValid(eb_am_oid(true)))
		return;
	(void) on_conflict_walker(queryDesc->planstate, NULL);
	foreach(lc, queryDesc->estate->es_subplanstates)
		(void) on_conflict_walker((PlanState *) lfirst(lc), NULL);
}

/* ------------------------------------------------------------------------
 * Foreign keys
 * ------------------------------------------------------------------------
 */

/* Does a table have an encrypted_btree unique index (one a key can reference)? */
static bool
may_be_referenced(RangeVar *pktable)
{
	Oid			relid = RangeVarGetRelid(pktable, NoLock, true);
	Relation	rel;
	bool		result;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, AccessShareLock);
	result = has_encrypted_unique_index(rel);
	table_close(rel, AccessShareLock);
	return result;
}

/*
 * Does an ALTER TABLE (also one CREATE TABLE runs) add a foreign key that
 * references a table with an encrypted unique index?
 */
static bool
adds_foreign_key(AlterTableStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst_node(AlterTableCmd, lc);
		List	   *constraints = NIL;
		ListCell   *c;

		if (cmd->subtype == AT_AddConstraint && IsA(cmd->def, Constraint))
			constraints = list_make1(cmd->def);
		else if (cmd->subtype == AT_AddColumn && IsA(cmd->def, ColumnDef))
			constraints = ((ColumnDef *) cmd->def)->constraints;
		foreach(c, constraints)
		{
			Constraint *con = (Constraint *) lfirst(c);

			if (IsA(con, Constraint) && con->contype == CONSTR_FOREIGN &&
				con->pktable != NULL && may_be_referenced(con->pktable))
				return true;
		}
	}
	return false;
}

/*
 * PostgreSQL 15 accepts a foreign key only if the referenced unique index
 * is btree, judged by the access method of its operator classes
 * (ATAddForeignKeyConstraint); what it then takes from them, the equality
 * operators of their families, the encrypted families have (they mirror
 * btree's).  While a statement that adds foreign keys runs, the encrypted
 * operator classes look like btree classes in this backend's catalog cache
 * (by oid): each entry is pinned and patched, and restored afterwards.  An
 * entry invalidated meanwhile is reloaded as it is in the catalog, and the
 * statement then fails as it would have; nothing is written to the catalog.
 */
static List *
opclasses_as_btree(void)
{
	Oid			am = eb_am_oid(true);
	List	   *oids = NIL;
	List	   *pinned = NIL;
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	ListCell   *lc;

	if (!OidIsValid(am))
		return NIL;
	rel = table_open(OperatorClassRelationId, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	while ((tup = systable_getnext(scan)) != NULL)
	{
		Form_pg_opclass form = (Form_pg_opclass) GETSTRUCT(tup);

		if (form->opcmethod == am)
			oids = lappend_oid(oids, form->oid);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	foreach(lc, oids)
	{
		tup = SearchSysCache1(CLAOID, ObjectIdGetDatum(lfirst_oid(lc)));
		if (!HeapTupleIsValid(tup))
			continue;
		((Form_pg_opclass) GETSTRUCT(tup))->opcmethod = BTREE_AM_OID;
		pinned = lappend(pinned, tup);
	}
	list_free(oids);
	return pinned;
}

static void
restore_opclasses(List *pinned)
{
	Oid			am = eb_am_oid(true);
	ListCell   *lc;

	foreach(lc, pinned)
	{
		HeapTuple	tup = lfirst(lc);

		((Form_pg_opclass) GETSTRUCT(tup))->opcmethod = am;
		ReleaseSysCache(tup);
	}
	list_free(pinned);
}

/* ------------------------------------------------------------------------
 * DocumentDB installed after bsoncrypt
 * ------------------------------------------------------------------------
 */

/* Does documentdb_core exist in this database? */
static bool
documentdb_core_exists(void)
{
	return OidIsValid(get_extension_oid("documentdb_core", true));
}

/*
 * A CREATE EXTENSION (documentdb_core, or documentdb CASCADE) just made
 * DocumentDB's documentdb_core in a database that has bsoncrypt: make what
 * CREATE EXTENSION bsoncrypt makes when DocumentDB is already there, the
 * casts with documentdb_core.bson and the type's encrypted_btree operator
 * class (bsoncrypt._adopt_documentdb, which the install script runs too),
 * so that the order in which the two are installed does not matter
 * (without the class, every collection's _id index would stay a btree).
 * The SQL functions check that the type is DocumentDB's own.  A failure
 * (say, bsoncrypt's functions revoked from this role) must not undo
 * DocumentDB's installation: it is a WARNING saying what to run.
 */
static void
adopt_documentdb(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	if (!OidIsValid(bsoncrypt_extension_oid()) || !documentdb_core_exists())
		return;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (bsoncrypt_spi_execute("SELECT bsoncrypt._adopt_documentdb()",
								  0, NULL, NULL, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "SPI_execute failed");
		SPI_finish();
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		ereport(WARNING,
				(errmsg("could not make bsoncrypt's casts and encrypted operator class for documentdb_core.bson: %s",
						edata->message),
				 errhint("Run SELECT bsoncrypt.create_documentdb_casts() and "
						 "SELECT bsoncrypt.create_encrypted_opclass('documentdb_core.bson') as a superuser.")));
		FreeErrorData(edata);
	}
	PG_END_TRY();
}

/* ------------------------------------------------------------------------
 * The utility hook
 * ------------------------------------------------------------------------
 */
static void
eb_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	Node	   *converted = stmt;
	List	   *may_move = NIL;
	List	   *volatile pinned = NIL;
	bool		documentdb_was_there = true;

	if (IsA(stmt, IndexStmt))
		converted = (Node *) convert_index_stmt((IndexStmt *) stmt, queryString);
	else if (IsA(stmt, AlterTableStmt))
		converted = (Node *) convert_alter_table((AlterTableStmt *) stmt);
	if (IsA(stmt, AlterTableStmt) || IsA(stmt, AlterTableMoveAllStmt))
		may_move = files_that_may_move(stmt);
	if (converted != stmt)
	{
		PlannedStmt *copy = makeNode(PlannedStmt);

		memcpy(copy, pstmt, sizeof(PlannedStmt));
		copy->utilityStmt = converted;
		pstmt = copy;
	}

	if (IsA(stmt, AlterTableStmt) && adds_foreign_key((AlterTableStmt *) stmt))
		pinned = opclasses_as_btree();
	if (IsA(stmt, CreateExtensionStmt))
		documentdb_was_there = documentdb_core_exists();
	PG_TRY();
	{
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
								 queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		restore_opclasses(pinned);
	}
	PG_END_TRY();

	if (may_move != NIL)
		carry_keys_of_moved_files(may_move);
	if (!documentdb_was_there)
		adopt_documentdb();
}

void
eb_install_hooks(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = eb_process_utility;
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = eb_executor_start;
}
