# Sourced by scripts/serve and scripts/test: a project-local virtualenv, (re)installed when pyproject changes.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

pick_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  py="$(pick_python)"
  echo "p2c: creating virtualenv in .venv with $py" >&2
  "$py" -m venv "$venv"
fi
stamp="$venv/.p2c-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "p2c: installing the gateway and its dependencies into .venv (first run takes a minute)" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install --quiet -e ".[dev]"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
