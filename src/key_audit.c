/*-------------------------------------------------------------------------
 *
 * key_audit.c
 *	  The audit trail of key use: what an event records (who, when, what,
 *	  result), the table bsoncrypt.key_audit it is written to, the optional
 *	  JSON line in the server log, the triggers that record changes of the
 *	  key vault and of table keys, the counting of unwraps, and the
 *	  retention function.
 *
 *	  Two paths:
 *	  - changes (a data key created, deleted, rewrapped, a rotation started
 *		...) are inserted in the transaction that makes them, so that the
 *		row commits or rolls back with the change; their log line is
 *		written when the transaction commits;
 *	  - failures (unwrap failures, provider errors), unwrap counts and
 *		customer keys supplied happen in transactions that may roll back,
 *		or read-only ones: they go to a shared-memory queue that a
 *		background worker drains into the table (key_audit_queue.c), and
 *		their log line is written at once.  An event that cannot be queued
 *		is written to the server log whatever bsoncrypt.audit_log says.
 *
 *	  Unwraps are counted per session, key and period (key_cache_ttl, at
 *	  least KEY_AUDIT_COUNT_PERIOD_SECS): one row per key and period
 *	  carries the count.  Cache hits are not seen here at all, so the
 *	  encrypt/decrypt hot path does no audit work.
 *
 *	  The table is append-only: triggers refuse UPDATE, DELETE and
 *	  TRUNCATE (ENABLE ALWAYS, so session_replication_role does not skip
 *	  them) except the DELETE of bsoncrypt.purge_key_audit(), which is
 *	  itself recorded.  Rows are inserted directly into the heap (no SQL,
 *	  no privilege checked), so no role needs (or gets) INSERT on it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <netdb.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/parallel.h"
#include "catalog/indexing.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "common/ip.h"
#include "executor/spi.h"
#include "libpq/libpq-be.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inet.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relfilenodemap.h"
#include "utils/syscache.h"

#include "bsoncrypt.h"
#include "key_audit.h"
#include "key_cache.h"
#include "trusted_sql.h"

PG_FUNCTION_INFO_V1(bsoncrypt_key_audit_key_vault);
PG_FUNCTION_INFO_V1(bsoncrypt_key_audit_relation_keys);
PG_FUNCTION_INFO_V1(bsoncrypt_key_audit_append_only);
PG_FUNCTION_INFO_V1(bsoncrypt_purge_key_audit);

#define KEY_AUDIT_COUNT_PERIOD_SECS 60

bool		key_audit_enabled = true;
bool		key_audit_log = false;

static const char *const kind_names[KEY_AUDIT_NKINDS] = {
	[KEY_AUDIT_DATA_KEY_CREATED] = "data_key_created",
	[KEY_AUDIT_DATA_KEY_IMPORTED] = "data_key_imported",
	[KEY_AUDIT_DATA_KEY_DELETED] = "data_key_deleted",
	[KEY_AUDIT_DATA_KEY_ALT_NAMES_CHANGED] = "data_key_alt_names_changed",
	[KEY_AUDIT_DATA_KEY_REWRAPPED] = "data_key_rewrapped",
	[KEY_AUDIT_DATA_KEY_STATUS_CHANGED] = "data_key_status_changed",
	[KEY_AUDIT_KEY_VAULT_TRUNCATED] = "key_vault_truncated",
	[KEY_AUDIT_TABLE_KEY_CREATED] = "table_key_created",
	[KEY_AUDIT_TABLE_KEY_DELETED] = "table_key_deleted",
	[KEY_AUDIT_TABLE_KEY_REWRAPPED] = "table_key_rewrapped",
	[KEY_AUDIT_ROTATION_STARTED] = "rotation_started",
	[KEY_AUDIT_ROTATION_FINISHED] = "rotation_finished",
	[KEY_AUDIT_ROTATION_FAILED] = "rotation_failed",
	[KEY_AUDIT_PURGED] = "audit_purged",
	[KEY_AUDIT_DATA_KEY_UNWRAPPED] = "data_key_unwrapped",
	[KEY_AUDIT_TABLE_KEY_UNWRAPPED] = "table_key_unwrapped",
	[KEY_AUDIT_UNWRAP_FAILED] = "unwrap_failed",
	[KEY_AUDIT_PROVIDER_ERROR] = "provider_error",
	[KEY_AUDIT_CUSTOMER_KEY_SUPPLIED] = "customer_key_supplied",
	[KEY_AUDIT_EVENTS_LOST] = "audit_events_lost",
};

/* log lines of this transaction's events, written at commit */
typedef struct PendingLine
{
	int			nest_level;
	char	   *line;
} PendingLine;

