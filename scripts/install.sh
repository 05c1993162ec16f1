#!/bin/sh
# Install zeo: the binary, its old-name links, man pages, shell completions, the systemd
# unit and the sample configuration. `make install` runs this with the static release
# binary; tests/install.rs runs it with the test build.
#
#   scripts/install.sh --bin PATH [--prefix DIR] [--destdir DIR] [--strip]
#
# --strip removes the debug information from the installed copy (the release profile
# keeps line tables for backtraces and profiling: 17 MB instead of 3.6 MB).
# PREFIX (default /usr/local) is where the files will live at run time (the unit's
# ExecStart points into it); DESTDIR, if given, is prepended to every path written
# (staged installs for packages). Layout under PREFIX:
#   bin/zeo, bin/{runzeo,zeopack,zeoup,zeo-nagios} -> zeo
#   share/man/man1/zeo*.1 (and runzeo.1, zeopack.1, zeoup.1, zeo-nagios.1 links)
#   share/bash-completion/completions/zeo, share/zsh/site-functions/_zeo,
#   share/fish/vendor_completions.d/zeo.fish
#   lib/systemd/system/zeo.service
#   share/doc/zeo/{zeo.conf.sample,operations.md,configuration.md,README.md}
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
bin=
prefix=/usr/local
destdir=
strip=no

die() { echo "install.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --bin) [ $# -ge 2 ] || die "--bin needs a path"; bin=$2; shift 2 ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --destdir) [ $# -ge 2 ] || die "--destdir needs a directory"; destdir=$2; shift 2 ;;
    --strip) strip=yes; shift ;;
    *) die "unknown argument: $1 (usage: install.sh --bin PATH [--prefix DIR] [--destdir DIR] [--strip])" ;;
  esac
done
[ -n "$bin" ] || die "--bin PATH is required"
[ -f "$bin" ] && [ -x "$bin" ] || die "no executable at $bin (run 'make release' first)"
case "$prefix" in
  /*) ;;
  *) die "--prefix must be an absolute path, not $prefix" ;;
esac

root=$destdir$prefix
bindir=$root/bin
man1=$root/share/man/man1
bashdir=$root/share/bash-completion/completions
zshdir=$root/share/zsh/site-functions
fishdir=$root/share/fish/vendor_completions.d
unitdir=$root/lib/systemd/system
docdir=$root/share/doc/zeo

install -d "$bindir" "$man1" "$bashdir" "$zshdir" "$fishdir" "$unitdir" "$docdir"

install -m 0755 "$bin" "$bindir/zeo"
if [ "$strip" = yes ]; then
  strip "$bindir/zeo"
fi
for tool in runzeo zeopack zeoup zeo-nagios; do
  ln -sf zeo "$bindir/$tool"
done

for page in "$here"/man/*.1; do
  install -m 0644 "$page" "$man1/"
done
ln -sf zeo-serve.1 "$man1/runzeo.1"
ln -sf zeo-pack.1 "$man1/zeopack.1"
ln -sf zeo-up.1 "$man1/zeoup.1"
ln -sf zeo-up.1 "$man1/zeo-nagios.1"

install -m 0644 "$here/completions/zeo.bash" "$bashdir/zeo"
install -m 0644 "$here/completions/_zeo" "$zshdir/_zeo"
install -m 0644 "$here/completions/zeo.fish" "$fishdir/zeo.fish"

# The unit names the binary by its run-time path.
sed "s|/usr/local/bin/zeo|$prefix/bin/zeo|g" "$here/scripts/zeo.service" >"$unitdir/zeo.service"
chmod 0644 "$unitdir/zeo.service"

install -m 0644 "$here/docs/zeo.conf.sample" "$here/docs/operations.md" \
  "$here/docs/configuration.md" "$here/README.md" "$docdir/"

echo "installed zeo into $root"
