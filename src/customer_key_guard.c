/*-------------------------------------------------------------------------
 *
 * customer_key_guard.c
 *	  Keeping customer keys out of query texts, plans, statistics and the
 *	  server log.
 *
 *	  A customer key reaches the server only as a bind parameter of a
 *	  statement the client sends with the extended query protocol and that
 *	  calls bsoncrypt.supply_customer_key directly.  Then:
 *
 *	  - the query text holds "$2", never the key: pg_stat_activity,
 *		pg_stat_statements and auto_explain's "Query Text" see only that;
 *	  - parse analysis (post_parse_analyze_hook) refuses any other call: a
 *		key that is not an external parameter (a literal, an expression), a
 *		call inside another statement (SQL PREPARE, EXPLAIN, COPY, a view or
 *		a function body), or a statement whose text does not name the
 *		function (so that the log filter below always recognises it);
 *	  - the planner (planner_hook) plans such statements without the
 *		parameters' values: PostgreSQL folds bound parameters into
 *		constants in custom plans, which would put the key into the plan
 *		(EXPLAIN VERBOSE, auto_explain.log_verbose);
 *	  - the function itself checks again when it runs (a call reached in
 *		another way: a wrapper function, a trigger, a cursor): it must run
 *		at the top executor level, outside any utility statement, with its
 *		key argument an external parameter and the statement text naming
 *		it;
 *	  - the log filter (emit_log_hook) handles every message emitted while
 *		such a statement is current: PostgreSQL logs bind parameter values
 *		(log_statement, log_min_duration_statement, log_duration with
 *		log_parameter_max_length, and on errors log_parameter_max_length_on_error,
 *		which any user may set) before the function runs, in DETAIL and
 *		CONTEXT.  The filter drops DETAIL and CONTEXT, cuts the message at
 *		the statement's text (what follows, e.g. a plan or parameters, is
 *		dropped too), and hides the STATEMENT line.  It works on the text,
 *		so it also covers refused attempts with a literal key.  A message
 *		that names the function otherwise (auto_explain logs a plan when the
 *		portal is dropped, during the next statement, and may escape the
 *		text as JSON) is cut at the name.
 *
 *	  All of this needs bsoncrypt to be loaded before the session's first
 *	  statement (shared_preload_libraries or session_preload_libraries):
 *	  otherwise a statement could be logged before the filter exists, and
 *	  supply_customer_key refuses to run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "executor/executor.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/planner.h"
#include "parser/analyze.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "customer_keys.h"

#define REDACTED_STATEMENT "<a statement supplying a customer key: not logged>"

static post_parse_analyze_hook_type prev_post_parse_analyze = NULL;
static planner_hook_type prev_planner = NULL;
static ExecutorRun_hook_type prev_executor_run = NULL;
static ExecutorFinish_hook_type prev_executor_finish = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;
static emit_log_hook_type prev_emit_log = NULL;

static bool guard_installed = false;
/* loaded before the session ran any statement: the log filter saw them all */
static bool loaded_before_statements = false;
static int	executor_depth = 0;
static int	utility_depth = 0;

/* funcid -> is it supply_customer_key's C function?  Reset on pg_proc changes. */
typedef struct SupplyFuncEntry
{
	Oid			funcid;
	bool		is_supply;
} SupplyFuncEntry;

static HTAB *supply_funcs = NULL;

static void
supply_funcs_invalidate(Datum arg, int cacheid, uint32 hashvalue)
{
	if (supply_funcs != NULL)
	{
		hash_destroy(supply_funcs);
		supply_funcs = NULL;
	}
}

/*
 * Is funcid a function whose C symbol is supply_customer_key's, whatever
 * its SQL name and schema?
 */