static List *pending_lines = NIL;	/* in TopTransactionContext */
static bool callbacks_registered = false;

/* the DELETE of purge_key_audit() is running */
static bool purge_in_progress = false;

/* unwrap counts of this session */
typedef struct UnwrapCountKey
{
	KeyAuditKind kind;
	pg_uuid_t	key_id;
	char		detail[64];		/* table keys: which one */
	Oid			role;
} UnwrapCountKey;

typedef struct UnwrapCount
{
	UnwrapCountKey key;
	KeyAuditRecord rec;
} UnwrapCount;

static HTAB *unwrap_counts = NULL;
static TimestampTz counts_oldest = 0;	/* 0: no count pending */
static bool exit_flush_registered = false;

/* who: looked up once, or when the role changes */
static Oid	cached_session_role = InvalidOid;
static char cached_session_role_name[NAMEDATALEN];
static Oid	cached_effective_role = InvalidOid;
static char cached_effective_role_name[NAMEDATALEN];
static bool client_addr_known = false;
static char cached_client_addr[64];

static MemoryContext audit_error_cxt = NULL;

/* ----------------------------------------------------------------
 *		Settings
 * ----------------------------------------------------------------
 */

void
key_audit_define_settings(void)
{
	DefineCustomBoolVariable("bsoncrypt.audit",
							 "Record key events in bsoncrypt.key_audit.",
							 "Off records nothing (for benchmarks and troubleshooting); set in postgresql.conf.",
							 &key_audit_enabled,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("bsoncrypt.audit_log",
							 "Also write each key event to the server log as one line of JSON.",
							 NULL,
							 &key_audit_log,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	key_audit_queue_init();
}

const char *
key_audit_kind_name(KeyAuditKind kind)
{
	if (kind < 0 || kind >= KEY_AUDIT_NKINDS)
		return "unknown";
	return kind_names[kind];
}

/* ----------------------------------------------------------------
 *		Filling a record
 * ----------------------------------------------------------------
 */

/* Copy src, cut at a character boundary to fit in size bytes. */
static void
copy_clipped(char *dst, size_t size, const char *src)
{
	int			len;

	if (src == NULL)
	{
		dst[0] = '\0';
		return;
	}
	len = strlen(src);
	if ((size_t) len >= size)
		len = pg_mbcliplen(src, len, size - 1);
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static const char *
role_name(Oid role, Oid *cached, char *name)
{
	if (role != *cached)
	{
		char	   *found = GetUserNameFromId(role, true);

		copy_clipped(name, NAMEDATALEN, found ? found : "");
		*cached = role;
	}
	return name;
}

static const char *
client_addr(void)
{
	if (!client_addr_known)
	{
		cached_client_addr[0] = '\0';
		if (MyProcPort != NULL && MyProcPort->raddr.addr.ss_family != AF_UNIX)
		{
			char		host[NI_MAXHOST];

			if (pg_getnameinfo_all(&MyProcPort->raddr.addr, MyProcPort->raddr.salen,
								   host, sizeof(host), NULL, 0, NI_NUMERICHOST) == 0)
			{
				/* an IPv6 scope (fe80::1%eth0) is no inet: drop it */
				char	   *pct = strchr(host, '%');

				if (pct)
					*pct = '\0';
				copy_clipped(cached_client_addr, sizeof(cached_client_addr), host);
			}
		}
		client_addr_known = true;
	}
	return cached_client_addr;
}

/*
 * The relation of a table key: its name when relid is valid and the
 * catalog can be read.
 */
static void
fill_relation(KeyAuditRecord *rec, const KeyAuditEvent *ev)
{
	if (OidIsValid(ev->relid) && IsTransactionState())
	{
		char	   *name = get_rel_name(ev->relid);
		char	   *nsp = get_namespace_name(get_rel_namespace(ev->relid));

		if (name != NULL && nsp != NULL)
		{
			copy_clipped(rec->relation, sizeof(rec->relation),
						 quote_qualified_identifier(nsp, name));
			return;
		}
	}
	copy_clipped(rec->relation, sizeof(rec->relation), ev->relation);
}

static void
fill_record(KeyAuditRecord *rec, const KeyAuditEvent *ev)
{
	memset(rec, 0, sizeof(*rec));
	rec->dboid = MyDatabaseId;
	rec->kind = ev->kind;
	rec->event_time = GetCurrentTimestamp();
	rec->count = ev->count > 0 ? ev->count : 1;
	if (ev->key_id)
	{
		rec->has_key_id = true;
		rec->key_id = *ev->key_id;
	}
	rec->sqlerrcode = ev->sqlerrcode;
	copy_clipped(rec->key_alt_name, sizeof(rec->key_alt_name), ev->key_alt_name);
	copy_clipped(rec->provider, sizeof(rec->provider), ev->provider);
	copy_clipped(rec->master_key_version, sizeof(rec->master_key_version),
				 ev->master_key_version);
	fill_relation(rec, ev);
	/* a detail that does not fit would not be JSON: leave it out */
	if (ev->detail && strlen(ev->detail) < sizeof(rec->detail))
		strcpy(rec->detail, ev->detail);
	copy_clipped(rec->message, sizeof(rec->message), ev->message);

	if (OidIsValid(GetSessionUserId()))
		copy_clipped(rec->session_role, NAMEDATALEN,
					 role_name(GetSessionUserId(), &cached_session_role,
							   cached_session_role_name));
	if (OidIsValid(GetUserId()))
		copy_clipped(rec->effective_role, NAMEDATALEN,
					 role_name(GetUserId(), &cached_effective_role,
							   cached_effective_role_name));
	rec->backend_pid = MyProcPid;
	snprintf(rec->session_id, sizeof(rec->session_id), "%lx.%x",
			 (long) MyStartTime, MyProcPid);
	copy_clipped(rec->client_addr, sizeof(rec->client_addr), client_addr());
	/* background workers (the rotation worker) by their type */
	copy_clipped(rec->application_name, sizeof(rec->application_name),
				 MyBgworkerEntry != NULL ? MyBgworkerEntry->bgw_type : application_name);
}

/* ----------------------------------------------------------------
 *		The table
 * ----------------------------------------------------------------
 */

/* column numbers of bsoncrypt.key_audit (extension/parts/50_key_audit.sql) */
enum
{
	Anum_ka_event_time = 1,
	Anum_ka_last_time,
	Anum_ka_event,
	Anum_ka_count,
	Anum_ka_result,
	Anum_ka_sqlstate,
	Anum_ka_message,
	Anum_ka_key_id,
	Anum_ka_key_alt_name,
	Anum_ka_provider,
	Anum_ka_master_key_version,
	Anum_ka_relation,
	Anum_ka_detail,
	Anum_ka_session_role,
	Anum_ka_effective_role,
	Anum_ka_backend_pid,
	Anum_ka_session_id,
	Anum_ka_client_addr,
	Anum_ka_application_name,
	Anum_ka_database,
	Natts_ka = Anum_ka_database
};

static void
set_text(Datum *values, bool *nulls, int attnum, const char *value)
{
	if (value == NULL || value[0] == '\0')
		nulls[attnum - 1] = true;
	else
		values[attnum - 1] = CStringGetTextDatum(value);
}

/*
 * Insert rec into bsoncrypt.key_audit in the current transaction.  A
 * direct heap insert (as relation_keys rows are written), not SQL: it runs
 * in the middle of other statements (triggers, table rewrites, a new table
 * key during an INSERT), needs no privilege of the role acting, and fires
 * nothing.  Nothing happens when the table is missing (an extension being
 * dropped, or not yet updated).
 */
void
key_audit_insert_record(const KeyAuditRecord *rec)
{
	Oid			relid = bsoncrypt_relation_oid("key_audit", true);
	Relation	rel;
	Datum		values[Natts_ka];
	bool		nulls[Natts_ka];
	HeapTuple	tuple;
	NameData	dbname;
	char	   *db;

	if (!OidIsValid(relid))
		return;
	rel = table_open(relid, RowExclusiveLock);
	if (RelationGetDescr(rel)->natts != Natts_ka ||
		rel->rd_rel->relam != HEAP_TABLE_AM_OID)
		elog(ERROR, "bsoncrypt.key_audit does not have the expected layout");
	memset(nulls, false, sizeof(nulls));
	values[Anum_ka_event_time - 1] = TimestampTzGetDatum(rec->event_time);
	values[Anum_ka_last_time - 1] = TimestampTzGetDatum(rec->last_time);
	nulls[Anum_ka_last_time - 1] = rec->last_time == 0;
	set_text(values, nulls, Anum_ka_event, key_audit_kind_name(rec->kind));
	values[Anum_ka_count - 1] = Int64GetDatum(rec->count);
	set_text(values, nulls, Anum_ka_result, rec->sqlerrcode ? "error" : "ok");
	set_text(values, nulls, Anum_ka_sqlstate,
			 rec->sqlerrcode ? unpack_sql_state(rec->sqlerrcode) : NULL);
	set_text(values, nulls, Anum_ka_message, rec->message);
	if (rec->has_key_id)
	{
		pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));

		*id = rec->key_id;
		values[Anum_ka_key_id - 1] = UUIDPGetDatum(id);
	}
	else
		nulls[Anum_ka_key_id - 1] = true;
	set_text(values, nulls, Anum_ka_key_alt_name, rec->key_alt_name);
	set_text(values, nulls, Anum_ka_provider, rec->provider);
	set_text(values, nulls, Anum_ka_master_key_version, rec->master_key_version);
	set_text(values, nulls, Anum_ka_relation, rec->relation);
	if (rec->detail[0])
		values[Anum_ka_detail - 1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(rec->detail));
	else
		nulls[Anum_ka_detail - 1] = true;
	set_text(values, nulls, Anum_ka_session_role, rec->session_role);
	set_text(values, nulls, Anum_ka_effective_role, rec->effective_role);
	values[Anum_ka_backend_pid - 1] = Int32GetDatum(rec->backend_pid);
	set_text(values, nulls, Anum_ka_session_id, rec->session_id);
	if (rec->client_addr[0])
		values[Anum_ka_client_addr - 1] = DirectFunctionCall1(inet_in, CStringGetDatum(rec->client_addr));
	else
		nulls[Anum_ka_client_addr - 1] = true;
	set_text(values, nulls, Anum_ka_application_name, rec->application_name);
	db = get_database_name(MyDatabaseId);
	namestrcpy(&dbname, db ? db : "");
	values[Anum_ka_database - 1] = NameGetDatum(&dbname);

	tuple = heap_form_tuple(RelationGetDescr(rel), values, nulls);
	CatalogTupleInsert(rel, tuple);
	heap_freetuple(tuple);
	table_close(rel, RowExclusiveLock);
}

/* ----------------------------------------------------------------
 *		The log line
 * ----------------------------------------------------------------
 */

static void
json_field(StringInfo buf, const char *name, const char *value)
{
	if (value == NULL || value[0] == '\0')
		return;
	appendStringInfo(buf, ",\"%s\":", name);
	escape_json(buf, value);
}

static char *
record_json(const KeyAuditRecord *rec)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"time\":");
	escape_json(&buf, timestamptz_to_str(rec->event_time));
	json_field(&buf, "event", key_audit_kind_name(rec->kind));
	json_field(&buf, "result", rec->sqlerrcode ? "error" : "ok");
	if (rec->sqlerrcode)
		json_field(&buf, "sqlstate", unpack_sql_state(rec->sqlerrcode));
	json_field(&buf, "message", rec->message);
	appendStringInfo(&buf, ",\"count\":" INT64_FORMAT, rec->count);
	if (rec->last_time != 0)
		json_field(&buf, "last_time", timestamptz_to_str(rec->last_time));
	if (rec->has_key_id)
	{
		char		id[UUID_LEN * 2 + 5];
		const unsigned char *d = rec->key_id.data;

		snprintf(id, sizeof(id),
				 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
				 d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9],
				 d[10], d[11], d[12], d[13], d[14], d[15]);
		json_field(&buf, "key_id", id);
	}
	json_field(&buf, "key_alt_name", rec->key_alt_name);
	json_field(&buf, "provider", rec->provider);
	json_field(&buf, "master_key_version", rec->master_key_version);
	json_field(&buf, "relation", rec->relation);
	if (rec->detail[0])
		appendStringInfo(&buf, ",\"detail\":%s", rec->detail);
	json_field(&buf, "session_role", rec->session_role);
	json_field(&buf, "effective_role", rec->effective_role);
	appendStringInfo(&buf, ",\"backend_pid\":%d", rec->backend_pid);
	json_field(&buf, "session_id", rec->session_id);
	json_field(&buf, "client_addr", rec->client_addr);
	json_field(&buf, "application_name", rec->application_name);
	appendStringInfo(&buf, ",\"database_oid\":%u}", rec->dboid);
	return buf.data;
}

