package caps

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

func TestMain(m *testing.M) { testutil.RunCheckingLeaks(m) }

// TestEffectiveMatchesProc: capget's effective set is the one the kernel
// shows in /proc/self/status.
func TestEffectiveMatchesProc(t *testing.T) {
	set, err := Effective()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			want, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			if set != want {
				t.Fatalf("capget effective %#x, /proc/self/status %#x", set, want)
			}
			return
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
}

// TestCheckNamesMissingAndRemedy: the error names exactly the missing
// capabilities, everything the action needs, and how to grant them where
// the process runs, on one line.
func TestCheckNamesMissingAndRemedy(t *testing.T) {
	need := []Cap{BPF, NetAdmin, NetRaw, Perfmon}
	have := uint64(1)<<BPF | 1<<NetAdmin
	for _, tc := range []struct {
		where Where
		want  string
	}{
		{Container, "--cap-add NET_RAW,PERFMON (Kubernetes: securityContext.capabilities.add: [NET_RAW, PERFMON])"},
		{Systemd, "add CAP_NET_RAW and CAP_PERFMON to AmbientCapabilities= and CapabilityBoundingSet= of "},
	} {
		err := check(have, tc.where, "load and attach XDP programs", need)
		if !errors.Is(err, ErrMissing) {
			t.Fatalf("%v: %v, want ErrMissing", tc.where, err)
		}
		msg := err.Error()
		prefix := "missing capability CAP_NET_RAW and CAP_PERFMON (needs CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW and CAP_PERFMON to load and attach XDP programs); "
		if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
			t.Errorf("%v: %q\nwant prefix %q and %q", tc.where, msg, prefix, tc.want)
		}
	}
	if err := check(have, Shell, "x", []Cap{BPF, NetAdmin}); err != nil {
		t.Errorf("all present: %v", err)
	}
}
