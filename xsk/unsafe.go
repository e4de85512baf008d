package xsk

// This is the only file of package xsk that imports unsafe: views of mmap'd
// memory as ring words and descriptor arrays, and the socket options whose
// values are structs.

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel's struct xdp_desc is 16 bytes; Desc must match it exactly.
var _ [16]struct{} = [unsafe.Sizeof(Desc{})]struct{}{}

// u32At returns the 32-bit word at off in mem. off must be 4-byte aligned
// and mem must outlive every use of the pointer.
func u32At(mem []byte, off uint64) *uint32 {
	_ = mem[off+3] // bounds check
	return (*uint32)(unsafe.Pointer(&mem[off]))
}

// u64sAt views n uint64s starting at off in mem.
func u64sAt(mem []byte, off uint64, n uint32) []uint64 {
	_ = mem[off+uint64(n)*8-1]
	return unsafe.Slice((*uint64)(unsafe.Pointer(&mem[off])), n)
}

// descsAt views n Descs starting at off in mem.
func descsAt(mem []byte, off uint64, n uint32) []Desc {
	_ = mem[off+uint64(n)*16-1]
	return unsafe.Slice((*Desc)(unsafe.Pointer(&mem[off])), n)
}

// aligned reports whether the memory at mem[off] is aligned to a bytes.
func aligned(mem []byte, off uint64, a uintptr) bool {
	return uintptr(unsafe.Pointer(&mem[off]))%a == 0
}

// baseAddr is the virtual address of mem, for XDP_UMEM_REG.
func baseAddr(mem []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&mem[0]))) }

func getsockopt(fd, level, opt int, p unsafe.Pointer, size uintptr) (uintptr, error) {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return uintptr(l), nil
}

func setsockopt(fd, level, opt int, p unsafe.Pointer, size uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(p), size, 0)
	if e != 0 {
		return e
	}
	return nil
}

// mmapOffsets reads XDP_MMAP_OFFSETS. Kernels before 5.4 return the v1
// layout without the flags words; their flags offset is made up the way
// libbpf does (right after the consumer), though such kernels never set it.
func mmapOffsets(fd int) (unix.XDPMmapOffsets, error) {
	var off unix.XDPMmapOffsets
	n, err := getsockopt(fd, unix.SOL_XDP, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off))
	if err != nil {
		return off, err
	}
	if n == unsafe.Sizeof(off) {
		return off, nil
	}
	// v1: four {producer, consumer, desc} triples.
	var v1 [4][3]uint64
	if _, err := getsockopt(fd, unix.SOL_XDP, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&v1), unsafe.Sizeof(v1)); err != nil {
		return off, err
	}
	conv := func(t [3]uint64) unix.XDPRingOffset {
		return unix.XDPRingOffset{Producer: t[0], Consumer: t[1], Desc: t[2], Flags: t[1] + 4}
	}
	off.Rx, off.Tx, off.Fr, off.Cr = conv(v1[0]), conv(v1[1]), conv(v1[2]), conv(v1[3])
	return off, nil
}

func umemReg(fd int, reg *unix.XDPUmemReg) error {
	return setsockopt(fd, unix.SOL_XDP, unix.XDP_UMEM_REG, unsafe.Pointer(reg), unsafe.Sizeof(*reg))
}

func xdpStatistics(fd int) (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	_, err := getsockopt(fd, unix.SOL_XDP, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st))
	return st, err
}

// kickTX is sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0): it makes the kernel
// process the TX ring.
//
// Both kicks are raw system calls, without the Go scheduler's entersyscall
// and exitsyscall: they never sleep (MSG_DONTWAIT), but a copy-mode TX kick
// builds and sends up to 32 skbs and takes some 50 µs. Through
// unix.Syscall6, sysmon took the P away from every such call that it saw
// outlast 20 µs, and kept waking every 20 µs to do so: on the l2fwd
// testbed, with the process confined to one CPU, 13,600 context switches
// and 4,600 timer interrupts a second on the worker's CPU, and 30% less
// forwarded. The cost of raw calls is that a stop-the-world waits for a
// kick to return.
func kickTX(fd int) error {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// kickRX is recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL): it wakes the
// driver to take frames from the fill ring (and drives busy polling).
func kickRX(fd int) error {
	_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// nanosleep sleeps for t with a raw nanosleep(2); a signal ends it early.
//
// Raw for the reason the kicks are raw: at high rates a loop in wakeup
// mode naps tens of thousands of times a second, for up to Idler.Coalesce,
// and through unix.Nanosleep sysmon took the P away from every nap that
// outlasted 20 µs and kept waking every 20 µs to do so: 15,000 to 18,000
// context switches a second on a thread of their own, a fifth of such a
// receiver's CPU. A raw call keeps the P, so other goroutines wait for
// the nap to end (it is short) or for the runtime's preemption signal.
// Long sleeps are Socket.Wait's, in poll(2) or parked in the runtime's
// netpoller (see sysKernel.Poll): a raw call sleeping for milliseconds is preempted every
// 10 ms, and a locked thread's preemption costs more context switches
// than a park.
func nanosleep(t time.Duration) {
	ts := unix.NsecToTimespec(int64(t))
	unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
}
