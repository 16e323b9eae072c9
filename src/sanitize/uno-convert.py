"""Sekisho's resident LibreOffice bridge (run by libreoffice.ts with /usr/bin/python3, which has python3-uno).

It starts soffice.bin as its own child (same process group, under a memory rlimit), connects over a UNO pipe
once, then converts one document per request: JSON lines on stdin ({"id", "in", "out"}: paths chosen by the
caller, never names from a mail) and one JSON line per answer on stdout. Documents are loaded hidden, read-only,
with macros and link updates off and an interaction handler that aborts every question, so a password prompt
becomes an "encrypted" answer at once instead of a hang. The profile sends every http/ftp fetch to a dead proxy
(the network namespace, when there is one, is the second belt). When soffice dies the bridge exits: the caller
restarts the whole group. It refuses to run as root: a document can link local files (file:///…), and soffice draws
whatever its account can read into the PDF (the caller starts it as an unprivileged account when Sekisho is root).
"""
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

import uno
import unohelper
from com.sun.star.beans import PropertyValue
from com.sun.star.connection import NoConnectException
from com.sun.star.lang import DisposedException
from com.sun.star.task import XInteractionHandler

SOFFICE_BIN = "/usr/lib/libreoffice/program/soffice.bin"
# soffice.bin exits with this code when it wants to be started again (first start of a new profile).
RESTART_EXIT_CODE = 81
# How long soffice gets to open its UNO pipe on a cold start (about 4 s is normal on a busy machine).
CONNECT_TIMEOUT_S = 60
CONNECT_POLL_S = 0.1
# How often the bridge checks that its parent is still alive.
PARENT_POLL_S = 1

# com.sun.star.document.MacroExecMode.NEVER_EXECUTE and UpdateDocMode.NO_UPDATE.
NEVER_EXECUTE = 0
NO_UPDATE = 0

# The "discard" port on loopback: nothing listens there, so a connection is refused at once.
DEAD_PROXY_HOST = "127.0.0.1"
DEAD_PROXY_PORT = 9
# (configuration node, setting, value) applied once per start.
HARDENED_SETTINGS = [
    ("/org.openoffice.Office.Common/Security/Scripting", "DisableMacrosExecution", True),
    # Every http(s)/ftp fetch (a linked image, an OLE link) goes to a proxy on a port where nothing listens.
    ("/org.openoffice.Inet/Settings", "ooInetProxyType", 1),
    ("/org.openoffice.Inet/Settings", "ooInetNoProxy", ""),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPProxyName", DEAD_PROXY_HOST),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPProxyPort", DEAD_PROXY_PORT),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPSProxyName", DEAD_PROXY_HOST),
    ("/org.openoffice.Inet/Settings", "ooInetHTTPSProxyPort", DEAD_PROXY_PORT),
    ("/org.openoffice.Inet/Settings", "ooInetFTPProxyName", DEAD_PROXY_HOST),
    ("/org.openoffice.Inet/Settings", "ooInetFTPProxyPort", DEAD_PROXY_PORT),
]

# The export filter for each kind of document, by the service the loaded model supports (first match wins).
EXPORT_FILTERS = [
    ("com.sun.star.sheet.SpreadsheetDocument", "calc_pdf_Export"),
    ("com.sun.star.presentation.PresentationDocument", "impress_pdf_Export"),
    ("com.sun.star.drawing.DrawingDocument", "draw_pdf_Export"),
    ("com.sun.star.text.WebDocument", "writer_web_pdf_Export"),
    ("com.sun.star.text.TextDocument", "writer_pdf_Export"),
]

PASSWORD_TYPE = uno.getTypeByName("com.sun.star.task.XInteractionPassword")
ABORT_TYPE = uno.getTypeByName("com.sun.star.task.XInteractionAbort")


def prop(name, value):
    p = PropertyValue()
    p.Name = name
    p.Value = value
    return p


class AbortingHandler(unohelper.Base, XInteractionHandler):
    """Answers every question LibreOffice asks with "abort", remembering whether one asked for a password.

    The request itself is not read: pyuno fails on requests that are exceptions (SystemError), so a password
    request is recognised by its XInteractionPassword continuation.
    """

    def __init__(self):
        self.asked_password = False

    def handle(self, request):
        continuations = request.getContinuations()
        for c in continuations:
            if c.queryInterface(PASSWORD_TYPE) is not None:
                self.asked_password = True
        for c in continuations:
            if c.queryInterface(ABORT_TYPE) is not None:
                c.select()
                return


