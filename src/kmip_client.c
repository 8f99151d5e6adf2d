/*-------------------------------------------------------------------------
 *
 * kmip_client.c
 *	  The network side of the kmip master-key provider: the settings that
 *	  say where the KMIP server is and how to authenticate to it, and one
 *	  request/response round trip over TLS.
 *
 *	  TLS: OpenSSL 3, TLS 1.2 or later; the server's certificate must chain
 *	  to bsoncrypt.kmip_ca_file and match the endpoint's host (name or IP
 *	  address); the client presents bsoncrypt.kmip_cert_file with the key in
 *	  bsoncrypt.kmip_key_file (a file only the server's OS user may read, as
 *	  for ssl_key_file; it is read with read(2) into a buffer zeroed after
 *	  use).  Plaintext the TLS layer received is cleansed once read
 *	  (SSL_OP_CLEANSE_PLAINTEXT), so no fetched key stays in its buffers.
 *
 *	  Never blocking past the timeouts: the host name is resolved with
 *	  getaddrinfo_a, the socket is non-blocking, and every wait (resolution,
 *	  connect, TLS handshake, request, response) is bounded by
 *	  bsoncrypt.kmip_connect_timeout (everything up to an established TLS
 *	  session) or bsoncrypt.kmip_timeout (one request and its response),
 *	  while it also serves the backend's interrupts: a query cancel or a
 *	  termination ends the wait at once.  A connection an error or an
 *	  interrupt left in an unknown state is closed.
 *
 *	  One connection is kept per backend and reused while it is healthy:
 *	  not idle for more than KMIP_IDLE_REUSE_SECS, not closed by the server
 *	  (checked before each use), and no setting changed since.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "kmip_client.h"
#include "kms.h"

#define KMIP_IDLE_REUSE_SECS 30		/* older connections are replaced */
#define KMIP_KEY_FILE_MAX 65536		/* larger client key files are refused */
#define KMIP_HOST_MAX 253

/* settings */
static char *kmip_endpoint = NULL;
static char *kmip_ca_file = NULL;
static char *kmip_cert_file = NULL;
static char *kmip_key_file = NULL;
static int	kmip_connect_timeout = 5000;	/* ms */
static int	kmip_timeout = 10000;	/* ms */

uint64		kmip_settings_generation = 1;

/* host and port of an endpoint */
typedef struct KmipHostPort
{
	char		host[KMIP_HOST_MAX + 1];
	char		port[8];
	bool		ipv6;
} KmipHostPort;

/* the connection of this backend */
typedef struct KmipConnection
{
	char	   *endpoint;		/* normalized "host:port", TopMemoryContext */
	int			sock;
	SSL_CTX    *ctx;
	SSL		   *ssl;
	uint64		generation;		/* kmip_settings_generation when opened */
	TimestampTz last_used;
	bool		busy;			/* a request is under way */
} KmipConnection;

static KmipConnection conn = {NULL, -1, NULL, NULL, 0, 0, false};

/*
 * The response being read (palloc'd): an error or an interrupt in the
 * middle of reading it zeroes what arrived (it may be part of a key).
 */
static uint8_t *reply_buf = NULL;
static size_t reply_len = 0;

/* ----------------------------------------------------------------
 *		Endpoints and settings
 * ----------------------------------------------------------------
 */

