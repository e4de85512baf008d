package bench

// The one file of package bench that uses unsafe: reading the AF_PACKET
// TPACKET_V3 ring's block headers, which the kernel writes concurrently.

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tpacketV3 is an AF_PACKET socket with a TPACKET_V3 receive ring: the
// kernel fills blocks of packets and hands whole blocks to user space.
type tpacketV3 struct {
	fd        int
	ring      []byte
	blockSize int
	blocks    int
	cur       int
	pfd       [1]unix.PollFd
}

const (
	tpStatusKernel = 0
	tpStatusUser   = 1
	// struct tpacket_block_desc: version, offset_to_priv, then
	// tpacket_hdr_v1: block_status, num_pkts, offset_to_first_pkt, ...
	bdBlockStatus = 8
	bdNumPkts     = 12
	bdFirstPkt    = 16
	// struct tpacket3_hdr: tp_next_offset, tp_sec, tp_nsec, tp_snaplen,
	// tp_len, tp_status, tp_mac (u16).
	tp3NextOffset = 0
	tp3Snaplen    = 12
	tp3Len        = 16
	tp3Mac        = 24
)

func newTPacketV3(ifindex, frameSize int) (*tpacketV3, error) {
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("af_packet socket: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			unix.Close(fd)
		}
	}()
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, fmt.Errorf("PACKET_VERSION TPACKET_V3: %w", err)
	}
	t := &tpacketV3{fd: fd, blockSize: 1 << 22, blocks: 32}
	req := unix.TpacketReq3{
		Block_size:     uint32(t.blockSize),
		Block_nr:       uint32(t.blocks),
		Frame_size:     1 << 11,
		Retire_blk_tov: 10, // ms: hand over a partly filled block after this
	}
	req.Frame_nr = req.Block_size * req.Block_nr / req.Frame_size
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("PACKET_RX_RING: %w", err)
	}
	t.ring, err = unix.Mmap(fd, 0, t.blockSize*t.blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap packet ring: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		unix.Munmap(t.ring)
		return nil, fmt.Errorf("bind af_packet: %w", err)
	}
	t.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN | unix.POLLERR}
	ok = true
	return t, nil
}

func (t *tpacketV3) status(b []byte) *uint32 {
	return (*uint32)(unsafe.Pointer(&b[bdBlockStatus]))
}

// next waits up to timeoutMs for the current block, counts its packets and
// bytes, hands each frame (valid only during the call) to observe unless
// it is nil, and returns the block to the kernel.
func (t *tpacketV3) next(timeoutMs int, observe func(frame []byte)) (frames, bytes uint64, err error) {
	b := t.ring[t.cur*t.blockSize : (t.cur+1)*t.blockSize]
	st := t.status(b)
	if atomic.LoadUint32(st)&tpStatusUser == 0 {
		if _, err := unix.Poll(t.pfd[:], timeoutMs); err != nil && err != unix.EINTR {
			return 0, 0, err
		}
		if atomic.LoadUint32(st)&tpStatusUser == 0 {
			return 0, 0, nil
		}
	}
	ne := binary.NativeEndian
	n := ne.Uint32(b[bdNumPkts:])
	off := ne.Uint32(b[bdFirstPkt:])
	for range n {
		p := b[off:]
		bytes += uint64(ne.Uint32(p[tp3Len:]))
		if observe != nil {
			mac := uint32(ne.Uint16(p[tp3Mac:]))
			observe(p[mac : mac+ne.Uint32(p[tp3Snaplen:])])
		}
		off += ne.Uint32(p[tp3NextOffset:])
	}
	atomic.StoreUint32(st, tpStatusKernel)
	t.cur = (t.cur + 1) % t.blocks
	return uint64(n), bytes, nil
}

func (t *tpacketV3) close() {
	unix.Munmap(t.ring)
	unix.Close(t.fd)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
