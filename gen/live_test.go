package gen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/internal/monotime"
	"github.com/xdpipe/xdpipe/internal/testutil"
	"github.com/xdpipe/xdpipe/xsk"
)

func TestMain(m *testing.M) { testutil.RunCheckingLeaks(m) }

// vethConfig is a Config from A to B of the pair.
func vethConfig(p *testutil.LinkPair, proto Proto, size int) Config {
	c := Config{Proto: proto, Size: size, SrcMAC: p.A.MAC, DstMAC: p.B.MAC}
	if proto.v6() {
		c.SrcIP, _ = netip.AddrFromSlice(p.A.IP6)
		c.DstIP, _ = netip.AddrFromSlice(p.B.IP6)
	} else {
		c.SrcIP, _ = netip.AddrFromSlice(p.A.IP)
		c.DstIP, _ = netip.AddrFromSlice(p.B.IP)
	}
	return c
}

// TestStampProgramMatchesStamp runs the live engine's XDP program once
// (plain BPF_PROG_RUN, output returned) and compares its frame with
// Template.Stamp's for the same sequence number and timestamp.
func TestStampProgramMatchesStamp(t *testing.T) {
	testutil.RequireRoot(t)
	for _, p := range []Proto{UDP4, UDP6, TCP4SYN, TCP6SYN} {
		for i, vary := range []Vary{VarySrcPort, VarySrcAddr, VarySrcPort, VarySrcAddr} {
			c := testConfig(p, 300)
			c.Flows, c.Vary = 7+i/2, vary // 7 flows take a division, 8 a mask
			tp, err := NewTemplate(c)
			if err != nil {
				t.Fatal(err)
			}
			st, err := newStamper(tp, 64)
			if err != nil {
				t.Fatal(err)
			}
			for _, seq := range []uint64{0, 1, 6, 7, 1 << 40, ^uint64(0) - 1} {
				if err := st.set(counter{Next: seq, Limit: ^uint64(0)}); err != nil {
					t.Fatal(err)
				}
				out := make([]byte, tp.Len()+256)
				opts := ebpf.RunOptions{Data: tp.Bytes(), DataOut: out}
				ret, err := st.prog.Run(&opts)
				if err != nil {
					t.Fatal(err)
				}
				if ret != 3 {
					t.Fatalf("%v: program returned %d, want XDP_TX (3)", p, ret)
				}
				got := opts.DataOut
				pl := checkFrame(t, got)
				if pl.Seq != seq {
					t.Fatalf("%v: seq %d want %d", p, pl.Seq, seq)
				}
				want := bytes.Clone(tp.Bytes())
				tp.Stamp(want, seq, pl.Sent)
				if !bytes.Equal(got, want) {
					t.Fatalf("%v %v seq %d: program wrote\n%x\nStamp writes\n%x", p, vary, seq, got, want)
				}
			}
			// Between readings of the clock frames carry the last one:
			// two frames take Stamp, the third reads the clock again.
			if err := st.set(counter{Next: 9, Limit: ^uint64(0), Stamp: 12345, Left: 2}); err != nil {
				t.Fatal(err)
			}
			for i, want := range []struct{ sent, left uint64 }{{12345, 1}, {12345, 0}, {0, 63}} {
				out := make([]byte, tp.Len()+256)
				opts := ebpf.RunOptions{Data: tp.Bytes(), DataOut: out}
				if _, err := st.prog.Run(&opts); err != nil {
					t.Fatal(err)
				}
				pl := checkFrame(t, opts.DataOut)
				c, err := st.get()
				if err != nil {
					t.Fatal(err)
				}
				fresh := want.sent == 0 && pl.Sent > 12345 && uint64(pl.Sent) == c.Stamp
				if pl.Seq != uint64(9+i) || (uint64(pl.Sent) != want.sent && !fresh) || c.Left != want.left {
					t.Fatalf("%v frame %d after a reading: seq %d sent %d, counter %+v; want seq %d sent %d (0: a new reading), left %d",
						p, i, pl.Seq, pl.Sent, c, 9+i, want.sent, want.left)
				}
			}
			// Past the limit the program drops.
			if err := st.set(counter{Next: 5, Limit: 5}); err != nil {
				t.Fatal(err)
			}
			ret, err := st.prog.Run(&ebpf.RunOptions{Data: tp.Bytes()})
			if err != nil || ret != 1 {
				t.Fatalf("past the limit: ret %d err %v, want XDP_DROP", ret, err)
			}
			st.Close()
		}
	}
}