/* host[:port] or [ipv6]:port into *hp; false if it is not valid. */
static bool
parse_endpoint(const char *text, KmipHostPort *hp)
{
	const char *host = text;
	size_t		host_len;
	const char *port = NULL;
	long		port_num;
	char	   *end;

	memset(hp, 0, sizeof(*hp));
	if (text[0] == '[')
	{
		const char *close = strchr(text, ']');

		if (close == NULL)
			return false;
		host = text + 1;
		host_len = close - host;
		if (close[1] == ':')
			port = close + 2;
		else if (close[1] != '\0')
			return false;
		hp->ipv6 = true;
		if (host_len == 0 || strspn(host, "0123456789abcdefABCDEF:.") < host_len)
			return false;
	}
	else
	{
		const char *colon = strchr(text, ':');

		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			return false;		/* an IPv6 address needs brackets */
		host_len = colon ? (size_t) (colon - text) : strlen(text);
		if (colon)
			port = colon + 1;
		if (host_len == 0 ||
			strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") < host_len)
			return false;
	}
	if (host_len > KMIP_HOST_MAX)
		return false;
	memcpy(hp->host, host, host_len);
	hp->host[host_len] = '\0';
	if (port == NULL)
		strlcpy(hp->port, KMIP_DEFAULT_PORT, sizeof(hp->port));
	else
	{
		if (*port == '\0' || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5)
			return false;
		port_num = strtol(port, &end, 10);
		if (port_num < 1 || port_num > 65535)
			return false;
		snprintf(hp->port, sizeof(hp->port), "%ld", port_num);
	}
	return true;
}

/* "host:port" (lower case, IPv6 in brackets), palloc'd */
static char *
normalized_endpoint(const KmipHostPort *hp)
{
	char	   *host = pstrdup(hp->host);

	for (char *p = host; *p; p++)
		*p = pg_tolower((unsigned char) *p);
	return psprintf(hp->ipv6 ? "[%s]:%s" : "%s:%s", host, hp->port);
}

bool
kmip_valid_endpoint(const char *endpoint)
{
	KmipHostPort hp;

	return endpoint != NULL && parse_endpoint(endpoint, &hp);
}

/* The endpoints of the setting, trimmed; NIL if it is empty.  false if one is invalid. */
static bool
split_endpoints(const char *setting, List **endpoints, char **bad)
{
	char	   *copy = pstrdup(setting ? setting : "");
	char	   *item;
	char	   *save = NULL;

	*endpoints = NIL;
	for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save))
	{
		char	   *end;

		item += strspn(item, " \t");
		end = item + strlen(item);
		while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (!kmip_valid_endpoint(item))
		{
			*bad = item;
			return false;
		}
		*endpoints = lappend(*endpoints, item);
	}
	return true;
}

static bool
check_endpoint_setting(char **newval, void **extra, GucSource source)
{
	List	   *endpoints;
	char	   *bad;

	if (!split_endpoints(*newval, &endpoints, &bad))
	{
		GUC_check_errdetail("\"%s\" is not a KMIP endpoint: give host[:port] or [IPv6 address]:port, separated by commas.", bad);
		return false;
	}
	return true;
}

static void
assign_string_setting(const char *newval, void *extra)
{
	kmip_settings_generation++;
}

static void
assign_int_setting(int newval, void *extra)
{
	kmip_settings_generation++;
}

void
kmip_client_define_settings(void)
{
	DefineCustomStringVariable("bsoncrypt.kmip_endpoint",
							   "KMIP server of the kmip master-key provider: host[:port] (port 5696 by default).",
							   "More endpoints may follow, separated by commas: key documents may name those; new keys use the first.",
							   &kmip_endpoint,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   check_endpoint_setting, assign_string_setting, NULL);
	DefineCustomStringVariable("bsoncrypt.kmip_ca_file",
							   "File of CA certificates (PEM) the KMIP server's certificate must chain to.",
							   NULL,
							   &kmip_ca_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, assign_string_setting, NULL);
	DefineCustomStringVariable("bsoncrypt.kmip_cert_file",
							   "Client certificate (PEM, may hold its chain) presented to the KMIP server.",
							   NULL,
							   &kmip_cert_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, assign_string_setting, NULL);
	DefineCustomStringVariable("bsoncrypt.kmip_key_file",
							   "Private key (PEM, unencrypted) of the KMIP client certificate.",
							   "Must be readable only by the server's OS user (or root and its group).",
							   &kmip_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, assign_string_setting, NULL);
	DefineCustomIntVariable("bsoncrypt.kmip_connect_timeout",
							"Longest wait to resolve, connect to and finish the TLS handshake with the KMIP server.",
							NULL,
							&kmip_connect_timeout,
							5000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, assign_int_setting, NULL);
	DefineCustomIntVariable("bsoncrypt.kmip_timeout",
							"Longest wait for the KMIP server to take a request and answer it.",
							NULL,
							&kmip_timeout,
							10000, 100, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, assign_int_setting, NULL);
}