static void
log_line(const char *json)
{
	ereport(LOG,
			(errmsg("bsoncrypt audit: %s", json),
			 errhidestmt(true),
			 errhidecontext(true)));
}

void
key_audit_log_record(const KeyAuditRecord *rec)
{
	char	   *json = record_json(rec);

	log_line(json);
	pfree(json);
}

static void
audit_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (pending_lines == NIL)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		foreach(lc, pending_lines)
			log_line(((PendingLine *) lfirst(lc))->line);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		pending_lines = NIL;	/* freed with TopTransactionContext */
}

/* lines of a rolled-back subtransaction go; a committed one's move up */
static void
audit_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	ListCell   *lc;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	foreach(lc, pending_lines)
	{
		PendingLine *p = lfirst(lc);

		if (p->nest_level < level)
			continue;
		if (event == SUBXACT_EVENT_COMMIT_SUB)
			p->nest_level = level - 1;
		else
			pending_lines = foreach_delete_current(pending_lines, lc);
	}
}

static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(audit_xact_callback, NULL);
	RegisterSubXactCallback(audit_subxact_callback, NULL);
	callbacks_registered = true;
}

/* ----------------------------------------------------------------
 *		Recording
 * ----------------------------------------------------------------
 */

/* Events that must survive a rollback, or come from read-only work. */
static bool
is_durable(const KeyAuditEvent *ev)
{
	return ev->kind >= KEY_AUDIT_DATA_KEY_UNWRAPPED || ev->sqlerrcode != 0 ||
		!IsTransactionState() || XactReadOnly || RecoveryInProgress() ||
		IsInParallelMode();
}

