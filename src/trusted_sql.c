/*-------------------------------------------------------------------------
 *
 * trusted_sql.c
 *	  How bsoncrypt's C code finds its own SQL objects and runs SQL, without
 *	  trusting names that other roles control.
 *
 *	  Objects: the extension's schema is read from pg_extension (never
 *	  looked up by the name "bsoncrypt"), and a relation found there by
 *	  name is used only if it is a member of the extension (pg_depend,
 *	  deptype 'e'), or an index on such a member.  All of it is catalog
 *	  access: no SQL runs, no operator or function is resolved.
 *
 *	  SQL: statements run through SPI are parsed with search_path pinned
 *	  to "pg_catalog, pg_temp" (restored right after, as a function's SET
 *	  clause is), so that pg_catalog always comes first and a session's
 *	  temporary objects come last; the statements themselves name every
 *	  table, function, operator, type and collation with its schema too.
 *	  Either alone keeps objects planted in other schemas, or in the
 *	  caller's search_path, from ever running.
 *
 *	  The schema itself: CREATE EXTENSION reuses an existing schema called
 *	  bsoncrypt, whoever owns it; the install script's first statement
 *	  (_check_install_schema) refuses one that another role owns or may
 *	  create objects in, or that holds objects.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_namespace.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/syscache.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "rotation.h"
#include "trusted_sql.h"

#define EXTENSION_NAME "bsoncrypt"

PG_FUNCTION_INFO_V1(bsoncrypt_check_install_schema);

/* The installed bsoncrypt extension of this database, or InvalidOid. */
Oid
bsoncrypt_extension_oid(void)
{
	return get_extension_oid(EXTENSION_NAME, true);
}

/* pg_extension.extnamespace of an extension */
static Oid
extension_schema(Oid extoid)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			nsp = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		nsp = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nsp;
}

static void
report_not_installed(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("extension \"%s\" is not installed in this database", EXTENSION_NAME),
			 errhint("Run CREATE EXTENSION %s.", EXTENSION_NAME)));
}

/*
 * The schema of the installed extension; InvalidOid if none and
 * missing_ok.  bsoncrypt's SQL names its objects "bsoncrypt.<name>", so
 * the schema must still be called that.
 */
Oid
bsoncrypt_schema_oid(bool missing_ok)
{
	Oid			extoid = bsoncrypt_extension_oid();
	Oid			nsp = OidIsValid(extoid) ? extension_schema(extoid) : InvalidOid;
	char	   *name;

	if (!OidIsValid(nsp))
	{
		if (!missing_ok)
			report_not_installed();
		return InvalidOid;
	}
	name = get_namespace_name(nsp);
	if (name == NULL || strcmp(name, EXTENSION_NAME) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the schema of extension \"%s\" is called \"%s\", not \"%s\"",
						EXTENSION_NAME, name ? name : "?", EXTENSION_NAME),
				 errhint("Rename it back with ALTER SCHEMA ... RENAME TO %s.", EXTENSION_NAME)));
	return nsp;
}

/*
 * Is relid the extension's own relation (a member, or an index on one)?
 * Used on what a name lookup found, and by code that is handed a relation
 * and must know whether it is ours.
 */
bool
bsoncrypt_is_own_relation(Oid relid, const char *name)
{
	Oid			extoid = bsoncrypt_extension_oid();
	Oid			member = relid;

	if (!OidIsValid(extoid) || !OidIsValid(relid))
		return false;
	if (name != NULL)
	{
		char	   *relname = get_rel_name(relid);

		if (relname == NULL || strcmp(relname, name) != 0)
			return false;
	}
	if (get_rel_relkind(relid) == RELKIND_INDEX)
		member = IndexGetRelation(relid, false);
	return get_rel_namespace(relid) == extension_schema(extoid) &&
		getExtensionOfObject(RelationRelationId, member) == extoid;
}

/*
 * The relation (table, index, sequence) of the extension called name.
 * InvalidOid if the extension or the relation does not exist and
 * missing_ok; an ERROR if a relation of that name in the extension's
 * schema is not the extension's own (someone planted it).
 */
Oid
bsoncrypt_relation_oid(const char *name, bool missing_ok)
{
	Oid			nsp = bsoncrypt_schema_oid(missing_ok);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(name, nsp) : InvalidOid;

	if (!OidIsValid(relid))
	{
		if (!missing_ok)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation %s.%s does not exist", EXTENSION_NAME, name),
					 errhint("Run CREATE EXTENSION %s in this database.", EXTENSION_NAME)));
		return InvalidOid;
	}
	if (!bsoncrypt_is_own_relation(relid, name))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("relation \"%s\" in the schema of extension \"%s\" is not part of the extension",
						name, EXTENSION_NAME),
				 errhint("Some role created it there; drop it, and check who can create objects in that schema.")));
	/* this database has the extension: let the rotation launcher know */
	rotation_note_extension();
	return relid;
}

/* ------------------------------------------------------------------------
 * SPI with a pinned search_path
 * ------------------------------------------------------------------------
 */

