#!/usr/bin/env bash
# The client-side attack run: every attack test against real srs-mesh
# processes (and nginx-rtmp / SRS origins), the first suite (TestSecurity*)
# and the second (TestAttack*). Each attack test also checks that a
# legitimate stream keeps working next to the attack. Run from anywhere:
#
#   test/attack.sh            # SRS_MESH_TEST_SRS=/path/to/srs for the SRS cases
#
# It needs what the end-to-end tests need (make deps). A missing tool fails
# the run (strict mode) unless SRS_MESH_E2E_STRICT=0 is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export SRS_MESH_E2E_STRICT=${SRS_MESH_E2E_STRICT:-1}
report=$(mktemp)
trap 'rm -f "$report"' EXIT
export SRS_MESH_E2E_REPORT=$report
rc=0
go test -count=1 -timeout 20m -run '^(TestSecurity|TestAttack)' "$@" ./test/ || rc=$?
[ -s "$report" ] && sed 's/^end-to-end tests/attack tests/' "$report"
exit "$rc"
