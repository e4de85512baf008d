//go:build linux

package bpf

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"

	"github.com/xdpipe/xdpipe/internal/testutil"
)

// TestKernelFeatures names the kernel features the programs need and
// checks each one: a kernel missing one skips (fails under CI=true) here,
// with the feature's name, instead of failing obscurely in the verifier.
func TestKernelFeatures(t *testing.T) {
	testutil.RequireRoot(t)
	for _, f := range []struct {
		name  string
		check func() error
	}{
		{"XDP program type", func() error { return features.HaveProgramType(ebpf.XDP) }},
		{"bounded loops (5.3; steer's VLAN, extension header and prefix loops)", features.HaveBoundedLoops},
		{"bpf_loop (5.17; steer's bitmap scan)", func() error { return features.HaveProgramHelper(ebpf.XDP, asm.FnLoop) }},
		{"XSKMAP (4.18)", func() error { return features.HaveMapType(ebpf.XSKMap) }},
		{"LPM trie (4.11; steer's prefixes)", func() error { return features.HaveMapType(ebpf.LPMTrie) }},
		{"per-CPU array (counters)", func() error { return features.HaveMapType(ebpf.PerCPUArray) }},
		{"BPF_F_NO_PREALLOC hash maps (bitmaps)", func() error { return features.HaveMapFlag(features.BPF_F_NO_PREALLOC) }},
		{"bpf_redirect_map in XDP (4.14)", func() error { return features.HaveProgramHelper(ebpf.XDP, asm.FnRedirectMap) }},
		{"bpf_xdp_get_buff_len (5.18; multi-buffer byte counts)", func() error { return features.HaveProgramHelper(ebpf.XDP, asm.FnXdpGetBuffLen) }},
	} {
		if err := f.check(); err != nil {
			testutil.SkipOrFail(t, "kernel lacks %s: %v", f.name, err)
		}
	}
	// Not probed separately, exercised by the other tests: bpf_link for
	// XDP (5.9), xdp.frags (5.18), global BPF functions with packet access
	// (5.10), BPF_PROG_RUN live frames (5.18), membarrier GLOBAL.
}
