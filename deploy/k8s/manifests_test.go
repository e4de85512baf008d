package k8s

import (
	"cmp"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/dataplane/config"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/xsk"
)

// decoder decodes one manifest into its API type by apiVersion and kind,
// strictly: an unknown or duplicated field is an error, as the API server
// reports it under `kubectl apply --validate=strict`.
var decoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

func decode(data []byte) (runtime.Object, error) {
	obj, _, err := decoder.Decode(data, nil, nil)
	return obj, err
}

// manifests are the directory's objects, one a file.
type manifests struct {
	ns  *corev1.Namespace
	cm  *corev1.ConfigMap
	ds  *appsv1.DaemonSet
	svc *corev1.Service
}

// load decodes every YAML file here, each strictly, and wants exactly the
// four objects: no file is left unchecked.
func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m manifests
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if regexp.MustCompile(`(?m)^---`).Match(b) {
			t.Fatalf("%s: one object a file", f)
		}
		obj, err := decode(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		dup := false
		switch o := obj.(type) {
		case *corev1.Namespace:
			dup, m.ns = m.ns != nil, o
		case *corev1.ConfigMap:
			dup, m.cm = m.cm != nil, o
		case *appsv1.DaemonSet:
			dup, m.ds = m.ds != nil, o
		case *corev1.Service:
			dup, m.svc = m.svc != nil, o
		default:
			t.Fatalf("%s: unexpected %T", f, obj)
		}
		if dup {
			t.Fatalf("%s: a second %T", f, obj)
		}
	}
	if m.ns == nil || m.cm == nil || m.ds == nil || m.svc == nil {
		t.Fatalf("want a Namespace, a ConfigMap, a DaemonSet and a Service in %v", files)
	}
	for _, meta := range []string{m.cm.Namespace, m.ds.Namespace, m.svc.Namespace} {
		if meta != m.ns.Name {
			t.Errorf("object in namespace %q, want %q", meta, m.ns.Name)
		}
	}
	return m
}

// container is the DaemonSet's one container.
func (m manifests) container(t *testing.T) corev1.Container {
	t.Helper()
	cs := m.ds.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers, want 1", len(cs))
	}
	return cs[0]
}

// mountOf is where the pod mounts the volume, and the volume.
func (m manifests) mountOf(t *testing.T, match func(corev1.Volume) bool) (corev1.VolumeMount, corev1.Volume) {
	t.Helper()
	for _, v := range m.ds.Spec.Template.Spec.Volumes {
		if !match(v) {
			continue
		}
		for _, vm := range m.container(t).VolumeMounts {
			if vm.Name == v.Name {
				return vm, v
			}
		}
		t.Fatalf("volume %s is not mounted", v.Name)
	}
	t.Fatal("no such volume")
	return corev1.VolumeMount{}, corev1.Volume{}
}

// arg is the value of the container's --name=value argument.
func (m manifests) arg(t *testing.T, name string) string {
	t.Helper()
	for _, a := range m.container(t).Args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	t.Fatalf("no --%s= in the container's args", name)
	return ""
}

// config is the ConfigMap's run configuration, parsed by xdpipe's loader
// (unknown keys and stages are errors), and the number of channels the
// config's own comment tells each node to use (ethtool -L IF combined N).
func (m manifests) config(t *testing.T) (*config.File, int) {
	t.Helper()
	const key = "xdpipe.yaml"
	text, ok := m.cm.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no %s", m.cm.Name, key)
	}
	if want := filepath.Join(m.configDir(t), key); m.arg(t, "config") != want {
		t.Fatalf("--config=%s, want the ConfigMap's %s", m.arg(t, "config"), want)
	}
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatalf("ConfigMap %s: %v", key, err)
	}
	if len(cfg.Interfaces) != 1 {
		t.Fatalf("interfaces %v: the example is one NIC a node", cfg.Interfaces)
	}
	mm := regexp.MustCompile(`ethtool -L (\S+) combined ([0-9]+)`).FindStringSubmatch(text)
	if mm == nil || mm[1] != cfg.Interfaces[0] {
		t.Fatalf("the config does not say how to set %s's channels (ethtool -L %[1]s combined N)", cfg.Interfaces[0])
	}
	n, _ := strconv.Atoi(mm[2])
	return cfg, n
}