static bool
is_supply_function(Oid funcid)
{
	SupplyFuncEntry *entry;
	bool		found;
	HeapTuple	tuple;

	if (supply_funcs == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(SupplyFuncEntry);
		ctl.hcxt = TopMemoryContext;
		supply_funcs = hash_create("bsoncrypt supply functions", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(supply_funcs, &funcid, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->is_supply;

	found = false;
	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (HeapTupleIsValid(tuple))
	{
		Form_pg_proc proc = (Form_pg_proc) GETSTRUCT(tuple);

		if (proc->prolang == ClanguageId)
		{
			bool		isnull;
			Datum		src = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_prosrc, &isnull);

			found = !isnull && strcmp(TextDatumGetCString(src), CUSTOMER_SUPPLY_SYMBOL) == 0;
		}
		ReleaseSysCache(tuple);
	}
	/* an invalidation may have destroyed the table meanwhile */
	if (supply_funcs != NULL)
	{
		entry = hash_search(supply_funcs, &funcid, HASH_ENTER, NULL);
		entry->is_supply = found;
	}
	return found;
}

/* ----------------------------------------------------------------
 *		Finding calls in a query
 * ----------------------------------------------------------------
 */

typedef struct SupplyCalls
{
	int			calls;
	int			bad_keys;		/* key argument not an external parameter */
} SupplyCalls;

static bool
is_external_param(Node *node)
{
	while (node != NULL && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	return node != NULL && IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXTERN;
}

static bool
find_supply_calls(Node *node, SupplyCalls *found)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr) && is_supply_function(((FuncExpr *) node)->funcid))
	{
		FuncExpr   *call = (FuncExpr *) node;

		found->calls++;
		if (list_length(call->args) < 2 || !is_external_param(lsecond(call->args)))
			found->bad_keys++;
	}
	if (IsA(node, Query))
	{
		Query	   *query = (Query *) node;

		/* EXPLAIN and the like hold their analysed query */
		if (query->utilityStmt != NULL && IsA(query->utilityStmt, ExplainStmt))
			(void) find_supply_calls(((ExplainStmt *) query->utilityStmt)->query, found);
		if (query->utilityStmt != NULL && IsA(query->utilityStmt, CreateTableAsStmt))
			(void) find_supply_calls(((CreateTableAsStmt *) query->utilityStmt)->query, found);
		return query_tree_walker(query, find_supply_calls, found, 0);
	}
	return expression_tree_walker(node, find_supply_calls, found);
}

static bool
mentions_marker(const char *text)
{
	return text != NULL && strcasestr(text, CUSTOMER_SUPPLY_MARKER) != NULL;
}

/* ----------------------------------------------------------------
 *		Hooks
 * ----------------------------------------------------------------
 */

static void
refuse_not_direct(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("bsoncrypt.supply_customer_key must be called directly by a statement the client sends"),
			 errhint("Send SELECT bsoncrypt.supply_customer_key($1, $2) with the key as a bind parameter (extended query protocol); not inside PREPARE, EXPLAIN, COPY, a view, a cursor or another function.")));
}

static void
refuse_key_not_parameter(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("the key given to bsoncrypt.supply_customer_key must be a bind parameter"),
			 errhint("A key written into a statement's text can reach logs, pg_stat_activity and client histories: consider it disclosed and use another. Send the key as a bind parameter ($2) with the extended query protocol.")));
}

static void
guard_post_parse_analyze(ParseState *pstate, Query *query, JumbleState *jstate)
{
	SupplyCalls found = {0, 0};

	if (prev_post_parse_analyze)
		prev_post_parse_analyze(pstate, query, jstate);
	if (!IsTransactionState())
		return;
	(void) find_supply_calls((Node *) query, &found);
	if (found.calls == 0)
		return;
	if (found.bad_keys > 0)
		refuse_key_not_parameter();
	if (utility_depth > 0 || executor_depth > 0 ||
		pstate->p_sourcetext == NULL || pstate->p_sourcetext != debug_query_string ||
		query->utilityStmt != NULL)
		refuse_not_direct();
	if (!mentions_marker(pstate->p_sourcetext))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a statement supplying a customer key must call bsoncrypt.supply_customer_key by that name"),
				 errhint("The server log filter recognises such statements by the name %s.",
						 CUSTOMER_SUPPLY_MARKER)));
}

static PlannedStmt *
guard_planner(Query *parse, const char *query_string, int cursorOptions,
			  ParamListInfo boundParams)
{
	if (boundParams != NULL && IsTransactionState())
	{
		SupplyCalls found = {0, 0};

		(void) find_supply_calls((Node *) parse, &found);
		/* plan with $n, never with the key folded into a constant */
		if (found.calls > 0)
			boundParams = NULL;
	}
	/* parallel workers never have customer keys */
	if (customer_keys_supplied_any())
		cursorOptions &= ~CURSOR_OPT_PARALLEL_OK;
	if (prev_planner)
		return prev_planner(parse, query_string, cursorOptions, boundParams);
	return standard_planner(parse, query_string, cursorOptions, boundParams);
}