/* Queue a record for the table; if it cannot be queued, log it anyway. */
static void
record_durably(const KeyAuditRecord *rec)
{
	bool		queued = key_audit_enqueue(rec);

	if (key_audit_log || !queued)
		key_audit_log_record(rec);
}

void
key_audit_event(const KeyAuditEvent *ev)
{
	KeyAuditRecord rec;

	if (!key_audit_enabled)
		return;
	fill_record(&rec, ev);
	if (is_durable(ev))
	{
		record_durably(&rec);
		return;
	}
	key_audit_insert_record(&rec);
	if (key_audit_log)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
		PendingLine *p = palloc(sizeof(PendingLine));

		p->nest_level = GetCurrentTransactionNestLevel();
		p->line = record_json(&rec);
		pending_lines = lappend(pending_lines, p);
		MemoryContextSwitchTo(old);
		register_callbacks();
	}
}

/*
 * In PG_CATCH: record ev as failed with the error being handled, which
 * stays the current error (the caller re-throws it).
 */
void
key_audit_error(KeyAuditEvent *ev)
{
	MemoryContext old;
	ErrorData  *edata;

	if (!key_audit_enabled)
		return;
	if (audit_error_cxt == NULL)
		audit_error_cxt = AllocSetContextCreate(TopMemoryContext, "bsoncrypt audit error",
												ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(audit_error_cxt);
	edata = CopyErrorData();
	ev->sqlerrcode = edata->sqlerrcode;
	ev->message = edata->message;
	key_audit_event(ev);
	MemoryContextSwitchTo(old);
	MemoryContextReset(audit_error_cxt);
}

void
key_audit_customer_key_supplied(const char *name)
{
	KeyAuditEvent ev = {0};

	ev.kind = KEY_AUDIT_CUSTOMER_KEY_SUPPLIED;
	ev.provider = "customer";
	ev.key_alt_name = name;
	key_audit_event(&ev);
}

/* ----------------------------------------------------------------
 *		Counting unwraps
 * ----------------------------------------------------------------
 */

static void
flush_unwrap_counts(bool all)
{
	HASH_SEQ_STATUS seq;
	UnwrapCount *c;
	TimestampTz now = GetCurrentTimestamp();
	int			period = Max(key_cache_ttl, KEY_AUDIT_COUNT_PERIOD_SECS);

	if (unwrap_counts == NULL)
		return;
	counts_oldest = 0;
	hash_seq_init(&seq, unwrap_counts);
	while ((c = hash_seq_search(&seq)) != NULL)
	{
		if (all || TimestampDifferenceExceeds(c->rec.event_time, now, period * 1000))
		{
			record_durably(&c->rec);
			hash_search(unwrap_counts, &c->key, HASH_REMOVE, NULL);
		}
		else if (counts_oldest == 0 || c->rec.event_time < counts_oldest)
			counts_oldest = c->rec.event_time;
	}
}

static void
flush_at_exit(int code, Datum arg)
{
	flush_unwrap_counts(true);
}

static void
counts_xact_callback(XactEvent event, void *arg)
{
	if (counts_oldest == 0)
		return;
	if ((event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT) &&
		TimestampDifferenceExceeds(counts_oldest, GetCurrentTimestamp(),
								   Max(key_cache_ttl, KEY_AUDIT_COUNT_PERIOD_SECS) * 1000))
		flush_unwrap_counts(false);
}

void
key_audit_count_unwrap(const KeyAuditEvent *ev)
{
	UnwrapCountKey key;
	UnwrapCount *c;
	bool		found;

	if (!key_audit_enabled)
		return;
	if (unwrap_counts == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(UnwrapCountKey);
		ctl.entrysize = sizeof(UnwrapCount);
		unwrap_counts = hash_create("bsoncrypt unwrap counts", 64, &ctl,
									HASH_ELEM | HASH_BLOBS);
		RegisterXactCallback(counts_xact_callback, NULL);
	}
	/*
	 * on_shmem_exit, not before_shmem_exit: this runs inside whatever asked
	 * for the key, e.g. btbulkdelete of an encrypted index, whose
	 * PG_ENSURE_ERROR_CLEANUP cancels its own before_shmem_exit callback
	 * and fails if another was registered after it.  Registered now, the
	 * callback runs before the earlier-registered ProcKill and shared
	 * memory detach, so the queue is still usable.
	 */
	if (!exit_flush_registered)
	{
		on_shmem_exit(flush_at_exit, (Datum) 0);
		exit_flush_registered = true;
	}
	memset(&key, 0, sizeof(key));
	key.kind = ev->kind;
	if (ev->key_id)
		key.key_id = *ev->key_id;
	if (ev->detail)
		strlcpy(key.detail, ev->detail, sizeof(key.detail));
	key.role = GetUserId();

	c = hash_search(unwrap_counts, &key, HASH_ENTER, &found);
	if (!found)
	{
		fill_record(&c->rec, ev);
		c->rec.count = 0;
		if (counts_oldest == 0)
			counts_oldest = c->rec.event_time;
	}
	c->rec.count++;
	c->rec.last_time = GetCurrentTimestamp();
	/* a new master key version starts a new row */
	if (ev->master_key_version &&
		strcmp(c->rec.master_key_version, ev->master_key_version) != 0)
	{
		c->rec.count--;
		record_durably(&c->rec);
		fill_record(&c->rec, ev);
	}
	if (counts_oldest != 0 &&
		TimestampDifferenceExceeds(counts_oldest, c->rec.last_time,
								   Max(key_cache_ttl, KEY_AUDIT_COUNT_PERIOD_SECS) * 1000))
		flush_unwrap_counts(false);
}

/* ----------------------------------------------------------------
 *		Triggers
 * ----------------------------------------------------------------
 */

/*
 * Wrapped key material _new_key_material made in this transaction
 * (key_vault.c), by a 64-bit hash: an INSERT of one of them is a create,
 * any other INSERT an import.
 */
static HTAB *new_materials = NULL;
static LocalTransactionId new_materials_lxid = InvalidLocalTransactionId;

static uint64
material_hash(const bytea *material)
{
	return DatumGetUInt64(hash_bytes_extended((const unsigned char *) VARDATA_ANY(material),
											  VARSIZE_ANY_EXHDR(material), 0));
}

void
key_audit_note_new_material(const bytea *material)
{
	uint64		h = material_hash(material);

	if (new_materials == NULL || new_materials_lxid != MyProc->lxid)
	{
		HASHCTL		ctl;

		if (new_materials != NULL)
			hash_destroy(new_materials);
		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(uint64);
		new_materials = hash_create("bsoncrypt new key materials", 16, &ctl,
									HASH_ELEM | HASH_BLOBS);
		new_materials_lxid = MyProc->lxid;
	}
	(void) hash_search(new_materials, &h, HASH_ENTER, NULL);
}

static bool
bytea_equal(Datum a, Datum b)
{
	bytea	   *x = DatumGetByteaPP(a);
	bytea	   *y = DatumGetByteaPP(b);

	return VARSIZE_ANY_EXHDR(x) == VARSIZE_ANY_EXHDR(y) &&
		memcmp(VARDATA_ANY(x), VARDATA_ANY(y), VARSIZE_ANY_EXHDR(x)) == 0;
}

/* made by _new_key_material in this transaction (a create), else an import */
static bool
material_is_new(Datum material)
{
	uint64		h;
	bool		found;

	if (new_materials == NULL || new_materials_lxid != MyProc->lxid)
		return false;
	h = material_hash(DatumGetByteaPP(material));
	(void) hash_search(new_materials, &h, HASH_REMOVE, &found);
	return found;
}

static char *
text_attr(HeapTuple tuple, TupleDesc desc, int attnum)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, attnum, desc, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* the provider named by a masterKey document, or NULL */
static char *
document_provider(HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, Anum_key_vault_master_key, desc, &isnull);
	BsonData   *doc;
	bson_t		b;
	bson_iter_t it;

	if (isnull)
		return NULL;
	doc = DatumGetBsonP(d);
	if (!bson_init_static(&b, BsonDataPtr(doc), BsonDataLen(doc)) ||
		!bson_iter_init_find(&it, &b, "provider") || !BSON_ITER_HOLDS_UTF8(&it))
		return NULL;
	return pstrdup(bson_iter_utf8(&it, NULL));
}