/* Pin search_path for what is parsed next; returns the GUC nest level to pop. */
static int
pin_search_path(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", BSONCRYPT_PINNED_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/*
 * SPI_execute_with_args, parsed and run with the pinned search_path.  On
 * an error the (sub)transaction's abort pops the setting, as for a
 * function's SET clause.
 */
int
bsoncrypt_spi_execute(const char *sql, int nargs, Oid *argtypes,
					  Datum *values, const char *nulls, bool read_only,
					  long tcount)
{
	int			nestlevel = pin_search_path();
	int			rc;

	rc = SPI_execute_with_args(sql, nargs, argtypes, values, nulls,
							   read_only, tcount);
	AtEOXact_GUC(true, nestlevel);
	return rc;
}

/*
 * SPI_cursor_open_with_args with the pinned search_path.  The query is
 * parsed and planned here; a later replan uses the search_path saved with
 * the plan, so fetching needs no pinning.
 */
Portal
bsoncrypt_spi_cursor_open(const char *sql, int nargs, Oid *argtypes,
						  Datum *values, const char *nulls, bool read_only)
{
	int			nestlevel = pin_search_path();
	Portal		portal;

	portal = SPI_cursor_open_with_args(NULL, sql, nargs, argtypes, values,
									   nulls, read_only, 0);
	AtEOXact_GUC(true, nestlevel);
	return portal;
}

/* SPI_prepare with the pinned search_path (saved with the plan for replans) */
SPIPlanPtr
bsoncrypt_spi_prepare(const char *sql, int nargs, Oid *argtypes)
{
	int			nestlevel = pin_search_path();
	SPIPlanPtr	plan;

	plan = SPI_prepare(sql, nargs, argtypes);
	AtEOXact_GUC(true, nestlevel);
	return plan;
}

/* ------------------------------------------------------------------------
 * The schema the extension is installed into
 * ------------------------------------------------------------------------
 */

/*
 * Can a role other than the owner create objects in the schema?  *creator
 * is one such role (ACL_ID_PUBLIC for PUBLIC).
 */
static bool
other_creator(Oid nsp, Oid owner, Oid *creator)
{
	HeapTuple	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	Datum		aclDatum;
	bool		isnull;
	bool		found = false;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for schema %u", nsp);
	aclDatum = SysCacheGetAttr(NAMESPACEOID, tuple, Anum_pg_namespace_nspacl, &isnull);
	if (!isnull)
	{
		Acl		   *acl = DatumGetAclP(aclDatum);
		AclItem    *items = ACL_DAT(acl);

		for (int i = 0; i < ACL_NUM(acl) && !found; i++)
		{
			if (items[i].ai_grantee != owner &&
				(ACLITEM_GET_PRIVS(items[i]) & ACL_CREATE) != 0)
			{
				*creator = items[i].ai_grantee;
				found = true;
			}
		}
	}
	ReleaseSysCache(tuple);
	return found;
}

/*
 * An object in the schema, if any: other than the extension being created
 * and the objects its script made so far.
 */
static bool
schema_holds_object(Oid nsp, ObjectAddress *found)
{
	Relation	rel = table_open(DependRelationId, AccessShareLock);
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		any = false;

	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(NamespaceRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(nsp));
	scan = systable_beginscan(rel, DependReferenceIndexId, true, NULL, 2, key);
	while (!any && HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tuple);

		if (dep->classid == ExtensionRelationId ||
			getExtensionOfObject(dep->classid, dep->objid) == CurrentExtensionObject)
			continue;
		found->classId = dep->classid;
		found->objectId = dep->objid;
		found->objectSubId = dep->objsubid;
		any = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return any;
}

/*
 * _check_install_schema(): the first statement of the install script.
 * CREATE EXTENSION uses an existing schema called bsoncrypt whoever owns
 * it; a role that created it first could have planted functions and
 * operators there that the extension's own functions, running as a
 * superuser, would then call.  Refuse a schema that the installing role
 * does not own, that other roles may create objects in, or that already
 * holds objects.
 */
Datum
bsoncrypt_check_install_schema(PG_FUNCTION_ARGS)
{
	Oid			nsp;
	Oid			owner;
	Oid			creator;
	ObjectAddress object;
	HeapTuple	tuple;

	if (!creating_extension)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s can only run in CREATE EXTENSION", "_check_install_schema()")));
	nsp = extension_schema(CurrentExtensionObject);
	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nsp));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for schema %u", nsp);
	owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	ReleaseSysCache(tuple);

	if (owner != GetUserId())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("schema \"%s\" already exists and is owned by role \"%s\", not by the role installing extension \"%s\"",
						get_namespace_name(nsp), GetUserNameFromId(owner, true),
						EXTENSION_NAME),
				 errdetail("Objects another role created in it would run with the privileges of bsoncrypt's functions."),
				 errhint("Drop the schema (or let the installing role own it and check what it holds), then install again.")));
	if (other_creator(nsp, owner, &creator))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may create objects in schema \"%s\"",
						creator != ACL_ID_PUBLIC ? GetUserNameFromId(creator, true) : "public",
						get_namespace_name(nsp)),
				 errhint("REVOKE CREATE ON SCHEMA %s FROM that role, then install again.",
						 get_namespace_name(nsp))));
	if (schema_holds_object(nsp, &object))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("schema \"%s\" already holds %s", get_namespace_name(nsp),
						getObjectDescription(&object, true)),
				 errhint("Install bsoncrypt into a schema that holds nothing else: move or drop what is there.")));

	/* the database has the extension once this commits: rotate there */
	rotation_note_extension();
	PG_RETURN_VOID();
}
