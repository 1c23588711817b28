# Pinned versions of the control-plane and node tools and where they are cached (sourced by e2e scripts).
K8S_VERSION=${LEADERSHIP_K8S_VERSION:-1.36.3}
ETCD_VERSION=${LEADERSHIP_ETCD_VERSION:-3.6.16}
HELM_VERSION=${LEADERSHIP_HELM_VERSION:-3.22.0}
TOOLS=(etcd kube-apiserver kube-controller-manager kubectl helm)
TOOLS_CACHE=${LEADERSHIP_TOOLS_CACHE:-$HOME/.cache/leadership-e2e}
TOOLS_BIN="$TOOLS_CACHE/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION-helm-v$HELM_VERSION/bin"

# The node (e2e/tools/node): kubelet, kube-scheduler and kube-proxy of the same Kubernetes release,
# containerd with its runc shim, runc, crictl, and the CNI plugins. iptables comes from Debian.
CONTAINERD_VERSION=${LEADERSHIP_CONTAINERD_VERSION:-2.4.2}
CNI_PLUGINS_VERSION=${LEADERSHIP_CNI_PLUGINS_VERSION:-1.10.0}
CRI_TOOLS_VERSION=${LEADERSHIP_CRI_TOOLS_VERSION:-1.37.0}
RUNC_VERSION=${LEADERSHIP_RUNC_VERSION:-1.5.3}
NODE_TOOLS=(kubelet kube-scheduler kube-proxy containerd containerd-shim-runc-v2 ctr crictl runc
  cni/bridge cni/host-local cni/loopback cni/portmap)
NODE_PACKAGES=(iptables conntrack busybox-static libseccomp-dev pkg-config)
NODE_BIN="$TOOLS_CACHE/node-k8s-v$K8S_VERSION-containerd-v$CONTAINERD_VERSION-cni-v$CNI_PLUGINS_VERSION-crictl-v$CRI_TOOLS_VERSION-runc-v$RUNC_VERSION/bin"
