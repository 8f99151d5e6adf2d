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
