package pipeline

import (
	"net"
	"path/filepath"
	"runtime"
	"testing"
)

// allocated is the heap bytes make allocates, kept alive until it returns.
func allocated(t *testing.T, make func() (Stage, error)) uint64 {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s, err := make()
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if c, ok := s.(interface{ Close() error }); ok {
		c.Close()
	}
	return after.TotalAlloc - before.TotalAlloc
}

// TestStageCostsAreWhatTheyAllocate: each stage's memory cost (Costly),
// what --check adds up and Open holds against the machine's memory, is
// within 20% of what its constructor allocates (for pcap: at its first
// frame), at two sizes each, small ones: the estimate is what is tested,
// not the machine.
func TestStageCostsAreWhatTheyAllocate(t *testing.T) {
	collector, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer collector.Close()
	dir := t.TempDir()
	env := StageEnv{Ports: []string{"eth0"}, Ifindexes: []uint32{2}}
	for _, c := range []struct {
		name string
		opts Costly
	}{
		{"sample depth 20000 snaplen 1", &SampleOptions{Every: 1, Depth: 20000, SnapLen: 1}},
		{"sample depth 2000 snaplen 1500", &SampleOptions{Every: 1, Depth: 2000, SnapLen: 1500}},
		{"ipfix max_flows 1000", &IPFIXOptions{Collector: collector.LocalAddr().String(), MaxFlows: 1000}},
		{"ipfix max_flows 100000", &IPFIXOptions{Collector: collector.LocalAddr().String(), MaxFlows: 100000}},
		{"pcap buffer 64 KiB", &PcapStageOptions{Path: filepath.Join(dir, "a.pcap"), Buffer: 64 << 10}},
		{"pcap buffer 4 MiB", &PcapStageOptions{Path: filepath.Join(dir, "b.pcap"), Buffer: 4 << 20}},
	} {
		var build func() (Stage, error)
		switch o := c.opts.(type) {
		case *SampleOptions:
			build = func() (Stage, error) { return newSampleStage(o, env) }
		case *IPFIXOptions:
			build = func() (Stage, error) { return newIPFIXStage(o, env) }
		case *PcapStageOptions:
			b, _ := burstOf(t, buildFrame(t, frameSpec{dport: 53, payload: 18}))
			build = func() (Stage, error) {
				s, err := newPcapStage(o, env)
				if err == nil {
					s.Process(b) // opens the file: the buffer is made then
				}
				return s, err
			}
		}
		want, _ := c.opts.MemoryCost()
		got := allocated(t, build)
		t.Logf("%s: cost %d, allocated %d", c.name, want, got)
		if got < want*8/10 || got > want*12/10 {
			t.Errorf("%s: cost %d bytes, the constructor allocated %d", c.name, want, got)
		}
	}
}
