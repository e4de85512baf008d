package rdma

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// pkt is a packet of segments of the given lengths at consecutive 4096-byte
// frames from frame first, every one but the last flagged More.
func pkt(first int, lens ...uint32) []Desc {
	out := make([]Desc, len(lens))
	for i, l := range lens {
		out[i] = Desc{Addr: uint64(first+i) * 4096, Len: l, Flags: More}
	}
	out[len(out)-1].Flags = 0
	return out
}

func concat(pkts ...[]Desc) []Desc {
	var out []Desc
	for _, p := range pkts {
		out = append(out, p...)
	}
	return out
}

// send is what Sender.Send does with the window: fit, track, post all.
func send(t *testing.T, w *window, descs []Desc) int {
	t.Helper()
	n, err := w.fit(descs)
	if err != nil {
		t.Fatalf("fit: %v", err)
	}
	w.track(descs[:n])
	w.posted(descs[:n])
	return n
}

// TestWindowTakesWholePacketsWithinCreditsAndRoom: a burst is taken up to
// the last whole packet that a credit and the ring's room cover; a
// credit is a packet, room is segments.
func TestWindowTakesWholePacketsWithinCreditsAndRoom(t *testing.T) {
	w := newWindow(8, 3, 1<<20, 4, 9000)
	burst := concat(pkt(0, 100), pkt(1, 100, 200), pkt(3, 300), pkt(4, 400), pkt(5, 500))
	n, err := w.fit(burst)
	if n != 4 || err != nil {
		t.Fatalf("fit with 3 credits: %d, %v; want the first 3 packets' 4 descs", n, err)
	}
	w.track(burst[:n])
	if pkts, bytes := w.posted(burst[:n]); pkts != 3 || bytes != 700 {
		t.Fatalf("posted: %d packets, %d bytes; want 3, 700", pkts, bytes)
	}
	if w.credits != 0 || w.inFlight() != 4 {
		t.Fatalf("credits %d, in flight %d; want 0, 4", w.credits, w.inFlight())
	}
	if n, err := w.fit(burst[n:]); n != 0 || err != nil {
		t.Fatalf("fit without credits: %d, %v; want 0, nil", n, err)
	}
	w.credits += 10
	// 4 slots of 8 are free: a 3-segment packet fits, the 2-segment one
	// after it does not.
	if n, err := w.fit(concat(pkt(10, 1, 1, 1), pkt(13, 1, 1))); n != 3 || err != nil {
		t.Fatalf("fit with room for 4 segments: %d, %v; want 3, nil", n, err)
	}
}

// TestWindowHandsBackInOrderAcrossTheRingsEnd: completions retire every
// Desc up to their sequence, in order, whatever order or repetition they
// come in; hand-backs may split a packet; sequences wrap the ring many
// times; a flush hands back everything in flight.
func TestWindowHandsBackInOrderAcrossTheRingsEnd(t *testing.T) {
	w := newWindow(4, 1000, 1<<30, 4, 9000)
	out := make([]Desc, 2)
	frame := 0
	for round := range 20 {
		p := pkt(frame, 10, 20, 30)
		frame += 3
		if n := send(t, &w, p); n != 3 {
			t.Fatalf("round %d: sent %d, want 3", round, n)
		}
		last := w.next - 1
		if n := w.handBack(out); n != 0 {
			t.Fatalf("round %d: %d handed back before any completion", round, n)
		}
		w.completed(last)
		w.completed(last - 2) // an earlier wr_id, late: retires nothing more
		var got []Desc
		for n := w.handBack(out); n > 0; n = w.handBack(out) {
			got = append(got, out[:n]...)
		}
		if len(got) != 3 || got[0] != p[0] || got[1] != p[1] || got[2] != p[2] || w.inFlight() != 0 {
			t.Fatalf("round %d: handed back %v (in flight %d), want %v", round, got, w.inFlight(), p)
		}
	}
	send(t, &w, concat(pkt(0, 1), pkt(1, 1)))
	w.completed(w.next - 2)
	w.flush()
	if n := w.handBack(make([]Desc, 8)); n != 2 || w.inFlight() != 0 {
		t.Fatalf("after a flush: %d handed back, %d in flight; want 2, 0", n, w.inFlight())
	}
}

