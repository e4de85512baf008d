package testutil

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// PacketSocket is an AF_PACKET socket bound to one veth end inside its
// namespace: a test's traffic source and sink. A goroutine reads everything
// the end receives (frames it sends itself are skipped), counts the frames
// that pass the filter and keeps a copy of each.
type PacketSocket struct {
	fd       int
	keep     func([]byte) bool
	received atomic.Int64
	mu       sync.Mutex
	frames   [][]byte
	done     chan struct{}
}

// packetBufSize is the largest frame the receiver reads whole: a 9000-byte
// jumbo MTU plus headers.
const packetBufSize = 9216

// OpenPacketSocket opens an AF_PACKET socket for all protocols on end, in
// end's namespace, with 16 MiB send and receive buffers, and starts reading
// from it. Received frames for which keep returns true (all frames if keep
// is nil) are counted and recorded. The socket is closed, and the reader
// stopped, when the test ends.
func OpenPacketSocket(tb testing.TB, end *LinkEnd, keep func([]byte) bool) *PacketSocket {
	tb.Helper()
	s := &PacketSocket{keep: keep, done: make(chan struct{})}
	ifindex := end.Ifindex(tb)
	proto := uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8 // htons
	end.NS.MustDo(tb, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifindex}); err != nil {
			unix.Close(fd)
			return err
		}
		// Best effort: without the larger buffers bursts may drop.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 16<<20)
		// A receive timeout, so the reader notices the stop between frames.
		tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		s.fd = fd
		return nil
	})
	stop := make(chan struct{})
	go s.read(stop)
	tb.Cleanup(func() {
		close(stop)
		<-s.done
		unix.Close(s.fd)
	})
	return s
}

// read receives until stop is closed or the socket fails.
func (s *PacketSocket) read(stop <-chan struct{}) {
	defer close(s.done)
	buf := make([]byte, packetBufSize)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if s.keep != nil && !s.keep(buf[:n]) {
			continue
		}
		s.mu.Lock()
		s.frames = append(s.frames, append([]byte(nil), buf[:n]...))
		s.mu.Unlock()
		s.received.Add(1)
	}
}

// Send transmits frame, a whole Ethernet frame, out of the veth end,
// retrying while the socket's buffer is full. Any other error fails the
// test, so Send must be called from the test's goroutine.
func (s *PacketSocket) Send(tb testing.TB, frame []byte) {
	tb.Helper()
	for {
		_, err := unix.Write(s.fd, frame)
		if err == nil {
			return
		}
		if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		tb.Fatalf("send: %v", err)
	}
}

// SendWindow sends frame(i) for i from first to first+n-1, as Send does,
// keeping at most window frames outstanding: frame i goes out once
// arrived, the count of frames seen at the far end, is above i-window.
// It fails the test if the count stalls for 30 s. The count never goes
// down, so arrived is called only when the last count it returned holds
// the next frame back: a count that is costly to take (a metrics scrape)
// is not taken a frame.
func (s *PacketSocket) SendWindow(tb testing.TB, first, n, window int, arrived func() int64, frame func(i int) []byte) {
	tb.Helper()
	var a int64
	for i := first; i < first+n; i++ {
		if int64(i-window) >= a {
			EventuallyErr(tb, 30*time.Second, func() error {
				if a = arrived(); int64(i-window) >= a {
					return fmt.Errorf("stalled: sent %d, %d arrived", i, a)
				}
				return nil
			})
		}
		s.Send(tb, frame(i))
	}
}

// Received returns how many frames have passed the filter so far.
func (s *PacketSocket) Received() int64 { return s.received.Load() }

// Frames returns the frames that have passed the filter so far, in arrival
// order. The slice is a copy; the frames themselves must not be modified.
func (s *PacketSocket) Frames() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.frames...)
}
