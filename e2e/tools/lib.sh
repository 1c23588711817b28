# Shared by e2e/tools/build and e2e/tools/node: progress lines, a scratch folder, moving built
# binaries into the cache with one rename each, and the wrapper module that builds Kubernetes
# commands from k8s.io/kubernetes. Sourced after versions.sh; the caller sets TOOL_STEP (its name).
started=$SECONDS
say() { printf '[%s %4ds] %s\n' "$TOOL_STEP" "$((SECONDS - started))" "$*" >&2; }

# Prints the tools of "$@" (names relative to $dest) that are not in the folder $dest yet.
missing_in() {
  local dest=$1 tool
  shift
  for tool in "$@"; do
    [ -x "$dest/$tool" ] || echo "$tool"
  done
}

# A scratch folder inside the cache, removed when the script ends.
new_scratch() {
  mkdir -p "$TOOLS_CACHE/work"
  scratch=$(mktemp -d "$TOOLS_CACHE/work/build.XXXXXX")
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch/out"
  export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
}

# install_bins DEST NAME...: moves $scratch/out/NAME to DEST/NAME (a rename each, so an interrupted
# build never leaves a broken binary behind).
install_bins() {
  local dest=$1 b
  shift
  for b in "$@"; do
    mkdir -p "$(dirname "$dest/$b")"
    chmod 0755 "$scratch/out/$(basename "$b")"
    mv -f "$scratch/out/$(basename "$b")" "$dest/$b"
  done
}

# build_module MODULE@VERSION LDFLAGS [go build flags] PACKAGE...: builds packages of one Go module
# (one without replace directives) into $scratch/out/ through a wrapper module.
build_module() {
  local module=${1%@*} version=${1#*@} ldflags=$2 dir
  shift 2
  dir="$scratch/mod-$(basename "$module")-$RANDOM"
  mkdir -p "$dir"
  printf 'module leadership.local/tools\n\ngo 1.26\n\nrequire %s v%s\n' "$module" "$version" >"$dir/go.mod"
  (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$scratch/out/" "$@")
}

# build_kubernetes PACKAGE...: builds commands of k8s.io/kubernetes v$K8S_VERSION, version-stamped.
build_kubernetes() {
  local mod="$scratch/k8s" gomod_json upstream_mod ver_flags="" pkg minor
  mkdir -p "$mod"
  gomod_json=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION")
  upstream_mod=$(printf '%s' "$gomod_json" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module leadership.local/k8s-tools"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    echo
    # The release requires its staging modules at v0.0.0 with local replaces; point them at the
    # published v0.x.y of the same release.
    grep -E '^\s+k8s\.io/\S+ v0\.0\.0\s*$' "$upstream_mod" | awk -v v="v0.${K8S_VERSION#1.}" \
      '{ print "replace " $1 " => " $1 " " v }'
  } >"$mod/go.mod"
  minor=${K8S_VERSION#*.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ver_flags+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=${K8S_VERSION%%.*}"
    ver_flags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  (cd "$mod" && go build -trimpath -ldflags "-s -w$ver_flags" -o "$scratch/out/" "$@")
}
