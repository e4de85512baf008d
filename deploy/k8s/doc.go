// Package k8s holds xdpipe's Kubernetes manifests (the YAML files beside
// this one: a Namespace, the ConfigMap with the run configuration, the
// DaemonSet, a headless Service for Prometheus) and the test that decodes
// them strictly with the Kubernetes API types and checks that they agree
// with each other and with xdpipe's own configuration loader. It also
// checks deploy/prometheus/alerts.yaml as `promtool check rules` does, and
// that it and the README's fleet section name only metrics, labels and
// drop reasons xdpipe's code exports.
//
// It is a module of its own so that k8s.io/api's and Prometheus's
// dependencies stay out of xdpipe's: `make test` and `make lint` run it.
package k8s
