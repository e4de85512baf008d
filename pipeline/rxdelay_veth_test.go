package pipeline

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/xsk"
)

// TestVethRxDelay sends frames over a link to an AF_XDP socket whose
// redirect program stamps them (driver and generic XDP): the kernel hands
// the metadata area to the socket with the frame, and the worker counts
// the delay of every frame it received, each no longer than the test has
// run. With the program loaded without the stamp the worker, still
// looking for one, counts nothing.
func TestVethRxDelay(t *testing.T) {
	testutil.RequireRoot(t)
	t.Run("driver", func(t *testing.T) { testVethRxDelay(t, bpf.AttachDriver, true) })
	t.Run("generic", func(t *testing.T) { testVethRxDelay(t, bpf.AttachGeneric, true) })
	t.Run("unstamped", func(t *testing.T) { testVethRxDelay(t, bpf.AttachAuto, false) })
}

// rxMetaSeen is a stage that records the RX metadata of the test frames.
type rxMetaSeen struct {
	frames, hashed, stamped int
	hashes                  map[uint32]int
	types                   map[uint16]int
}

func (r *rxMetaSeen) Process(b *Burst) {
	for i := range b.Pkts {
		p := &b.Pkts[i]
		if !isTestFrame(p.Data) {
			continue
		}
		r.frames++
		if p.RxMeta&RxHasHash != 0 {
			r.hashed++
			r.hashes[p.RxHash]++
			r.types[p.RxHashType]++
		}
		if p.RxMeta&RxHasTimestamp != 0 {
			r.stamped++
		}
	}
}

// xdpRSSL4 is the kernel's XDP_RSS_L4 bit of enum xdp_rss_hash_type: the
// hash covers the ports.
const xdpRSSL4 = 1 << 3

// TestRxMetadata: the redirect program bound to the receiving end reads
// the driver's RX hash into every frame's metadata, and the worker puts it
// in the Packet: one flow, one non-zero hash of the ports (veth: the skb's
// flow hash; virtio-net with hash reports, in the VM: qemu's Toeplitz
// hash), on every test frame; along with the rx stamp, counted for every
// frame. No frame has an RX timestamp: veth's is the skb's hardware stamp,
// 0 here, and virtio-net has none.
func TestRxMetadata(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireRxHash(t)
	n := testutil.Frames(1000)
	seen := &rxMetaSeen{hashes: map[uint32]int{}, types: map[uint16]int{}}
	w := sendThrough(t, n, func(e *testutil.LinkEnd) bpf.RedirectOptions {
		return bpf.RedirectOptions{RxStamp: 1, RxMetadataIfindex: e.Ifindex(t)}
	}, bpf.AttachAuto, true, seen)
	var counted uint64
	for i := range w.RxDelay().Counts {
		counted += w.RxDelay().Counts[i].Load()
	}
	if rx := w.PortStats(0).RxPackets.Load(); counted != rx {
		t.Errorf("delays counted %d, frames received %d", counted, rx)
	}
	if seen.frames != n || seen.hashed != n || len(seen.hashes) != 1 || seen.hashes[0] != 0 || seen.stamped != 0 {
		t.Fatalf("%d test frames: %d with a hash (%d distinct: %v), %d with a NIC timestamp; want all %d of one non-zero hash, none stamped",
			seen.frames, seen.hashed, len(seen.hashes), seen.hashes, seen.stamped, n)
	}
	if types := slices.Collect(maps.Keys(seen.types)); len(types) != 1 || types[0]&xdpRSSL4 == 0 {
		t.Fatalf("RX hash types %v: want one, with XDP_RSS_L4 (%#x)", seen.types, xdpRSSL4)
	}
	t.Logf("%d frames of one flow over %s, RX hash %v, types %v", n, testutil.Link(), seen.hashes, seen.types)
}

// testVethRxDelay is TestVethRxDelay with the program attached in mode,
// loaded with or without the stamp.
func testVethRxDelay(t *testing.T, mode bpf.AttachMode, stamp bool) {
	start := monotime.Now()
	const n = 2000
	var every uint32
	if stamp {
		every = 1
	}
	w := sendThrough(t, n, func(*testutil.LinkEnd) bpf.RedirectOptions { return bpf.RedirectOptions{RxStamp: every} }, mode, false)
	elapsed := monotime.Now() - start
	d := w.RxDelay()
	var counted uint64
	for i := range d.Counts {
		counted += d.Counts[i].Load()
	}
	rx := w.PortStats(0).RxPackets.Load()
	if !stamp {
		if counted != 0 {
			t.Fatalf("no stamps written, yet %d delays counted", counted)
		}
		return
	}
	// Every received frame, the namespaces' own (IPv6 neighbour
	// discovery) included, went through the stamping program.
	if counted != rx || rx < n {
		t.Fatalf("delays counted %d, frames received %d (%d sent)", counted, rx, n)
	}
	for i := range d.Counts {
		if d.Counts[i].Load() > 0 && (i == DelayBuckets || DelayBound(i-1) >= elapsed) {
			t.Fatalf("%d delays in bucket %d, longer than the test has run (%d ns): stamps misread", d.Counts[i].Load(), i, elapsed)
		}
	}
	mean := float64(d.SumNanos.Load()) / float64(counted)
	if mean <= 0 {
		t.Fatalf("mean delay %.0f ns", mean)
	}
	t.Logf("%d frames, mean rx delay %.1f µs; buckets %v", counted, mean/1e3, nonZero(d))
}

// sendThrough sends n test frames over a new link to a socket on its B
// end behind the redirect program loaded with the options ro returns for
// B and attached in mode, to a worker counting rx delays (and with
// rxMeta, reading RX metadata) that runs stages and then drops what is
// not a test frame. It returns the worker, stopped, once every frame has
// reached its stages.
func sendThrough(t *testing.T, n int, ro func(*testutil.LinkEnd) bpf.RedirectOptions, mode bpf.AttachMode, rxMeta bool, stages ...Stage) *Worker {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	u, err := xsk.NewUmem(xsk.UmemOptions{NumFrames: 1024})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	s := openXskWith(t, &p.B, u, 0, xsk.SocketOptions{RXSize: 256, TXSize: 64}, ro(&p.B), mode)
	count := &Count{}
	w, err := NewWorker(WorkerConfig{Ports: []NamedPort{{p.B.Name, s}}, Mem: u, Stages: append(stages, testOnly(t), count),
		Poll: PollWakeup, RxDelay: true, RxMetadata: rxMeta})
	if err != nil {
		t.Fatal(err)
	}
	src := testutil.OpenPacketSocket(t, &p.A, isTestFrame)
	stop := runWorker(t, w)
	arrived := func() int64 { return int64(count.Packets.Load()) }
	src.SendWindow(t, 0, n, 128, arrived, func(i int) []byte { return testFrame(t, &p.A, &p.B, uint32(i), 64) })
	waitCount(t, "frames at the stages", int64(n), arrived, func() int64 { return 0 })
	stop()
	return w
}

// nonZero lists d's non-empty buckets as "<=bound:count".
func nonZero(d *DelayStats) []string {
	var out []string
	for i := range d.Counts {
		if n := d.Counts[i].Load(); n > 0 {
			bound := "inf"
			if i < DelayBuckets {
				bound = time.Duration(DelayBound(i)).String()
			}
			out = append(out, fmt.Sprintf("<=%s:%d", bound, n))
		}
	}
	return out
}
