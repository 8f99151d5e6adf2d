/*-------------------------------------------------------------------------
 *
 * bsoncrypt.c
 *	  Module entry point: _PG_init and the settings that do not belong to
 *	  one feature.  Each feature registers its own settings from here, so
 *	  that the order of registration is in one place.
 *
 *-------------------------------------------------------------------------
 */
#include "bsoncrypt.h"

#include "postmaster/bgworker.h"
#include "utils/guc.h"

#include "cluster.h"
#include "customer_keys.h"
#include "kms.h"
#include "key_audit.h"
#include "key_cache.h"
#include "tde.h"
#include "tde_index.h"
#include "rotation.h"

PG_MODULE_MAGIC;

int			bsoncrypt_bson_output = BSON_OUTPUT_RELAXED;

static const struct config_enum_entry bson_output_options[] = {
	{"relaxed", BSON_OUTPUT_RELAXED, false},
	{"canonical", BSON_OUTPUT_CANONICAL, false},
	{NULL, 0, false}
};

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomEnumVariable("bsoncrypt.bson_output",
							 "Text output format of bsoncrypt.bson values.",
							 "relaxed or canonical MongoDB Extended JSON.",
							 &bsoncrypt_bson_output,
							 BSON_OUTPUT_RELAXED,
							 bson_output_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	kms_define_settings();
	key_cache_define_settings();
	key_audit_define_settings();
	rotation_init();
	tde_define_settings();
	tde_install_hooks();
	cluster_init();
	customer_key_guard_install();
	eb_define_settings();
	eb_install_hooks();

	MarkGUCPrefixReserved("bsoncrypt");
}

/*
 * Start a dynamic background worker of this library connected to database
 * dboid: function is its entry point, type its bgw_type (the name shown is
 * "<type> for database <oid>"); notify_pid, if not 0, hears of its start
 * and end.  False if no worker slot was free.
 */
bool
bsoncrypt_start_database_worker(const char *function, const char *type,
								Oid dboid, pid_t notify_pid)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "bsoncrypt", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s for database %u", type, dboid);
	strlcpy(worker.bgw_type, type, BGW_MAXLEN);
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = notify_pid;
	return RegisterDynamicBackgroundWorker(&worker, NULL);
}
