// Package sat is unsigned arithmetic that saturates at math.MaxUint64
// instead of wrapping, for memory costs worked out from settings before
// anything is allocated: a product of settings too large to represent is
// "too much", never a small number that passes a check.
package sat

import (
	"math"
	"math/bits"
)

// Mul is a*b*..., saturated at math.MaxUint64.
func Mul(a uint64, more ...uint64) uint64 {
	for _, b := range more {
		hi, lo := bits.Mul64(a, b)
		if hi != 0 {
			return math.MaxUint64
		}
		a = lo
	}
	return a
}

// Add is a+b+..., saturated at math.MaxUint64.
func Add(a uint64, more ...uint64) uint64 {
	for _, b := range more {
		s, carry := bits.Add64(a, b, 0)
		if carry != 0 {
			return math.MaxUint64
		}
		a = s
	}
	return a
}