// configDir is where the ConfigMap is mounted.
func (m manifests) configDir(t *testing.T) string {
	vm, _ := m.mountOf(t, func(v corev1.Volume) bool {
		return v.ConfigMap != nil && v.ConfigMap.Name == m.cm.Name
	})
	return vm.MountPath
}

func TestManifestsDecodeStrictly(t *testing.T) {
	load(t)
}

// TestTypoedFieldIsRefused: a misspelt field anywhere in a manifest fails
// the decoding, naming the field, instead of being dropped silently (and
// the setting with it).
func TestTypoedFieldIsRefused(t *testing.T) {
	for _, c := range []struct{ file, field, typo string }{
		{"daemonset.yaml", "hostNetwork:", "hostNetwrok:"},
		{"daemonset.yaml", "maxUnavailable:", "maxUnavailabel:"},
		{"daemonset.yaml", "readOnly:", "readonly:"},
		{"service.yaml", "clusterIP:", "clusterIp:"},
		{"configmap.yaml", "data:", "date:"},
	} {
		b, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decode(b); err != nil {
			t.Fatalf("%s as shipped: %v", c.file, err)
		}
		bad := strings.Replace(string(b), c.field, c.typo, 1)
		if bad == string(b) {
			t.Fatalf("%s has no %s", c.file, c.field)
		}
		_, err = decode([]byte(bad))
		if !runtime.IsStrictDecodingError(err) || !strings.Contains(err.Error(), strings.TrimSuffix(c.typo, ":")) {
			t.Errorf("%s with %s: %v, want a strict decoding error naming the field", c.file, c.typo, err)
		}
	}
}

// TestConfigMapHoldsAValidConfig: the run configuration and its steering
// rules pass xdpipe's own loaders, at the paths the pod mounts them; its
// queues fit the channels the config tells each node to set.
func TestConfigMapHoldsAValidConfig(t *testing.T) {
	m := load(t)
	cfg, channels := m.config(t)
	if _, err := config.ParseQueues(string(cfg.Queues), channels); err != nil {
		t.Errorf("queues %q on nodes with %d channels: %v", cfg.Queues, channels, err)
	}
	dir := m.configDir(t)
	rel, err := filepath.Rel(dir, cfg.Rules)
	if err != nil || strings.Contains(rel, "/") {
		t.Fatalf("rules %s: want a file of the ConfigMap, mounted at %s", cfg.Rules, dir)
	}
	text, ok := m.cm.Data[rel]
	if !ok {
		t.Fatalf("rules %s: the ConfigMap has no %s", cfg.Rules, rel)
	}
	if _, _, err := rules.Parse(rel, []byte(text)); err != nil {
		t.Fatal(err)
	}
	if ln := m.arg(t, "metrics"); ln == "" {
		t.Fatal("no metrics address")
	}
	bpffs, _ := m.mountOf(t, func(v corev1.Volume) bool { return v.HostPath != nil && v.HostPath.Path == "/sys/fs/bpf" })
	if pin := cmp.Or(cfg.PinDir, bpf.DefaultPinPath); !strings.HasPrefix(pin, bpffs.MountPath+"/") {
		t.Errorf("pin_dir %s is not on the bpffs mount %s", pin, bpffs.MountPath)
	}
}

// runtimeHeadroom is the memory limit's share for the Go runtime, the
// binary and the metrics server beside what the configuration allocates:
// `xdpipe run` with the example config on a 4-queue veth peaked at 146 MiB,
// 128 MiB of it the UMEM (VmHWM; RssAnon 132 MiB, RssFile 13.5 MiB).
const runtimeHeadroom = 64 << 20

// nodeCPUs is the possible CPUs (/sys/devices/system/cpu/possible, which
// may count more than are online) of the largest node the memory limit
// is sized for: the steering program's per-CPU maps (the flow cache, the
// rules' counters) take 2 MiB a possible CPU, in the pod's memory cgroup.
// Not the CPUs of the machine running this test.
const nodeCPUs = 64

