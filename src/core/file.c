#include "core/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *gllm_file_kind(unsigned mode)
{
    return S_ISREG(mode)    ? "a regular file"
           : S_ISDIR(mode)  ? "a folder"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISFIFO(mode) ? "a FIFO"
           : S_ISSOCK(mode) ? "a socket"
                            : "not a file";
}

gllm_status gllm_require_regular_file(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return gllm_fail(errno == ENOENT ? GLLM_ERR_NOT_FOUND : GLLM_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return gllm_fail(GLLM_ERR_INVALID, "%s: is %s, not a regular file", path, gllm_file_kind(sb.st_mode));
    return GLLM_OK;
}

gllm_status gllm_read_file(const char *path, char **out, size_t *len)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return gllm_fail(errno == ENOENT ? GLLM_ERR_NOT_FOUND : GLLM_ERR_IO, "%s: cannot open: %s",
                         path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && !S_ISREG(sb.st_mode)) {
        fclose(f);
        return gllm_fail(GLLM_ERR_INVALID, "%s: is %s, not a regular file", path, gllm_file_kind(sb.st_mode));
    }
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return gllm_fail(GLLM_ERR_IO, "%s: cannot size the file (not a regular file?)", path);
    }
    char *buf = gllm_malloc((size_t)n + 1, path);
    if (!buf) {
        fclose(f);
        return GLLM_ERR_OOM;
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    fclose(f);
    if (got != (size_t)n) {
        free(buf);
        return gllm_fail(GLLM_ERR_IO, "%s: short read (%zu of %ld bytes)", path, got, n);
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = (size_t)n;
    return GLLM_OK;
}

uint64_t gllm_fnv1a64(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

gllm_status gllm_hash_file(const char *path, uint64_t *hash)
{
    *hash = GLLM_FNV_INIT;
    FILE *f = fopen(path, "rb");
    if (!f)
        return gllm_fail(errno == ENOENT ? GLLM_ERR_NOT_FOUND : GLLM_ERR_IO, "%s: cannot open: %s", path,
                         strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && !S_ISREG(sb.st_mode)) {
        fclose(f);
        return gllm_fail(GLLM_ERR_INVALID, "%s: is %s, not a regular file", path, gllm_file_kind(sb.st_mode));
    }
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        *hash = gllm_fnv1a64(*hash, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return gllm_fail(GLLM_ERR_IO, "%s: read failed", path);
    return GLLM_OK;
}
