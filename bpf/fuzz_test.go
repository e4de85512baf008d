//go:build linux

package bpf

import (
	"testing"

	"github.com/xdpipe/xdpipe/internal/frame/frametest"
	"github.com/xdpipe/xdpipe/rules"
	"github.com/xdpipe/xdpipe/rules/rulestest"
)

// FuzzSteer feeds random frames and random rule sets to the steering
// program (BPF_PROG_RUN) and to the Go reference matcher and requires the
// same action and the same counter to move. The seed corpus is checked in
// under testdata/fuzz/FuzzSteer and is extended here with every sample
// frame. Run: go test ./bpf/ -run '^$' -fuzz FuzzSteer -fuzztime 60s
func FuzzSteer(f *testing.F) {
	samples := frametest.SampleFrames()
	for i, smp := range samples {
		if i%5 == 0 {
			f.Add([]byte{byte(i), byte(i >> 8), 5, 0xff, byte(i * 7), 1, 0x5a, 0xa5}, smp.Frame)
		}
	}
	s := newSteer(f)
	f.Fuzz(func(t *testing.T, ruleData, frame []byte) {
		// Shorter than Ethernet: BPF_PROG_RUN refuses it. Longer than the
		// linear part of a BPF_PROG_RUN buffer: headers could straddle
		// fragments, which the program treats as truncation; keep clear.
		if len(frame) < 14 || len(frame) > 3000 {
			return
		}
		var tuples []rules.Tuple
		if tu, r := rules.ParseFrame(frame, progIfindex); r == rules.ReasonNone {
			tuples = append(tuples, tu)
		}
		set := rulestest.FuzzSet(ruleData, tuples, progIfindex)
		ref := apply(t, s, set)
		checkFrame(t, s, ref, "fuzz", frame)
	})
}
