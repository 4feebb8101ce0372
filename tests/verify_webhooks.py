#!/usr/bin/env python3
"""Verify captured webhook deliveries with the reference `standardwebhooks` library.

Usage:
    python3 tests/verify_webhooks.py CAPTURED.json whsec_AAA[,whsec_BBB,...]

CAPTURED.json holds a list of requests:
    [{"headers": {"webhook-id": "...", "webhook-timestamp": "...",
                  "webhook-signature": "v1,..."},
      "body": "<raw body string>"}, ...]
Header names are matched case-insensitively; "headers" may also be a list of
[name, value] pairs. The body must be the exact string that was sent (it is
signed as UTF-8 bytes).

A request is valid if it verifies under any one of the comma-separated secrets
(key rotation). The library also rejects a webhook-timestamp more than 5 minutes
in the past or future (fixed tolerance in standardwebhooks 1.1.0), so run this
within 5 minutes of capture.

Prints one JSON line per request, in order:
    {"id": <webhook-id or null>, "ok": true|false, "error": <str or null>, "secret_index": <int or null>}
Exit status: 0 if every request verified; 1 if any failed or the list is empty;
2 on usage / input errors.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def normalize_headers(raw):
    if isinstance(raw, dict):
        items = raw.items()
    elif isinstance(raw, list):
        items = [tuple(pair) for pair in raw]
    else:
        raise ValueError("headers must be an object or a list of [name, value] pairs")
    headers = {}
    for name, value in items:
        if isinstance(value, list):  # multi-valued capture: keep the first value
            value = value[0] if value else ""
        headers[str(name).lower()] = str(value)
    return headers


def verify_one(req, webhooks):
    """Return (id, ok, error, secret_index)."""
    if not isinstance(req, dict):
        return None, False, "request entry is not a JSON object", None
    try:
        headers = normalize_headers(req.get("headers", {}))
    except (ValueError, TypeError) as e:
        return None, False, f"bad headers: {e}", None
    msg_id = headers.get("webhook-id")
    body = req.get("body")
    if not isinstance(body, str):
        return msg_id, False, "body must be a string (the raw request body)", None

    errors = []
    for index, wh in enumerate(webhooks):
        try:
            wh.verify(body, headers, json_parse=False)
            return msg_id, True, None, index
        except WebhookVerificationError as e:
            err = str(e)
        except Exception as e:  # malformed signature header / base64 etc.
            err = f"malformed webhook headers: {type(e).__name__}: {e}"
        if err not in errors:
            errors.append(err)
    return msg_id, False, "; ".join(errors), None


def main(argv):
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with open(argv[1], "r", encoding="utf-8") as f:
            requests = json.load(f)
    except (OSError, ValueError) as e:
        print(f"verify_webhooks: cannot read {argv[1]}: {e}", file=sys.stderr)
        return 2
    if not isinstance(requests, list):
        print("verify_webhooks: captured file must contain a JSON list", file=sys.stderr)
        return 2

    secrets = [s.strip() for s in argv[2].split(",") if s.strip()]
    if not secrets:
        print("verify_webhooks: no secrets given", file=sys.stderr)
        return 2
    webhooks = []
    for s in secrets:
        try:
            webhooks.append(Webhook(s))
        except Exception as e:
            print(f"verify_webhooks: invalid secret {s[:10]}...: {e}", file=sys.stderr)
            return 2

    all_ok = True
    for req in requests:
        msg_id, ok, error, index = verify_one(req, webhooks)
        all_ok = all_ok and ok
        print(json.dumps({"id": msg_id, "ok": ok, "error": error, "secret_index": index}), flush=True)
    if not requests:
        print("verify_webhooks: no requests in captured file", file=sys.stderr)
        return 1
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
