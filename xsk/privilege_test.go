package xsk_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/xsk"
)

// runChild runs the test named child in a fresh namespace as root
// restricted by the prlimit and setpriv arguments given, and fails unless
// it passes.
func runChild(t *testing.T, child string, wrap ...string) {
	t.Helper()
	testutil.RequireTool(t, "setpriv", "prlimit")
	ns := testutil.NewNetNS(t)
	args := append([]string{"netns", "exec", ns.Name}, wrap...)
	args = append(args, os.Args[0], "-test.run=^"+child+"$", "-test.v", "-test.count=1")
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), "XSK_TEST_CHILD="+child)
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: "+child) {
		t.Fatalf("child failed: %v", err)
	}
}

func isChild(t *testing.T) {
	if os.Getenv("XSK_TEST_CHILD") != t.Name() {
		t.Skip("helper process of another test")
	}
}

// TestMemlockError runs TestMemlockChild in a fresh namespace as root
// without CAP_IPC_LOCK and CAP_SYS_RESOURCE and with RLIMIT_MEMLOCK at
// 64 KiB: registering a 2 MiB UMEM must fail with a message that names the
// limit and what to do, and leave nothing open.
func TestMemlockError(t *testing.T) {
	runChild(t, "TestMemlockChild", "prlimit", "--memlock=65536:65536",
		"setpriv", "--bounding-set=-ipc_lock,-sys_resource", "--inh-caps=-ipc_lock,-sys_resource")
}

// TestNoCapNetRawError: without CAP_NET_RAW the socket cannot be opened,
// and the error says what is missing.
func TestNoCapNetRawError(t *testing.T) {
	runChild(t, "TestNoCapNetRawChild", "setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw")
}

func TestNoCapNetRawChild(t *testing.T) {
	isChild(t)
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 64, FrameSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	s, err := xsk.NewSocket(u, 1, 0, xsk.SocketOptions{})
	if err == nil {
		s.Close()
		t.Fatal("af_xdp socket opened without CAP_NET_RAW")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "needs CAP_NET_RAW") {
		t.Fatalf("unhelpful error: %v", err)
	}
}

// TestMemlockChild is TestMemlockError's child process; it does nothing
// when run on its own.
func TestMemlockChild(t *testing.T) {
	isChild(t)
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 1024, FrameSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	s, err := xsk.NewSocket(u, 1, 0, xsk.SocketOptions{}) // lo of the child's own namespace
	if err == nil {
		s.Close()
		t.Fatal("umem registered despite RLIMIT_MEMLOCK of 64 KiB and no CAP_IPC_LOCK")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "RLIMIT_MEMLOCK") || !strings.Contains(err.Error(), "CAP_IPC_LOCK") || !errors.Is(err, unix.ENOBUFS) {
		t.Fatalf("unhelpful memlock error: %v", err)
	}
}
