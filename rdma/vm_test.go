//go:build !rdma

package rdma_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/rdma"
)

func TestStubNotSupported(t *testing.T) {
	if _, err := rdma.Devices(); !errors.Is(err, rdma.ErrNotSupported) {
		t.Errorf("Devices: %v, want ErrNotSupported", err)
	}
	if _, err := rdma.Dial(t.Context(), "198.18.0.2:1", nil, rdma.DialOptions{}); !errors.Is(err, rdma.ErrNotSupported) {
		t.Errorf("Dial: %v, want ErrNotSupported", err)
	}
	if _, err := rdma.Listen(":1", rdma.ListenOptions{}); !errors.Is(err, rdma.ErrNotSupported) {
		t.Errorf("Listen: %v, want ErrNotSupported", err)
	}
}

// TestSoftRoCE builds this package's tests with -tags rdma and runs them in
// the SoftRoCE VM (hack/vm, guest scripts in hack/vm/rdma): this host's kernel has no RDMA. About a
// minute under TCG. Needs hack/deps.sh rdma; skips without it, fails under
// CI=true.
func TestSoftRoCE(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM (-short)")
	}
	if os.Getenv("XDPIPE_IN_VM") != "" {
		t.Skip("already inside the VM")
	}
	for _, bin := range []string{"qemu-system-x86_64", "busybox", "cpio", "rdma", "ib_send_bw"} {
		if _, err := exec.LookPath(bin); err != nil {
			testutil.SkipOrFail(t, "%s missing: run hack/deps.sh rdma", bin)
		}
	}
	if k, _ := filepath.Glob("/boot/vmlinuz-*-amd64"); len(k) == 0 {
		testutil.SkipOrFail(t, "no Debian kernel /boot/vmlinuz-*-amd64: run hack/deps.sh rdma")
	}
	for _, h := range []string{"/usr/include/infiniband/verbs.h", "/usr/include/rdma/rdma_cma.h"} {
		if _, err := os.Stat(h); err != nil {
			testutil.SkipOrFail(t, "%s missing: run hack/deps.sh rdma", h)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		testutil.SkipOrFail(t, "no go binary in PATH to build the test binary")
	}
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	vmDir := filepath.Join(here, "..", "hack", "vm")

	// The results directory is shared read-write with the guest, where it
	// is the working directory: the test binary and guest scripts go there,
	// so they are reachable whatever the host path is.
	out := t.TempDir()
	build := exec.Command(goBin, "test", "-c", "-tags", "rdma", "-o", filepath.Join(out, "rdma.test"), ".")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c -tags rdma: %v\n%s", err, b)
	}
	// The binary too, with verbs, for the end-to-end phase.
	build = exec.Command(goBin, "build", "-tags", "rdma", "-o", filepath.Join(out, "xdpipe"), "../cmd/xdpipe")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags rdma ./cmd/xdpipe: %v\n%s", err, b)
	}
	for _, f := range []string{"guest-test.sh", "guest-e2e.sh", "rxe-up.sh"} {
		b, err := os.ReadFile(filepath.Join(vmDir, "rdma", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(vmDir, "run.sh"), "--kernel", "host", "--timeout", "600", "--out", out, "--",
		"./guest-test.sh", "./rdma.test")
	b, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		t.Log(line)
	}
	if err != nil {
		t.Fatalf("SoftRoCE VM: %v (console log: %s)", err, filepath.Join(out, "console.log"))
	}
}