// TestMemoryLimitCoversTheConfig: the pod's memory limit holds what the
// ConfigMap's configuration allocates on a node of nodeCPUs possible CPUs
// (Options.MemoryCosts, the figure `xdpipe run --check` prints there,
// quoted in the DaemonSet's comment) and the runtime's share; the request
// equals it, so the pod is not placed on a node that cannot give it.
func TestMemoryLimitCoversTheConfig(t *testing.T) {
	m := load(t)
	cfg, channels := m.config(t)
	queues, err := config.ParseQueues(string(cfg.Queues), channels)
	if err != nil {
		t.Fatal(err)
	}
	// The rules are the ConfigMap's, where the pod mounts them.
	rel, err := filepath.Rel(m.configDir(t), cfg.Rules)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Rules = filepath.Join(t.TempDir(), rel)
	if err := os.WriteFile(cfg.Rules, []byte(m.cm.Data[rel]), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := cfg.Options()
	if err != nil {
		t.Fatal(err)
	}
	costs, err := opts.MemoryCosts(len(cfg.Interfaces), len(queues), nodeCPUs)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range costs {
		t.Logf("%s: %s", c.Setting, xsk.Bytes(c.Bytes))
	}
	total, locked := xsk.Sum(costs)
	c := m.container(t)
	limit, request := c.Resources.Limits.Memory(), c.Resources.Requests.Memory()
	if limit.IsZero() || limit.Cmp(*request) != 0 {
		t.Errorf("memory limit %s, request %s: want both set and equal", limit, request)
	}
	if need := resource.NewQuantity(int64(total+runtimeHeadroom), resource.BinarySI); limit.Cmp(*need) < 0 {
		t.Errorf("memory limit %s: the config needs %s and the runtime %s", limit, xsk.Bytes(total), xsk.Bytes(runtimeHeadroom))
	}
	if _, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		t.Error("a CPU limit throttles the workers")
	}
	b, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if quote := fmt.Sprintf("memory %s (UMEM %s, locked)", xsk.Bytes(total), xsk.Bytes(locked)); !strings.Contains(string(b), quote) {
		t.Errorf("daemonset.yaml does not quote what run --check says of the config: %q", quote)
	}
	if nodes := fmt.Sprintf("up to %d possible CPUs", nodeCPUs); !strings.Contains(string(b), nodes) {
		t.Errorf("daemonset.yaml does not say which nodes the limit is sized for: %q", nodes)
	}
}

// TestDaemonSetRunsWithCapabilitiesOnHostNetwork: host network, named
// capabilities (never privileged), the node's bpffs and owner records, a
// node selector and a rolling update that never runs two instances on a
// node.
func TestDaemonSetRunsWithCapabilitiesOnHostNetwork(t *testing.T) {
	m := load(t)
	pod := m.ds.Spec.Template.Spec
	if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostNetwork %v, dnsPolicy %s: want true and ClusterFirstWithHostNet", pod.HostNetwork, pod.DNSPolicy)
	}
	if len(pod.NodeSelector) == 0 {
		t.Error("no node selector: every node would run it")
	}
	sel := m.ds.Spec.Selector
	if sel == nil || len(sel.MatchLabels) == 0 || !subset(sel.MatchLabels, m.ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the pods' labels %v", sel, m.ds.Spec.Template.Labels)
	}
	u := m.ds.Spec.UpdateStrategy
	if u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil || u.RollingUpdate.MaxUnavailable == nil {
		t.Fatalf("update strategy %+v: want RollingUpdate with maxUnavailable", u)
	}
	if s := u.RollingUpdate.MaxSurge; s != nil && s.IntValue() != 0 {
		t.Errorf("maxSurge %s: a second instance cannot take the NIC the first one holds", s)
	}

	sc := m.container(t).SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: name the capabilities instead")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	for _, need := range []corev1.Capability{"NET_ADMIN", "NET_RAW", "BPF", "IPC_LOCK"} {
		if !slices.Contains(sc.Capabilities.Add, need) {
			t.Errorf("capabilities %v lack %s", sc.Capabilities.Add, need)
		}
	}
	// The API server refuses this pair (ValidateSecurityContext).
	if slices.Contains(sc.Capabilities.Add, "SYS_ADMIN") && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation false with SYS_ADMIN: the API server refuses it")
	}

	bpffs, v := m.mountOf(t, func(v corev1.Volume) bool { return v.HostPath != nil && v.HostPath.Path == "/sys/fs/bpf" })
	if bpffs.MountPath != "/sys/fs/bpf" || bpffs.ReadOnly || v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectory {
		t.Errorf("bpffs mounted %+v from %+v: want the node's bpffs read-write at /sys/fs/bpf", bpffs, v.HostPath)
	}
	owners, _ := m.mountOf(t, func(v corev1.Volume) bool {
		return v.HostPath != nil && v.HostPath.Path == filepath.Dir(bpf.DefaultOwnerDir)
	})
	if owners.MountPath != filepath.Dir(bpf.DefaultOwnerDir) || owners.ReadOnly {
		t.Errorf("owner records mounted %+v: want the node's %s read-write", owners, filepath.Dir(bpf.DefaultOwnerDir))
	}
}

