package xsk

import (
	"errors"
	"fmt"
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
	fd      int
	pollFds [1]unix.PollFd
}

var _ Kernel = (*sysKernel)(nil)

func newSysKernel(fd int) *sysKernel {
	return &sysKernel{fd: fd, pollFds: [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}}
}

func (k *sysKernel) WakeRX() error { return kickRX(k.fd) }

func (k *sysKernel) WakeTX() error { return kickTX(k.fd) }

// Poll is poll(2) on the fd (Poll); a timeout or EINTR is not an
// error. With need_wakeup, poll also wakes the driver for the fill ring.
func (k *sysKernel) Poll(timeout time.Duration) error {
	_, err := Poll(k.pollFds[:], timeout)
	return err
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
	if err := unix.Close(k.fd); err != nil {
		return 0, fmt.Errorf("close socket: %w", err)
	}
	return 0, nil
}

// Poll is ppoll(2) on fds for up to timeout (a negative timeout waits for
// ever); a timeout or EINTR is not an error. It returns how many fds have
// events. Unlike Idler's naps it is an ordinary system call: it may sleep
// for long (see nanosleep).
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
