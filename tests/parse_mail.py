#!/usr/bin/env python3
"""Parses .eml files with Python's email package (an independent MIME parser) and prints
one JSON object per file: headers, the text and HTML parts, and the content types seen.

Usage: python3 tests/parse_mail.py FILE.eml [FILE.eml ...]
"""

import json
import sys
from email import policy
from email.parser import BytesParser


def parse(path):
    with open(path, "rb") as f:
        msg = BytesParser(policy=policy.default).parse(f)
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    return {
        "file": path,
        "subject": str(msg["subject"]),
        "from": str(msg["from"]),
        "to": str(msg["to"]),
        "message_id": str(msg["message-id"]),
        "content_type": msg.get_content_type(),
        "parts": [p.get_content_type() for p in msg.walk()],
        "text": text.get_content() if text is not None else None,
        "html": html.get_content() if html is not None else None,
    }


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(json.dumps(parse(p)))