/* keyAltNames as a JSON array, and the first one */
static void
alt_names_json(HeapTuple tuple, TupleDesc desc, StringInfo buf, char **first)
{
	bool		isnull;
	Datum		d = heap_getattr(tuple, Anum_key_vault_key_alt_names, desc, &isnull);
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n = 0;

	appendStringInfoChar(buf, '[');
	if (!isnull)
		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &elem_nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *name;

		if (elem_nulls[i])
			continue;
		name = TextDatumGetCString(elems[i]);
		if (i > 0)
			appendStringInfoChar(buf, ',');
		escape_json(buf, name);
		if (first && *first == NULL)
			*first = name;
	}
	appendStringInfoChar(buf, ']');
}

static bool
attr_equal(HeapTuple a, HeapTuple b, TupleDesc desc, int attnum)
{
	bool		anull,
				bnull;
	Datum		ad = heap_getattr(a, attnum, desc, &anull);
	Datum		bd = heap_getattr(b, attnum, desc, &bnull);

	if (anull || bnull)
		return anull == bnull;
	if (TupleDescAttr(desc, attnum - 1)->attlen == -1)
		return bytea_equal(ad, bd); /* bytea, text, bson, text[]: as bytes */
	return datumIsEqual(ad, bd, TupleDescAttr(desc, attnum - 1)->attbyval,
						TupleDescAttr(desc, attnum - 1)->attlen);
}

