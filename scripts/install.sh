#!/usr/bin/env bash
# make install: binaries, units, sysusers entry and example configuration.
# Usage: install.sh DESTDIR PREFIX BUILD_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
destdir=$1 prefix=$2 bin=$3
[ -x "$bin/gemma" ] || { echo "install: build first (no binaries in '$bin')" >&2; exit 1; }
install -d "$destdir$prefix/bin" "$destdir/etc/systemd/system" "$destdir/etc/gemma" \
  "$destdir/usr/lib/sysusers.d" "$destdir$prefix/share/doc/gemma"
for b in gemma gemma-tokenizer gemma-vision gemma-decoder; do
  install -m 0755 "$bin/$b" "$destdir$prefix/bin/$b"
done
for unit in systemd/gemma-*.socket systemd/gemma-*.service systemd/gemma.target; do
  # The units name /usr/local; a different PREFIX is written into the installed copy.
  sed "s|/usr/local|$prefix|g" "$unit" > "$destdir/etc/systemd/system/$(basename "$unit")"
  chmod 0644 "$destdir/etc/systemd/system/$(basename "$unit")"
done
install -m 0644 systemd/gemma.sysusers "$destdir/usr/lib/sysusers.d/gemma.conf"
for conf in systemd/conf/*.conf; do
  # Never overwrite an operator's configuration.
  [ -e "$destdir/etc/gemma/$(basename "$conf")" ] || install -m 0644 "$conf" "$destdir/etc/gemma/"
done
install -m 0644 README.md docs/*.md "$destdir$prefix/share/doc/gemma/"
if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
  systemd-sysusers gemma.conf >/dev/null 2>&1 || systemd-sysusers
  systemctl daemon-reload
fi
echo "installed into ${destdir}${prefix}"
