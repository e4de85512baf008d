package pipeline

import (
	"fmt"
	"path/filepath"
	"testing"
)

// benchStage runs a stage over a full synthetic burst of 64-byte UDP frames
// and reports ns per packet. Verdicts are reset before each pass so every
// stage sees live packets; the reset is part of the measured loop and is
// the same for every stage, so the figures compare side by side.
func benchStage(b *testing.B, s Stage) {
	frames := make([][]byte, DefaultBurstSize)
	for i := range frames {
		frames[i] = udp4(b, uint16(i))
	}
	benchFrames(b, s, frames)
}

// benchFrames is benchStage over the given frames, one burst of them.
func benchFrames(b *testing.B, s Stage, frames [][]byte) {
	bu, _ := burstOf(b, frames...)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range bu.Pkts {
			bu.Pkts[i].Verdict = VerdictKeep
		}
		s.Process(bu)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*bu.Len()), "ns/pkt")
}

func BenchmarkStageCount(b *testing.B)   { benchStage(b, &Count{}) }
func BenchmarkStageDrop(b *testing.B)    { benchStage(b, &Drop{}) }
func BenchmarkStageMacSwap(b *testing.B) { benchStage(b, &MacSwap{}) }
func BenchmarkStageForward(b *testing.B) {
	f := &Forward{To: "x"}
	_ = f.BindOutputs(func(string) (int, bool) { return 1, true })
	benchStage(b, f)
}

func BenchmarkStageFilter(b *testing.B) {
	benchStage(b, portFilter(b, 1, 2, 3, 4, 5, 6, 7, 8))
}

// BenchmarkStageRewriteTTL: TTL and DSCP with incremental checksum and a
// MAC rewrite; the TTL is set, not decremented, so frames never expire.
func BenchmarkStageRewriteTTL(b *testing.B) {
	benchStage(b, &Rewrite{SrcMAC: macA, DstMAC: macB, SetTTL: 63, SetDSCP: true, DSCP: 10})
}

// BenchmarkStageRewriteVLAN pushes then pops a tag (two stages) per packet.
func BenchmarkStageRewriteVLAN(b *testing.B) {
	push, pop := &Rewrite{PushVLAN: true, VLANTCI: 100}, &Rewrite{PopVLAN: true}
	benchStage(b, stageFunc(func(bu *Burst) { push.Process(bu); pop.Process(bu) }))
}

func BenchmarkStageSample(b *testing.B) {
	s, err := NewSample(64, 64, 128)
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for x := range s.C() {
			s.Release(x)
		}
	}()
	benchStage(b, s)
}

func BenchmarkStagePcap(b *testing.B) {
	p, err := NewPcap(PcapOptions{Path: filepath.Join(b.TempDir(), "b.pcap"), MaxBytes: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	benchStage(b, p)
}

type stageFunc func(*Burst)

func (f stageFunc) Process(b *Burst) { f(b) }

// BenchmarkStageFilterRules: the filter stage with n UDP port rules, the
// frames of the burst matching the last 64 of them (the linear scan's
// worst case): its cost per packet must not grow with n.
func BenchmarkStageFilterRules(b *testing.B) {
	for _, n := range []int{8, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ports := make([]uint16, n)
			for i := range ports {
				ports[i] = uint16(1000 + i)
			}
			frames := make([][]byte, DefaultBurstSize)
			for i := range frames {
				frames[i] = udp4(b, uint16(1000+n-1-i%n))
			}
			benchFrames(b, portFilter(b, ports...), frames)
		})
	}
}
