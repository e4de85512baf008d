package vmtest_test

import (
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/vmtest"
)

// guestBPF runs the bpf package's tests that load every XDP program and run
// it with BPF_PROG_RUN, needing no veth: the verifier's budget for the
// steering program, its decisions against the reference matcher on every
// sample frame and on the first ten of the fuzz seeds, a live rule update,
// the flow cache's invalidation and collisions, the per-CPU counters, the
// small programs, and the rx stamp every redirecting program writes when
// loaded with it.
const guestBPF = `./bpf.test -test.v -test.count=1 -test.run '^(TestKernelFeatures|TestSteerVerifierBudget|` +
	`TestSteerFrames|TestSteerMultiBuffer|TestSteerUpdateKeepsCounters|TestSteerCacheNoStaleVerdict|TestSteerCacheWrap|TestSteerEMCCollisions|TestSteerCountsPerCPU|` +
	`TestRedirectProgRun|TestRxStampProgRun|TestTXProgRun|TestDropCountProgRun)$' && ` +
	`./bpf.test -test.v -test.count=1 -test.run '^FuzzSteer$/^seed#[0-9]$'`

// TestVMBPF runs guestBPF in the VM, on the pinned guest kernel: a newer
// verifier that rejects a program the host's accepts fails here (Linux
// 7.3's rejected one layout of the steering program at its
// million-instruction limit while 6.18 took it). One boot; under TCG the steering program verifies in under a
// second, and the whole test takes about 35 s.
func TestVMBPF(t *testing.T) {
	vm := vmtest.New(t, vmtest.Options{Timeout: 4 * time.Minute})
	vm.BuildTest("./bpf", "bpf.test")
	if err := vm.Run("sh", "-c", guestBPF); err != nil {
		t.Fatal(err)
	}
}