static void
key_vault_row_event(KeyAuditKind kind, HeapTuple tuple, TupleDesc desc,
					const char *detail)
{
	KeyAuditEvent ev = {0};
	StringInfoData names;
	char	   *first = NULL;
	bool		isnull;
	Datum		id = heap_getattr(tuple, Anum_key_vault_id, desc, &isnull);

	initStringInfo(&names);
	alt_names_json(tuple, desc, &names, &first);
	ev.kind = kind;
	ev.key_id = isnull ? NULL : DatumGetUUIDP(id);
	ev.key_alt_name = first;
	ev.provider = document_provider(tuple, desc);
	ev.master_key_version = text_attr(tuple, desc, Anum_key_vault_master_key_version);
	ev.detail = detail ? detail : psprintf("{\"key_alt_names\":%s}", names.data);
	key_audit_event(&ev);
}

/* AFTER INSERT OR UPDATE OR DELETE ON key_vault FOR EACH ROW, and TRUNCATE */
Datum
bsoncrypt_key_audit_key_vault(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "bsoncrypt_key_audit_key_vault: not called as a trigger");
	desc = RelationGetDescr(td->tg_relation);
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		KeyAuditEvent ev = {0};

		ev.kind = KEY_AUDIT_KEY_VAULT_TRUNCATED;
		key_audit_event(&ev);
	}
	else if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		bool		isnull;
		Datum		material = heap_getattr(td->tg_trigtuple, Anum_key_vault_key_material,
											desc, &isnull);

		key_vault_row_event(!isnull && material_is_new(material) ?
							KEY_AUDIT_DATA_KEY_CREATED : KEY_AUDIT_DATA_KEY_IMPORTED,
							td->tg_trigtuple, desc, NULL);
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
		key_vault_row_event(KEY_AUDIT_DATA_KEY_DELETED, td->tg_trigtuple, desc, NULL);
	else
	{
		HeapTuple	old = td->tg_trigtuple;
		HeapTuple	new = td->tg_newtuple;

		if (!attr_equal(old, new, desc, Anum_key_vault_key_alt_names))
		{
			StringInfoData detail;

			initStringInfo(&detail);
			appendStringInfoString(&detail, "{\"before\":");
			alt_names_json(old, desc, &detail, NULL);
			appendStringInfoString(&detail, ",\"after\":");
			alt_names_json(new, desc, &detail, NULL);
			appendStringInfoChar(&detail, '}');
			key_vault_row_event(KEY_AUDIT_DATA_KEY_ALT_NAMES_CHANGED, new, desc, detail.data);
		}
		if (!attr_equal(old, new, desc, Anum_key_vault_key_material) ||
			!attr_equal(old, new, desc, Anum_key_vault_master_key) ||
			!attr_equal(old, new, desc, Anum_key_vault_master_key_version))
		{
			StringInfoData detail;

			initStringInfo(&detail);
			appendStringInfoString(&detail, "{\"from_provider\":");
			escape_json(&detail, document_provider(old, desc) ? document_provider(old, desc) : "");
			appendStringInfoString(&detail, ",\"from_version\":");
			escape_json(&detail, text_attr(old, desc, Anum_key_vault_master_key_version) ?
						text_attr(old, desc, Anum_key_vault_master_key_version) : "");
			appendStringInfoChar(&detail, '}');
			key_vault_row_event(KEY_AUDIT_DATA_KEY_REWRAPPED, new, desc, detail.data);
		}
		if (!attr_equal(old, new, desc, Anum_key_vault_status))
			key_vault_row_event(KEY_AUDIT_DATA_KEY_STATUS_CHANGED, new, desc, NULL);
	}
	PG_RETURN_POINTER(NULL);
}