// receiver counts generated frames arriving on a veth end: an XDP_PASS
// program keeps XDP_TX'd frames from vanishing, an AF_PACKET socket reads
// them into a Tracker.
type receiver struct {
	tr   *Tracker
	fd   int
	done chan struct{}
	mu   sync.Mutex
	tp   *Template
	bad  int // frames that failed Verify
}

func newReceiver(t *testing.T, end *testutil.LinkEnd, tp *Template) *receiver {
	t.Helper()
	idx := end.Ifindex(t)
	r := &receiver{tr: NewTracker(), done: make(chan struct{}), tp: tp}
	end.AttachPass(t)
	end.NS.MustDo(t, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		r.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}); err != nil {
			unix.Close(fd)
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 256<<20)
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	stop := make(chan struct{})
	go func() {
		defer close(r.done)
		buf := make([]byte, 16384)
		for {
			n, _, err := unix.Recvfrom(r.fd, buf, 0)
			if err != nil {
				select {
				case <-stop:
					return
				default:
					continue
				}
			}
			r.mu.Lock()
			if r.tr.Observe(buf[:n], monotime.Now()) {
				if err := tp.Verify(buf[:n]); err != nil {
					r.bad++
					if r.bad == 1 {
						t.Errorf("received frame not intact: %v", err)
					}
				}
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-r.done
		unix.Close(r.fd)
	})
	return r
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// stats is the tracker's account of the frames received, want sent.
func (r *receiver) stats(want uint64) Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tr.Stats(want)
}

// wait waits until want generated frames arrived, then for a frame beyond
// them, and returns the tracker's stats.
func (r *receiver) wait(t *testing.T, want uint64) Stats {
	t.Helper()
	testutil.EventuallyErr(t, 30*time.Second, func() error {
		if st := r.stats(want); st.Received < want {
			return fmt.Errorf("received %d of %d generated frames: %v", st.Received, want, st)
		}
		return nil
	})
	// Kept: the claim is that nothing more arrives, which leaves no event
	// to wait for; a duplicate or stray frame would come within this.
	time.Sleep(100 * time.Millisecond)
	return r.stats(want)
}

// requireLiveSender skips the live engine's tests on NICs: a virtio NIC
// transmits XDP_TX frames only with an XDP program of its own attached,
// which the engine does not attach.
func requireLiveSender(t *testing.T) {
	t.Helper()
	testutil.RequireVeth(t, "the live engine XDP_TXes out of the sender, which a virtio NIC does only with a program attached")
}

// bind is the xsk engine's bind mode in these tests (testutil.Bind).
func bind() xsk.BindMode { m, _ := xsk.ParseBindMode(testutil.Bind()); return m }

func TestLiveSendsExactCount(t *testing.T) {
	requireLiveSender(t)
	for _, proto := range []Proto{UDP4, UDP6, TCP4SYN} {
		t.Run(proto.String(), func(t *testing.T) {
			p := testutil.NewLinkPair(t, testutil.LinkOptions{})
			c := vethConfig(p, proto, 128)
			c.Flows = 16
			tp, err := NewTemplate(c)
			if err != nil {
				t.Fatal(err)
			}
			rx := newReceiver(t, &p.B, tp)
			const count = 20000
			var res Result
			p.A.NS.MustDo(t, func() error {
				l, err := NewLive(tp, LiveOptions{Ifindex: p.A.Ifindex(t)})
				if err != nil {
					return err
				}
				defer l.Close()
				res, err = l.Send(context.Background(), Run{Count: count, Rate: 100000})
				return err
			})
			checkDelivered(t, rx, res, count)
		})
	}
}

// checkDelivered checks a live run's accounting: the program made exactly
// count frames, each either taken by the driver or counted as refused, and
// the receiver got exactly the ones taken, each once. A veth refuses frames
// when its peer's ring is full, which happens when the peer's NAPI is
// descheduled on a busy machine: XDP has no backpressure, so refused
// frames are counted, never silently lost.
func checkDelivered(t *testing.T, rx *receiver, res Result, count uint64) {
	t.Helper()
	if res.Sent+res.Dropped != count || res.Sent == 0 {
		t.Fatalf("sent %d and refused %d, want %d made and some sent", res.Sent, res.Dropped, count)
	}
	st := rx.wait(t, res.Sent)
	t.Logf("sent %d, refused by the driver %d; receiver %v", res.Sent, res.Dropped, st)
	if st.Received != res.Sent || st.Unique != res.Sent || st.Duplicates != 0 || st.MaxSeq >= count {
		t.Fatalf("receiver: %+v, want the %d frames sent, each once, numbered below %d", st, res.Sent, count)
	}
}

