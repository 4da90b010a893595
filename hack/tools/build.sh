#!/usr/bin/env bash
# Builds a tool the project runs (promtool, helm, prometheus) from the Go module proxy into
# a cache outside the clone, like hack/envtest/build.sh does for the control plane. The
# version is in the file name, taken from the tool's module under hack/tools, so bumping
# it there builds the new one beside the old.
#
# Usage: hack/tools/build.sh <module-dir under hack/tools> <package> <output path> [ldflags]
# Built only when missing; moved into place atomically.
set -euo pipefail

dir=${1:?usage: $0 <module-dir> <package> <output> [ldflags]}
pkg=${2:?usage: $0 <module-dir> <package> <output> [ldflags]}
out=${3:?usage: $0 <module-dir> <package> <output> [ldflags]}
ldflags="-s -w ${4:-}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ -x "$out" ]]; then
	exit 0
fi
mkdir -p "$(dirname "$out")"
name=$(basename "$out")
echo "tools: building $name from $pkg (first time only; a few minutes on 2 cores)"
start=$SECONDS
(cd "$here/$dir" && CGO_ENABLED=0 GOWORK=off go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg")
mv -f "$out.tmp" "$out"
echo "tools: $name built in $((SECONDS - start))s"
