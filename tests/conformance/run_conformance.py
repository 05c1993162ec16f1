"""ZEO 6.2's own conformance tests, against runzeo or against `zeo serve`.

Runs the test classes of ZEO.tests.testZEO and ZEO.tests.testConnection (which mix in
ZODB's storage test mixins) and ZODB's blob test suites with ZEO clients, exactly as
ZEO's suite defines them, with the server started either by ZEO's own launcher
(``--server runzeo``: Python runzeo in a forked process) or by
``zeo_serve_launcher`` (``--server zeo``: the binary named by ``--zeo-bin`` or
``ZEO_BIN``).  Prints a passed/failed/skipped table per group and writes every test's
outcome to ``--json``.

With ``--check`` the run fails (exit 1) when a test fails that is not listed as an
expected failure in docs/compatibility.md ("Server conformance", table "Expected
failures"), or when a listed test unexpectedly passes (so the list stays exact).

Usage (see docs/compatibility.md):
    python tests/conformance/run_conformance.py --server zeo --zeo-bin target/debug/zeo \
        [--jobs 2] [--json out.json] [--check] [--group NAME ...] [-k SUBSTRING]

Groups run in separate worker processes (``--jobs`` at a time), each in its own
temporary directory, with a time limit per group (``--group-timeout``); a worker that
runs out of time is killed and its unfinished tests are reported as errors.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest


HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
COMPAT_DOC = os.path.join(REPO, 'docs', 'compatibility.md')


# Groups: name -> (builder, why it is there).  Builders import lazily so that a
# worker only imports what it runs.

def _classes(module, *names, prefixes=('check', 'test')):
    def build():
        mod = __import__(module, fromlist=['x'])
        suite = unittest.TestSuite()
        for name in names:
            for prefix in prefixes:
                loader = unittest.TestLoader()
                loader.testMethodPrefix = prefix
                suite.addTest(loader.loadTestsFromTestCase(getattr(mod, name)))
        return suite
    return build


def _blob_suite(shared):
    def build():
        import ZODB.tests.testblob
        from ZEO.tests import testZEO
        if shared:
            return ZODB.tests.testblob.storage_reusable_suite(
                'ClientStorageSharedBlobs', testZEO.create_storage_shared)
        return ZODB.tests.testblob.storage_reusable_suite(
            'ClientStorageNonSharedBlobs', testZEO.ServerManagingClientStorage)
    return build


def _external_gc():
    from ZEO.tests import testZEO
    from ZODB.tests import PackableStorage
    return PackableStorage.IExternalGC_suite(
        lambda: testZEO.ServerManagingClientStorageForIExternalGCTest(
            'data.fs', 'blobs', extrafsoptions='pack-gc false'))


TZ = 'ZEO.tests.testZEO'
TC = 'ZEO.tests.testConnection'

GROUPS = {
    # testZEO: the storage mixins (BasicStorage with its race tests, Packable,
    # Synchronization, MTStorage, ReadOnly, CommitLock, ThreadTests, Revision,
    # History, Iterator, TransactionalUndo, ConflictResolution, Cache) over a
    # FileStorage with blobs (server-side and shared blob directory) and over a
    # MappingStorage.
    'BlobAdaptedFileStorageTests': _classes(TZ, 'BlobAdaptedFileStorageTests'),
    'BlobWritableCacheTests': _classes(TZ, 'BlobWritableCacheTests'),
    'MappingStorageTests': _classes(TZ, 'MappingStorageTests'),
    'FileStorageSSLTests': _classes(TZ, 'FileStorageSSLTests'),
    'ClientConflictResolutionTests': _classes(
        TZ, 'ClientConflictResolutionTests'),
    'FileStorageRecoveryTests': _classes(TZ, 'FileStorageRecoveryTests'),
    'ZRPCConnectionTests': _classes(TZ, 'ZRPCConnectionTests'),
    'IExternalGC': _external_gc,
    'ClientStorageNonSharedBlobs': _blob_suite(False),
    'ClientStorageSharedBlobs': _blob_suite(True),
    # testConnection: connection, reconnection, invalidation queue, timeouts.
    'FileStorageConnectionTests': _classes(
        TC, 'FileStorageConnectionTests', prefixes=('check',)),
    'FileStorageReconnectionTests': _classes(
        TC, 'FileStorageReconnectionTests', prefixes=('check',)),
    'FileStorageInvqTests': _classes(
        TC, 'FileStorageInvqTests', prefixes=('check',)),
    'FileStorageTimeoutTests': _classes(
        TC, 'FileStorageTimeoutTests', prefixes=('check',)),
    'MappingStorageConnectionTests': _classes(
        TC, 'MappingStorageConnectionTests', prefixes=('check',)),
    'MappingStorageTimeoutTests': _classes(
        TC, 'MappingStorageTimeoutTests', prefixes=('check',)),
    'SSLConnectionTests': _classes(
        TC, 'SSLConnectionTests', prefixes=('check',)),
}

# What `make test` runs (tests/interop/conformance.rs): every group (about two
# minutes with --jobs 2 on two cores).
CI_GROUPS = list(GROUPS)

# The quick subset (about a minute): every group but the four big storage-mixin
# classes. `make test` runs it for the second client version (ZEO 5.x,
# tests/interop/zeo5.rs), so the two runs together stay well inside CI's budget.
QUICK_GROUPS = [g for g in GROUPS if g not in (
    'BlobAdaptedFileStorageTests', 'BlobWritableCacheTests',
    'MappingStorageTests', 'FileStorageSSLTests')]

# Tests not run against either server, with the reason (mirrored in
# docs/compatibility.md).  Matched against the test id (a substring).
EXCLUDED = {}
if os.geteuid() == 0:
    # blob_transaction.txt asserts that a committed (read-only) blob file
    # cannot be opened for writing, which root can; it then reads the blob
    # it has just truncated.  Fails against runzeo as well when run as root.
    EXCLUDED['/blob_transaction_txt'] = (
        'run as root: checks that a read-only blob file cannot be opened '
        'for writing, which root can (fails against runzeo too)')


def _iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _iter_tests(t)
        else:
            yield t


def _level(test):
    """zope.testrunner's level: tests above 1 are not run by default."""
    level = getattr(test, 'level', None)
    if not isinstance(level, int):
        meth = getattr(test, getattr(test, '_testMethodName', ''), None)
        level = getattr(meth, 'level', 1)
    return level if isinstance(level, int) else 1


