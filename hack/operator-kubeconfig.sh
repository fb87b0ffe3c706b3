#!/usr/bin/env bash
# Writes a kubeconfig that authenticates as the operator's ServiceAccount (a bound token), so a
# locally running operator has exactly the RBAC of manifests/rbac.yaml and missing permissions
# fail loudly. Usage: hack/operator-kubeconfig.sh OUT_FILE [NAMESPACE]  (KUBECONFIG must be the
# admin one; NAMESPACE is the ServiceAccount's, redis-operator by default).
set -euo pipefail
out=${1:?usage: operator-kubeconfig.sh OUT_FILE}
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority}')
token=$(kubectl -n "${2:-redis-operator}" create token redis-operator --duration=24h)
cat >"$out" <<EOC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "$server", certificate-authority: "$ca"}
users:
- name: redis-operator
  user: {token: "$token"}
contexts:
- name: operator
  context: {cluster: local, user: redis-operator}
current-context: operator
EOC
chmod 600 "$out"