static List *
configured_endpoints(void)
{
	List	   *endpoints;
	char	   *bad;

	if (!split_endpoints(kmip_endpoint, &endpoints, &bad) || endpoints == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no KMIP server is configured"),
				 errhint("Set bsoncrypt.kmip_endpoint (and kmip_ca_file, kmip_cert_file, kmip_key_file) in postgresql.conf, then reload.")));
	return endpoints;
}

const char *
kmip_default_endpoint(void)
{
	return (const char *) linitial(configured_endpoints());
}

void
kmip_check_endpoint_allowed(const char *endpoint)
{
	KmipHostPort hp;
	char	   *wanted;
	ListCell   *lc;

	if (!parse_endpoint(endpoint, &hp))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid KMIP endpoint \"%s\"", endpoint)));
	wanted = normalized_endpoint(&hp);
	foreach(lc, configured_endpoints())
	{
		KmipHostPort other;

		if (parse_endpoint((char *) lfirst(lc), &other) &&
			strcmp(normalized_endpoint(&other), wanted) == 0)
			return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("KMIP endpoint \"%s\" is not one of bsoncrypt.kmip_endpoint", endpoint),
			 errhint("A key document may name only a KMIP server the administrator listed in bsoncrypt.kmip_endpoint.")));
}

/* ----------------------------------------------------------------
 *		Waiting
 * ----------------------------------------------------------------
 */

/* Milliseconds left until deadline (0 if it passed). */
static long
ms_left(TimestampTz deadline)
{
	TimestampTz now = GetCurrentTimestamp();

	if (now >= deadline)
		return 0;
	return (long) ((deadline - now + 999) / 1000);
}

/*
 * Wait until the socket is ready for events (WL_SOCKET_READABLE or
 * _WRITEABLE) or deadline passes (false), serving interrupts meanwhile.
 */
static bool
wait_socket(int sock, int events, TimestampTz deadline)
{
	for (;;)
	{
		long		left = ms_left(deadline);
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (left <= 0)
			return false;
		rc = WaitLatchOrSocket(MyLatch,
							   events | WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   sock, left, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		if (rc & events)
			return true;
	}
}

/* ----------------------------------------------------------------
 *		Connecting
 * ----------------------------------------------------------------
 */

static void
close_connection(void)
{
	if (conn.ssl != NULL)
		SSL_free(conn.ssl);
	if (conn.ctx != NULL)
		SSL_CTX_free(conn.ctx);
	if (conn.sock >= 0)
		close(conn.sock);
	if (conn.endpoint != NULL)
		pfree(conn.endpoint);
	conn.ssl = NULL;
	conn.ctx = NULL;
	conn.sock = -1;
	conn.endpoint = NULL;
	conn.busy = false;
}

/* The last OpenSSL error, for messages (palloc'd); clears the queue. */
static char *
openssl_error(void)
{
	unsigned long err = ERR_get_error();
	char		buf[256];

	ERR_clear_error();
	if (err == 0)
		return pstrdup("no OpenSSL error reported");
	ERR_error_string_n(err, buf, sizeof(buf));
	return pstrdup(buf);
}

/*
 * Resolve host:port within deadline.  Numeric addresses need no lookup;
 * names are resolved by getaddrinfo_a, so that a slow resolver cannot
 * hold the backend past the deadline or an interrupt.  A lookup given up
 * while the resolver still works on it is left to it (a small leak).
 * (Resolution is only this one getaddrinfo_a call; the resolver's thread
 * blocks all signals.)
 */
static struct addrinfo *
resolve(const KmipHostPort *hp, const char *endpoint, TimestampTz deadline)
{
	struct addrinfo hints;
	struct addrinfo *result = NULL;
	struct gaicb *req;
	struct gaicb *list[1];
	int			rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	if (getaddrinfo(hp->host, hp->port, &hints, &result) == 0)
		return result;

	/* malloc: the resolver's thread may outlive this call */
	req = calloc(1, sizeof(struct gaicb) + sizeof(struct addrinfo));
	if (req == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	req->ar_name = strdup(hp->host);
	req->ar_service = strdup(hp->port);
	req->ar_request = (struct addrinfo *) (req + 1);
	((struct addrinfo *) req->ar_request)->ai_family = AF_UNSPEC;
	((struct addrinfo *) req->ar_request)->ai_socktype = SOCK_STREAM;
	((struct addrinfo *) req->ar_request)->ai_flags = AI_NUMERICSERV;
	list[0] = req;
	if (req->ar_name == NULL || req->ar_service == NULL ||
		getaddrinfo_a(GAI_NOWAIT, list, 1, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not start resolving the host of KMIP server \"%s\"", endpoint)));
	while ((rc = gai_error(req)) == EAI_INPROGRESS)
	{
		long		left = ms_left(deadline);
		struct timespec ts;

		/* a cancel or a termination abandons the lookup to the resolver */
		CHECK_FOR_INTERRUPTS();
		if (left <= 0)
		{
			if (gai_cancel(req) == EAI_CANCELED)
			{
				free((void *) req->ar_name);
				free((void *) req->ar_service);
				free(req);
			}
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("timed out resolving the host of KMIP server \"%s\" after %d ms",
							endpoint, kmip_connect_timeout),
					 errhint("Name the KMIP server by IP address, or check the resolver; the wait is bsoncrypt.kmip_connect_timeout.")));
		}
		/* wake up often enough to see interrupts: signals interrupt the wait */
		left = Min(left, 100);
		ts.tv_sec = left / 1000;
		ts.tv_nsec = (left % 1000) * 1000000L;
		(void) gai_suspend((const struct gaicb *const *) list, 1, &ts);
	}
	result = req->ar_result;
	free((void *) req->ar_name);
	free((void *) req->ar_service);
	free(req);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not resolve the host of KMIP server \"%s\": %s",
						endpoint, gai_strerror(rc))));
	return result;
}

