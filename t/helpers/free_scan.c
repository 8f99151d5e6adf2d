/*
 * free_scan.c: an LD_PRELOAD library for t/013_key_hygiene.pl that reports
 * memory given back while still holding secrets.
 *
 * In processes named "postgres" it wraps free() (memory PostgreSQL's
 * allocator returns to malloc: blocks of deleted or reset memory contexts,
 * large chunks), fclose() and pclose() (the stdio buffer of a file or
 * pipe, freed inside libc), and looks in what is about to be released for
 * the byte strings given in BSONCRYPT_FREE_SCAN_NEEDLES
 * ("name=hex,name=hex,..."); each hit appends "<pid> <where> <name>" to the
 * file BSONCRYPT_FREE_SCAN_LOG.  Other programs (pg_ctl, the shell running
 * a master key command) are left alone.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_NEEDLES 16
#define MAX_NEEDLE_LEN 128

extern void __libc_free(void *ptr);

static int	active;
static int	nneedles;
static char needle_name[MAX_NEEDLES][32];
static unsigned char needle[MAX_NEEDLES][MAX_NEEDLE_LEN];
static size_t needle_len[MAX_NEEDLES];
static char log_path[1024];

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

__attribute__((constructor))
static void
free_scan_init(void)
{
	const char *spec = getenv("BSONCRYPT_FREE_SCAN_NEEDLES");
	const char *path = getenv("BSONCRYPT_FREE_SCAN_LOG");

	if (strcmp(program_invocation_short_name, "postgres") != 0 || !spec || !path ||
		strlen(path) >= sizeof(log_path))
		return;
	strcpy(log_path, path);
	while (*spec && nneedles < MAX_NEEDLES)
	{
		size_t		n = 0;
		size_t		len = 0;

		while (*spec && *spec != '=' && n + 1 < sizeof(needle_name[0]))
			needle_name[nneedles][n++] = *spec++;
		if (*spec++ != '=')
			return;
		while (hexval(spec[0]) >= 0 && hexval(spec[1]) >= 0 && len < MAX_NEEDLE_LEN)
		{
			needle[nneedles][len++] = (unsigned char) (hexval(spec[0]) * 16 + hexval(spec[1]));
			spec += 2;
		}
		needle_len[nneedles++] = len;
		if (*spec == ',')
			spec++;
	}
	active = 1;
}

static void
scan(const void *p, size_t size, const char *where)
{
	int			saved_errno = errno;

	for (int i = 0; i < nneedles; i++)
	{
		char		line[128];
		int			fd;
		int			n;

		if (needle_len[i] == 0 || !memmem(p, size, needle[i], needle_len[i]))
			continue;
		n = snprintf(line, sizeof(line), "%d %s %s\n", (int) getpid(), where, needle_name[i]);
		fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
		if (fd >= 0)
		{
			if (write(fd, line, n) < 0)
				(void) 0;
			close(fd);
		}
	}
	errno = saved_errno;
}

void
free(void *ptr)
{
	if (ptr && active)
		scan(ptr, malloc_usable_size(ptr), "free");
	__libc_free(ptr);
}

/* the buffer stdio allocated for a stream, which libc frees itself */
static void
scan_stream(FILE *stream, const char *where)
{
	if (active && stream && stream->_IO_buf_base && stream->_IO_buf_end > stream->_IO_buf_base)
		scan(stream->_IO_buf_base, stream->_IO_buf_end - stream->_IO_buf_base, where);
}

int
fclose(FILE *stream)
{
	static int	(*real) (FILE *);

	if (!real)
		real = (int (*) (FILE *)) dlsym(RTLD_NEXT, "fclose");
	scan_stream(stream, "fclose");
	return real(stream);
}

int
pclose(FILE *stream)
{
	static int	(*real) (FILE *);

	if (!real)
		real = (int (*) (FILE *)) dlsym(RTLD_NEXT, "pclose");
	scan_stream(stream, "pclose");
	return real(stream);
}
