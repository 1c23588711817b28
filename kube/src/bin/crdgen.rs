//! Prints the LeadershipLease CRD as YAML: `cargo run -p leadership-kube --bin crdgen > crds/leadershiplease.yaml`.

fn main() {
    print!("{}", leadership_kube::crd::crd_yaml());
}
