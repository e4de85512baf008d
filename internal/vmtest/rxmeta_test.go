package vmtest_test

import (
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/vmtest"
)

// TestVMRxMetadata boots the VM with xzc1 reporting RX hashes (qemu's
// virtio-net hash=on over a tap; xzc0 without) and runs in it, with the
// NICs as link pairs (B is xzc1): TestGuestNICs, which checks that xzc1
// offers XDP programs the RX hash and xzc0 no RX metadata; the pipeline's
// TestRxMetadata, where the redirect program bound to xzc1 reads a
// non-zero hash of the ports into every frame of a flow, the same for
// all, bound zero-copy and then copy mode (the driver's two receive
// paths); and xdpipe's TestRunRxMetadata, where `run --rx-metadata` on
// both NICs binds xzc1's program and gives xzc0 an unbound one.
func TestVMRxMetadata(t *testing.T) {
	vm := vmtest.New(t, vmtest.Options{NICs: 2, HashReport: true, Timeout: 4 * time.Minute})
	vm.Copy("hack/vm/guest-zc.sh")
	vm.Build("./cmd/xdpipe", "xdpipe")
	vm.BuildTest("./internal/vmtest", "vmtest.test")
	vm.BuildTest("./pipeline", "pipeline.test")
	vm.BuildTest("./cmd/xdpipe", "xdpipe.test")
	runGuest(t, vm, []string{"TestGuestNICs", "TestRxMetadata", "TestRunRxMetadata"}, "sh", "-c",
		`./guest-zc.sh vmtest.test '^TestGuestNICs$' pipeline.test '^TestRxMetadata$' xdpipe.test '^TestRunRxMetadata$' && `+
			`XDPIPE_TEST_BIND=copy ./guest-zc.sh pipeline.test '^TestRxMetadata$'`)
}
