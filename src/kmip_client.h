/*-------------------------------------------------------------------------
 *
 * kmip_client.h
 *	  Talking to a KMIP server over TLS with a client certificate
 *	  (kmip_client.c): its settings, endpoints, and one request/response
 *	  round trip with timeouts that a backend can cancel.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSONCRYPT_KMIP_CLIENT_H
#define BSONCRYPT_KMIP_CLIENT_H

#include "postgres.h"

#include "kmip_ttlv.h"

/* the port of an endpoint that names none (IANA's KMIP port) */
#define KMIP_DEFAULT_PORT "5696"

/*
 * Bumped whenever a KMIP setting changes (a reload): connections and what
 * kms_kmip.c caches about the server are dropped then.
 */
extern uint64 kmip_settings_generation;

extern void kmip_client_define_settings(void);

/* The default endpoint (the first of bsoncrypt.kmip_endpoint); ERROR if none. */
extern const char *kmip_default_endpoint(void);
/* Is an endpoint, as a key document names it, syntactically valid? */
extern bool kmip_valid_endpoint(const char *endpoint);
/* ERROR unless bsoncrypt.kmip_endpoint lists this endpoint. */
extern void kmip_check_endpoint_allowed(const char *endpoint);

/*
 * One request to endpoint and its response.  *msg (palloc'd, *msg_len
 * bytes) holds the response message, which *response points into: the
 * caller zeroes it when it may hold a secret, and frees it.  Raises an
 * ERROR (with SQLSTATE class 08 or 08P01) if the server cannot be reached,
 * the TLS handshake fails, a timeout passes or the response is malformed.
 * A response that reports a failed operation is returned as it is
 * (kmip_check_result reports it).  idempotent: the request may be sent
 * again on a new connection when a reused one turns out closed.
 */
extern void kmip_call(const char *endpoint, const uint8_t *request,
					  size_t request_len, bool idempotent,
					  uint8_t **msg, size_t *msg_len, KmipResponse *response);

/*
 * ERROR if the response reports a failure of operation on object id (NULL
 * when there is none): Item Not Found is 42704, others 38000, with the
 * server's reason and message.
 */
extern void kmip_check_result(const char *endpoint, uint32_t operation,
							  const char *id, const KmipResponse *response);

#endif							/* BSONCRYPT_KMIP_CLIENT_H */
