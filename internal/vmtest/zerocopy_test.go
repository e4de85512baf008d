package vmtest_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/internal/vmtest"
)

// zcSuite is one package's tests for the zero-copy VM stage: the tests
// that apply with one queue pair per NIC, and those that need four.
type zcSuite struct {
	pkg, bin   string
	one, multi []string
}

// zcSuites are the privileged tests that run in the guest, the same code as
// on the host's veth pairs: testutil.NewLinkPair lends them the guest's
// NICs and testutil.Bind binds their sockets in zero-copy mode. Left out:
// what only says something about veth or copy mode (they skip, saying so),
// rate tests (TCG's clock), input validation that does not depend on the
// link (each xdpipe start costs seconds under TCG), and what another test
// of the list covers. Frame counts are a tenth of the host's
// (XDPIPE_TEST_SCALE).
var zcSuites = []zcSuite{
	// First, before any test changes the NICs: the guest's NICs are what
	// hack/vm/run.sh promised (queues, features, zero-copy, the NIC
	// without iommu_platform).
	{pkg: "./internal/vmtest", bin: "vmtest.test",
		one: []string{"TestGuestNICs"}, multi: []string{"TestGuestNICs"}},
	{pkg: "./xsk", bin: "xsk.test",
		one:   []string{"TestSendReceive", "TestBindModes", "TestCloseReleasesEverything", "TestBusyPoll", "TestZeroCopyNeedWakeup", "TestZeroCopyBindFindsFilledRing"},
		multi: []string{"TestZeroCopyBindFindsFilledRing", "TestSharedUmem"}},
	{pkg: "./pipeline", bin: "pipeline.test",
		one: []string{"TestVethTXRingFull"}},
	{pkg: "./gen", bin: "gen.test",
		one: []string{"TestXSKSendsExactCount"}},
	{pkg: "./cmd/xdpipe", bin: "xdpipe.test",
		one:   []string{"TestRxdropCountsExactly", "TestRunL2fwdMetricsPcap", "TestRunForward", "TestRunKill9LeavesNothing", "TestZeroCopyJumbo"},
		multi: []string{"TestRunRSS"}},
}

// TestVMZeroCopy is the zero-copy stage: it builds the test
// binaries and xdpipe on the host and runs them in the guest with
// hack/vm/guest-zc.sh, on two virtio-net NICs bound in zero-copy mode,
// once with one queue pair per NIC (and the NIC without iommu_platform)
// and once with four (RSS). A test the
// list names must pass there: a top-level skip fails the stage.
func TestVMZeroCopy(t *testing.T) {
	for _, c := range []struct {
		name   string
		queues int
		multi  bool
	}{{"queues=1", 1, false}, {"queues=4", 4, true}} {
		t.Run(c.name, func(t *testing.T) {
			vm := vmtest.New(t, vmtest.Options{NICs: 2, Queues: c.queues, NoIOMMUNIC: !c.multi, Timeout: 6 * time.Minute})
			vm.Copy("hack/vm/guest-zc.sh")
			vm.Build("./cmd/xdpipe", "xdpipe")
			args := []string{"./guest-zc.sh"}
			var want []string
			for _, s := range zcSuites {
				tests := s.one
				if c.multi {
					tests = s.multi
				}
				if len(tests) == 0 {
					continue
				}
				vm.BuildTest(s.pkg, s.bin)
				args = append(args, s.bin, "^("+strings.Join(tests, "|")+")$")
				want = append(want, tests...)
			}
			runGuest(t, vm, want, args...)
		})
	}
}

// runGuest runs command in the VM and fails the test unless it exits 0 and
// each test of want passed at top level in the guest's go test -v output.
func runGuest(t *testing.T, vm *vmtest.VM, want []string, command ...string) {
	t.Helper()
	start := time.Now()
	err := vm.Run(command...)
	t.Logf("VM run: %v", time.Since(start).Round(time.Second))
	log, rerr := os.ReadFile(filepath.Join(vm.Dir, "command.log"))
	if rerr != nil {
		t.Fatalf("%v (and no command log: %v)", err, rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	checkRan(t, string(log), want)
}

// checkRan fails for each test of want that did not pass at top level in
// the guest's go test -v output (a skip too: in the stage it applies).
func checkRan(t *testing.T, log string, want []string) {
	t.Helper()
	passed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^--- (PASS|SKIP|FAIL): (\S+)`).FindAllStringSubmatch(log, -1) {
		if m[1] == "PASS" {
			passed[m[2]] = true
		} else {
			t.Errorf("%s: %s in the guest", m[2], m[1])
		}
	}
	for _, name := range want {
		if !passed[name] {
			t.Errorf("%s did not pass in the guest", name)
		}
	}
}
