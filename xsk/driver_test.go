package xsk

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestZeroCopyBlocker: what the driver advertises decides zero-copy before
// any bind: none advertised, or a jumbo MTU that needs more segments than
// the driver's zero-copy takes (xdp-zc-max-segs 1 or 0), is refused with
// the cause and the fix; nothing known blocks nothing.
func TestZeroCopyBlocker(t *testing.T) {
	virtio := Driver{Known: true, Name: "virtio_net", ZeroCopy: true, ZeroCopyMaxSegs: 1, Queues: 2}
	for _, tc := range []struct {
		d         Driver
		mtu       int
		frameSize uint32
		want      string
	}{
		{Driver{}, 9000, 4096, ""},
		{virtio, 1500, 4096, ""},
		{virtio, 3826, 4096, ""}, // 3840 bytes: one 4096-byte frame's data room
		{virtio, 3827, 4096, "MTU 3827 needs multi-buffer (2 segments of a 4096-byte frame), driver virtio_net's zero-copy takes 1 segment(s)"},
		{virtio, 1500, 2048, ""},
		{virtio, 9000, 4096, "MTU 9000 needs multi-buffer (3 segments"},
		{Driver{Known: true, ZeroCopy: true}, 9000, 4096, "the driver's zero-copy takes 1 segment(s)"},
		{Driver{Known: true, ZeroCopy: true, ZeroCopyMaxSegs: 3}, 9000, 4096, ""},
		{Driver{Known: true, ZeroCopy: true, ZeroCopyMaxSegs: 3}, 9000, 2048, "MTU 9000 needs multi-buffer (6 segments of a 2048-byte frame)"},
		{Driver{Known: true, Name: "veth"}, 1500, 4096, "driver veth has no xsk-zerocopy in its xdp-features"},
	} {
		got, fix := tc.d.ZeroCopyBlocker(tc.mtu, tc.frameSize)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) || (got == "") != (fix == "") {
			t.Errorf("%+v MTU %d frame %d: %q (fix %q), want %q", tc.d, tc.mtu, tc.frameSize, got, fix, tc.want)
		}
	}
}

// TestZeroCopyRefusal: a zero-copy bind the driver refused names the
// likely cause, not the queue count, when the queue is known to be valid.
func TestZeroCopyRefusal(t *testing.T) {
	virtio := Driver{Known: true, Name: "virtio_net", ZeroCopy: true, ZeroCopyMaxSegs: 1, Queues: 2}
	for _, tc := range []struct {
		d    Driver
		err  error
		want string
	}{
		{virtio, unix.EINVAL, "driver virtio_net advertises xsk-zerocopy but refused it (EINVAL): virtio-net without a DMA API; give the NIC iommu_platform=on"},
		{Driver{Known: true, Name: "mlx5_core", ZeroCopy: true, Queues: 4}, unix.EINVAL, "driver mlx5_core advertises xsk-zerocopy but refused it (EINVAL): the device cannot map the UMEM"},
		{Driver{}, unix.EINVAL, "zero-copy refused (EINVAL): the driver cannot do it here, or the queue is beyond the active count"},
		{Driver{}, unix.EOPNOTSUPP, "the driver does not support zero-copy (EOPNOTSUPP)"},
		{virtio, unix.EOPNOTSUPP, "driver virtio_net advertises xsk-zerocopy but refused it (EOPNOTSUPP)"},
		{virtio, unix.ENOMEM, "zero-copy refused (ENOMEM)"},
	} {
		got := tc.d.zeroCopyRefusal(tc.err)
		if !strings.Contains(got, tc.want) || strings.Contains(got, "below the active queue count") {
			t.Errorf("%+v %v: %q, want %q", tc.d, tc.err, got, tc.want)
		}
		msg := bindError(tc.err, "eth1", 0, SocketOptions{Bind: BindZeroCopy, Driver: tc.d}).Error()
		if !strings.HasPrefix(msg, "bind eth1 queue 0: zero-copy: "+got+"; use copy or auto mode") {
			t.Errorf("bind error %q", msg)
		}
	}
}
