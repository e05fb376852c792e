#!/usr/bin/env bash
# Builds the test cluster's binaries from the Go module proxy, once per version.
#
# Each binary lands in $FTJOB_BIN_CACHE/<name>-<version>/<name> and is rebuilt only when
# missing, so a second run (or CI on the same machine) costs nothing. Prints the bin dir of
# every binary as NAME=PATH lines on stdout, for scripts that need them.
#
# Arguments name extra binaries that only benchmarks need: `kubeflow` (Kubeflow's training
# operator, for bench/kubeflow_bench.py).
set -euo pipefail
extras=" $* "
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${FTJOB_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ftjob/bin}
mkdir -p "$cache"
export CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local

log() { echo "[build-binaries] $*" >&2; }

# A cached binary is reused only when its recipe stamp (the linker flags it was built with)
# matches, so changing how a binary is built rebuilds it without bumping its version.
is_cached() { # NAME VERSION LDFLAGS
  local dest="$cache/$1-$2"
  [[ -x "$dest/$1" && -f "$dest/.recipe" && "$(cat "$dest/.recipe")" == "$3" ]]
}

# build_into NAME VERSION LDFLAGS PACKAGE [RECIPE]: `go install`s PACKAGE with GOBIN set to a
# temp dir and moves the result into the cache only when it succeeded, so a half-built binary
# is never cached. RECIPE (default LDFLAGS) is what a cached binary must have been built with.
build_into() {
  local name=$1 version=$2 ldflags=$3 package=$4 recipe=${5-$3}
  local dest="$cache/$name-$version"
  if is_cached "$name" "$version" "$recipe"; then echo "$name=$dest/$name"; return; fi
  local started=$SECONDS tmp
  tmp=$(mktemp -d)
  log "Building $name $version"
  GOBIN="$tmp" go install -ldflags="$ldflags" "$package" >&2
  rm -rf "$dest" && mkdir -p "$dest" && mv "$tmp/$name" "$dest/$name" && rm -rf "$tmp"
  printf '%s' "$recipe" > "$dest/.recipe"
  log "Built $name $version in $((SECONDS - started)) s"
  echo "$name=$dest/$name"
}

# Kubernetes cannot be `go install`ed directly: its go.mod replaces every staging module with
# a relative path. A consumer module that requires k8s.io/kubernetes and points each staging
# module at its published v0.N.P tag builds the commands instead.
kube_module() {
  local dir="$cache/src/kubernetes-$KUBERNETES_VERSION"
  if [[ ! -f "$dir/.ready" ]]; then
    rm -rf "$dir" && mkdir -p "$dir"
    local staging_version="v0.${KUBERNETES_VERSION#v1.}"
    (
      cd "$dir"
      go mod init ftjob.dev/kube-binaries >/dev/null 2>&1
      go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null
      local gomod
      gomod=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod
      {
        echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
        echo "replace ("
        sed -n '/^replace (/,/^)/p' "$gomod" | awk '/=> \.\/staging/ {print "\t" $1 " => " $1 " '"$staging_version"'"}'
        echo ")"
      } >> go.mod
      printf 'package tools\n\nimport (\n' > tools.go
      for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
        printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd" >> tools.go
      done
      printf ')\n' >> tools.go
      sed -i '1i //go:build tools\n' tools.go
      go mod tidy -e >&2 || true
      go mod download >&2
    )
    touch "$dir/.ready"
  fi
  echo "$dir"
}

# Without these the binaries report v0.0.0-master, which kubectl and Helm cannot parse.
minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
kube_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+="-X=$pkg.gitVersion=$KUBERNETES_VERSION -X=$pkg.gitMajor=1 -X=$pkg.gitMinor=$minor "
  kube_ldflags+="-X=$pkg.gitTreeState=clean "
done
kube_ldflags=${kube_ldflags% }
need_kube=0
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  is_cached "$cmd" "$KUBERNETES_VERSION" "$kube_ldflags" || need_kube=1
done
if (( need_kube )); then
  kdir=$(kube_module)
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    (cd "$kdir" && build_into "$cmd" "$KUBERNETES_VERSION" "$kube_ldflags" "k8s.io/kubernetes/cmd/$cmd")
  done
else
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    echo "$cmd=$cache/$cmd-$KUBERNETES_VERSION/$cmd"
  done
fi
# etcd's server module also carries relative replaces; a consumer module works the same way.
# The main package sits at the module root, so `go build -o` names the binary.
etcd_dir="$cache/src/etcd-$ETCD_VERSION"
if ! is_cached etcd "$ETCD_VERSION" ""; then
  mkdir -p "$etcd_dir"
  (
    cd "$etcd_dir"
    [[ -f go.mod ]] || go mod init ftjob.dev/etcd-binary >/dev/null 2>&1
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > tools.go
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
    mkdir -p out
    log "Building etcd $ETCD_VERSION"
    started=$SECONDS
    go build -o out/etcd go.etcd.io/etcd/server/v3 >&2
    mkdir -p "$cache/etcd-$ETCD_VERSION" && mv out/etcd "$cache/etcd-$ETCD_VERSION/etcd"
    : > "$cache/etcd-$ETCD_VERSION/.recipe"
    log "Built etcd $ETCD_VERSION in $((SECONDS - started)) s"
  )
fi
echo "etcd=$cache/etcd-$ETCD_VERSION/etcd"

build_into kwok "$KWOK_VERSION" "" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
build_into kwokctl "$KWOK_VERSION" "" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
# Helm's release build stamps its version and the Kubernetes version it assumes when it does
# not ask a cluster (helm template/lint); without them it claims v1.20.
helm_mod=$(go env GOMODCACHE)/cache/download/helm.sh/helm/v3/@v/$HELM_VERSION.mod
[[ -f "$helm_mod" ]] || go mod download -json "helm.sh/helm/v3@$HELM_VERSION" >/dev/null
helm_kube_minor=$(awk '$1 == "k8s.io/client-go" {split($2, v, "."); print v[2]}' "$helm_mod")
helm_ldflags="-X=helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldflags+=" -X=$pkg.k8sVersionMajor=1 -X=$pkg.k8sVersionMinor=$helm_kube_minor"
done
build_into helm "$HELM_VERSION" "$helm_ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"

# Kueue's manager; its CRDs and webhook manifests come from the same module version.
build_into kueue "$KUEUE_VERSION" "" "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
echo "kueue-config=$(go env GOMODCACHE)/sigs.k8s.io/kueue@$KUEUE_VERSION/config/components"

# Kubeflow's training operator, from hack/kubeflow-operator (its controllers and webhooks
# with every listener on 127.0.0.1; see main.go there). The recipe is that module's source,
# so editing it rebuilds.
if [[ "$extras" == *" kubeflow "* ]]; then
  recipe=$(cat "$here/kubeflow-operator/go.mod" "$here/kubeflow-operator/main.go" | sha256sum | cut -d' ' -f1)
  (cd "$here/kubeflow-operator" && build_into training-operator "$KUBEFLOW_TRAINING_OPERATOR_VERSION" "" . "$recipe")
  # Its CRDs, from the same module version (in the module cache once downloaded).
  (cd "$here/kubeflow-operator" && go mod download github.com/kubeflow/training-operator) >&2
  echo "kubeflow-crds=$(go env GOMODCACHE)/github.com/kubeflow/training-operator@$KUBEFLOW_TRAINING_OPERATOR_VERSION/manifests/base/crds"
fi
