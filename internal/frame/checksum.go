package frame

import "encoding/binary"

// Sum is the one's complement sum of b as 16-bit words in native order,
// not yet folded (RFC 1071: the order does not matter if it is the same
// for reading and writing the checksum field). A last odd byte is padded
// with zero. Add sums of several pieces (a pseudo-header and a segment),
// then Fold.
func Sum(b []byte) uint64 {
	var s uint64
	ne := binary.NativeEndian
	for len(b) >= 8 {
		v := ne.Uint64(b)
		s += v&0xffffffff + v>>32
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(ne.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		var w [2]byte
		w[0] = b[0]
		s += uint64(ne.Uint16(w[:]))
	}
	return s
}

// Fold reduces a one's complement sum to 16 bits; a checksum field holds
// its complement, in native order.
func Fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
