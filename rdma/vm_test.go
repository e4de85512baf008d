//go:build !rdma

package rdma_test

import (
	"errors"
	"os"
	"testing"

	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/internal/vmtest"
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
// the VM (hack/vm, guest scripts in hack/vm/rdma) on rdma_rxe, so that it
// needs no RDMA on the host. About a minute under TCG. Needs hack/deps.sh vm rdma;
// skips without it, fails under CI=true.
func TestSoftRoCE(t *testing.T) {
	for _, h := range []string{"/usr/include/infiniband/verbs.h", "/usr/include/rdma/rdma_cma.h"} {
		if _, err := os.Stat(h); err != nil {
			testutil.SkipOrFail(t, "%s missing: run hack/deps.sh rdma", h)
		}
	}
	vm := vmtest.New(t, vmtest.Options{Needs: []string{"rdma", "ib_send_bw"}, Deps: "rdma"})
	vm.BuildTest("./rdma", "rdma.test", "rdma")
	// The binary too, with verbs, for the end-to-end phase.
	vm.Build("./cmd/xdpipe", "xdpipe", "rdma")
	vm.Copy("hack/vm/rdma/guest-test.sh", "hack/vm/rdma/guest-e2e.sh", "hack/vm/rdma/rxe-up.sh")
	if err := vm.Run("./guest-test.sh", "./rdma.test"); err != nil {
		t.Fatal(err)
	}
}
