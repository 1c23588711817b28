# Pinned versions of the control-plane tools and where they are cached (sourced by e2e scripts).
K8S_VERSION=${LEADERSHIP_K8S_VERSION:-1.36.3}
ETCD_VERSION=${LEADERSHIP_ETCD_VERSION:-3.6.16}
HELM_VERSION=${LEADERSHIP_HELM_VERSION:-3.22.0}
TOOLS=(etcd kube-apiserver kube-controller-manager kubectl helm)
TOOLS_CACHE=${LEADERSHIP_TOOLS_CACHE:-$HOME/.cache/leadership-e2e}
TOOLS_BIN="$TOOLS_CACHE/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION-helm-v$HELM_VERSION/bin"
