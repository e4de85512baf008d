package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// xdpipeBin is the binary under test, built once by TestMain, or given
// by XDPIPE_TEST_BIN (the VM stage builds it on the host: internal/vmtest).
var xdpipeBin string

func TestMain(m *testing.M) {
	if xdpipeBin = os.Getenv("XDPIPE_TEST_BIN"); xdpipeBin != "" {
		os.Exit(testutil.CheckLeaks(m))
	}
	dir, err := os.MkdirTemp("", "xdpipe-cmd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	xdpipeBin = filepath.Join(dir, "xdpipe")
	// Static, as `make build` makes it and the image holds it.
	build := exec.Command("go", "build", "-o", xdpipeBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build xdpipe: %v\n%s", err, out)
		os.Exit(2)
	}
	code := testutil.CheckLeaks(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// readyWithin bounds how long a started command may take to say it is
// ready: a minute, for the VM stage's emulated CPUs on a busy host, where
// starting xdpipe takes up to ten seconds.
const readyWithin = time.Minute

// xdpipeIn runs the xdpipe binary inside ns (or the test's namespace when
// ns is nil) and returns its combined output and exit code.
func xdpipeIn(t *testing.T, ns *testutil.NetNS, args ...string) (string, int) {
	t.Helper()
	var cmd *exec.Cmd
	if ns == nil {
		cmd = exec.Command(xdpipeBin, args...)
	} else {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name, xdpipeBin}, args...)...)
	}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run xdpipe %s: %v", strings.Join(args, " "), err)
	}
	return string(out), code
}

// noXDP fails the test if the interface has an XDP program attached.
func noXDP(t *testing.T, e *testutil.LinkEnd) {
	t.Helper()
	if out := e.NS.MustRun(t, "ip", "link", "show", "dev", e.Name); testutil.XDPAttached(out) {
		t.Errorf("%s still has an XDP program attached:\n%s", e.Name, out)
	}
}

// TestHelpExitsZero: asking for the usage is success (as Go's flag package
// has it since Go 1.16; scripts rely on it); a wrong flag or no command is
// not.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"run", "-h"}, {"rxdrop", "--help"}, {"gen", "-h"},
		{"bench", "-h"}, {"rules", "-h"}, {"rules", "list", "-h"}, {"rdma-sink", "-h"}} {
		if out, code := xdpipeIn(t, nil, args...); code != 0 || !strings.Contains(out, "usage") {
			t.Errorf("xdpipe %s: exit %d, want 0 with the usage:\n%s", strings.Join(args, " "), code, out)
		}
	}
	for _, args := range [][]string{{}, {"run", "--no-such-flag"}, {"frobnicate"}, {"bench", "--repeat", "0"}} {
		if out, code := xdpipeIn(t, nil, args...); code == 0 {
			t.Errorf("xdpipe %s: exit 0, want a failure:\n%s", strings.Join(args, " "), out)
		}
	}
}

// TestModuleLinksNoPlotting: no package of the root module, tests
// included, needs gonum/plot and its fonts, so neither the daemon nor a
// program that embeds the library resolves them: the bench chart is the
// xdpipe-chart module's.
func TestModuleLinksNoPlotting(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", "github.com/xdpipe/xdpipe/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/xdpipe/xdpipe/dataplane") {
		t.Fatalf("go list -deps listed %d packages, not the root module's", len(deps))
	}
	for _, dep := range deps {
		if strings.HasPrefix(dep, "gonum.org/") || strings.Contains(dep, "go-fonts") {
			t.Errorf("the root module links %s", dep)
		}
	}
}

// genFrom returns the arguments of `xdpipe gen` sending count frames at
// rate from p.A to p.B, quietly, plus extra. On NICs the sender is the xsk
// engine: the live engine transmits with XDP_TX, which a virtio NIC only
// does with an XDP program of its own attached.
func genFrom(p *testutil.LinkPair, count int, rate string, extra ...string) []string {
	args := []string{"gen", "--iface", p.A.Name, "--dst-mac", p.B.MAC.String(), "--dst-ip", p.B.IP.String(),
		"--count", strconv.Itoa(count), "--rate", rate, "--quiet"}
	if p.Kind == testutil.NIC {
		args = append(args, "--engine", "xsk")
	}
	return append(args, extra...)
}
