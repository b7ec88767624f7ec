/* The hello workflow in C, written against the raw WIT: no SDK, only the
 * bindings `wit-bindgen c` generates from wit/reprise.wit (world
 * `workflow`) into workflow.h / workflow.c. See build.sh for the build.
 *
 * Same steps as examples/hello (Rust) and examples/hello-py: time and
 * randomness through the host's `durable` interface and through plain
 * libc (WASI, which the host journals too), one `greet` activity, then two
 * rounds of a durable sleep and a `record` activity. The output echoes
 * every value the code saw, so a test can check that replay gave back
 * exactly what the history recorded.
 *
 * Memory, as the component model's C ABI has it: arguments we pass to an
 * import stay ours (borrowed), what an import returns is ours to free;
 * the input `run` receives is ours to free, and what `run` returns is
 * freed by the generated `cabi_post_run` after the host copied it (so it
 * must come from malloc).
 *
 * An error path returns without freeing what it allocated: each activation
 * runs in a fresh instance, whose memory goes with it.
 *
 * JSON is read and written by hand, enough for this demo: a field is found
 * by its quoted key, a string is copied as it stands (escapes included,
 * which is right when it goes back into JSON). */

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "workflow.h"

/* printf into a new malloc'd, NUL-terminated string. */
static char *format(const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    int len = vsnprintf(NULL, 0, fmt, args);
    va_end(args);
    char *text = malloc((size_t)len + 1);
    if (text == NULL) abort();
    va_start(args, fmt);
    vsnprintf(text, (size_t)len + 1, fmt, args);
    va_end(args);
    return text;
}

/* The value of field `key` in the JSON object `json`, or NULL. */
static const char *json_field(const char *json, const char *key) {
    char *quoted = format("\"%s\"", key);
    const char *at = strstr(json, quoted);
    size_t skip = strlen(quoted);
    free(quoted);
    if (at == NULL) return NULL;
    at += skip;
    while (*at == ' ' || *at == ':') at++;
    return at;
}

/* The string field `key` of `json`, still escaped, as a new C string. */
static char *json_string(const char *json, const char *key) {
    const char *value = json_field(json, key);
    if (value == NULL || *value != '"') return NULL;
    const char *end = ++value;
    while (*end != '\0' && *end != '"') end += (*end == '\\' && end[1] != '\0') ? 2 : 1;
    return format("%.*s", (int)(end - value), value);
}

/* The number field `key` of `json`, or `fallback` when absent. */
static uint64_t json_u64(const char *json, const char *key, uint64_t fallback) {
    const char *value = json_field(json, key);
    return value == NULL ? fallback : strtoull(value, NULL, 10);
}

/* A WIT string as a new C string (WIT strings are not NUL-terminated). */
static char *to_c(const workflow_string_t *text) {
    return format("%.*s", (int)text->len, (const char *)text->ptr);
}

/* Fills the workflow error `err`; returns false, for `return fail(...)`. */
static bool fail(workflow_workflow_error_t *err, const char *error_type, const char *message) {
    workflow_string_dup(&err->error_type, error_type);
    workflow_string_dup(&err->message, message);
    err->details.is_some = false;
    return false;
}

/* Calls activity `name` on the JSON `input` and waits for its JSON output
 * (a new C string in *output). `start-activity` journals the call and
 * returns its handle; `await-activity` returns its recorded completion.
 * On a final failure the activity's last error becomes the workflow's. */
static bool call(const char *name, const char *input, uint64_t start_to_close_ms,
                 char **output, workflow_workflow_error_t *err) {
    workflow_string_t wit_name, wit_input;
    workflow_string_set(&wit_name, name);
    workflow_string_set(&wit_input, input);
    /* Zeroed: every option `none`, i.e. the runtime's default. */
    reprise_workflow_durable_activity_options_t options = {0};
    if (start_to_close_ms > 0) {
        options.start_to_close_timeout_ms.is_some = true;
        options.start_to_close_timeout_ms.val = start_to_close_ms;
    }
    uint64_t handle = reprise_workflow_durable_start_activity(&wit_name, &wit_input, &options);

    workflow_string_t result;
    reprise_workflow_durable_activity_failure_t failure;
    if (reprise_workflow_durable_await_activity(handle, &result, &failure)) {
        *output = to_c(&result);
        workflow_string_free(&result);
        return true;
    }
    /* The failure's strings move into the workflow error, which
     * cabi_post_run frees. */
    err->error_type = failure.last_error.error_type;
    err->message = failure.last_error.message;
    err->details = failure.last_error.details;
    return false;
}

