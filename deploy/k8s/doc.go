// Package k8s holds xdpipe's Kubernetes manifests (the YAML files beside
// this one: a Namespace, the ConfigMap with the run configuration, the
// DaemonSet, a headless Service for Prometheus) and the test that decodes
// them strictly with the Kubernetes API types and checks that they agree
// with each other and with xdpipe's own configuration loader.
//
// It is a module of its own so that k8s.io/api's dependencies stay out of
// xdpipe's: `make test` and `make lint` run it.
package k8s
