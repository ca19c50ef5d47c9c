/* The streaming JSONL reader: raw lines and their numbers, one JSON value per
 * line with file:line errors that leave the reader usable, bounded line
 * length, and refusal of anything that is not a regular file. */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gllm/jsonl.h"
#include "test_util.h"

static char g_dir[256];

static const char *put(const char *name, const char *data, size_t n)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        printf("cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
    return path;
}
#define PUT(name, lit) put(name, lit, sizeof lit - 1)

/* Call gllm_jsonl_next until end of file; record each value's line or each
 * error's message, separated by '|'. */
static void collect(gllm_jsonl *r, char *out, size_t cap)
{
    out[0] = '\0';
    for (int guard = 0; guard < 100; guard++) {
        cJSON *v = NULL;
        long ln = -1;
        gllm_status st = gllm_jsonl_next(r, &v, &ln);
        char item[600];
        if (st != GLLM_OK) {
            const char *msg = strrchr(gllm_last_error(), '/');
            snprintf(item, sizeof item, "E%ld:%s|", ln, msg ? msg + 1 : gllm_last_error());
            CHECK(v == NULL);
            if (st != GLLM_ERR_FORMAT)
                break;
        } else if (!v) {
            break;
        } else {
            char *s = cJSON_PrintUnformatted(v);
            snprintf(item, sizeof item, "%ld=%s|", ln, s);
            free(s);
            cJSON_Delete(v);
        }
        strncat(out, item, cap - strlen(out) - 1);
    }
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/gllm_test_jsonl_%d", (int)getpid());
    mkdir(g_dir, 0755);

    TEST_CASE("raw lines: numbers, newlines kept apart, NUL bytes and CR kept") {
        static const char data[] = "a\n\nb\r\nc\0d\nlast";
        const char *p = put("raw.jsonl", data, sizeof data - 1);
        gllm_jsonl *r = NULL;
        CHECK_OK(gllm_jsonl_open(p, &r));
        const char *want[] = {"a", "", "b\r", "c\0d", "last"};
        size_t want_len[] = {1, 0, 2, 3, 4};
        for (int i = 0; r && i < 5; i++) {
            const char *s = NULL;
            size_t n = 0;
            long ln = 0;
            bool nl = false;
            CHECK_OK(gllm_jsonl_next_line(r, &s, &n, &ln, &nl));
            CHECK_MSG(s && n == want_len[i] && !memcmp(s, want[i], n) && ln == i + 1, "line %d", i + 1);
            CHECK(nl == (i < 4));
        }
        const char *s = "x";
        size_t n = 9;
        long ln = 0;
        bool nl = true;
        if (r)
            CHECK_OK(gllm_jsonl_next_line(r, &s, &n, &ln, &nl));
        CHECK(s == NULL && n == 0 && !nl);
        if (r)
            CHECK_OK(gllm_jsonl_next_line(r, &s, &n, &ln, &nl)); /* end of file stays end of file */
        CHECK(s == NULL);
        gllm_jsonl_close(r);
    }

    TEST_CASE("values: blank lines skipped, BOM, every kind of bad line named, reader continues") {
        static const char data[] =
            "\xef\xbb\xbf{\"a\":1}\n"           /* 1: BOM on line 1 is ignored */
            "  \t\r\n"                          /* 2: blank */
            "{\"a\":2} {\"b\":3}\n"             /* 3: two values */
            "{\"a\":4} x\n"                     /* 4: trailing garbage */
            "{\"a\":\"x\0y\"}\n"                /* 5: NUL byte */
            "{\"a\":\"\xc3\x28\"}\n"            /* 6: invalid UTF-8 */
            "{\"a\":\"\xc0\xaf\"}\n"            /* 7: overlong */
            "{\"a\":\"\xed\xa0\x80\"}\n"        /* 8: surrogate */
            "{\"a\":NaN}\n"                     /* 9: not JSON */
            "[1,2]\r\n"                         /* 10: any JSON value, CRLF */
            "{\"a\":\"\xf0\x9f\x98\x80\"}\n"    /* 11: valid 4-byte UTF-8 */
            "{\"a\":12}";                       /* 12: no final newline */
        const char *p = put("values.jsonl", data, sizeof data - 1);
        gllm_jsonl *r = NULL;
        CHECK_OK(gllm_jsonl_open(p, &r));
        char got[4096];
        if (r)
            collect(r, got, sizeof got);
        gllm_jsonl_close(r);
        const char *want =
            "1={\"a\":1}|"
            "E3:values.jsonl:3: two JSON values on one line (the second at column 9)|"
            "E4:values.jsonl:4: trailing characters after the JSON value at column 9|"
            "E5:values.jsonl:5: NUL byte at column 8|"
            "E6:values.jsonl:6: invalid UTF-8 at column 7 (byte 0xc3)|"
            "E7:values.jsonl:7: invalid UTF-8 at column 7 (byte 0xc0)|"
            "E8:values.jsonl:8: invalid UTF-8 at column 7 (byte 0xed)|"
            "E9:values.jsonl:9: not valid JSON (at column 6)|"
            "10=[1,2]|"
            "11={\"a\":\"\xf0\x9f\x98\x80\"}|"
            "12={\"a\":12}|";
        CHECK_MSG(!strcmp(got, want), "\ngot  %s\nwant %s", got, want);
    }

    TEST_CASE("a BOM starting any line is skipped (files joined with cat), not one inside a line") {
        const char *p = PUT("bom2.jsonl", "{}\n\xef\xbb\xbf{}\n{} \xef\xbb\xbf\n");
        gllm_jsonl *r = NULL;
        CHECK_OK(gllm_jsonl_open(p, &r));
        char got[1024];
        if (r)
            collect(r, got, sizeof got);
        gllm_jsonl_close(r);
        CHECK_MSG(!strcmp(got, "1={}|2={}|E3:bom2.jsonl:3: trailing characters after the JSON value at column 4|"),
                  "got %s", got);
    }

    TEST_CASE("line length: lines past the buffer grow it; lines past the limit are errors, then skipped") {
        size_t big = 300000; /* several times the first buffer */
        char *data = malloc(big + 200);
        size_t n = 0;
        n += (size_t)sprintf(data + n, "{\"t\":\"");
        memset(data + n, 'x', big);
        n += big;
        n += (size_t)sprintf(data + n, "\"}\n{\"b\":1}\n");
        const char *p = put("long.jsonl", data, n);
        gllm_jsonl *r = NULL;
        CHECK_OK(gllm_jsonl_open(p, &r));
        cJSON *v = NULL;
        long ln = 0;
        if (r)
            CHECK_OK(gllm_jsonl_next(r, &v, &ln));
        const cJSON *t = cJSON_GetObjectItem(v, "t");
        CHECK(ln == 1 && cJSON_IsString(t) && strlen(t->valuestring) == big);
        cJSON_Delete(v);
        gllm_jsonl_close(r);

        r = NULL;
        CHECK_OK(gllm_jsonl_open(p, &r));
        if (r) {
            gllm_jsonl_set_max_line(r, 1000);
            CHECK_ERR(gllm_jsonl_next(r, &v, &ln), GLLM_ERR_FORMAT, "long.jsonl:1: line is longer than 1000 bytes");
            CHECK(ln == 1 && v == NULL);
            CHECK_OK(gllm_jsonl_next(r, &v, &ln));
            CHECK(ln == 2 && cJSON_GetObjectItem(v, "b") != NULL);
            cJSON_Delete(v);
            CHECK_OK(gllm_jsonl_next(r, &v, &ln));
            CHECK(v == NULL);
        }
        gllm_jsonl_close(r);

        /* an over-long last line without a newline, found while refilling */
        p = put("long2.jsonl", data, n - 11); /* up to the end of line 1, no '\n' */
        CHECK_OK(gllm_jsonl_open(p, &r));
        if (r) {
            gllm_jsonl_set_max_line(r, 100000);
            CHECK_ERR(gllm_jsonl_next(r, &v, &ln), GLLM_ERR_FORMAT, "long2.jsonl:1: line is longer than");
            CHECK_OK(gllm_jsonl_next(r, &v, &ln));
            CHECK(v == NULL);
        }
        gllm_jsonl_close(r);
        free(data);
    }

    TEST_CASE("only regular files: folders, devices and FIFOs are refused at once") {
        gllm_jsonl *r = NULL;
        CHECK_ERR(gllm_jsonl_open(g_dir, &r), GLLM_ERR_INVALID, "is a folder, not a regular file");
        CHECK(r == NULL);
        CHECK_ERR(gllm_jsonl_open("/dev/zero", &r), GLLM_ERR_INVALID, "/dev/zero: is a character device");
        char fifo[512];
        snprintf(fifo, sizeof fifo, "%s/fifo", g_dir);
        CHECK(mkfifo(fifo, 0600) == 0);
        CHECK_ERR(gllm_jsonl_open(fifo, &r), GLLM_ERR_INVALID, "is a FIFO"); /* and does not wait for a writer */
        unlink(fifo);
        CHECK_ERR(gllm_jsonl_open("/nonexistent/x.jsonl", &r), GLLM_ERR_NOT_FOUND, "/nonexistent/x.jsonl");
    }

    TEST_CASE("UTF-8 validation") {
        CHECK(gllm_utf8_invalid_at("\xf4\x8f\xbf\xbf", 4) == 4);  /* U+10FFFF */
        CHECK(gllm_utf8_invalid_at("a\xf4\x90\x80\x80", 5) == 1); /* past U+10FFFF */
        CHECK(gllm_utf8_invalid_at("ab\xe2\x82", 4) == 2);        /* truncated */
        CHECK(gllm_utf8_invalid_at("\xe0\x9f\xbf", 3) == 0);      /* overlong 3-byte */
        CHECK(gllm_utf8_invalid_at("\x80", 1) == 0);              /* lone continuation */
        CHECK(gllm_utf8_invalid_at("\xc3\xa9\xe2\x82\xac", 5) == 5);
    }

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        printf("could not remove %s\n", g_dir);
    return test_summary();
}
