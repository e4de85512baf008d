//go:build linux

package bpf

import (
	"errors"
	"regexp"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// steerVerifierBudget bounds the instructions the verifier may process to
// accept the steering program: a tenth of its limit (one million), so that
// a change that multiplies the verifier's states fails here, on any kernel,
// before a newer kernel's verifier rejects the program. Measured with the
// flow cache: 13,524 on Linux 6.18, 23,802 on the VM's 7.3 (without it:
// 13,948 and 24,022; before packing the bitmaps and moving
// the pieces into global functions: 182,011 on 6.18, rejected on 7.3).
const steerVerifierBudget = 100000

var processedRe = regexp.MustCompile(`processed (\d+) insns`)

// TestSteerVerifierBudget loads the steering program with the verifier's
// statistics and requires the processed instruction count to stay within
// steerVerifierBudget. internal/vmtest's TestVMSteer runs it on the VM's
// newer kernel, whose verifier can explore more states than the host's.
func TestSteerVerifierBudget(t *testing.T) {
	testutil.RequireRoot(t)
	if err := removeMemlock(); err != nil {
		t.Fatal(err)
	}
	spec, err := loadSteer()
	if err != nil {
		t.Fatal(err)
	}
	var objs steerLoaded
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}})
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		t.Fatalf("the verifier rejects the steering program: %+v", ve)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := objs.Close(); err != nil {
			t.Error(err)
		}
	})
	m := processedRe.FindStringSubmatch(objs.XdpSteer.VerifierLog)
	if m == nil {
		t.Fatalf("no processed instruction count in the verifier log:\n%s", objs.XdpSteer.VerifierLog)
	}
	n, _ := strconv.Atoi(m[1])
	t.Logf("verifier statistics:\n%s", objs.XdpSteer.VerifierLog)
	if n > steerVerifierBudget {
		t.Errorf("the verifier processed %d instructions, the budget is %d: some change multiplies its states (see the Verification note in steer.c)", n, steerVerifierBudget)
	}
}
