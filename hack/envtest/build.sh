#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kubectl) from source through the
# Go module proxy into a cache directory outside the clone. Release downloads (what
# setup-envtest does) are not reachable on our machines, the module proxy is.
#
# Usage: hack/envtest/build.sh <dest-dir>
# Each binary is built only when missing; a finished binary is moved into place
# atomically, so an interrupted build never leaves a half-written file behind.
set -euo pipefail

dest=${1:?usage: $0 <dest-dir>}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$dest"

k8s_version=v1.37.2
# Version stamps so `kubectl version` and /version report the real release.
k8s_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=${k8s_version} \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=37 \
 -X k8s.io/component-base/version.gitTreeState=clean"

build() { # name module-dir package ldflags
	local name=$1 dir=$2 pkg=$3 ldflags=$4
	if [[ -x "$dest/$name" ]]; then
		echo "envtest-assets: $name present in $dest"
		return
	fi
	echo "envtest-assets: building $name from $pkg (first time only; kube-apiserver takes ~6 min on 2 cores)"
	local start=$SECONDS
	(cd "$here/$dir" && CGO_ENABLED=0 GOWORK=off \
		go build -v -trimpath -ldflags "$ldflags" -o "$dest/.$name.tmp" "$pkg" 2>&1 |
		awk -v n="$name" '{c++} c%50==0 {printf "envtest-assets: %s: %d packages compiled\n", n, c; fflush()}')
	mv -f "$dest/.$name.tmp" "$dest/$name"
	echo "envtest-assets: $name built in $((SECONDS - start))s"
}

build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
build kubectl kubernetes k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
build kube-apiserver kubernetes k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
echo "envtest-assets: ready in $dest"
