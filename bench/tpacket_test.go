package bench

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpipe/xdpipe/gen"
	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/internal/testutil"
)

// TestTPacketV3Frames sends generated frames out of one veth end and reads
// them from a TPACKET_V3 ring on the other: next hands each frame whole to
// its observer, which the AF_PACKET receiver's tracker relies on.
func TestTPacketV3Frames(t *testing.T) {
	testutil.RequireRoot(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	tp, err := gen.NewTemplate(gen.Config{Proto: gen.UDP4, Size: 100, SrcMAC: p.A.MAC, DstMAC: p.B.MAC,
		SrcIP: netip.AddrFrom4([4]byte(p.A.IP)), DstIP: netip.AddrFrom4([4]byte(p.B.IP)), DstPort: 9})
	if err != nil {
		t.Fatal(err)
	}
	var r *tpacketV3
	ifindex := p.B.Ifindex(t)
	p.B.NS.MustDo(t, func() error {
		r, err = newTPacketV3(ifindex, tp.Len())
		return err
	})
	defer r.close()
	tx := testutil.OpenPacketSocket(t, &p.A, nil)
	const n = 50
	frame := append([]byte(nil), tp.Bytes()...)
	for i := range n {
		tp.Stamp(frame, uint64(i), monotime.Now())
		tx.Send(t, frame)
	}
	tr := gen.NewTracker()
	lens := map[int]int{}
	// Each call reads a block of the ring, polling up to 100 ms for one.
	testutil.EventuallyErr(t, 10*time.Second, func() error {
		if _, _, err := r.next(100, func(f []byte) {
			if tr.Observe(f, monotime.Now()) {
				lens[len(f)]++
			}
		}); err != nil {
			t.Fatal(err)
		}
		if st := tr.Stats(n); st.Received < n {
			return fmt.Errorf("observed %v, frame lengths %v; want %d frames", st, lens, n)
		}
		return nil
	})
	st := tr.Stats(n)
	if st.Unique != n || st.Lost != 0 || st.Reordered != 0 || lens[tp.Len()] != n {
		t.Fatalf("observed %v, frame lengths %v; want %d frames of %d bytes in order", st, lens, n, tp.Len())
	}
}
