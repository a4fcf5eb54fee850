/*
 * api.c - requests and their replies.
 */
#include "actors/api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "actors/token.h"
#include "core/base.h"

#define API_MESSAGE_MAX 256

struct api_req *api_req_new(enum api_op op)
{
    struct api_req *req = xcalloc(1, sizeof(*req));

    TALLY_ASSERT(op < API_OP_COUNT);
    req->op = op;
    return req;
}

void api_req_free(struct api_req *req)
{
    if (req == NULL)
        return;
    free(req->text);
    free(req->poll.question);
    for (uint32_t i = 0; i < API_OPTIONS_MAX; i++)
        free(req->poll.options[i]);
    free(req->body);
    /* The bearer token may still sit in the request; do not leave it in freed memory. */
    token_wipe(req->token, sizeof(req->token));
    free(req);
}

void api_reply_json(struct api_req *req, int status, void *json_body)
{
    json_t *j = json_body;
    char *text;

    TALLY_ASSERT(req != NULL && req->on_reply != NULL);
    TALLY_ASSERT(j != NULL);
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    /* json_dumps fails only on allocation failure; out of memory is fatal here. */
    TALLY_ASSERT(text != NULL);
    free(req->body);
    req->status = status;
    req->content_type = NULL;
    req->body = text;
    req->body_len = strlen(text);
    req->on_reply(req);
}

void api_reply_error(struct api_req *req, int status, const char *code, const char *fmt, ...)
{
    char message[API_MESSAGE_MAX];
    va_list ap;
    json_t *err;

    TALLY_ASSERT(status >= 400 && status <= 599);
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    err = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    if (err == NULL) /* a message cut inside a UTF-8 sequence is not a string */
        err = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", code);
    api_reply_json(req, status, err);
}

void api_reply_raw(struct api_req *req, int status, const char *content_type, char *body,
                   size_t body_len)
{
    TALLY_ASSERT(req != NULL && req->on_reply != NULL);
    TALLY_ASSERT(body != NULL || body_len == 0);
    free(req->body);
    req->status = status;
    req->content_type = content_type;
    req->body = body;
    req->body_len = body_len;
    req->on_reply(req);
}
