package xsk

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Kernel is the other side of a Socket's rings, beyond the ring memory
// they share: the system calls that wake it, wait for it and read its
// counters, and its share of Close. NewSocket's sockets talk to the real
// kernel through their fd; package xsktest supplies a fake that drives the
// rings in plain memory, for tests without privileges (NewSocketFrom).
// The Socket calls it from the goroutines that use the rings it concerns.
type Kernel interface {
	// WakeRX asks the kernel to take frames from the fill ring (and
	// drives busy polling): recvfrom with MSG_DONTWAIT.
	WakeRX() error
	// WakeTX asks the kernel to send what is on the TX ring: sendto with
	// MSG_DONTWAIT.
	WakeTX() error
	// Poll waits until the RX ring has descriptors or timeout passes (a
	// negative timeout waits for ever).
	Poll(timeout time.Duration) error
	// Statistics reads the socket's counters.
	Statistics() (Statistics, error)
	// Release ends the kernel's use of the socket when it closes, after
	// its RX and completion rings were drained, and returns how many
	// frames it handed back to the Umem's free stack from the fill and TX
	// rings. The real kernel closes the fd and hands back none: it may
	// still use them.
	Release() (reclaimed int64, err error)
}

// sysKernel is the real kernel, reached through the socket's fd.
type sysKernel struct {
	fd int
	s  *Socket
	// pollFds is poll(2)'s argument, for a socket that transmits.
	pollFds [1]unix.PollFd
	// file is a duplicate of fd that the Go runtime's netpoller (epoll)
	// watches, made at a receive-only socket's first Poll, and conn its
	// raw access: Poll parks the goroutine there.
	file *os.File
	conn syscall.RawConn
	// ready is Poll's check that the RX ring has descriptors, made once so
	// that Poll allocates nothing.
	ready func(fd uintptr) bool
}

var _ Kernel = (*sysKernel)(nil)

// newSysKernel is the kernel side of s, whose fd is fd.
func newSysKernel(fd int, s *Socket) *sysKernel {
	k := &sysKernel{fd: fd, s: s, pollFds: [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}}
	k.ready = func(uintptr) bool { return k.s.rxReady() }
	return k
}

// netpoll hands a duplicate of the fd (close-on-exec) to the Go runtime's
// netpoller, once, which makes the socket's file non-blocking; xsk's own
// system calls never block anyway (MSG_DONTWAIT kicks, poll).
func (k *sysKernel) netpoll() error {
	if k.file != nil {
		return nil
	}
	dup, err := unix.FcntlInt(uintptr(k.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("duplicate socket fd for the netpoller: %w", err)
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return fmt.Errorf("make socket fd non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(dup), "xsk")
	conn, err := f.SyscallConn()
	if err == nil {
		// Only a file the netpoller took has deadlines.
		err = f.SetReadDeadline(time.Time{})
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("socket fd not pollable by the Go runtime (epoll): %w", err)
	}
	k.file, k.conn = f, conn
	return nil
}

func (k *sysKernel) WakeRX() error { return kickRX(k.fd) }

func (k *sysKernel) WakeTX() error { return kickTX(k.fd) }

// Poll waits until the RX ring has descriptors or timeout passes; a
// timeout or EINTR is not an error. First it kicks the kernel for the fill
// ring if it asks, as poll(2) on the socket would. A socket that has
// transmitted blocks in poll(2); one that only receives parks the
// goroutine in the Go runtime's netpoller.
//
// Why the netpoller: a goroutine that blocks in poll(2) keeps its P in a
// system call, and the runtime's sysmon thread retakes the P (at once
// when GOMAXPROCS is 1) and goes to sleep once every P is idle; the
// poll's return then wakes sysmon, which watches at 20 µs intervals for
// the next millisecond or more. Between the bursts of a few hundred
// frames that `xdpipe bench` offers at 10k and 100k frames/s that was a
// sysmon wakeup per 20 µs of every burst, and most of wakeup mode's CPU.
// A raw poll(2) keeps the P instead, so sysmon never sleeps and preempts
// the loop every 10 ms, a locked thread's costliest switch. A goroutine
// parked in the netpoller leaves its P idle and sysmon asleep; the
// receive path's wakeup reaches it through epoll. On the veth bench, side
// by side with poll(2) in the same runs, rxdrop --poll wakeup used 15-30%
// less CPU per frame at 100k frames/s and 25-35% less at 1M; at 10k the
// two were within the noise.
//
// Why not once it transmits: the netpoller's epoll entry stays on the
// socket's wait queue until the duplicate closes, and in copy mode every transmitted frame's
// completion wakes that queue (sock_wfree, sk_write_space), which then
// runs epoll's callback on the sending CPU, frame by frame, whether or
// not anyone waits. Registered at open, it cost the bench's AF_XDP
// transmit cells (gen's xsk engine) 20-35% of their rate. So the
// registration waits for the first Poll (a socket that never waits, in
// spin mode, is never registered), and the first Poll after the socket
// transmitted closes the duplicate, which takes it out of epoll.
func (k *sysKernel) Poll(timeout time.Duration) error {
	if k.s.tx.submitted() {
		if k.file != nil {
			// Closing the duplicate takes it out of the netpoller's epoll.
			err := k.file.Close()
			k.file, k.conn = nil, nil
			if err != nil {
				return fmt.Errorf("poll: leave the netpoller: %w", err)
			}
		}
		_, err := Poll(k.pollFds[:], timeout)
		return err
	}
	if err := k.netpoll(); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	k.s.kickFill()
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	if err := k.file.SetReadDeadline(deadline); err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	if err := k.conn.Read(k.ready); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("poll: %w", err)
	}
	return nil
}

// Statistics reads XDP_STATISTICS.
func (k *sysKernel) Statistics() (Statistics, error) {
	st, err := xdpStatistics(k.fd)
	if err != nil {
		return Statistics{}, fmt.Errorf("get xdp statistics: %w", err)
	}
	return Statistics{
		RxDropped:            st.Rx_dropped,
		RxInvalidDescs:       st.Rx_invalid_descs,
		TxInvalidDescs:       st.Tx_invalid_descs,
		RxRingFull:           st.Rx_ring_full,
		RxFillRingEmptyDescs: st.Rx_fill_ring_empty_descs,
		TxRingEmptyDescs:     st.Tx_ring_empty_descs,
	}, nil
}

// Release closes the fd. Frames on the fill and TX rings, or inside the
// kernel, cannot be taken back safely while it may still use them.
func (k *sysKernel) Release() (int64, error) {
	// The socket lives until its last fd closes: both go.
	var err error
	if k.file != nil {
		err = k.file.Close()
	}
	if cerr := unix.Close(k.fd); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err != nil {
		return 0, fmt.Errorf("close socket: %w", err)
	}
	return 0, nil
}

// Poll is ppoll(2) on fds for up to timeout (a negative timeout waits for
// ever); a timeout or EINTR is not an error. It returns how many fds have
// events. Unlike Idler's naps it is an ordinary system call: it may sleep
// for long (see nanosleep). Socket.Wait of a socket that only receives
// parks in the netpoller instead (see sysKernel.Poll); Poll is for
// several sockets at once.
func Poll(fds []unix.PollFd, timeout time.Duration) (int, error) {
	var ts *unix.Timespec
	if timeout >= 0 {
		t := unix.NsecToTimespec(int64(timeout))
		ts = &t
	}
	n, err := unix.Ppoll(fds, ts, nil)
	if err != nil && !errors.Is(err, unix.EINTR) {
		return 0, fmt.Errorf("poll: %w", err)
	}
	return n, nil
}
