#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kubectl) from source through the
# Go module proxy into a cache directory outside the clone. Release downloads (what
# setup-envtest does) are not reachable on our machines, the module proxy is.
#
# Usage:
#   hack/envtest/build.sh newest <dest-dir>
#     etcd, kubectl and kube-apiserver of the newest supported Kubernetes (module kubernetes/)
#   hack/envtest/build.sh oldest <dest-dir> <newest-dest-dir>
#     kube-apiserver of the oldest supported Kubernetes (module kubernetes-oldest/); etcd
#     and kubectl are links to the newest ones, so <dest-dir> is a complete asset directory
#
# The Kubernetes version is the one each module requires. Each binary is built only when
# missing; a finished binary is moved into place atomically, so an interrupted build never
# leaves a half-written file behind.
set -euo pipefail

which=${1:-}
dest=${2:-}
usage="usage: $0 newest <dest-dir> | $0 oldest <dest-dir> <newest-dest-dir>"
case $which in
newest) module=kubernetes ;;
oldest) module=kubernetes-oldest newest=${3:?$usage} ;;
*) echo "$usage" >&2; exit 2 ;;
esac
[[ -n $dest ]] || { echo "$usage" >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$dest"

k8s_version=$(cd "$here/$module" && GOWORK=off go list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=${k8s_version#v1.}
minor=${minor%%.*}
# Version stamps so `kubectl version` and /version report the real release.
k8s_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=${k8s_version} \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=${minor} \
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

# link makes name in dest the newest build's: one etcd and one kubectl serve both API
# servers (etcd's storage API and kubectl's skew policy cover the supported range). A link
# left dangling by an upgrade of the newest version is replaced.
link() { # name
	local name=$1
	if [[ -x "$dest/$name" && "$(readlink "$dest/$name")" == "$newest/$name" ]]; then
		return
	fi
	[[ -x "$newest/$name" ]] || { echo "envtest-assets: $newest/$name missing: build the newest first" >&2; exit 1; }
	ln -sfn "$newest/$name" "$dest/$name"
	echo "envtest-assets: $dest/$name -> $newest/$name"
}

case $which in
newest)
	build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
	build kubectl "$module" k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
	;;
oldest)
	link etcd
	link kubectl
	;;
esac
build kube-apiserver "$module" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
echo "envtest-assets: Kubernetes ${k8s_version} ready in $dest"