// TestWindowRefusesABadPacketAfterTheGoodOnes: a packet outside the
// region, of too many segments, cut off by the burst's end, or longer
// than the sink's buffers stops the burst with ErrTooLarge, the packets
// before it taken and none after; only the last is ErrBufferSize.
func TestWindowRefusesABadPacketAfterTheGoodOnes(t *testing.T) {
	good := pkt(0, 100)
	for _, c := range []struct {
		name    string
		burst   []Desc
		taken   int // descs before the bad packet
		want    string
		bufSize bool
	}{
		{"outside the region", concat(good, []Desc{{Addr: 1<<20 - 10, Len: 100}}, good), 1, "outside the region", false},
		{"wrapping around", concat(good, []Desc{{Addr: math.MaxUint64 - 10, Len: 100}}, good), 1, "outside the region", false},
		{"too many segments", concat(good, pkt(1, 1, 1, 1, 1, 1), good), 1, "more than 4 segments", false},
		{"cut off", concat(good, good, []Desc{{Addr: 4096, Len: 100, Flags: More}}), 2, "packet at 2: its last segment (flagged More) ends the burst", false},
		{"longer than the sink's buffers", concat(good, pkt(1, 3000, 3000), good), 1, "packet at 1: 6000 bytes, the sink's receive buffers hold 4096", true},
	} {
		w := newWindow(64, 100, 1<<20, 4, 4096)
		n, err := w.fit(c.burst)
		if n != c.taken || !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: fit = %d, %v; want %d, ErrTooLarge saying %q", c.name, n, err, c.taken, c.want)
		}
		if errors.Is(err, ErrBufferSize) != c.bufSize {
			t.Errorf("%s: %v is ErrBufferSize: %v, want %v", c.name, err, !c.bufSize, c.bufSize)
		}
	}
	w := newWindow(64, 100, 1<<20, 4, 4096)
	if n, err := w.fit(pkt(0, 2048, 2048)); n != 2 || err != nil {
		t.Errorf("a packet of exactly the sink's buffer size: %d, %v; want it taken", n, err)
	}
}

// TestReturnsBatchesCreditsWithinTheSendQueue: credits go back once a
// threshold of buffers was reposted, all that are owed in one message, and
// wait while every send queue slot holds a message not yet completed.
func TestReturnsBatchesCreditsWithinTheSendQueue(t *testing.T) {
	r := returns{threshold: 4, depth: 2}
	r.reposted(3)
	if d := r.due(); d != 0 {
		t.Fatalf("3 reposted, threshold 4: due %d, want 0", d)
	}
	for range 2 {
		r.reposted(5)
		if d := r.due(); d < 4 {
			t.Fatalf("due %d, want the reposted buffers", d)
		}
		r.sent()
	}
	r.reposted(6)
	if d := r.due(); d != 0 {
		t.Fatalf("both send queue slots taken: due %d, want 0", d)
	}
	r.completed(1)
	if d := r.due(); d != 6 {
		t.Fatalf("a slot free again: due %d, want the 6 owed", d)
	}
}

// TestHandshakeRoundTrips: what each side writes in the connection's
// private data the other reads back, through the CM's zero padding; what
// is not an xdpipe endpoint's, or another version's, is refused.
func TestHandshakeRoundTrips(t *testing.T) {
	pad := func(b []byte) []byte { return append(b, make([]byte, 40)...) }
	if m, err := parseConnect(pad(connectData(9014))); m != 9014 || err != nil {
		t.Errorf("connect: %d, %v; want 9014", m, err)
	}
	if m, err := parseConnect(connectData(0)[:hdrLen]); m != 0 || err != nil {
		t.Errorf("connect without a max message: %d, %v; want 0, nil", m, err)
	}
	if c, s, err := parseAccept(pad(acceptData(512, 2048))); c != 512 || s != 2048 || err != nil {
		t.Errorf("accept: %d, %d, %v; want 512, 2048", c, s, err)
	}
	if _, _, err := parseAccept(acceptData(512, 2048)[:12]); err == nil {
		t.Error("an accept without the buffer size: no error")
	}
	long := strings.Repeat("x", 2*maxReason)
	if f, reason, ok := parseReject(pad(rejectData(rejectBufferSize, long))); !ok || f != rejectBufferSize || reason != long[:maxReason] {
		t.Errorf("reject: %d, %q, %v; want the flag and the reason cut to %d bytes", f, reason, ok, maxReason)
	}
	if _, _, ok := parseReject(make([]byte, 56)); ok {
		t.Error("a rejection by the CM (zeros) read as a sink's")
	}
	other := connectData(1)
	other[5]++ // another protocol version
	if _, err := parseConnect(other); err == nil || !strings.Contains(err.Error(), "protocol version 2, want 1") {
		t.Errorf("another version: %v", err)
	}
	if _, err := parseConnect([]byte("GET / HTTP/1.1")); err == nil || !strings.Contains(err.Error(), "not an xdpipe rdma endpoint") {
		t.Errorf("not an endpoint: %v", err)
	}
}

// TestBufferSizeErrorKeepsItsText: the mark that a refusal is the sink's
// buffer size adds ErrBufferSize to what errors.Is finds and nothing to
// the text.
func TestBufferSizeErrorKeepsItsText(t *testing.T) {
	inner := fmt.Errorf("%w: connect: sink said: receive buffers hold 2048 bytes", ErrRefused)
	err := bufferSizeError{inner}
	if err.Error() != inner.Error() || !errors.Is(err, ErrBufferSize) || !errors.Is(err, ErrRefused) || errors.Is(inner, ErrBufferSize) {
		t.Errorf("%q: Is ErrBufferSize %v, Is ErrRefused %v", err, errors.Is(err, ErrBufferSize), errors.Is(err, ErrRefused))
	}
}
