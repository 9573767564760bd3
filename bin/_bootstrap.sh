# Sourced by bin/archiver and bin/test: make sure .venv in the checkout exists and holds the project
# (with the extras named in $ARCHIVER_EXTRAS), reinstalling only when setup.cfg or pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
extras="${ARCHIVER_EXTRAS:-}"
stamp_name="installed${extras:+-$extras}"
want="$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "archiver needs Python 3.10 or newer; this is " + sys.version.split()[0])'
  echo "archiver: creating $VENV (first run only)" >&2
  "$PY" -m venv "$VENV" || { echo "archiver: could not create a virtual environment; on Debian: apt-get install python3-venv" >&2; exit 2; }
fi
if [ "$(cat "$VENV/.$stamp_name" 2>/dev/null)" != "$want" ]; then
  echo "archiver: installing the project into $VENV${extras:+ (with [$extras])}" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
  spec="$ROOT"
  [ -n "$extras" ] && spec="$ROOT[$extras]"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" >&2
  echo "$want" > "$VENV/.$stamp_name"
fi