/* A non-blocking TCP connection to one of the addresses; ERROR if none. */
static int
connect_tcp(struct addrinfo *addrs, const char *endpoint, TimestampTz deadline)
{
	int			last_errno = 0;
	bool		timed_out = false;

	for (struct addrinfo *ai = addrs; ai != NULL; ai = ai->ai_next)
	{
		int			sock = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
								  ai->ai_protocol);
		int			err = 0;
		socklen_t	errlen = sizeof(err);

		if (sock < 0)
		{
			last_errno = errno;
			continue;
		}
		if (connect(sock, ai->ai_addr, ai->ai_addrlen) == 0)
			return sock;
		if (errno == EINPROGRESS)
		{
			bool		ready;

			PG_TRY();
			{
				ready = wait_socket(sock, WL_SOCKET_WRITEABLE, deadline);
			}
			PG_CATCH();
			{
				close(sock);
				PG_RE_THROW();
			}
			PG_END_TRY();
			if (!ready)
				timed_out = true;
			else if (getsockopt(sock, SOL_SOCKET, SO_ERROR, &err, &errlen) == 0 && err == 0)
				return sock;
			last_errno = err;
		}
		else
			last_errno = errno;
		close(sock);
		if (timed_out)
			break;
	}
	if (timed_out)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("timed out connecting to KMIP server \"%s\" after %d ms",
						endpoint, kmip_connect_timeout),
				 errhint("The wait is bsoncrypt.kmip_connect_timeout.")));
	errno = last_errno;
	ereport(ERROR,
			(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
			 errmsg("could not connect to KMIP server \"%s\": %m", endpoint)));
	return -1;					/* keep compiler quiet */
}

/*
 * The client's private key, read with read(2) into a buffer that is
 * zeroed afterwards.
 */
static EVP_PKEY *
load_client_key(void)
{
	char	   *buf;
	ssize_t		len = 0;
	int			fd;
	BIO		   *bio;
	EVP_PKEY   *key;

	kms_check_secret_file(kmip_key_file, "KMIP client key file");
	fd = OpenTransientFile(kmip_key_file, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open KMIP client key file: %m"),
				 errdetail_log("The KMIP client key file is \"%s\".", kmip_key_file)));
	buf = palloc(KMIP_KEY_FILE_MAX + 1);
	for (;;)
	{
		ssize_t		got = read(fd, buf + len, KMIP_KEY_FILE_MAX + 1 - len);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
		{
			if (got < 0)
				len = -1;
			break;
		}
		len += got;
		if (len > KMIP_KEY_FILE_MAX)
			break;
	}
	CloseTransientFile(fd);
	key = NULL;
	if (len > 0 && len <= KMIP_KEY_FILE_MAX)
	{
		bio = BIO_new_mem_buf(buf, (int) len);
		if (bio != NULL)
		{
			key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
			BIO_free(bio);
		}
	}
	explicit_bzero(buf, KMIP_KEY_FILE_MAX + 1);
	pfree(buf);
	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not load the private key in KMIP client key file: %s",
						len > KMIP_KEY_FILE_MAX ? "file too large" :
						len <= 0 ? "empty or unreadable" : openssl_error()),
				 errdetail_log("The KMIP client key file is \"%s\".", kmip_key_file),
				 errhint("It must hold an unencrypted PEM private key.")));
	return key;
}