func subset(sub, of map[string]string) bool {
	for k, v := range sub {
		if of[k] != v {
			return false
		}
	}
	return true
}

// TestMetricsOnTheNodeAddressOnlyWhenAsked: the config keeps the metrics
// on loopback, the DaemonSet asks for the node's address (status.hostIP,
// IPv4 or IPv6) on the port the container, the Service and its scrape
// annotations name, and the headless Service selects the pods.
func TestMetricsOnTheNodeAddressOnlyWhenAsked(t *testing.T) {
	m := load(t)
	cfg, _ := m.config(t)
	host, _, err := net.SplitHostPort(cmp.Or(cfg.Metrics, config.DefaultMetrics))
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		t.Errorf("config metrics %q: want loopback (the node's address only where the DaemonSet asks)", cfg.Metrics)
	}

	c := m.container(t)
	var hostIP *corev1.EnvVar
	for i, e := range c.Env {
		if e.Name == "HOST_IP" {
			hostIP = &c.Env[i]
		}
	}
	if hostIP == nil || hostIP.ValueFrom == nil || hostIP.ValueFrom.FieldRef == nil || hostIP.ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Fatalf("HOST_IP %+v: want the downward API's status.hostIP", hostIP)
	}
	flag := m.arg(t, "metrics")
	var port string
	for _, ip := range []string{"198.18.0.1", "2001:2::1"} {
		addr, err := net.ResolveTCPAddr("tcp", strings.ReplaceAll(flag, "$(HOST_IP)", ip))
		if err != nil || !addr.IP.Equal(net.ParseIP(ip)) {
			t.Fatalf("--metrics=%s on a node at %s: %v %v", flag, ip, addr, err)
		}
		port = strconv.Itoa(addr.Port)
	}
	var containerPort string
	for _, p := range c.Ports {
		if p.Name == "metrics" {
			containerPort = strconv.Itoa(int(p.ContainerPort))
		}
	}

	svc := m.svc
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("clusterIP %q: want None (headless: one endpoint a node)", svc.Spec.ClusterIP)
	}
	if len(svc.Spec.Selector) == 0 || !subset(svc.Spec.Selector, m.ds.Spec.Template.Labels) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, m.ds.Spec.Template.Labels)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
		t.Fatalf("Service ports %+v: want one, to the container's metrics port", svc.Spec.Ports)
	}
	a := svc.Annotations
	for what, got := range map[string]string{
		"container port":               containerPort,
		"Service port":                 strconv.Itoa(int(svc.Spec.Ports[0].Port)),
		"prometheus.io/port":           a["prometheus.io/port"],
		"prometheus.io/scrape is true": map[bool]string{true: port}[a["prometheus.io/scrape"] == "true"],
		"prometheus.io/path /metrics":  map[bool]string{true: port}[a["prometheus.io/path"] == "/metrics"],
	} {
		if got != port {
			t.Errorf("%s: %q, want xdpipe's --metrics port %s", what, got, port)
		}
	}
}
