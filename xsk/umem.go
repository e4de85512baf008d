package xsk

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/xdpipe/xdpipe/internal/caps"
)

// Desc is one RX or TX descriptor (struct xdp_desc): the UMEM offset of the
// packet data, its length, and options (XDP_PKT_CONTD marks a segment that
// continues in the next descriptor of a multi-buffer packet).
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// Umem is the packet memory that sockets receive into and transmit from:
// NumFrames frames of FrameSize bytes in one anonymous mapping (never the Go
// heap), and the stack of free frames.
//
// The first socket made on a Umem registers it with the kernel
// (XDP_UMEM_REG); later sockets share it (XDP_SHARED_UMEM). Alloc, Free and
// Accounting are safe from several goroutines; Frame and Bytes are plain
// slicing.
type Umem struct {
	mem       []byte
	opts      UmemOptions
	frameMask uint64 // ^(FrameSize-1)
	huge      bool

	mu        sync.Mutex // guards the free stack and the counts below
	free      []uint64   // free frame addresses (frame bases), a stack
	allocated int64      // frames out of the free stack
	isFree    []bool     // Debug only: per-frame "on the free stack"

	sockMu  sync.Mutex // guards sockets, lost, closed
	sockets []*Socket  // live sockets on this UMEM, in creation order
	lost    int64      // frames in flight on sockets when they closed
	closed  bool
}

// NewUmem maps the UMEM and puts every frame on the free stack. Nothing is
// registered with the kernel until the first NewSocket. The mapping is
// populated (MAP_POPULATE) so the first packets do not fault.
func NewUmem(opts UmemOptions) (*Umem, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	size := int(o.NumFrames) * int(o.FrameSize)
	u := &Umem{opts: o, frameMask: ^uint64(o.FrameSize - 1)}
	prot := unix.PROT_READ | unix.PROT_WRITE
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_POPULATE
	if o.HugePages {
		const huge = 2 << 20
		hsize := (size + huge - 1) &^ (huge - 1)
		if mem, err := unix.Mmap(-1, 0, hsize, prot, flags|unix.MAP_HUGETLB); err == nil {
			u.mem, u.huge = mem, true
		}
		// No huge pages reserved (ENOMEM) or none configured: fall back.
	}
	if u.mem == nil {
		mem, err := unix.Mmap(-1, 0, size, prot, flags)
		if err != nil {
			return nil, fmt.Errorf("mmap umem of %d bytes: %w", size, err)
		}
		u.mem = mem
	}
	u.free = make([]uint64, o.NumFrames)
	// Lowest addresses on top of the stack: allocation starts at frame 0.
	for i := range u.free {
		u.free[i] = uint64(o.NumFrames-1-uint32(i)) * uint64(o.FrameSize)
	}
	if o.Debug {
		u.isFree = make([]bool, o.NumFrames)
		for i := range u.isFree {
			u.isFree[i] = true
		}
	}
	return u, nil
}

// Frame returns the whole frame that holds addr. The slice aliases the
// UMEM and is valid until Close.
func (u *Umem) Frame(addr uint64) []byte {
	base := addr & u.frameMask
	end := base + uint64(u.opts.FrameSize)
	return u.mem[base:end:end]
}

// Bytes returns the packet bytes of d (one segment, for multi-buffer), no
// copy. Valid until Close; the frame is the holder's to use only while it
// holds it.
func (u *Umem) Bytes(d Desc) []byte {
	end := d.Addr + uint64(d.Len)
	return u.mem[d.Addr:end:end]
}

// DataOffset is where received data starts in a frame: Headroom plus the
// kernel's XDP_PACKET_HEADROOM. Transmit from here on to keep the headroom.
func (u *Umem) DataOffset() uint64 { return uint64(u.opts.Headroom) + xdpPacketHeadroom }

// Region is the whole mapping (for RDMA memory registration). Valid until
// Close.
func (u *Umem) Region() []byte { return u.mem }

// FrameSize is the size of a frame in bytes.
func (u *Umem) FrameSize() uint32 { return u.opts.FrameSize }

// NumFrames is the number of frames.
func (u *Umem) NumFrames() uint32 { return u.opts.NumFrames }

// Options returns the options in effect, defaults filled in.
func (u *Umem) Options() UmemOptions { return u.opts }

// HugePages reports whether the UMEM got huge pages.
func (u *Umem) HugePages() bool { return u.huge }

// Alloc pops up to len(dst) free frame addresses (frame bases) into dst and
// returns how many. The frames are the caller's until passed on. O(1) per
// frame, one lock per call; allocates nothing.
func (u *Umem) Alloc(dst []uint64) int {
	u.mu.Lock()
	n := min(len(dst), len(u.free))
	top := len(u.free) - n
	copy(dst, u.free[top:])
	u.free = u.free[:top]
	u.allocated += int64(n)
	if u.isFree != nil {
		for _, a := range dst[:n] {
			u.isFree[a/uint64(u.opts.FrameSize)] = false
		}
	}
	u.mu.Unlock()
	return n
}

