"""Run ZEO's own test suite against `zeo serve` instead of Python's runzeo.

ZEO's tests start their servers through ``ZEO._forker.start_zeo_server`` (re-exported
as ``ZEO.tests.forker.start_zeo_server`` and used by ``ZEO.server``).  ``install``
replaces that function with one that writes the same zeo.conf text (the ``<zeo>``
section the tests ask for, then their storage sections) and starts the binary named
by ``ZEO_BIN`` (``zeo serve -C conf``) in the test's working directory.  It returns
what the original returns: the ``(host, port)`` address and a ``stop(stop_timeout)``
function.  Like the original runner, ``stop`` removes the FileStorage files
(Data.fs, .index, .lock, .tmp, .old, .pack) unless ``keep`` was asked for, so a
restarted server starts from an empty storage exactly when runzeo would.

Port 0 ("any free port") is resolved here: a free loopback port is chosen and
written into the configuration (the server is retried on another port if the
chosen one was taken meanwhile).  Readiness is the port accepting connections.
"""

import itertools
import os
import re
import signal
import socket
import subprocess
import tempfile
import time


_counter = itertools.count(1)
ZEO_BIN = None


class ServerStartError(Exception):
    pass


def _free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _can_connect(host, port):
    try:
        socket.create_connection((host or '127.0.0.1', port), timeout=1).close()
        return True
    except OSError:
        return False


def _zeo_text(zeo_conf, port, log):
    """The <zeo> (and <eventlog>) part, as the original builds it."""
    import ZEO._forker
    if zeo_conf is None or isinstance(zeo_conf, dict):
        if port is None:
            port = 0
        addr = ('127.0.0.1', port) if isinstance(port, int) else port
        z = ZEO._forker.ZEOConfig(addr, log=log)
        if zeo_conf:
            z.__dict__.update(zeo_conf)
        zeo_conf = z
    return str(zeo_conf)


_ADDRESS = re.compile(r'^(\s*address\s+)(.+?)\s*$', re.M)
_PATH = re.compile(r'^\s*path\s+(\S+)\s*$', re.M)


def _address_of(text):
    m = _ADDRESS.search(text)
    if m is None:
        raise ServerStartError('no address in the <zeo> section:\n' + text)
    value = m.group(2).replace(' ', '')
    if ':' not in value:
        if value.isdigit():
            return '127.0.0.1', int(value)
        raise ServerStartError('unix socket addresses are not handled: ' + value)
    host, port = value.rsplit(':', 1)
    return host.strip('[]'), int(port)


def _with_port(text, host, port):
    return _ADDRESS.sub(lambda m: f'{m.group(1)}{host}:{port}', text, count=1)


def start_zeo_server(storage_conf=None, zeo_conf=None, port=None, keep=False,
                     path='Data.fs', protocol=None, blob_dir=None,
                     suicide=True, debug=False, threaded=False,
                     start_timeout=33, name=None, log=None,
                     show_config=False):
    if protocol:
        raise ServerStartError(
            'zeo serve cannot be told to offer an older protocol version')
    if not storage_conf:
        storage_conf = f'<filestorage>\npath {path}\n</filestorage>'
    if blob_dir:
        storage_conf = (f'<blobstorage>\nblob-dir {blob_dir}\n'
                        f'{storage_conf}\n</blobstorage>')
    zeo_text = _zeo_text(zeo_conf, port, log)
    host, want_port = _address_of(zeo_text)
    cwd = os.getcwd()
    n = next(_counter)
    errlog = os.path.join(cwd, f'zeo-serve-{os.getpid()}-{n}.stderr')

    for attempt in range(5):
        port_ = want_port or _free_port()
        text = _with_port(zeo_text, host, port_) + '\n\n' + storage_conf + '\n'
        if show_config:
            print(text)
        fd, conf = tempfile.mkstemp('.conf', prefix='ZEO_serve', dir=cwd)
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        err = open(errlog, 'ab')
        proc = subprocess.Popen(
            [ZEO_BIN, 'serve', '-C', conf], cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        err.close()
        deadline = time.time() + start_timeout
        while proc.poll() is None and not _can_connect(host, port_):
            if time.time() > deadline:
                proc.kill()
                proc.wait()
                raise ServerStartError('zeo serve did not start listening')
            time.sleep(0.01)
        os.remove(conf)
        if proc.poll() is None:
            break
        with open(errlog, errors='replace') as f:
            tail = f.read()[-2000:]
        if want_port or 'in use' not in tail:
            raise ServerStartError(
                f'zeo serve exited with status {proc.returncode}:\n{tail}')
    else:
        raise ServerStartError('no free port found for zeo serve')

    paths = [os.path.join(cwd, p) for p in _PATH.findall(storage_conf)]

    def stop(stop_timeout=99):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=min(stop_timeout, 20))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not keep:
            for p in paths:
                for ext in ('', '.old', '.tmp', '.lock', '.index', '.pack'):
                    try:
                        os.remove(p + ext)
                    except FileNotFoundError:
                        pass

    return (host, port_), stop


def install(zeo_bin):
    """Make ZEO's test suite start `zeo_bin serve` wherever it starts runzeo."""
    global ZEO_BIN
    ZEO_BIN = zeo_bin
    import ZEO._forker
    import ZEO.tests.forker
    ZEO._forker.start_zeo_server = start_zeo_server
    ZEO.tests.forker.start_zeo_server = start_zeo_server