def short_id(test):
    """group/method for unittest tests, group/name for doctests."""
    tid = test.id()
    if isinstance(test, unittest.FunctionTestCase) or not hasattr(
            test, '_testMethodName') or test._testMethodName == 'runTest':
        name = tid
    else:
        name = tid.rsplit('.', 1)[-1]
    return f'{GROUP}/{name}'


GROUP = ''


class _Recorder(unittest.TestResult):
    """Appends one JSON line per finished test to a file (survives a kill)."""

    def __init__(self, out, verbose):
        super().__init__()
        self.out = out
        self.verbose = verbose
        self.started = 0.0

    def _emit(self, test, status, detail=''):
        rec = dict(id=short_id(test), status=status, detail=detail,
                   seconds=round(time.time() - self.started, 2))
        self.out.write(json.dumps(rec) + '\n')
        self.out.flush()
        if self.verbose:
            print(f'{status:7} {rec["seconds"]:6.1f}s {rec["id"]}',
                  file=sys.stderr, flush=True)

    def startTest(self, test):
        super().startTest(test)
        self.started = time.time()
        self.out.write(json.dumps(dict(id=short_id(test), status='started'))
                       + '\n')
        self.out.flush()

    def addSuccess(self, test):
        self._emit(test, 'passed')

    def addFailure(self, test, err):
        self._emit(test, 'failed', self._exc_info_to_string(err, test))

    def addError(self, test, err):
        self._emit(test, 'failed', self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        self._emit(test, 'skipped', reason)

    def addExpectedFailure(self, test, err):
        self._emit(test, 'skipped', 'expected failure (upstream)')

    def addUnexpectedSuccess(self, test):
        self._emit(test, 'passed')

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self._emit(subtest, 'failed', self._exc_info_to_string(err, test))


class TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout('test did not finish within --test-timeout seconds')


def worker(args):
    """Run one group in this process; outcomes go to args.out as JSON lines."""
    if args.server == 'zeo':
        sys.path.insert(0, HERE)
        import zeo_serve_launcher
        zeo_serve_launcher.install(args.zeo_bin)
    import logging
    logging.basicConfig(level=logging.CRITICAL)
    signal.signal(signal.SIGALRM, _on_alarm)
    global GROUP
    GROUP = args.group
    suite = GROUPS[args.group]()
    with open(args.out, 'a') as out:
        rec = _Recorder(out, args.verbose)
        for test in _iter_tests(suite):
            tid = short_id(test)
            if args.k and not any(k in tid for k in args.k):
                continue
            reason = next((r for pat, r in EXCLUDED.items() if pat in tid), None)
            if reason is None and _level(test) > args.level:
                reason = (f'level {_level(test)} test (run with --level '
                          f'{_level(test)})')
            if reason is not None:
                rec.started = time.time()
                rec._emit(test, 'skipped', 'excluded: ' + reason)
                continue
            cwd = os.getcwd()
            d = tempfile.mkdtemp(prefix='t', dir=cwd)
            os.chdir(d)
            signal.alarm(args.test_timeout)
            try:
                test(rec)
            finally:
                signal.alarm(0)
                os.chdir(cwd)
    return 0


def _read_outcomes(path, group):
    outcomes = {}
    if not os.path.exists(path):
        return outcomes
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            rec['group'] = group
            if rec['status'] == 'started':
                outcomes.setdefault(rec['id'], dict(
                    rec, status='failed',
                    detail='did not finish (worker killed or crashed)'))
            else:
                outcomes[rec['id']] = rec
    return outcomes


def run_groups(args, groups):
    work = tempfile.mkdtemp(prefix=f'conformance-{args.server}-')
    pending = list(groups)
    running = {}
    results = {}
    while pending or running:
        while pending and len(running) < args.jobs:
            g = pending.pop(0)
            gdir = os.path.join(work, g)
            os.mkdir(gdir)
            out = os.path.join(gdir, 'outcomes.jsonl')
            cmd = [sys.executable, os.path.abspath(__file__), '--worker',
                   '--group', g, '--server', args.server, '--out', out]
            if args.zeo_bin:
                cmd += ['--zeo-bin', args.zeo_bin]
            for k in args.k or ():
                cmd += ['-k', k]
            if args.verbose:
                cmd.append('-v')
            cmd += ['--level', str(args.level),
                    '--test-timeout', str(args.test_timeout)]
            log = open(os.path.join(gdir, 'worker.log'), 'wb')
            proc = subprocess.Popen(cmd, cwd=gdir, stdout=log,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            running[g] = (proc, time.time(), out, log)
        time.sleep(0.2)
        for g, (proc, t0, out, log) in list(running.items()):
            timed_out = time.time() - t0 > args.group_timeout
            if proc.poll() is None and not timed_out:
                continue
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
            log.close()
            outcomes = _read_outcomes(out, g)
            if timed_out:
                for rec in outcomes.values():
                    if rec['detail'].startswith('did not finish'):
                        rec['detail'] = (f'group timed out after '
                                         f'{args.group_timeout}s')
            if not outcomes or (proc.returncode and not timed_out):
                with open(log.name, errors='replace') as f:
                    tail = f.read()[-3000:]
                rec = dict(id=f'{g} (worker)', status='failed', group=g,
                           detail=f'worker exit {proc.returncode}:\n{tail}',
                           seconds=0)
                if not outcomes or proc.returncode < 0 or 'Traceback' in tail:
                    outcomes[rec['id']] = rec
            results.update(outcomes)
            running.pop(g)
            print(f'[{args.server}] {g}: {time.time() - t0:.0f}s',
                  file=sys.stderr, flush=True)
    return results, work


def expected_failures(path=COMPAT_DOC):
    """Test ids listed in docs/compatibility.md, "Expected failures" table."""
    want = {}
    try:
        text = open(path).read()
    except OSError:
        return want
    m = re.search(r'^### Expected failures\s*$(.*?)(?=^#)', text + '\n#',
                  re.M | re.S)
    if not m:
        return want
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) >= 2 and cells[0].startswith('`'):
            want[cells[0].strip('`')] = cells[1]
    return want


def table(results, groups):
    rows = []
    tot = [0, 0, 0]
    for g in groups:
        c = [0, 0, 0]
        for rec in results.values():
            if rec['group'] == g:
                c[('passed', 'failed', 'skipped').index(rec['status'])] += 1
        rows.append((g, *c))
        tot = [a + b for a, b in zip(tot, c)]
    rows.append(('total', *tot))
    w = max(len(r[0]) for r in rows)
    lines = [f'{"group":{w}}  passed  failed  skipped']
    for r in rows:
        lines.append(f'{r[0]:{w}}  {r[1]:6}  {r[2]:6}  {r[3]:7}')
    return '\n'.join(lines), tot


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--server', choices=('runzeo', 'zeo'), default='zeo')
    p.add_argument('--zeo-bin', default=os.environ.get('ZEO_BIN'))
    p.add_argument('--group', action='append',
                   help='run only these groups (default: all)')
    p.add_argument('--ci', action='store_true',
                   help='run the groups `make test` runs (see CI_GROUPS)')
    p.add_argument('--quick', action='store_true',
                   help='run the quick subset (see QUICK_GROUPS)')
    p.add_argument('-k', action='append',
                   help='run only tests whose id contains this')
    p.add_argument('--level', type=int, default=1,
                   help='run tests up to this zope.testrunner level '
                        '(zope-testrunner runs level 1 by default)')
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--group-timeout', type=float, default=240)
    p.add_argument('--test-timeout', type=int, default=60,
                   help='seconds one test may take (then it fails)')
    p.add_argument('--json', help='write all outcomes here')
    p.add_argument('--check', action='store_true',
                   help='fail on unexpected failures or unexpected passes')
    p.add_argument('--list', action='store_true', help='list the groups')
    p.add_argument('-v', '--verbose', action='store_true')
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--out', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.list:
        print('\n'.join(GROUPS))
        return 0
    if args.server == 'zeo' and not args.zeo_bin:
        p.error('--server zeo needs --zeo-bin or ZEO_BIN')
    if args.zeo_bin:
        args.zeo_bin = os.path.abspath(args.zeo_bin)
    if args.worker:
        args.group = args.group[0]
        return worker(args)
    groups = args.group or (
        QUICK_GROUPS if args.quick else CI_GROUPS if args.ci else list(GROUPS))
    for g in groups:
        if g not in GROUPS:
            p.error(f'unknown group {g!r} (see --list)')
    t0 = time.time()
    results, work = run_groups(args, groups)
    text, (npass, nfail, nskip) = table(results, groups)
    print(f'server: {args.server}   wall time: {time.time() - t0:.0f}s   '
          f'work dir: {work}')
    print(text)
    failed = sorted(r['id'] for r in results.values()
                    if r['status'] == 'failed')
    for tid in failed:
        first = results[tid]['detail'].strip().splitlines()[-1:] or ['']
        print(f'FAILED {tid}: {first[0][:200]}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(server=args.server, results=results), f, indent=1,
                      sort_keys=True)
    status = 0
    if args.check:
        expected = expected_failures()
        unexpected = [t for t in failed if t not in expected]
        # "intermittent" entries may pass; the others must fail.
        fixed = [t for t in expected
                 if t in results and results[t]['status'] == 'passed'
                 and not expected[t].lower().startswith('intermittent')]
        for t in unexpected:
            print(f'UNEXPECTED FAILURE {t}\n{results[t]["detail"]}')
        for t in fixed:
            print(f'UNEXPECTED PASS {t} (remove it from the expected failures'
                  ' in docs/compatibility.md)')
        if unexpected or fixed:
            status = 1
    print(f'conformance: {npass} passed, {nfail} failed, {nskip} skipped')
    return status


if __name__ == '__main__':
    sys.exit(main())