static void
require_setting(const char *value, const char *name)
{
	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is not set", name),
				 errhint("The kmip provider needs bsoncrypt.kmip_ca_file, kmip_cert_file and kmip_key_file: KMIP is TLS with client certificates.")));
}

/* A TLS client context with the settings' CA, certificate and key. */
static SSL_CTX *
make_tls_context(void)
{
	SSL_CTX    *volatile ctx;

	require_setting(kmip_ca_file, "bsoncrypt.kmip_ca_file");
	require_setting(kmip_cert_file, "bsoncrypt.kmip_cert_file");
	require_setting(kmip_key_file, "bsoncrypt.kmip_key_file");
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a TLS context: %s", openssl_error())));
	PG_TRY();
	{
		EVP_PKEY   *key;

		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
		SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT | SSL_OP_NO_COMPRESSION |
							SSL_OP_NO_RENEGOTIATION);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		if (SSL_CTX_load_verify_locations(ctx, kmip_ca_file, NULL) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("could not load the KMIP CA file: %s", openssl_error()),
					 errdetail_log("The KMIP CA file is \"%s\".", kmip_ca_file)));
		if (SSL_CTX_use_certificate_chain_file(ctx, kmip_cert_file) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("could not load the KMIP client certificate file: %s", openssl_error()),
					 errdetail_log("The KMIP client certificate file is \"%s\".", kmip_cert_file)));
		key = load_client_key();
		if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1)
		{
			EVP_PKEY_free(key);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("the KMIP client key does not match the KMIP client certificate: %s",
							openssl_error()),
					 errdetail_log("The key file is \"%s\", the certificate file \"%s\".",
								   kmip_key_file, kmip_cert_file)));
		}
		EVP_PKEY_free(key);
	}
	PG_CATCH();
	{
		SSL_CTX_free(ctx);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return ctx;
}

/* Why the TLS handshake failed, for the error message (palloc'd). */
static char *
handshake_problem(SSL *ssl, int ret)
{
	long		verify = SSL_get_verify_result(ssl);
	int			err = SSL_get_error(ssl, ret);

	if (verify != X509_V_OK)
		return psprintf("server certificate verify failed: %s",
						X509_verify_cert_error_string(verify));
	if (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
		return pstrdup(ret == 0 || errno == 0 ? "the server closed the connection"
					   : strerror(errno));
	return openssl_error();
}

/* Open conn to endpoint (normalized) at host:port. */
static void
open_connection(const char *endpoint, const KmipHostPort *hp)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   kmip_connect_timeout);
	struct addrinfo *addrs;

	close_connection();
	conn.ctx = make_tls_context();
	addrs = resolve(hp, endpoint, deadline);
	PG_TRY();
	{
		conn.sock = connect_tcp(addrs, endpoint, deadline);
	}
	PG_FINALLY();
	{
		freeaddrinfo(addrs);
	}
	PG_END_TRY();

	conn.ssl = SSL_new(conn.ctx);
	if (conn.ssl == NULL || SSL_set_fd(conn.ssl, conn.sock) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not set up TLS for KMIP server \"%s\": %s",
						endpoint, openssl_error())));
	if (hp->ipv6 || strspn(hp->host, "0123456789.") == strlen(hp->host))
	{
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn.ssl), hp->host) != 1)
			elog(ERROR, "could not set the IP address to verify");
	}
	else if (SSL_set1_host(conn.ssl, hp->host) != 1 ||
			 SSL_set_tlsext_host_name(conn.ssl, hp->host) != 1)
		elog(ERROR, "could not set the host name to verify");

	for (;;)
	{
		int			ret;
		int			err;

		ERR_clear_error();
		errno = 0;
		ret = SSL_connect(conn.ssl);
		if (ret == 1)
			break;
		err = SSL_get_error(conn.ssl, ret);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		{
			if (!wait_socket(conn.sock, err == SSL_ERROR_WANT_READ ? WL_SOCKET_READABLE
							 : WL_SOCKET_WRITEABLE, deadline))
				ereport(ERROR,
						(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
						 errmsg("timed out in the TLS handshake with KMIP server \"%s\" after %d ms",
								endpoint, kmip_connect_timeout),
						 errhint("The wait is bsoncrypt.kmip_connect_timeout.")));
			continue;
		}
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not establish a TLS connection to KMIP server \"%s\": %s",
						endpoint, handshake_problem(conn.ssl, ret)),
				 errhint("Check bsoncrypt.kmip_ca_file (it must hold the CA of the server's certificate) and that the server accepts the client certificate bsoncrypt.kmip_cert_file.")));
	}
	conn.endpoint = MemoryContextStrdup(TopMemoryContext, endpoint);
	conn.generation = kmip_settings_generation;
	conn.last_used = GetCurrentTimestamp();
}