def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def limit_memory(limit_bytes):
    def apply():
        if limit_bytes > 0:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
        # A crashing soffice must not write a multi-GiB core into the working directory.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def start_soffice(profile_url, pipe, limit_bytes):
    args = [
        SOFFICE_BIN,
        "--headless",
        "--invisible",
        "--nologo",
        "--norestore",
        "--nodefault",
        "--nolockcheck",
        "--nofirststartwizard",
        "-env:UserInstallation=" + profile_url,
        "--accept=pipe,name=" + pipe + ";urp;StarOffice.ComponentContext",
    ]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=limit_memory(limit_bytes))


def connect(proc, pipe, profile_url, limit_bytes):
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        try:
            ctx = resolver.resolve("uno:pipe,name=" + pipe + ";urp;StarOffice.ComponentContext")
            return proc, ctx
        except NoConnectException:
            code = proc.poll()
            if code == RESTART_EXIT_CODE:
                proc = start_soffice(profile_url, pipe, limit_bytes)
            elif code is not None:
                raise RuntimeError("soffice exited with code %d before accepting connections" % code)
            if time.monotonic() > deadline:
                raise RuntimeError("soffice did not open its UNO pipe within %d s" % CONNECT_TIMEOUT_S)
            time.sleep(CONNECT_POLL_S)


def harden_config(ctx):
    """Turns on the settings that keep a document from reaching out (the network namespace is the second belt)."""
    provider = ctx.ServiceManager.createInstanceWithContext("com.sun.star.configuration.ConfigurationProvider", ctx)
    for path, name, value in HARDENED_SETTINGS:
        access = provider.createInstanceWithArguments("com.sun.star.configuration.ConfigurationUpdateAccess", (prop("nodepath", path),))
        access.setPropertyValue(name, value)
        access.commitChanges()



def export_filter(doc):
    for service, name in EXPORT_FILTERS:
        if doc.supportsService(service):
            return name
    return None


def convert(desktop, src, dst):
    handler = AbortingHandler()
    load_props = (
        prop("Hidden", True),
        prop("ReadOnly", True),
        prop("MacroExecutionMode", NEVER_EXECUTE),
        prop("UpdateDocMode", NO_UPDATE),
        prop("InteractionHandler", handler),
        prop("Silent", True),
    )
    doc = None
    try:
        try:
            doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(src), "_blank", 0, load_props)
        except DisposedException:
            raise
        except Exception as e:
            if handler.asked_password:
                return {"ok": False, "error": "encrypted", "message": "the document is password-protected"}
            return {"ok": False, "error": "conversion-failed", "message": "LibreOffice could not load it: %s" % e}
        if handler.asked_password:
            return {"ok": False, "error": "encrypted", "message": "the document is password-protected"}
        if doc is None:
            return {"ok": False, "error": "conversion-failed", "message": "LibreOffice could not load it (no import filter accepted it)"}
        name = export_filter(doc)
        if name is None:
            return {"ok": False, "error": "unsupported-type", "message": "LibreOffice loaded it as a kind of document it cannot export to PDF"}
        doc.storeToURL(uno.systemPathToFileUrl(dst), (prop("FilterName", name),))
        return {"ok": True, "filter": name}
    finally:
        if doc is not None:
            try:
                doc.close(True)
            except DisposedException:
                raise
            except Exception:
                pass


def serve(desktop):
    for line in sys.stdin:
        req = json.loads(line)
        try:
            answer = convert(desktop, req["in"], req["out"])
        except DisposedException as e:
            send({"id": req["id"], "ok": False, "error": "crashed", "message": "LibreOffice went away: %s" % e})
            return 3
        except Exception as e:
            # A RuntimeException from a bridge whose other end died says so; anything else is this document's fault.
            text = str(e)
            if "disposed" in text.lower() or "connection" in text.lower():
                send({"id": req["id"], "ok": False, "error": "crashed", "message": "LibreOffice went away: %s" % text})
                return 3
            send({"id": req["id"], "ok": False, "error": "conversion-failed", "message": "LibreOffice failed on it: %s" % text})
            continue
        answer["id"] = req["id"]
        send(answer)
    return 0


def watch_parent():
    """Takes the whole group down when the Node process that started it is gone (its stdin may stay open)."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os.killpg(0, signal.SIGKILL)


def main():
    if os.geteuid() == 0 or os.getegid() == 0 or 0 in os.getgroups():
        send({"fatal": "refusing to run LibreOffice as root: its documents could draw root-only files into the PDF"})
        return 2
    threading.Thread(target=watch_parent, daemon=True).start()
    profile_url, pipe, limit_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
    proc = start_soffice(profile_url, pipe, limit_bytes)
    try:
        proc, ctx = connect(proc, pipe, profile_url, limit_bytes)
        harden_config(ctx)
        desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
        send({"ready": True, "pid": proc.pid})
        code = serve(desktop)
    except Exception as e:
        send({"fatal": str(e)})
        code = 2
    if proc.poll() is None:
        proc.kill()
    return code


if __name__ == "__main__":
    sys.exit(main())
