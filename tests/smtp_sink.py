#!/usr/bin/env python3
"""Real SMTP server (aiosmtpd) that stores every accepted message, for integration tests.

Usage:
    python3 tests/smtp_sink.py --port PORT --maildir DIR --mode plain|starttls|tls \
        [--cert CERT.pem --key KEY.pem] [--user U --password P]

Modes:
    plain     no TLS at all; with --user, AUTH PLAIN/LOGIN is offered and required
              over the cleartext connection (auth_require_tls=False).
    starttls  STARTTLS offered with --cert/--key and required before MAIL
              (require_starttls=True); with --user, AUTH PLAIN/LOGIN is required
              and only offered after STARTTLS.
    tls       implicit TLS (SMTPS) on the port with --cert/--key; with --user,
              AUTH PLAIN/LOGIN is required.

Without --user no AUTH is required in any mode (and every AUTH attempt fails).
A wrong login/password gets "535 5.7.8 Authentication credentials invalid".

For each accepted message number n (1, 2, ... continuing after the highest
number already in DIR) the server writes:
    DIR/<n>.json  {"mail_from": ..., "rcpt_tos": [...], "auth_user": str|null, "tls": bool}
    DIR/<n>.eml   the raw RFC 5322 message bytes as received (after dot-unstuffing)
Both are written to a hidden temp file and renamed into place; the .json is
renamed first, so once <n>.eml exists, <n>.json exists too.

Listens on 127.0.0.1 only. --port 0 picks a free port. Once listening it prints
"READY <port>" on stdout (flushed). Runs until SIGTERM/SIGINT, then exits 0.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0 = pick a free one)")
    p.add_argument("--maildir", required=True, help="directory to store <n>.eml / <n>.json in")
    p.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
    p.add_argument("--cert", help="PEM certificate (chain) file; required for starttls/tls")
    p.add_argument("--key", help="PEM private key file (any type: RSA/EC/Ed25519, PKCS#1/PKCS#8/SEC1)")
    p.add_argument("--user", help="require AUTH with this login")
    p.add_argument("--password", help="password for --user")
    p.add_argument("--verbose", action="store_true", help="log SMTP sessions to stderr")
    args = p.parse_args(argv)
    if args.mode in ("starttls", "tls") and not args.cert:
        p.error(f"--mode {args.mode} requires --cert (and --key unless the key is in the cert file)")
    if (args.user is None) != (args.password is None):
        p.error("--user and --password must be given together")
    return args


class Maildir:
    """Numbered, atomically written message store."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path, exist_ok=True)
        highest = 0
        for name in os.listdir(path):
            m = re.fullmatch(r"(\d+)\.(eml|json)", name)
            if m:
                highest = max(highest, int(m.group(1)))
        self.next_n = highest + 1

    def _atomic_write(self, final_name, data):
        tmp = os.path.join(self.path, f".{final_name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.path, final_name))

    def store(self, raw, meta):
        n = self.next_n
        self.next_n += 1
        self._atomic_write(f"{n}.json", (json.dumps(meta) + "\n").encode())
        self._atomic_write(f"{n}.eml", raw)
        return n


class SinkHandler:
    def __init__(self, maildir):
        self.maildir = maildir

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        transport = server.transport
        tls = bool(transport is not None and transport.get_extra_info("ssl_object") is not None)
        auth_user = None
        if session.authenticated and session.login_data is not None:
            login = session.login_data
            auth_user = login.decode("utf-8", "replace") if isinstance(login, bytes) else str(login)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "auth_user": auth_user,
            "tls": tls,
        }
        try:
            n = self.maildir.store(raw, meta)
        except OSError as e:
            print(f"smtp_sink: failed to store message: {e}", file=sys.stderr, flush=True)
            return "451 4.3.0 Could not store message"
        return f"250 2.0.0 Message accepted as {n}"


class Authenticator:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if mechanism not in ("LOGIN", "PLAIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if auth_data.login == self.user and auth_data.password == self.password:
            return AuthResult(success=True, auth_data=auth_data)
        # handled=False => aiosmtpd replies "535 5.7.8 Authentication credentials invalid"
        return AuthResult(success=False, handled=False)


def make_tls_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certfile=cert, keyfile=key)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # we never ask clients for certificates
    return ctx


async def serve(args):
    loop = asyncio.get_running_loop()
    maildir = Maildir(args.maildir)
    handler = SinkHandler(maildir)
    tls_ctx = make_tls_context(args.cert, args.key) if args.mode in ("starttls", "tls") else None

    smtp_kwargs = dict(
        hostname="localhost",  # avoid socket.getfqdn() (slow without DNS)
        ident="driftwatch-smtp-sink",
        decode_data=False,
        enable_SMTPUTF8=True,
        loop=loop,
    )
    if args.user is not None:
        smtp_kwargs["authenticator"] = Authenticator(args.user, args.password)
        smtp_kwargs["auth_required"] = True
        smtp_kwargs["auth_exclude_mechanism"] = []
    if args.mode == "plain":
        smtp_kwargs["auth_require_tls"] = False
    elif args.mode == "starttls":
        smtp_kwargs["tls_context"] = tls_ctx
        smtp_kwargs["require_starttls"] = True
        smtp_kwargs["auth_require_tls"] = True
    else:  # tls: the whole connection is TLS; aiosmtpd only counts STARTTLS as "TLS"
        smtp_kwargs["auth_require_tls"] = False

    def factory():
        return SMTP(handler, **smtp_kwargs)

    server = await loop.create_server(
        factory,
        host="127.0.0.1",
        port=args.port,
        ssl=tls_ctx if args.mode == "tls" else None,
        reuse_address=True,
    )
    port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    print(f"READY {port}", flush=True)
    await stop.wait()

    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), timeout=2)
    except asyncio.TimeoutError:
        pass


def main(argv=None):
    args = parse_args(argv)
    # aiosmtpd warns when auth is required without TLS; that is intended in plain mode.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        stream=sys.stderr,
        format="smtp_sink: %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)
    try:
        asyncio.run(serve(args))
    except OSError as e:
        print(f"smtp_sink: cannot listen on 127.0.0.1:{args.port}: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
