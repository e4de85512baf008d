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

// TestMemlockError runs TestMemlockChild in a fresh namespace as root
// without CAP_IPC_LOCK and CAP_SYS_RESOURCE and with RLIMIT_MEMLOCK at
// 64 KiB: registering a 2 MiB UMEM must fail with a message that names the
// limit and what to do, and leave nothing open.
func TestMemlockError(t *testing.T) {
	ns := testutil.NewNetNS(t)
	for _, tool := range []string{"setpriv", "prlimit"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.SkipOrFail(t, "%s not installed (util-linux)", tool)
		}
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name,
		"prlimit", "--memlock=65536:65536",
		"setpriv", "--bounding-set=-ipc_lock,-sys_resource", "--inh-caps=-ipc_lock,-sys_resource",
		os.Args[0], "-test.run=^TestMemlockChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "XSK_MEMLOCK_CHILD=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: TestMemlockChild") {
		t.Fatalf("child failed: %v", err)
	}
}

// TestMemlockChild is TestMemlockError's child process; it does nothing
// when run on its own.
func TestMemlockChild(t *testing.T) {
	if os.Getenv("XSK_MEMLOCK_CHILD") == "" {
		t.Skip("helper process for TestMemlockError")
	}
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
