/*-------------------------------------------------------------------------
 *
 * replay_main.c
 *	  Plain main() for `make -C bench/fuzz check`: runs every file named on
 *	  the command line (or found in a directory named there) through a
 *	  fuzz target's LLVMFuzzerTestOneInput, each in a forked child so that
 *	  an abort or a crash fails that one seed.  Needs no sanitizer runtime.
 *	  Prints "N passed, M failed" last and exits 1 if M > 0.
 *
 *-------------------------------------------------------------------------
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int	passed;
static int	failed;

static void
run_one(const char *path)
{
	FILE	   *f;
	uint8_t    *data;
	long		size;
	pid_t		pid;
	int			status;

	f = fopen(path, "rb");
	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0)
	{
		fprintf(stderr, "cannot read %s\n", path);
		failed++;
		if (f)
			fclose(f);
		return;
	}
	rewind(f);
	/* exact size, so that an over-read is at least a chance of a crash */
	data = malloc(size > 0 ? size : 1);
	if (data == NULL || fread(data, 1, size, f) != (size_t) size)
	{
		fprintf(stderr, "cannot read %s\n", path);
		failed++;
		fclose(f);
		free(data);
		return;
	}
	fclose(f);

	fflush(NULL);
	pid = fork();
	if (pid == 0)
	{
		LLVMFuzzerTestOneInput(data, (size_t) size);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
	{
		perror("fork");
		exit(2);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		passed++;
	else
	{
		fprintf(stderr, "FAILED: %s\n", path);
		failed++;
	}
	free(data);
}

static int
compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static void
run_path(const char *path)
{
	struct stat st;
	DIR		   *dir;
	struct dirent *de;
	char	  **names = NULL;
	size_t		n = 0;
	size_t		i;

	if (stat(path, &st) != 0)
	{
		fprintf(stderr, "no such file: %s\n", path);
		failed++;
		return;
	}
	if (!S_ISDIR(st.st_mode))
	{
		run_one(path);
		return;
	}
	dir = opendir(path);
	if (dir == NULL)
	{
		fprintf(stderr, "cannot open %s\n", path);
		failed++;
		return;
	}
	while ((de = readdir(dir)) != NULL)
	{
		if (de->d_name[0] == '.')
			continue;
		names = realloc(names, (n + 1) * sizeof(char *));
		names[n] = malloc(strlen(path) + strlen(de->d_name) + 2);
		sprintf(names[n], "%s/%s", path, de->d_name);
		n++;
	}
	closedir(dir);
	qsort(names, n, sizeof(char *), compare_names);
	for (i = 0; i < n; i++)
	{
		run_path(names[i]);
		free(names[i]);
	}
	free(names);
}

int
main(int argc, char **argv)
{
	int			i;

	for (i = 1; i < argc; i++)
		run_path(argv[i]);
	printf("%d passed, %d failed\n", passed, failed);
	return failed > 0 ? 1 : 0;
}