/* May the open connection serve endpoint now? */
static bool
connection_reusable(const char *endpoint)
{
	struct pollfd pfd;

	if (conn.ssl == NULL || conn.endpoint == NULL || conn.busy ||
		conn.generation != kmip_settings_generation ||
		strcmp(conn.endpoint, endpoint) != 0 ||
		TimestampDifferenceExceeds(conn.last_used, GetCurrentTimestamp(),
								   KMIP_IDLE_REUSE_SECS * 1000))
		return false;
	/* anything to read before we asked (a close_notify, EOF): not usable */
	if (SSL_pending(conn.ssl) > 0)
		return false;
	pfd.fd = conn.sock;
	pfd.events = POLLIN;
	pfd.revents = 0;
	return poll(&pfd, 1, 0) == 0;
}

/* ----------------------------------------------------------------
 *		Requests
 * ----------------------------------------------------------------
 */

typedef enum IoResult
{
	IO_OK,
	IO_CLOSED,					/* the server closed the connection */
	IO_TIMEOUT,
	IO_FAILED
} IoResult;

/* Write or read exactly len bytes before deadline. */
static IoResult
tls_io(bool writing, uint8_t *buf, size_t len, TimestampTz deadline,
	   char **problem)
{
	size_t		done = 0;

	while (done < len)
	{
		size_t		n = 0;
		int			ret;
		int			err;

		ERR_clear_error();
		errno = 0;
		ret = writing ? SSL_write_ex(conn.ssl, buf + done, len - done, &n)
			: SSL_read_ex(conn.ssl, buf + done, len - done, &n);
		if (ret == 1)
		{
			done += n;
			continue;
		}
		err = SSL_get_error(conn.ssl, ret);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
		{
			if (!wait_socket(conn.sock, err == SSL_ERROR_WANT_READ ? WL_SOCKET_READABLE
							 : WL_SOCKET_WRITEABLE, deadline))
				return IO_TIMEOUT;
			continue;
		}
		if (err == SSL_ERROR_ZERO_RETURN ||
			(err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 &&
			 (errno == 0 || errno == ECONNRESET || errno == EPIPE)))
			return IO_CLOSED;
		*problem = err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0
			? pstrdup(strerror(errno)) : openssl_error();
		return IO_FAILED;
	}
	return IO_OK;
}

/*
 * Send the request and read the response message into reply_buf.
 * Returns IO_OK, or what failed; *got_reply tells whether any byte of the
 * response arrived.
 */
static IoResult
exchange(const uint8_t *request, size_t request_len, bool *got_reply,
		 char **problem)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kmip_timeout);
	uint8_t		header[KMIP_HEADER_LEN];
	size_t		total;
	IoResult	r;

	*got_reply = false;
	r = tls_io(true, (uint8_t *) request, request_len, deadline, problem);
	if (r != IO_OK)
		return r;
	r = tls_io(false, header, sizeof(header), deadline, problem);
	if (r != IO_OK)
		return r;
	*got_reply = true;
	total = kmip_response_length(header);
	if (total == 0)
	{
		*problem = pstrdup("the reply is not a KMIP response message");
		return IO_FAILED;
	}
	reply_buf = palloc(total);
	reply_len = total;
	memcpy(reply_buf, header, sizeof(header));
	explicit_bzero(header, sizeof(header));
	return tls_io(false, reply_buf + sizeof(header), total - sizeof(header), deadline, problem);
}

