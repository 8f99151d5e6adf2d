/*
 * hide_relations.c
 *	  Test stand-in for Citus, which hides its shard tables from pg_class in
 *	  normal sessions: a planner hook that adds
 *	      NOT (relname LIKE '<hide_relations.prefix>%')
 *	  to every query level that reads pg_class, so that SQL in the session
 *	  (also inside SQL and PL/pgSQL functions) does not see those relations
 *	  while they exist and work.  Catalog access from C is not filtered.
 *	  Loaded with LOAD or session_preload_libraries; an empty prefix hides
 *	  nothing.
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_collation_d.h"
#include "catalog/pg_type_d.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "optimizer/planner.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static char *hide_prefix = NULL;
static planner_hook_type prev_planner_hook = NULL;

/* NOT (rtindex.relname LIKE 'prefix%') */
static Node *
hiding_qual(Index rtindex)
{
	Var		   *relname = makeVar(rtindex, Anum_pg_class_relname, NAMEOID, -1,
								  C_COLLATION_OID, 0);
	Const	   *pattern = makeConst(TEXTOID, -1, C_COLLATION_OID, -1,
									CStringGetTextDatum(psprintf("%s%%", hide_prefix)),
									false, false);
	FuncExpr   *like = makeFuncExpr(F_NAMELIKE, BOOLOID,
									list_make2(relname, pattern),
									InvalidOid, C_COLLATION_OID,
									COERCE_EXPLICIT_CALL);

	return (Node *) makeBoolExpr(NOT_EXPR, list_make1(like), -1);
}

static bool
hide_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;
		Index		rtindex = 0;
		ListCell   *lc;

		foreach(lc, query->rtable)
		{
			RangeTblEntry *rte = lfirst(lc);

			rtindex++;
			if (rte->rtekind == RTE_RELATION && rte->relid == RelationRelationId)
				query->jointree->quals = make_and_qual(query->jointree->quals,
													   hiding_qual(rtindex));
		}
		return query_tree_walker(query, hide_walker, context, 0);
	}
	return expression_tree_walker(node, hide_walker, context);
}

static PlannedStmt *
hiding_planner(Query *parse, const char *query_string, int cursorOptions,
			   ParamListInfo boundParams)
{
	if (hide_prefix != NULL && hide_prefix[0] != '\0')
		hide_walker((Node *) parse, NULL);
	if (prev_planner_hook)
		return prev_planner_hook(parse, query_string, cursorOptions, boundParams);
	return standard_planner(parse, query_string, cursorOptions, boundParams);
}

void
_PG_init(void)
{
	DefineCustomStringVariable("hide_relations.prefix",
							   "Relations whose name starts with this are hidden from pg_class in SQL.",
							   NULL, &hide_prefix, "", PGC_USERSET, 0,
							   NULL, NULL, NULL);
	prev_planner_hook = planner_hook;
	planner_hook = hiding_planner;
}
