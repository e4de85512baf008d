package xsk

import (
	"math"
	"strings"
	"testing"

	"github.com/xdpipe/xdpipe/internal/sat"
)

// TestEverySizeIsBoundedByItsCost: OOM-sized settings are refused from
// their cost alone, in one line naming the setting; nothing is allocated
// (these are validation-only: no UMEM or socket is made).
func TestEverySizeIsBoundedByItsCost(t *testing.T) {
	lim := MemoryLimits{Available: 4 << 30, Memlock: math.MaxUint64}
	const ring = 1 << 30
	daemon := func(ring, frameSize, sockets uint64) []Cost {
		return []Cost{
			UmemCost("ring", sockets, sat.Mul(4, ring), uint32(frameSize)),
			RingsCost("ring", sockets, ring, ring, 2*ring, 2*ring),
		}
	}
	for _, c := range []struct {
		name  string
		costs []Cost
		lim   MemoryLimits
		want  string // "" accepted, else the setting named
	}{
		{"defaults", daemon(2048, 4096, 2), lim, ""},
		{"ring 2^30", daemon(ring, 4096, 1), lim, "ring"},
		{"ring 2^32 from a flag", daemon(1<<32, 4096, 8), lim, "ring"},
		{"ring 2^62 wraps nothing", daemon(1<<62, 4096, 1<<20), lim, "ring"},
		{"sample depth 1e8 snaplen 1e8", append(daemon(2048, 4096, 1),
			Cost{Setting: "stage sample (line 7): depth and snaplen", Bytes: sat.Mul(100000000, 100000000)}), lim, "stage sample (line 7)"},
		{"pcap buffer", append(daemon(2048, 4096, 1),
			Cost{Setting: "stage pcap (line 3): buffer", Bytes: sat.Mul(4, 1<<40)}), lim, "stage pcap (line 3): buffer"},
		{"umem over RLIMIT_MEMLOCK", daemon(2048, 4096, 1), MemoryLimits{Available: 4 << 30, Memlock: 8 << 20}, "ring"},
		{"umem under RLIMIT_MEMLOCK", daemon(64, 2048, 1), MemoryLimits{Available: 4 << 30, Memlock: 8 << 20}, ""},
	} {
		err := CheckMemory(c.costs, c.lim)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && err == nil:
			t.Errorf("%s: accepted", c.name)
		case err != nil && (!strings.HasPrefix(err.Error(), c.want) || strings.Contains(err.Error(), "\n")):
			t.Errorf("%s: %q does not start with the setting %q on one line", c.name, err, c.want)
		}
	}
}

func TestMemoryLimits(t *testing.T) {
	got, err := memAvailable([]byte("MemTotal:       16000000 kB\nMemAvailable:    1000 kB\n"))
	if err != nil || got != 1024000 {
		t.Fatalf("memAvailable: %d %v", got, err)
	}
	if _, err := memAvailable([]byte("MemTotal: 1 kB\n")); err == nil {
		t.Fatal("no MemAvailable accepted")
	}
	lim, err := ReadMemoryLimits()
	if err != nil || lim.Available == 0 || lim.Memlock == 0 {
		t.Fatalf("this machine: %+v %v", lim, err)
	}
	if Bytes(1536<<20) != "1.5 GiB" || Bytes(100) != "100 B" || Bytes(math.MaxUint64) != "more than 16 EiB" {
		t.Fatal(Bytes(1536<<20), Bytes(100))
	}
}

// TestOptionsCost: the options' costs are those of the sizes NewUmem and
// NewSocket will use, their defaults included.
func TestOptionsCost(t *testing.T) {
	uo := UmemOptions{NumFrames: 8192, FrameSize: 2048, FillSize: 1024}
	so := SocketOptions{RXSize: 1024}
	if got, want := uo.Cost("--frames"), UmemCost("--frames", 1, 8192, 2048); got != want {
		t.Errorf("UmemOptions.Cost = %+v, want %+v", got, want)
	}
	// TX and completion rings at their default size.
	if got, want := so.Cost("--ring", uo), RingsCost("--ring", 1, 1024, DefaultRingSize, 1024, DefaultRingSize); got != want {
		t.Errorf("SocketOptions.Cost = %+v, want %+v", got, want)
	}
	if got, want := (UmemOptions{}).Cost("umem"), UmemCost("umem", 1, DefaultNumFrames, DefaultFrameSize); got != want || !got.Locked {
		t.Errorf("zero UmemOptions.Cost = %+v, want %+v", got, want)
	}
}