/* column numbers of bsoncrypt.relation_keys (extension/parts/40_encrypted_heap.sql) */
#define Anum_rk_key_id				1
#define Anum_rk_reltablespace		2
#define Anum_rk_relfilenode			3
#define Anum_rk_key_material		4
#define Anum_rk_provider			5
#define Anum_rk_master_key_version	6

/* AFTER UPDATE ON relation_keys FOR EACH ROW: a table key rewrapped */
Datum
bsoncrypt_key_audit_relation_keys(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	old;
	HeapTuple	new;
	KeyAuditEvent ev = {0};
	bool		isnull;
	Oid			spc;
	Oid			node;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		elog(ERROR, "bsoncrypt_key_audit_relation_keys: not called as an update trigger");
	desc = RelationGetDescr(td->tg_relation);
	old = td->tg_trigtuple;
	new = td->tg_newtuple;
	if (attr_equal(old, new, desc, Anum_rk_key_material) &&
		attr_equal(old, new, desc, Anum_rk_provider) &&
		attr_equal(old, new, desc, Anum_rk_master_key_version))
		PG_RETURN_POINTER(NULL);
	spc = DatumGetObjectId(heap_getattr(new, Anum_rk_reltablespace, desc, &isnull));
	node = DatumGetObjectId(heap_getattr(new, Anum_rk_relfilenode, desc, &isnull));
	ev.kind = KEY_AUDIT_TABLE_KEY_REWRAPPED;
	ev.relid = RelidByRelfilenode(spc, node);
	ev.relation = psprintf("file %u/%u", spc, node);
	ev.provider = text_attr(new, desc, Anum_rk_provider);
	ev.master_key_version = text_attr(new, desc, Anum_rk_master_key_version);
	{
		StringInfoData detail;
		char	   *from = text_attr(old, desc, Anum_rk_master_key_version);

		initStringInfo(&detail);
		appendStringInfo(&detail, "{\"table_key\":%d,\"from_version\":",
						 DatumGetInt32(heap_getattr(new, Anum_rk_key_id, desc, &isnull)));
		escape_json(&detail, from ? from : "");
		appendStringInfoChar(&detail, '}');
		ev.detail = detail.data;
	}
	key_audit_event(&ev);
	PG_RETURN_POINTER(NULL);
}

