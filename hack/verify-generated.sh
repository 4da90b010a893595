#!/usr/bin/env bash
# Regenerates CRDs, RBAC, deepcopy code and the Helm chart's copy of config/ (files/) and
# fails if that changed anything, so a type, marker or config/ edit without
# `make manifests generate` never lands. Compares against the working tree (not git), so it
# also works before the change is committed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

generated=(config/crd/bases config/rbac/role.yaml api/v1alpha1/zz_generated.deepcopy.go charts/funnel-operator/files)
before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT
for p in "${generated[@]}"; do
	if [[ -e $p ]]; then mkdir -p "$before/$(dirname "$p")" && cp -r "$p" "$before/$p"; fi
done

make --no-print-directory -s manifests generate

stale=0
for p in "${generated[@]}"; do
	if ! diff -ruN "$before/$p" "$p" >/dev/null 2>&1; then
		echo "verify: $p was out of date; it has now been regenerated, review and commit it:" >&2
		diff -ruN "$before/$p" "$p" | head -40 >&2 || true
		stale=1
	fi
done
exit $stale