// Free pushes frames back on the free stack. Any address inside a frame
// frees that frame. The caller must own them; with UmemOptions.Debug a
// double free or an address outside the UMEM panics. One lock per call.
func (u *Umem) Free(addrs []uint64) {
	u.mu.Lock()
	for _, a := range addrs {
		u.push(a)
	}
	u.allocated -= int64(len(addrs))
	u.mu.Unlock()
}

// FreeDescs is Free for the frames of received descriptors.
func (u *Umem) FreeDescs(descs []Desc) {
	u.mu.Lock()
	for i := range descs {
		u.push(descs[i].Addr)
	}
	u.allocated -= int64(len(descs))
	u.mu.Unlock()
}

// push puts one frame on the stack; u.mu held.
func (u *Umem) push(a uint64) {
	a &= u.frameMask
	if u.isFree != nil {
		i := a / uint64(u.opts.FrameSize)
		if i >= uint64(len(u.isFree)) {
			u.mu.Unlock()
			panic(fmt.Sprintf("xsk: free of address %#x outside the umem (%d frames)", a, len(u.isFree)))
		}
		if u.isFree[i] {
			u.mu.Unlock()
			panic(fmt.Sprintf("xsk: double free of frame %#x", a))
		}
		u.isFree[i] = true
	}
	if len(u.free) == cap(u.free) {
		u.mu.Unlock()
		panic("xsk: free stack overflow: more frames freed than exist")
	}
	u.free = append(u.free, a)
}

// FreeCount is the number of frames on the free stack.
func (u *Umem) FreeCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.free)
}

// Close closes every socket still open on the Umem, then unmaps it. Slices
// from Frame, Bytes and Region are invalid afterwards. Safe to call twice.
func (u *Umem) Close() error {
	u.sockMu.Lock()
	if u.closed {
		u.sockMu.Unlock()
		return nil
	}
	u.closed = true
	socks := append([]*Socket(nil), u.sockets...)
	u.sockMu.Unlock()
	var errs []error
	for _, s := range socks {
		errs = append(errs, s.Close())
	}
	if err := unix.Munmap(u.mem); err != nil {
		errs = append(errs, fmt.Errorf("munmap umem: %w", err))
	}
	return errors.Join(errs...)
}

// register performs XDP_UMEM_REG on fd, raising RLIMIT_MEMLOCK first where
// the kernel will charge the pinned UMEM against it.
func (u *Umem) register(fd int) error {
	if err := ensureMemlock(uint64(len(u.mem))); err != nil {
		return fmt.Errorf("register umem: %w", err)
	}
	reg := unix.XDPUmemReg{
		Addr:     baseAddr(u.mem),
		Len:      uint64(len(u.mem)),
		Size:     u.opts.FrameSize,
		Headroom: u.opts.Headroom,
	}
	if err := umemReg(fd, &reg); err != nil {
		if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EPERM) {
			var lim unix.Rlimit
			_ = unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
			return fmt.Errorf("register umem: pinning %d bytes failed (RLIMIT_MEMLOCK soft %s, hard %s): raise it (ulimit -l, LimitMEMLOCK=) or grant CAP_IPC_LOCK: %w",
				len(u.mem), rlim(lim.Cur), rlim(lim.Max), err)
		}
		return fmt.Errorf("register umem: %w", err)
	}
	return nil
}

func rlim(v uint64) string {
	if v == unix.RLIM_INFINITY {
		return "unlimited"
	}
	return strconv.FormatUint(v, 10)
}

// ensureMemlock raises RLIMIT_MEMLOCK when it is below need and the process
// lacks CAP_IPC_LOCK (which exempts it). It fails with a message saying
// what to do when the limit cannot be raised far enough. The kernel charges
// the user's total locked memory, so this is a best effort: register still
// explains an ENOBUFS.
func ensureMemlock(need uint64) error {
	if caps.Have(caps.IPCLock) {
		return nil
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		return fmt.Errorf("getrlimit memlock: %w", err)
	}
	if lim.Cur == unix.RLIM_INFINITY || lim.Cur >= need {
		return nil
	}
	if unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}) == nil {
		return nil
	}
	if lim.Max == unix.RLIM_INFINITY || lim.Max >= need {
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: lim.Max, Max: lim.Max}); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%d bytes must be locked but RLIMIT_MEMLOCK is %s (hard %s) and cannot be raised: raise it (ulimit -l, LimitMEMLOCK=), grant CAP_IPC_LOCK, or use fewer frames: %w",
		need, rlim(lim.Cur), rlim(lim.Max), unix.ENOBUFS)
}

// debugHeld panics when a descriptor's frame is on the free stack or
// outside the UMEM: a frame in two places at once. UmemOptions.Debug only.
func (u *Umem) debugHeld(what string, descs []Desc) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, d := range descs {
		i := d.Addr / uint64(u.opts.FrameSize)
		if i >= uint64(len(u.isFree)) {
			panic(fmt.Sprintf("xsk: %s of address %#x outside the umem (%d frames)", what, d.Addr, len(u.isFree)))
		}
		if u.isFree[i] {
			panic(fmt.Sprintf("xsk: %s of frame %#x, which is on the free stack", what, d.Addr&u.frameMask))
		}
	}
}
