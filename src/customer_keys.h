/*-------------------------------------------------------------------------
 *
 * customer_keys.h
 *	  Customer-held master keys: the per-backend store of the keys clients
 *	  supply for one transaction (customer_keys.c), the "customer" provider
 *	  that wraps data keys with them (kms_customer.c), and the guard that
 *	  keeps them out of query texts, plans and the server log
 *	  (customer_key_guard.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSONCRYPT_CUSTOMER_KEYS_H
#define BSONCRYPT_CUSTOMER_KEYS_H

#include "postgres.h"
#include "fmgr.h"
#include "nodes/pg_list.h"

#include "fle_aead.h"

#define CUSTOMER_PROVIDER_NAME "customer"
#define CUSTOMER_KEY_CHECK_LEN 16
/* the C symbol of bsoncrypt.supply_customer_key: how the guard finds calls */
#define CUSTOMER_SUPPLY_SYMBOL "bsoncrypt_supply_customer_key"
/* every statement that supplies a key contains this (case-insensitively) */
#define CUSTOMER_SUPPLY_MARKER "supply_customer_key"

/* the store (customer_keys.c) */
extern bool customer_key_copy(const char *name, uint8_t key[FLE_KEY_LEN]);
extern bool customer_keys_supplied_any(void);
extern List *customer_key_names(void);
extern void customer_key_check_value(const uint8_t key[FLE_KEY_LEN],
									 uint8_t check[CUSTOMER_KEY_CHECK_LEN]);
extern bool customer_key_usable_here(void);

/* the guard (customer_key_guard.c) */
extern void customer_key_guard_install(void);
extern bool customer_key_guard_active(void);
extern void customer_key_guard_check_call(FunctionCallInfo fcinfo, int key_argno);

/* the key cache (key_cache.c) drops what customer keys unwrapped */
extern void key_cache_forget_customer_keys(void);

#endif							/* BSONCRYPT_CUSTOMER_KEYS_H */
