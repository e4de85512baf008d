package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// shellEnv is the test's environment without what tells a container or a
// systemd service (caps.Here), plus extra: the remedy in a capability
// error is the one for where the test says xdpipe runs.
func shellEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != "container" && k != "INVOCATION_ID" && k != "KUBERNETES_SERVICE_HOST" {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// TestMissingCapabilityNamed: root with one capability dropped from its
// bounding set (as a container's --cap-drop or a unit's
// CapabilityBoundingSet= leaves it) gets one line naming exactly that
// capability and how to grant it where it runs, before anything is
// attached: not an EPERM from a syscall, nor a panic on the way out
// (rxdrop without CAP_BPF or CAP_NET_ADMIN).
func TestMissingCapabilityNamed(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "setpriv")
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(testRules), 0o644); err != nil {
		t.Fatal(err)
	}
	rxdrop := []string{"rxdrop", "--iface", p.B.Name, "--duration", "1s"}
	run := []string{"run", "--iface", p.B.Name, "--stages", "count", "--metrics", "off", "--duration", "1s"}
	for _, tc := range []struct {
		drop string // setpriv's name
		args []string
		env  string // what caps.Here reads
		want string
	}{
		{"bpf", rxdrop, "container=podman", "missing capability CAP_BPF (needs CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW to load and attach XDP programs and open AF_XDP sockets); add it to the container: --cap-add BPF (Kubernetes: securityContext.capabilities.add: [BPF])"},
		{"net_admin", rxdrop, "INVOCATION_ID=0123", "missing capability CAP_NET_ADMIN (needs CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW to load and attach XDP programs and open AF_XDP sockets); add CAP_NET_ADMIN to AmbientCapabilities= and CapabilityBoundingSet= of "},
		{"net_raw", run, "", "missing capability CAP_NET_RAW (needs CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW to load and attach XDP programs and open AF_XDP sockets); root without it: dropped from this process's bounding set (capsh --print); grant it (a container: --cap-add NET_RAW)"},
		{"perfmon", append(rxdrop, "--rules", rulesFile, "--pin-dir", ""), "container=podman", "missing capability CAP_PERFMON (needs CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and CAP_PERFMON to load the steering program, attach it and open AF_XDP sockets); add it to the container: --cap-add PERFMON"},
		{"perfmon", append(run, "--rules", rulesFile, "--pin-dir", ""), "", "missing capability CAP_PERFMON (needs CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and CAP_PERFMON"},
	} {
		args := append([]string{"netns", "exec", p.B.NS.Name, "setpriv", "--bounding-set=-" + tc.drop, "--inh-caps=-" + tc.drop, xdpipeBin}, tc.args...)
		cmd := exec.Command("ip", args...)
		cmd.Env = shellEnv(tc.env)
		b, _ := cmd.CombinedOutput()
		out := string(b)
		if cmd.ProcessState.ExitCode() != 1 || strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("%s without CAP_%s (%s): exit %d, want 1 and one line with\n%s\ngot:\n%s", tc.args[0], strings.ToUpper(tc.drop), tc.env, cmd.ProcessState.ExitCode(), tc.want, out)
		}
		noXDP(t, &p.B)
	}
}
