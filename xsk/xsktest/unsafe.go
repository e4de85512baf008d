package xsktest

// This is the only file of package xsktest that imports unsafe: the flags
// word of a ring region, which the fake kernel stores atomically as the
// real one does.

import "unsafe"

// u32At returns the 32-bit word at off in mem. off must be 4-byte aligned
// (RingLayout's offsets are) and mem must outlive every use of the pointer.
func u32At(mem []byte, off uint64) *uint32 {
	_ = mem[off+3] // bounds check
	return (*uint32)(unsafe.Pointer(&mem[off]))
}