/* A durable timer: `sleep-ms` returns when the history says it fired,
 * even across restarts; it fails only if the workflow is cancelled. */
static bool sleep_ms(uint64_t duration_ms, workflow_workflow_error_t *err) {
    reprise_workflow_durable_cancelled_t cancelled;
    if (reprise_workflow_durable_sleep_ms(duration_ms, &cancelled)) return true;
    workflow_string_dup(&err->error_type, "Cancelled");
    err->message = cancelled.message;
    err->details.is_some = false;
    return false;
}

/* 8 bytes as a little-endian u64 (as the Rust SDK's `ctx.random()`). */
static uint64_t le_u64(const uint8_t *bytes) {
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--) value = (value << 8) | bytes[i];
    return value;
}

/* The body of `run`, on the input as a C string. */
static bool hello(const char *input, workflow_string_t *ret, workflow_workflow_error_t *err) {
    char *name = json_string(input, "name");
    if (name == NULL) return fail(err, "BadInput", "the input needs a string field `name`");
    uint64_t sleep_for_ms = json_u64(input, "sleep_ms", 100);
    uint64_t work_ms = json_u64(input, "work_ms", 0);

    /* `now-ms` and `random-bytes`: journaled host calls (seq each). */
    uint64_t sdk_now_ms = reprise_workflow_durable_now_ms();
    struct timespec now;
    /* Plain WASI (wasi:clocks/wall-clock): the host journals it too. */
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t std_now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    workflow_list_u8_t drawn;
    reprise_workflow_durable_random_bytes(8, &drawn);
    uint64_t sdk_random = le_u64(drawn.ptr);
    workflow_list_u8_free(&drawn);
    /* Plain WASI (wasi:random): journaled as well. */
    uint8_t bytes[8];
    if (getentropy(bytes, sizeof bytes) != 0) return fail(err, "Random", "getentropy failed");
    uint64_t rand_random = le_u64(bytes);

    /* `log`: not journaled, muted in replay. */
    char *line = format("hello-c workflow started for %s", name);
    workflow_string_t wit_line;
    workflow_string_set(&wit_line, line);
    reprise_workflow_durable_log(REPRISE_WORKFLOW_TYPES_LOG_LEVEL_INFO, &wit_line);
    free(line);
    /* stdout (wasi:cli/stdout) is captured as a log line too. */
    puts("stdout is captured as a log line too");
    fflush(stdout);

    char *greet_input = format("{\"name\":\"%s\"}", name);
    char *greet_output = NULL;
    bool ok = call("greet", greet_input, 0, &greet_output, err);
    free(greet_input);
    if (!ok) return false;
    char *greeting = json_string(greet_output, "greeting");
    free(greet_output);
    if (greeting == NULL) return fail(err, "BadOutput", "`greet` returned no `greeting`");

    uint64_t entries[2];
    for (uint64_t step = 1; step <= 2; step++) {
        if (!sleep_ms(sleep_for_ms, err)) return false;
        char *record_input = format("{\"step\":%llu,\"work_ms\":%llu}",
                                    (unsigned long long)step, (unsigned long long)work_ms);
        char *record_output = NULL;
        ok = call("record", record_input, 30000, &record_output, err);
        free(record_input);
        if (!ok) return false;
        entries[step - 1] = json_u64(record_output, "entry", 0);
        free(record_output);
    }

    char *output = format(
        "{\"greeting\":\"%s\",\"sdk_now_ms\":%llu,\"std_now_ms\":%llu,"
        "\"sdk_random\":%llu,\"rand_random\":%llu,\"ledger_entries\":[%llu,%llu]}",
        greeting, (unsigned long long)sdk_now_ms, (unsigned long long)std_now_ms,
        (unsigned long long)sdk_random, (unsigned long long)rand_random,
        (unsigned long long)entries[0], (unsigned long long)entries[1]);
    free(greeting);
    free(name);
    /* Handed over as is: the string is malloc'd, cabi_post_run frees it. */
    ret->ptr = (uint8_t *)output;
    ret->len = strlen(output);
    return true;
}

/* The `workflow` world's export `run: func(input: string) ->
 * result<string, workflow-error>`: true with *ret set is `ok`, false with
 * *err set is `err`. */
bool exports_workflow_run(workflow_string_t *input, workflow_string_t *ret,
                          workflow_workflow_error_t *err) {
    char *text = to_c(input);
    workflow_string_free(input);
    bool ok = hello(text, ret, err);
    free(text);
    return ok;
}
