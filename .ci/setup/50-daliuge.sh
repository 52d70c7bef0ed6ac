#!/usr/bin/env bash
# DALiuGE 6.6 from the package index, the oracle of the differential tests (tests/daliuge/): `dlg unroll`,
# its translator service and its engine run in a virtualenv of their own, and none of DALiuGE's code enters
# dropflow. Its translator service needs older fastapi/starlette/pydantic (newer ones break its import).
# The virtualenv is kept in a cache directory and reused while it has the same pins; the tests find it at
# the same default place, or where $DROPFLOW_DALIUGE_VENV says.
set -euo pipefail
VENV="${DROPFLOW_DALIUGE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/dropflow/daliuge-6.6.0}"
PINS="daliuge-common==6.6.0 daliuge-engine==6.6.0 daliuge-translator==6.6.0 fastapi==0.115.12 starlette<0.47 pydantic>=2,<2.12"
MARK="$VENV/dropflow-oracle-pins"
if [ -x "$VENV/bin/dlg" ] && [ "$(cat "$MARK" 2>/dev/null)" = "$PINS" ] \
    && "$VENV/bin/python" -c 'import dlg.dropmake.pg_generator, dlg.dropmake.web.translator_rest' 2>/dev/null; then
    echo "DALiuGE oracle already in $VENV"
    exit 0
fi
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
# shellcheck disable=SC2086  # the pins are words on purpose
"$VENV/bin/pip" install --quiet $PINS
"$VENV/bin/python" -c 'import dlg.dropmake.pg_generator, dlg.dropmake.web.translator_rest'
echo "$PINS" > "$MARK"
echo "DALiuGE oracle installed in $VENV: $("$VENV/bin/pip" show daliuge-engine | grep -i '^version')"