func TestLiveRateLimit(t *testing.T) {
	requireLiveSender(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	tp, err := NewTemplate(vethConfig(p, UDP4, 64))
	if err != nil {
		t.Fatal(err)
	}
	rx := newReceiver(t, &p.B, tp)
	// 2 seconds at 50k frames/s: long enough that the first and last
	// bursts (a few ms each) weigh under 1%.
	const rate, secs = 50000.0, 2
	var res Result
	var calls int
	p.A.NS.MustDo(t, func() error {
		l, err := NewLive(tp, LiveOptions{Ifindex: p.A.Ifindex(t)})
		if err != nil {
			return err
		}
		defer l.Close()
		res, err = l.Send(context.Background(), Run{Duration: secs * time.Second, Rate: rate,
			Progress: func(Progress) { calls++ }})
		return err
	})
	// The pacer paces frames made: those the driver refused count too.
	made := res.Sent + res.Dropped
	got := Result{Sent: made, Elapsed: res.Elapsed}.Rate()
	t.Logf("made %d in %v: %.0f frames/s (target %.0f), %d progress calls", made, res.Elapsed, got, rate, calls)
	if got < rate*0.95 || got > rate*1.05 {
		t.Fatalf("rate %.0f frames/s, want %.0f within 5%%", got, rate)
	}
	if calls < 2 {
		t.Errorf("progress called %d times in %d s", calls, secs)
	}
	checkDelivered(t, rx, res, made)
}

func TestLiveBadInput(t *testing.T) {
	requireLiveSender(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	p.B.AttachPass(t)
	big, _ := NewTemplate(vethConfig(p, UDP4, 4000))
	small, _ := NewTemplate(vethConfig(p, UDP4, 64))
	idx := p.A.Ifindex(t)
	p.A.NS.MustDo(t, func() error {
		if _, err := NewLive(big, LiveOptions{Ifindex: idx}); !errors.Is(err, ErrBadConfig) {
			t.Errorf("4000-byte frame on MTU 1500: err %v, want ErrBadConfig", err)
		}
		if _, err := NewLive(small, LiveOptions{Ifindex: 9999}); err == nil {
			t.Error("missing interface: no error")
		}
		if l, err := NewLive(small, LiveOptions{Ifindex: idx, Queue: 5}); !errors.Is(err, ErrBadConfig) {
			t.Errorf("queue 5 of 1: err %v, want ErrBadConfig", err)
			if l != nil {
				l.Close()
			}
		}
		l, err := NewLive(small, LiveOptions{Ifindex: idx})
		if err != nil {
			return err
		}
		defer l.Close()
		if _, err := l.Send(context.Background(), Run{Rate: -1}); !errors.Is(err, ErrBadRun) {
			t.Errorf("negative rate: err %v, want ErrBadRun", err)
		}
		return nil
	})
}

// openXSK opens the engine's UMEM and socket on queue 0 of opts.Ifindex
// (no XDP program: it only sends) and the engine on them. Commands open the
// socket through package dataplane's OpenPort instead.
func openXSK(tp *Template, opts XSKOptions) (*XSK, func(), error) {
	uo, so, err := XSKSocket(tp, opts)
	if err != nil {
		return nil, nil, err
	}
	u, err := xsk.NewUmem(uo)
	if err != nil {
		return nil, nil, err
	}
	s, err := xsk.NewSocket(u, opts.Ifindex, 0, so)
	if err != nil {
		u.Close()
		return nil, nil, err
	}
	e, err := NewXSK(tp, s, opts)
	if err != nil {
		s.Close()
		u.Close()
		return nil, nil, err
	}
	return e, func() { e.Close(); s.Close(); u.Close() }, nil
}

func TestXSKSendsExactCount(t *testing.T) {
	for _, c := range []struct {
		proto Proto
		size  int
		mtu   int
	}{{UDP4, 64, 1500}, {UDP6, 1500, 1500}, {TCP4SYN, 9000, 9000}} {
		t.Run(fmt.Sprintf("%v/%d", c.proto, c.size), func(t *testing.T) {
			if c.size > 1500 && testutil.Bind() == "zerocopy" {
				t.Skip("multi-buffer: copy mode only on virtio-net (xdp-zc-max-segs 1)")
			}
			p := testutil.NewLinkPair(t, testutil.LinkOptions{MTU: c.mtu})
			tp, err := NewTemplate(vethConfig(p, c.proto, c.size))
			if err != nil {
				t.Fatal(err)
			}
			rx := newReceiver(t, &p.B, tp)
			count := uint64(testutil.Frames(20000))
			if c.size == 9000 {
				count = uint64(testutil.Frames(2000))
			}
			var res Result
			p.A.NS.MustDo(t, func() error {
				e, closeXSK, err := openXSK(tp, XSKOptions{Ifindex: p.A.Ifindex(t), Bind: bind()})
				if err != nil {
					return err
				}
				defer closeXSK()
				if b := bind(); b != xsk.BindAuto && e.Mode() != b {
					return fmt.Errorf("engine bound %v, asked %v", e.Mode(), b)
				}
				res, err = e.Send(context.Background(), Run{Count: count, Rate: 50000})
				return err
			})
			if res.Sent != count {
				t.Fatalf("sent %d, want %d", res.Sent, count)
			}
			st := rx.wait(t, count)
			t.Logf("%v", st)
			if st.Received != count || st.Unique != count || st.Lost != 0 || st.Duplicates != 0 {
				t.Fatalf("receiver: %+v", st)
			}
			if rx.bad != 0 {
				t.Fatalf("%d frames arrived damaged", rx.bad)
			}
		})
	}
}

func TestXSKRateLimit(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	tp, err := NewTemplate(vethConfig(p, UDP4, 64))
	if err != nil {
		t.Fatal(err)
	}
	rx := newReceiver(t, &p.B, tp)
	const rate, secs = 20000.0, 2
	var res Result
	p.A.NS.MustDo(t, func() error {
		e, closeXSK, err := openXSK(tp, XSKOptions{Ifindex: p.A.Ifindex(t), Bind: bind()})
		if err != nil {
			return err
		}
		defer closeXSK()
		res, err = e.Send(context.Background(), Run{Duration: secs * time.Second, Rate: rate})
		return err
	})
	got := res.Rate()
	t.Logf("sent %d in %v: %.0f frames/s (target %.0f)", res.Sent, res.Elapsed, got, rate)
	if got < rate*0.95 || got > rate*1.05 {
		t.Fatalf("rate %.0f frames/s, want %.0f within 5%%", got, rate)
	}
	if st := rx.wait(t, res.Sent); st.Received != res.Sent || st.Lost != 0 {
		t.Fatalf("receiver: %+v", st)
	}
}

// liveSend sends count frames with the live engine from A, returning what
// Send returned.
func liveSend(t *testing.T, p *testutil.LinkPair, l *Live, count uint64) (res Result, err error) {
	t.Helper()
	p.A.NS.MustDo(t, func() error {
		res, err = l.Send(context.Background(), Run{Count: count})
		return nil
	})
	return res, err
}

// TestLiveCountsOnlyFramesThatLeft: where nothing can leave, the live
// engine fails naming the cause and counts no frame as sent: a veth whose
// peer has no XDP program drops every frame, and none of them is "sent".
func TestLiveCountsOnlyFramesThatLeft(t *testing.T) {
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	tp, err := NewTemplate(vethConfig(p, UDP4, 64))
	if err != nil {
		t.Fatal(err)
	}
	idx := p.A.Ifindex(t)
	noProgram := p.A.Name + " cannot send XDP frames: its veth peer has no XDP program"

	// Checked up front: the peer has no program.
	p.A.NS.MustDo(t, func() error {
		l, err := NewLive(tp, LiveOptions{Ifindex: idx})
		if err == nil {
			l.Close()
		}
		if err == nil || !strings.Contains(err.Error(), noProgram) {
			t.Errorf("NewLive with no program on the peer: %v, want %q", err, noProgram)
		}
		return nil
	})

	// The peer's program goes away after NewLive: Send fails, sent 0.
	detach := p.B.AttachPass(t)
	var l *Live
	p.A.NS.MustDo(t, func() error {
		l, err = NewLive(tp, LiveOptions{Ifindex: idx})
		return err
	})
	defer l.Close()
	detach()
	res, err := liveSend(t, p, l, 1000)
	t.Logf("program gone: %+v, %v", res, err)
	if err == nil || !strings.Contains(err.Error(), "live engine: none of 1000 frames left: "+noProgram) || res.Sent != 0 || res.Dropped != 1000 {
		t.Errorf("Send with the peer's program gone: %+v, %v", res, err)
	}

	// A program on the peer, but the peer down: veth refuses the frames.
	p.B.AttachPass(t)
	p.B.NS.MustRun(t, "ip", "link", "set", p.B.Name, "down")
	res, err = liveSend(t, p, l, 1000)
	t.Logf("peer down: %+v, %v", res, err)
	if err == nil || !strings.Contains(err.Error(), "live engine: none of 1000 frames left: the driver refused 1000 of them (ENXIO): the veth peer of "+p.A.Name+" is down; bring it up") || res.Sent != 0 {
		t.Errorf("Send into a peer that is down: %+v, %v", res, err)
	}

	// Up again: every frame leaves and is counted.
	p.B.NS.MustRun(t, "ip", "link", "set", p.B.Name, "up")
	if res, err = liveSend(t, p, l, 1000); err != nil || res.Sent == 0 || res.Sent+res.Dropped != 1000 {
		t.Errorf("Send with the peer up: %+v, %v", res, err)
	}
}

// TestLiveBare: the bare reference program sends exactly the count, the
// template's bytes unchanged.
func TestLiveBare(t *testing.T) {
	requireLiveSender(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	tp, err := NewTemplate(vethConfig(p, UDP4, 64))
	if err != nil {
		t.Fatal(err)
	}
	p.B.AttachPass(t)
	var l *Live
	p.A.NS.MustDo(t, func() error {
		l, err = NewLive(tp, LiveOptions{Ifindex: p.A.Ifindex(t), Bare: true})
		return err
	})
	defer l.Close()
	if res, err := liveSend(t, p, l, 3000); err != nil || res.Sent == 0 || res.Sent+res.Dropped != 3000 {
		t.Errorf("bare Send of 3000: %+v, %v", res, err)
	}
}

// TestLiveBareCountsInterruptedCalls: a signal interrupts BPF_PROG_RUN
// (EINTR) after some batches left, and cilium/ebpf runs the call again with
// its whole Repeat; the bare program keeps no count of its own, so those
// frames must still count as made and sent. Signals to the sending thread
// make it happen; a drop counter on the peer is the truth (A's IPv6 off:
// no stray frames of its own).
func TestLiveBareCountsInterruptedCalls(t *testing.T) {
	requireLiveSender(t)
	p := testutil.NewLinkPair(t, testutil.LinkOptions{})
	p.A.NS.MustRun(t, "sysctl", "-qw", "net.ipv6.conf."+p.A.Name+".disable_ipv6=1")
	tp, err := NewTemplate(vethConfig(p, UDP4, 64))
	if err != nil {
		t.Fatal(err)
	}
	dc, err := bpf.LoadDropCount()
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	p.B.NS.MustDo(t, func() error {
		_, err := dc.Attach(p.B.Ifindex(t), bpf.AttachDriver)
		return err
	})
	var res Result
	var interrupts int
	p.A.NS.MustDo(t, func() error {
		l, err := NewLive(tp, LiveOptions{Ifindex: p.A.Ifindex(t), Chunk: 1 << 16, Bare: true})
		if err != nil {
			return err
		}
		defer l.Close()
		// Send locks its thread, the one this closure runs on: signal it.
		tid := unix.Gettid()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
					unix.Tgkill(unix.Getpid(), tid, unix.SIGURG) // Go's own preemption signal: harmless
					interrupts++
				}
			}
		}()
		res, err = l.Send(context.Background(), Run{Duration: 300 * time.Millisecond})
		close(stop)
		<-done
		return err
	})
	got, err := dc.Counts()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d signals; sent %d, dropped %d; the peer counted %d", interrupts, res.Sent, res.Dropped, got.Packets)
	if got.Packets != res.Sent {
		t.Fatalf("the peer received %d frames, Send says %d left", got.Packets, res.Sent)
	}
}