/* Zero and forget the response being read. */
static void
discard_reply(void)
{
	if (reply_buf != NULL)
	{
		explicit_bzero(reply_buf, reply_len);
		pfree(reply_buf);
	}
	reply_buf = NULL;
	reply_len = 0;
}

static void
report_io_failure(IoResult r, const char *endpoint, const char *problem)
{
	if (r == IO_TIMEOUT)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("KMIP server \"%s\" did not answer within %d ms", endpoint, kmip_timeout),
				 errhint("The wait is bsoncrypt.kmip_timeout.")));
	if (r == IO_CLOSED)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("KMIP server \"%s\" closed the connection before answering", endpoint)));
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("could not exchange a message with KMIP server \"%s\": %s", endpoint, problem)));
}

void
kmip_call(const char *endpoint, const uint8_t *request, size_t request_len,
		  bool idempotent, uint8_t **msg, size_t *msg_len, KmipResponse *response)
{
	KmipHostPort hp;
	char	   *normalized;
	const char *malformed;

	if (!parse_endpoint(endpoint, &hp))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid KMIP endpoint \"%s\"", endpoint)));
	normalized = normalized_endpoint(&hp);
	reply_buf = NULL;
	PG_TRY();
	{
		for (int attempt = 1;; attempt++)
		{
			bool		reused = connection_reusable(normalized);
			bool		got_reply;
			char	   *problem = NULL;
			IoResult	r;

			if (!reused)
				open_connection(normalized, &hp);
			conn.busy = true;
			r = exchange(request, request_len, &got_reply, &problem);
			if (r == IO_OK)
				break;
			close_connection();
			discard_reply();
			/* a reused connection the server had closed: once more, anew */
			if (reused && !got_reply && r == IO_CLOSED && idempotent && attempt == 1)
				continue;
			report_io_failure(r, endpoint, problem);
		}
		conn.busy = false;
		conn.last_used = GetCurrentTimestamp();
		malformed = kmip_parse_response(reply_buf, reply_len, response);
		if (malformed != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("malformed response from KMIP server \"%s\": %s", endpoint, malformed)));
	}
	PG_CATCH();
	{
		/* an interrupt or error in the middle: the stream is in an unknown state */
		close_connection();
		if (reply_buf != NULL)
			explicit_bzero(reply_buf, reply_len);
		reply_buf = NULL;
		PG_RE_THROW();
	}
	PG_END_TRY();
	*msg = reply_buf;
	*msg_len = reply_len;
	reply_buf = NULL;
}

void
kmip_check_result(const char *endpoint, uint32_t operation, const char *id,
				  const KmipResponse *response)
{
	char	   *message;

	if (response->operation != 0 && response->operation != operation &&
		response->result_status == KMIP_STATUS_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("KMIP server \"%s\" answered %s with %s",
						endpoint, kmip_operation_name(operation),
						kmip_operation_name(response->operation))));
	if (response->result_status == KMIP_STATUS_SUCCESS)
		return;
	message = pnstrdup((const char *) response->result_message.data,
					   response->result_message.len);
	if (response->result_reason == KMIP_REASON_ITEM_NOT_FOUND && id != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("KMIP object \"%s\" does not exist on KMIP server \"%s\"", id, endpoint),
				 message[0] ? errdetail("The server said: %s", message) : 0,
				 errhint("The keyId of the key document or bsoncrypt.kmip_key_id must name an object of the KMIP server.")));
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("KMIP %s%s%s%s failed on KMIP server \"%s\": %s (%s)",
					kmip_operation_name(operation),
					id ? " of object \"" : "", id ? id : "", id ? "\"" : "",
					endpoint, kmip_result_reason_name(response->result_reason),
					kmip_result_status_name(response->result_status)),
			 message[0] ? errdetail("The server said: %s", message) : 0));
}
