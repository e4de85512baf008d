package xsk

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Driver is what NewSocket knows of the interface's driver, to choose a
// bind mode and to explain a refused bind. Package netdev reads the facts
// from the kernel and dataplane.SocketDriver builds a Driver of them; xsk
// itself imports x/sys only. The zero value means unknown: NewSocket then
// learns only from the bind's errno.
type Driver struct {
	// Known is set when the fields below come from the kernel.
	Known bool
	// Name is the driver's name ("virtio_net", "veth"; may be empty).
	Name string
	// ZeroCopy: the driver advertises xsk-zerocopy in its xdp-features.
	ZeroCopy bool
	// ZeroCopyMaxSegs is xdp-zc-max-segs: the buffers one packet may take
	// in zero-copy mode (0 or 1: no multi-buffer in zero-copy mode).
	ZeroCopyMaxSegs int
	// Queues is the count of active queues a socket can bind (the smaller
	// of the RX and TX counts); 0 when unknown.
	Queues int
}

func (d Driver) name() string {
	if d.Name == "" {
		return "the driver"
	}
	return "driver " + d.Name
}

// ZeroCopyBlocker says why zero-copy cannot work, from what the driver
// advertises, for an interface with this MTU and UMEM frames of frameSize
// bytes, and what to do; "" when it may (or nothing is known). NewSocket
// refuses a zero-copy bind with it; a caller can ask before it maps a
// UMEM.
func (d Driver) ZeroCopyBlocker(mtu int, frameSize uint32) (why, fix string) {
	if !d.Known {
		return "", ""
	}
	if !d.ZeroCopy {
		return fmt.Sprintf("%s has no xsk-zerocopy in its xdp-features", d.name()), "use copy or auto mode"
	}
	segs := Segments(mtu, frameSize)
	if max(d.ZeroCopyMaxSegs, 1) < segs {
		return fmt.Sprintf("MTU %d needs multi-buffer (%d segments of a %d-byte frame), %s's zero-copy takes %d segment(s)",
			mtu, segs, frameSize, d.name(), max(d.ZeroCopyMaxSegs, 1)), "lower the MTU or use copy mode (--bind copy)"
	}
	return "", ""
}

// ethHeader is the Ethernet header a frame carries on top of the MTU.
const ethHeader = 14

// checkQueue fails for a queue beyond the driver's active queue count,
// naming the count and the fix.
func (d Driver) checkQueue(name string, queue int) error {
	if d.Queues <= 0 || queue < d.Queues {
		return nil
	}
	return fmt.Errorf("bind %s queue %d: %s has %d active queues (0 to %d); pick one of them or raise the count with ethtool -L %s: %w",
		name, queue, name, d.Queues, d.Queues-1, name, unix.EINVAL)
}

// zeroCopyRefusal explains why a zero-copy bind failed with err.
func (d Driver) zeroCopyRefusal(err error) string {
	errno := errnoName(err)
	switch {
	case errors.Is(err, unix.EOPNOTSUPP) && d.Known && d.ZeroCopy:
		return fmt.Sprintf("%s advertises xsk-zerocopy but refused it (%s): not on this queue or with these options", d.name(), errno)
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Sprintf("%s does not support zero-copy (%s)", d.name(), errno)
	case errors.Is(err, unix.EINVAL) && d.Name == "virtio_net":
		return fmt.Sprintf("%s advertises xsk-zerocopy but refused it (%s): virtio-net without a DMA API; give the NIC iommu_platform=on", d.name(), errno)
	case errors.Is(err, unix.EINVAL) && d.Known && d.ZeroCopy && d.Queues > 0:
		return fmt.Sprintf("%s advertises xsk-zerocopy but refused it (%s): the device cannot map the UMEM for DMA (no IOMMU/DMA API?); see dmesg", d.name(), errno)
	case errors.Is(err, unix.EINVAL):
		return fmt.Sprintf("zero-copy refused (%s): the driver cannot do it here, or the queue is beyond the active count (ethtool -l)", errno)
	}
	return fmt.Sprintf("zero-copy refused (%s)", errno)
}

// errnoName is the errno's symbol (EINVAL), or the error's text.
func errnoName(err error) string {
	var e unix.Errno
	if errors.As(err, &e) {
		if e == unix.EOPNOTSUPP {
			return "EOPNOTSUPP" // ErrnoName says ENOTSUP, the same number
		}
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
	}
	return err.Error()
}