static void
guard_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count,
				   bool execute_once)
{
	executor_depth++;
	PG_TRY();
	{
		if (prev_executor_run)
			prev_executor_run(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		executor_depth--;
	}
	PG_END_TRY();
}

static void
guard_executor_finish(QueryDesc *queryDesc)
{
	executor_depth++;
	PG_TRY();
	{
		if (prev_executor_finish)
			prev_executor_finish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		executor_depth--;
	}
	PG_END_TRY();
}

static void
guard_process_utility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	utility_depth++;
	PG_TRY();
	{
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		utility_depth--;
	}
	PG_END_TRY();
}

static bool
raised_by_bsoncrypt(const ErrorData *edata)
{
	return edata->filename != NULL &&
		(strcmp(edata->filename, "customer_key_guard.c") == 0 ||
		 strcmp(edata->filename, "customer_keys.c") == 0 ||
		 strcmp(edata->filename, "kms_customer.c") == 0);
}

/*
 * The log filter.  It runs in ErrorContext, before the message is written
 * to the server log or sent to the client, and must not fail.
 */
static void
guard_emit_log(ErrorData *edata)
{
	const char *statement = debug_query_string;
	bool		current = mentions_marker(statement);	/* not empty then */
	/* messages that may quote a statement: logged ones, not errors */
	bool		foreign = edata->message != NULL && edata->elevel < ERROR &&
		!raised_by_bsoncrypt(edata);
	char	   *at = NULL;

	if (mentions_marker(edata->internalquery))
	{
		edata->internalquery = NULL;
		edata->internalpos = 0;
	}
	if (current && edata->message != NULL)
		at = strstr(edata->message, statement);

	/*
	 * A message quoting such a statement otherwise: escaped (e.g.
	 * auto_explain.log_format = json) or after the statement ended
	 * (auto_explain logs when the portal is dropped, during the next
	 * statement).  Cut at the function's name, unless the message is an
	 * error (errors name functions, e.g. "permission denied", and quote no
	 * statement) or bsoncrypt raised it (never with a key).
	 */
	if (at == NULL && foreign)
		at = strcasestr(edata->message, CUSTOMER_SUPPLY_MARKER);
	if (at != NULL)
		edata->message = psprintf("%.*s%s", (int) (at - edata->message),
								  edata->message, REDACTED_STATEMENT);
	if (current || at != NULL)
	{
		edata->detail = NULL;
		edata->detail_log = NULL;
		edata->context = NULL;
		edata->cursorpos = 0;
		edata->hide_stmt = true;
	}
	if (prev_emit_log)
		prev_emit_log(edata);
}

void
customer_key_guard_install(void)
{
	if (guard_installed)
		return;
	guard_installed = true;
	/* preloaded (shared or session): no statement ran yet in this process */
	loaded_before_statements = (debug_query_string == NULL);
	CacheRegisterSyscacheCallback(PROCOID, supply_funcs_invalidate, (Datum) 0);
	prev_post_parse_analyze = post_parse_analyze_hook;
	post_parse_analyze_hook = guard_post_parse_analyze;
	prev_planner = planner_hook;
	planner_hook = guard_planner;
	prev_executor_run = ExecutorRun_hook;
	ExecutorRun_hook = guard_executor_run;
	prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = guard_executor_finish;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = guard_process_utility;
	prev_emit_log = emit_log_hook;
	emit_log_hook = guard_emit_log;
}

bool
customer_key_guard_active(void)
{
	return guard_installed && loaded_before_statements;
}

/*
 * Checks made by supply_customer_key when it runs (the call may have
 * been reached in a way parse analysis did not see, e.g. in a function).
 */
void
customer_key_guard_check_call(FunctionCallInfo fcinfo, int key_argno)
{
	Node	   *expr = fcinfo->flinfo ? fcinfo->flinfo->fn_expr : NULL;
	Node	   *key_arg = NULL;

	if (!customer_key_guard_active())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("customer keys need bsoncrypt in shared_preload_libraries"),
				 errhint("Without it the server may log a statement's parameters before bsoncrypt can filter them.")));
	if (expr != NULL && IsA(expr, FuncExpr) && list_length(((FuncExpr *) expr)->args) > key_argno)
		key_arg = list_nth(((FuncExpr *) expr)->args, key_argno);
	if (!is_external_param(key_arg))
		refuse_key_not_parameter();
	if (executor_depth != 1 || utility_depth != 0 || !mentions_marker(debug_query_string))
		refuse_not_direct();
}