/* BEFORE UPDATE OR DELETE (each row) OR TRUNCATE ON key_audit */
Datum
bsoncrypt_key_audit_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "bsoncrypt_key_audit_append_only: not called as a trigger");
	if (purge_in_progress && TRIGGER_FIRED_BY_DELETE(td->tg_event) &&
		TRIGGER_FIRED_FOR_ROW(td->tg_event))
		PG_RETURN_POINTER(td->tg_trigtuple);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("bsoncrypt.key_audit is append-only"),
			 errdetail("Its rows cannot be updated, deleted or truncated."),
			 errhint("Remove old rows with bsoncrypt.purge_key_audit(before timestamptz).")));
	PG_RETURN_POINTER(NULL);
}

static Oid
relation_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * purge_key_audit(before timestamptz) -> bigint: delete the rows of events
 * before that time; the purge itself is recorded.
 */
Datum
bsoncrypt_purge_key_audit(PG_FUNCTION_ARGS)
{
	TimestampTz before = PG_GETARG_TIMESTAMPTZ(0);
	Oid			relid = bsoncrypt_relation_oid("key_audit", false);
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		values[1];
	Oid			save_userid;
	int			save_sec_context;
	uint64		deleted = 0;
	KeyAuditEvent ev = {0};

	values[0] = TimestampTzGetDatum(before);
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(relation_owner(relid),
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	purge_in_progress = true;
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (bsoncrypt_spi_execute("DELETE FROM bsoncrypt.key_audit"
								  " WHERE event_time OPERATOR(pg_catalog.<) $1",
								  1, argtypes, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not purge bsoncrypt.key_audit");
		deleted = SPI_processed;
		SPI_finish();
	}
	PG_FINALLY();
	{
		purge_in_progress = false;
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();

	ev.kind = KEY_AUDIT_PURGED;
	ev.detail = psprintf("{\"before\":\"%s\",\"rows\":" UINT64_FORMAT "}",
						 timestamptz_to_str(before), deleted);
	key_audit_event(&ev);
	PG_RETURN_INT64((int64) deleted);
}
